//! Nodes coming and going, partitions, and new versions of the collection.
//!
//! - **Start**: every node is up, announced, and holds what placement gives it at version 0
//!   (the run starts from a settled network). The slow, forging and withholding nodes are
//!   drawn once, by the seed.
//! - **Churn**: crashes come at Poisson times, `churn.per_hour × nodes` an hour, each to a
//!   random live node. Of those, `churn.leave_fraction` leave for good (the disk is lost; a new
//!   empty node joins in its place when `churn.replace`), the rest restart with their disk
//!   after a uniform time down, with a fresh peer book (it lives in memory in the daemon).
//! - **Writes**: the writer (outside the serving set, always up, on the first side of any
//!   partition) commits new versions of random shards at Poisson times; each new head reaches
//!   every live node on its side after a link's latency, and the others when they restart or
//!   the partition heals.
//! - **Partitions**: from `at_s` to `heal_s` the first `fraction` of the nodes (by number) and
//!   the others reach only their own side; the DHT's records stay visible to all (a
//!   simplification: provider records are many and replicated).

use ipvec_node::{cluster::Millis, federation::PeerBook};

use super::{Event, Fault, Node, NodeId, World};

impl World {
    /// Creates the nodes and schedules the run's first events.
    pub(super) fn populate(&mut self) {
        let n = self.sc.nodes;
        let slow = self.pick(self.sc.faults.slow_fraction);
        let forging = self.pick(self.sc.faults.forging_fraction);
        let withholding = self.pick(self.sc.faults.withholding_fraction);
        for id in 0..n {
            let fault = if forging.contains(&id) {
                Fault::Forging
            } else if withholding.contains(&id) {
                Fault::Withholding
            } else {
                Fault::Honest
            };
            let slow = if slow.contains(&id) {
                self.sc.faults.slow_factor
            } else {
                1.0
            };
            self.nodes.push(self.new_node(slow, fault));
        }
        self.serving_start();
        self.schedule_searches();
        self.schedule_poisson(self.sc.churn.per_hour * f64::from(n), Event::Crash);
        self.schedule_poisson(self.sc.writes.per_hour, Event::Commit);
        for index in 0..self.sc.partitions.len() {
            let p = &self.sc.partitions[index];
            let (at, heal) = (Millis(p.at_s * 1_000), Millis(p.heal_s * 1_000));
            self.schedule(at, Event::Split { index });
            self.schedule(heal, Event::Heal { index });
        }
        self.schedule(Millis(0), Event::Sample);
    }

    /// `fraction` of the starting nodes, drawn by the seed.
    fn pick(&mut self, fraction: f64) -> Vec<NodeId> {
        let n = self.sc.nodes;
        let k = (fraction * f64::from(n)).round() as u32;
        self.rng.sample(n, k)
    }

    fn new_node(&self, slow: f64, fault: Fault) -> Node {
        Node {
            alive: true,
            gone: false,
            up_since: self.now,
            slow,
            fault,
            book: PeerBook::new(),
            holds: Default::default(),
            heads: self.versions.clone(),
        }
    }

    /// Schedules `event` at Poisson times, `per_hour` an hour, over the whole run.
    fn schedule_poisson(&mut self, per_hour: f64, event: Event) {
        if per_hour <= 0.0 {
            return;
        }
        let mean = 3_600_000.0 / per_hour;
        let mut t = self.rng.exponential(mean);
        while (t as u64) < self.end.0 {
            self.schedule(Millis(t as u64), event.clone());
            t += self.rng.exponential(mean);
        }
    }

    pub(super) fn crash(&mut self) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let node = live[self.rng.below(live.len() as u64) as usize];
        self.stats.crashes += 1;
        let n = &mut self.nodes[node as usize];
        n.alive = false;
        if self.rng.chance(self.sc.churn.leave_fraction) {
            let n = &mut self.nodes[node as usize];
            n.gone = true;
            n.holds.clear();
            self.stats.left += 1;
            if self.sc.churn.replace {
                let id = self.nodes.len() as NodeId;
                self.nodes.push(self.new_node(1.0, Fault::Honest));
                self.stats.joined += 1;
                self.serving_join(id);
            }
        } else {
            let down = self
                .rng
                .between(self.sc.churn.down_min_s, self.sc.churn.down_max_s);
            self.after(down as f64 * 1_000.0, Event::Restart { node });
        }
    }

    pub(super) fn restart(&mut self, node: NodeId) {
        let now = self.now;
        let n = &mut self.nodes[node as usize];
        n.alive = true;
        n.up_since = now;
        n.book = PeerBook::new();
        self.catch_up(node);
        self.serving_join(node);
    }

    /// Tells `node` of every head it missed (it asks its peers for the newest heads when it
    /// starts or reconnects, as the daemon's head following does).
    fn catch_up(&mut self, node: NodeId) {
        for shard in 0..self.sc.shards {
            let version = self.versions[shard as usize];
            if self.nodes[node as usize].heads[shard as usize] < version {
                let ms = 2.0 * self.latency();
                self.after(
                    ms,
                    Event::Head {
                        node,
                        shard,
                        version,
                    },
                );
            }
        }
    }

    pub(super) fn commit(&mut self) {
        let shard = self.rng.below(u64::from(self.sc.shards)) as u32;
        self.versions[shard as usize] += 1;
        self.stats.commits += 1;
        let version = self.versions[shard as usize];
        for node in self.live() {
            if self.writer_reaches(node) {
                let ms = self.latency();
                self.after(
                    ms,
                    Event::Head {
                        node,
                        shard,
                        version,
                    },
                );
            }
        }
    }

    /// Whether the writer reaches `node` now (it sits on the first side of a partition).
    pub(super) fn writer_reaches(&self, node: NodeId) -> bool {
        self.nodes[node as usize].alive
            && self
                .sides
                .as_ref()
                .is_none_or(|sides| sides.get(node as usize).copied().unwrap_or(false))
    }

    pub(super) fn head(&mut self, node: NodeId, shard: u32, version: u64) {
        let n = &mut self.nodes[node as usize];
        if !n.alive || n.heads[shard as usize] >= version {
            return;
        }
        n.heads[shard as usize] = version;
        self.serving_head(node);
    }

    pub(super) fn split(&mut self, index: usize) {
        let fraction = self.sc.partitions[index].fraction;
        let first = (fraction * self.nodes.len() as f64).round() as usize;
        self.sides = Some((0..self.nodes.len()).map(|i| i < first).collect());
        self.stats.partitions += 1;
    }

    pub(super) fn heal(&mut self) {
        if self.sides.take().is_some() {
            self.stats.healed_at.push(self.now);
            for node in self.live() {
                self.catch_up(node);
            }
        }
    }
}
