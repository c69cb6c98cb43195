//! Commands on collections and points.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ipvec_protocol::Ipld;
use serde_json::json;

use super::{
    input,
    output::{progress_bar, Output},
    CollectionCommand, Command,
};
use crate::{
    collection::{catalog, Collection, CollectionError, CollectionSpec, Filter, SearchOptions},
    repo::Repo,
    store::{BlockStore, IrohBlockStore},
};

fn collections_root(repo: &Repo) -> PathBuf {
    repo.path().join("collections")
}

async fn open(repo: &Repo, name: &str) -> anyhow::Result<Collection<IrohBlockStore>> {
    let dir = catalog::dir_of(&collections_root(repo), name)?;
    Ok(Collection::open(repo.store().clone(), &dir).await?)
}

fn info_json(c: &Collection<IrohBlockStore>) -> anyhow::Result<serde_json::Value> {
    let m = c.manifest();
    Ok(json!({
        "name": m.name,
        "id": c.id()?,
        "dim": m.dimension,
        "metric": m.metric,
        "quantization": m.quantization,
        "hnsw": { "m": m.hnsw.m, "ef_construction": m.hnsw.ef_construction, "ef_search": m.hnsw.ef_search },
        "shards": m.shards.len(),
        "points": c.points(),
        "root": c.root().to_string(),
        "version": c.head().seq,
        "index_memory_bytes": c.index_memory(),
    }))
}

fn parse_vector(text: &str) -> anyhow::Result<Vec<f32>> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f32>()
                .with_context(|| format!("{s:?} in --vector is not a number"))
        })
        .collect()
}

/// Runs a collection or point command.
pub async fn run(repo: &Repo, out: &Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Collection(CollectionCommand::Create {
            name,
            dim,
            metric,
            quantization,
            m,
            ef_construction,
            ef_search,
            shards,
        }) => {
            let spec = CollectionSpec {
                name: name.clone(),
                dimension: dim,
                metric: metric.into(),
                quantization: quantization.into(),
                hnsw: ipvec_protocol::manifest::HnswParams {
                    m,
                    ef_construction,
                    ef_search,
                },
                shards,
            };
            let dir = catalog::dir_of(&collections_root(repo), &name)?;
            let c = Collection::create(repo.store().clone(), &dir, &spec).await?;
            let info = info_json(&c)?;
            out.print(
                format!("created collection {name} ({})\nroot {}", c.id()?, c.root()),
                info,
            );
            c.close().await?;
        }
        Command::Collection(CollectionCommand::List) => {
            let names = catalog::list(&collections_root(repo))?;
            let mut rows = Vec::new();
            let mut text = Vec::new();
            for name in names {
                let c = open(repo, &name).await?;
                let m = c.manifest();
                text.push(format!(
                    "{name}\t{} points\tdim {}\t{:?}\t{}",
                    c.points(),
                    m.dimension,
                    m.metric,
                    c.root()
                ));
                rows.push(info_json(&c)?);
                c.close().await?;
            }
            if out.json || !rows.is_empty() {
                out.print(text.join("\n"), json!({ "collections": rows }));
            }
        }
        Command::Collection(CollectionCommand::Info { name }) => {
            let c = open(repo, &name).await?;
            let info = info_json(&c)?;
            let m = c.manifest();
            out.print(
                format!(
                    "name:         {}\nid:           {}\nroot:         {}\nversion:      {}\npoints:       {}\ndimension:    {}\nmetric:       {:?}\nquantization: {:?}\nhnsw:         m={} ef_construction={} ef_search={}\nshards:       {}\nindex memory: {} bytes",
                    m.name, c.id()?, c.root(), c.head().seq, c.points(), m.dimension, m.metric, m.quantization,
                    m.hnsw.m, m.hnsw.ef_construction, m.hnsw.ef_search, m.shards.len(), c.index_memory()
                ),
                info,
            );
            c.close().await?;
        }
        Command::Collection(CollectionCommand::Log { name }) => {
            let c = open(repo, &name).await?;
            let mut versions = Vec::new();
            let mut text = Vec::new();
            for (cid, m) in c.versions().await? {
                text.push(format!("{cid}\t{} points\tupdated {}", m.points, m.updated));
                versions.push(
                    json!({ "root": cid.to_string(), "points": m.points, "updated": m.updated }),
                );
            }
            out.print(text.join("\n"), json!({ "versions": versions }));
            c.close().await?;
        }
        Command::Collection(CollectionCommand::Drop { name }) => {
            let c = open(repo, &name).await?;
            let root = c.root();
            let dir = catalog::dir_of(&collections_root(repo), &name)?;
            c.close().await?;
            repo.store()
                .unpin_name(&crate::collection::pin_name(&name))
                .await?;
            repo.store().flush().await?;
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            out.print(
                format!("dropped {name}; `ipvec gc` reclaims its blocks"),
                json!({ "dropped": name, "root": root.to_string() }),
            );
        }
        Command::Collection(CollectionCommand::Export { name, output }) => {
            let c = open(repo, &name).await?;
            let store = repo.store();
            // The CAR's root is the signed head; it links the manifest and so everything else.
            let head = store
                .put(
                    ipvec_protocol::cid::DAG_CBOR,
                    bytes::Bytes::from(ipvec_protocol::dagcbor::encode(c.head())?),
                )
                .await?;
            let totals = super::carfile::export_to_file(store, &head, &output).await?;
            out.print(
                format!("exported {name} (root {}) as {} blocks, {} bytes, to {}", c.root(), totals.blocks, totals.bytes, output.display()),
                json!({ "name": name, "root": c.root().to_string(), "head": head.to_string(), "blocks": totals.blocks, "bytes": totals.bytes }),
            );
            c.close().await?;
        }
        Command::Collection(CollectionCommand::Import { file, name }) => {
            let store = repo.store();
            let summary = super::carfile::import_file(store, &file).await?;
            let [root] = summary.roots[..] else {
                bail!(
                    "{} has {} roots; a collection export has exactly one (its signed head)",
                    file.display(),
                    summary.roots.len()
                );
            };
            let adopted = async {
                let head: ipvec_protocol::head::HeadRecord = ipvec_protocol::dagcbor::decode(&store.require(&root).await?)
                    .map_err(|_| anyhow::anyhow!("{} is not a collection export (its root is no signed head); use `ipvec dag import` for other DAGs", file.display()))?;
                let manifest: ipvec_protocol::manifest::Manifest = ipvec_protocol::dagcbor::decode(&store.require(&head.manifest).await?)?;
                let name = name.clone().unwrap_or(manifest.name);
                let dir = catalog::dir_of(&collections_root(repo), &name)?;
                anyhow::Ok((name, Collection::adopt(store.clone(), &dir, head).await?))
            }
            .await;
            // The collection's own pin (on its manifest) now keeps the DAG; the file's root pin goes.
            store.unpin(&root).await?;
            store.flush().await?;
            let (name, c) = adopted?;
            out.print(
                format!("imported collection {name} ({} points, root {}){}", c.points(), c.root(), if c.writable() { "" } else { ", read-only" }),
                json!({ "name": name, "id": c.id()?, "root": c.root().to_string(), "points": c.points(), "writable": c.writable() }),
            );
            c.close().await?;
        }
        Command::Add {
            name,
            file,
            ids,
            batch,
        } => add(repo, out, &name, &file, ids.as_deref(), batch).await?,
        Command::Search {
            name,
            vector,
            query_file,
            k,
            ef,
            exact,
            at,
            filter,
        } => {
            let queries = match (vector, query_file) {
                (Some(v), None) => vec![parse_vector(&v)?],
                (None, Some(f)) => input::read_matrix(&f)?,
                _ => bail!("give exactly one of --vector \"0.1,0.2,…\" or --query-file FILE (.npy or .fvecs)"),
            };
            let c = open(repo, &name).await?;
            let options = SearchOptions { k, ef, exact };
            let at = at.map(|s| ipvec_protocol::cid::parse_cid(&s)).transpose()?;
            let filter = filter
                .map(|f| Filter::parse(&f).and_then(Filter::compile))
                .transpose()?;
            for (i, query) in queries.iter().enumerate() {
                let hits = match &at {
                    Some(at) => c.search_at(at, query, k, filter.as_ref()).await,
                    None => c.search(query, options, filter.as_ref()).await,
                }
                .with_context(|| format!("query {i}"))?;
                if out.json {
                    let hits: Vec<serde_json::Value> = hits
                        .iter()
                        .map(|h| json!({ "id": id_json(&h.id), "score": h.score, "cid": h.leaf.map(|c| c.to_string()), "metadata": h.metadata.as_ref().map(crate::collection::points::ipld_to_json) }))
                        .collect();
                    println!("{}", json!({ "hits": hits }));
                } else {
                    if queries.len() > 1 {
                        println!("# query {i}");
                    }
                    for h in hits {
                        println!("{} {}", h.id, h.score);
                    }
                }
            }
            c.close().await?;
        }
        Command::Get { name, id } => {
            let c = open(repo, &name).await?;
            let id = input::parse_id(&id);
            let Some((entry, leaf)) = c.get(&id).await? else {
                bail!("collection {name} has no point {id}");
            };
            let vector = c.vector_of(&entry);
            let meta = entry
                .meta
                .as_ref()
                .map(crate::collection::points::ipld_to_json);
            out.print(
                format!(
                    "id: {id}\nvector: {vector:?}\nmetadata: {}\nleaf: {}",
                    meta.clone().unwrap_or(serde_json::Value::Null),
                    leaf.map_or("(in the write-ahead log)".to_string(), |c| c.to_string())
                ),
                json!({ "id": id_json(&id), "vector": vector, "metadata": meta, "cid": leaf.map(|c| c.to_string()) }),
            );
            c.close().await?;
        }
        Command::Delete { name, ids } => {
            let mut c = open(repo, &name).await?;
            let ids: Vec<_> = ids.iter().map(|s| input::parse_id(s)).collect();
            let report = c.delete(&ids).await?;
            out.print(
                format!("deleted {} points; {} remain", report.changed, report.points),
                json!({ "deleted": report.changed, "points": report.points, "root": c.root().to_string() }),
            );
            c.close().await?;
        }
        _ => unreachable!("only collection and point commands come here"),
    }
    Ok(())
}

fn id_json(id: &ipvec_protocol::entry::EntryId) -> serde_json::Value {
    match id {
        ipvec_protocol::entry::EntryId::Int(n) => json!(n),
        ipvec_protocol::entry::EntryId::Str(s) => json!(s),
    }
}

async fn add(
    repo: &Repo,
    out: &Output,
    name: &str,
    file: &Path,
    ids: Option<&Path>,
    batch: usize,
) -> anyhow::Result<()> {
    // Each point with where it came from, for error messages.
    let (points, unit): (Vec<(usize, crate::collection::Point)>, &str) =
        match file.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => {
                if ids.is_some() {
                    bail!("--ids is for .npy and .fvecs files; .jsonl lines carry their own ids");
                }
                (input::read_jsonl(file)?, "line")
            }
            _ => {
                let vectors = input::read_matrix(file)?;
                let ids = match ids {
                    Some(path) => {
                        let ids = input::read_ids(path)?;
                        if ids.len() != vectors.len() {
                            bail!(
                                "{} has {} ids for {} vectors",
                                path.display(),
                                ids.len(),
                                vectors.len()
                            );
                        }
                        ids
                    }
                    None => (0..vectors.len() as u64)
                        .map(ipvec_protocol::entry::EntryId::Int)
                        .collect(),
                };
                let points = ids
                    .into_iter()
                    .zip(vectors)
                    .enumerate()
                    .map(|(row, (id, vector))| {
                        (
                            row,
                            crate::collection::Point {
                                id,
                                vector,
                                metadata: None::<Ipld>,
                            },
                        )
                    })
                    .collect();
                (points, "row")
            }
        };
    let mut c = open(repo, name).await?;
    let total = points.len();
    let bar = progress_bar(Some(total as u64), "adding");
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} points ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut iter = points.into_iter().peekable();
    let mut done = 0usize;
    while iter.peek().is_some() {
        let (places, chunk): (Vec<usize>, Vec<_>) = iter.by_ref().take(batch.max(1)).unzip();
        let n = chunk.len();
        match c.upsert(chunk).await {
            Ok(_) => {}
            Err(CollectionError::BadPoint {
                position,
                id,
                reason,
            }) => {
                bail!(
                    "{} {unit} {}: point {id}: {reason}; nothing from this batch ({unit}s {}..={}) was stored{}",
                    file.display(),
                    places[position],
                    places[0],
                    places[n - 1],
                    if done > 0 { format!(", the {done} points before it were added") } else { String::new() }
                )
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("points {}..{} of {}", done, done + n, file.display())
                })
            }
        }
        done += n;
        bar.set_position(done as u64);
    }
    bar.finish_and_clear();
    out.print(
        format!(
            "added {total} points to {name}; {} points, root {}",
            c.points(),
            c.root()
        ),
        json!({ "added": total, "points": c.points(), "root": c.root().to_string() }),
    );
    c.close().await?;
    Ok(())
}
