//! The search cache against a real daemon over loopback, on Fashion-MNIST: 1,000 queries
//! searched twice answer exactly what they answer uncached (the second time from the cache,
//! as the metrics count), `Cache-Control: no-cache` and `no-store` leave the cache alone, and
//! the cache drops its least recently used answer at its configured size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[allow(dead_code)]
#[path = "../benches/engine/data.rs"]
mod data;

use common::*;
use ipvec_protocol::api::vectors::encode_b64;
use reqwest::Method;
use serde_json::{json, Value};

/// Points written, and queries searched.
const POINTS: usize = 10_000;
const QUERIES: usize = 1_000;
/// Queries of one batch request.
const BATCH: usize = 250;

/// No commit moves a collection's root during a test unless it asks for one.
const NO_COMMITS: (&str, &str) = ("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "3600000");

/// A daemon with collection `fm`: the first `POINTS` Fashion-MNIST images (l2) with their
/// label as metadata, committed (the daemon restarted after the write) — and the test images.
async fn daemon_with_fashion(envs: &[(&str, &str)]) -> (TestRepo, Daemon, Vec<Vec<f32>>) {
    let data = data::load(QUERIES).expect("apt-get install dataset-fashion-mnist");
    let repo = new_repo();
    let mut daemon = Daemon::start(&repo.path, envs);
    let create = json!({"name": "fm", "dim": data.dim, "metric": "l2"});
    let (s, answer) = daemon
        .call(Method::POST, "/v1/collections", Some(create))
        .await;
    assert_eq!(s, 200, "{answer}");
    for start in (0..POINTS).step_by(2_000) {
        let points: Vec<Value> = (start..start + 2_000)
            .map(|i| {
                json!({"id": i, "vector_b64": encode_b64(&data.vector(i)),
                       "metadata": {"label": data.labels[i]}})
            })
            .collect();
        let (s, answer) = daemon
            .call(
                Method::PUT,
                "/v1/collections/fm/points",
                Some(json!({ "points": points })),
            )
            .await;
        assert_eq!(s, 200, "{answer}");
    }
    daemon.stop();
    let daemon = Daemon::start(&repo.path, envs);
    (repo, daemon, data.queries_f32())
}

/// The answers of `queries`, in batches, each batch request with body fields `extra`.
async fn search_all(daemon: &Daemon, queries: &[Vec<f32>], extra: &Value) -> Vec<Value> {
    let mut answers = Vec::new();
    for chunk in queries.chunks(BATCH) {
        let mut body = json!({
            "queries": chunk.iter().map(|q| json!({"vector_b64": encode_b64(q)})).collect::<Vec<_>>(),
            "k": 10,
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (s, answer) = daemon
            .call(Method::POST, "/v1/collections/fm/search/batch", Some(body))
            .await;
        assert_eq!(s, 200, "{answer}");
        answers.extend(answer["results"].as_array().unwrap().iter().cloned());
    }
    answers
}

/// An answer without its `cached` mark.
fn unmarked(answer: &Value) -> Value {
    let mut answer = answer.clone();
    answer.as_object_mut().unwrap().remove("cached");
    answer
}

fn cached(answer: &Value) -> bool {
    answer["cached"].as_bool().unwrap_or(false)
}

/// The search cache's hits, misses, evictions and entries.
async fn cache_counts(daemon: &Daemon) -> [f64; 4] {
    let scrape = daemon.metrics().await;
    [
        "ipvec_search_cache_hits",
        "ipvec_search_cache_misses",
        "ipvec_search_cache_evictions",
        "ipvec_search_cache_entries",
    ]
    .map(|name| sample(&scrape, name, &[]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_queries_searched_twice_answer_as_uncached_the_second_time_from_the_cache() {
    let (_repo, daemon, queries) = daemon_with_fashion(&[NO_COMMITS]).await;
    let n = QUERIES as f64;

    let uncached = search_all(&daemon, &queries, &json!({"cache": false})).await;
    assert_eq!(uncached.len(), QUERIES);
    assert!(uncached.iter().all(|a| !cached(a)));
    assert_eq!(
        cache_counts(&daemon).await,
        [0.0; 4],
        "opted out: not looked up"
    );

    let first = search_all(&daemon, &queries, &json!({})).await;
    assert!(first.iter().all(|a| !cached(a)));
    assert_eq!(cache_counts(&daemon).await, [0.0, n, 0.0, n]);

    let second = search_all(&daemon, &queries, &json!({})).await;
    assert!(second.iter().all(cached), "every answer from the cache");
    assert_eq!(cache_counts(&daemon).await, [n, n, 0.0, n]);

    for (i, ((u, f), s)) in uncached.iter().zip(&first).zip(&second).enumerate() {
        assert_eq!(u["hits"].as_array().unwrap().len(), 10, "query {i}");
        assert_eq!(unmarked(f), *u, "query {i}, first pass");
        assert_eq!(unmarked(s), *u, "query {i}, from the cache");
    }

    // A filter is part of what is cached: the same vectors with a filter are new searches.
    let shirts = json!({"filter": {"must": [{"key": "label", "match": 6}]}});
    let filtered = search_all(&daemon, &queries[..BATCH], &shirts).await;
    assert!(filtered.iter().all(|a| !cached(a)));
    assert!(filtered.iter().all(|a| a["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["metadata"]["label"] == 6)));
    let [hits, misses, ..] = cache_counts(&daemon).await;
    assert_eq!((hits, misses), (n, n + BATCH as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_control_leaves_the_cache_alone_and_the_size_bounds_it() {
    let repo = new_repo();
    let daemon = Daemon::start(
        &repo.path,
        &[NO_COMMITS, ("IPVEC_SEARCH_CACHE_ENTRIES", "3")],
    );
    let create = json!({"name": "fm", "dim": 8, "metric": "l2"});
    let (s, _) = daemon
        .call(Method::POST, "/v1/collections", Some(create))
        .await;
    assert_eq!(s, 200);
    let points: Vec<Value> = seeded_vectors(7, 200, 8)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i, "vector": v}))
        .collect();
    let (s, _) = daemon
        .call(
            Method::PUT,
            "/v1/collections/fm/points",
            Some(json!({ "points": points })),
        )
        .await;
    assert_eq!(s, 200);
    let queries = seeded_vectors(8, 5, 8);
    let search = |q: usize, cache_control: Option<&'static str>| {
        let mut request = daemon
            .request(Method::POST, "/v1/collections/fm/search")
            .json(&json!({"vector": queries[q], "k": 5}));
        if let Some(value) = cache_control {
            request = request.header("Cache-Control", value);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            cached(&response.json::<Value>().await.unwrap())
        }
    };

    for q in 0..3 {
        assert!(!search(q, None).await);
    }
    assert_eq!(cache_counts(&daemon).await, [0.0, 3.0, 0.0, 3.0]);
    for value in ["no-cache", "no-store", "max-age=0, No-Cache"] {
        assert!(!search(0, Some(value)).await, "{value}");
    }
    assert_eq!(
        cache_counts(&daemon).await,
        [0.0, 3.0, 0.0, 3.0],
        "no-cache and no-store neither read nor fill the cache"
    );
    assert!(
        search(0, Some("max-age=60")).await,
        "other directives use it"
    );

    // Query 0 was used last: query 3 takes the place of query 1, the least recently
    // used; query 1 then comes back in place of query 2.
    assert!(!search(3, None).await);
    assert_eq!(cache_counts(&daemon).await, [1.0, 4.0, 1.0, 3.0]);
    assert!(!search(1, None).await);
    assert!(search(0, None).await && search(3, None).await && search(1, None).await);
    assert!(!search(2, None).await);
    assert_eq!(cache_counts(&daemon).await, [4.0, 6.0, 3.0, 3.0]);
}
