//! `ipvec daemon` as a real process on a free loopback port, driven by the CLI (which finds
//! it through the repository's `api` file) and by raw HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::{
    collections::BTreeSet,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::{json, Value};

/// Collection info without what only a node on the network knows (when it announced the
/// collection, how many providers the DHT names): the rest must be the same either way.
fn without_network_state(json: &str) -> String {
    fn strip(info: &mut Value) {
        let object = info.as_object_mut().unwrap();
        for key in ["announced_secs_ago", "replicas"] {
            assert!(object.remove(key).is_some(), "collection info has {key}");
        }
        for shard in object["shard_status"].as_array_mut().unwrap() {
            shard.as_object_mut().unwrap().remove("replicas");
        }
    }
    let mut value = json_of(json);
    match value.get_mut("collections") {
        Some(list) => list.as_array_mut().unwrap().iter_mut().for_each(strip),
        None => strip(&mut value),
    }
    value.to_string()
}

#[test]
fn the_cli_answers_alike_through_the_daemon_and_directly() {
    let repo = new_repo();
    let r = &repo.path;
    let dir = r.parent().unwrap();
    std::fs::write(dir.join("a.jsonl"), points_jsonl(0..300)).unwrap();
    std::fs::write(dir.join("b.jsonl"), points_jsonl(300..400)).unwrap();
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");

    // Direct: no daemon.
    ok(
        r,
        &["collection", "create", "c", "--dim", "4", "--metric", "l2"],
    );
    ok(r, &["add", "c", a.to_str().unwrap(), "--batch", "64"]);
    let reads = |r: &Path| -> Vec<String> {
        vec![
            ok(
                r,
                &["--json", "search", "c", "--vector", "1,2,-3,4", "-k", "7"],
            ),
            ok(
                r,
                &["search", "c", "--vector", "3,0.5,1,9", "-k", "5", "--exact"],
            ),
            ok(
                r,
                &[
                    "--json",
                    "search",
                    "c",
                    "--vector",
                    "1,1,1,1",
                    "-k",
                    "5",
                    "--filter",
                    r#"{"must": [{"key": "group", "match": 3}]}"#,
                ],
            ),
            ok(r, &["--json", "get", "c", "17"]),
            without_network_state(&ok(r, &["--json", "collection", "info", "c"])),
            ok(r, &["--json", "collection", "log", "c"]),
            without_network_state(&ok(r, &["--json", "collection", "list"])),
            ok(r, &["--json", "pin", "ls"]),
        ]
    };
    let direct = reads(r);
    ok(
        r,
        &[
            "collection",
            "export",
            "c",
            "-o",
            dir.join("direct.car").to_str().unwrap(),
        ],
    );

    let mut daemon = Daemon::start(r, &[]);
    // The daemon holds the repository: a command that worked must have gone through it.
    assert!(fails(r, &["daemon", "--api-listen", "127.0.0.1:0"])
        .contains(&format!("pid {}", daemon.pid())));
    assert_eq!(reads(r), direct, "daemon and direct paths print the same");
    ok(
        r,
        &[
            "collection",
            "export",
            "c",
            "-o",
            dir.join("daemon.car").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(dir.join("daemon.car")).unwrap(),
        std::fs::read(dir.join("direct.car")).unwrap(),
        "the streamed export is the same CAR"
    );

    // Writes through the daemon.
    let added = json_of(&ok(r, &["--json", "add", "c", b.to_str().unwrap()]));
    assert_eq!(added["points"], 400);
    let deleted = json_of(&ok(r, &["--json", "delete", "c", "0", "1", "2", "999999"]));
    assert_eq!(
        (deleted["deleted"].as_u64(), deleted["points"].as_u64()),
        (Some(3), Some(397))
    );
    let err = fails(r, &["get", "c", "1"]);
    assert!(err.contains("has no point 1"), "{err}");
    let imported = json_of(&ok(
        r,
        &[
            "--json",
            "collection",
            "import",
            dir.join("daemon.car").to_str().unwrap(),
            "--name",
            "copy",
        ],
    ));
    assert_eq!(imported["points"], 300);
    let copy_hits = ok(
        r,
        &[
            "--json", "search", "copy", "--vector", "1,2,-3,4", "-k", "7",
        ],
    );
    assert_eq!(
        copy_hits, direct[0],
        "the imported copy answers as the original did"
    );
    ok(r, &["gc"]);

    // Raw HTTP gives what the CLI printed.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(daemon.call(
        reqwest::Method::POST,
        "/v1/collections/c/search",
        Some(json!({ "vector": [1, 2, -3, 4], "k": 7 })),
    ));
    assert_eq!(status, 200);
    let after_writes = reads(r);
    let mut printed = json_of(&after_writes[0]);
    assert_eq!(
        printed.as_object_mut().unwrap().remove("cached"),
        Some(json!(true)),
        "the CLI repeats that search: the daemon's search cache answers it"
    );
    assert_eq!(body, printed);
    let (status, openapi) = rt.block_on(daemon.call(reqwest::Method::GET, "/openapi.json", None));
    assert_eq!(status, 200);
    for path in [
        "/v1/collections/{name}/search",
        "/v1/collections/{name}/points",
        "/v1/gc",
        "/metrics",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "openapi lacks {path}");
    }

    assert_eq!(json_of(&after_writes[4])["points"], 397);

    // A clean stop commits the daemon's log; direct reads then match a restarted daemon's.
    daemon.stop();
    assert!(!r.join("api").exists(), "a clean stop removes the api file");
    let direct = reads(r);
    assert_eq!(json_of(&direct[4])["wal_bytes"], 0, "the log was committed");
    assert_eq!(json_of(&direct[4])["points"], 397);
    let mut daemon = Daemon::start(r, &[]);
    assert_eq!(reads(r), direct);
    daemon.stop();
    let copy = json_of(&ok(r, &["--json", "collection", "info", "copy"]));
    assert_eq!(copy["writable"], false, "imported without its owner key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_with_requests() {
    let repo = new_repo();
    ok(&repo.path, &["collection", "create", "m", "--dim", "4"]);
    let daemon = Daemon::start(&repo.path, &[]);
    // One failed operation (wrong dimension), before the first scrape.
    let (s, _) = daemon
        .call(
            reqwest::Method::POST,
            "/v1/collections/m/search",
            Some(json!({ "vector": [1] })),
        )
        .await;
    assert_eq!(s, 400);
    let before = daemon.metrics().await;
    let (s, _) = daemon
        .call(
            reqwest::Method::PUT,
            "/v1/collections/m/points",
            Some(json!({ "points": [
                { "id": 1, "vector": [1, 0, 0, 0] },
                { "id": 2, "vector": [0, 1, 0, 0] },
                { "id": "three", "vector": [0, 0, 1, 0], "metadata": { "k": "v" } },
            ] })),
        )
        .await;
    assert_eq!(s, 200);
    for _ in 0..5 {
        let (s, body) = daemon
            .call(
                reqwest::Method::POST,
                "/v1/collections/m/search",
                Some(json!({ "vector": [1, 0.5, 0, 0], "k": 2 })),
            )
            .await;
        assert_eq!((s, body["hits"].as_array().unwrap().len()), (200, 2));
    }
    let (s, _) = daemon
        .call(reqwest::Method::GET, "/v1/collections/nope", None)
        .await;
    assert_eq!(s, 404);
    let after = daemon.metrics().await;
    let search = [("operation", "search"), ("collection", "m")];
    assert_eq!(
        sample(&after, "ipvec_operations", &search) - sample(&before, "ipvec_operations", &search),
        5.0
    );
    assert_eq!(
        sample(&after, "ipvec_operation_duration_seconds", &search),
        6.0,
        "one latency observation per search, failed ones too"
    );
    assert_eq!(sample(&after, "ipvec_operation_errors", &search), 1.0);
    assert_eq!(
        sample(&after, "ipvec_search_hits", &[("collection", "m")]),
        10.0
    );
    assert_eq!(
        sample(&after, "ipvec_points_written", &[("collection", "m")]),
        3.0
    );
    assert_eq!(
        sample(&after, "ipvec_collection_points", &[("collection", "m")]),
        3.0
    );
    assert!(sample(&after, "ipvec_index_memory_bytes", &[("collection", "m")]) > 0.0);
    assert!(sample(&after, "ipvec_wal_bytes", &[("collection", "m")]) > 0.0);
    assert!(sample(&after, "ipvec_store_blocks", &[]) > 0.0);
    assert_eq!(sample(&after, "ipvec_ready", &[]), 1.0);
    let route = [
        ("route", "/v1/collections/:name/search"),
        ("status", "200"),
        ("method", "POST"),
    ];
    assert_eq!(sample(&after, "ipvec_http_requests", &route), 5.0);
    let missing = [("route", "/v1/collections/:name"), ("status", "404")];
    assert_eq!(sample(&after, "ipvec_http_requests", &missing), 1.0);

    // What the alert rules watch besides.
    assert!(sample(&after, "ipvec_disk_total_bytes", &[]) > 0.0);
    assert!(sample(&after, "ipvec_disk_free_bytes", &[]) > 0.0);
    assert_eq!(sample(&after, "ipvec_store_limit_bytes", &[]), 0.0);
    assert_eq!(
        sample(
            &after,
            "ipvec_collection_replication_target",
            &[("collection", "m")]
        ),
        1.0
    );

    // A scrape starts counting a collection's providers on the DHT (this node alone here); a
    // later one reports the count.
    let counted = |scrape: &prometheus_parse::Scrape| {
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "ipvec_collection_replicas")
    };
    let mut scrape = daemon.metrics().await;
    for _ in 0..300 {
        if counted(&scrape) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        scrape = daemon.metrics().await;
    }
    assert!(counted(&scrape), "no replica count of m after 300 scrapes");

    // The Grafana dashboard and the alert rules in docs/ use only metrics the node exports.
    let exported: BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for file in ["grafana-dashboard.json", "alerts.yml"] {
        let text = std::fs::read_to_string(workspace().join("docs").join(file)).unwrap();
        let mut used = BTreeSet::new();
        for (i, _) in text.match_indices("ipvec_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
        assert!(used.len() >= 10, "{file}: {used:?}");
        for name in &used {
            let base = name.strip_suffix("_bucket").unwrap_or(name);
            let base = base.strip_suffix("_total").unwrap_or(base);
            assert!(
                exported.iter().any(|e| *e == name || e.starts_with(base)),
                "{file} uses {name}, which /metrics does not export"
            );
        }
    }

    // Two more points with point 1's vector: the index stores it once.
    let (s, _) = daemon
        .call(
            reqwest::Method::PUT,
            "/v1/collections/m/points",
            Some(json!({ "points": [
                { "id": 4, "vector": [1, 0, 0, 0] },
                { "id": 5, "vector": [1, 0, 0, 0] },
            ] })),
        )
        .await;
    assert_eq!(s, 200);
    let scrape = daemon.metrics().await;
    let m = [("collection", "m")];
    assert_eq!(sample(&scrape, "ipvec_index_duplicate_points", &m), 2.0);
    assert_eq!(
        sample(&scrape, "ipvec_index_duplicate_bytes_saved", &m),
        32.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let repo = new_repo();
    ok(&repo.path, &["collection", "create", "b", "--dim", "3"]);
    let daemon = Daemon::start(
        &repo.path,
        &[
            ("IPVEC_API_REQUIRE_TOKEN", "true"),
            ("IPVEC_API_MAX_BODY_BYTES", "4096"),
        ],
    );
    let seed = json!({ "points": [{ "id": 1, "vector": [1, 2, 3] }] });
    let (s, _) = daemon
        .call(reqwest::Method::PUT, "/v1/collections/b/points", Some(seed))
        .await;
    assert_eq!(s, 200);

    // No token, or a wrong one.
    let url = format!("{}/v1/collections", daemon.url);
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("api.token"));
    let r = reqwest::Client::new()
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        reqwest::get(format!("{}/health", daemon.url))
            .await
            .unwrap()
            .status(),
        200
    );

    let raw = |body: &'static str| {
        daemon
            .request(reqwest::Method::PUT, "/v1/collections/b/points")
            .header("content-type", "application/json")
            .body(body)
    };
    let r = raw(r#"{"points": [{"id": 2, "vector": [1, 2"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "/v1/collections/b/points",
            json!({ "points": [{ "id": 2, "vector": [1, 2] }] }),
            400,
            "bad_point",
            "dimensions",
        ),
        (
            "/v1/collections/b/points",
            json!({ "points": [{ "id": 2, "vector": [1, 2, 1e39] }] }),
            400,
            "bad_request",
            "out of range",
        ),
        (
            "/v1/collections/b/points",
            json!({ "points": [{ "id": 5, "vector": [1, 2, 3] }, { "id": 5, "vector": [3, 2, 1] }] }),
            400,
            "bad_point",
            "twice",
        ),
        (
            "/v1/collections/b/points",
            json!({ "points": [{ "id": 6, "vector": [1, 2, 3], "metadata": [1] }] }),
            400,
            "bad_point",
            "object",
        ),
        (
            "/v1/collections/b/points",
            json!({ "points": [{ "id": "x".repeat(200), "vector": [1, 2, 3] }] }),
            400,
            "bad_point",
            "id",
        ),
        (
            "/v1/collections/nope/points",
            json!({ "points": [{ "id": 2, "vector": [1, 2, 3] }] }),
            404,
            "not_found",
            "nope",
        ),
        (
            "/v1/collections/b/points",
            json!({ "points": (0..200).map(|i| json!({ "id": i, "vector": [1, 2, 3] })).collect::<Vec<_>>() }),
            413,
            "payload_too_large",
            "max_body_bytes",
        ),
    ];
    for (path, body, status, code, says) in cases {
        let (s, answer) = daemon.call(reqwest::Method::PUT, path, Some(body)).await;
        assert_eq!(s, status, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{message:?} should mention {says:?}"
        );
    }
    let searches = [
        (json!({ "vector": [1, 2] }), 400),
        (
            json!({ "vector": [1, 2, 3], "filter": { "must": [{ "key": "a", "bogus": 1 }] } }),
            400,
        ),
        (json!({ "vector": [1, 2, 3], "at": "not-a-cid" }), 400),
        (json!({ "vector": [1, 2, 3], "k": 1, "extra": true }), 400),
    ];
    for (body, status) in searches {
        let (s, answer) = daemon
            .call(
                reqwest::Method::POST,
                "/v1/collections/b/search",
                Some(body),
            )
            .await;
        assert_eq!(s, status, "{answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (s, answer) = daemon
        .call(reqwest::Method::GET, "/v1/no/such/route", None)
        .await;
    assert_eq!(
        (s, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Still serving, nothing stored from the rejected requests; the CLI finds the token itself.
    let (s, info) = daemon
        .call(reqwest::Method::GET, "/v1/collections/b", None)
        .await;
    assert_eq!((s, info["points"].as_u64()), (200, Some(1)));
    let info = json_of(&ok(&repo.path, &["--json", "collection", "info", "b"]));
    assert_eq!(info["points"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_ingest_keeps_every_acknowledged_point() {
    let repo = new_repo();
    ok(
        &repo.path,
        &["collection", "create", "s", "--dim", "8", "--metric", "l2"],
    );
    let mut daemon = Daemon::start(&repo.path, &[]);
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let request = daemon.request(reqwest::Method::PUT, "/v1/collections/s/points");
            let acked = acked.clone();
            tokio::spawn(async move {
                for batch in 0u64.. {
                    let ids: Vec<u64> = (0..20).map(|i| w * 1_000_000 + batch * 20 + i).collect();
                    let points: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({ "id": id, "vector": [*id as f32 % 97.0, 1, 2, 3, 4, 5, 6, (*id / 20) as f32] }))
                        .collect();
                    let sent = request.try_clone().unwrap().json(&json!({ "points": points })).send().await;
                    match sent {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                        // The daemon refused or closed: it is shutting down.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 2_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Reopen directly: every acknowledged point is there.
    let repo_path = repo.path.clone();
    let found = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let opened = ipvec_node::repo::Repo::open(&repo_path).await.unwrap();
            let config = opened.config().clone();
            let node = ipvec_node::ops::Node::new(opened, config);
            let mut missing = Vec::new();
            for id in &acked {
                let id = ipvec_node::api::types::PointId::Int(*id);
                if node.get_point("s", id.clone()).await.is_err() {
                    missing.push(id);
                }
            }
            let points = node.collection_info("s").await.unwrap().points;
            node.close().await.unwrap();
            (acked.len(), missing, points)
        })
    })
    .await
    .unwrap();
    let (acked, missing, points) = found;
    assert!(
        missing.is_empty(),
        "{} of {acked} acknowledged points are missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        points >= acked as u64,
        "{points} points for {acked} acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_mixing_searches_and_upserts() {
    let repo = new_repo();
    let r = &repo.path;
    ok(
        r,
        &[
            "collection",
            "create",
            "l",
            "--dim",
            "4",
            "--metric",
            "cosine",
        ],
    );
    let file = r.parent().unwrap().join("seed.jsonl");
    std::fs::write(&file, points_jsonl(1..501)).unwrap();
    ok(r, &["add", "l", file.to_str().unwrap()]);
    let daemon = Arc::new(Daemon::start(r, &[]));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let searches = Arc::new(AtomicU64::new(0));
    let written = Arc::new(Mutex::new(BTreeSet::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..64u64)
        .map(|c| {
            let (daemon, errors, searches, written, stop) =
                (daemon.clone(), errors.clone(), searches.clone(), written.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if n.is_multiple_of(4) {
                        let ids: Vec<u64> = (0..5).map(|i| 10_000 + c * 100_000 + n * 5 + i).collect();
                        let points: Vec<Value> = ids
                            .iter()
                            .map(|id| json!({ "id": id, "vector": [1, (*id % 9) as f32, 2, 0.5], "metadata": { "client": c } }))
                            .collect();
                        let (s, body) = daemon.call(reqwest::Method::PUT, "/v1/collections/l/points", Some(json!({ "points": points }))).await;
                        if s == 200 {
                            written.lock().unwrap().extend(ids);
                        } else {
                            errors.lock().unwrap().push(format!("upsert: {s} {body}"));
                        }
                    } else {
                        let filter = n.is_multiple_of(3).then(|| json!({ "must": [{ "key": "group", "match": (c % 5) as i64 }] }));
                        let (s, body) = daemon
                            .call(
                                reqwest::Method::POST,
                                "/v1/collections/l/search",
                                Some(json!({ "vector": [c as f32, 1, n as f32 % 7.0, 2], "k": 5, "ef": 16 + (n % 3) * 16, "filter": filter })),
                            )
                            .await;
                        if s == 200 && body["hits"].as_array().is_some_and(|h| !h.is_empty()) {
                            searches.fetch_add(1, Ordering::Relaxed);
                        } else {
                            errors.lock().unwrap().push(format!("search: {s} {body}"));
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} requests failed under load: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    let written = written.lock().unwrap().len() as u64;
    assert!(searches.load(Ordering::Relaxed) > 64 && written > 0);
    let (s, info) = daemon
        .call(reqwest::Method::GET, "/v1/collections/l", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        info["points"].as_u64(),
        Some(500 + written),
        "no write lost"
    );
}

#[test]
fn config_layers_and_a_stale_api_file() {
    let repo = new_repo();
    let r = &repo.path;
    let shown = |envs: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["--json", "config", "show"];
        all.extend_from_slice(args);
        let out = ipvec(r, &all, envs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_of(&String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(
        shown(&[], &[])["api"]["listen"],
        "127.0.0.1:5080",
        "the file's default"
    );
    let env = [
        ("IPVEC_LOG_LEVEL", "debug"),
        ("IPVEC_STORAGE_MAX_BYTES", "12345"),
    ];
    let config = shown(&env, &[]);
    assert_eq!(
        (
            config["log"]["level"].as_str(),
            config["storage"]["max_bytes"].as_u64()
        ),
        (Some("debug"), Some(12345))
    );
    let config = shown(&env, &["--log-level", "trace"]);
    assert_eq!(
        config["log"]["level"], "trace",
        "flags override the environment"
    );
    let out = ipvec(
        r,
        &["config", "show"],
        &[("IPVEC_API_LISTEN", "not an address")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.listen"));

    // Through a running daemon, `config show` prints the daemon's own configuration.
    let mut daemon = Daemon::start(r, &[("IPVEC_STORAGE_MAX_BYTES", "777")]);
    let config = shown(&[], &[]);
    assert_eq!(
        (
            config["api"]["listen"].as_str(),
            config["storage"]["max_bytes"].as_u64()
        ),
        (Some("127.0.0.1:0"), Some(777))
    );
    // A daemon that does not answer in time (stopped here) still holds the repository: the
    // CLI says the daemon is busy or stuck, not that some process holds the repository.
    signal("STOP", daemon.pid());
    let refused = fails(r, &["collection", "list"]);
    signal("CONT", daemon.pid());
    assert!(
        refused.contains("did not answer /health within 3 s") && refused.contains("busy or stuck"),
        "{refused}"
    );
    // A daemon killed outright leaves its api file; the CLI sees it answer no more and
    // opens the repository itself.
    let mut child = daemon.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    daemon.child = None;
    assert!(r.join("api").exists());
    let listed = json_of(&ok(r, &["--json", "collection", "list"]));
    assert_eq!(listed["collections"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_operations_report_progress_as_jobs() {
    let repo = new_repo();
    let r = &repo.path;
    ok(r, &["collection", "create", "j", "--dim", "4"]);
    let file = r.parent().unwrap().join("j.jsonl");
    std::fs::write(&file, points_jsonl(0..2_000)).unwrap();
    ok(r, &["add", "j", file.to_str().unwrap()]);
    let daemon = Daemon::start(r, &[]);
    let car = daemon
        .request(reqwest::Method::GET, "/v1/collections/j/export")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(car.len() > 20_000, "{} bytes", car.len());

    // Import it again, slowly, and watch the job.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = car
        .chunks(2_048)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let slow = futures::StreamExt::then(futures::stream::iter(chunks), |chunk| async {
        tokio::time::sleep(Duration::from_millis(25)).await;
        chunk
    });
    let import = daemon
        .request(reqwest::Method::POST, "/v1/dag/import")
        .header("content-type", "application/vnd.ipld.car")
        .body(reqwest::Body::wrap_stream(slow))
        .send();
    let watch = async {
        let mut seen = Vec::new();
        for _ in 0..400 {
            let (_, jobs) = daemon.call(reqwest::Method::GET, "/v1/jobs", None).await;
            for job in jobs["jobs"].as_array().unwrap() {
                if job["kind"] == "import" {
                    seen.push(job["done"].as_u64().unwrap());
                }
            }
            if seen.len() > 3 && seen.last() > seen.first() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    };
    let (imported, seen) = tokio::join!(import, watch);
    let imported: Value = imported.unwrap().json().await.unwrap();
    assert!(imported["blocks"].as_u64().unwrap() > 2, "{imported}");
    assert!(
        seen.last() > seen.first(),
        "the import's progress moved: {seen:?}"
    );
    let (_, jobs) = daemon.call(reqwest::Method::GET, "/v1/jobs", None).await;
    assert_eq!(jobs["jobs"], json!([]), "a finished job leaves the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_limit_refuses_writes_and_logs_are_json_lines() {
    let repo = new_repo();
    ok(&repo.path, &["collection", "create", "q", "--dim", "2"]);
    let mut daemon = Daemon::start(
        &repo.path,
        &[
            ("IPVEC_STORAGE_MAX_BYTES", "1"),
            ("IPVEC_LOG_FORMAT", "json"),
            ("IPVEC_LOG_LEVEL", "debug"),
        ],
    );
    let (s, answer) = daemon
        .call(
            reqwest::Method::PUT,
            "/v1/collections/q/points",
            Some(json!({ "points": [{ "id": 1, "vector": [1, 2] }] })),
        )
        .await;
    assert_eq!(
        (s, answer["error"]["code"].as_str()),
        (507, Some("insufficient_storage"))
    );
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("storage.max_bytes"));
    let (s, info) = daemon
        .call(reqwest::Method::GET, "/v1/collections/q", None)
        .await;
    assert_eq!((s, info["points"].as_u64()), (200, Some(0)));
    tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .unwrap();

    let log = std::fs::read_to_string(repo.path.parent().unwrap().join("daemon.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let message = |m: &str| lines.iter().any(|l| l["fields"]["message"] == m);
    assert!(message("daemon started") && message("request"), "{log}");
    let request = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request")
        .unwrap();
    assert!(
        request["fields"]["route"].as_str().is_some() && request["fields"]["status"].is_number()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_events_stream_live_and_end_at_shutdown() {
    use futures::StreamExt;
    let repo = new_repo();
    let mut daemon = Daemon::start(&repo.path, &[("IPVEC_LOG_LEVEL", "debug")]);
    let mut events = daemon
        .request(reqwest::Method::GET, "/v1/logs?level=debug")
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut text = String::new();
    // Kept events first: the start-up line.
    while !text.contains("daemon started") {
        text.push_str(&String::from_utf8_lossy(
            &events.next().await.unwrap().unwrap(),
        ));
    }
    // Then live ones: the request just made.
    let (s, _) = daemon.call(reqwest::Method::GET, "/v1/node", None).await;
    assert_eq!(s, 200);
    while !text.contains("/v1/node") {
        text.push_str(&String::from_utf8_lossy(
            &events.next().await.unwrap().unwrap(),
        ));
    }
    let line = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["fields"].as_str().is_some_and(|f| f.contains("/v1/node")))
        .unwrap();
    assert_eq!(
        (line["level"].as_str(), line["message"].as_str()),
        (Some("DEBUG"), Some("request"))
    );
    let (s, answer) = daemon
        .call(reqwest::Method::GET, "/v1/logs?level=loud", None)
        .await;
    assert_eq!(
        (s, answer["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    // A stop ends the stream (the daemon does not wait on it).
    let stopping = tokio::task::spawn_blocking(move || daemon.stop());
    while let Some(chunk) = events.next().await {
        if chunk.is_err() {
            break;
        }
    }
    stopping.await.unwrap();
}

/// Whether an answer of the lifecycle races is clean: 200, or 404/409 with the JSON error
/// body, or the `unavailable` refusal that says to retry (a request that waited over a second
/// for the name while another client's create or drop held it: on a loaded machine a create
/// with its fsyncs can take that long).
fn clean(status: u16, body: &Value) -> bool {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    status == 200
        || matches!(status, 404 | 409) && body["error"]["code"].is_string() && !message.is_empty()
        || status == 503 && body["error"]["code"] == "unavailable" && message.contains("retry")
}

/// The names in a repository's collections folder, hidden ones included.
fn collection_folders(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(repo.join("collections")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Whether the store still pins collection `name`.
async fn pinned_as(daemon: &Daemon, name: &str) -> bool {
    let (s, pins) = daemon.call(reqwest::Method::GET, "/v1/pins", None).await;
    assert_eq!(s, 200, "{pins}");
    let pin = format!("collection:{name}");
    pins["pins"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == pin.as_str())
}

/// Checks that collection `name` works fully: empty or holding `points` points, it takes a
/// write and finds it.
async fn works(daemon: &Daemon, name: &str) {
    let path = format!("/v1/collections/{name}");
    let (s, info) = daemon.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(s, 200, "{info}");
    let before = info["points"].as_u64().unwrap();
    let point = json!({ "points": [{ "id": "probe", "vector": [9, 9, 9, 9] }] });
    let (s, body) = daemon
        .call(reqwest::Method::PUT, &format!("{path}/points"), Some(point))
        .await;
    assert_eq!(s, 200, "{body}");
    let query = json!({ "vector": [9, 9, 9, 9], "k": 1 });
    let (s, body) = daemon
        .call(
            reqwest::Method::POST,
            &format!("{path}/search"),
            Some(query),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["hits"][0]["id"], "probe");
    let (_, info) = daemon.call(reqwest::Method::GET, &path, None).await;
    assert!(info["points"].as_u64().unwrap() >= before.max(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_creating_and_dropping_one_name_get_clean_answers() {
    let repo = new_repo();
    let r = &repo.path;
    let mut daemon = Daemon::start(r, &[]);
    let shared = Arc::new(Daemon {
        child: None,
        url: daemon.url.clone(),
        http: reqwest::Client::new(),
        token: daemon.token.clone(),
    });
    let answers = Arc::new(Mutex::new(Vec::<(String, u16, Value)>::new()));
    let clients: Vec<_> = (0..8u64)
        .map(|c| {
            let (daemon, answers) = (shared.clone(), answers.clone());
            tokio::spawn(async move {
                for i in 0..40u64 {
                    let mut calls = vec![if (c + i).is_multiple_of(2) {
                        let create = json!({ "name": "race", "dim": 4 });
                        ("create", reqwest::Method::POST, "/v1/collections".to_string(), Some(create))
                    } else {
                        ("drop", reqwest::Method::DELETE, "/v1/collections/race".to_string(), None)
                    }];
                    if i.is_multiple_of(3) {
                        let query = json!({ "vector": [1, 2, 3, c as f32], "k": 3 });
                        calls.push(("search", reqwest::Method::POST, "/v1/collections/race/search".into(), Some(query)));
                    }
                    if i.is_multiple_of(4) {
                        let point = json!({ "points": [{ "id": c * 100 + i, "vector": [1, 2, 3, i as f32] }] });
                        calls.push(("upsert", reqwest::Method::PUT, "/v1/collections/race/points".into(), Some(point)));
                    }
                    for (what, method, path, body) in calls {
                        let (s, answer) = daemon.call(method, &path, body).await;
                        answers.lock().unwrap().push((what.to_string(), s, answer));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let unclean: Vec<_> = answers.iter().filter(|(_, s, b)| !clean(*s, b)).collect();
    assert!(
        unclean.is_empty(),
        "{} of {} answers were not 200/404/409/503-retry with an error body: {:?}",
        unclean.len(),
        answers.len(),
        &unclean[..unclean.len().min(5)]
    );
    let succeeded = |what: &str| {
        answers
            .iter()
            .filter(|(w, s, _)| w == what && *s == 200)
            .count()
    };
    assert!(
        succeeded("create") > 0 && succeeded("drop") > 0,
        "the races ran"
    );

    // Whole or gone, and nothing else in the folder.
    let (s, _) = daemon
        .call(reqwest::Method::GET, "/v1/collections/race", None)
        .await;
    let exists = match s {
        200 => {
            assert_eq!(collection_folders(r), ["race"]);
            works(&daemon, "race").await;
            true
        }
        404 => {
            assert_eq!(collection_folders(r), Vec::<String>::new());
            assert!(
                !pinned_as(&daemon, "race").await,
                "a dropped collection's pin is gone"
            );
            false
        }
        other => panic!("collection info answered {other}"),
    };

    daemon.stop();
    let daemon = Daemon::start(r, &[]);
    let (s, list) = daemon
        .call(reqwest::Method::GET, "/v1/collections", None)
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(
        list["collections"].as_array().unwrap().len(),
        usize::from(exists)
    );
    if exists {
        works(&daemon, "race").await;
    } else {
        let (s, _) = daemon
            .call(reqwest::Method::GET, "/v1/collections/race", None)
            .await;
        assert_eq!(s, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drop_during_searches_and_upserts_leaves_nothing() {
    let repo = new_repo();
    let r = &repo.path;
    let daemon = Arc::new(Daemon::start(r, &[]));
    let (s, body) = daemon
        .call(
            reqwest::Method::POST,
            "/v1/collections",
            Some(json!({ "name": "d", "dim": 4 })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let seed: Vec<Value> = (0..200u64)
        .map(|i| json!({ "id": i, "vector": [1, (i % 9) as f32, 2, 0.5] }))
        .collect();
    let (s, body) = daemon
        .call(
            reqwest::Method::PUT,
            "/v1/collections/d/points",
            Some(json!({ "points": seed })),
        )
        .await;
    assert_eq!(s, 200, "{body}");

    let answers = Arc::new(Mutex::new(Vec::<(String, u16, Value)>::new()));
    let ok_before = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let refused_after = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let (daemon, answers, ok_before, dropped, refused_after, stop) = (
                daemon.clone(),
                answers.clone(),
                ok_before.clone(),
                dropped.clone(),
                refused_after.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (what, s, body) = if n.is_multiple_of(3) {
                        let point = json!({ "points": [{ "id": 1_000 + c * 100_000 + n, "vector": [2, 1, n as f32, 0.5] }] });
                        let (s, body) = daemon
                            .call(reqwest::Method::PUT, "/v1/collections/d/points", Some(point))
                            .await;
                        ("upsert", s, body)
                    } else {
                        let query = json!({ "vector": [1, c as f32, 2, 0.5], "k": 5 });
                        let (s, body) = daemon
                            .call(reqwest::Method::POST, "/v1/collections/d/search", Some(query))
                            .await;
                        ("search", s, body)
                    };
                    // Read after the answer: a refusal counted here came after the drop answered.
                    let after = dropped.load(Ordering::SeqCst);
                    if s == 200 && !after {
                        ok_before.fetch_add(1, Ordering::Relaxed);
                    }
                    if s != 200 && after {
                        refused_after.fetch_add(1, Ordering::Relaxed);
                    }
                    answers.lock().unwrap().push((what.to_string(), s, body));
                }
            })
        })
        .collect();
    // The drop comes in the middle of the stream: after some answers, with requests in flight.
    for _ in 0..10_000 {
        if ok_before.load(Ordering::Relaxed) >= 40 {
            break;
        }
        let (s, _) = daemon
            .call(reqwest::Method::GET, "/v1/collections/d", None)
            .await;
        assert_eq!(s, 200);
    }
    assert!(
        ok_before.load(Ordering::Relaxed) >= 40,
        "the stream of requests ran"
    );
    let (s, body) = daemon
        .call(reqwest::Method::DELETE, "/v1/collections/d", None)
        .await;
    assert_eq!(s, 200, "{body}");
    dropped.store(true, Ordering::SeqCst);
    for _ in 0..10_000 {
        if refused_after.load(Ordering::Relaxed) >= 8 {
            break;
        }
        let (s, _) = daemon
            .call(reqwest::Method::GET, "/v1/collections/d", None)
            .await;
        assert_eq!(
            s, 404,
            "a dropped collection stays dropped while requests come"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let unclean: Vec<_> = answers.iter().filter(|(_, s, b)| !clean(*s, b)).collect();
    assert!(
        unclean.is_empty(),
        "{} of {} answers were not 200/404/409/503-retry with an error body: {:?}",
        unclean.len(),
        answers.len(),
        &unclean[..unclean.len().min(5)]
    );

    // Nothing of it is left: not its folder, not its pin, not in the list.
    assert_eq!(collection_folders(r), Vec::<String>::new());
    let (s, _) = daemon
        .call(reqwest::Method::GET, "/v1/collections/d", None)
        .await;
    assert_eq!(s, 404);
    let (_, list) = daemon
        .call(reqwest::Method::GET, "/v1/collections", None)
        .await;
    assert_eq!(list["collections"], json!([]));
    assert!(!pinned_as(&daemon, "d").await);

    // Created again, it is empty and works.
    let (s, body) = daemon
        .call(
            reqwest::Method::POST,
            "/v1/collections",
            Some(json!({ "name": "d", "dim": 4 })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["points"], 0);
    let query = json!({ "vector": [1, 2, 2, 0.5], "k": 5 });
    let (s, body) = daemon
        .call(
            reqwest::Method::POST,
            "/v1/collections/d/search",
            Some(query),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["hits"],
        json!([]),
        "nothing of the dropped collection came back"
    );
    works(&daemon, "d").await;
    let (_, info) = daemon
        .call(reqwest::Method::GET, "/v1/collections/d", None)
        .await;
    assert_eq!(info["points"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_finishes_the_drops_and_creates_a_crash_cut_short() {
    let repo = new_repo();
    let r = &repo.path;
    for name in ["gone", "kept"] {
        ok(r, &["collection", "create", name, "--dim", "4"]);
    }
    // A crash mid-drop, after the rename and before the unpin; another mid-create.
    let folders = r.join("collections");
    std::fs::rename(folders.join("gone"), folders.join(".dropped-gone.1-0")).unwrap();
    std::fs::create_dir_all(folders.join(".creating-new.1-0")).unwrap();
    std::fs::write(folders.join(".creating-new.1-0").join("owner.key"), b"k").unwrap();

    let daemon = Daemon::start(r, &[]);
    assert_eq!(collection_folders(r), ["kept"]);
    let (s, list) = daemon
        .call(reqwest::Method::GET, "/v1/collections", None)
        .await;
    assert_eq!(s, 200, "{list}");
    let names: Vec<&str> = list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept"]);
    assert!(
        !pinned_as(&daemon, "gone").await,
        "the half-dropped collection's pin went"
    );
    assert!(pinned_as(&daemon, "kept").await);
    let (s, body) = daemon
        .call(
            reqwest::Method::POST,
            "/v1/collections",
            Some(json!({ "name": "gone", "dim": 4 })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    works(&daemon, "gone").await;
    works(&daemon, "kept").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_share_fsyncs_and_survive_a_kill() {
    let repo = new_repo();
    let r = &repo.path;
    ok(
        r,
        &["collection", "create", "g", "--dim", "4", "--metric", "l2"],
    );
    let mut daemon = Daemon::start(r, &[]);
    let before = sample(&daemon.metrics().await, "ipvec_wal_fsyncs", &[]);
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writes = 16 * 12;
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let request = daemon.request(reqwest::Method::PUT, "/v1/collections/g/points");
            let acked = acked.clone();
            tokio::spawn(async move {
                for batch in 0..12u64 {
                    let ids: Vec<u64> = (0..10).map(|i| w * 10_000 + batch * 10 + i).collect();
                    let points: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({ "id": id, "vector": [*id as f32, w as f32, batch as f32, 1] }))
                        .collect();
                    let response = request
                        .try_clone()
                        .unwrap()
                        .json(&json!({ "points": points }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                    acked.lock().unwrap().extend(ids);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let fsyncs = sample(&daemon.metrics().await, "ipvec_wal_fsyncs", &[]) - before;
    assert!(
        fsyncs >= 1.0 && fsyncs < writes as f64,
        "{fsyncs} fsyncs for {writes} concurrent writes: writers should share them"
    );
    // Killed without a chance to commit: every acknowledged point comes back from the log.
    signal("KILL", daemon.pid());
    let _ = daemon.child.take().unwrap().wait();
    let daemon = Daemon::start(r, &[]);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), writes * 10);
    let (s, info) = daemon
        .call(reqwest::Method::GET, "/v1/collections/g", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(info["points"].as_u64(), Some(acked.len() as u64));
    for id in acked.iter().step_by(7) {
        let (s, point) = daemon
            .call(
                reqwest::Method::GET,
                &format!("/v1/collections/g/points/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "acknowledged point {id} is missing: {point}");
        assert_eq!(point["vector"][0].as_f64(), Some(*id as f64));
    }
}
