//! Parquet bridge throughput: 1M seeded 128-d points written by the Parquet sink (export),
//! the same file read back by the Parquet source (import), and `pyarrow.parquet.read_table`
//! timed on that file in the same run.
//!
//! ```text
//! cargo bench -p ipvec-node --bench bridges_parquet
//! cargo bench -p ipvec-node --bench bridges_parquet -- --points 100000 --dim 64
//! ```
//!
//! The points come from a seeded generator, made outside the timed part; batches are the
//! driver's default (1,000 points). pyarrow is `IPVEC_TEST_PYTHON`, or the venv `.ci/run`
//! makes. It prints numbers and asserts nothing about time.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ipvec_node::bridge::{
    migrate::DEFAULT_BATCH,
    parquet::{ParquetSink, ParquetSource},
    BridgeOptions, Shape, Sink, Source,
};
use ipvec_protocol::{
    api::{PointId, PointIn},
    manifest::Metric,
};

/// `n` points of `dim` components from index `start` of a fixed sequence.
fn points(start: u64, n: usize, dim: usize) -> Vec<PointIn> {
    (start..start + n as u64)
        .map(|i| {
            let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let vector = (0..dim)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect();
            PointIn::vector(PointId::Int(i), vector, None)
        })
        .collect()
}

fn python() -> PathBuf {
    match std::env::var_os("IPVEC_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(&std::env::var("HOME").unwrap_or_default())
            .join(".cache/ipvec-venv/bin/python"),
    }
}

fn flag(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context(format!("{name} needs a number"))?
            .parse()
            .context(format!("{name} needs a number")),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n = flag(&args, "--points", 1_000_000)?;
    let dim = flag(&args, "--dim", 128)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.parquet");
    let shape = Shape {
        dimension: dim as u32,
        metric: Metric::L2,
        count: Some(n as u64),
    };
    let options = BridgeOptions::default();

    // Export: the sink, fed batches made beforehand (generation is not timed).
    let mut sink = ParquetSink::new(&path, &options);
    let mut writing = Duration::ZERO;
    runtime.block_on(async {
        let started = Instant::now();
        sink.begin(&shape, false).await?;
        writing += started.elapsed();
        let mut done = 0;
        while done < n {
            let batch = points(done as u64, DEFAULT_BATCH.min(n - done), dim);
            let started = Instant::now();
            sink.write(&batch).await?;
            writing += started.elapsed();
            done += batch.len();
        }
        let started = Instant::now();
        sink.finish().await?;
        writing += started.elapsed();
        anyhow::Ok(())
    })?;
    let bytes = std::fs::metadata(&path)?.len();

    // Import: the source, read whole.
    let mut source = ParquetSource::new(&path, &options);
    let started = Instant::now();
    let read = runtime.block_on(async {
        source.shape().await?;
        let mut read = 0usize;
        loop {
            let batch = source.next_batch(DEFAULT_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            read += batch.len();
        }
        anyhow::Ok(read)
    })?;
    let reading = started.elapsed();
    if read != n {
        bail!("read {read} points of {n}");
    }

    // pyarrow on the same file.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parquet/tables.py");
    let out = Command::new(python())
        .arg(&script)
        .arg("time")
        .arg(&path)
        .output()
        .context("running pyarrow (.ci/run installs it into ~/.cache/ipvec-venv)")?;
    if !out.status.success() {
        bail!(
            "pyarrow failed: {} (.ci/run installs pyarrow into ~/.cache/ipvec-venv)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pyarrow: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let pyarrow_seconds = pyarrow["seconds"].as_f64().unwrap_or(f64::NAN);

    println!("Parquet bridge, {n} points × {dim} float32, snappy, {bytes} bytes");
    println!("| what | seconds | vectors/s |");
    println!("| ---- | ------: | --------: |");
    let row = |what: &str, seconds: f64| {
        println!("| {what} | {seconds:.3} | {:.0} |", n as f64 / seconds);
    };
    row(
        "export: ParquetSink (begin, write, finish)",
        writing.as_secs_f64(),
    );
    row(
        "import: ParquetSource (shape, next_batch)",
        reading.as_secs_f64(),
    );
    row("pyarrow.parquet.read_table, same file", pyarrow_seconds);
    Ok(())
}
