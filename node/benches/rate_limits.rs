//! What rate limiting costs per request, next to the same work without it, in one run.
//!
//! ```text
//! cargo bench -p ipvec-node --bench rate_limits
//! cargo bench -p ipvec-node --bench rate_limits -- --requests 500000
//! ```
//!
//! Passes, each `--requests` (200,000) times on one thread, interleaved three rounds so
//! that neither side gets a warmer machine; the median round is printed:
//! - guard: the API's gate on a `GET /v1/collections` request with the admin token, as it
//!   was before rate limits (host, origin and token checks) and as it is now (plus the
//!   read-only check and the caller's read bucket), and with a token of `ipvec token create`
//!   (the tokens file checked for changes, the token's hash looked up);
//! - core: [`Buckets::take`] for one key, for 10,000 keys in turn, and for a flood of new
//!   keys past the buckets' capacity (each new key makes room), next to a `HashMap` counter
//!   increment per key as the floor.
//!
//! The rates are set high enough that nothing is refused: the cost measured is that of
//! admitting. Asserts nothing about time.

use std::{
    collections::HashMap,
    hint::black_box,
    time::{Duration, Instant},
};

use axum::{body::Body, extract::Request};
use ipvec_node::{
    api::guard::Gate,
    limits::{
        bucket::{Buckets, Rate},
        tokens::{self, Role, TokenTable},
    },
    ops::metrics::Metrics,
    repo::{ApiConfig, LimitsConfig},
};

fn request(token: &str) -> Request {
    Request::builder()
        .uri("/v1/collections")
        .header("host", "127.0.0.1:5080")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap_or_default()
}

/// Nanoseconds per call of `f`, `n` calls.
fn per_call(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        f(i);
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut n = 200_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--requests" => n = args.next().unwrap_or_default().parse()?,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other:?}; use --requests N"),
        }
    }
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("keys"))?;
    for i in 0..100 {
        tokens::create(dir.path(), &format!("other-{i}"), Role::Read)?;
    }
    let user = tokens::create(dir.path(), "user", Role::Read)?;
    let admin = "a".repeat(64);
    let api = ApiConfig::default();
    let limits = LimitsConfig {
        read_rate: u32::MAX,
        read_burst: u32::MAX,
        ..LimitsConfig::default()
    };
    let metrics = Metrics::new();
    let before = Gate::new(&api, Some(admin.clone()));
    let now = Gate::new(&api, Some(admin.clone())).with_limits(
        TokenTable::of_repo(dir.path()),
        &limits,
        &metrics,
    );
    let rate = Rate::new(u32::MAX, u32::MAX);
    let keys = 10_000usize;

    let mut rounds: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..3 {
        let mut add = |name, ns| rounds.entry(name).or_default().push(ns);
        add(
            "guard before (admin token)",
            per_call(n, |_| {
                black_box(before.admit(&request(&admin)).is_ok());
            }),
        );
        add(
            "guard now (admin token)",
            per_call(n, |_| {
                black_box(now.admit(&request(&admin)).is_ok());
            }),
        );
        add(
            "guard now (token of `token create`)",
            per_call(n, |_| {
                black_box(now.admit(&request(&user)).is_ok());
            }),
        );
        let t0 = Instant::now();
        let mut counts: HashMap<usize, u64> = HashMap::new();
        add(
            "floor: HashMap counter, 10,000 keys",
            per_call(n, |i| {
                *counts.entry(i % keys).or_default() += 1;
            }),
        );
        black_box(&counts);
        let mut one: Buckets<usize> = Buckets::new(rate, 16_384);
        add(
            "bucket take, 1 key",
            per_call(n, |i| {
                let at = t0 + Duration::from_nanos(i as u64);
                black_box(one.take(0, 1.0, at).verdict);
            }),
        );
        let mut many: Buckets<usize> = Buckets::new(rate, 16_384);
        add(
            "bucket take, 10,000 keys",
            per_call(n, |i| {
                let at = t0 + Duration::from_nanos(i as u64);
                black_box(many.take(i % keys, 1.0, at).verdict);
            }),
        );
        let mut flood: Buckets<usize> = Buckets::new(rate, 16_384);
        add(
            "bucket take, every key new (capacity 16,384)",
            per_call(n, |i| {
                let at = t0 + Duration::from_nanos(i as u64);
                black_box(flood.take(i, 1.0, at).verdict);
            }),
        );
        assert!(flood.len() <= 16_384);
    }
    println!("rate limits: {n} calls a pass, median of 3 rounds, one thread");
    let order = [
        "guard before (admin token)",
        "guard now (admin token)",
        "guard now (token of `token create`)",
        "floor: HashMap counter, 10,000 keys",
        "bucket take, 1 key",
        "bucket take, 10,000 keys",
        "bucket take, every key new (capacity 16,384)",
    ];
    for name in order {
        let ns = median(rounds.remove(name).unwrap_or_default());
        println!("{name:<46} {ns:>9.1} ns/call");
    }
    Ok(())
}
