//! Search latency over HTTP while another client streams upserts into the same collection,
//! next to the same searches on an idle daemon (Fashion-MNIST, 784-d, L2).
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench write_stalls
//! cargo bench -p ipvec-node --bench write_stalls -- --base 30000 --batch 500 --queries 2000
//! cargo bench -p ipvec-node --bench write_stalls -- --json-numbers
//! ```
//!
//! Steps: load `--base` points (M = 16, ef_construction = 128, f32) in process and commit
//! them; start the `ipvec daemon` binary on the repository; one client searches every query
//! (k = 10, ef = 64) idle; then the same client searches again while a second client upserts
//! batches of `--batch` points (rows after the base, then the base again under new ids) into
//! the same collection as fast as the daemon acknowledges them, their vectors in `vector_b64`
//! as the node's client sends them (`--json-numbers`: as JSON numbers, to compare;
//! `--background-nice N` sets the daemon's `storage.background_nice`, the priority of its
//! writing threads). Prints p50/p99 and searches
//! per second for both, the upserts acknowledged, and the daemon's WAL fsyncs; asserts nothing
//! about time. A last phase upserts `--commit-points` (75,000) points, which stay pending
//! (at 784 dimensions the log reaches its 256 MiB checkpoint threshold at about 85,000), and
//! searches while a commit puts them into the tree. `--other-collection` sends the upserts to
//! a second collection: the machine does the same work but no lock is shared with the
//! searches, which gives the floor of the loaded latency on this machine. `--refused-writes`
//! sends them to a second collection of another dimension: the daemon receives and parses
//! every batch and refuses it (400), which measures what moving the batches alone costs.

#[path = "shared/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "engine/data.rs"]
mod data;
#[path = "shared/latency.rs"]
mod latency;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use daemon::start_daemon_with;
use ipvec_node::{
    api::types::{vectors::encode_b64, CreateCollection, PointId, PointIn},
    ops::Node,
    repo::Repo,
};
use ipvec_protocol::manifest::Metric;
use latency::Pass;

struct Options {
    base: usize,
    batch: usize,
    queries: usize,
    dir: Option<PathBuf>,
    /// Upsert into a second collection instead: the same work for the machine, no lock shared
    /// with the searches (the floor any locking scheme can reach on this machine).
    other: bool,
    /// Upsert into a collection of another dimension, which refuses every batch after
    /// receiving and parsing it.
    refused: bool,
    /// The daemon's `storage.background_nice` (`None`: its default).
    nice: Option<String>,
    /// Send the upserts' vectors as JSON numbers instead of `vector_b64`.
    numbers: bool,
    /// Entries pending when the commit phase commits them.
    commit_points: usize,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        base: 30_000,
        batch: 500,
        queries: 2_000,
        dir: None,
        other: false,
        refused: false,
        nice: None,
        numbers: false,
        commit_points: 75_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--base" => opts.base = args.next().context("--base N")?.parse()?,
            "--batch" => opts.batch = args.next().context("--batch N")?.parse()?,
            "--queries" | "-q" => opts.queries = args.next().context("--queries N")?.parse()?,
            "--dir" => opts.dir = Some(args.next().context("--dir PATH")?.into()),
            "--other-collection" => opts.other = true,
            "--json-numbers" => opts.numbers = true,
            "--background-nice" => opts.nice = Some(args.next().context("--background-nice N")?),
            "--refused-writes" => {
                opts.other = true;
                opts.refused = true;
            }
            "--commit-points" => {
                opts.commit_points = args.next().context("--commit-points N")?.parse()?
            }
            _ => {}
        }
    }
    Ok(opts)
}

/// A point of an upsert body, its vector in the form the options ask for.
fn point_json(id: usize, vector: &[f32], opts: &Options) -> serde_json::Value {
    if opts.numbers {
        serde_json::json!({ "id": id, "vector": vector })
    } else {
        serde_json::json!({ "id": id, "vector_b64": encode_b64(vector) })
    }
}

/// A search pass's row in the table.
fn row(what: &str, pass: &Pass) {
    println!(
        "| {what:<34} | {:>10.0} | {:>8.3} | {:>8.3} | {:>8.3} |",
        pass.qps(),
        pass.percentile(0.50),
        pass.percentile(0.99),
        pass.percentile(1.0),
    );
}

async fn search_pass(client: &reqwest::Client, url: &str, bodies: &[String]) -> Result<Pass> {
    let mut latencies = Vec::with_capacity(bodies.len());
    let wall = Instant::now();
    for b in bodies {
        let t = Instant::now();
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(b.clone())
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        anyhow::ensure!(status.is_success(), "search answered {status}");
        latencies.push(t.elapsed());
    }
    Ok(Pass {
        wall: wall.elapsed(),
        latencies,
    })
}

/// Commits everything pending, upserts `opts.commit_points` new points (they stay pending:
/// fewer than a checkpoint's threshold), then searches while a commit puts them in the tree
/// (`GET …/log` commits first). Returns the searches made during the commit and its time.
async fn commit_phase(
    url: &str,
    data: &data::Dataset,
    bodies: &[String],
    opts: &Options,
) -> Result<(Pass, Duration)> {
    let client = reqwest::Client::new();
    let log_url = format!("{url}/v1/collections/fmnist/log");
    client.get(&log_url).send().await?.error_for_status()?;
    let points_url = format!("{url}/v1/collections/fmnist/points");
    for start in (0..opts.commit_points).step_by(opts.batch) {
        let points: Vec<serde_json::Value> = (start..(start + opts.batch).min(opts.commit_points))
            .map(|i| point_json(5_000_000 + i, &data.vector(i % data.len()), opts))
            .collect();
        client
            .put(&points_url)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "points": points }).to_string())
            .send()
            .await?
            .error_for_status()?;
    }
    let search_url = format!("{url}/v1/collections/fmnist/search");
    let started = Instant::now();
    let commit = tokio::spawn({
        let (client, log_url) = (client.clone(), log_url.clone());
        async move {
            client.get(&log_url).send().await?.error_for_status()?;
            anyhow::Ok(started.elapsed())
        }
    });
    let mut latencies = Vec::new();
    for body in bodies.iter().cycle() {
        if commit.is_finished() {
            break;
        }
        let pass = search_pass(&client, &search_url, std::slice::from_ref(body)).await?;
        latencies.extend(pass.latencies);
    }
    let took = commit.await??;
    Ok((
        Pass {
            wall: started.elapsed(),
            latencies,
        },
        took,
    ))
}

async fn fsyncs(client: &reqwest::Client, url: &str) -> Result<f64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("ipvec_wal_fsyncs_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN))
}

fn main() -> Result<()> {
    let opts = options()?;
    let data = data::load(opts.queries)?;
    let base = opts.base.min(data.len());
    let tmp = match &opts.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let repo_path = tmp.path().join("repo");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "Fashion-MNIST: {base} base × {}, {} queries, upserts of {} points",
        data.dim,
        data.queries_len(),
        opts.batch
    );
    runtime.block_on(async {
        let repo = Repo::init(&repo_path).await?;
        let config = repo.config().clone();
        let node = Node::new(repo, config);
        for name in ["fmnist", "other"] {
            node.create_collection(CreateCollection {
                metric: Metric::L2,
                ..CreateCollection::new(
                    name,
                    data.dim as u32 + u32::from(name == "other" && opts.refused),
                )
            })
            .await?;
        }
        for start in (0..base).step_by(1_000) {
            let points = (start..(start + 1_000).min(base))
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
        node.close().await?;
        anyhow::Ok(())
    })?;

    // No periodic commit: the pending entries of the last phase wait for its commit (writes
    // still commit by themselves past 100,000 pending entries).
    let mut env = vec![("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "3600000")];
    if let Some(nice) = &opts.nice {
        env.push(("IPVEC_STORAGE_BACKGROUND_NICE", nice));
    }
    let (daemon, url) = start_daemon_with(&repo_path, &env)?;
    let bodies: Vec<String> = data
        .queries_f32()
        .iter()
        .map(|q| serde_json::json!({ "vector": q, "k": data::K, "ef": 64 }).to_string())
        .collect();
    let batches: Arc<Vec<String>> = Arc::new(
        (0..)
            .map(|b: usize| b * opts.batch)
            .take_while(|start| *start < data.len())
            .map(|start| {
                let points: Vec<serde_json::Value> = (start..(start + opts.batch).min(data.len()))
                    .map(|i| {
                        let row = data.vector((base + i) % data.len());
                        point_json(1_000_000 + i, &row, &opts)
                    })
                    .collect();
                serde_json::json!({ "points": points }).to_string()
            })
            .collect(),
    );
    let (idle, loaded, upserts, upsert_wall, fsynced) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let search_url = format!("{url}/v1/collections/fmnist/search");
        // Warm up, then idle.
        search_pass(&client, &search_url, &bodies[..bodies.len().min(200)]).await?;
        let idle = search_pass(&client, &search_url, &bodies).await?;

        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let fsyncs_before = fsyncs(&client, &url).await?;
        let writer = {
            let (stop, acked, batches) = (stop.clone(), acked.clone(), batches.clone());
            let refused = opts.refused;
            let target = if opts.other { "other" } else { "fmnist" };
            let points_url = format!("{url}/v1/collections/{target}/points");
            let writer_client = reqwest::Client::new();
            tokio::spawn(async move {
                let started = Instant::now();
                for body in batches.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let response = writer_client
                        .put(&points_url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    let status = response.status();
                    let _ = response.bytes().await?;
                    anyhow::ensure!(status.is_success() != refused, "upsert answered {status}");
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(started.elapsed())
            })
        };
        // Let the writer's first batch reach the daemon before measuring.
        while acked.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let loaded = search_pass(&client, &search_url, &bodies).await?;
        stop.store(true, Ordering::Relaxed);
        let upsert_wall = writer.await??;
        let fsynced = fsyncs(&client, &url).await? - fsyncs_before;
        anyhow::Ok((
            idle,
            loaded,
            acked.load(Ordering::Relaxed),
            upsert_wall,
            fsynced,
        ))
    })?;
    let committing = runtime.block_on(commit_phase(&url, &data, &bodies, &opts))?;
    drop(daemon);

    println!();
    println!(
        "| searches (1 client, HTTP)          | searches/s | p50 ms   | p99 ms   | max ms   |"
    );
    println!(
        "| ---------------------------------- | ---------: | -------: | -------: | -------: |"
    );
    row("idle", &idle);
    let into = if opts.refused {
        ", each refused"
    } else if opts.other {
        " into another collection"
    } else {
        ""
    };
    row(
        &format!("while upserting {}-point batches{into}", opts.batch),
        &loaded,
    );
    row(
        &format!("while committing {} pending entries", opts.commit_points),
        &committing.0,
    );
    println!();
    let bytes: usize = batches.iter().map(String::len).sum();
    println!(
        "upsert bodies: {:.2} MB a batch on average, vectors as {}",
        bytes as f64 / batches.len() as f64 / 1e6,
        if opts.numbers {
            "JSON numbers"
        } else {
            "vector_b64"
        }
    );
    println!(
        "the commit of {} pending entries took {:.1} s",
        opts.commit_points,
        committing.1.as_secs_f64()
    );
    println!(
        "upserts answered meanwhile: {upserts} batches ({:.0} points/s), WAL fsyncs: {fsynced}; loaded p99 / idle p99 = {:.2}",
        (upserts as usize * opts.batch) as f64 / upsert_wall.as_secs_f64(),
        loaded.percentile(0.99) / idle.percentile(0.99)
    );
    Ok(())
}
