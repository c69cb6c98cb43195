//! Opening one collection never holds up another: a daemon restarted without a large
//! collection's saved index rebuilds it in the background, and meanwhile answers requests on
//! its other collections, refuses those on the opening one at once with how far the rebuild
//! has come, and says it is not ready, until the rebuilt collection answers as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

/// Dimensions of the large collection's vectors.
const DIM: u64 = 64;
/// Points of the large collection: enough that rebuilding its index takes seconds (on 2
/// cores, 12,000 take about 8 s in a debug build; 150,000 about 14 s in a release build).
const POINTS: u64 = if cfg!(debug_assertions) {
    12_000
} else {
    150_000
};
/// Points of each tight group (the large collection is made of groups around random centres).
const GROUP: u64 = 8;
/// Points in one upsert request.
const BATCH: u64 = 2_000;
/// How long any wait in this test may last before it fails.
const BOUND: Duration = Duration::from_secs(120);

/// The part `name` of a `/ready` answer.
fn part<'a>(readiness: &'a Value, name: &str) -> &'a Value {
    readiness["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no part {name} in {readiness}"))
}

/// A number in [-1, 1) drawn from `seed` (splitmix64: the same on every machine).
fn unit(seed: u64) -> f32 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// The centre of group `g`.
fn centre(g: u64) -> Vec<f32> {
    (0..DIM).map(|d| unit(g * DIM + d)).collect()
}

/// Point `i`: close to its group's centre, each group far from the others.
fn vector(i: u64) -> Vec<f32> {
    centre(i / GROUP)
        .into_iter()
        .zip(0..DIM)
        .map(|(c, d)| c + 0.01 * unit(u64::MAX / 2 + i * DIM + d))
        .collect()
}

/// The groups whose centres the searches in the large collection look for.
const SEARCHED: [u64; 4] = [0, 7, 555, POINTS / GROUP - 1];

/// Searches in the large collection: the centres of a few groups.
fn queries() -> Vec<Value> {
    SEARCHED
        .iter()
        .map(|&g| json!({ "vector": centre(g), "k": GROUP }))
        .collect()
}

/// The hit ids of a search answer.
fn ids(answer: &Value) -> Vec<u64> {
    answer["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("not a search answer: {answer}"))
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

/// `n` with a comma between each group of three digits, as the daemon writes counts.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A search answer without its hits' leaf CIDs (a point still in the log has none; the clean
/// stop commits it into the tree).
fn without_cids(mut answer: Value) -> Value {
    for hit in answer["hits"].as_array_mut().unwrap() {
        hit.as_object_mut().unwrap().remove("cid");
    }
    answer
}

/// The percentage in an "opening: N% of its index built" message.
fn percent_built(message: &str) -> Option<u64> {
    let (before, _) = message.split_once("% of its index built")?;
    before.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_rebuilding_its_index_holds_up_no_other() {
    let repo = new_repo();
    let r = &repo.path;
    let mut daemon = Daemon::start(r, &[]);
    let started = Instant::now();
    for create in [
        json!({ "name": "a", "dim": DIM, "metric": "l2", "shards": 1 }),
        json!({ "name": "b", "dim": 4, "metric": "l2", "shards": 1 }),
    ] {
        let (s, body) = daemon
            .call(Method::POST, "/v1/collections", Some(create))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    for first in (0..POINTS).step_by(BATCH as usize) {
        let points: Vec<Value> = (first..(first + BATCH).min(POINTS))
            .map(|i| json!({ "id": i, "vector": vector(i) }))
            .collect();
        let (s, body) = daemon
            .call(
                Method::PUT,
                "/v1/collections/a/points",
                Some(json!({ "points": points })),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let small: Vec<Value> = (0..100u64)
        .map(|i| json!({ "id": i, "vector": [1, (i % 9) as f32, 2, 0.5] }))
        .collect();
    let (s, body) = daemon
        .call(
            Method::PUT,
            "/v1/collections/b/points",
            Some(json!({ "points": small })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let mut before = Vec::new();
    for query in queries() {
        let (s, answer) = daemon
            .call(Method::POST, "/v1/collections/a/search", Some(query))
            .await;
        assert_eq!(s, 200, "{answer}");
        before.push(answer);
    }
    // Each query finds its whole group: the answers are the collection's, not chance.
    for (answer, g) in before.iter().zip(SEARCHED) {
        let mut found = ids(answer);
        found.sort_unstable();
        assert_eq!(found, (g * GROUP..(g + 1) * GROUP).collect::<Vec<_>>());
    }
    let built = started.elapsed();

    // A clean stop saves every index; without A's, the next start rebuilds it from the tree.
    daemon.stop();
    let index = r.join("collections/a/index");
    assert!(index.is_dir(), "a clean stop saves the index");
    std::fs::remove_dir_all(&index).unwrap();
    let restarted = Instant::now();
    let mut daemon = Daemon::spawn_with(r, &[], &[]);

    // A search on A is refused while its index is rebuilt, saying how far it has come.
    let refusal = loop {
        let (s, body) = daemon
            .call(
                Method::POST,
                "/v1/collections/a/search",
                Some(queries()[0].clone()),
            )
            .await;
        assert_ne!(
            s, 200,
            "collection a answered before a refusal was seen: its rebuild was too quick to \
             observe; make it bigger (POINTS)"
        );
        assert_eq!(s, 503, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        let message = body["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("collection \"a\" is opening"),
            "{message}"
        );
        // The first moments of an opening read the shards, before the count is known.
        if percent_built(&message).is_some() {
            break message;
        }
        assert!(restarted.elapsed() < BOUND, "{message}");
    };
    let percent = percent_built(&refusal).unwrap();
    assert!(percent < 100, "{refusal}");
    assert!(refusal.contains("retry in a few seconds"), "{refusal}");
    assert!(
        refusal.contains(&format!(" of {} points)", grouped(POINTS))),
        "the refusal counts the points: {refusal}"
    );
    assert!(!daemon.ready(), "not ready while a collection opens");
    // Meanwhile B searches, takes writes and reads them back.
    let (s, body) = daemon
        .call(
            Method::POST,
            "/v1/collections/b/search",
            Some(json!({ "vector": [1, 3, 2, 0.5], "k": 3 })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let hits = ids(&body);
    assert!(hits.len() == 3 && hits.iter().all(|i| i % 9 == 3), "{body}");
    let (s, body) = daemon
        .call(
            Method::PUT,
            "/v1/collections/b/points",
            Some(json!({ "points": [{ "id": 1000, "vector": [9, 9, 9, 9] }] })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = daemon
        .call(
            Method::POST,
            "/v1/collections/b/search",
            Some(json!({ "vector": [9, 9, 9, 9], "k": 1 })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ids(&body), [1000], "{body}");

    // …all while A was still opening: it refuses again, and the node is still not ready.
    let (s, body) = daemon
        .call(
            Method::POST,
            "/v1/collections/a/search",
            Some(queries()[1].clone()),
        )
        .await;
    assert_eq!(
        s, 503,
        "collection a opened before b's answers were checked; make it bigger (POINTS): {body}"
    );
    assert!(!daemon.ready(), "not ready while a collection opens");
    // /ready names the part holding it back, and how far it has come (B opened for its
    // requests).
    let (s, readiness) = daemon.call(Method::GET, "/ready", None).await;
    assert_eq!(s, 503, "{readiness}");
    assert_eq!(part(&readiness, "store")["state"], "ready", "{readiness}");
    assert_eq!(part(&readiness, "p2p")["state"], "ready", "{readiness}");
    let index = part(&readiness, "index");
    assert_eq!(index["state"], "not ready", "{readiness}");
    let detail = index["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("1 of 2 collections open (b); a opening, "),
        "{readiness}"
    );
    assert!(
        readiness["message"]
            .as_str()
            .unwrap()
            .starts_with("index: 1 of 2"),
        "{readiness}"
    );

    let refused_until = restarted.elapsed();

    // Then A opens (polled, bounded) and answers as before the restart.
    daemon.wait_ready(r, BOUND);
    let opened = restarted.elapsed();
    let (s, readiness) = daemon.call(Method::GET, "/ready", None).await;
    assert_eq!(s, 200, "{readiness}");
    assert_eq!(readiness["status"], "ready", "{readiness}");
    for name in ["store", "index", "p2p"] {
        assert_eq!(part(&readiness, name)["state"], "ready", "{readiness}");
    }
    assert_eq!(
        part(&readiness, "index")["detail"],
        "2 of 2 collections open",
        "{readiness}"
    );
    for (query, before) in queries().into_iter().zip(&before) {
        let (s, answer) = daemon
            .call(Method::POST, "/v1/collections/a/search", Some(query))
            .await;
        assert_eq!(s, 200, "{answer}");
        assert_eq!(without_cids(answer), without_cids(before.clone()));
    }
    daemon.stop();
    eprintln!(
        "{POINTS} points of {DIM} dimensions: built and searched in {built:?}; after the \
         restart, refused until {refused_until:?} (first at {percent}%), open after {opened:?}"
    );
}
