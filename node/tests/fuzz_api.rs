//! Schemathesis (PyPI) fuzzes a running daemon from its own OpenAPI document: a bounded number
//! of generated requests per route. First only requests that break the document: each must be
//! refused, and a collection's root and points must be as they were. Then valid and invalid
//! ones: no answer may be a 5xx, every answer must match the document (status, content type,
//! schema, headers), and the daemon must stay up.
//!
//! `.ci/run` installs Schemathesis into `~/.cache/ipvec-venv`; `IPVEC_SCHEMATHESIS` names
//! another executable. Without it this test fails: it cannot pass without fuzzing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::PathBuf, process::Command};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("IPVEC_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/ipvec-venv/bin/schemathesis");
    if venv.exists() {
        return venv;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v schemathesis"])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "Schemathesis is not installed: run `bash .ci/run`, or \
         `python3 -m venv ~/.cache/ipvec-venv && ~/.cache/ipvec-venv/bin/pip install schemathesis==4.32.5`"
    );
    PathBuf::from(String::from_utf8(found.stdout).unwrap().trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let tool = schemathesis();
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[]);
    // A collection the fuzzer works on, and one whose name it will not guess.
    let keep = "keep-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4";
    for name in ["c", keep] {
        let (s, answer) = daemon
            .call(
                Method::POST,
                "/v1/collections",
                Some(json!({ "name": name, "dim": 3, "metric": "l2" })),
            )
            .await;
        assert_eq!(s, 200, "{answer}");
    }
    let points: Vec<Value> = (0..50)
        .map(|i| json!({ "id": i, "vector": [i as f32, 1.0, -2.0], "metadata": { "n": i } }))
        .collect();
    let (s, answer) = daemon
        .call(
            Method::PUT,
            &format!("/v1/collections/{keep}/points"),
            Some(json!({ "points": points })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    let (_, before) = daemon
        .call(Method::GET, &format!("/v1/collections/{keep}/log"), None)
        .await;
    let state = |info: &Value| (info["points"].clone(), info["root"].clone());
    let (_, info) = daemon
        .call(Method::GET, &format!("/v1/collections/{keep}"), None)
        .await;
    let kept = state(&info);

    let seed = std::env::var("IPVEC_FUZZ_SEED").unwrap_or_else(|_| "20261130".into());
    let examples = std::env::var("IPVEC_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    // Schemathesis keeps a cache in its working folder: give it one of its own.
    let workdir = tempfile::tempdir().unwrap();
    let run = |mode: &str, checks: &str| {
        let out = Command::new(&tool)
            .current_dir(workdir.path())
            .args(["run", &format!("{}/openapi.json", daemon.url)])
            .args(["--mode", mode, "--checks", checks])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args([
                "--max-examples",
                &examples,
                "--seed",
                &seed,
                "--workers",
                "2",
            ])
            // An endless event stream, and CAR bodies it cannot generate (the CAR tests send
            // real and broken CAR files).
            .args(["--exclude-path", "/v1/logs"])
            .args(["--exclude-path", "/v1/collections/import"])
            .args(["--exclude-path", "/v1/dag/import"])
            .args(["--generation-database", "none", "--no-color"])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "Schemathesis ({mode} mode) found failures (seed {seed}):\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // "1096 generated, 1096 passed"
        let generated = report
            .lines()
            .find_map(|l| {
                let (n, _) = l.trim().split_once(" generated,")?;
                n.parse::<u64>().ok()
            })
            .unwrap_or(0);
        assert!(
            generated >= 300,
            "too few cases ran ({generated}):\n{report}"
        );
        println!("Schemathesis, {mode} mode: {generated} cases, no failure");
    };

    // Only requests that break the document: each must be refused (4xx), and refused
    // requests change nothing.
    run("negative", "not_a_server_error,negative_data_rejection");
    let (s, info) = daemon
        .call(Method::GET, &format!("/v1/collections/{keep}"), None)
        .await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(state(&info), kept);
    let (_, after) = daemon
        .call(Method::GET, &format!("/v1/collections/{keep}/log"), None)
        .await;
    assert_eq!(after, before);

    // Valid and invalid requests: no server error, every answer as documented. These may
    // drop collections they learn the names of.
    run(
        "all",
        "not_a_server_error,status_code_conformance,content_type_conformance,\
         response_schema_conformance,response_headers_conformance",
    );
    // Still up and serving.
    assert!(daemon.ready(), "the daemon stopped answering");
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "after", "dim": 2 })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/after/points",
            Some(json!({ "points": [{ "id": 1, "vector": [1, 0] }] })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    let (s, hits) = daemon
        .call(
            Method::POST,
            "/v1/collections/after/search",
            Some(json!({ "vector": [1, 0], "k": 1 })),
        )
        .await;
    assert_eq!(
        (s, hits["hits"][0]["id"].as_u64()),
        (200, Some(1)),
        "{hits}"
    );
}
