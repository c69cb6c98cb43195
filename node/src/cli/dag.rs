//! Commands on blocks and DAGs: dag, block, pin, gc.

use std::io::Read;

use anyhow::Context;
use ipvec_protocol::limits;
use serde_json::json;

use super::{
    backend::Backend,
    carfile::{self, ImportAs, Imported},
    output::{write_stdout, Output, StdoutClosed, StdoutStream},
    BlockCommand, Command, DagCommand, PinCommand,
};
use crate::api::ExportTarget;

/// Runs a dag, block, pin or gc command.
pub async fn run(backend: &Backend, out: &Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dag(DagCommand::Put { pin }) => {
            let mut input = Vec::new();
            std::io::stdin()
                .take(limits::MAX_BLOCK_BYTES as u64 * 4)
                .read_to_end(&mut input)
                .context("reading DAG-JSON from stdin")?;
            let put = backend.ops().dag_put(input, pin).await?;
            out.print(&put.cid, serde_json::to_value(&put)?)?;
        }
        Command::Dag(DagCommand::Get { cid }) => {
            let mut text = backend.ops().dag_get(&cid).await?;
            text.push(b'\n');
            write_stdout(&text)?;
        }
        Command::Dag(DagCommand::Export { cid, output }) => match output {
            Some(path) => {
                let totals =
                    carfile::export_to_file(backend, ExportTarget::Dag(&cid), &path).await?;
                out.print(
                    format!("exported {} blocks ({} bytes) to {}", totals.blocks, totals.bytes, path.display()),
                    json!({ "root": totals.root, "blocks": totals.blocks, "bytes": totals.bytes, "file": path.display().to_string() }),
                )?;
            }
            None => {
                let mut stdout = StdoutStream::new();
                let exported =
                    carfile::export_to(backend, ExportTarget::Dag(&cid), &mut stdout).await;
                if let Err(e) = exported {
                    // `… | head -c 100`: the reader of the CAR stream went away.
                    return Err(if stdout.closed {
                        StdoutClosed.into()
                    } else {
                        e
                    });
                }
            }
        },
        Command::Dag(DagCommand::Import { files }) => {
            for path in files {
                let Imported::Dag(summary) =
                    carfile::import_file(backend, &path, ImportAs::Dag).await?
                else {
                    continue;
                };
                let text = summary
                    .roots
                    .iter()
                    .map(|r| format!("pinned root {r}"))
                    .chain([format!(
                        "imported {} blocks ({} bytes) from {}",
                        summary.blocks,
                        summary.bytes,
                        path.display()
                    )]);
                out.print(
                    text.collect::<Vec<_>>().join("\n"),
                    json!({ "roots": summary.roots, "blocks": summary.blocks, "bytes": summary.bytes, "file": path.display().to_string() }),
                )?;
            }
        }
        Command::Dag(DagCommand::Fetch { cid, from }) => {
            let bar = super::output::progress_bar(None, "fetching");
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let fetched = backend.ops().dag_fetch(&cid, &from).await;
            bar.finish_and_clear();
            let fetched = fetched?;
            out.print(
                format!(
                    "fetched {} of {} blocks ({} bytes); pinned {}",
                    fetched.fetched, fetched.blocks, fetched.bytes, fetched.root
                ),
                serde_json::to_value(&fetched)?,
            )?;
        }
        Command::Block(BlockCommand::Stat { cid }) => {
            let stat = backend.ops().block_stat(&cid).await?;
            out.print(
                format!(
                    "Key: {}\nSize: {}\nCodec: {}",
                    stat.cid, stat.size, stat.codec
                ),
                serde_json::to_value(&stat)?,
            )?;
        }
        Command::Pin(PinCommand::Ls) => {
            // Pins made with `pin add` are named by their CID; others (collections) by their owner.
            let list = backend.ops().pins().await?;
            let text = list
                .pins
                .iter()
                .map(|p| match p.name == p.cid {
                    true => format!("{} {}", p.cid, p.kind),
                    false => format!("{} {} ({})", p.cid, p.kind, p.name),
                })
                .collect::<Vec<_>>()
                .join("\n");
            if out.json || !list.pins.is_empty() {
                out.print(text, serde_json::to_value(&list)?)?;
            }
        }
        Command::Pin(PinCommand::Add { cid }) => {
            let pin = backend.ops().pin_add(&cid).await?;
            out.print(
                format!("pinned {} recursively", pin.cid),
                json!({ "pinned": pin.cid }),
            )?;
        }
        Command::Pin(PinCommand::Rm { cid }) => {
            let pin = backend.ops().pin_rm(&cid).await?;
            out.print(
                format!("unpinned {}", pin.cid),
                json!({ "unpinned": pin.cid }),
            )?;
        }
        Command::Gc => {
            let bar = super::output::progress_bar(None, "collecting garbage");
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let report = backend.ops().gc().await;
            bar.finish_and_clear();
            let report = report?;
            let mut text = format!(
                "removed {} blocks ({} bytes); kept {} blocks reachable from pins",
                report.removed_blocks, report.removed_bytes, report.live_blocks
            );
            if report.missing_blocks > 0 {
                text.push_str(&format!(
                    "\nwarning: pins link to {} blocks this repository does not have",
                    report.missing_blocks
                ));
            }
            out.print(text, serde_json::to_value(&report)?)?;
        }
        _ => unreachable!("collection commands are run by cli::collection"),
    }
    Ok(())
}
