//! The search cache on Fashion-MNIST (60,000 × 784, L2): the latency of a repeated search
//! answered from the cache next to the same searches answered by the index, in the same run.
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench cache
//! cargo bench -p ipvec-node --bench cache -- --queries 500 --ef 64 --k 100
//! ```
//!
//! Steps: load the base into a collection (M = 16, ef_construction = 128, f32) through an
//! in-process [`Node`] and commit it; then search every query through `Node::search` (what
//! the HTTP handler calls) four times: with `cache: false` (the baseline: the index, the cache
//! left alone), twice more with the cache (the first pass misses and fills it, the second is
//! answered from it), and once more with the cache off again, to show the baseline did not
//! drift. It checks that the cached answers are the searched ones and that the cache counted
//! what it should; it prints numbers and asserts nothing about time.

#[allow(dead_code)]
#[path = "engine/data.rs"]
mod data;
#[path = "shared/latency.rs"]
mod latency;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use ipvec_node::{ops::Node, repo::Repo};
use ipvec_protocol::{
    api::{CreateCollection, PointId, PointIn, SearchRequest, SearchResponse},
    manifest::Metric,
};
use latency::Pass;

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .with_context(|| format!("{name} needs a number"))?
            .parse()?),
        None => Ok(default),
    }
}

/// One pass of `queries` through `node.search` with `k`, `ef` and `cache`: its latencies
/// and answers.
async fn pass(
    node: &Node,
    queries: &[Vec<f32>],
    k: usize,
    ef: usize,
    cache: bool,
) -> Result<(Pass, Vec<SearchResponse>)> {
    let mut latencies = Vec::with_capacity(queries.len());
    let mut answers = Vec::with_capacity(queries.len());
    let wall = Instant::now();
    for q in queries {
        let request = SearchRequest {
            k,
            ef: Some(ef),
            cache,
            ..SearchRequest::new(q.clone())
        };
        let t = Instant::now();
        let answer = node.search("fmnist", request).await?;
        latencies.push(t.elapsed());
        answers.push(answer);
    }
    Ok((
        Pass {
            wall: wall.elapsed(),
            latencies,
        },
        answers,
    ))
}

fn mean_ms(pass: &Pass) -> f64 {
    pass.latencies.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1e3
        / pass.latencies.len().max(1) as f64
}

fn main() -> Result<()> {
    let queries_n = arg("--queries", 1_000)?;
    let ef = arg("--ef", 64)?;
    let k = arg("--k", data::K)?;
    let data = data::load(queries_n)?;
    let queries = data.queries_f32();
    println!(
        "Fashion-MNIST: {} × {} (L2), {} queries, k = {k}, ef = {ef}",
        data.len(),
        data.dim,
        queries.len()
    );
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let repo = Repo::init(&dir.path().join("repo")).await?;
        let config = repo.config().clone();
        println!(
            "search.cache_entries = {}, search.cache_bytes = {}",
            config.search.cache_entries, config.search.cache_bytes
        );
        let node = Node::new(repo, config);
        node.create_collection(CreateCollection {
            metric: Metric::L2,
            ef_search: ef as u32,
            ..CreateCollection::new("fmnist", data.dim as u32)
        })
        .await?;
        let started = Instant::now();
        for start in (0..data.len()).step_by(1_000) {
            let points = (start..(start + 1_000).min(data.len()))
                .map(|i| PointIn::vector(PointId::Int(i as u64), data.vector(i), None))
                .collect();
            node.upsert("fmnist", points).await?;
        }
        node.commit("fmnist").await?;
        println!(
            "loaded and committed in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let (uncached, searched) = pass(&node, &queries, k, ef, false).await?;
        let (misses, filled) = pass(&node, &queries, k, ef, true).await?;
        let (hits, from_cache) = pass(&node, &queries, k, ef, true).await?;
        let (uncached_again, _) = pass(&node, &queries, k, ef, false).await?;

        let stats = node.search_cache_stats();
        let n = queries.len() as u64;
        if (stats.hits, stats.misses) != (n, n) || !from_cache.iter().all(|a| a.cached) {
            bail!("the cache counted {stats:?} for {n} queries searched twice");
        }
        for (i, ((s, f), c)) in searched.iter().zip(&filled).zip(&from_cache).enumerate() {
            if s.hits != f.hits || s.hits != c.hits || s.coverage != c.coverage {
                bail!("query {i}: the cached answer differs from the searched one");
            }
        }
        println!(
            "answers checked: the {n} cached answers are the searched ones; the cache holds {} \
             answers, {:.1} MiB",
            stats.entries,
            stats.bytes as f64 / (1 << 20) as f64
        );
        println!(
            "{:<34} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "pass (Node::search)", "QPS", "mean ms", "p50 ms", "p95 ms", "p99 ms"
        );
        for (name, p) in [
            ("uncached (cache: false), baseline", &uncached),
            ("cache miss (searched, then kept)", &misses),
            ("cache hit", &hits),
            ("uncached again", &uncached_again),
        ] {
            println!(
                "{name:<34} {:>10.0} {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
                p.qps(),
                mean_ms(p),
                p.percentile(0.50),
                p.percentile(0.95),
                p.percentile(0.99)
            );
        }
        println!(
            "a hit is {:.1}× faster than the uncached search at p50 ({:.1}× by mean), {:.1}× \
             faster than a miss at p50",
            uncached.percentile(0.50) / hits.percentile(0.50),
            mean_ms(&uncached) / mean_ms(&hits),
            misses.percentile(0.50) / hits.percentile(0.50)
        );
        node.close().await?;
        anyhow::Ok(())
    })
}
