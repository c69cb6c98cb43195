//! Hostile and careless HTTP clients against a real daemon: extreme numbers in every field,
//! requests a web page could send, malformed routes, searches past their deadline. Nothing
//! may crash the daemon, every refusal has the JSON error body, and refused requests change
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Points with 4-d vectors, ids `range`.
fn points(range: std::ops::Range<u64>) -> Value {
    let points: Vec<Value> = range
        .map(|i| {
            json!({
                "id": i,
                "vector": [(i % 7) as f32, (i % 11) as f32 * 0.5, (i % 13) as f32 - 6.0, (i as f32).sqrt()],
                "metadata": { "group": i % 5 },
            })
        })
        .collect();
    json!({ "points": points })
}

/// Asserts a refusal: a 4xx status with the JSON error body.
fn refused(status: u16, answer: &Value, what: &str) {
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx refusal, got {status}: {answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap_or("");
    assert!(
        answer["error"]["code"].is_string() && !message.is_empty(),
        "{what}: no JSON error body: {answer}"
    );
    assert!(
        !message.contains("untagged") && !message.contains("variant"),
        "{what}: the message names Rust types: {message}"
    );
}

/// Sends `body` as it is (JSON text that may not parse, or break a limit) with the JSON
/// content type; the status and the answer.
async fn send_text(daemon: &Daemon, method: Method, path: &str, body: &str) -> (u16, Value) {
    let response = daemon
        .request(method, path)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn state_of(daemon: &Daemon, name: &str) -> (u64, String) {
    let (s, info) = daemon
        .call(Method::GET, &format!("/v1/collections/{name}"), None)
        .await;
    assert_eq!(s, 200, "{info}");
    (
        info["points"].as_u64().unwrap(),
        info["root"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extreme_numbers_in_every_field_are_refused_and_change_nothing() {
    let repo = new_repo();
    let mut daemon = Daemon::start(&repo.path, &[("IPVEC_API_MAX_BATCH_POINTS", "300")]);
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "h", "dim": 4, "metric": "l2" })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/h/points",
            Some(points(0..200)),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    // The searches below run on an index rebuilt from the tree on start (its saved copy
    // removed), so the one at ef 10,000 checks the rebuild reaches every point: with one
    // thread per core, the default until then, a rebuild left some no HNSW search returned.
    daemon.stop();
    std::fs::remove_dir_all(repo.path.join("collections/h/index")).unwrap();
    let daemon = Daemon::start(&repo.path, &[("IPVEC_API_MAX_BATCH_POINTS", "300")]);
    let before = state_of(&daemon, "h").await;

    // Every numeric field of a search, at and past its limits (2^63 crashed the daemon).
    let huge = ["9223372036854775808", "18446744073709551615"];
    let mut searches: Vec<String> = Vec::new();
    for exact in [false, true] {
        for k in [
            "0",
            "10001",
            huge[0],
            huge[1],
            "18446744073709551616",
            "-1",
            "1.5",
        ] {
            searches.push(format!(
                r#"{{"vector": [1, 2, 3, 4], "k": {k}, "exact": {exact}}}"#
            ));
        }
        for ef in ["0", "10001", huge[0], huge[1]] {
            searches.push(format!(
                r#"{{"vector": [1, 2, 3, 4], "ef": {ef}, "exact": {exact}}}"#
            ));
        }
        for deadline in ["0", "120001", huge[1]] {
            searches.push(format!(
                r#"{{"vector": [1, 2, 3, 4], "deadline_ms": {deadline}, "exact": {exact}}}"#
            ));
        }
    }
    let many: Vec<String> = (0..1_100)
        .map(|i| format!(r#"{{"key": "group", "match": {i}}}"#))
        .collect();
    searches.push(format!(
        r#"{{"vector": [1, 2, 3, 4], "filter": {{"should": [{}]}}}}"#,
        many.join(",")
    ));
    searches.push(
        r#"{"vector": [1, 2, 3, 4], "filter": {"must": [{"key": "a", "match": {"x": 1}}]}}"#.into(),
    );
    searches.push(r#"{"vector": [3.5e38, 3.5e38, 0, 0]}"#.into());
    searches.push(r#"{"vector": []}"#.into());
    for body in &searches {
        let (status, answer) =
            send_text(&daemon, Method::POST, "/v1/collections/h/search", body).await;
        refused(status, &answer, body);
        if body.contains("\"k\": 10001") {
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains("search.max_k"), "{message}");
        }
    }
    // Within the limits: k up to search.max_k is served, with every point.
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections/h/search",
            Some(json!({ "vector": [1, 2, 3, 4], "k": 10000, "ef": 10000 })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["hits"].as_array().unwrap().len(), 200);
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections/h/search",
            Some(json!({ "vector": [1, 2, 3, 4], "k": 10000, "exact": true })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["hits"].as_array().unwrap().len(), 200);

    // Every numeric field of a collection.
    let u32_max = u32::MAX.to_string();
    let mut creates: Vec<(String, String)> = Vec::new();
    for dim in ["0", "16385", &u32_max, "4294967296", "-3"] {
        creates.push(("dim".into(), dim.to_string()));
    }
    for field in ["m", "ef_construction", "ef_search", "shards", "replication"] {
        for value in ["0", "10001", &u32_max, "4294967296"] {
            creates.push((field.to_string(), value.to_string()));
        }
    }
    for (field, value) in &creates {
        let body = if field == "dim" {
            format!(r#"{{"name": "x", "dim": {value}}}"#)
        } else {
            format!(r#"{{"name": "x", "dim": 4, "{field}": {value}}}"#)
        };
        let (status, answer) = send_text(&daemon, Method::POST, "/v1/collections", &body).await;
        refused(status, &answer, &body);
    }
    let (s, list) = daemon.call(Method::GET, "/v1/collections", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        list["collections"].as_array().unwrap().len(),
        1,
        "no collection came of a refused create: {list}"
    );

    // Batches over api.max_batch_points, ids and vectors at the edges.
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/h/points",
            Some(points(1_000..1_301)),
        )
        .await;
    refused(s, &answer, "an upsert over api.max_batch_points");
    assert_eq!(s, 413);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("api.max_batch_points"));
    let ids: Vec<u64> = (0..301).collect();
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections/h/points/delete",
            Some(json!({ "ids": ids })),
        )
        .await;
    refused(s, &answer, "a delete over api.max_batch_points");
    for body in [
        r#"{"points": [{"id": 18446744073709551616, "vector": [1, 2, 3, 4]}]}"#,
        r#"{"points": [{"id": -1, "vector": [1, 2, 3, 4]}]}"#,
        r#"{"points": [{"id": 1, "vector": [1, 2, 3, 1e39]}]}"#,
        r#"{"points": [{"id": 1, "vector": [1, 2, 3]}]}"#,
    ] {
        let (status, answer) =
            send_text(&daemon, Method::PUT, "/v1/collections/h/points", body).await;
        refused(status, &answer, body);
    }

    // Alive, and nothing of the refused requests is stored.
    assert_eq!(state_of(&daemon, "h").await, before);
    // An id at the top of the range is an ordinary id.
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/h/points",
            Some(json!({ "points": [{ "id": u64::MAX, "vector": [1, 2, 3, 4] }] })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(state_of(&daemon, "h").await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_pages_cannot_drive_the_api() {
    let repo = new_repo();
    let daemon = Daemon::start(
        &repo.path,
        &[
            ("IPVEC_API_ALLOWED_ORIGINS", "http://app.example"),
            ("IPVEC_API_ALLOWED_HOSTS", "ipvec.test"),
        ],
    );
    let url = |path: &str| format!("{}{path}", daemon.url);
    let http = reqwest::Client::new();
    let pins = || async {
        let (s, pins) = daemon.call(Method::GET, "/v1/pins", None).await;
        assert_eq!(s, 200);
        pins["pins"].as_array().unwrap().len()
    };
    let pins_before = pins().await;

    // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
    for (method, path) in [(Method::GET, "/v1/collections"), (Method::POST, "/v1/gc")] {
        let r = http
            .request(method, url(path))
            .header("host", "evil.example:5080")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{answer}"
        );
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api.allowed_hosts"));
    }
    let r = http
        .get(url("/health"))
        .header("host", "evil.example:5080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "probes may name the host any way");
    for host in ["ipvec.test:5080", "localhost:1", "127.0.0.1"] {
        let r = http
            .get(url("/v1/collections"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }

    // Cross-origin "simple" requests: refused whatever their body, before any work.
    let simple = [
        (Method::POST, "/v1/gc", "text/plain", "x"),
        (
            Method::POST,
            "/v1/dag?pin=true",
            "text/plain",
            r#"{"a": 1}"#,
        ),
        (Method::POST, "/v1/collections/import", "text/plain", "x"),
        (
            Method::POST,
            "/v1/collections",
            "text/plain",
            r#"{"name": "w", "dim": 2}"#,
        ),
    ];
    for (method, path, media, body) in &simple {
        let r = http
            .request(method.clone(), url(path))
            .header("origin", "http://evil.example")
            .header("content-type", *media)
            .body(*body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api.allowed_origins"));
    }
    // The same bodies without an Origin (a form on a page that hides it, a careless client):
    // non-JSON bodies never reach a route that changes state.
    for (method, path, media, body) in &simple {
        let r = http
            .request(method.clone(), url(path))
            .header("content-type", *media)
            .body(*body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{path}: {answer}"
        );
    }
    let r = http
        .post(url("/v1/gc"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        pins().await,
        pins_before,
        "no pin came of a refused dag put"
    );
    let (_, list) = daemon.call(Method::GET, "/v1/collections", None).await;
    assert_eq!(list["collections"].as_array().unwrap().len(), 0);

    // A listed origin may; a body-less POST without an Origin (the CLI) may.
    let r = http
        .post(url("/v1/gc"))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.post(url("/v1/gc")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_bearer_in_any_case() {
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[("IPVEC_API_REQUIRE_TOKEN", "true")]);
    let token = daemon.token.clone().unwrap();
    let http = reqwest::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = http
            .get(format!("{}/v1/collections", daemon.url))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    for wrong in [
        format!("Basic {token}"),
        format!("Bearer {token}x"),
        "Bearer".into(),
    ] {
        let r = http
            .get(format!("{}/v1/collections", daemon.url))
            .header("authorization", wrong.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{wrong}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_error_has_the_json_body_and_routes_do_not_clash() {
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[("IPVEC_API_MAX_BODY_BYTES", "4096")]);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", daemon.url);
    let check = |status: u16, code: &'static str| {
        move |(s, answer): (u16, Value)| {
            assert_eq!(s, status, "{answer}");
            assert_eq!(answer["error"]["code"], code, "{answer}");
            assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
        }
    };
    let send = |request: reqwest::RequestBuilder| async move {
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    check(405, "method_not_allowed")(send(http.delete(url("/v1/gc"))).await);
    check(405, "method_not_allowed")(send(http.get(url("/v1/collections/import"))).await);
    check(404, "not_found")(send(http.get(url("/v2/nothing"))).await);
    let long = format!("/v1/collections/{}", "a".repeat(9_000));
    check(414, "uri_too_long")(send(http.get(url(&long))).await);
    let big = json!({ "name": "x".repeat(5_000), "dim": 2 });
    check(413, "payload_too_large")(send(http.post(url("/v1/collections")).json(&big)).await);
    check(415, "unsupported_media_type")(send(http.post(url("/v1/collections")).body("{}")).await);

    // Names the API's own paths use cannot be taken.
    for name in ["import", "fetch"] {
        let (s, answer) = daemon
            .call(
                Method::POST,
                "/v1/collections",
                Some(json!({ "name": name, "dim": 2 })),
            )
            .await;
        assert_eq!(s, 400, "{answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reserved"));
    }
    let err = fails(
        &repo.path,
        &["collection", "create", "import", "--dim", "2"],
    );
    assert!(err.contains("reserved"), "{err}");

    // A 128-byte string id is within the documented limit; 129 bytes is not, and says so.
    ok(&repo.path, &["collection", "create", "ids", "--dim", "2"]);
    let id = "x".repeat(128);
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/ids/points",
            Some(json!({ "points": [{ "id": id, "vector": [1, 0] }] })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/ids/points",
            Some(json!({ "points": [{ "id": "x".repeat(129), "vector": [1, 0] }] })),
        )
        .await;
    assert_eq!(s, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("129 bytes") && message.contains("limit of 128"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_past_its_deadline_stops_and_says_so() {
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[]);
    let (s, _) = daemon
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "d", "dim": 4, "metric": "l2" })),
        )
        .await;
    assert_eq!(s, 200);
    for start in (0..60_000).step_by(10_000) {
        let (s, answer) = daemon
            .call(
                Method::PUT,
                "/v1/collections/d/points",
                Some(points(start..start + 10_000)),
            )
            .await;
        assert_eq!(s, 200, "{answer}");
    }
    // The log commits the writes: its newest version holds all of them.
    let (s, log) = daemon
        .call(Method::GET, "/v1/collections/d/log", None)
        .await;
    assert_eq!(s, 200, "{log}");
    let root = log["versions"][0]["root"].as_str().unwrap().to_string();
    assert_eq!(log["versions"][0]["points"], 60_000);

    // An exact scan of a version reads 60,000 entries from the store: far past 1 ms.
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections/d/search",
            Some(json!({ "vector": [1, 2, 3, 4], "at": root, "deadline_ms": 1 })),
        )
        .await;
    assert_eq!(
        (s, answer["error"]["code"].as_str()),
        (504, Some("deadline_exceeded")),
        "{answer}"
    );
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1 ms"));
    // With the default deadline it answers, and the daemon serves on.
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections/d/search",
            Some(json!({ "vector": [1, 2, 3, 4], "at": root, "k": 3 })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["hits"].as_array().unwrap().len(), 3);
}

/// The reported case through the API: 500 random vectors and 1,500 copies of one more
/// (64-d, L2). HNSW answers must match exact ones, and a stored point's own vector must find
/// it. Before identical vectors were stored once, recall@10 here was 0.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_vectors_do_not_hide_the_rest() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[]);
    let (s, _) = daemon
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "dup", "dim": 64, "metric": "l2" })),
        )
        .await;
    assert_eq!(s, 200);
    let mut rng = StdRng::seed_from_u64(12);
    let mut random = || -> Vec<f32> { (0..64).map(|_| rng.gen_range(-1.0f32..1.0)).collect() };
    let copy = random();
    let mut points: Vec<Value> = (0..500u64)
        .map(|i| json!({ "id": i, "vector": random() }))
        .collect();
    points.extend((500..2_000u64).map(|i| json!({ "id": i, "vector": copy })));
    let (s, answer) = daemon
        .call(
            Method::PUT,
            "/v1/collections/dup/points",
            Some(json!({ "points": points })),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    let search = |vector: Vec<f32>, exact: bool| {
        let daemon = &daemon;
        async move {
            let (s, answer) = daemon
                .call(
                    Method::POST,
                    "/v1/collections/dup/search",
                    Some(json!({ "vector": vector, "k": 10, "exact": exact })),
                )
                .await;
            assert_eq!(s, 200, "{answer}");
            answer["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h["id"].as_u64().unwrap(), h["score"].as_f64().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let mut found = 0;
    for _ in 0..20 {
        let q = random();
        let exact = search(q.clone(), true).await;
        let tenth = exact[9].1;
        let got = search(q, false).await;
        found += got
            .iter()
            .filter(|(_, score)| *score >= tenth - 1e-4)
            .count();
    }
    let recall = found as f64 / 200.0;
    assert!(recall >= 0.99, "recall@10 {recall}");
    // A stored point's own vector finds it first; the copy finds its holders in id order.
    let (s, point) = daemon
        .call(Method::GET, "/v1/collections/dup/points/7", None)
        .await;
    assert_eq!(s, 200);
    let own: Vec<f32> = serde_json::from_value(point["vector"].clone()).unwrap();
    assert_eq!(search(own, false).await[0].0, 7);
    let holders: Vec<u64> = search(copy, false).await.iter().map(|h| h.0).collect();
    assert_eq!(holders, (500..510).collect::<Vec<u64>>());
}

/// What a plain client (one that writes its whole request, then reads) gets for a body the
/// daemon refuses: all of its upload is taken, then the error that says what to do. A
/// daemon that answered and closed early would make the rest of the upload fail.
fn upload_then_read(url: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    for (i, chunk) in body.chunks(64 << 10).enumerate() {
        if let Err(e) = stream.write_all(chunk) {
            panic!(
                "the daemon stopped taking the upload after {} KiB: {e}",
                i * 64
            );
        }
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(json).unwrap_or(Value::String(json.into())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_uploads_are_read_to_the_end_and_answered() {
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[("IPVEC_API_MAX_BODY_BYTES", "65536")]);
    ok(&repo.path, &["collection", "create", "up", "--dim", "4"]);
    let url = daemon.url.clone();
    let big = serde_json::to_vec(&points(0..200_000)).unwrap();
    let answers = tokio::task::spawn_blocking(move || {
        [
            upload_then_read(&url, "/v1/collections/up/points", "application/json", &big),
            upload_then_read(&url, "/v1/collections/up/points", "text/plain", &big),
        ]
    })
    .await
    .unwrap();
    let [(s, too_large), (t, wrong_type)] = answers;
    assert_eq!(s, 413, "{too_large}");
    let message = too_large["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("api.max_body_bytes") && message.contains("65536"),
        "{message}"
    );
    assert_eq!(t, 415, "{wrong_type}");
    assert_eq!(state_of(&daemon, "up").await.0, 0, "nothing was written");
    assert!(daemon.ready());
}
