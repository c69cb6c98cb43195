//! Replication between daemons on loopback: a 1,000,000 × 128 f32 collection fetched by a
//! second node over Bitswap, the seconds until that node is caught up (its index loaded from
//! the writer's published snapshot, and searchable), the same for a third node that builds its
//! index from the trees instead, and the bytes a 1% update moves when the replica follows the
//! writer's gossiped head. The physical reference, loopback TCP throughput for the same number
//! of bytes, is measured in the same run.
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench replication
//! cargo bench -p ipvec-node --bench replication -- --points 200000   # quicker
//! cargo bench -p ipvec-node --bench replication -- --writer /tmp/w --fetch-only
//! ```
//!
//! `--writer DIR` keeps the writer's repository in DIR and uses it again in later runs (built
//! once); `--fetch-only` stops after step (1) and the loopback reference.
//!
//! Data: Fashion-MNIST's 60,000 training images projected to 128 dimensions by a fixed
//! Gaussian matrix (so the vectors keep the images' structure), then repeated with a small
//! per-point offset up to the point count: real structure for HNSW, distinct vectors. The
//! writer's collection is built in process (M = 16, ef_construction = 64: the bench is about
//! moving it, and a 1M-point build at 128 takes most of the run) and committed; then two
//! `ipvec daemon` processes serve the writer's repository and an empty one.
//!
//! The writer publishes index snapshots (`storage.index_snapshot_min_points = 1`); the bench
//! waits until the one of the current trees is published before it starts the clock.
//!
//! Steps, timed separately: (1) `POST /v1/dag/fetch` of the collection's current manifest on
//! the replica, from the writer's address (Bitswap only: every block hashed, stored, pinned;
//! the index snapshot is not part of this walk); (2) `POST /v1/collections/fetch` by
//! collection id (the head and the index snapshot's chunks move, then the read-only replica
//! opens and loads the snapshot); (2b) another empty node fetches the collection with
//! `shards: [0]` (the trees only, as a partial replica does) and builds its index from them;
//! (3) the writer rewrites
//! 1% of the points (contiguous ids, new vectors) through its API and commits; the replica
//! follows the gossiped head by itself; the bench polls until the replica serves the new root
//! and counts the bytes its Bitswap received meanwhile. It prints numbers and asserts nothing
//! about time.

#[path = "shared/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "engine/data.rs"]
mod data;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use daemon::{start_daemon, start_daemon_with};
use ipvec_node::{
    api::{
        types::{CreateCollection, PointId, PointIn, SearchRequest},
        Client,
    },
    ops::{Node, Operations},
    repo::Repo,
};
use ipvec_protocol::manifest::Metric;

const DIM: usize = 128;
const BATCH: usize = 10_000;

fn points(vectors: &[f32], ids: std::ops::Range<usize>) -> Vec<PointIn> {
    ids.map(|i| PointIn {
        id: PointId::Int(i as u64),
        text: None,
        vector: vectors[i * DIM..(i + 1) * DIM].to_vec(),
        metadata: None,
    })
    .collect()
}

/// Loopback TCP: seconds to push `bytes` from one socket to another in 256 KiB writes.
fn loopback_tcp(bytes: u64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut socket, _) = listener.accept()?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match socket.read(&mut buffer)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let chunk = vec![7u8; 256 * 1024];
    let started = Instant::now();
    let mut socket = TcpStream::connect(address)?;
    let mut sent = 0u64;
    while sent < bytes {
        let n = chunk.len().min((bytes - sent) as usize);
        socket.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    drop(socket);
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    if received != bytes {
        bail!("loopback reader got {received} of {bytes} bytes");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// A Bitswap total from a daemon's `/metrics`.
async fn bitswap_total(url: &str, kind: &str) -> Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let prefix = format!("ipvec_bitswap{{kind=\"{kind}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(Ok(0.0), str::parse)?)
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn main() -> Result<()> {
    let mut count = 1_000_000usize;
    let mut fetch_only = false;
    let mut writer_dir: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--points" => count = args.next().context("--points N")?.parse()?,
            "--fetch-only" => fetch_only = true,
            "--writer" => writer_dir = Some(args.next().context("--writer DIR")?.into()),
            // cargo bench passes `--bench`.
            _ => {}
        }
    }
    // A marker written once the build is committed holds its point count: a run cut short
    // builds again.
    const BUILT: &str = "replication-bench-built";
    let kept: Option<usize> = writer_dir
        .as_ref()
        .and_then(|dir| std::fs::read_to_string(dir.join(BUILT)).ok())
        .and_then(|n| n.trim().parse().ok());
    let count = kept.unwrap_or(count);
    let tmp = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let data = data::projected(count, DIM)?;
    println!(
        "# ipvec replication benchmark\n\ndata: {count} × {DIM} f32 from Fashion-MNIST (projected, repeated), made in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The writer's collection, built in process (or kept from an earlier run in --writer DIR).
    let writer_repo = writer_dir.unwrap_or_else(|| tmp.path().join("writer"));
    if let Some(points) = kept {
        println!(
            "writer: kept in {} ({points} points)",
            writer_repo.display()
        );
    }
    runtime.block_on(async {
        if kept.is_some() {
            return anyhow::Ok(());
        }
        let repo = Repo::init(&writer_repo).await?;
        let mut config = repo.config().clone();
        config.storage.index_snapshot_min_points = 1;
        let node = Node::new(repo, config);
        node.create_collection(CreateCollection {
            metric: Metric::L2,
            ef_construction: 64,
            ..CreateCollection::new("vectors", DIM as u32)
        })
        .await?;
        let started = Instant::now();
        for start in (0..count).step_by(BATCH) {
            node.upsert("vectors", points(&data, start..(start + BATCH).min(count)))
                .await?;
        }
        node.commit("vectors").await?;
        println!(
            "writer: built and committed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        node.close().await?;
        std::fs::write(writer_repo.join(BUILT), format!("{count}\n"))?;
        anyhow::Ok(())
    })?;

    // The daemon initialises the replica's repository on its first start.
    let replica_repo = tmp.path().join("replica");
    let (_writer_daemon, writer_url) = start_daemon_with(
        &writer_repo,
        &[("IPVEC_STORAGE_INDEX_SNAPSHOT_MIN_POINTS", "1")],
    )?;
    let (_replica_daemon, replica_url) = start_daemon(&replica_repo)?;
    let builder_repo = tmp.path().join("builder");
    let (_builder_daemon, builder_url) = start_daemon(&builder_repo)?;
    let writer = Client::new(&writer_url, None)?;
    let replica = Client::new(&replica_url, None)?;
    let builder = Client::new(&builder_url, None)?;

    runtime.block_on(async {
        let from = vec![writer
            .id()
            .await?
            .addresses
            .first()
            .context("the writer has no address")?
            .clone()];

        // The writer opens its collection (loads its index) after it starts: that work is
        // done before the clock starts, not beside the fetch.
        let deadline = Instant::now() + Duration::from_secs(600);
        while !reqwest::get(format!("{writer_url}/ready")).await?.status().is_success() {
            if Instant::now() > deadline {
                bail!("the writer was not ready within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The writer publishes a snapshot of its current trees once it sees no writes for a
        // commit tick (after a restart it does not know how old the named one is).
        let started = Instant::now();
        let info = loop {
            let info = writer.collection_info("vectors").await?;
            if info.index_snapshot_lag == Some(0) {
                break info;
            }
            if Instant::now() > deadline {
                bail!("the writer published no index snapshot within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "writer: index snapshot {} of the current trees after {:.1} s (a commit tick without writes, then the publish)",
            info.index_snapshot.as_deref().unwrap_or("?"),
            started.elapsed().as_secs_f64()
        );
        // (1) The DAG over Bitswap.
        let started = Instant::now();
        let fetched = replica.dag_fetch(&info.root, &from).await?;
        let transfer = started.elapsed().as_secs_f64();
        if fetch_only {
            let tcp = loopback_tcp(fetched.bytes)?;
            let mb_fetched = mb(fetched.bytes as f64);
            println!(
                "Bitswap fetch of the whole DAG ({} blocks): {transfer:.2} s, {mb_fetched:.1} MB, {:.0} MB/s; \
                 loopback TCP, same bytes: {tcp:.2} s, {:.0} MB/s",
                fetched.blocks,
                mb_fetched / transfer,
                mb_fetched / tcp
            );
            return anyhow::Ok(());
        }
        // (2) The collection by id: the head and the index snapshot, then the replica's index.
        let received = bitswap_total(&replica_url, "bytes_received").await?;
        let started = Instant::now();
        let replicated = replica
            .fetch_collection(&info.id, Some("vectors".into()), &from, None)
            .await?;
        let open = started.elapsed().as_secs_f64();
        if replicated.root != info.root {
            bail!("the replica serves {} not {}", replicated.root, info.root);
        }
        let snapshot_bytes = bitswap_total(&replica_url, "bytes_received").await? - received;
        let source = replica.collection_info("vectors").await?.index_source;
        if source.as_deref() != Some("snapshot") {
            bail!("the replica's index came from {source:?}, not the snapshot");
        }
        let tcp = loopback_tcp(fetched.bytes)?;
        let bytes = fetched.bytes as f64;
        // The same version searched on both: the replica answers as the writer does.
        let query: Vec<f32> = data[5 * DIM..6 * DIM].to_vec();
        let ids = |found: ipvec_node::api::types::SearchResponse| {
            found.hits.into_iter().map(|h| h.id).collect::<Vec<_>>()
        };
        let theirs = ids(replica.search("vectors", SearchRequest::new(query.clone())).await?);
        if theirs != ids(writer.search("vectors", SearchRequest::new(query)).await?) {
            bail!("the replica answers differently from the writer");
        }

        // (2b) A node that fetches the trees only and builds its index from them.
        let started = Instant::now();
        builder
            .fetch_collection(&info.id, Some("vectors".into()), &from, Some(vec![0]))
            .await?;
        let built = started.elapsed().as_secs_f64();
        let source = builder.collection_info("vectors").await?.index_source;
        if source.as_deref() != Some("built") {
            bail!("the building node's index came from {source:?}");
        }

        // (3) A 1% update, followed over gossipsub.
        let changed = (count / 100).max(1);
        let before = bitswap_total(&replica_url, "bytes_received").await?;
        let old_version = writer.collection_info("vectors").await?.version;
        let moved: Vec<f32> = data[..changed * DIM].iter().map(|x| x + 0.5).collect();
        let started = Instant::now();
        for start in (0..changed).step_by(BATCH) {
            writer
                .upsert("vectors", points(&moved, start..(start + BATCH).min(changed)))
                .await?;
        }
        // The version of the writes, made by the writer's next commit tick (a snapshot of its
        // own may follow once the writes stop).
        let deadline = Instant::now() + Duration::from_secs(600);
        let new_version = loop {
            let version = writer.collection_info("vectors").await?.version;
            if version > old_version {
                break version;
            }
            if Instant::now() > deadline {
                bail!("the writer did not commit the update within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let written = started.elapsed().as_secs_f64();
        while replica.collection_info("vectors").await?.version < new_version {
            if Instant::now() > deadline {
                bail!("the replica did not follow the update within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let followed = started.elapsed().as_secs_f64();
        let delta = bitswap_total(&replica_url, "bytes_received").await? - before;

        println!("\n| step | seconds | MB | MB/s |");
        println!("| --- | ---: | ---: | ---: |");
        println!(
            "| Bitswap fetch of the whole DAG ({} blocks) | {transfer:.2} | {:.1} | {:.0} |",
            fetched.blocks,
            mb(bytes),
            mb(bytes) / transfer
        );
        println!(
            "| loopback TCP, same bytes (reference) | {tcp:.2} | {:.1} | {:.0} |",
            mb(bytes),
            mb(bytes) / tcp
        );
        println!(
            "| replica: head and index snapshot fetched, snapshot loaded | {open:.2} | {:.1} | |",
            mb(snapshot_bytes)
        );
        println!(
            "| caught up (fetch + open) | {:.2} | | {:.0} |",
            transfer + open,
            mb(bytes) / (transfer + open)
        );
        println!(
            "| another node: the trees fetched (`shards: [0]`), index built from them | {built:.2} | | |"
        );
        println!(
            "\nreplica ready: {:.2} s = {:.2}× the trees' transfer ({transfer:.2} s), {:.2}× the transfer of every block it fetched ({:.1} MB at the same rate: {:.2} s); building instead: {built:.2} s",
            transfer + open,
            (transfer + open) / transfer,
            (transfer + open) / (transfer * (bytes + snapshot_bytes) / bytes),
            mb(bytes + snapshot_bytes),
            transfer * (bytes + snapshot_bytes) / bytes
        );
        println!(
            "\n1% update ({changed} points, contiguous ids): written and committed by the writer in {written:.2} s; \
             the replica served the new root {followed:.2} s after the writes began, having fetched \
             {:.2} MB = {:.2}% of the collection's {:.1} MB",
            mb(delta),
            100.0 * delta / bytes,
            mb(bytes)
        );
        anyhow::Ok(())
    })
}
