//! What a run measured, and the table and CSV row it prints as.

use std::fmt::Write as _;

use ipvec_node::{cluster::Millis, federation::Outcome};

use crate::world::Violation;

/// Everything a run counts.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Searches that finished.
    pub searches: u64,
    /// Of those, searches that covered every shard.
    pub full_coverage: u64,
    /// Sum over searches of the fraction of shards covered.
    pub coverage_sum: f64,
    /// Sum over searches of recall@k against the exact top-k of the whole collection.
    pub recall_sum: f64,
    /// Each search's time from start to finish (virtual milliseconds).
    pub latencies: Vec<u64>,
    /// Hedge requests sent.
    pub hedges: u64,
    /// Failover requests sent.
    pub failovers: u64,
    /// Requests sent in all.
    pub requests: u64,
    /// Shards left out of searches, by reason (`deadline`, `no holder known`, `every holder
    /// failed`).
    pub missing: std::collections::BTreeMap<String, u64>,
    /// Forged hits the askers caught and dropped.
    pub forged_hits: u64,
    /// Crashes.
    pub crashes: u64,
    /// Nodes that left for good.
    pub left: u64,
    /// Nodes that joined (replacing those that left).
    pub joined: u64,
    /// Versions the writers committed.
    pub commits: u64,
    /// Writers.
    pub writers: u32,
    /// Shard trees nodes merged with a writer's as they took its heads (one shard of one
    /// head each).
    pub merges: u64,
    /// Partitions that started.
    pub partitions: u64,
    /// When each partition healed.
    pub healed_at: Vec<Millis>,
    /// Time from each heal until every live node had every head and every shard its
    /// replication at a root that merges every commit (virtual milliseconds).
    pub converged_after_heal: Vec<u64>,
    /// Bytes moved by repair and rebalancing: whole shards fetched by members that had none
    /// of them.
    pub bytes_moved: u64,
    /// Bytes of the shards the crashed nodes held when they went down.
    pub bytes_on_crashed: u64,
    /// Bytes moved by holders catching up with new versions (the versions' deltas).
    pub bytes_catch_up: u64,
    /// Want messages sent by fetches.
    pub wants: u64,
    /// Bytes of every block that reached a fetcher (duplicates and refused ones included).
    pub bytes_received: u64,
    /// Of those, later copies of blocks already delivered.
    pub bytes_duplicate: u64,
    /// Blocks refused because nobody asked their sender for them (forged ones).
    pub blocks_refused: u64,
    /// Peers a fetcher's want ledger banned.
    pub bans: u64,
    /// Fetches that completed.
    pub fetches: u64,
    /// Fetches that failed (a block no peer asked had, or would send in time).
    pub fetch_failures: u64,
    /// Shards dropped by members placement no longer gives them.
    pub drops: u64,
    /// Anti-entropy reconciles asked for.
    pub reconciles: u64,
    /// For each time a shard fell below its replication of live holders at its newest
    /// version: how long until it was back (virtual milliseconds).
    pub repair_times: Vec<u64>,
    /// Shards below replication when the run ended.
    pub under_replicated_at_end: u64,
    /// Times a shard had no copy left on any node that could come back.
    pub shards_lost: u64,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// The live nodes holding each shard when the run ended, by shard.
    pub holders: Vec<Vec<u32>>,
    /// Events handled.
    pub events: u64,
    /// Virtual time simulated.
    pub simulated_ms: u64,
    /// The run's trace hash (BLAKE3 over every event handled).
    pub trace: String,
    /// Live nodes at the end.
    pub nodes_end: u32,
}

/// The value at quantile `q` of sorted `v` (0 when empty).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The figures a run is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Searches that finished.
    pub searches: u64,
    /// Share of searches that covered every shard.
    pub full_coverage_rate: f64,
    /// Mean share of shards covered.
    pub mean_coverage: f64,
    /// Mean recall@k.
    pub recall: f64,
    /// Latency quantiles (virtual milliseconds).
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Longest time a shard spent below its replication (virtual milliseconds).
    pub repair_max_ms: u64,
    /// Mean of those times.
    pub repair_mean_ms: f64,
}

impl Stats {
    /// Adds one finished search.
    pub fn record_search<P>(
        &mut self,
        latency_ms: u64,
        covered: u32,
        shards: u32,
        recall: f64,
        outcome: &Outcome<P>,
    ) {
        self.searches += 1;
        self.full_coverage += u64::from(covered == shards);
        self.coverage_sum += f64::from(covered) / f64::from(shards.max(1));
        self.recall_sum += recall;
        self.latencies.push(latency_ms);
        self.hedges += u64::from(outcome.hedges);
        self.failovers += u64::from(outcome.failovers);
        self.requests += u64::from(outcome.requests);
        for report in &outcome.coverage {
            if let Some(why) = &report.missing {
                let why = why.split(':').next().unwrap_or(why).trim().to_string();
                *self.missing.entry(why).or_default() += 1;
            }
        }
    }

    /// The headline figures.
    pub fn summary(&self) -> Summary {
        let mut lat = self.latencies.clone();
        lat.sort_unstable();
        let n = self.searches.max(1) as f64;
        let mut repairs = self.repair_times.clone();
        repairs.sort_unstable();
        Summary {
            searches: self.searches,
            full_coverage_rate: self.full_coverage as f64 / n,
            mean_coverage: self.coverage_sum / n,
            recall: self.recall_sum / n,
            p50: quantile(&lat, 0.50),
            p95: quantile(&lat, 0.95),
            p99: quantile(&lat, 0.99),
            repair_max_ms: repairs.last().copied().unwrap_or(0),
            repair_mean_ms: if repairs.is_empty() {
                0.0
            } else {
                repairs.iter().sum::<u64>() as f64 / repairs.len() as f64
            },
        }
    }

    /// The table a run prints.
    pub fn table(&self, name: &str, seed: u64, wall_s: f64) -> String {
        let s = self.summary();
        let mut out = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "{k:<38} {v}");
        };
        row("scenario", format!("{name} (seed {seed})"));
        row(
            "simulated",
            format!(
                "{:.1} h, {} events in {wall_s:.2} s wall ({:.0} events/s)",
                self.simulated_ms as f64 / 3_600_000.0,
                self.events,
                self.events as f64 / wall_s.max(1e-9)
            ),
        );
        row("searches issued (finished)", s.searches.to_string());
        row(
            "full-coverage rate",
            format!("{:.2}%", 100.0 * s.full_coverage_rate),
        );
        row("mean coverage", format!("{:.2}%", 100.0 * s.mean_coverage));
        row("recall@k vs exact", format!("{:.4}", s.recall));
        row(
            "latency p50 / p95 / p99 (virtual)",
            format!("{} / {} / {} ms", s.p50, s.p95, s.p99),
        );
        row(
            "requests / hedges / failovers",
            format!("{} / {} / {}", self.requests, self.hedges, self.failovers),
        );
        let missing: Vec<String> = self
            .missing
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        row(
            "shards missing from searches",
            if missing.is_empty() {
                "none".to_string()
            } else {
                missing.join(", ")
            },
        );
        row("forged hits caught", self.forged_hits.to_string());
        row(
            "crashes / left for good / joined",
            format!("{} / {} / {}", self.crashes, self.left, self.joined),
        );
        row(
            "commits (writers) / shard merges",
            format!("{} ({}) / {}", self.commits, self.writers, self.merges),
        );
        row(
            "bytes moved: repair / catch-up",
            format!(
                "{:.1} MB / {:.1} MB in {} fetches ({} failed); {} drops, {} reconciles",
                self.bytes_moved as f64 / 1e6,
                self.bytes_catch_up as f64 / 1e6,
                self.fetches,
                self.fetch_failures,
                self.drops,
                self.reconciles
            ),
        );
        row(
            "fetch traffic",
            format!(
                "{} wants; {:.1} MB received, {:.1} MB of it duplicate copies; {} forged blocks refused, {} peers banned",
                self.wants,
                self.bytes_received as f64 / 1e6,
                self.bytes_duplicate as f64 / 1e6,
                self.blocks_refused,
                self.bans
            ),
        );
        row(
            "repair bytes / bytes on crashed nodes",
            if self.bytes_on_crashed == 0 {
                "no crash".to_string()
            } else {
                format!(
                    "{:.2}",
                    self.bytes_moved as f64 / self.bytes_on_crashed as f64
                )
            },
        );
        row(
            "back to full replication",
            format!(
                "{} times; mean {:.1} s, max {:.1} s; {} shards short at the end",
                self.repair_times.len(),
                s.repair_mean_ms / 1_000.0,
                s.repair_max_ms as f64 / 1_000.0,
                self.under_replicated_at_end
            ),
        );
        row("shards lost", self.shards_lost.to_string());
        let heal = if self.partitions == 0 {
            "no partition".to_string()
        } else {
            let times: Vec<String> = self
                .converged_after_heal
                .iter()
                .map(|ms| format!("{:.1} s", *ms as f64 / 1_000.0))
                .collect();
            format!(
                "{} partitions, converged after heal: {}",
                self.partitions,
                if times.is_empty() {
                    "not yet".to_string()
                } else {
                    times.join(", ")
                }
            )
        };
        row("partitions", heal);
        row(
            "invariant violations",
            match self.violations.first() {
                None => "0".to_string(),
                Some(v) => format!(
                    "{} — first at {:.3} s (event {}): {}",
                    self.violations.len(),
                    v.at.0 as f64 / 1_000.0,
                    v.event,
                    v.invariant
                ),
            },
        );
        row("trace hash", self.trace.clone());
        out
    }
}
