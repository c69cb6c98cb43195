//! Fetching shards block by block, by the node's own fetch scheduler: each fetch walks its
//! shard's DAG with `cluster::walk::DagWalk`, and each node's `cluster::wants::WantLedger`
//! decides whom every block is asked of, when it is asked again and when it gives up — the
//! two cores `net::bitswap` drives in the daemon. The world carries their messages over links
//! and answers for the peers.
//!
//! The DAG of a shard at version `v` is a root block linking to `ceil(shard_bytes /
//! block_bytes)` leaves. Each commit to a shard changes the next `ceil(delta_bytes /
//! block_bytes)` leaves, round the shard, so a leaf's content is named by the version that
//! last changed it: a holder of an older version already has the leaves that did not change,
//! and its walk finds them locally (as the daemon's finds them in its store) and fetches only
//! the others. A node has the blocks of the version of each shard it holds (older ones are
//! collected); the writer has every version's.
//!
//! A fetch's session is the shard's provider records (in node order; dialling one that
//! cannot be reached takes the dial timeout, one after the other, as the daemon dials its
//! holders), then the writer when it can be reached. The ledger asks every session peer with
//! a free slot, so several may send the same block: the later copies are counted as
//! duplicate bytes. A block crosses the fetcher's downlink at the link bandwidth, one block
//! after another; a want, a DONT_HAVE and a cancel are one latency. A cancel does not stop a
//! block already sent. A withholding node answers DONT_HAVE for shards it announced; a
//! forging one sends a block that hashes to something else, which the ledger refuses and
//! bans it for after its grace.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cid::Cid;
use ipvec_node::cluster::{
    walk::DagWalk,
    wants::{Action as WantAction, Input as WantInput, WantLedger},
    Millis,
};
use ipvec_protocol::cid::{block_cid, RAW};

use super::{churn::WRITER, serving::Input, Event, Fault, Held, NodeId, World};
use crate::scenario::Scenario;

/// What a block of the simulated DAGs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// The root of `shard` at `version`.
    Root { shard: u32, version: u64 },
    /// Leaf `leaf` of `shard` as the commit `since` left it (0: as it started).
    Leaf { shard: u32, leaf: u32, since: u64 },
}

/// The shards' DAGs: every block's CID and what it is.
#[derive(Debug)]
pub(super) struct Blocks {
    /// Leaves per shard.
    leaves: u32,
    /// Leaves one commit changes.
    per_commit: u32,
    leaf_bytes: u64,
    root_bytes: u64,
    /// Every block named so far.
    known: HashMap<Cid, Block>,
}

impl Blocks {
    pub(super) fn new(sc: &Scenario) -> Self {
        let block = sc.repair.block_bytes.max(1);
        let leaves = sc
            .repair
            .shard_bytes
            .div_ceil(block)
            .clamp(1, u64::from(u32::MAX)) as u32;
        let per_commit = sc
            .writes
            .delta_bytes
            .div_ceil(block)
            .clamp(1, u64::from(leaves)) as u32;
        Self {
            leaves,
            per_commit,
            leaf_bytes: sc.repair.shard_bytes.div_ceil(u64::from(leaves)),
            // A CID and its framing per link.
            root_bytes: 64 + 40 * u64::from(leaves),
            known: HashMap::new(),
        }
    }

    fn cid(&mut self, block: Block) -> Cid {
        let cid = Self::name(block);
        self.known.insert(cid, block);
        cid
    }

    /// The CID of `block`, not remembered (a forged block is asked for by nobody).
    fn name(block: Block) -> Cid {
        let (tag, shard, leaf, version) = match block {
            Block::Root { shard, version } => (0u8, shard, 0, version),
            Block::Leaf { shard, leaf, since } => (1u8, shard, leaf, since),
        };
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&shard.to_le_bytes());
        bytes.extend_from_slice(&leaf.to_le_bytes());
        bytes.extend_from_slice(&version.to_le_bytes());
        block_cid(RAW, &bytes)
    }

    /// The root of `shard` at `version`.
    fn root(&mut self, shard: u32, version: u64) -> Cid {
        self.cid(Block::Root { shard, version })
    }

    /// The newest commit no later than `version` that changed `leaf` (0: none did). Commit
    /// `w` (from 1) changes the `per_commit` leaves from `(w - 1) × per_commit`, round the
    /// shard, so every leaf changes within `leaves / per_commit` commits.
    fn since(&self, leaf: u32, version: u64) -> u64 {
        let (n, k) = (u64::from(self.leaves), u64::from(self.per_commit));
        let rounds = n.div_ceil(k) + 1;
        (version.saturating_sub(rounds)..version)
            .rev()
            .map(|w| w + 1)
            .find(|w| (u64::from(leaf) + n - ((w - 1) * k) % n) % n < k)
            .unwrap_or(0)
    }

    /// The links of block `cid` (a root's leaves; a leaf has none).
    fn links(&mut self, cid: &Cid) -> Vec<Cid> {
        match self.known.get(cid) {
            Some(Block::Root { shard, version }) => {
                let (shard, version) = (*shard, *version);
                (0..self.leaves)
                    .map(|leaf| {
                        let since = self.since(leaf, version);
                        self.cid(Block::Leaf { shard, leaf, since })
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    fn bytes(&self, cid: &Cid) -> u64 {
        match self.known.get(cid) {
            Some(Block::Root { .. }) => self.root_bytes,
            _ => self.leaf_bytes,
        }
    }

    /// Whether a node holding the shards `holds` has block `cid`.
    fn held(&self, cid: &Cid, holds: &BTreeMap<u32, Held>) -> bool {
        match self.known.get(cid) {
            Some(Block::Root { shard, version }) => {
                holds.get(shard).is_some_and(|h| h.version == *version)
            }
            Some(Block::Leaf { shard, leaf, since }) => holds
                .get(shard)
                .is_some_and(|h| self.since(*leaf, h.version) == *since),
            None => false,
        }
    }
}

/// One node's fetches and its want ledger (in memory: new at each start).
#[derive(Debug, Default)]
pub(super) struct Fetching {
    ledger: WantLedger<NodeId>,
    /// By shard.
    fetches: BTreeMap<u32, Fetch>,
    /// The shard whose fetch waits for each block wanted.
    waiting: HashMap<Cid, u32>,
    /// When its ledger wants polling, as scheduled.
    poll_at: Option<Millis>,
    /// When its downlink is free.
    down_free: Millis,
    /// Peers the ledger banned.
    banned: BTreeSet<NodeId>,
}

#[derive(Debug)]
struct Fetch {
    version: u64,
    walk: DagWalk,
    peers: Vec<NodeId>,
    /// Whether the node held an older version when it started (a catch-up).
    catch_up: bool,
    /// Whether the dials are done and the walk runs.
    started: bool,
}

/// What a peer answered a want with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// The block.
    Block,
    /// A block that hashes to another CID than the one asked for.
    Wrong,
    DontHave,
    /// The peer could not be reached.
    Unreachable,
}

impl Reply {
    pub(super) fn code(self) -> u64 {
        self as u64
    }
}

impl World {
    /// Starts fetching version `version` of `shard` onto `node`, after dialling the shard's
    /// providers (a fetch of the same shard already running is given up for it).
    pub(super) fn fetch(&mut self, node: NodeId, shard: u32, version: u64) {
        self.abandon_fetch(node, shard);
        let now = self.now;
        let banned = self.serving.fetching(node).banned.clone();
        let mut peers: Vec<NodeId> = self.providers[shard as usize]
            .iter()
            .filter(|(p, expires)| **p != node && **expires > now && !banned.contains(p))
            .map(|(p, _)| *p)
            .collect();
        let unreachable = peers.iter().filter(|p| !self.reachable(node, **p)).count();
        peers.retain(|p| self.reachable(node, *p));
        if self.writer_reaches(node) {
            peers.push(WRITER);
        }
        let fetch = Fetch {
            version,
            walk: DagWalk::new(self.blocks.root(shard, version)),
            peers,
            catch_up: self.nodes[node as usize].holds.contains_key(&shard),
            started: false,
        };
        self.serving.fetching(node).fetches.insert(shard, fetch);
        let life = self.serving.life(node);
        let dials = unreachable as f64 * self.sc.links.dial_timeout_ms as f64;
        let start = Event::FetchStart {
            node,
            life,
            shard,
            version,
        };
        self.after(dials, start);
    }

    pub(super) fn fetch_start(&mut self, node: NodeId, life: u32, shard: u32, version: u64) {
        if !self.nodes[node as usize].alive || self.serving.life(node) != life {
            return;
        }
        let Some(fetch) = self.serving.fetching(node).fetches.get_mut(&shard) else {
            return;
        };
        if fetch.version != version || fetch.started {
            return;
        }
        fetch.started = true;
        self.pump(node, shard);
    }

    /// Hands out the blocks `shard`'s walk has for `node` next: those the node has are got at
    /// once, the others wanted. Ends the fetch when its walk is done.
    fn pump(&mut self, node: NodeId, shard: u32) {
        loop {
            let f = self.serving.fetching(node);
            let Some(fetch) = f.fetches.get_mut(&shard) else {
                return;
            };
            let Some(cid) = fetch.walk.next_block() else {
                break;
            };
            if self.blocks.held(&cid, &self.nodes[node as usize].holds) {
                let links = self.blocks.links(&cid);
                if let Some(fetch) = self.serving.fetching(node).fetches.get_mut(&shard) {
                    fetch.walk.got(links, None);
                }
                continue;
            }
            let peers = fetch.peers.clone();
            f.waiting.insert(cid, shard);
            let actions = f.ledger.handle(WantInput::Want { cid, peers }, self.now);
            self.carry(node, actions);
        }
        let done = self
            .serving
            .fetching(node)
            .fetches
            .get(&shard)
            .is_some_and(|f| f.walk.is_done());
        if done {
            self.fetch_done(node, shard);
        }
    }

    /// Carries out what `node`'s ledger answered.
    fn carry(&mut self, node: NodeId, actions: Vec<WantAction<NodeId>>) {
        for action in actions {
            match action {
                WantAction::Want { peer, cid } => self.send_want(node, peer, cid),
                WantAction::Deliver { cid } => self.deliver(node, cid),
                WantAction::Fail(e) => {
                    if let Some(shard) = self.serving.fetching(node).waiting.remove(&e.cid()) {
                        self.fetch_failed(node, shard);
                    }
                }
                WantAction::Ban { peer, .. } => {
                    self.stats.bans += 1;
                    let f = self.serving.fetching(node);
                    f.banned.insert(peer);
                    for fetch in f.fetches.values_mut() {
                        fetch.peers.retain(|p| *p != peer);
                    }
                }
                WantAction::Refuse { .. } => self.stats.blocks_refused += 1,
                // A cancel does not stop a block already sent; a duplicate's bytes are
                // counted where it arrives.
                WantAction::Cancel { .. } | WantAction::Duplicate { .. } => {}
            }
        }
        let f = self.serving.fetching(node);
        if let Some(t) = f.ledger.next_deadline() {
            if f.poll_at.is_none_or(|p| t < p) {
                f.poll_at = Some(t);
                let life = self.serving.life(node);
                self.schedule(t, Event::WantPoll { node, life });
            }
        }
    }

    fn send_want(&mut self, node: NodeId, peer: NodeId, cid: Cid) {
        self.stats.wants += 1;
        let life = self.serving.life(node);
        let reaches = if peer == WRITER {
            self.writer_reaches(node)
        } else {
            self.reachable(node, peer)
        };
        if reaches {
            let ms = self.latency();
            let to = peer;
            self.after(
                ms,
                Event::WantArrive {
                    node,
                    life,
                    to,
                    cid,
                },
            );
        } else {
            let ms = self.sc.links.dial_timeout_ms as f64;
            let reply = Reply::Unreachable;
            let from = peer;
            self.after(
                ms,
                Event::WantReply {
                    node,
                    life,
                    from,
                    cid,
                    reply,
                },
            );
        }
    }

    /// A want of `node` for `cid` reaches `to`, which answers it.
    pub(super) fn want_arrive(&mut self, node: NodeId, life: u32, to: NodeId, cid: Cid) {
        let reply = if to == WRITER {
            if self.writer_reaches(node) {
                Reply::Block
            } else {
                Reply::Unreachable
            }
        } else if !self.reachable(node, to) {
            Reply::Unreachable
        } else {
            let peer = &self.nodes[to as usize];
            match peer.fault {
                Fault::Withholding => Reply::DontHave,
                Fault::Forging => Reply::Wrong,
                Fault::Honest if self.blocks.held(&cid, &peer.holds) => Reply::Block,
                Fault::Honest => Reply::DontHave,
            }
        };
        let mut at = self.now.0 as f64 + self.latency();
        if matches!(reply, Reply::Block | Reply::Wrong) && self.nodes[node as usize].alive {
            // Blocks cross the fetcher's downlink one after another.
            let bytes = self.blocks.bytes(&cid);
            let f = self.serving.fetching(node);
            at = at.max(f.down_free.0 as f64) + bytes as f64 / (self.sc.links.bandwidth_mb_s * 1e3);
            f.down_free = Millis(at.round() as u64);
            self.stats.bytes_received += bytes;
        }
        let from = to;
        let event = Event::WantReply {
            node,
            life,
            from,
            cid,
            reply,
        };
        self.schedule(Millis(at.round() as u64), event);
    }

    /// `from`'s answer to `node`'s want for `cid` arrives.
    pub(super) fn want_reply(
        &mut self,
        node: NodeId,
        life: u32,
        from: NodeId,
        cid: Cid,
        reply: Reply,
    ) {
        if !self.nodes[node as usize].alive || self.serving.life(node) != life {
            return;
        }
        let input = match reply {
            Reply::Block => WantInput::Block {
                from,
                cid: Some(cid),
            },
            Reply::Wrong => {
                let forged = Blocks::name(Block::Leaf {
                    shard: u32::MAX,
                    leaf: from,
                    since: self.current,
                });
                WantInput::Block {
                    from,
                    cid: Some(forged),
                }
            }
            Reply::DontHave => WantInput::DontHave { from, cid },
            Reply::Unreachable => WantInput::Unreachable { to: from, cid },
        };
        let actions = self.serving.fetching(node).ledger.handle(input, self.now);
        if actions
            .iter()
            .any(|a| matches!(a, WantAction::Duplicate { .. }))
        {
            self.stats.bytes_duplicate += self.blocks.bytes(&cid);
        }
        self.carry(node, actions);
    }

    pub(super) fn want_poll(&mut self, node: NodeId, life: u32) {
        if !self.nodes[node as usize].alive || self.serving.life(node) != life {
            return;
        }
        let f = self.serving.fetching(node);
        if f.poll_at == Some(self.now) {
            f.poll_at = None;
        }
        let actions = if f.ledger.next_deadline().is_some_and(|t| t <= self.now) {
            f.ledger.poll(self.now)
        } else {
            Vec::new()
        };
        self.carry(node, actions);
    }

    /// A block `node` wanted arrived: its walk goes on.
    fn deliver(&mut self, node: NodeId, cid: Cid) {
        let Some(shard) = self.serving.fetching(node).waiting.remove(&cid) else {
            return;
        };
        let bytes = self.blocks.bytes(&cid);
        let links = self.blocks.links(&cid);
        let Some(fetch) = self.serving.fetching(node).fetches.get_mut(&shard) else {
            return;
        };
        fetch.walk.got(links, Some(bytes));
        if fetch.catch_up {
            self.stats.bytes_catch_up += bytes;
        } else {
            self.stats.bytes_moved += bytes;
        }
        self.pump(node, shard);
    }

    /// Gives up `node`'s fetch of `shard`, if one runs: its wants are abandoned.
    fn abandon_fetch(&mut self, node: NodeId, shard: u32) -> bool {
        let f = self.serving.fetching(node);
        if f.fetches.remove(&shard).is_none() {
            return false;
        }
        let mut mine: Vec<Cid> = f
            .waiting
            .iter()
            .filter(|(_, s)| **s == shard)
            .map(|(cid, _)| *cid)
            .collect();
        mine.sort_unstable();
        for cid in mine {
            let f = self.serving.fetching(node);
            f.waiting.remove(&cid);
            let actions = f.ledger.handle(WantInput::Abandon { cid }, self.now);
            self.carry(node, actions);
        }
        true
    }

    fn fetch_failed(&mut self, node: NodeId, shard: u32) {
        if self.abandon_fetch(node, shard) {
            self.stats.fetch_failures += 1;
            self.feed(node, Input::FetchFailed { shard });
        }
    }

    /// `node` has every block of its fetch of `shard`: it holds the shard at that version.
    fn fetch_done(&mut self, node: NodeId, shard: u32) {
        let Some(fetch) = self.serving.fetching(node).fetches.remove(&shard) else {
            return;
        };
        self.stats.fetches += 1;
        let now = self.now;
        let held = self.nodes[node as usize]
            .holds
            .entry(shard)
            .or_insert(Held {
                version: fetch.version,
                since: now,
            });
        held.version = held.version.max(fetch.version);
        let root = held.version;
        self.feed(node, Input::Fetched { shard, root });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(shard_bytes: u64, block_bytes: u64, delta_bytes: u64) -> Blocks {
        let mut sc = Scenario::default();
        sc.repair.shard_bytes = shard_bytes;
        sc.repair.block_bytes = block_bytes;
        sc.writes.delta_bytes = delta_bytes;
        Blocks::new(&sc)
    }

    /// The version that last changed each leaf, replayed commit by commit.
    fn replayed(b: &Blocks, version: u64) -> Vec<u64> {
        let (n, k) = (b.leaves as u64, b.per_commit as u64);
        let mut since = vec![0; b.leaves as usize];
        for w in 1..=version {
            for j in 0..k {
                since[(((w - 1) * k + j) % n) as usize] = w;
            }
        }
        since
    }

    #[test]
    fn a_leaf_is_named_by_the_last_commit_that_changed_it() {
        for (shard, block, delta) in [
            (8_000_000, 250_000, 200_000),
            (1_000, 100, 350),
            (10, 1, 10),
        ] {
            let b = blocks(shard, block, delta);
            for version in 0..40 {
                let expect = replayed(&b, version);
                let got: Vec<u64> = (0..b.leaves).map(|l| b.since(l, version)).collect();
                assert_eq!(got, expect, "{shard}/{block}/{delta} at version {version}");
            }
        }
    }

    #[test]
    fn a_holder_has_its_versions_blocks_and_only_the_changed_leaves_are_new() {
        let mut b = blocks(8_000_000, 250_000, 500_000);
        assert_eq!((b.leaves, b.per_commit), (32, 2));
        let holds = |version| {
            BTreeMap::from([(
                3,
                Held {
                    version,
                    since: Millis(0),
                },
            )])
        };
        let root = b.root(3, 5);
        let leaves = b.links(&root);
        assert_eq!(leaves.len(), 32);
        assert!(b.held(&root, &holds(5)) && !b.held(&root, &holds(4)));
        assert!(leaves.iter().all(|l| b.held(l, &holds(5))));
        let old: Vec<&Cid> = leaves.iter().filter(|l| b.held(l, &holds(4))).collect();
        assert_eq!(old.len(), 30, "commit 5 changed 2 of 32 leaves");
        assert!(leaves.iter().all(|l| !b.held(l, &BTreeMap::new())));
        // Another shard's blocks are other blocks.
        let other = b.root(4, 5);
        assert!(b.links(&other).iter().all(|l| !leaves.contains(l)));
    }
}
