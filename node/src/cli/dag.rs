//! Commands on blocks and DAGs: dag, block, pin, gc.

use std::io::Read;

use anyhow::{bail, Context};
use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use ipvec_protocol::{cid as pcid, dagcbor, limits};
use serde_json::json;

use super::{
    output::{progress_bar, Output},
    BlockCommand, Command, DagCommand, PinCommand,
};
use crate::{
    repo::Repo,
    store::{car, dag, gc, BlockStore},
};

fn parse(cid: &str) -> anyhow::Result<Cid> {
    let cid = pcid::parse_cid(cid)?;
    pcid::check_supported(&cid)?;
    Ok(cid)
}

/// Runs every command but `init`.
pub async fn run(repo: &Repo, out: &Output, command: Command) -> anyhow::Result<()> {
    let store = repo.store();
    match command {
        Command::Init => unreachable!("init is handled before the repository is opened"),
        Command::Collection(_)
        | Command::Add { .. }
        | Command::Search { .. }
        | Command::Get { .. }
        | Command::Delete { .. } => {
            unreachable!("collection commands are run by cli::collection")
        }
        Command::Dag(DagCommand::Put { pin }) => {
            let mut input = Vec::new();
            std::io::stdin()
                .take(limits::MAX_BLOCK_BYTES as u64 * 4)
                .read_to_end(&mut input)
                .context("reading DAG-JSON from stdin")?;
            let value: Ipld = serde_ipld_dagjson::from_slice(&input).map_err(|e| {
                anyhow::anyhow!("stdin is not valid DAG-JSON ({e}); write links as {{\"/\": \"<cid>\"}} and bytes as {{\"/\": {{\"bytes\": \"<base64>\"}}}}")
            })?;
            let bytes = dagcbor::encode(&value)?;
            if bytes.len() > limits::MAX_BLOCK_BYTES {
                bail!("the block is {} bytes as DAG-CBOR, over the {}-byte limit; split it into linked blocks", bytes.len(), limits::MAX_BLOCK_BYTES);
            }
            let cid = store.put(pcid::DAG_CBOR, Bytes::from(bytes)).await?;
            if pin {
                dag::check_complete(store, &cid).await?;
                store.pin(&cid).await?;
            }
            store.flush().await?;
            out.print(
                cid.to_string(),
                json!({ "cid": cid.to_string(), "pinned": pin }),
            );
        }
        Command::Dag(DagCommand::Get { cid }) => {
            let cid = parse(&cid)?;
            let bytes = store.require(&cid).await?;
            let value: Ipld = match cid.codec() {
                pcid::DAG_CBOR => dagcbor::decode_trusted(&bytes)?,
                _ => Ipld::Bytes(bytes.to_vec()),
            };
            let text = super::dag_json(&value)?;
            println!("{}", String::from_utf8_lossy(&text));
        }
        Command::Dag(DagCommand::Export { cid, output }) => {
            let cid = parse(&cid)?;
            let totals = match &output {
                Some(path) => super::carfile::export_to_file(store, &cid, path).await?,
                None => {
                    let bar = progress_bar(None, "exporting");
                    let totals = car::export(store, &cid, tokio::io::stdout(), |p| {
                        bar.set_position(p.bytes)
                    })
                    .await?;
                    bar.finish_and_clear();
                    totals
                }
            };
            if let Some(path) = output {
                out.print(
                    format!("exported {} blocks ({} bytes) to {}", totals.blocks, totals.bytes, path.display()),
                    json!({ "root": cid.to_string(), "blocks": totals.blocks, "bytes": totals.bytes, "file": path.display().to_string() }),
                );
            }
        }
        Command::Dag(DagCommand::Import { files }) => {
            for path in files {
                let summary = super::carfile::import_file(store, &path).await?;
                let roots: Vec<String> = summary.roots.iter().map(|c| c.to_string()).collect();
                let text = roots
                    .iter()
                    .map(|r| format!("pinned root {r}"))
                    .chain([format!(
                        "imported {} blocks ({} bytes) from {}",
                        summary.totals.blocks,
                        summary.totals.bytes,
                        path.display()
                    )]);
                out.print(
                    text.collect::<Vec<_>>().join("\n"),
                    json!({ "roots": roots, "blocks": summary.totals.blocks, "bytes": summary.totals.bytes, "file": path.display().to_string() }),
                );
            }
        }
        Command::Block(BlockCommand::Stat { cid }) => {
            let cid = parse(&cid)?;
            let bytes = store.require(&cid).await?;
            let codec = pcid::codec_name(cid.codec());
            out.print(
                format!("Key: {cid}\nSize: {}\nCodec: {codec}", bytes.len()),
                json!({ "cid": cid.to_string(), "size": bytes.len(), "codec": codec }),
            );
        }
        Command::Pin(PinCommand::Ls) => {
            // Pins made with `pin add` are named by their CID; others (collections) by their owner.
            let all = store.pins().await?;
            let text = all
                .iter()
                .map(|(name, cid)| match *name == cid.to_string() {
                    true => format!("{cid} recursive"),
                    false => format!("{cid} recursive ({name})"),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let pins: Vec<serde_json::Value> = all
                .iter()
                .map(|(name, cid)| json!({ "cid": cid.to_string(), "name": name }))
                .collect();
            if out.json || !pins.is_empty() {
                out.print(text, json!({ "pins": pins }));
            }
        }
        Command::Pin(PinCommand::Add { cid }) => {
            let cid = parse(&cid)?;
            dag::check_complete(store, &cid)
                .await
                .with_context(|| format!("cannot pin {cid}: its DAG is not complete in this repository; import it first (ipvec dag import)"))?;
            store.pin(&cid).await?;
            store.flush().await?;
            out.print(
                format!("pinned {cid} recursively"),
                json!({ "pinned": cid.to_string() }),
            );
        }
        Command::Pin(PinCommand::Rm { cid }) => {
            let cid = parse(&cid)?;
            if !store.unpin(&cid).await? {
                bail!("{cid} is not pinned; `ipvec pin ls` lists the pins");
            }
            store.flush().await?;
            out.print(
                format!("unpinned {cid}"),
                json!({ "unpinned": cid.to_string() }),
            );
        }
        Command::Gc => {
            let report = gc::collect_garbage(store).await?;
            let mut text = format!(
                "removed {} blocks ({} bytes); kept {} blocks reachable from pins",
                report.removed.blocks, report.removed.bytes, report.live_blocks
            );
            if report.missing_blocks > 0 {
                text.push_str(&format!(
                    "\nwarning: pins link to {} blocks this repository does not have",
                    report.missing_blocks
                ));
            }
            out.print(text, json!({ "removed_blocks": report.removed.blocks, "removed_bytes": report.removed.bytes, "live_blocks": report.live_blocks, "missing_blocks": report.missing_blocks }));
        }
    }
    Ok(())
}
