//! Peak memory per storage quantization: each configuration is built in a child process (this
//! bench run again with `--memory-child KIND`), so VmHWM is that configuration's own peak.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};
use ipvec_protocol::manifest::Quantization;
use serde::{Deserialize, Serialize};

use crate::{
    data::{self, Exact, Measure},
    engines,
    util::{proc_status_kb, Stopwatch},
};

/// ef of the recall measurement.
pub const EF: usize = 128;
const MARKER: &str = "MEMORY-RESULT ";

/// The configurations: engine, quantization, metric (i8 needs cosine in ipvec).
pub const KINDS: [&str; 7] = [
    "ipvec-f32",
    "ipvec-codes",
    "ipvec-f16",
    "ipvec-i8",
    "raw-f32",
    "raw-f16",
    "raw-i8",
];

/// The engine (ipvec or raw usearch), quantization and metric of a kind, and whether its graph
/// walks on codes.
fn parse_kind(kind: &str) -> Result<(bool, Quantization, Measure, bool)> {
    let (engine, quant) = kind.split_once('-').context("kind is ENGINE-QUANT")?;
    let ipvec = match engine {
        "ipvec" => true,
        "raw" => false,
        _ => bail!("unknown engine in {kind:?}"),
    };
    let (quantization, measure) = match quant {
        "f32" | "codes" => (Quantization::F32, Measure::L2),
        "f16" => (Quantization::F16, Measure::L2),
        "i8" => (Quantization::I8, Measure::Cosine),
        _ => bail!("unknown quantization in {kind:?}"),
    };
    Ok((ipvec, quantization, measure, quant == "codes"))
}

/// Memory at one point of a child's run, from /proc/self/status.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub phase: String,
    /// Anonymous memory (heap) and file-backed pages (mapped files) in RSS.
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub hwm_kb: u64,
    /// The Rust heap: bytes live now, and the most live at once so far ([`crate::util::CountingAlloc`]).
    pub heap_kb: u64,
    pub heap_peak_kb: u64,
}

impl Snapshot {
    fn take(phase: &str) -> Self {
        Self {
            phase: phase.into(),
            rss_anon_kb: proc_status_kb("RssAnon:").unwrap_or(0),
            rss_file_kb: proc_status_kb("RssFile:").unwrap_or(0),
            hwm_kb: proc_status_kb("VmHWM:").unwrap_or(0),
            heap_kb: (crate::ALLOC.live() / 1024) as u64,
            heap_peak_kb: (crate::ALLOC.peak() / 1024) as u64,
        }
    }
}

/// One configuration's numbers.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemoryRow {
    pub kind: String,
    pub metric: String,
    pub rss_after_load_kb: u64,
    pub hwm_kb: u64,
    pub index_bytes: usize,
    pub build_s: f64,
    pub recall: f64,
    pub qps: f64,
    pub phases: Vec<Snapshot>,
}

/// Builds an ipvec collection, searches it, then drops it and shuts the store down, taking a
/// snapshot after each step.
fn run_ipvec(
    data: &data::Dataset,
    queries: &[Vec<f32>],
    (quantization, measure, codes): (Quantization, Measure, bool),
    dir: &Path,
    phases: &mut Vec<Snapshot>,
) -> Result<(f64, usize, engines::Pass)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let watch = Stopwatch::start();
        let (store, mut collection) =
            engines::create(dir, data.dim, measure, quantization, 1, codes).await?;
        engines::upsert_all(&mut collection, data).await?;
        phases.push(Snapshot::take("upserted (points in the log)"));
        engines::checkpoint(&mut collection).await?;
        let build = watch.stop().secs();
        phases.push(Snapshot::take("checkpointed"));
        let pass = engines::search_ipvec(&collection, queries, EF, None).await?;
        phases.push(Snapshot::take("searched"));
        let bytes = collection.index_memory();
        drop(collection);
        phases.push(Snapshot::take("collection dropped"));
        store.shutdown().await?;
        drop(store);
        phases.push(Snapshot::take("store shut down"));
        anyhow::Ok((build, bytes, pass))
    })
}

fn run_raw(
    data: &data::Dataset,
    queries: &[Vec<f32>],
    quantization: Quantization,
    measure: Measure,
    phases: &mut Vec<Snapshot>,
) -> Result<(f64, usize, engines::Pass)> {
    use ipvec_node::index::VectorIndex;
    let mut index = engines::raw_index(data.dim, measure, quantization, Default::default())?;
    let build = engines::upsert_raw(&mut index, data, false)?.secs();
    phases.push(Snapshot::take("built"));
    let pass = engines::search_raw(&index, queries, EF)?;
    phases.push(Snapshot::take("searched"));
    let bytes = index.memory_bytes();
    drop(index);
    phases.push(Snapshot::take("index dropped"));
    Ok((build, bytes, pass))
}

/// The child: builds one configuration, searches at [`EF`], prints a [`MemoryRow`] line.
pub fn child(kind: &str, queries: usize, dir: &Path) -> Result<()> {
    let (ipvec, quantization, measure, codes) = parse_kind(kind)?;
    let data = data::load(queries)?;
    let rss_after_load_kb = proc_status_kb("VmRSS:").unwrap_or(0);
    let queries = data.queries_f32();
    let work = tempfile::Builder::new().prefix(kind).tempdir_in(dir)?;
    let mut phases = vec![Snapshot::take("data loaded")];
    let (build_s, index_bytes, pass) = match ipvec {
        true => run_ipvec(
            &data,
            &queries,
            (quantization, measure, codes),
            work.path(),
            &mut phases,
        )?,
        false => run_raw(&data, &queries, quantization, measure, &mut phases)?,
    };
    let hwm_kb = proc_status_kb("VmHWM:").unwrap_or(0);
    let truth = data::ground_truth(&data, measure, &[]);
    let recall = data::recall(&Exact::new(&data, measure), &truth[0], &pass.ids);
    let row = MemoryRow {
        kind: kind.to_string(),
        metric: format!("{measure:?}").to_lowercase(),
        rss_after_load_kb,
        hwm_kb,
        index_bytes,
        build_s,
        recall,
        qps: pass.qps(),
        phases,
    };
    println!("{MARKER}{}", serde_json::to_string(&row)?);
    Ok(())
}

/// Runs the child for `kind` and reads its row.
pub fn measure(kind: &str, queries: usize, dir: &Path) -> Result<MemoryRow> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["--memory-child", kind, "--queries", &queries.to_string()])
        .args(["--dir", &dir.to_string_lossy()])
        .output()
        .context("re-running the bench as a child")?;
    if !out.status.success() {
        bail!(
            "memory child {kind} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .context("the memory child printed no result")?;
    Ok(serde_json::from_str(line)?)
}
