//! Runs node/benches/baselines.py (faiss, hnswlib) on the same data, one process per library.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::{
    data::{write_npy_f32, Dataset, Measure, K},
    engines::{EF_CONSTRUCTION, M},
};

pub const LIBS: [&str; 2] = ["faiss", "hnswlib"];

#[derive(Debug, Deserialize)]
pub struct LibRun {
    pub ef: usize,
    pub seconds: f64,
    pub ids: Vec<Vec<i64>>,
}

/// What the script reports for one library.
#[derive(Debug, Deserialize)]
pub struct LibResult {
    pub lib: String,
    pub version: String,
    pub build_s: f64,
    pub rss_after_load_kb: u64,
    pub hwm_kb: u64,
    pub runs: Vec<LibRun>,
}

impl LibResult {
    pub fn run(&self, ef: usize) -> Option<&LibRun> {
        self.runs.iter().find(|r| r.ef == ef)
    }
}

impl LibRun {
    pub fn qps(&self) -> f64 {
        self.ids.len() as f64 / self.seconds
    }

    /// The ids as u64 (faiss pads missing results with -1, which never matches).
    pub fn ids_u64(&self) -> Vec<Vec<u64>> {
        self.ids
            .iter()
            .map(|row| row.iter().filter(|i| **i >= 0).map(|i| *i as u64).collect())
            .collect()
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baselines.py")
}

/// Whether python3 with numpy, faiss and hnswlib is there; prints how to get them if not.
pub fn available() -> bool {
    let out = Command::new("python3")
        .arg(script())
        .arg("--check")
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let versions = String::from_utf8_lossy(&out.stdout);
            println!("baselines: python3 with {}", versions.trim());
            true
        }
        Ok(out) => {
            println!(
                "baselines skipped: {}\n  (install with: pip install faiss-cpu hnswlib numpy)",
                String::from_utf8_lossy(&out.stdout).trim()
            );
            false
        }
        Err(e) => {
            println!(
                "baselines skipped: cannot run python3 ({e}); install Python 3, then: pip install faiss-cpu hnswlib numpy"
            );
            false
        }
    }
}

/// Writes base.npy and queries.npy (f32) into `dir`.
pub fn write_inputs(dir: &Path, data: &Dataset) -> Result<()> {
    write_npy_f32(
        &dir.join("base.npy"),
        data.len(),
        data.dim,
        (0..data.len()).flat_map(|i| data.vector(i)),
    )?;
    write_npy_f32(
        &dir.join("queries.npy"),
        data.queries_len(),
        data.dim,
        data.queries_f32().into_iter().flatten(),
    )
}

/// Runs the script for `lib` and reads its results.
pub fn run(dir: &Path, lib: &str, efs: &[usize], measure: Measure) -> Result<LibResult> {
    let out = dir.join(format!("results-{lib}.json"));
    let efs: Vec<String> = efs.iter().map(|e| e.to_string()).collect();
    let status = Command::new("python3")
        .arg(script())
        .args(["--dir", &dir.to_string_lossy(), "--lib", lib])
        .args(["--m", &M.to_string()])
        .args([
            "--metric",
            match measure {
                Measure::L2 => "l2",
                Measure::Cosine => "cosine",
            },
        ])
        .args(["--ef-construction", &EF_CONSTRUCTION.to_string()])
        .args(["--efs", &efs.join(","), "--k", &K.to_string()])
        .args(["--repeats", &crate::engines::REPEATS.to_string()])
        .args(["--out", &out.to_string_lossy()])
        // One thread for OpenMP and BLAS too, whatever the libraries decide by themselves.
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .status()
        .context("running python3")?;
    if !status.success() {
        bail!("baselines.py --lib {lib} failed ({status})");
    }
    let text = std::fs::read_to_string(&out).with_context(|| format!("{}", out.display()))?;
    Ok(serde_json::from_str(&text)?)
}
