//! The simulated world: a virtual clock, one queue of events ordered by (time, order of
//! scheduling), one seeded [`Rng`], and the nodes, each running the node's own sans-io cores.
//!
//! The loop pops the earliest event, sets the clock to its time, hashes it into the trace, and
//! hands it to its handler, which changes the world and schedules what follows. Nothing reads
//! a wall clock or iterates a hash map in an order that could differ between runs, so a seed
//! names a run exactly, and the trace hash says whether two runs were the same.
//!
//! # Layout
//! - `search`: federated searches, planned by `federation::Planner` over links.
//! - `churn`: crashes, restarts, leaves and joins, partitions, new versions.
//! - `serving`: membership, placement and repair, by the `cluster` cores.
//! - `fetch`: shard fetches block by block, by the fetch scheduler's cores.
//! - `trees`: the shards' trees, the writers' commits and the nodes' merges.
//! - `check`: the invariants and the periodic sample of replication.

mod check;
mod churn;
mod fetch;
mod search;
mod serving;
mod trees;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use ipvec_node::{
    cluster::{follow::Follow, Millis},
    federation::{Input, PeerBook, RequestId},
};

use cid::Cid;

use self::{fetch::Reply, search::SearchRun, serving::Serving, trees::Trees};

pub use self::trees::{merge, MergeFn};
use crate::{
    data::Dataset,
    report::Stats,
    rng::Rng,
    scenario::{Scenario, ScenarioError},
};

/// A node's number; new nodes get new numbers, numbers are never reused.
pub type NodeId = u32;

/// Something that happens at a time.
#[derive(Debug, Clone)]
enum Event {
    /// A live node starts a federated search.
    SearchStart,
    /// A search request reaches its holder.
    SearchArrive {
        search: u64,
        request: RequestId,
        to: NodeId,
        shards: Vec<u32>,
    },
    /// An answer (or failure) reaches the asker.
    SearchReply { search: u64, input: Input },
    /// A search's planner wants polling.
    SearchPoll { search: u64 },
    /// A node crashes (and may never come back).
    Crash,
    /// A given node leaves for good (a scenario's `kills`).
    Kill { node: NodeId },
    /// A crashed node starts again with its disk.
    Restart { node: NodeId },
    /// A node announces its membership and reads the membership it sees (in its life
    /// `life`: the events of a life before a crash stop).
    Announce { node: NodeId, life: u32 },
    /// A shard fetch has dialled its providers and starts walking.
    FetchStart {
        node: NodeId,
        life: u32,
        shard: u32,
        root: Cid,
    },
    /// A want of `node` for a block reaches peer `to`.
    WantArrive {
        node: NodeId,
        life: u32,
        to: NodeId,
        cid: Cid,
    },
    /// Peer `from`'s answer to a want reaches `node`.
    WantReply {
        node: NodeId,
        life: u32,
        from: NodeId,
        cid: Cid,
        reply: Reply,
    },
    /// A node's want ledger wants polling.
    WantPoll { node: NodeId, life: u32 },
    /// A holder's report that it holds a shard at a root (`None`: it dropped it) reaches
    /// another node.
    Report {
        to: NodeId,
        from: NodeId,
        shard: u32,
        root: Option<Cid>,
    },
    /// A node's repair core wants polling.
    RepairPoll { node: NodeId, life: u32 },
    /// A writer commits a new version of a shard.
    Commit,
    /// Writer `writer`'s head `seq` reaches a node by gossip.
    Head { node: NodeId, writer: u32, seq: u64 },
    /// A node's catch-up to writer `writer`'s head `seq` ends (it fetched the head's
    /// manifest and the trees it merges).
    CaughtUp {
        node: NodeId,
        life: u32,
        writer: u32,
        seq: u64,
    },
    /// `node` asks `peer` for its heads, to reconcile a shard they hold at other roots.
    Reconcile { node: NodeId, peer: NodeId },
    /// A partition starts.
    Split { index: usize },
    /// A partition heals.
    Heal { index: usize },
    /// The periodic check of replication and invariants.
    Sample,
}

impl Event {
    /// Feeds what identifies this event into the trace.
    fn trace(&self, h: &mut blake3::Hasher) {
        let mut put = |n: u64| {
            h.update(&n.to_le_bytes());
        };
        // A block's CID by the first 8 bytes of its digest.
        let short = |cid: &Cid| {
            let digest = cid.hash().digest();
            u64::from_le_bytes(
                digest
                    .get(..8)
                    .and_then(|d| d.try_into().ok())
                    .unwrap_or([0; 8]),
            )
        };
        match self {
            Event::SearchStart => put(1),
            Event::SearchArrive {
                search,
                request,
                to,
                shards,
            } => {
                put(2);
                put(*search);
                put(request.0);
                put(u64::from(*to));
                put(shards.len() as u64);
            }
            Event::SearchReply { search, input } => {
                put(3);
                put(*search);
                match input {
                    Input::Answered { request, answer } => {
                        put(request.0);
                        put(answer.shards.len() as u64);
                    }
                    Input::Failed { request, .. } => {
                        put(request.0);
                        put(u64::MAX);
                    }
                }
            }
            Event::SearchPoll { search } => {
                put(4);
                put(*search);
            }
            Event::Crash => put(5),
            Event::Restart { node } => {
                put(6);
                put(u64::from(*node));
            }
            Event::Announce { node, life } => {
                put(7);
                put(u64::from(*node));
                put(u64::from(*life));
            }
            Event::FetchStart {
                node,
                life,
                shard,
                root,
            } => {
                put(9);
                put(u64::from(*node));
                put(u64::from(*life));
                put(u64::from(*shard));
                put(short(root));
            }
            Event::WantArrive {
                node,
                life,
                to,
                cid,
            } => {
                put(18);
                put(u64::from(*node));
                put(u64::from(*life));
                put(u64::from(*to));
                put(short(cid));
            }
            Event::WantReply {
                node,
                life,
                from,
                cid,
                reply,
            } => {
                put(19);
                put(u64::from(*node));
                put(u64::from(*life));
                put(u64::from(*from));
                put(short(cid));
                put(reply.code());
            }
            Event::WantPoll { node, life } => {
                put(20);
                put(u64::from(*node));
                put(u64::from(*life));
            }
            Event::Report {
                to,
                from,
                shard,
                root,
            } => {
                put(10);
                put(u64::from(*to));
                put(u64::from(*from));
                put(u64::from(*shard));
                put(root.as_ref().map_or(u64::MAX, short));
            }
            Event::RepairPoll { node, life } => {
                put(11);
                put(u64::from(*node));
                put(u64::from(*life));
            }
            Event::Commit => put(12),
            Event::Head { node, writer, seq } => {
                put(13);
                put(u64::from(*node));
                put(u64::from(*writer));
                put(*seq);
            }
            Event::CaughtUp {
                node,
                life,
                writer,
                seq,
            } => {
                put(17);
                put(u64::from(*node));
                put(u64::from(*life));
                put(u64::from(*writer));
                put(*seq);
            }
            Event::Reconcile { node, peer } => {
                put(22);
                put(u64::from(*node));
                put(u64::from(*peer));
            }
            Event::Split { index } => {
                put(14);
                put(*index as u64);
            }
            Event::Heal { index } => {
                put(15);
                put(*index as u64);
            }
            Event::Sample => put(16),
            Event::Kill { node } => {
                put(21);
                put(u64::from(*node));
            }
        }
    }
}

/// How a node misbehaves, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Honest,
    /// Answers searches with forged hits.
    Forging,
    /// Announces its shards, then answers `not_held`.
    Withholding,
}

/// One simulated node.
#[derive(Debug)]
struct Node {
    /// Running now.
    alive: bool,
    /// Left for good: its disk is gone and it never comes back.
    gone: bool,
    /// When it last started (for the coverage invariant).
    up_since: Millis,
    /// How many times slower than the scenario's service time it searches.
    slow: f64,
    fault: Fault,
    /// What it learnt of its peers from its searches (lost on a restart, as in the daemon).
    book: PeerBook<NodeId>,
    /// The shards on its disk.
    holds: BTreeMap<u32, Held>,
    /// Per shard, the blocks of fetches that have not ended (on disk, not pinned: a fetch
    /// tried again finds them; the next fetch of the shard to end lets gc have them).
    loose: BTreeMap<u32, HashSet<Cid>>,
    /// The heads it has taken: each writer's sequence (0: none of it yet).
    seen: Vec<u64>,
    /// Its root of each shard: the merge of the heads it took (what its manifest names).
    roots: Vec<Cid>,
    /// Its head following, by the node's own core, one stream per writer (in memory: new
    /// at each start).
    follow: Follow<u32, NodeId, u64>,
}

/// A shard on a node's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// The root it has.
    root: Cid,
    /// The heads that root merges (the node's `seen` when it fetched it).
    seen: Vec<u64>,
    /// Since when it has held the shard (at any root).
    since: Millis,
}

/// A broken invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: Millis,
    /// Which invariant.
    pub invariant: &'static str,
    /// The order of the event that broke it (for `--replay`).
    pub event: u64,
}

/// A whole simulated network.
#[derive(Debug)]
pub struct World {
    sc: Scenario,
    now: Millis,
    end: Millis,
    queue: BTreeMap<(Millis, u64), Event>,
    order: u64,
    /// The order of the event being handled.
    current: u64,
    rng: Rng,
    data: Dataset,
    nodes: Vec<Node>,
    /// The shards' trees and their writers.
    trees: Trees,
    /// Provider records: shard → node → expiry.
    providers: Vec<BTreeMap<NodeId, Millis>>,
    /// The side of each node during a partition (`None`: no partition).
    sides: Option<Vec<bool>>,
    searches: HashMap<u64, SearchRun>,
    next_search: u64,
    serving: Serving,
    replication: check::Replication,
    stats: Stats,
    trace: blake3::Hasher,
    events: u64,
    /// Stop at the first invariant violation.
    stop_on_violation: bool,
    /// The last events handled, when replaying.
    recorded: Option<(usize, VecDeque<String>)>,
}

impl World {
    /// A world for `sc` run with `seed`, every node up and holding what placement gives it;
    /// an error if the scenario does not pass [`Scenario::check`].
    pub fn new(sc: Scenario, seed: u64) -> Result<Self, ScenarioError> {
        sc.check()?;
        let identities = match &sc.identities {
            Some(i) => Some(i.bytes().map_err(|problem| ScenarioError::Invalid {
                field: "identities",
                problem,
            })?),
            None => None,
        };
        let mut rng = Rng::new(seed);
        let mut data_rng = rng.fork();
        let data = Dataset::new(
            &mut data_rng,
            sc.data.points,
            sc.data.dims,
            sc.data.clusters,
            sc.shards,
        );
        let end = Millis(sc.duration_s * 1_000);
        let mut world = Self {
            now: Millis(0),
            end,
            queue: BTreeMap::new(),
            order: 0,
            current: 0,
            data,
            nodes: Vec::new(),
            providers: vec![BTreeMap::new(); sc.shards as usize],
            sides: None,
            searches: HashMap::new(),
            next_search: 0,
            trees: Trees::new(&sc),
            serving: Serving::new(&sc, identities),
            replication: Default::default(),
            stats: Stats::default(),
            trace: blake3::Hasher::new(),
            events: 0,
            stop_on_violation: true,
            recorded: None,
            rng,
            sc,
        };
        world.populate();
        Ok(world)
    }

    /// Merges shard roots with `f` instead of the node's `tree::merge` (for tests that break
    /// a component on purpose).
    pub fn replace_merge(&mut self, f: MergeFn) {
        self.trees.replace_merge(f);
    }

    /// Keep going after a violation, counting them all.
    pub fn keep_going(&mut self) {
        self.stop_on_violation = false;
    }

    /// Keeps the last `n` events handled, to print with a replay.
    pub fn record_events(&mut self, n: usize) {
        self.recorded = Some((n, VecDeque::with_capacity(n)));
    }

    /// Runs to the end of the scenario (or the first violation) and returns what it measured.
    pub fn run(self) -> Stats {
        self.run_recorded().0
    }

    /// [`World::run`], also returning the events kept by [`World::record_events`].
    pub fn run_recorded(mut self) -> (Stats, Vec<String>) {
        while let Some(((at, order), event)) = self.queue.pop_first() {
            if at > self.end {
                break;
            }
            self.now = at;
            self.current = order;
            self.events += 1;
            self.trace.update(&at.0.to_le_bytes());
            event.trace(&mut self.trace);
            if let Some((n, log)) = &mut self.recorded {
                if log.len() == *n {
                    log.pop_front();
                }
                log.push_back(format!(
                    "{:>12.3} s  event {order:>9}  {event:?}",
                    at.0 as f64 / 1e3
                ));
            }
            self.handle(event);
            if self.stop_on_violation && !self.stats.violations.is_empty() {
                break;
            }
        }
        let log = self
            .recorded
            .take()
            .map(|(_, log)| log.into_iter().collect())
            .unwrap_or_default();
        (self.finish(), log)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::SearchStart => self.search_start(),
            Event::SearchArrive {
                search,
                request,
                to,
                shards,
            } => self.search_arrive(search, request, to, shards),
            Event::SearchReply { search, input } => self.search_reply(search, input),
            Event::SearchPoll { search } => self.search_poll(search),
            Event::Crash => self.crash(),
            Event::Kill { node } => self.kill(node),
            Event::Restart { node } => self.restart(node),
            Event::Announce { node, life } => self.announce(node, life),
            Event::FetchStart {
                node,
                life,
                shard,
                root,
            } => self.fetch_start(node, life, shard, root),
            Event::WantArrive {
                node,
                life,
                to,
                cid,
            } => self.want_arrive(node, life, to, cid),
            Event::WantReply {
                node,
                life,
                from,
                cid,
                reply,
            } => self.want_reply(node, life, from, cid, reply),
            Event::WantPoll { node, life } => self.want_poll(node, life),
            Event::Report {
                to,
                from,
                shard,
                root,
            } => self.report(to, from, shard, root),
            Event::RepairPoll { node, life } => self.repair_poll(node, life),
            Event::Commit => self.commit(),
            Event::Head { node, writer, seq } => self.head(node, writer, seq),
            Event::CaughtUp {
                node,
                life,
                writer,
                seq,
            } => self.caught_up(node, life, writer, seq),
            Event::Reconcile { node, peer } => self.reconcile(node, peer),
            Event::Split { index } => self.split(index),
            Event::Heal { .. } => self.heal(),
            Event::Sample => self.sample(),
        }
    }

    /// Schedules `event` at `at` (never before now).
    fn schedule(&mut self, at: Millis, event: Event) {
        self.order += 1;
        self.queue.insert((at.max(self.now), self.order), event);
    }

    /// Schedules `event` `ms` milliseconds from now.
    fn after(&mut self, ms: f64, event: Event) {
        let at = Millis(self.now.0 + ms.max(0.0).round() as u64);
        self.schedule(at, event);
    }

    /// One message's one-way latency, milliseconds.
    fn latency(&mut self) -> f64 {
        self.rng.log_normal(
            self.sc.links.latency_median_ms,
            self.sc.links.latency_p99_ms,
        )
    }

    /// Whether `a` can reach `b` now (both alive, same side of any partition).
    fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        let (Some(na), Some(nb)) = (self.nodes.get(a as usize), self.nodes.get(b as usize)) else {
            return false;
        };
        na.alive && nb.alive && self.same_side(a, b)
    }

    fn same_side(&self, a: NodeId, b: NodeId) -> bool {
        match &self.sides {
            None => true,
            // Nodes that joined during the partition are on the second side.
            Some(sides) => {
                let side = |n: NodeId| sides.get(n as usize).copied().unwrap_or(false);
                side(a) == side(b)
            }
        }
    }

    /// The live nodes, in order.
    fn live(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|n| self.nodes[*n as usize].alive)
            .collect()
    }

    /// Records a broken invariant.
    fn violate(&mut self, invariant: &'static str) {
        self.stats.violations.push(Violation {
            at: self.now,
            invariant,
            event: self.current,
        });
    }

    fn finish(mut self) -> Stats {
        self.stats.events = self.events;
        self.stats.writers = self.trees.writers();
        self.stats.simulated_ms = self.now.0.min(self.end.0);
        self.stats.trace = self.trace.finalize().to_hex().to_string();
        self.stats.nodes_end = self.live().len() as u32;
        self.stats.holders = (0..self.sc.shards)
            .map(|shard| {
                self.live()
                    .into_iter()
                    .filter(|n| self.nodes[*n as usize].holds.contains_key(&shard))
                    .collect()
            })
            .collect();
        self.stats
    }
}
