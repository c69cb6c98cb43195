//! Bridges: FAISS file throughput. A 1,000,000 × 128 f32 index written by the FAISS sink
//! (export), read back by the FAISS source (import side, file only), and read by
//! `faiss.read_index` in the same run for reference; then a full import of a smaller file into
//! an ipvec collection (`bridge::migrate`, verification included).
//!
//! ```text
//! bash .ci/run          # or: pip install faiss-cpu==1.15.1 numpy==2.4.6 into the venv
//! cargo bench -p ipvec-node --bench bridges
//! cargo bench -p ipvec-node --bench bridges -- --points 200000 --import 20000   # quicker
//! ```
//!
//! Vectors are seeded floats: the bench measures file I/O, not search quality. It prints
//! numbers and asserts nothing about time.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use ipvec_node::{
    bridge::{faiss, migrate, BridgeOptions, Endpoint, Migration, Shape},
    ops::Node,
    repo::Repo,
};
use ipvec_protocol::{
    api::{PointId, PointIn},
    manifest::Metric,
};

const DIM: usize = 128;
const BATCH: usize = 10_000;

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .context("a number after the flag")?
            .parse()
            .with_context(|| format!("{name} takes a number")),
    }
}

fn seeded(n: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n * DIM)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Writes `vectors` through the FAISS sink; the seconds the sink took.
async fn export(path: &Path, vectors: &[f32]) -> Result<f64> {
    let n = vectors.len() / DIM;
    let shape = Shape {
        dimension: DIM as u32,
        metric: Metric::L2,
        count: Some(n as u64),
    };
    let batches: Vec<Vec<PointIn>> = vectors
        .chunks(BATCH * DIM)
        .enumerate()
        .map(|(b, chunk)| {
            chunk
                .chunks_exact(DIM)
                .enumerate()
                .map(|(i, v)| {
                    PointIn::vector(PointId::Int((b * BATCH + i) as u64), v.to_vec(), None)
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut sink = faiss::sink(path, &BridgeOptions::default())?;
    sink.begin(&shape, false).await?;
    for batch in &batches {
        sink.write(batch).await?;
    }
    sink.finish().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Reads the file through the FAISS source; the seconds and the points read.
async fn read(path: &Path) -> Result<(f64, u64)> {
    let started = Instant::now();
    let mut source = faiss::source(path, &BridgeOptions::default())?;
    source.shape().await?;
    let mut points = 0u64;
    loop {
        let batch = source.next_batch(BATCH).await?;
        if batch.is_empty() {
            break;
        }
        points += batch.len() as u64;
    }
    Ok((started.elapsed().as_secs_f64(), points))
}

fn python() -> PathBuf {
    match std::env::var_os("IPVEC_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/ipvec-venv/bin/python"),
    }
}

/// Seconds `faiss.read_index` takes for `path`, measured inside Python.
fn faiss_read_seconds(path: &Path) -> Result<f64> {
    let script = "import sys, time, faiss\n\
                  t = time.perf_counter()\n\
                  index = faiss.read_index(sys.argv[1])\n\
                  print(time.perf_counter() - t, index.ntotal)";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(path)
        .output()
        .context("running python")?;
    if !out.status.success() {
        bail!(
            "faiss.read_index failed (is faiss-cpu in the venv? .ci/run installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .context("no time printed")?
        .parse()
        .context("a time in seconds")
}

#[tokio::main]
async fn main() -> Result<()> {
    let points = arg("--points", 1_000_000)?;
    let import = arg("--import", 100_000)?;
    let dir = tempfile::tempdir()?;
    println!("# ipvec bridges benchmark: FAISS files ({DIM}-d f32, seeded)");

    let vectors = seeded(points);
    let path = dir.path().join("big.index");
    let write_s = export(&path, &vectors).await?;
    drop(vectors);
    let bytes = std::fs::metadata(&path)?.len();
    let (read_s, read_n) = read(&path).await?;
    let faiss_s = faiss_read_seconds(&path)?;
    let rate = |n: usize, s: f64| n as f64 / s;
    println!(
        "file: {points} × {DIM}, {:.0} MiB",
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "export (FAISS sink, IxM2 over IxF2): {write_s:.2} s, {:.0} vectors/s",
        rate(points, write_s)
    );
    println!(
        "read (FAISS source, {read_n} points): {read_s:.2} s, {:.0} vectors/s",
        rate(points, read_s)
    );
    println!(
        "faiss.read_index (same file, for reference): {faiss_s:.2} s, {:.0} vectors/s",
        rate(points, faiss_s)
    );

    let small = dir.path().join("small.index");
    export(&small, &seeded(import)).await?;
    let repo = Repo::init(&dir.path().join("repo")).await?;
    let config = repo.config().clone();
    let node = Node::new(repo, config);
    let migration = Migration::new(
        Endpoint::parse(&format!("faiss:{}", small.display()))?,
        Endpoint::parse("ipvec:bench")?,
    );
    let started = Instant::now();
    let report = migrate(&migration, &node, &mut |_| {}).await?;
    let import_s = started.elapsed().as_secs_f64();
    node.close().await?;
    println!(
        "import into an ipvec collection ({} points, verified): {import_s:.2} s, {:.0} vectors/s",
        report.points,
        rate(import, import_s)
    );
    Ok(())
}
