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
//!   the partition heals. Each node judges heads with the node's own `cluster::follow` core,
//!   which starts catch-ups (a round trip for the manifest; the repair core then fetches the
//!   held shards' new roots) and coalesces heads that come while one runs.
//! - **Partitions**: from `at_s` to `heal_s` the first `fraction` of the nodes (by number) and
//!   the others reach only their own side. Each side has its own membership directory from
//!   the split (so each loses the other's members when their announcements expire, and
//!   repairs onto its own), merged again at the heal; the DHT's provider records stay
//!   visible to all (a simplification: a lookup may name a holder across the partition,
//!   which the asker then cannot reach).

use ipvec_node::{
    cluster::{
        follow::{Action as FollowAction, Follow, Input as FollowInput, Local},
        Millis,
    },
    federation::PeerBook,
};

use super::{Event, Fault, Node, NodeId, World};

/// The collection's name in the follow core.
const COLLECTION_ID: u32 = 0;
/// The writer, as the peer heads come from.
pub(super) const WRITER: NodeId = NodeId::MAX;

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
        for kill in self.sc.kills.clone() {
            let node = kill.node;
            self.schedule(Millis(kill.at_s * 1_000), Event::Kill { node });
        }
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
            seq: 0,
            follow: Follow::default(),
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
        let leaves = self.rng.chance(self.sc.churn.leave_fraction);
        self.go_down(node, leaves, self.sc.churn.replace);
    }

    /// A scenario's kill: `node` leaves for good, nobody taking its place.
    pub(super) fn kill(&mut self, node: NodeId) {
        if self.nodes[node as usize].alive {
            self.go_down(node, true, false);
        } else if !self.nodes[node as usize].gone {
            // Down already: it does not come back.
            let n = &mut self.nodes[node as usize];
            n.gone = true;
            n.holds.clear();
            self.stats.left += 1;
        }
    }

    /// `node` goes down: it `leaves` for good (a new empty node joining in its place when
    /// `replace`), or restarts with its disk after a while.
    fn go_down(&mut self, node: NodeId, leaves: bool, replace: bool) {
        self.stats.crashes += 1;
        let n = &mut self.nodes[node as usize];
        self.stats.bytes_on_crashed += n.holds.len() as u64 * self.sc.repair.shard_bytes;
        n.alive = false;
        if leaves {
            let n = &mut self.nodes[node as usize];
            n.gone = true;
            n.holds.clear();
            self.stats.left += 1;
            if replace {
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
        if n.gone {
            return;
        }
        n.alive = true;
        n.up_since = now;
        n.book = PeerBook::new();
        n.follow = Follow::default();
        self.serving_join(node);
        self.catch_up(node);
    }

    /// Tells `node` the newest head if it is behind (a node asks its peers for the newest
    /// heads when it starts or reconnects, as the daemon's head following does).
    fn catch_up(&mut self, node: NodeId) {
        let seq = self.history.len() as u64 - 1;
        if self.nodes[node as usize].seq < seq {
            let ms = 2.0 * self.latency();
            self.after(ms, Event::Head { node, seq });
        }
    }

    pub(super) fn commit(&mut self) {
        let shard = self.rng.below(u64::from(self.sc.shards)) as u32;
        self.versions[shard as usize] += 1;
        self.history.push(self.versions.clone());
        self.stats.commits += 1;
        let seq = self.history.len() as u64 - 1;
        for node in self.live() {
            if self.writer_reaches(node) {
                let ms = self.latency();
                self.after(ms, Event::Head { node, seq });
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

    /// A head reaches `node`: its follow core judges it and may start a catch-up.
    pub(super) fn head(&mut self, node: NodeId, seq: u64) {
        let n = &mut self.nodes[node as usize];
        if !n.alive {
            return;
        }
        let input = FollowInput::Head {
            id: COLLECTION_ID,
            seq,
            from: WRITER,
            signed: true,
            local: Some(Local {
                seq: n.seq,
                writable: false,
            }),
            head: seq,
        };
        let actions = n.follow.handle(input, self.now);
        self.follow_act(node, actions);
    }

    fn follow_act(&mut self, node: NodeId, actions: Vec<FollowAction<u32, NodeId, u64>>) {
        for action in actions {
            if let FollowAction::CatchUp { seq, .. } = action {
                // Fetching the head's manifest and shard roots: a round trip.
                let ms = 2.0 * self.latency();
                let life = self.serving.life(node);
                self.after(ms, Event::CaughtUp { node, life, seq });
            }
        }
    }

    /// `node` has head `seq`'s manifest: its repair core learns the new roots.
    pub(super) fn caught_up(&mut self, node: NodeId, life: u32, seq: u64) {
        let n = &mut self.nodes[node as usize];
        if !n.alive || self.serving.life(node) != life {
            return;
        }
        let moved = seq > n.seq;
        n.seq = n.seq.max(seq);
        let input = FollowInput::CatchUpEnded {
            id: COLLECTION_ID,
            moved: true,
        };
        let actions = n.follow.handle(input, self.now);
        if moved {
            self.serving_head(node);
        }
        self.follow_act(node, actions);
    }

    pub(super) fn split(&mut self, index: usize) {
        let fraction = self.sc.partitions[index].fraction;
        let first = (fraction * self.nodes.len() as f64).round() as usize;
        self.sides = Some((0..self.nodes.len()).map(|i| i < first).collect());
        self.stats.partitions += 1;
        self.serving_split();
    }

    pub(super) fn heal(&mut self) {
        if self.sides.is_some() {
            self.serving_heal();
            self.sides = None;
            self.stats.healed_at.push(self.now);
            for node in self.live() {
                self.catch_up(node);
            }
        }
    }
}
