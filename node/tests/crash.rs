//! Crash consistency: `ipvec add` processes killed with SIGKILL at random moments.
//!
//! Every batch whose process exited successfully (acknowledged) must be present afterwards;
//! a killed batch is either entirely present or entirely absent; the repository opens without
//! repair; and the HNSW index (rebuilt or cached) agrees with an exact scan of the tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use rand::{rngs::StdRng, Rng, SeedableRng};

const DIM: usize = 8;
const BATCH: u64 = 150;

fn ipvec(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .unwrap()
}

fn vector(id: u64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((id * 7 + d as u64) as f32 * 0.37).sin() + (id % 13) as f32 * 0.1)
        .collect()
}

fn write_batch(path: &Path, batch: u64) {
    let lines: Vec<String> = (batch * BATCH..(batch + 1) * BATCH)
        .map(|id| {
            serde_json::json!({"id": id, "vector": vector(id), "metadata": {"batch": batch}})
                .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

fn present(repo: &Path, id: u64) -> bool {
    let out = ipvec(repo, &["--json", "get", "c", &id.to_string()]);
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let stored: Vec<f32> = serde_json::from_value(v["vector"].clone()).unwrap();
        assert_eq!(
            stored,
            vector(id),
            "point {id} came back with another vector"
        );
        true
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no point"), "get {id} failed oddly: {err}");
        false
    }
}

#[test]
fn killed_writers_lose_nothing_acknowledged() {
    let kills: u64 = std::env::var("IPVEC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    assert!(ipvec(&repo, &["init"]).status.success());
    assert!(ipvec(
        &repo,
        &[
            "collection",
            "create",
            "c",
            "--dim",
            &DIM.to_string(),
            "--metric",
            "l2"
        ]
    )
    .status
    .success());

    let mut rng = StdRng::seed_from_u64(0x1bec);
    let mut acked = Vec::new();
    let mut killed = Vec::new();
    // Learn how long an add takes, to kill at moments spread over it.
    let file = dir.path().join("b0.jsonl");
    write_batch(&file, 0);
    let start = Instant::now();
    assert!(ipvec(&repo, &["add", "c", file.to_str().unwrap()])
        .status
        .success());
    let mut typical = start.elapsed();
    acked.push(0);

    let mut batch = 1;
    while (killed.len() as u64) < kills {
        let file = dir.path().join(format!("b{batch}.jsonl"));
        write_batch(&file, batch);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipvec"))
            .arg("--repo")
            .arg(&repo)
            .args(["add", "c", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Some writers run to the end (acknowledged); the others die at a random moment.
        let started = Instant::now();
        let finish = rng.gen_bool(0.35);
        if !finish {
            std::thread::sleep(typical.mul_f64(rng.gen_range(0.05..1.5)));
        }
        let status = if finish {
            Some(child.wait().unwrap())
        } else {
            child.try_wait().unwrap()
        };
        match status {
            Some(status) => {
                assert!(status.success(), "add of batch {batch} failed on its own");
                acked.push(batch);
                // Later writers also rebuild the index a killed writer left stale.
                typical = started.elapsed();
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed.push(batch);
            }
        }
        batch += 1;
        assert!(
            batch < kills * 20,
            "the writer never got killed mid-write; adjust the timing"
        );
    }

    // The repository opens as is, and every acknowledged batch is whole.
    let info = ipvec(&repo, &["--json", "collection", "info", "c"]);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let mut expected_points = 0;
    for b in &acked {
        for id in [b * BATCH, b * BATCH + BATCH / 2, (b + 1) * BATCH - 1] {
            assert!(present(&repo, id), "acknowledged batch {b} lost point {id}");
        }
        expected_points += BATCH;
    }
    // A killed batch is all or nothing.
    let mut killed_present = 0;
    for b in &killed {
        let first = present(&repo, b * BATCH);
        let last = present(&repo, (b + 1) * BATCH - 1);
        assert_eq!(first, last, "killed batch {b} is half there");
        if first {
            killed_present += 1;
            expected_points += BATCH;
        }
    }
    assert_eq!(
        info["points"].as_u64().unwrap(),
        expected_points,
        "point count agrees with the batches present"
    );

    // The index agrees with an exact scan of the tree for a few queries.
    let root = info["root"].as_str().unwrap().to_string();
    for q in [3u64, 777, 2_000] {
        let v: Vec<String> = vector(q).iter().map(|x| x.to_string()).collect();
        let v = v.join(",");
        let by_index = ipvec(
            &repo,
            &["search", "c", "--vector", &v, "-k", "5", "--exact"],
        );
        let by_tree = ipvec(
            &repo,
            &["search", "c", "--vector", &v, "-k", "5", "--at", &root],
        );
        assert!(by_index.status.success() && by_tree.status.success());
        let ids = |o: &std::process::Output| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.split(' ').next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&by_index),
            ids(&by_tree),
            "index and tree disagree for query {q}"
        );
    }
    eprintln!(
        "{} acknowledged batches, {} killed ({} of them had committed), add takes ~{:?}",
        acked.len(),
        killed.len(),
        killed_present,
        typical
    );
}
