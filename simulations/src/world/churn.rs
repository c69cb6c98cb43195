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

use super::{trees::writer_node, Event, Fault, Node, NodeId, World};

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
            loose: Default::default(),
            seen: vec![0; self.trees.writers() as usize],
            roots: self.trees.genesis().to_vec(),
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
            n.loose.clear();
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
            n.loose.clear();
            self.stats.left += 1;
            if replace {
                let id = self.nodes.len() as NodeId;
                self.nodes.push(self.new_node(1.0, Fault::Honest));
                self.stats.joined += 1;
                self.serving_join(id);
                self.catch_up(id);
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

    /// Tells `node` each writer's newest head it is behind on, of those it can learn: a node
    /// asks its peers for the newest heads when it starts or reconnects, as the daemon's head
    /// following does, so it learns the writers' newest when they reach it, and otherwise the
    /// newest its reachable peers took.
    fn catch_up(&mut self, node: NodeId) {
        let heads = if self.writer_reaches(node) {
            self.trees.heads()
        } else {
            let mut heads = vec![0; self.trees.writers() as usize];
            for peer in self.live() {
                if peer != node && self.reachable(node, peer) {
                    let seen = &self.nodes[peer as usize].seen;
                    heads
                        .iter_mut()
                        .zip(seen)
                        .for_each(|(h, s)| *h = (*h).max(*s));
                }
            }
            heads
        };
        for (writer, seq) in heads.into_iter().enumerate() {
            if self.nodes[node as usize].seen[writer] < seq {
                let ms = 2.0 * self.latency();
                let writer = writer as u32;
                self.after(ms, Event::Head { node, writer, seq });
            }
        }
    }

    /// `node` reconciles with `peer` (a rebalancer's reconcile): after a round trip, each has
    /// the other's heads, and takes those it lacks as it takes gossiped ones.
    pub(super) fn reconcile(&mut self, node: NodeId, peer: NodeId) {
        if !self.reachable(node, peer) {
            return;
        }
        for (to, from) in [(node, peer), (peer, node)] {
            let theirs = self.nodes[from as usize].seen.clone();
            for (writer, seq) in theirs.into_iter().enumerate() {
                if self.nodes[to as usize].seen[writer] < seq {
                    self.head(to, writer as u32, seq);
                }
            }
        }
    }

    pub(super) fn commit(&mut self) {
        let writer = self.rng.below(u64::from(self.trees.writers())) as u32;
        let shard = self.rng.below(u64::from(self.sc.shards)) as u32;
        let seq = self.trees.commit(writer, shard, self.now.0, &mut self.rng);
        self.stats.commits += 1;
        for node in self.live() {
            if self.writer_reaches(node) {
                let ms = self.latency();
                self.after(ms, Event::Head { node, writer, seq });
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

    /// Writer `writer`'s head `seq` reaches `node`: its follow core judges it on the
    /// writer's stream and may start a catch-up.
    pub(super) fn head(&mut self, node: NodeId, writer: u32, seq: u64) {
        let n = &mut self.nodes[node as usize];
        if !n.alive {
            return;
        }
        let input = FollowInput::Head {
            id: writer,
            seq,
            from: writer_node(writer),
            signed: true,
            local: Some(Local {
                seq: n.seen[writer as usize],
                writable: false,
            }),
            head: seq,
        };
        let actions = n.follow.handle(input, self.now);
        self.follow_act(node, actions);
    }

    fn follow_act(&mut self, node: NodeId, actions: Vec<FollowAction<u32, NodeId, u64>>) {
        for action in actions {
            if let FollowAction::CatchUp { id, seq, .. } = action {
                // Fetching the head's manifest and the trees it merges: a round trip.
                let ms = 2.0 * self.latency();
                let life = self.serving.life(node);
                let writer = id;
                self.after(
                    ms,
                    Event::CaughtUp {
                        node,
                        life,
                        writer,
                        seq,
                    },
                );
            }
        }
    }

    /// `node` has writer `writer`'s head `seq`: it merges the trees the head changed into
    /// its roots, and its repair core learns them.
    pub(super) fn caught_up(&mut self, node: NodeId, life: u32, writer: u32, seq: u64) {
        let n = &mut self.nodes[node as usize];
        if !n.alive || self.serving.life(node) != life {
            return;
        }
        let from = n.seen[writer as usize];
        let moved = seq > from;
        if moved {
            let mut roots = std::mem::take(&mut n.roots);
            self.stats.merges += self.trees.take(&mut roots, writer, from, seq);
            let n = &mut self.nodes[node as usize];
            n.roots = roots;
            n.seen[writer as usize] = seq;
        }
        // The node is at that head or past it either way.
        let input = FollowInput::CatchUpEnded {
            id: writer,
            moved: true,
        };
        let n = &mut self.nodes[node as usize];
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
