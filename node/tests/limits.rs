//! Rate limits, token roles and quotas against a real daemon on loopback: tokens made with
//! `ipvec token create`, callers past their rate answered 429 with `Retry-After` while
//! others keep their budget, read-only tokens refused writes, and quotas that refuse a whole
//! batch with nothing logged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A token made with `ipvec token create` on `repo`.
fn new_token(repo: &std::path::Path, name: &str, role: &str) -> String {
    let made = json_of(&ok(
        repo,
        &["--json", "token", "create", "--role", role, "--name", name],
    ));
    assert_eq!(made["role"], role);
    made["token"].as_str().unwrap().to_string()
}

/// Sends a request as `token`: the status, `Retry-After` and the JSON answer.
async fn call_as(
    daemon: &Daemon,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut request = daemon
        .http
        .request(method, format!("{}{path}", daemon.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

fn points(range: std::ops::Range<u64>) -> Value {
    let points: Vec<Value> = range
        .map(|i| json!({ "id": i, "vector": [i as f32, 1.0, 2.0, 3.0] }))
        .collect();
    json!({ "points": points })
}

/// The collection's point count, root and unlogged bytes.
async fn state_of(daemon: &Daemon, name: &str) -> (u64, String, u64) {
    let info = daemon
        .call_ok(Method::GET, &format!("/v1/collections/{name}"), None)
        .await;
    (
        info["points"].as_u64().unwrap(),
        info["root"].as_str().unwrap().to_string(),
        info["wal_bytes"].as_u64().unwrap(),
    )
}

/// Waits until collection `name`'s writes are committed (nothing left in its log).
async fn committed(daemon: &Daemon, name: &str) -> (u64, String, u64) {
    for _ in 0..300 {
        let state = state_of(daemon, name).await;
        if state.2 == 0 {
            return state;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("collection {name} was never committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_past_its_rate_gets_429_while_another_token_keeps_full_speed() {
    let repo = new_repo();
    let noisy = new_token(&repo.path, "noisy", "read");
    let calm = new_token(&repo.path, "calm", "read");
    let daemon = Daemon::start(
        &repo.path,
        &[
            ("IPVEC_API_REQUIRE_TOKEN", "true"),
            ("IPVEC_LIMITS_READ_RATE", "1"),
            ("IPVEC_LIMITS_READ_BURST", "5"),
        ],
    );
    // The burst passes, then a refusal; at one read a second, 60 requests cannot all fit
    // however slow this machine is.
    let mut admitted = 0;
    let refusal = loop {
        let (status, retry, body) =
            call_as(&daemon, &noisy, Method::GET, "/v1/collections", None).await;
        if status != 200 {
            break (status, retry, body);
        }
        admitted += 1;
        assert!(admitted < 60, "never limited");
    };
    assert!(admitted >= 5, "the whole burst passes first ({admitted})");
    let (status, retry, body) = refusal;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limits.read_rate") && message.contains("\"noisy\""),
        "{message}"
    );
    // Another token has its own budget: its whole burst passes now.
    for i in 0..5 {
        let (status, _, body) = call_as(&daemon, &calm, Method::GET, "/v1/collections", None).await;
        assert_eq!(status, 200, "request {i} of another token: {body}");
    }
    // Liveness is never limited.
    for _ in 0..10 {
        let health = daemon
            .http
            .get(format!("{}/health", daemon.url))
            .send()
            .await;
        assert_eq!(health.unwrap().status(), 200);
    }
    let scrape = daemon.metrics().await;
    let limited = sample(
        &scrape,
        "ipvec_rate_limited",
        &[("scope", "api"), ("kind", "read")],
    );
    assert!(limited >= 1.0, "counted in metrics: {limited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_token_cannot_write_but_can_search_and_a_revoked_one_is_refused() {
    let repo = new_repo();
    let reader = new_token(&repo.path, "reader", "read");
    let writer = new_token(&repo.path, "writer", "write");
    let listed = json_of(&ok(&repo.path, &["--json", "token", "list"]));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2);
    assert!(
        !listed.to_string().contains(&reader),
        "tokens are never listed"
    );
    let daemon = Daemon::start(&repo.path, &[("IPVEC_API_REQUIRE_TOKEN", "true")]);
    let create = json!({ "name": "r", "dim": 4, "metric": "l2" });
    let (status, _, body) = call_as(
        &daemon,
        &reader,
        Method::POST,
        "/v1/collections",
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("role write") && message.contains("\"reader\""),
        "{message}"
    );
    let (status, _, body) = call_as(
        &daemon,
        &writer,
        Method::POST,
        "/v1/collections",
        Some(create),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = call_as(
        &daemon,
        &writer,
        Method::PUT,
        "/v1/collections/r/points",
        Some(points(0..20)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let before = state_of(&daemon, "r").await;

    for (method, path, body) in [
        (
            Method::PUT,
            "/v1/collections/r/points",
            Some(points(100..110)),
        ),
        (
            Method::POST,
            "/v1/collections/r/points/delete",
            Some(json!({ "ids": [1, 2] })),
        ),
        (Method::DELETE, "/v1/collections/r", None),
        (Method::POST, "/v1/gc", None),
    ] {
        let (status, _, answer) = call_as(&daemon, &reader, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    assert_eq!(
        state_of(&daemon, "r").await.0,
        before.0,
        "nothing was written"
    );
    let search = json!({ "vector": [3.0, 1.0, 2.0, 3.0], "k": 2 });
    let (status, _, hits) = call_as(
        &daemon,
        &reader,
        Method::POST,
        "/v1/collections/r/search",
        Some(search),
    )
    .await;
    assert_eq!(status, 200, "{hits}");
    assert_eq!(hits["hits"][0]["id"], 3, "{hits}");
    let (status, _, _) = call_as(&daemon, &reader, Method::GET, "/v1/collections/r", None).await;
    assert_eq!(status, 200);

    // Revoked while the daemon runs: refused from the next request on.
    ok(&repo.path, &["token", "revoke", "reader"]);
    let (status, _, body) = call_as(&daemon, &reader, Method::GET, "/v1/collections", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = call_as(&daemon, &writer, Method::GET, "/v1/collections", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_stops_a_batch_that_would_cross_it_with_nothing_stored() {
    let repo = new_repo();
    let writer = new_token(&repo.path, "writer", "write");
    let daemon = Daemon::start(
        &repo.path,
        &[
            ("IPVEC_API_REQUIRE_TOKEN", "true"),
            ("IPVEC_LIMITS_COLLECTION_MAX_POINTS", "10"),
            ("IPVEC_LIMITS_TOKEN_MAX_COLLECTIONS", "1"),
            ("IPVEC_LIMITS_TOKEN_MAX_BYTES", "96"),
            ("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "100"),
        ],
    );
    // The collection quota, written by the admin token.
    daemon
        .call_ok(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "q", "dim": 4, "metric": "l2" })),
        )
        .await;
    daemon
        .call_ok(Method::PUT, "/v1/collections/q/points", Some(points(0..8)))
        .await;
    let before = committed(&daemon, "q").await;
    assert_eq!(before.0, 8);
    let (s, body) = daemon
        .call(Method::PUT, "/v1/collections/q/points", Some(points(5..13)))
        .await;
    assert_eq!(s, 507, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limits.collection_max_points") && message.contains("holds 8 points"),
        "{message}"
    );
    assert_eq!(
        state_of(&daemon, "q").await,
        before,
        "count, root and log are as they were"
    );
    // Points it holds already are not new: 8 overwritten and 2 added make 10.
    daemon
        .call_ok(Method::PUT, "/v1/collections/q/points", Some(points(0..10)))
        .await;
    assert_eq!(state_of(&daemon, "q").await.0, 10);

    // A token's quotas over the collections it created: one collection, 96 vector bytes
    // (six 4-d f32 points).
    let create = |name: &str| json!({ "name": name, "dim": 4, "metric": "l2" });
    let (s, _, body) = call_as(
        &daemon,
        &writer,
        Method::POST,
        "/v1/collections",
        Some(create("w")),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = call_as(
        &daemon,
        &writer,
        Method::POST,
        "/v1/collections",
        Some(create("w2")),
    )
    .await;
    assert_eq!(s, 507, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limits.token_max_collections"));
    let put = |range| {
        call_as(
            &daemon,
            &writer,
            Method::PUT,
            "/v1/collections/w/points",
            Some(points(range)),
        )
    };
    let (s, _, body) = put(0..4).await;
    assert_eq!(s, 200, "{body}");
    let before = committed(&daemon, "w").await;
    let (s, _, body) = put(4..7).await;
    assert_eq!(s, 507, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limits.token_max_bytes"));
    assert_eq!(state_of(&daemon, "w").await, before);
    let (s, _, body) = put(4..6).await;
    assert_eq!(s, 200, "exactly at the quota: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_admin_token_names_backup_folders_outside_backup_dir() {
    let repo = new_repo();
    let work = repo.path.parent().unwrap().to_path_buf();
    let backups = work.join("backups");
    let elsewhere = work.join("elsewhere");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    // A link under backup.dir to a folder outside it is seen for where it leads.
    std::os::unix::fs::symlink(&elsewhere, backups.join("link")).unwrap();
    let writer = new_token(&repo.path, "writer", "write");
    let daemon = Daemon::start(
        &repo.path,
        &[
            ("IPVEC_API_REQUIRE_TOKEN", "true"),
            ("IPVEC_BACKUP_DIR", backups.to_str().unwrap()),
        ],
    );
    daemon
        .call_ok(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "b", "dim": 4, "metric": "l2" })),
        )
        .await;
    daemon
        .call_ok(Method::PUT, "/v1/collections/b/points", Some(points(0..20)))
        .await;
    let backup = |dir: &str| Some(json!({ "dir": dir }));

    for outside in [
        elsewhere.join("x").to_str().unwrap().to_string(),
        "link/x".to_string(),
    ] {
        let (status, _, body) = call_as(
            &daemon,
            &writer,
            Method::POST,
            "/v1/backup",
            backup(&outside),
        )
        .await;
        assert_eq!(status, 403, "{outside}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("outside backup.dir") && message.contains("admin token"),
            "{message}"
        );
    }
    let (status, _, body) = call_as(
        &daemon,
        &writer,
        Method::POST,
        "/v1/backup",
        backup("../up"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = call_as(
        &daemon,
        &writer,
        Method::POST,
        "/v1/backup/restore",
        backup(elsewhere.to_str().unwrap()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing was written outside backup.dir"
    );

    // Under backup.dir, by a relative name: the token backs up.
    let (status, _, body) = call_as(
        &daemon,
        &writer,
        Method::POST,
        "/v1/backup",
        backup("nightly"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dir"], backups.join("nightly").to_str().unwrap());
    assert!(backups.join("nightly/backup.json").is_file());

    // The admin token names any folder.
    daemon
        .call_ok(
            Method::POST,
            "/v1/backup",
            backup(elsewhere.to_str().unwrap()),
        )
        .await;
    assert!(elsewhere.join("backup.json").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_backs_up_anywhere_through_a_daemon_that_requires_no_token() {
    let repo = new_repo();
    let work = repo.path.parent().unwrap().to_path_buf();
    let daemon = Daemon::start(&repo.path, &[]);
    daemon
        .call_ok(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "b", "dim": 4, "metric": "l2" })),
        )
        .await;
    // A caller without the admin token, with backup.dir unset, names no folder.
    let answer = daemon
        .http
        .post(format!("{}/v1/backup", daemon.url))
        .json(&json!({ "dir": work.join("mine").to_str().unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("while backup.dir is unset"),
        "{body}"
    );
    assert!(!work.join("mine").exists());
    // The CLI sends the repository's admin token: its folder is taken as given.
    let out = work.join("cli-backups");
    let created = json_of(&ok(
        &repo.path,
        &["--json", "backup", "create", out.to_str().unwrap()],
    ));
    assert_eq!(created["dir"], out.to_str().unwrap(), "{created}");
    assert!(out.join("backup.json").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_collections_own_quota_set_at_create_and_changed_later_stops_writes() {
    let repo = new_repo();
    let envs = [
        ("IPVEC_LIMITS_COLLECTION_MAX_POINTS", "20"),
        ("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "100"),
    ];
    let mut daemon = Daemon::start(&repo.path, &envs);
    let body = daemon
        .call_ok(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "own", "dim": 4, "metric": "l2", "max_points": 5 })),
        )
        .await;
    assert_eq!(body["quota"], json!({ "max_points": 5, "max_bytes": 0 }));
    daemon
        .call_ok(
            Method::PUT,
            "/v1/collections/own/points",
            Some(points(0..5)),
        )
        .await;
    let before = committed(&daemon, "own").await;
    let (s, body) = daemon
        .call(
            Method::PUT,
            "/v1/collections/own/points",
            Some(points(5..7)),
        )
        .await;
    assert_eq!(s, 507, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("its max_points") && message.contains("ipvec collection quota"),
        "{message}"
    );
    assert_eq!(state_of(&daemon, "own").await, before, "nothing stored");

    // Raised with the CLI (through the daemon): the write goes in.
    let said = ok(
        &repo.path,
        &["collection", "quota", "own", "--max-points", "8"],
    );
    assert!(said.contains("at most 8 points"), "{said}");
    let shown = ok(&repo.path, &["collection", "quota", "own"]);
    assert_eq!(
        shown, said,
        "without flags it shows the quota and leaves it"
    );
    daemon
        .call_ok(
            Method::PUT,
            "/v1/collections/own/points",
            Some(points(5..8)),
        )
        .await;
    // Raised past the node's limit: the node's limit holds.
    daemon
        .call_ok(
            Method::PUT,
            "/v1/collections/own/quota",
            Some(json!({ "max_points": 1000 })),
        )
        .await;
    let (s, body) = daemon
        .call(
            Method::PUT,
            "/v1/collections/own/points",
            Some(points(8..30)),
        )
        .await;
    assert_eq!(s, 507, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limits.collection_max_points"),
        "{message}"
    );
    // Kept across a restart.
    daemon.stop();
    let daemon = Daemon::start(&repo.path, &envs);
    let info = daemon
        .call_ok(Method::GET, "/v1/collections/own", None)
        .await;
    assert_eq!(info["quota"]["max_points"], 1000, "{info}");
    assert_eq!(info["points"], 8, "{info}");
    daemon
        .call_ok(Method::PUT, "/v1/collections/own/quota", Some(json!({})))
        .await;
    let (_, info) = daemon.call(Method::GET, "/v1/collections/own", None).await;
    assert!(info.get("quota").is_none(), "no quota of its own: {info}");
}
