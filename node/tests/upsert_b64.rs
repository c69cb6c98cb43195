//! Upserts in compact form (`vector_b64`) against a real daemon over loopback: they store
//! exactly the vectors that JSON numbers store, bit for bit, and searches answer alike;
//! `ipvec add` through the daemon (which sends `vector_b64`) stores exactly what it read; a
//! vector that cannot be read is refused with what to do, and the collection stays as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use ipvec_protocol::api::vectors::encode_b64;
use reqwest::Method;
use serde_json::{json, Value};

const DIM: usize = 8;

/// Deterministic vectors in [-1, 1) (seeded by `seed`); the first holds values whose bits are
/// easy to lose: -0, a subnormal, a third, a neighbour of 1, a large and a tiny magnitude.
fn vectors(seed: u64, n: usize) -> Vec<Vec<f32>> {
    let mut rows = seeded_vectors(seed, n, DIM);
    rows[0] = vec![
        -0.0,
        1e-40,
        1.0 / 3.0,
        1.0 + f32::EPSILON,
        -3.4e10,
        -1e-30,
        0.1,
        f32::MIN_POSITIVE,
    ];
    rows
}

fn bits(vector: &[f32]) -> Vec<u32> {
    vector.iter().map(|x| x.to_bits()).collect()
}

/// The vector of a `GET …/points/{id}` answer, as the f32s the daemon wrote.
fn vector_bits(answer: &Value) -> Vec<u32> {
    let numbers = answer["vector"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    numbers
        .iter()
        .map(|x| (x.as_f64().unwrap() as f32).to_bits())
        .collect()
}

async fn create(daemon: &Daemon, name: &str, dim: usize) {
    let body = json!({"name": name, "dim": dim, "metric": "l2", "shards": 2});
    let (s, answer) = daemon
        .call(Method::POST, "/v1/collections", Some(body))
        .await;
    assert_eq!(s, 200, "{answer}");
}

async fn put(daemon: &Daemon, name: &str, points: Vec<Value>) -> (u16, Value) {
    let path = format!("/v1/collections/{name}/points");
    daemon
        .call(Method::PUT, &path, Some(json!({ "points": points })))
        .await
}

async fn get(daemon: &Daemon, name: &str, id: u64) -> (u16, Value) {
    let path = format!("/v1/collections/{name}/points/{id}");
    daemon.call(Method::GET, &path, None).await
}

/// A search's hits without their leaf CIDs (which differ between collections: each entry
/// carries its own write time).
async fn hits(daemon: &Daemon, name: &str, request: &Value) -> Vec<(Value, u32)> {
    let path = format!("/v1/collections/{name}/search");
    let (s, answer) = daemon
        .call(Method::POST, &path, Some(request.clone()))
        .await;
    assert_eq!(s, 200, "{answer}");
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].clone(),
                (h["score"].as_f64().unwrap() as f32).to_bits(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_b64_stores_exactly_what_numbers_store() {
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[]);
    let points = vectors(1, 300);
    // "mixed" gets both forms in each batch, alternating.
    let forms = ["numbers", "compact", "mixed"];
    for name in forms {
        create(&daemon, name, DIM).await;
        for (c, chunk) in points.chunks(100).enumerate() {
            let body: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let i = c * 100 + j;
                    let metadata = json!({"group": i % 3});
                    match (name, i % 2) {
                        ("numbers", _) | ("mixed", 0) => {
                            json!({"id": i, "vector": v, "metadata": metadata})
                        }
                        _ => json!({"id": i, "vector_b64": encode_b64(v), "metadata": metadata}),
                    }
                })
                .collect();
            let (s, answer) = put(&daemon, name, body).await;
            assert_eq!(s, 200, "{name}: {answer}");
            assert_eq!(answer["changed"], 100, "{name}: {answer}");
        }
    }

    for (i, v) in points.iter().enumerate() {
        for name in forms {
            let (s, answer) = get(&daemon, name, i as u64).await;
            assert_eq!(s, 200, "{name} {i}: {answer}");
            assert_eq!(vector_bits(&answer), bits(v), "{name}: point {i}, {v:?}");
            assert_eq!(answer["metadata"], json!({"group": i % 3}), "{name} {i}");
        }
    }

    // Searches answer alike: exact, and HNSW with a candidate list longer than a shard.
    for q in vectors(2, 20) {
        for options in [json!({"k": 10, "exact": true}), json!({"k": 10, "ef": 256})] {
            let mut request = options.clone();
            request["vector_b64"] = json!(encode_b64(&q));
            let numbers = hits(&daemon, "numbers", &request).await;
            assert_eq!(numbers.len(), 10);
            for name in ["compact", "mixed"] {
                assert_eq!(hits(&daemon, name, &request).await, numbers, "{name}");
            }
        }
    }
}

/// Writes `rows` as an .fvecs file (each row: its dimension as i32, then its f32s).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipvec_add_through_the_daemon_stores_exactly_what_it_read() {
    let repo = new_repo();
    let r = &repo.path;
    let dir = r.parent().unwrap();
    let mut daemon = Daemon::start(r, &[]);
    create(&daemon, "c", DIM).await;
    let points = vectors(3, 200);
    let file = dir.join("points.fvecs");
    write_fvecs(&file, &points);
    ok(r, &["add", "c", file.to_str().unwrap(), "--batch", "64"]);
    for (i, v) in points.iter().enumerate() {
        let (s, answer) = get(&daemon, "c", i as u64).await;
        assert_eq!(s, 200, "{answer}");
        assert_eq!(vector_bits(&answer), bits(v), "point {i}, {v:?}");
    }

    // A NaN in row 70 (the second batch): refused naming the row, through the daemon as
    // directly, and the points before its batch stay added.
    let mut bad = vectors(4, 100);
    bad[70][5] = f32::NAN;
    let bad_file = dir.join("bad.fvecs");
    write_fvecs(&bad_file, &bad);
    let add_bad = ["add", "bad", bad_file.to_str().unwrap(), "--batch", "64"];
    create(&daemon, "bad", DIM).await;
    let through_daemon = fails(r, &add_bad);
    assert!(
        through_daemon.contains("row 70") && through_daemon.contains("component 5"),
        "{through_daemon}"
    );
    let (_, info) = daemon.call(Method::GET, "/v1/collections/bad", None).await;
    assert_eq!(info["points"], 64, "{info}");
    daemon.stop();
    ok(r, &["collection", "drop", "bad"]);
    let create_bad = [
        "collection",
        "create",
        "bad",
        "--dim",
        "8",
        "--metric",
        "l2",
    ];
    ok(r, &create_bad);
    assert_eq!(fails(r, &add_bad), through_daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_vectors_are_refused_and_change_nothing() {
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[]);
    create(&daemon, "c", 4).await;
    let stored: Vec<Value> = (0..50u64)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, -2.0, 0.5]}))
        .collect();
    let (s, answer) = put(&daemon, "c", stored).await;
    assert_eq!(s, 200, "{answer}");
    let state = || async {
        let (_, info) = daemon.call(Method::GET, "/v1/collections/c", None).await;
        let (_, seven) = get(&daemon, "c", 7).await;
        let (missing, _) = get(&daemon, "c", 1000).await;
        (info, seven, missing)
    };
    let before = state().await;
    assert_eq!(before.0["points"], 50);
    assert_eq!(before.2, 404);

    let six_bytes = "AAAAAAAA";
    let good = encode_b64(&[9.0, 9.0, 9.0, 9.0]);
    // Each bad point, the error code, and words of the message that say what to do.
    let cases = [
        (
            json!({"id": 7, "vector_b64": "not base64!"}),
            "bad_point",
            "send the base64 (standard alphabet",
        ),
        (
            json!({"id": 7, "vector_b64": six_bytes}),
            "bad_point",
            "decodes to 6 bytes, not a multiple of 4: each component is one little-endian f32",
        ),
        (
            json!({"id": 7, "vector_b64": encode_b64(&[1.0, 2.0, 3.0])}),
            "bad_point",
            "vector has 3 dimensions, the collection has 4",
        ),
        (
            json!({"id": 7, "vector_b64": encode_b64(&[1.0, f32::NAN, 0.0, 0.0])}),
            "bad_point",
            "component 1",
        ),
        (
            json!({"id": 7, "vector_b64": encode_b64(&[f32::INFINITY, 0.0, 0.0, 0.0])}),
            "bad_point",
            "component 0",
        ),
        (
            json!({"id": 7, "vector": [1.0, 2.0, 3.0, 4.0], "vector_b64": good}),
            "bad_point",
            "give the vector once",
        ),
        (
            json!({"id": 7}),
            "bad_point",
            "give `vector` (numbers), `vector_b64`",
        ),
        (
            json!({"id": 7, "vector_b64": 12}),
            "bad_request",
            "invalid type",
        ),
        (
            json!({"id": 7, "vector_b64": good, "vectorb64": good}),
            "bad_request",
            "unknown field",
        ),
    ];
    for (bad, code, says) in cases {
        // A good point first, then the bad one, which overwrites point 7.
        let batch = vec![json!({"id": 1000, "vector_b64": good}), bad.clone()];
        let (s, answer) = put(&daemon, "c", batch).await;
        assert_eq!(s, 400, "{bad}: {answer}");
        let error = &answer["error"];
        assert_eq!(error["code"], code, "{bad}: {answer}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad}: {message}");
        if code == "bad_point" {
            assert_eq!(error["point"]["position"], 1, "{bad}: {answer}");
            assert_eq!(error["point"]["id"], "7", "{bad}: {answer}");
            assert!(
                message.ends_with("nothing from this batch was stored"),
                "{message}"
            );
        }
        assert_eq!(state().await, before, "after {bad}");
    }

    // The same batch with a readable vector is stored.
    let batch = vec![
        json!({"id": 1000, "vector_b64": good}),
        json!({"id": 7, "vector_b64": encode_b64(&[7.0, 0.0, 0.0, 0.0])}),
    ];
    let (s, answer) = put(&daemon, "c", batch).await;
    assert_eq!((s, &answer["changed"]), (200, &json!(2)), "{answer}");
    let (_, seven) = get(&daemon, "c", 7).await;
    assert_eq!(seven["vector"], json!([7.0, 0.0, 0.0, 0.0]));
}
