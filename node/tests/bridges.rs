//! The bridge driver end to end with ipvec at both ends: `ipvec migrate`, `import` and
//! `export` as a user runs them, the paged read they stand on (`POST …/points/page`, through
//! one version while writes go on), a move killed mid-way and resumed, and the refusals.
//! The other stores' bridges have their own test binaries (bridge_*.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
};

use common::*;
use serde_json::{json, Value};

/// `n` points of 16 dimensions with metadata of several shapes, as JSON lines.
fn points(n: u64, seed: u64) -> String {
    let vectors = seeded_vectors(seed, n as usize, 16);
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let id = if i % 3 == 0 {
                json!(format!("doc-{i}"))
            } else {
                json!(i)
            };
            let meta = match i % 4 {
                0 => json!({ "tag": format!("t{}", i % 7), "n": i, "ok": i % 2 == 0 }),
                1 => json!({ "nested": { "list": [1, 2.5, "x"], "deep": { "k": i } } }),
                2 => Value::Null,
                _ => json!({ "price": (i as f64) / 8.0 }),
            };
            let mut point = json!({ "id": id, "vector": v });
            if !meta.is_null() {
                point["metadata"] = meta;
            }
            point.to_string() + "\n"
        })
        .collect()
}

fn add_points(repo: &std::path::Path, name: &str, n: u64, seed: u64) {
    let file = repo.parent().unwrap().join(format!("{name}-{seed}.jsonl"));
    std::fs::write(&file, points(n, seed)).unwrap();
    ok(repo, &["add", name, file.to_str().unwrap()]);
}

/// Every point of a collection, by id, through `ipvec get` — independent of the paging.
fn point(repo: &std::path::Path, name: &str, id: &str) -> Value {
    json_of(&ok(repo, &["--json", "get", name, id]))
}

#[test]
fn a_collection_moves_to_another_with_every_id_vector_and_metadata() {
    let repo = new_repo();
    ok(
        &repo.path,
        &[
            "collection",
            "create",
            "src",
            "--dim",
            "16",
            "--metric",
            "l2",
        ],
    );
    add_points(&repo.path, "src", 2_345, 1);

    let out = ok(
        &repo.path,
        &[
            "--json",
            "migrate",
            "--from",
            "ipvec:src",
            "--to",
            "ipvec:dst",
            "--batch",
            "500",
        ],
    );
    let report = json_of(&out);
    assert_eq!(report["points"], 2_345, "{report}");
    assert_eq!(report["dimension"], 16);
    assert_eq!(report["metric"], "l2");
    let verified = &report["verified"];
    assert_eq!(verified["points"], 2_345, "{report}");
    assert_eq!(verified["sampled"], 100);
    assert_eq!(verified["digest_compared"], true);

    let info = json_of(&ok(&repo.path, &["--json", "collection", "info", "dst"]));
    assert_eq!(info["points"], 2_345);
    assert_eq!(info["metric"], "l2");
    assert_eq!(info["dim"], 16);
    // Spot checks through `get`, independent of the bridge's own verification.
    for id in ["\"doc-0\"", "1", "2", "\"doc-3\"", "2344", "\"doc-2343\""] {
        let (a, b) = (point(&repo.path, "src", id), point(&repo.path, "dst", id));
        assert_eq!(a["vector"], b["vector"], "{id}");
        assert_eq!(a["metadata"], b["metadata"], "{id}");
    }

    // `export` and `import` are the same move with ipvec at one end; the content digest
    // of the copy of the copy is the original's.
    let out = ok(&repo.path, &["--json", "export", "dst", "ipvec:dst2"]);
    assert_eq!(json_of(&out)["verified"]["digest"], verified["digest"]);
    let text = ok(&repo.path, &["import", "ipvec:dst2", "dst3"]);
    assert!(
        text.contains("moved 2345 points from ipvec:dst2 to ipvec:dst3"),
        "{text}"
    );
    assert!(
        text.contains(verified["digest"].as_str().unwrap()),
        "{text}"
    );
}

#[test]
fn moves_that_cannot_be_done_are_refused_before_anything_is_made() {
    let repo = new_repo();
    ok(&repo.path, &["collection", "create", "a", "--dim", "16"]);
    add_points(&repo.path, "a", 10, 2);
    ok(&repo.path, &["collection", "create", "b", "--dim", "16"]);

    let cases: &[(&[&str], &str)] = &[
        (
            &["migrate", "--from", "ipvec:a", "--to", "ipvec:b"],
            "already",
        ),
        (
            &["migrate", "--from", "ipvec:nope", "--to", "ipvec:c"],
            "nope",
        ),
        (
            &["migrate", "--from", "ipvec:a", "--to", "ipvec:a"],
            "both the source and the target",
        ),
        (
            &["migrate", "--from", "vectors.bin", "--to", "ipvec:c"],
            "faiss:PATH",
        ),
        (
            &["migrate", "--from", "qdrant:localhost/x", "--to", "ipvec:c"],
            "http://",
        ),
        (&["import", "ipvec:a", "c", "--resume"], "nothing to resume"),
        (
            &["import", "ipvec:a", "c", "--metric", "l2"],
            "compared by cosine",
        ),
    ];
    for (args, expected) in cases {
        let err = fails(&repo.path, args);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let list = json_of(&ok(&repo.path, &["--json", "collection", "list"]));
    let names: Vec<&str> = list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "a refused move left a collection behind");
}

#[test]
fn a_move_killed_mid_way_resumes_where_its_checkpoint_is() {
    let repo = new_repo();
    ok(&repo.path, &["collection", "create", "big", "--dim", "16"]);
    add_points(&repo.path, "big", 12_000, 3);
    let checkpoint = repo.path.parent().unwrap().join("move.json");
    let args = |extra: &str| {
        let mut a = vec![
            "--repo".to_string(),
            repo.path.display().to_string(),
            "migrate".into(),
            "--from".into(),
            "ipvec:big".into(),
            "--to".into(),
            "ipvec:copy".into(),
            "--batch".into(),
            "200".into(),
            "--checkpoint".into(),
            checkpoint.display().to_string(),
        ];
        a.push(extra.to_string());
        a
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .args(args("--resumable"))
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a few batches are durable, well before the end.
    let mut done = 0;
    eventually("the checkpoint to record 1,000 points", || {
        if let Ok(text) = std::fs::read_to_string(&checkpoint) {
            if let Ok(c) = serde_json::from_str::<Value>(&text) {
                done = c["done"].as_u64().unwrap_or(0);
            }
        }
        done >= 1_000 || child.try_wait().unwrap().is_some()
    });
    signal("KILL", child.id());
    let _ = child.wait();
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    let done = saved["done"].as_u64().unwrap();
    assert!(
        done > 0 && done < 12_000,
        "the move was not killed mid-way: checkpoint {saved}"
    );

    // Starting again without --resume is refused: the checkpoint says a move is under way.
    let err = fails(
        &repo.path,
        &[
            "migrate",
            "--from",
            "ipvec:big",
            "--to",
            "ipvec:copy",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ],
    );
    assert!(err.contains("--resume"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .args(args("--resume"))
        .arg("--json")
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(report["points"], 12_000, "{report}");
    assert!(
        report["resumed_after"].as_u64().unwrap() >= done,
        "{report}"
    );
    assert_eq!(report["verified"]["points"], 12_000, "{report}");
    assert!(
        !checkpoint.exists(),
        "a finished move leaves its checkpoint"
    );
    let info = json_of(&ok(&repo.path, &["--json", "collection", "info", "copy"]));
    assert_eq!(info["points"], 12_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_one_version_while_writes_go_on() {
    let repo = new_repo();
    ok(&repo.path, &["collection", "create", "c", "--dim", "16"]);
    add_points(&repo.path, "c", 2_500, 4);
    let daemon = Daemon::start(&repo.path, &[]);

    let page = |cursor: Option<String>, limit: usize| {
        let daemon = &daemon;
        async move {
            let mut body = json!({ "limit": limit });
            if let Some(c) = cursor {
                body["cursor"] = json!(c);
            }
            daemon
                .call(
                    reqwest::Method::POST,
                    "/v1/collections/c/points/page",
                    Some(body),
                )
                .await
        }
    };
    let (status, first) = page(None, 1_000).await;
    assert_eq!(status, 200, "{first}");
    let version = first["version"].as_str().unwrap().to_string();
    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    let mut cursor = first["next"].as_str().map(str::to_string);
    for p in first["points"].as_array().unwrap() {
        seen.insert(p["id"].to_string(), p["vector"].clone());
    }
    // Writes between pages: new points, and new vectors for points already read.
    let (status, body) = daemon
        .call(
            reqwest::Method::PUT,
            "/v1/collections/c/points",
            Some(json!({ "points": (0..300).map(|i| json!({
                "id": 100_000 + i, "vector": vec![0.5f32; 16]
            })).chain((1..20).map(|i| json!({ "id": i * 3 + 1, "vector": vec![9.0f32; 16] })))
            .collect::<Vec<_>>() })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    while let Some(c) = cursor {
        let (status, next) = page(Some(c), 1_000).await;
        assert_eq!(status, 200, "{next}");
        assert_eq!(next["version"], version.as_str());
        for p in next["points"].as_array().unwrap() {
            assert!(
                seen.insert(p["id"].to_string(), p["vector"].clone())
                    .is_none(),
                "point {} came twice",
                p["id"]
            );
        }
        cursor = next["next"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 2_500, "the walk saw writes made after it began");
    assert!(seen.values().all(|v| v[0] != json!(9.0)));

    // A new walk starts at the new version.
    let (_, fresh) = page(None, 5_000).await;
    assert_ne!(fresh["version"], version.as_str());

    for (body, expected) in [
        (
            json!({ "cursor": "bafy.0.zz", "limit": 10 }),
            "not one this node gave",
        ),
        (json!({ "limit": 0 }), "at least 1"),
        (json!({ "limit": 10_000_000 }), "max_batch_points"),
    ] {
        let (status, answer) = daemon
            .call(
                reqwest::Method::POST,
                "/v1/collections/c/points/page",
                Some(body.clone()),
            )
            .await;
        assert!(status == 400 || status == 413, "{body}: {status} {answer}");
        assert!(answer.to_string().contains(expected), "{body}: {answer}");
    }
    let (status, answer) = daemon
        .call(
            reqwest::Method::POST,
            "/v1/collections/nope/points/page",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
}
