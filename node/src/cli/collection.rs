//! Commands on collections and points.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;

use super::{
    backend::Backend,
    carfile::{self, ImportAs, Imported},
    input,
    output::{progress_bar, utc_time, Output},
    CollectionCommand, Command, WritersCommand,
};
use crate::{
    api::{
        types::{CollectionInfo, CollectionQuota, CreateCollection, PointId, PointIn},
        ExportTarget,
    },
    ops::{points::parse_point_id, Error},
};

/// A response as JSON, printed as the daemon sends it (through text, so f32 scores print in
/// their shortest form rather than widened to f64).
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_string(value)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn info_text(c: &CollectionInfo) -> String {
    let mut state = c.state.clone().unwrap_or_default();
    if let Some(percent) = c.sync_percent {
        state += &format!(" {percent:.0}%");
    }
    if let Some(lag) = c.lag.filter(|lag| *lag > 0) {
        state += &format!(", {lag} versions behind");
    }
    // A node of this version always says; the manifest's default if one does not.
    let wanted = c.replication_factor.unwrap_or(1);
    let replicas = match c.replicas {
        Some(n) => format!("{n} of {wanted} (DHT providers)"),
        None => format!("{wanted} wanted (counted by a running daemon)"),
    };
    format!(
        "{}\nstate:        {state}\nreplicas:     {replicas}",
        fields_text(c)
    )
}

fn fields_text(c: &CollectionInfo) -> String {
    format!(
        "name:         {}\nid:           {}\nroot:         {}\nversion:      {}\npoints:       {}\ndimension:    {}\nmetric:       {}\nquantization: {}\nhnsw:         m={} ef_construction={} ef_search={}{}\nshards:       {}\nindex memory: {} bytes\nlog:          {} bytes{}",
        c.name, c.id, c.root, c.version, c.points, c.dim, c.metric, c.quantization,
        c.hnsw.m, c.hnsw.ef_construction, c.hnsw.ef_search,
        if c.hnsw.codes { " codes (walks on one-byte codes, scores on f32)" } else { "" }, c.shards, c.index_memory_bytes,
        c.wal_bytes, if c.writable { "" } else { "\nread-only:    imported without its owner key" }
    ) + &held_text(c)
        + &c.embedding.as_ref().map_or(String::new(), |m| {
            format!("\nembedding:    {} (texts and questions are embedded with it)", m.id())
        })
        + &quota_text(&c.quota)
        + &writers_text(c)
        + &index_text(c)
}

/// Where the index came from, and the snapshot the version names.
fn index_text(c: &CollectionInfo) -> String {
    let source = match c.index_source.as_deref() {
        Some("snapshot") => "loaded from the writer's published snapshot",
        Some("cache") => "loaded from this node's saved copy",
        Some("built") => "built from the trees",
        _ => return String::new(),
    };
    let snapshot = c.index_snapshot.as_deref().map_or(String::new(), |cid| {
        format!(
            "
snapshot:     {cid} (the index published with this version)"
        )
    });
    format!(
        "
index:        {source}{snapshot}"
    )
}

/// With more writers than the owner: how many, the newest head merged from each, and the
/// merged root (equal on every node that merged the same heads).
fn writers_text(c: &CollectionInfo) -> String {
    if c.writers.len() <= 1 && c.writer_heads.len() <= 1 {
        return String::new();
    }
    let mut text = format!(
        "\nwriters:      {} (`ipvec collection writers ls {}`)",
        c.writers.len(),
        c.name
    );
    for head in &c.writer_heads {
        text += &format!("\n  {}  version {}  {}", head.writer, head.seq, head.root);
    }
    if let Some(root) = &c.merged_root {
        text += &format!("\nmerged root:  {root}");
    }
    text
}

/// A line naming the collection's own quota, when it has one.
fn quota_text(q: &CollectionQuota) -> String {
    let mut parts = Vec::new();
    if q.max_points > 0 {
        parts.push(format!("{} points", q.max_points));
    }
    if q.max_bytes > 0 {
        parts.push(format!("{} vector bytes", q.max_bytes));
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!("\nquota:        at most {}", parts.join(", ")),
    }
}

/// A line naming the shards held, for a partial replica (nothing when all are held).
fn held_text(c: &CollectionInfo) -> String {
    match &c.held_shards {
        Some(held) if held.len() < c.shards => format!(
            "\nheld:         shards {} of {} (a partial replica: searches cover these)",
            crate::collection::list_shards(held),
            c.shards
        ),
        _ => String::new(),
    }
}

/// Runs a collection or point command (but `search`).
pub async fn run(backend: &Backend, out: &Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Collection(CollectionCommand::Create {
            name,
            dim,
            embedding,
            metric,
            quantization,
            m,
            ef_construction,
            ef_search,
            codes,
            shards,
            replication,
            max_points,
            max_bytes,
        }) => {
            let request = CreateCollection {
                name: name.clone(),
                dim: dim.unwrap_or(0),
                embedding,
                metric: metric.into(),
                quantization: quantization.into(),
                m,
                ef_construction,
                ef_search,
                codes,
                shards,
                replication,
                max_points,
                max_bytes,
            };
            let c = backend.ops().create_collection(request).await?;
            out.print(
                format!("created collection {name} ({})\nroot {}", c.id, c.root),
                to_json(&c),
            )?;
        }
        Command::Collection(CollectionCommand::List) => {
            let list = backend.ops().list_collections().await?;
            let text: Vec<String> = list
                .collections
                .iter()
                .map(|c| {
                    format!(
                        "{}\t{} points\tdim {}\t{}\t{}",
                        c.name, c.points, c.dim, c.metric, c.root
                    )
                })
                .collect();
            if out.json || !text.is_empty() {
                out.print(text.join("\n"), to_json(&list))?;
            }
        }
        Command::Collection(CollectionCommand::Info { name }) => {
            let c = backend.ops().collection_info(&name).await?;
            out.print(info_text(&c), to_json(&c))?;
        }
        Command::Collection(CollectionCommand::Quota {
            name,
            max_points,
            max_bytes,
        }) => {
            let now = backend.ops().collection_info(&name).await?.quota;
            let set = match (max_points, max_bytes) {
                (None, None) => now,
                _ => {
                    let quota = CollectionQuota {
                        max_points: max_points.unwrap_or(now.max_points),
                        max_bytes: max_bytes.unwrap_or(now.max_bytes),
                    };
                    backend.ops().set_quota(&name, quota).await?
                }
            };
            let says = |n: u64, what: &str| match n {
                0 => format!("no {what} of its own"),
                n => format!("at most {n} {what}"),
            };
            out.print(
                format!(
                    "collection {name}: {}, {}",
                    says(set.max_points, "points"),
                    says(set.max_bytes, "vector bytes")
                ),
                to_json(&set),
            )?;
        }
        Command::Collection(CollectionCommand::Members { name }) => {
            let m = backend.ops().membership(&name).await?;
            out.print(members_text(&m), serde_json::to_value(&m)?)?;
        }
        Command::Collection(CollectionCommand::Shards { name }) => {
            let map = backend.ops().shard_map(&name).await?;
            let mut text = vec![format!(
                "collection {} ({}): {} shards, {} holders wanted each",
                map.name,
                map.id,
                map.shards.len(),
                map.replication
            )];
            for s in &map.shards {
                let short = if s.live < map.replication {
                    "  UNDER-REPLICATED"
                } else {
                    ""
                };
                text.push(format!(
                    "shard {}: {} points, root {}, {} of {} live{short}{}",
                    s.shard,
                    s.points,
                    s.root,
                    s.live,
                    map.replication,
                    s.moving
                        .as_ref()
                        .map(|m| format!(", {m}"))
                        .unwrap_or_default()
                ));
                if !s.placed.is_empty() {
                    text.push(format!("  placed on members: {}", s.placed.join(" ")));
                }
                for h in &s.holders {
                    let state = match (h.here, h.alive) {
                        (true, _) => "this node",
                        (false, true) => "alive",
                        (false, false) => "not connected",
                    };
                    text.push(format!("  {}  {state}", h.peer_id));
                }
            }
            out.print(text.join("\n"), to_json(&map))?;
        }
        Command::Collection(CollectionCommand::Writers(command)) => {
            let list = match &command {
                WritersCommand::Ls { name } => backend.ops().writers(name).await?,
                WritersCommand::Add { name, key } => {
                    backend.ops().change_writer(name, key, true).await?
                }
                WritersCommand::Rm { name, key } => {
                    backend.ops().change_writer(name, key, false).await?
                }
            };
            let mut text: Vec<String> = Vec::new();
            if let WritersCommand::Add { key, .. } | WritersCommand::Rm { key, .. } = &command {
                let did = match (&command, list.changed) {
                    (WritersCommand::Add { .. }, true) => "now allowed",
                    (WritersCommand::Add { .. }, false) => "already allowed",
                    (_, true) => "no longer allowed",
                    (_, false) => "was not allowed",
                };
                text.push(format!(
                    "{key}: {did} to write collection {} (version {})",
                    list.name, list.version
                ));
            }
            text.extend(list.writers.iter().map(|w| match w.owner {
                true => format!("{}\towner", w.id),
                false => format!("{}\twriter", w.id),
            }));
            out.print(text.join("\n"), to_json(&list))?;
        }
        Command::Collection(CollectionCommand::Log { name }) => {
            let log = backend.ops().collection_log(&name).await?;
            let text: Vec<String> = log
                .versions
                .iter()
                .map(|v| {
                    format!(
                        "{}\t{} points\tupdated {} UTC",
                        v.root,
                        v.points,
                        utc_time(v.updated)
                    )
                })
                .collect();
            out.print(text.join("\n"), to_json(&log))?;
        }
        Command::Collection(CollectionCommand::Drop { name }) => {
            let dropped = backend.ops().drop_collection(&name).await?;
            out.print(
                format!("dropped {name}; `ipvec gc` reclaims its blocks"),
                to_json(&dropped),
            )?;
        }
        Command::Collection(CollectionCommand::Export { name, output }) => {
            let root = backend.ops().collection_info(&name).await?.root;
            let totals =
                carfile::export_to_file(backend, ExportTarget::Collection(&name), &output).await?;
            out.print(
                format!("exported {name} (root {root}) as {} blocks, {} bytes, to {}", totals.blocks, totals.bytes, output.display()),
                json!({ "name": name, "root": root, "head": totals.root, "blocks": totals.blocks, "bytes": totals.bytes }),
            )?;
        }
        Command::Collection(CollectionCommand::Import { file, name }) => {
            let Imported::Collection(c) =
                carfile::import_file(backend, &file, ImportAs::Collection(name)).await?
            else {
                bail!("the import did not register a collection");
            };
            out.print(
                format!(
                    "imported collection {} ({} points, root {}){}",
                    c.name,
                    c.points,
                    c.root,
                    if c.writable { "" } else { ", read-only" }
                ),
                to_json(&c),
            )?;
        }
        Command::Add {
            name,
            file,
            text,
            id,
            no_store_text,
            ids,
            batch,
        } => {
            let (mut points, unit, origin) = match file {
                Some(file) => {
                    let (points, unit) = read_points(&file, ids.as_deref())?;
                    (points, unit, file.display().to_string())
                }
                None => (text_points(text, id)?, "text", "--text".to_string()),
            };
            let texts = points.iter().any(|(_, p)| p.text.is_some());
            if !no_store_text {
                points.iter_mut().for_each(|(_, p)| p.keep_text());
            }
            let batch = batch.unwrap_or(if texts { 64 } else { 1_000 });
            add(backend, out, &name, &origin, points, unit, batch).await?
        }
        Command::Get { name, id } => {
            let point = backend.ops().get_point(&name, parse_point_id(&id)?).await?;
            out.print(
                format!(
                    "id: {}\nvector: {:?}\nmetadata: {}\nleaf: {}",
                    point.id.spelled(),
                    point.vector,
                    point.metadata.clone().unwrap_or(serde_json::Value::Null),
                    point
                        .cid
                        .clone()
                        .unwrap_or_else(|| "(in the write-ahead log)".to_string())
                ),
                to_json(&point),
            )?;
        }
        Command::Delete { name, ids } => {
            let ids = ids
                .iter()
                .map(|s| parse_point_id(s))
                .collect::<Result<Vec<PointId>, _>>()?;
            let report = backend.ops().delete(&name, ids).await?;
            let version = Version::after_write(backend, &name).await?;
            out.print(
                format!(
                    "deleted {} points; {} remain; {}",
                    report.changed,
                    report.points,
                    version.text()
                ),
                json!({ "deleted": report.changed, "points": report.points, "root": version.root, "committed": version.committed }),
            )?;
        }
        _ => unreachable!("only collection and point commands come here"),
    }
    Ok(())
}

/// The points of `file` (.jsonl, or .npy / .fvecs rows with `ids`), each with its line or
/// row number, and which of the two it is.
fn read_points(
    file: &Path,
    ids: Option<&Path>,
) -> anyhow::Result<(Vec<(usize, PointIn)>, &'static str)> {
    if file.extension().and_then(|e| e.to_str()) == Some("jsonl") {
        if ids.is_some() {
            bail!("--ids is for .npy and .fvecs files; .jsonl lines carry their own ids");
        }
        return Ok((input::read_jsonl(file)?, "line"));
    }
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
        None => (0..vectors.len() as u64).map(PointId::Int).collect(),
    };
    let points = ids
        .into_iter()
        .zip(vectors)
        .enumerate()
        .map(|(row, (id, vector))| (row, PointIn::vector(id, vector, None)))
        .collect();
    Ok((points, "row"))
}

/// Points of `--text` texts, numbered from 1; the one text may have its `id`.
fn text_points(texts: Vec<String>, id: Option<String>) -> anyhow::Result<Vec<(usize, PointIn)>> {
    let id = match id {
        Some(_) if texts.len() > 1 => bail!("--id names the id of one --text; give one text"),
        Some(id) => Some(parse_point_id(&id)?),
        None => None,
    };
    Ok(texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let id = id.clone().unwrap_or_else(|| PointId::of_text(&text));
            (i + 1, PointIn::text(id, text))
        })
        .collect())
}

/// Adds `points` (from `origin`, each numbered by its `unit`) in batches of `batch`, with a
/// progress bar.
async fn add(
    backend: &Backend,
    out: &Output,
    name: &str,
    origin: &str,
    points: Vec<(usize, PointIn)>,
    unit: &str,
    batch: usize,
) -> anyhow::Result<()> {
    // Fail early, before a progress bar, if the collection is not there.
    backend.ops().collection_info(name).await?;
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
        match backend.ops().upsert(name, chunk).await {
            Ok(_) => {}
            Err(Error::BadPoint { point: bad, .. }) if bad.position < n => {
                bar.finish_and_clear();
                bail!(
                    "{origin} {unit} {}: point {}: {}; nothing from this batch ({unit}s {}..={}) was stored{}",
                    places[bad.position],
                    bad.id,
                    bad.reason,
                    places[0],
                    places[n - 1],
                    if done > 0 { format!(", the {done} points before it were added") } else { String::new() }
                )
            }
            Err(e) => {
                bar.finish_and_clear();
                return Err(e)
                    .with_context(|| format!("points {}..{} of {origin}", done, done + n));
            }
        }
        done += n;
        bar.set_position(done as u64);
    }
    bar.finish_and_clear();
    let version = Version::after_write(backend, name).await?;
    out.print(
        format!(
            "added {total} points to {name}; {} points; {}",
            version.points,
            version.text()
        ),
        json!({ "added": total, "points": version.points, "root": version.root, "committed": version.committed }),
    )
}

/// Where a collection's writes stand once a command has made them: committed into a version
/// (its root), or in the daemon's log until its next commit.
#[derive(Debug)]
struct Version {
    /// The latest committed version's manifest CID.
    root: String,
    /// Live points.
    points: u64,
    /// Whether every acknowledged write is in `root`.
    committed: bool,
    /// For writes still in the log: how often the daemon commits, in milliseconds.
    commit_interval_ms: Option<u64>,
}

impl Version {
    async fn after_write(backend: &Backend, name: &str) -> anyhow::Result<Version> {
        let info = backend.committed_info(name).await?;
        let committed = info.wal_bytes == 0;
        let commit_interval_ms = match committed {
            true => None,
            // Only to say when; a daemon that will not tell is no reason to fail the command.
            false => backend
                .ops()
                .config()
                .await
                .ok()
                .map(|c| c.storage.commit_interval_ms),
        };
        Ok(Version {
            root: info.root,
            points: info.points,
            committed,
            commit_interval_ms,
        })
    }

    fn text(&self) -> String {
        if self.committed {
            return format!("root {}", self.root);
        }
        let when = match self.commit_interval_ms {
            Some(ms) => format!("within {} (storage.commit_interval_ms)", millis_text(ms)),
            None => "soon".to_string(),
        };
        format!(
            "pending in the daemon's log (durable and searchable), committed into a new version \
             {when}; the current root, {}, does not hold it yet",
            self.root
        )
    }
}

/// `250` → `250 ms`, `1500` → `1.5 s`, `2000` → `2 s`, `600000` → `10 min`.
fn millis_text(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        _ if ms.is_multiple_of(60_000) => format!("{} min", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{} s", ms / 1000),
        _ => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// What `collection members` prints.
fn members_text(m: &ipvec_protocol::api::MembershipInfo) -> String {
    let mut text = vec![format!(
        "collection {} ({}): this node is {}{}, {} members",
        m.name,
        m.id,
        m.state,
        if m.capacity > 0 {
            format!(" with {} bytes", m.capacity)
        } else {
            String::new()
        },
        m.members.len()
    )];
    for member in &m.members {
        text.push(format!(
            "  {}  {} bytes, holds {:?}{}",
            member.peer_id,
            member.capacity,
            member.holds,
            if member.here { "  (this node)" } else { "" }
        ));
    }
    for s in &m.shards {
        let here = match (s.placed, s.current, s.fetching, s.held) {
            (_, _, true, _) => "fetching",
            (true, true, _, _) => "held",
            (false, _, _, true) => "handing over",
            (true, false, _, _) => "placed here, waiting",
            (false, _, _, false) => "-",
        };
        text.push(format!(
            "shard {}: {here}, {} of {} holders",
            s.shard, s.holders, s.replication
        ));
    }
    text.join("\n")
}
