//! Fetching shards block by block, by the node's own fetch scheduler: each fetch walks its
//! shard's DAG with `cluster::walk::DagWalk`, and each node's `cluster::wants::WantLedger`
//! decides whom every block is asked of, when it is asked again and when it gives up — the
//! two cores `net::bitswap` drives in the daemon. The world carries their messages over links
//! and answers for the peers.
//!
//! A shard is a real tree (see `trees`). A fetch of a shard at the root the node's merges
//! give walks that root when a provider of the shard holds it (a holder that took the same
//! heads holds the same root). Otherwise it walks the trees that root merges and the node
//! lacks: each writer's tree of the shard as the node's heads name it (one tree when there is
//! one writer), but for the writers whose trees the root held already merges. Blocks they
//! share are walked once, and the node merges the trees into the root it holds itself, as
//! the daemon merges the trees of the versions it takes: the merge's own new nodes are never
//! fetched. A walk reads each node's links from the block itself. What the node has already
//! (the tree of the root it holds, the blocks an unfinished fetch of the shard got) it reads
//! locally, as the daemon reads its store; it fetches only the rest. Older roots' blocks are
//! collected; a writer has every block of every root it wrote.
//!
//! A fetch's session is the shard's provider records (in node order; dialling one that
//! cannot be reached takes the dial timeout, one after the other, as the daemon dials its
//! holders), then the writers when they can be reached. The ledger asks one peer at a time
//! and widens as peers say no or stay silent; a copy of a block that arrives after another
//! (or after its fetch was given up) is counted as duplicate bytes. A block crosses the
//! fetcher's downlink at the link bandwidth, one block after another; a want, a DONT_HAVE and
//! a cancel are one latency. A cancel does not stop a block already sent. A withholding node
//! answers DONT_HAVE for shards it announced; a forging one sends a block that hashes to
//! something else, which the ledger refuses and bans it for after its grace.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cid::Cid;
use ipvec_node::cluster::{
    walk::DagWalk,
    wants::{Action as WantAction, Input as WantInput, WantLedger},
    Millis,
};
use ipvec_protocol::cid::{block_cid, RAW};

use super::{
    serving::Input,
    trees::{writer_node, writer_of},
    Event, Fault, Held, NodeId, World,
};

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
    root: Cid,
    /// The heads that root merges.
    seen: Vec<u64>,
    walk: DagWalk,
    peers: Vec<NodeId>,
    /// Whether the node held an older root when it started (a catch-up).
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
    /// Starts fetching `shard` at `root` onto `node`, after dialling the shard's providers (a
    /// fetch of the same shard already running is given up for it). The root is the one the
    /// node's own merges give (its repair core fetches the root it was told of).
    pub(super) fn fetch(&mut self, node: NodeId, shard: u32, root: Cid) {
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
            peers.extend((0..self.trees.writers()).map(writer_node));
        }
        let n = &self.nodes[node as usize];
        let seen = n.seen.clone();
        // A holder that took the same heads holds the same root (the merge is a CRDT): the
        // node copies it when a provider reports it. Otherwise it merges the writers' trees
        // of the shard into what it holds itself.
        let copy = peers.iter().any(|p| {
            self.nodes
                .get(*p as usize)
                .and_then(|n| n.holds.get(&shard))
                .is_some_and(|h| h.root == root)
        });
        let walk = if copy {
            DagWalk::new(root)
        } else {
            let held = n.holds.get(&shard).map(|h| h.seen.as_slice());
            DagWalk::of_roots(self.trees.inputs(shard, &seen, held))
        };
        let fetch = Fetch {
            root,
            walk,
            seen,
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
            root,
        };
        self.after(dials, start);
    }

    pub(super) fn fetch_start(&mut self, node: NodeId, life: u32, shard: u32, root: Cid) {
        if !self.nodes[node as usize].alive || self.serving.life(node) != life {
            return;
        }
        let Some(fetch) = self.serving.fetching(node).fetches.get_mut(&shard) else {
            return;
        };
        if fetch.root != root || fetch.started {
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
            let n = &self.nodes[node as usize];
            let loose = n.loose.get(&shard).is_some_and(|l| l.contains(&cid));
            if loose || self.trees.held(&cid, n.holds.values().map(|h| h.root)) {
                let links = self.trees.links(&cid);
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
        let reaches = if writer_of(peer, self.trees.writers()).is_some() {
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
        let reply = if let Some(w) = writer_of(to, self.trees.writers()) {
            if !self.writer_reaches(node) {
                Reply::Unreachable
            } else if self.trees.writer_has(w, &cid) {
                Reply::Block
            } else {
                Reply::DontHave
            }
        } else if !self.reachable(node, to) {
            Reply::Unreachable
        } else {
            let peer = &self.nodes[to as usize];
            match peer.fault {
                Fault::Withholding => Reply::DontHave,
                Fault::Forging => Reply::Wrong,
                Fault::Honest if self.trees.held(&cid, peer.holds.values().map(|h| h.root)) => {
                    Reply::Block
                }
                Fault::Honest => Reply::DontHave,
            }
        };
        let mut at = self.now.0 as f64 + self.latency();
        if matches!(reply, Reply::Block | Reply::Wrong) && self.nodes[node as usize].alive {
            // Blocks cross the fetcher's downlink one after another.
            let bytes = self.trees.bytes(&cid);
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
                let mut junk = from.to_le_bytes().to_vec();
                junk.extend_from_slice(&self.current.to_le_bytes());
                let forged = block_cid(RAW, &junk);
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
            self.stats.bytes_duplicate += self.trees.bytes(&cid);
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
        let bytes = self.trees.bytes(&cid);
        let links = self.trees.links(&cid);
        let Some(fetch) = self.serving.fetching(node).fetches.get_mut(&shard) else {
            return;
        };
        fetch.walk.got(links, Some(bytes));
        self.nodes[node as usize]
            .loose
            .entry(shard)
            .or_default()
            .insert(cid);
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

    /// `node` has every block of its fetch of `shard`: it holds the shard at that root.
    fn fetch_done(&mut self, node: NodeId, shard: u32) {
        let Some(fetch) = self.serving.fetching(node).fetches.remove(&shard) else {
            return;
        };
        self.stats.fetches += 1;
        self.nodes[node as usize].loose.remove(&shard);
        let now = self.now;
        let root = fetch.root;
        let held = self.nodes[node as usize]
            .holds
            .entry(shard)
            .or_insert(Held {
                root,
                seen: Vec::new(),
                since: now,
            });
        held.root = root;
        held.seen = fetch.seen;
        self.feed(node, Input::Fetched { shard, root });
    }
}
