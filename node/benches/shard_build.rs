//! Index builds on open: a collection of 1,000,000 × 128 f32 in 8 shards, its saved index
//! removed, reopened (the index of its held shards rebuilt from their trees) with one thread
//! inserting, then with one per core. Both opens run in the same process on the same store.
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench shard_build
//! cargo bench -p ipvec-node --bench shard_build -- --points 200000 --shards 4   # quicker
//! ```
//!
//! Data: Fashion-MNIST projected to 128 dimensions and repeated (as the replication bench).
//! HNSW M = 16, ef_construction = 64. The collection is built in process and committed first
//! (that time is printed too). It prints numbers and asserts nothing about time.

#[allow(dead_code)]
#[path = "engine/data.rs"]
mod data;

use std::{path::Path, time::Instant};

use anyhow::{Context, Result};
use ipvec_node::{
    collection::{Collection, CollectionSpec, OpenProgress, Point},
    index::{HnswIndex, IndexSpec},
    store::IrohBlockStore,
};
use ipvec_protocol::{
    entry::EntryId,
    manifest::{HnswParams, Metric, Quantization},
};

const DIM: usize = 128;
/// The graph of both the collection and the index the mend is timed on.
const HNSW: HnswParams = HnswParams {
    m: 16,
    ef_construction: 64,
    ef_search: 64,
    codes: false,
};
const BATCH: usize = 10_000;

/// Opens the collection with its saved indexes removed, `threads` shard builds at a time;
/// returns the seconds it took and the CPU seconds it used.
async fn rebuild(store: &IrohBlockStore, dir: &Path, threads: usize) -> Result<(f64, f64)> {
    std::fs::remove_dir_all(dir.join("index")).context("the saved indexes")?;
    let cpu = cpu_seconds();
    let started = Instant::now();
    let progress = OpenProgress::default();
    let collection = Collection::open_with(store.clone(), dir, &progress, threads).await?;
    let secs = started.elapsed().as_secs_f64();
    let used = cpu_seconds() - cpu;
    let (done, total) = progress.get();
    anyhow::ensure!(
        done == total && total == collection.points(),
        "every point indexed"
    );
    collection.close().await?;
    Ok((secs, used))
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    (tick(11).unwrap_or(0.0) + tick(12).unwrap_or(0.0)) / 100.0
}

/// The mend after a build on `threads` threads, timed apart from it: the same vectors bulk
/// loaded into an index of their own in chunks of 4,096 (as a rebuild loads them), then
/// [`HnswIndex::mend`], which walks the graph and inserts again the points it cannot reach.
fn mend_alone(data: &[f32], count: usize, threads: usize) -> Result<()> {
    let spec = IndexSpec {
        dimension: DIM,
        metric: Metric::L2,
        quantization: Quantization::F32,
        hnsw: HNSW,
    };
    let mut index = HnswIndex::new(spec)?;
    index.reserve(count)?;
    let started = Instant::now();
    for from in (0..count).step_by(4_096) {
        let chunk = (from..(from + 4_096).min(count))
            .map(|i| {
                let stored = data[i * DIM..(i + 1) * DIM]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect();
                (i as u64, stored)
            })
            .collect();
        index.add_stored(chunk, threads, &|_| {})?;
    }
    let built = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mended = index.mend()?;
    let mend = started.elapsed().as_secs_f64();
    println!(
        "\nbulk load alone on {threads} threads: {built:.1} s; then the mend: {mend:.2} s \
         ({:.1}% of the load), {mended} of {count} points inserted again",
        100.0 * mend / built
    );
    Ok(())
}

fn main() -> Result<()> {
    let (mut count, mut shards) = (1_000_000usize, 8u32);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--points" => count = args.next().context("--points N")?.parse()?,
            "--shards" => shards = args.next().context("--shards N")?.parse()?,
            _ => {}
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let data = data::projected(count, DIM)?;
    println!("# ipvec shard index build benchmark\n\ndata: {count} × {DIM} f32 from Fashion-MNIST (projected, repeated); {shards} shards; {cores} cores\n");
    runtime.block_on(async {
        let store = IrohBlockStore::open(&tmp.path().join("store")).await?;
        let dir = tmp.path().join("vectors");
        let spec = CollectionSpec {
            name: "vectors".into(),
            dimension: DIM as u32,
            embedding: None,
            metric: Metric::L2,
            quantization: Quantization::F32,
            hnsw: HNSW,
            shards,
            replication: 1,
        };
        let started = Instant::now();
        let mut collection = Collection::create(store.clone(), &dir, &spec).await?;
        for start in (0..count).step_by(BATCH) {
            let batch: Vec<Point> = (start..(start + BATCH).min(count))
                .map(|i| Point {
                    id: EntryId::Int(i as u64),
                    vector: data[i * DIM..(i + 1) * DIM].to_vec(),
                    metadata: None,
                })
                .collect();
            collection.upsert(batch).await?;
        }
        collection.close().await?;
        println!(
            "built and committed through the write path in {:.1} s\n",
            started.elapsed().as_secs_f64()
        );
        let (one, one_cpu) = rebuild(&store, &dir, 1).await?;
        let (all, all_cpu) = rebuild(&store, &dir, cores).await?;
        println!("| index rebuild on open | seconds | CPU seconds | points/s |");
        println!("|---|---:|---:|---:|");
        for (label, secs, cpu) in [
            ("one thread inserting".to_string(), one, one_cpu),
            (
                format!("{cores} threads inserting (one per core)"),
                all,
                all_cpu,
            ),
        ] {
            println!(
                "| {label} | {secs:.1} | {cpu:.1} | {:.0} |",
                count as f64 / secs
            );
        }
        println!("\nspeed-up with every core: {:.2}×", one / all);
        mend_alone(&data, count, cores)?;
        anyhow::Ok(())
    })
}
