//! Search through the daemon's HTTP API on Fashion-MNIST (60,000 × 784, L2), next to the same
//! searches in process, in the same run: QPS and p50/p95/p99 latency with 1 and 16 clients
//! over keep-alive connections, batch searches (JSON numbers and `vector_b64`) at one client,
//! and `ipvec search --query-file` on the whole query file.
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench api
//! cargo bench -p ipvec-node --bench api -- --queries 500 --ef 64 --batch 256
//! ```
//!
//! Steps: load the base into a collection (M = 16, ef_construction = 128, f32) in process
//! through [`Node`] and commit it into its tree; search every query in process with
//! `Collection::search` (the engine bench's path) and with `Node::search` (what the HTTP
//! handler calls); close; start the `ipvec daemon` binary on the repository (a separate
//! process, loopback port); search over HTTP with 1 client, then 16 concurrent clients. Each
//! pass runs three times and the fastest counts. Then, with one client, the queries in batch
//! requests of `--batch` (as numbers, then as `vector_b64`; latencies are per request), and
//! the `ipvec` binary searching a `.fvecs` file of them through the daemon (its output to
//! /dev/null; the latency is the whole process). It prints numbers and asserts nothing about
//! time; the HTTP, batch and CLI answers are checked against the in-process ones (same hits).

#[allow(dead_code)]
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
use daemon::start_daemon_with;
use ipvec_node::{
    api::types::{
        BatchQuery, BatchSearchRequest, BatchSearchResponse, CreateCollection, PointId, PointIn,
        SearchRequest, SearchResponse,
    },
    collection::SearchOptions,
    ops::Node,
    repo::Repo,
};
use ipvec_protocol::manifest::Metric;
use latency::Pass;

const PASSES: usize = 3;
const CONCURRENT: usize = 16;

struct Options {
    queries: usize,
    ef: usize,
    /// Queries per batch request.
    batch: usize,
    dir: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        queries: 1_000,
        ef: 64,
        batch: 256,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queries" | "-q" => {
                opts.queries = args.next().context("--queries N")?.parse()?;
            }
            "--ef" => opts.ef = args.next().context("--ef N")?.parse()?,
            "--batch" => opts.batch = args.next().context("--batch N")?.parse::<usize>()?.max(1),
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
    row_of(what, clients, pass.qps(), pass, baseline);
}

/// A row whose pass answered `queries` queries (its latencies are per request, or per run).
fn batch_row(what: &str, queries: usize, pass: &Pass, baseline: f64) {
    row_of(
        what,
        1,
        queries as f64 / pass.wall.as_secs_f64(),
        pass,
        baseline,
    );
}

fn row_of(what: &str, clients: usize, qps: f64, pass: &Pass, baseline: f64) {
    println!(
        "| {what:<38} | {clients:>7} | {:>8.0} | {:>8.3} | {:>8.3} | {:>8.3} | {:>12.2} |",
        qps,
        pass.percentile(0.50),
        pass.percentile(0.95),
        pass.percentile(0.99),
        qps / baseline
    );
}

/// The body of a batch request of `queries`, as numbers or in compact form.
fn batch_body(queries: &[Vec<f32>], compact: bool, ef: usize) -> Result<String> {
    let list = queries
        .iter()
        .map(|q| match compact {
            true => BatchQuery::compact(q),
            false => BatchQuery::numbers(q.clone()),
        })
        .collect();
    let options = SearchRequest {
        k: data::K,
        ef: Some(ef),
        ..SearchRequest::new(Vec::new())
    };
    Ok(serde_json::to_string(&BatchSearchRequest::with_options(
        list, &options,
    ))?)
}

/// The queries as a `.fvecs` file: each row its dimension (i32) and components (f32).
fn write_fvecs(path: &std::path::Path, rows: &[Vec<f32>]) -> Result<()> {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    Ok(std::fs::write(path, bytes)?)
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
        let mut config = repo.config().clone();
        // Every pass searches (the search cache has its own bench, benches/cache.rs).
        config.search.cache_entries = 0;
        let node = Node::new(repo, config);
        node.create_collection(CreateCollection {
            metric: Metric::L2,
            ef_search: opts.ef as u32,
            ..CreateCollection::new("fmnist", data.dim as u32)
        })
        .await?;
        let started = Instant::now();
        for start in (0..data.len()).step_by(1_000) {
            let points = (start..(start + 1_000).min(data.len()))
                .map(|i| PointIn {
                    id: PointId::Int(i as u64),
                    text: None,
                    vector: data.vector(i),
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
    let (daemon, url) = start_daemon_with(&repo_path, &[("IPVEC_SEARCH_CACHE_ENTRIES", "0")])?;
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

        // Batches at one client: numbers, then vector_b64.
        let batch_url = format!("{url}/v1/collections/fmnist/search/batch");
        let mut batches = Vec::new();
        for compact in [false, true] {
            let bodies = queries
                .chunks(opts.batch)
                .map(|chunk| batch_body(chunk, compact, opts.ef))
                .collect::<Result<Vec<String>>>()?;
            let mut passes = Vec::new();
            let mut mismatched = 0usize;
            for pass in 0..PASSES + 1 {
                let mut latencies = Vec::new();
                let mut answers = Vec::new();
                let wall = Instant::now();
                for b in &bodies {
                    let t = Instant::now();
                    let response = client
                        .post(&batch_url)
                        .header("content-type", "application/json")
                        .body(b.clone())
                        .send()
                        .await?;
                    let status = response.status();
                    let body = response.bytes().await?;
                    if !status.is_success() {
                        anyhow::bail!("batch search answered {status}");
                    }
                    latencies.push(t.elapsed());
                    answers.push(body);
                }
                let wall = wall.elapsed();
                // The first pass warms up and checks the answers.
                if pass == 0 {
                    let mut i = 0;
                    for body in answers {
                        let batch: BatchSearchResponse = serde_json::from_slice(&body)?;
                        for response in &batch.results {
                            mismatched += usize::from(ids(response) != expected[i]);
                            i += 1;
                        }
                    }
                    anyhow::ensure!(i == queries.len(), "{i} batch answers");
                } else {
                    passes.push(Pass { wall, latencies });
                }
            }
            println!(
                "batch answers ({}) differing from in-process: {mismatched} of {}",
                if compact { "vector_b64" } else { "numbers" },
                queries.len()
            );
            batches.push((compact, best(passes)));
        }

        // The CLI on a query file, through the daemon.
        let file = tmp.path().join("queries.fvecs");
        write_fvecs(&file, &queries)?;
        let cli = |json: bool| {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ipvec"));
            command.arg("--repo").arg(&repo_path);
            if json {
                command.arg("--json");
            }
            command
                .args(["search", "fmnist", "--query-file"])
                .arg(&file)
                .args(["-k", &data::K.to_string(), "--ef", &opts.ef.to_string()])
                .env_remove("IPVEC_API")
                .env_remove("IPVEC_PATH");
            command
        };
        let out = cli(true).output()?;
        anyhow::ensure!(
            out.status.success(),
            "ipvec search failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut mismatched = 0usize;
        let mut n = 0usize;
        for (i, line) in String::from_utf8(out.stdout)?.lines().enumerate() {
            let response: SearchResponse = serde_json::from_str(line)?;
            mismatched += usize::from(ids(&response) != expected[i]);
            n += 1;
        }
        anyhow::ensure!(n == queries.len(), "the CLI printed {n} answers");
        println!("CLI answers differing from in-process: {mismatched} of {n}");
        let mut passes = Vec::new();
        for _ in 0..PASSES {
            let wall = Instant::now();
            let status = cli(false).stdout(std::process::Stdio::null()).status()?;
            anyhow::ensure!(status.success(), "ipvec search: {status}");
            let wall = wall.elapsed();
            passes.push(Pass {
                wall,
                latencies: vec![wall],
            });
        }
        anyhow::Ok((results, batches, best(passes)))
    })?;
    drop(daemon);
    let (http, batches, cli) = http;

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
    for (compact, pass) in &batches {
        let what = format!(
            "HTTP batch of {}, {}",
            opts.batch,
            if *compact {
                "vector_b64"
            } else {
                "JSON numbers"
            }
        );
        batch_row(&what, queries.len(), pass, baseline);
    }
    batch_row(
        &format!("CLI search --query-file ({} queries)", queries.len()),
        queries.len(),
        &cli,
        baseline,
    );
    println!(
        "(batch rows: latencies per request of {}; CLI row: the whole process)",
        opts.batch
    );
    Ok(())
}
