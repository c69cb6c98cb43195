//! Search through the daemon's HTTP API on Fashion-MNIST (60,000 × 784, L2), next to the same
//! searches in process, in the same run: QPS and p50/p95/p99 latency with 1 and 16 clients
//! over keep-alive connections.
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench api
//! cargo bench -p ipvec-node --bench api -- --queries 500 --ef 64
//! ```
//!
//! Steps: load the base into a collection (M = 16, ef_construction = 128, f32) in process
//! through [`Node`] and commit it into its tree; search every query in process with
//! `Collection::search` (the engine bench's path) and with `Node::search` (what the HTTP
//! handler calls); close; start the `ipvec daemon` binary on the repository (a separate
//! process, loopback port); search over HTTP with 1 client, then 16 concurrent clients. Each
//! pass runs three times and the fastest counts. It prints numbers and asserts nothing about
//! time; recall@10 of the HTTP answers is checked against the in-process ones (same hits).

#[path = "shared/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "engine/data.rs"]
mod data;
#[path = "shared/latency.rs"]
mod latency;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use daemon::start_daemon;
use ipvec_node::{
    api::types::{CreateCollection, PointId, PointIn, SearchRequest, SearchResponse},
    collection::SearchOptions,
    ops::Node,
    repo::Repo,
};
use ipvec_protocol::manifest::{Metric, Quantization};
use latency::Pass;

const PASSES: usize = 3;
const CONCURRENT: usize = 16;

struct Options {
    queries: usize,
    ef: usize,
    dir: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        queries: 1_000,
        ef: 64,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queries" | "-q" => {
                opts.queries = args.next().context("--queries N")?.parse()?;
            }
            "--ef" => opts.ef = args.next().context("--ef N")?.parse()?,
            "--dir" => opts.dir = Some(args.next().context("--dir PATH")?.into()),
            _ => {}
        }
    }
    Ok(opts)
}

fn best(passes: Vec<Pass>) -> Pass {
    passes
        .into_iter()
        .max_by(|a, b| a.qps().total_cmp(&b.qps()))
        .unwrap_or(Pass {
            wall: Duration::from_secs(1),
            latencies: vec![],
        })
}

fn row(what: &str, clients: usize, pass: &Pass, baseline: f64) {
    println!(
        "| {what:<38} | {clients:>7} | {:>8.0} | {:>8.3} | {:>8.3} | {:>8.3} | {:>12.2} |",
        pass.qps(),
        pass.percentile(0.50),
        pass.percentile(0.95),
        pass.percentile(0.99),
        pass.qps() / baseline
    );
}

fn ids(response: &SearchResponse) -> Vec<u64> {
    response
        .hits
        .iter()
        .map(|h| match h.id {
            PointId::Int(n) => n,
            PointId::Str(_) => u64::MAX,
        })
        .collect()
}

fn main() -> Result<()> {
    let opts = options()?;
    let data = data::load(opts.queries)?;
    let queries = data.queries_f32();
    let tmp = match &opts.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let repo_path = tmp.path().join("repo");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "Fashion-MNIST: {} base × {}, {} queries, k = {}, ef = {}",
        data.len(),
        data.dim,
        queries.len(),
        data::K,
        opts.ef
    );

    // Load and search in process.
    let (in_process, via_node, expected) = runtime.block_on(async {
        let repo = Repo::init(&repo_path).await?;
        let config = repo.config().clone();
        let node = Node::new(repo, config);
        node.create_collection(CreateCollection {
            name: "fmnist".into(),
            dim: data.dim as u32,
            metric: Metric::L2,
            quantization: Quantization::F32,
            m: 16,
            ef_construction: 128,
            ef_search: opts.ef as u32,
            shards: 1,
            replication: 1,
        })
        .await?;
        let started = Instant::now();
        for start in (0..data.len()).step_by(1_000) {
            let points = (start..(start + 1_000).min(data.len()))
                .map(|i| PointIn {
                    id: PointId::Int(i as u64),
                    vector: data::to_f32(data.row(i)),
                    metadata: None,
                })
                .collect();
            node.upsert("fmnist", points).await?;
        }
        node.commit("fmnist").await?;
        println!(
            "loaded and committed in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let collection = node.collection("fmnist").await?;
        let options = SearchOptions {
            k: data::K,
            ef: Some(opts.ef),
            exact: false,
        };
        let mut passes = Vec::new();
        for _ in 0..PASSES {
            let c = collection.read().await;
            let mut latencies = Vec::with_capacity(queries.len());
            let wall = Instant::now();
            for q in &queries {
                let t = Instant::now();
                let hits = c.search(q, options, None).await?;
                latencies.push(t.elapsed());
                std::hint::black_box(hits);
            }
            passes.push(Pass {
                wall: wall.elapsed(),
                latencies,
            });
        }
        let in_process = best(passes);

        let request = |q: &Vec<f32>| SearchRequest {
            k: data::K,
            ef: Some(opts.ef),
            ..SearchRequest::new(q.clone())
        };
        let mut passes = Vec::new();
        let mut expected = Vec::new();
        for pass in 0..PASSES {
            let mut latencies = Vec::with_capacity(queries.len());
            let wall = Instant::now();
            for q in &queries {
                let t = Instant::now();
                let response = node.search("fmnist", request(q)).await?;
                latencies.push(t.elapsed());
                if pass == 0 {
                    expected.push(ids(&response));
                }
            }
            passes.push(Pass {
                wall: wall.elapsed(),
                latencies,
            });
        }
        let via_node = best(passes);
        node.close().await?;
        anyhow::Ok((in_process, via_node, expected))
    })?;

    // Over HTTP, against the daemon binary.
    let (daemon, url) = start_daemon(&repo_path)?;
    let queries = Arc::new(queries);
    let http = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let search_url = format!("{url}/v1/collections/fmnist/search");
        let body = |q: &Vec<f32>| {
            serde_json::json!({ "vector": q, "k": data::K, "ef": opts.ef }).to_string()
        };
        let bodies: Arc<Vec<String>> = Arc::new(queries.iter().map(body).collect());
        // Warm the connection and check the answers.
        let mut mismatched = 0usize;
        for (i, b) in bodies.iter().enumerate() {
            let response: SearchResponse = client
                .post(&search_url)
                .header("content-type", "application/json")
                .body(b.clone())
                .send()
                .await?
                .json()
                .await?;
            if ids(&response) != expected[i] {
                mismatched += 1;
            }
        }
        println!(
            "HTTP answers differing from in-process: {mismatched} of {}",
            bodies.len()
        );

        let mut results = Vec::new();
        for clients in [1, CONCURRENT] {
            let mut passes = Vec::new();
            for _ in 0..PASSES {
                let wall = Instant::now();
                let mut tasks = Vec::new();
                for c in 0..clients {
                    let (client, url, bodies) =
                        (client.clone(), search_url.clone(), bodies.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        for b in bodies.iter().skip(c).step_by(clients) {
                            let t = Instant::now();
                            let response = client
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(b.clone())
                                .send()
                                .await?;
                            let status = response.status();
                            let _ = response.bytes().await?;
                            if !status.is_success() {
                                anyhow::bail!("search answered {status}");
                            }
                            latencies.push(t.elapsed());
                        }
                        anyhow::Ok(latencies)
                    }));
                }
                let mut latencies = Vec::new();
                for t in tasks {
                    latencies.extend(t.await??);
                }
                passes.push(Pass {
                    wall: wall.elapsed(),
                    latencies,
                });
            }
            results.push((clients, best(passes)));
        }
        anyhow::Ok(results)
    })?;
    drop(daemon);

    let baseline = in_process.qps();
    println!();
    println!(
        "| path                                   | clients |      QPS | p50 ms   | p95 ms   | p99 ms   | × in-process |"
    );
    println!(
        "| -------------------------------------- | ------: | -------: | -------: | -------: | -------: | -----------: |"
    );
    row("in process (Collection::search)", 1, &in_process, baseline);
    row(
        "in process (Node::search, blocking pool)",
        1,
        &via_node,
        baseline,
    );
    for (clients, pass) in &http {
        row(
            "HTTP API (ipvec daemon, keep-alive)",
            *clients,
            pass,
            baseline,
        );
    }
    Ok(())
}
