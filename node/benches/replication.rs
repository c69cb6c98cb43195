//! Replication between two daemons on loopback: a 1,000,000 × 128 f32 collection fetched by a
//! second node over Bitswap, the seconds until that node is caught up (its index built and
//! searchable), and the bytes a 1% update moves when the replica follows the writer's
//! gossiped head. The physical reference, loopback TCP throughput for the same number of
//! bytes, is measured in the same run.
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
//! Steps, timed separately: (1) `POST /v1/dag/fetch` of the collection's current manifest on
//! the replica, from the writer's address (Bitswap only: every block hashed, stored, pinned);
//! (2) `POST /v1/collections/fetch` by collection id (the head, nothing left to move, then the
//! read-only replica opens and builds its HNSW index from the trees); (3) the writer rewrites
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
use daemon::start_daemon;
use ipvec_node::{
    api::{
        types::{CreateCollection, PointId, PointIn},
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
        let config = repo.config().clone();
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
    let (_writer_daemon, writer_url) = start_daemon(&writer_repo)?;
    let (_replica_daemon, replica_url) = start_daemon(&replica_repo)?;
    let writer = Client::new(&writer_url, None)?;
    let replica = Client::new(&replica_url, None)?;

    runtime.block_on(async {
        let info = writer.collection_info("vectors").await?;
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
        // (2) The collection by id: the head, then the replica's index.
        let started = Instant::now();
        let replicated = replica
            .fetch_collection(&info.id, Some("vectors".into()), &from, None)
            .await?;
        let open = started.elapsed().as_secs_f64();
        if replicated.root != info.root {
            bail!("the replica serves {} not {}", replicated.root, info.root);
        }
        let tcp = loopback_tcp(fetched.bytes)?;
        let bytes = fetched.bytes as f64;

        // (3) A 1% update, followed over gossipsub.
        let changed = (count / 100).max(1);
        let before = bitswap_total(&replica_url, "bytes_received").await?;
        let moved: Vec<f32> = data[..changed * DIM].iter().map(|x| x + 0.5).collect();
        let started = Instant::now();
        for start in (0..changed).step_by(BATCH) {
            writer
                .upsert("vectors", points(&moved, start..(start + BATCH).min(changed)))
                .await?;
        }
        let new_root = writer.collection_log("vectors").await?.versions[0]
            .root
            .clone();
        let written = started.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(600);
        while replica.collection_info("vectors").await?.root != new_root {
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
        println!("| replica opens it (head, index build) | {open:.2} | | |");
        println!(
            "| caught up (fetch + open) | {:.2} | | {:.0} |",
            transfer + open,
            mb(bytes) / (transfer + open)
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
