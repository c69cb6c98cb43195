//! Federated search across five peers on loopback against the same queries on one full local
//! replica, in one run: latency over HTTP and recall@10 against exact ground truth
//! (Fashion-MNIST, 784-d, L2), then again with one holder frozen by SIGSTOP.
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench federation
//! cargo bench -p ipvec-node --bench federation -- --points 60000 --queries 2000 --rate 20
//! ```
//!
//! Setup: the first `--points` (20,000) training images are written in process into a
//! collection of 8 shards (M = 16, ef_construction = 128, f32) and committed; an `ipvec
//! daemon` then serves that repository: the writer. Five holder daemons bootstrap to it
//! (`IPVEC_P2P_BOOTSTRAP`) and fetch their shards by collection id, one holder after the
//! other, shard `s` on holders `s % 5` and `(s + 2) % 5`: every shard on two holders. A sixth
//! daemon fetches the whole collection: the full replica. The bench waits until the DHT
//! names both holders of every shard, then starts the asker, which holds nothing and
//! bootstraps to the writer and the holders.
//!
//! Passes, one client, one request at a time (`POST …/search`, k = 10, `--ef` 64,
//! `deadline_ms` = `--deadline-ms` 2,000), every query after a warm-up of `--warmup` (200)
//! queries: (1) local HNSW on the full replica, by name. Then the writer and the full
//! replica are stopped (SIGTERM) — their provider records stay in the DHT, as a departed
//! peer's do — so the five holders alone serve the collection, and the asker searches it by
//! id: (2) its first search alone (the DHT lookups of the holders, the head, the manifest),
//! the warm-up, every query; (3) one holder — by default the one that answered the most shards
//! in (2) — is frozen with SIGSTOP (its sockets stay open: requests to it hang instead of
//! failing) and every query is searched again, without a warm-up; SIGCONT at the end.
//!
//! Searches are sent at most `--rate` (20) a second, 1/rate apart or more (no catching up):
//! a holder answers each asking peer 50 searches a second (bursts of 100) and refuses more
//! (`rate_limited`, docs/format.md); an asker that keeps going over it is banned for ten
//! minutes. A federated search sends one request to each holder it asks and a hedge a second
//! one, so an unpaced client (`--rate 0`) is refused within a second and then banned. The
//! local pass is paced the same. "searches/s" is one over the mean latency: what a single
//! client would reach without the pacing.
//!
//! Printed: searches/s, p50/p95/p99/max ms, recall@10 per pass, and for federated passes the
//! mean coverage (shards answered / 8), the shard answers that came from a hedge, the answers
//! missing a shard, the asker's and holders' federation counters, the slowest searches and
//! how many answers have the full replica's hits; then the differences to the issue's goals.
//! The hedge delay of a holder is its latency's p95 as the asker estimates it, at least 5 ms;
//! the bench takes the p95 of that holder's per-shard latencies in pass (2). A failed search
//! counts as an error, with its latency and no hits. Asserts nothing about time.

#[path = "shared/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "engine/data.rs"]
mod data;
#[path = "shared/latency.rs"]
mod latency;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use daemon::{start_daemon, start_daemon_with, Daemon};
use ipvec_node::{
    api::{
        types::{CreateCollection, PointId, PointIn, SearchResponse},
        Client,
    },
    federation::peers::{DEFAULT_LATENCY, MIN_HEDGE_DELAY},
    ops::{Node, Operations},
    repo::Repo,
};
use ipvec_protocol::{announce, manifest::Metric};
use latency::Pass;

const SHARDS: u32 = 8;
const HOLDERS: usize = 5;
/// The asker's counters and the holders' counters shown per federated pass.
const ASKED: [&str; 5] = [
    "shard_requests",
    "hedges",
    "failovers",
    "timeouts",
    "missing_shards",
];
const SERVED: [&str; 2] = ["remote_served", "remote_refused"];

struct Options {
    points: usize,
    queries: usize,
    ef: usize,
    deadline_ms: u64,
    warmup: usize,
    /// Searches sent a second (0: each as soon as the last is answered).
    rate: f64,
    /// The holder to freeze (`None`: the one that answered the most shards).
    stop: Option<usize>,
    dir: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        points: 20_000,
        queries: 1_000,
        ef: 64,
        deadline_ms: 2_000,
        warmup: 200,
        rate: 20.0,
        stop: None,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} N"));
        match arg.as_str() {
            "--points" => opts.points = value("--points")?.parse()?,
            "--queries" | "-q" => opts.queries = value("--queries")?.parse()?,
            "--ef" => opts.ef = value("--ef")?.parse()?,
            "--deadline-ms" => opts.deadline_ms = value("--deadline-ms")?.parse()?,
            "--warmup" => opts.warmup = value("--warmup")?.parse()?,
            "--rate" => opts.rate = value("--rate")?.parse()?,
            "--stop" => opts.stop = Some(value("--stop")?.parse()?),
            "--dir" => opts.dir = Some(value("--dir")?.into()),
            _ => {}
        }
    }
    ensure!(opts.stop.is_none_or(|h| h < HOLDERS), "--stop takes 0 to 4");
    Ok(opts)
}

/// The holders of shard `s`.
fn holders_of(shard: u32) -> [usize; 2] {
    [shard as usize % HOLDERS, (shard as usize + 2) % HOLDERS]
}

/// The shards holder `h` fetches.
fn shards_of(holder: usize) -> Vec<u32> {
    (0..SHARDS)
        .filter(|s| holders_of(*s).contains(&holder))
        .collect()
}

/// One pass: its latencies and the answers, in query order (a failed search: no hits).
struct Searched {
    pass: Pass,
    answers: Vec<SearchResponse>,
    /// Searches answered with an error status, or not at all.
    errors: usize,
}

impl Searched {
    /// Searches a second one client would make without pacing: 1 / mean latency.
    fn qps(&self) -> f64 {
        let busy: Duration = self.pass.latencies.iter().sum();
        self.pass.latencies.len() as f64 / busy.as_secs_f64()
    }
}

/// Sends every body to `url`, one at a time, at most `rate` a second (0: unpaced).
async fn search_pass(
    client: &reqwest::Client,
    url: &str,
    bodies: &[String],
    rate: f64,
) -> Result<Searched> {
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut answers = Vec::with_capacity(bodies.len());
    let mut errors = 0;
    let wall = Instant::now();
    let mut next = wall;
    for (i, body) in bodies.iter().enumerate() {
        // Never faster than `rate`, even after a slow search: a burst to catch up would go
        // over the holders' rate limit.
        tokio::time::sleep_until(next.into()).await;
        let t = Instant::now();
        if rate > 0.0 {
            next = t + Duration::from_secs_f64(1.0 / rate);
        }
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let answered = match sent {
            Ok(response) if response.status().is_success() => response.bytes().await.ok(),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                eprintln!("search {i} answered {status}: {text}");
                None
            }
            Err(e) => {
                eprintln!("search {i} failed: {e}");
                None
            }
        };
        latencies.push(t.elapsed());
        let answer = match answered {
            Some(bytes) => serde_json::from_slice(&bytes)
                .context("a search answer that is not a SearchResponse")?,
            None => {
                errors += 1;
                SearchResponse::default()
            }
        };
        answers.push(answer);
    }
    let pass = Pass {
        wall: wall.elapsed(),
        latencies,
    };
    Ok(Searched {
        pass,
        answers,
        errors,
    })
}

/// Recall@10 of the answers against the exact top 10.
fn recall(exact: &data::Exact, truth: &data::Truth, answers: &[SearchResponse]) -> f64 {
    let ids: Vec<Vec<u64>> = answers
        .iter()
        .map(|a| {
            a.hits
                .iter()
                .filter_map(|h| match h.id {
                    PointId::Int(n) => Some(n),
                    _ => None,
                })
                .collect()
        })
        .collect();
    data::recall(exact, truth, &ids)
}

/// What the coverage reports of a federated pass say.
#[derive(Default)]
struct Spread {
    /// Mean of shards answered / shards.
    coverage: f64,
    /// Shard answers that came from a hedge.
    hedged: usize,
    /// Answers missing a shard.
    incomplete: usize,
    /// Per-shard latencies (ms) of each peer that answered.
    latencies: HashMap<String, Vec<u64>>,
}

fn spread(answers: &[SearchResponse]) -> Spread {
    let mut s = Spread::default();
    for coverage in answers.iter().filter_map(|a| a.coverage.as_ref()) {
        s.coverage += coverage.searched.len() as f64 / f64::from(coverage.shards.max(1));
        s.incomplete += usize::from(!coverage.complete);
        for shard in &coverage.report {
            s.hedged += usize::from(shard.hedged);
            if let (Some(by), Some(ms)) = (&shard.answered_by, shard.latency_ms) {
                s.latencies.entry(by.clone()).or_default().push(ms);
            }
        }
    }
    s.coverage /= answers.len().max(1) as f64;
    s
}

/// The `n` slowest searches of a federated pass: number, latency, shards answered, hedges,
/// and why shards are missing.
fn slowest(searched: &Searched, n: usize) -> String {
    let mut order: Vec<usize> = (0..searched.answers.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(searched.pass.latencies[*i]));
    order
        .iter()
        .take(n)
        .map(|&i| {
            let ms = searched.pass.latencies[i].as_secs_f64() * 1e3;
            let Some(c) = &searched.answers[i].coverage else {
                return format!("#{i} {ms:.0} ms (failed)");
            };
            let hedged = c.report.iter().filter(|s| s.hedged).count();
            // The first words of each reason: enough to tell a deadline from failed holders.
            let mut missing: Vec<String> = c
                .report
                .iter()
                .filter_map(|s| s.missing.as_deref())
                .map(|why| why.chars().take(40).collect())
                .collect();
            missing.sort_unstable();
            missing.dedup();
            format!(
                "#{i} {ms:.0} ms ({}/{} shards, {hedged} hedged{})",
                c.searched.len(),
                c.shards,
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(", missing: {}", missing.join("; "))
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many answers have the same hit ids, in the same order, as the full replica's.
fn same_hits(a: &[SearchResponse], b: &[SearchResponse]) -> usize {
    let ids = |r: &SearchResponse| r.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
    a.iter().zip(b).filter(|(x, y)| ids(x) == ids(y)).count()
}

/// The federation counters (`ipvec_federation_events_total` by event) summed over `urls`.
async fn counters(client: &reqwest::Client, urls: &[&str]) -> Result<HashMap<String, f64>> {
    let mut sum = HashMap::new();
    for url in urls {
        let text = client
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("ipvec_federation_events_total{event=\"") else {
                continue;
            };
            if let Some((event, value)) = rest.split_once("\"}") {
                *sum.entry(event.to_string()).or_insert(0.0) += value.trim().parse().unwrap_or(0.0);
            }
        }
    }
    Ok(sum)
}

/// How much `events` grew from `before` to `after`, as text.
fn grown(before: &HashMap<String, f64>, after: &HashMap<String, f64>, events: &[&str]) -> String {
    events
        .iter()
        .map(|e| {
            let d = after.get(*e).unwrap_or(&0.0) - before.get(*e).unwrap_or(&0.0);
            format!("{e} {d}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A federated pass from the asker, with what the asker's and `holders`' counters say of it.
async fn federated_pass(
    client: &reqwest::Client,
    asker: &str,
    url: &str,
    holders: &[&str],
    bodies: &[String],
    rate: f64,
) -> Result<(Searched, String)> {
    let (asker_before, holders_before) = (
        counters(client, &[asker]).await?,
        counters(client, holders).await?,
    );
    let searched = search_pass(client, url, bodies, rate).await?;
    let (asker_after, holders_after) = (
        counters(client, &[asker]).await?,
        counters(client, holders).await?,
    );
    let said = format!(
        "asker: {}; holders answering /metrics: {}",
        grown(&asker_before, &asker_after, &ASKED),
        grown(&holders_before, &holders_after, &SERVED)
    );
    Ok((searched, said))
}

/// Writes the base points into an 8-shard collection `fm` in `repo` and commits them.
async fn write_collection(repo: &Path, data: &data::Dataset) -> Result<()> {
    let repo = Repo::init(repo).await?;
    let config = repo.config().clone();
    let node = Node::new(repo, config);
    node.create_collection(CreateCollection {
        metric: Metric::L2,
        shards: SHARDS,
        replication: 2,
        ..CreateCollection::new("fm", data.dim as u32)
    })
    .await?;
    for start in (0..data.len()).step_by(1_000) {
        let points = (start..(start + 1_000).min(data.len()))
            .map(|i| PointIn {
                id: PointId::Int(i as u64),
                text: None,
                vector: data.vector(i),
                metadata: None,
            })
            .collect();
        node.upsert("fm", points).await?;
    }
    node.commit("fm").await?;
    node.close().await?;
    Ok(())
}

/// The running daemons. Fields drop in order: the asker, the holders, then the writer and
/// the full replica if still running.
struct Cluster {
    id: String,
    asker: (Daemon, String),
    holders: Vec<(Daemon, String)>,
    holder_peers: Vec<String>,
    writer: Option<Daemon>,
    full: Option<(Daemon, String)>,
}

/// Starts the writer on `writer_repo`, the holders and the full replica (each fetching what
/// it holds, one after the other), waits for the DHT to name every shard's holders, and
/// starts the asker.
async fn start_cluster(dir: &Path, writer_repo: &Path) -> Result<Cluster> {
    let (writer_daemon, writer_url) = start_daemon(writer_repo)?;
    let writer = Client::new(&writer_url, None)?;
    let id = writer.collection_info("fm").await?.id;
    let writer_address = writer.id().await?.addresses.first().cloned();
    let writer_address = writer_address.context("the writer has no address")?;
    let bootstrap = [("IPVEC_P2P_BOOTSTRAP", writer_address.as_str())];
    let mut holders = Vec::new();
    for h in 0..HOLDERS {
        holders.push(start_daemon_with(
            &dir.join(format!("holder{h}")),
            &bootstrap,
        )?);
    }
    let full = start_daemon_with(&dir.join("full"), &bootstrap)?;
    // One fetch at a time: a burst of them makes the writer drop inbound head and Bitswap
    // streams ("Channel is full" in libp2p-stream), and a fetch whose head request is dropped
    // fails with "none of the 1 peers found holds collection".
    let started = Instant::now();
    let from = std::slice::from_ref(&writer_address);
    let mut holder_peers = Vec::new();
    let mut addresses = vec![writer_address.clone()];
    for (h, (_, url)) in holders.iter().enumerate() {
        let holder = Client::new(url, None)?;
        holder
            .fetch_collection(&id, None, from, Some(shards_of(h)))
            .await
            .with_context(|| format!("holder {h} fetching shards {:?}", shards_of(h)))?;
        let me = holder.id().await?;
        addresses.push(
            me.addresses
                .first()
                .context("a holder has no address")?
                .clone(),
        );
        holder_peers.push(me.peer_id);
    }
    Client::new(&full.1, None)?
        .fetch_collection(&id, None, from, None)
        .await
        .context("the full replica fetching")?;
    let fetched = started.elapsed().as_secs_f64();

    let started = Instant::now();
    for shard in 0..SHARDS {
        let key = announce::shard_key(&id, shard).to_string();
        loop {
            let found = writer.providers(&key).await?.providers;
            let named = |h: usize| found.iter().any(|p| p.peer_id == holder_peers[h]);
            if holders_of(shard).iter().all(|h| named(*h)) {
                break;
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("shard {shard}'s holders were not in the DHT after 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    println!(
        "holders and full replica fetched in {fetched:.1} s; every shard's two holders in the DHT {:.1} s later",
        started.elapsed().as_secs_f64()
    );
    let asker = start_daemon_with(
        &dir.join("asker"),
        &[("IPVEC_P2P_BOOTSTRAP", addresses.join(",").as_str())],
    )?;
    Ok(Cluster {
        id,
        asker,
        holders,
        holder_peers,
        writer: Some(writer_daemon),
        full: Some(full),
    })
}

/// A row of the table; `spread` for federated passes.
fn row(what: &str, searched: &Searched, recall: f64, spread: Option<&Spread>) {
    let p = &searched.pass;
    let (coverage, hedged, incomplete) = match spread {
        Some(s) => (
            format!("{:.3}", s.coverage),
            s.hedged.to_string(),
            s.incomplete.to_string(),
        ),
        None => ("—".into(), "—".into(), "—".into()),
    };
    println!(
        "| {what:<32} | {:>10.0} | {:>6.2} | {:>6.2} | {:>7.2} | {:>8.1} | {recall:>9.4} | {coverage:>8} | {hedged:>6} | {incomplete:>10} | {:>6} |",
        searched.qps(),
        p.percentile(0.50),
        p.percentile(0.95),
        p.percentile(0.99),
        p.percentile(1.0),
        searched.errors,
    );
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

fn main() -> Result<()> {
    let opts = options()?;
    let mut data = data::load(opts.queries)?;
    let points = opts.points.min(data.len());
    data.truncate(points);
    let started = Instant::now();
    let truth = data::ground_truth(&data, data::Measure::L2, &[]).remove(0);
    let exact = data::Exact::new(&data, data::Measure::L2);
    println!(
        "# ipvec federated search benchmark\n\nFashion-MNIST: {points} base × {}, {} queries, k = {}, ef = {}, \
         {SHARDS} shards, deadline {} ms; exact ground truth in {:.1} s",
        data.dim,
        data.queries_len(),
        data::K,
        opts.ef,
        opts.deadline_ms,
        started.elapsed().as_secs_f64()
    );
    let tmp = match &opts.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let writer_repo = tmp.path().join("writer");
    let started = Instant::now();
    runtime.block_on(write_collection(&writer_repo, &data))?;
    println!(
        "writer: built and committed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut cluster = runtime.block_on(start_cluster(tmp.path(), &writer_repo))?;
    for h in 0..HOLDERS {
        println!("holder {h}: shards {:?}", shards_of(h));
    }

    let bodies: Vec<String> = data
        .queries_f32()
        .iter()
        .map(|q| {
            serde_json::json!({
                "vector": q, "k": data::K, "ef": opts.ef, "deadline_ms": opts.deadline_ms
            })
            .to_string()
        })
        .collect();
    let warmup = &bodies[..opts.warmup.min(bodies.len())];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let rate = opts.rate;

    // (1) The full replica, on its own node.
    let full_url = &cluster.full.as_ref().context("no full replica")?.1;
    let local = runtime.block_on(async {
        let url = format!("{full_url}/v1/collections/fm/search");
        search_pass(&client, &url, warmup, rate).await?;
        search_pass(&client, &url, &bodies, rate).await
    })?;
    // Only the five holders are left.
    cluster.full = None;
    cluster.writer = None;

    // (2) Federated, from the asker.
    let asker = cluster.asker.1.as_str();
    let url = format!("{asker}/v1/collections/{}/search", cluster.id);
    let holder_urls: Vec<&str> = cluster.holders.iter().map(|(_, u)| u.as_str()).collect();
    let (first, (federated, said)) = runtime.block_on(async {
        let first = search_pass(&client, &url, &bodies[..1], 0.0).await?;
        search_pass(&client, &url, warmup, rate).await?;
        let pass = federated_pass(&client, asker, &url, &holder_urls, &bodies, rate).await?;
        anyhow::Ok((first, pass))
    })?;
    let spread_all = spread(&federated.answers);
    let answered = |h: usize| {
        spread_all
            .latencies
            .get(&cluster.holder_peers[h])
            .map_or(0, Vec::len)
    };
    let stop = opts
        .stop
        .unwrap_or_else(|| (0..HOLDERS).max_by_key(|h| answered(*h)).unwrap_or(0));
    let mut stopped_latencies = spread_all
        .latencies
        .get(&cluster.holder_peers[stop])
        .cloned()
        .unwrap_or_default();
    stopped_latencies.sort_unstable();
    let hedge_delay_ms = match stopped_latencies.len() {
        0 => DEFAULT_LATENCY.as_millis() as f64,
        n => (stopped_latencies[(n * 95).div_ceil(100) - 1] as f64)
            .max(MIN_HEDGE_DELAY.as_millis() as f64),
    };

    // (3) One holder frozen. It answers no /metrics either: its counters are left out.
    let live: Vec<&str> = (0..HOLDERS)
        .filter(|h| *h != stop)
        .map(|h| holder_urls[h])
        .collect();
    let (frozen, frozen_said) = runtime.block_on(async {
        let _frozen = cluster.holders[stop].0.freeze()?;
        federated_pass(&client, asker, &url, &live, &bodies, rate).await
    })?;
    let spread_frozen = spread(&frozen.answers);

    let recall_local = recall(&exact, &truth, &local.answers);
    let recall_federated = recall(&exact, &truth, &federated.answers);
    let recall_frozen = recall(&exact, &truth, &frozen.answers);
    let paced = if rate > 0.0 {
        format!("{rate}/s")
    } else {
        "unpaced".into()
    };
    println!();
    let label = format!("pass ({} searches, {paced})", bodies.len());
    println!(
        "| {label:<32} | searches/s | p50 ms | p95 ms |  p99 ms |   max ms | recall@10 | coverage | hedged | incomplete | errors |"
    );
    println!(
        "| -------------------------------- | ---------: | -----: | -----: | ------: | -------: | --------: | -------: | -----: | ---------: | -----: |"
    );
    row("local HNSW, full replica", &local, recall_local, None);
    row(
        "federated HNSW, 5 holders",
        &federated,
        recall_federated,
        Some(&spread_all),
    );
    row(
        &format!("federated, holder {stop} SIGSTOPped"),
        &frozen,
        recall_frozen,
        Some(&spread_frozen),
    );
    let q = bodies.len();
    println!();
    println!(
        "searches/s = 1 / mean latency; coverage = mean shards answered / {SHARDS}; hedged = shard answers from a hedge; \
         incomplete = answers missing a shard; sent at {:.1}, {:.1} and {:.1} searches per second of wall time",
        local.pass.qps(),
        federated.pass.qps(),
        frozen.pass.qps()
    );
    println!(
        "first federated search (DHT lookups of the shards' holders, head, manifest): {:.1} ms",
        first.pass.percentile(1.0)
    );
    println!(
        "answers with the full replica's hits: {}/{q} federated, {}/{q} with holder {stop} frozen",
        same_hits(&federated.answers, &local.answers),
        same_hits(&frozen.answers, &local.answers)
    );
    println!(
        "shard answers per holder, federated pass: {}",
        (0..HOLDERS)
            .map(|h| format!("{h}: {}", answered(h)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("counters, federated pass: {said}");
    println!("counters, holder {stop} frozen: {frozen_said}");
    println!("slowest, federated pass: {}", slowest(&federated, 3));
    println!("slowest, holder {stop} frozen: {}", slowest(&frozen, 5));
    println!(
        "hedge delay of holder {stop} ≈ {hedge_delay_ms:.0} ms (p95 of its {} shard answers in the federated pass, at least {} ms)",
        stopped_latencies.len(),
        MIN_HEDGE_DELAY.as_millis()
    );

    let local_p95 = local.pass.percentile(0.95);
    let d_recall = recall_federated - recall_local;
    let d_p95 = federated.pass.percentile(0.95) - local_p95;
    let d_frozen = frozen.pass.percentile(0.95) - local_p95;
    println!();
    println!("goals:");
    println!(
        "- recall@10 federated − local = {d_recall:+.4} (goal within ±0.005): {}; with holder {stop} frozen {:+.4}",
        met(d_recall.abs() <= 0.005),
        recall_frozen - recall_local
    );
    println!(
        "- p95 federated − local = {d_p95:+.2} ms (goal ≤ +5 ms): {}; p95 ratio {:.2}",
        met(d_p95 <= 5.0),
        federated.pass.percentile(0.95) / local_p95
    );
    println!(
        "- p95 with holder {stop} frozen − local = {d_frozen:+.2} ms (goal ≤ hedge delay {hedge_delay_ms:.0} ms + 5 ms = {:.0} ms): {}",
        hedge_delay_ms + 5.0,
        met(d_frozen <= hedge_delay_ms + 5.0)
    );
    Ok(())
}
