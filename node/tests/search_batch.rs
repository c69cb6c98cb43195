//! Batch search and compact vectors against a real daemon over loopback: a batch answers
//! exactly what its queries answer one by one, `vector_b64` exactly what `vector` does, bad
//! batches are refused with what to do, and `ipvec search --query-file` (which sends its file
//! in batches) prints what single searches answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use ipvec_protocol::api::vectors::encode_b64;
use reqwest::Method;
use serde_json::{json, Value};

const DIM: usize = 8;

fn vectors(seed: u64, n: usize) -> Vec<Vec<f32>> {
    seeded_vectors(seed, n, DIM)
}

/// A daemon with collection `docs`: 2 shards of 400 points of `DIM` dimensions (l2), each
/// with metadata `{"group": i % 3}`, committed into its tree (the daemon was restarted after
/// the write: no commit changes the hits' leaf CIDs during a test).
async fn daemon_with_docs(envs: &[(&str, &str)]) -> (TestRepo, Daemon) {
    // Every answer compared here is searched, none comes from the search cache (whose answers
    // tests/search_cache.rs compares with searched ones).
    let envs = &[envs, &[("IPVEC_SEARCH_CACHE_ENTRIES", "0")]].concat();
    let repo = new_repo();
    let mut daemon = Daemon::start(&repo.path, envs);
    let create = json!({"name": "docs", "dim": DIM, "metric": "l2", "shards": 2});
    let (s, answer) = daemon
        .call(Method::POST, "/v1/collections", Some(create))
        .await;
    assert_eq!(s, 200, "{answer}");
    let points: Vec<Value> = vectors(1, 400)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i, "vector": v, "metadata": {"group": i % 3}}))
        .collect();
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/docs/points",
            Some(json!({ "points": points })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    daemon.stop();
    let daemon = Daemon::start(&repo.path, envs);
    let (_, info) = daemon.call(Method::GET, "/v1/collections/docs", None).await;
    assert_eq!(
        (info["points"].as_u64(), info["wal_bytes"].as_u64()),
        (Some(400), Some(0))
    );
    (repo, daemon)
}

/// The single search of `vector` with `options` (a JSON object of search fields).
async fn single(daemon: &Daemon, options: &Value, vector: Value) -> (u16, Value) {
    let mut body = options.clone();
    body.as_object_mut()
        .unwrap()
        .extend(vector.as_object().unwrap().clone());
    daemon
        .call(Method::POST, "/v1/collections/docs/search", Some(body))
        .await
}

async fn batch(daemon: &Daemon, body: Value) -> (u16, Value) {
    daemon
        .call(
            Method::POST,
            "/v1/collections/docs/search/batch",
            Some(body),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_what_each_query_answers_alone() {
    let (_repo, daemon) = daemon_with_docs(&[]).await;
    let queries = vectors(2, 40);
    let option_sets = [
        json!({"k": 7}),
        json!({"k": 5, "ef": 16}),
        json!({"k": 4, "exact": true, "filter": {"must": [{"key": "group", "match": 1}]}}),
    ];
    for options in &option_sets {
        let mut alone = Vec::new();
        for q in &queries {
            let (s, answer) = single(&daemon, options, json!({ "vector": q })).await;
            assert_eq!(s, 200, "{answer}");
            // The compact form of the same vector gives the same answer.
            let (s, compact) =
                single(&daemon, options, json!({ "vector_b64": encode_b64(q) })).await;
            assert_eq!((s, &compact), (200, &answer), "vector_b64 with {options}");
            alone.push(answer);
        }
        let distinct: std::collections::BTreeSet<String> = alone
            .iter()
            .map(|a| a["hits"][0]["id"].to_string())
            .collect();
        assert!(distinct.len() > 5, "the queries find different points");
        assert_eq!(alone[0]["coverage"]["searched"], json!([0, 1]));

        for form in ["vector", "vector_b64"] {
            let list: Vec<Value> = queries
                .iter()
                .map(|q| match form {
                    "vector" => json!({ "vector": q }),
                    _ => json!({ "vector_b64": encode_b64(q) }),
                })
                .collect();
            let mut body = options.clone();
            body["queries"] = Value::Array(list);
            let (s, answer) = batch(&daemon, body).await;
            assert_eq!(s, 200, "{answer}");
            assert_eq!(
                answer["results"].as_array().unwrap(),
                &alone,
                "a batch of {form} with {options}"
            );
        }
    }
    // Both forms may be mixed in one batch; each query answers for its own vector.
    let mixed = json!({"k": 7, "queries": [
        { "vector_b64": encode_b64(&queries[3]) }, { "vector": queries[0] }
    ]});
    let (s, answer) = batch(&daemon, mixed).await;
    assert_eq!(s, 200, "{answer}");
    let (_, first) = single(&daemon, &json!({"k": 7}), json!({ "vector": queries[3] })).await;
    let (_, second) = single(&daemon, &json!({"k": 7}), json!({ "vector": queries[0] })).await;
    assert_eq!(answer["results"], json!([first, second]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_with_what_to_do() {
    let envs = [
        ("IPVEC_SEARCH_MAX_BATCH_QUERIES", "8"),
        ("IPVEC_API_MAX_BODY_BYTES", "262144"),
    ];
    let (_repo, daemon) = daemon_with_docs(&envs).await;
    let q = vectors(3, 1).remove(0);
    let good = json!({ "vector": q });
    let mut nan = q.clone();
    nan[2] = f32::NAN;
    let cases = [
        (json!({"queries": []}), 400, "no queries"),
        (
            json!({"queries": vec![good.clone(); 9]}),
            413,
            "search.max_batch_queries = 8",
        ),
        (
            json!({"queries": [good, {"vector_b64": "not base64!"}]}),
            400,
            "query 1 of the batch: vector_b64 is not valid base64",
        ),
        (
            json!({"queries": [{"vector_b64": "AACAPwAA"}]}),
            400,
            "not a multiple of 4",
        ),
        (
            json!({"queries": [good, good, {"vector": [1.0, 2.0]}]}),
            400,
            "query 2 of the batch",
        ),
        (
            json!({"queries": [good, {"vector_b64": encode_b64(&nan)}]}),
            400,
            "query 1 of the batch: vector component 2 is not a finite number",
        ),
        (
            json!({"queries": [{"vector": q, "vector_b64": encode_b64(&q)}]}),
            400,
            "not two of them",
        ),
        (json!({"queries": [{}]}), 400, "no vector"),
        (
            json!({"queries": [good], "k": 0}),
            400,
            "k must be at least 1",
        ),
        (
            json!({"queries": [{"vector": vec![0.5f32; 100_000]}]}),
            413,
            "api.max_body_bytes",
        ),
        (json!({"queries": [good], "kk": 3}), 400, "unknown field"),
    ];
    for (body, status, says) in cases {
        let (s, answer) = batch(&daemon, body.clone()).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(s, status, "{body:.200}: {answer}");
        assert!(message.contains(says), "{says:?} not in {message:?}");
    }
    // The single endpoint refuses bad compact vectors alike.
    let (s, answer) = single(&daemon, &json!({}), json!({"vector_b64": "@@@@"})).await;
    assert_eq!(s, 400, "{answer}");
    let (s, answer) = single(&daemon, &json!({}), json!({"vector_b64": encode_b64(&nan)})).await;
    assert!(
        s == 400
            && answer
                .to_string()
                .contains("component 2 is not a finite number"),
        "{answer}"
    );
    let (s, _) = daemon
        .call(
            Method::POST,
            "/v1/collections/nothing/search/batch",
            Some(json!({"queries": [good]})),
        )
        .await;
    assert_eq!(s, 404);
    // Still serving, and a batch at the limit is answered.
    assert!(daemon.ready());
    let (s, answer) = batch(&daemon, json!({"queries": vec![good; 8]})).await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["results"].as_array().unwrap().len(), 8);
}

fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// `ipvec search --query-file` through the daemon sends its 600 rows in batches (256 a
/// request: three requests, the last one short) and prints, in order, what single searches
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_query_file_prints_what_single_searches_answer() {
    let (repo, daemon) = daemon_with_docs(&[]).await;
    let queries = vectors(4, 600);
    let file = repo.path.parent().unwrap().join("queries.fvecs");
    write_fvecs(&file, &queries);
    let file = file.to_str().unwrap().to_string();
    let before = daemon.metrics().await;

    let lines: Vec<Value> = ok(
        &repo.path,
        &["--json", "search", "docs", "--query-file", &file, "-k", "6"],
    )
    .lines()
    .map(json_of)
    .collect();
    let after = daemon.metrics().await;
    let batches = [("operation", "search_batch"), ("collection", "docs")];
    assert_eq!(
        sample(&after, "ipvec_operations", &batches)
            - sample(&before, "ipvec_operations", &batches),
        3.0,
        "600 queries in 3 requests"
    );
    assert_eq!(lines.len(), queries.len());
    for (i, q) in queries.iter().enumerate() {
        let (s, alone) = single(&daemon, &json!({"k": 6}), json!({ "vector": q })).await;
        assert_eq!(s, 200, "{alone}");
        assert_eq!(lines[i], alone, "query {i}");
    }

    // The text output: each query's hits under its header, in order.
    let text = ok(
        &repo.path,
        &["search", "docs", "--query-file", &file, "-k", "2"],
    );
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("# query")).collect();
    assert_eq!(headers.len(), 600);
    assert_eq!(headers[599], "# query 599");
    let first_hit = text.lines().nth(1).unwrap();
    let id = lines[0]["hits"][0]["id"].to_string();
    assert!(
        first_hit.starts_with(&format!("{id} ")),
        "{first_hit} vs {id}"
    );
}
