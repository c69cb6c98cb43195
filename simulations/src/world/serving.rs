//! Membership, placement and repair, by the node's own cores: `cluster::members` keeps the
//! announcements, `cluster::placement` places shards, and each node's
//! `cluster::rebalance::Rebalancer` decides what it fetches, announces and drops.
//!
//! The model of membership: announcements go to one directory (as signed records in the
//! DHT would), kept by a [`Membership`]; each node reads it when it announces itself, every
//! `membership.announce_s` at its own phase, so nodes see changes at different times, as
//! they would. Placement is a pure function of the membership read, computed once per
//! membership generation and shared by every node that read that generation (the answer
//! each would compute; the periodic check recomputes it for a sampled node to hold that).
//!
//! The fetches the repair core asks for run block by block (see `fetch`). A holder's
//! announcement puts its provider record in the DHT and reaches, after a link's latency,
//! every node placement names for the shard and every node holding it; so does a drop.

use std::{borrow::Cow, sync::Arc, time::Duration};

use ipvec_node::cluster::{
    members::{Announcement, Membership},
    placement::{place, Identity, Member, Placement},
    rebalance::{self, Config, Rebalancer},
    Millis,
};

use cid::Cid;

use super::{fetch::Fetching, Event, Held, NodeId, World};
use crate::scenario::Scenario;

/// The collection's id bytes placement hashes, unless the scenario gives a real one.
const COLLECTION: &[u8] = b"ipvec-simulated-collection";

/// A shard root: its tree's CID.
type Root = Cid;
pub(super) type Input = rebalance::Input<NodeId, Root>;
type Action = rebalance::Action<NodeId, Root>;

/// How placement is computed: `cluster::placement::place`, unless a test swaps in a broken
/// one to prove the checks catch it.
pub type PlaceFn = fn(&[u8], u32, &[Member<Named>], usize) -> Placement<Named>;

/// A node as placement sees it: its number, and the bytes placement hashes for it (the
/// number's, or the peer id the scenario gives it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub node: NodeId,
    identity: Arc<[u8]>,
}

impl Identity for Named {
    fn identity(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.identity)
    }
}

/// A membership generation and its placement.
#[derive(Debug, Clone)]
struct Placed {
    generation: u64,
    members: Arc<[Member<NodeId>]>,
    placement: Arc<Placement<NodeId>>,
}

/// Every node's serving state.
#[derive(Debug)]
pub(super) struct Serving {
    config: Config,
    place: PlaceFn,
    /// The collection's id bytes, and the starting nodes' identities when the scenario gives
    /// them.
    collection: Vec<u8>,
    peers: Vec<Arc<[u8]>>,
    /// The membership directory: one, or one per side during a partition (index 1 is the
    /// second side's).
    members: Vec<Membership<NodeId>>,
    /// Per directory: the members and placement of the newest generation computed.
    placed: Vec<Option<Placed>>,
    /// Per directory: no expiry is due before this (polling a directory walks every peer,
    /// so it is polled only when one may be).
    due: Vec<Millis>,
    /// Per node, by number.
    nodes: Vec<NodeServing>,
}

#[derive(Debug)]
struct NodeServing {
    /// The membership directory and generation it last read.
    generation: Option<(usize, u64)>,
    rebalancer: Rebalancer<NodeId, Root>,
    /// When its repair core wants polling, as scheduled.
    poll_at: Option<Millis>,
    /// Bumped at each start, so that the periodic events of an earlier life stop.
    life: u32,
    /// Its fetches and want ledger.
    fetching: Fetching,
}

impl Serving {
    /// Serving for `sc`, placing by `identities` (the collection's id bytes and the
    /// starting nodes') when the scenario gives them.
    pub(super) fn new(sc: &Scenario, identities: Option<(Vec<u8>, Vec<Vec<u8>>)>) -> Self {
        let (collection, peers) = match identities {
            Some((collection, peers)) => (collection, peers.into_iter().map(Into::into).collect()),
            None => (COLLECTION.to_vec(), Vec::new()),
        };
        Self {
            config: sc.rebalance_config(),
            place,
            collection,
            peers,
            members: vec![Membership::default()],
            placed: vec![None],
            due: vec![Millis(0)],
            nodes: Vec::new(),
        }
    }

    /// Members in the first (or only) directory now.
    pub(super) fn live_members(&self, now: Millis) -> u32 {
        self.members[0].len(now) as u32
    }

    /// Places the collection's shards over `members` with `f`, under the scenario's
    /// identities.
    fn place_with(
        &self,
        f: PlaceFn,
        sc: &Scenario,
        members: &[Member<NodeId>],
    ) -> Placement<NodeId> {
        let named: Vec<Member<Named>> = members
            .iter()
            .map(|m| Member {
                peer: Named {
                    node: m.peer,
                    identity: match self.peers.get(m.peer as usize) {
                        Some(id) => id.clone(),
                        None => m.peer.to_be_bytes().to_vec().into(),
                    },
                },
                capacity: m.capacity,
            })
            .collect();
        f(&self.collection, sc.shards, &named, sc.replication as usize).map(|n| n.node)
    }

    /// `node`'s fetches and want ledger.
    pub(super) fn fetching(&mut self, node: NodeId) -> &mut Fetching {
        &mut self.nodes[node as usize].fetching
    }

    /// The life of `node` (see [`NodeServing::life`]).
    pub(super) fn life(&self, node: NodeId) -> u32 {
        self.nodes.get(node as usize).map_or(0, |n| n.life)
    }
}

impl World {
    /// Computes the placement every node acts on with `f` instead of the node's own (for
    /// tests that break a component on purpose).
    pub fn replace_placement(&mut self, f: PlaceFn) {
        self.serving.place = f;
        self.serving.placed.iter_mut().for_each(|p| *p = None);
    }

    fn announcement(&self, node: NodeId) -> Announcement<NodeId> {
        self.announcement_of(node, 1)
    }

    fn announcement_of(&self, peer: NodeId, capacity: u64) -> Announcement<NodeId> {
        Announcement {
            peer,
            capacity,
            issued: self.now,
            ttl: Duration::from_secs(self.sc.membership.ttl_s),
        }
    }

    /// The start: every node announced, and holding what placement gives it at genesis.
    pub(super) fn serving_start(&mut self) {
        for node in 0..self.nodes.len() as NodeId {
            let a = self.announcement(node);
            self.observe(0, a);
        }
        let placement = self.placement_now(0).placement;
        for node in 0..self.nodes.len() as NodeId {
            for shard in placement.shards_of(&node) {
                let held = Held {
                    root: self.trees.genesis()[shard as usize],
                    seen: vec![0; self.trees.writers() as usize],
                    since: self.now,
                };
                self.nodes[node as usize].holds.insert(shard, held);
            }
            self.serving_start_node(node);
        }
    }

    /// `node` starts (at the beginning, new, or again with its disk): a new repair core that
    /// learns what is on its disk, the heads it knows, and (at once) the membership.
    fn serving_start_node(&mut self, node: NodeId) {
        let config = self.serving.config.clone();
        // `Scenario::check` validated this config; `new` only validates it again.
        let Ok(rebalancer) = Rebalancer::new(
            node,
            self.serving.collection.clone(),
            self.sc.shards,
            config,
        ) else {
            unreachable!("Scenario::check validates the repair settings")
        };
        let life = self.serving.life(node) + 1;
        let state = NodeServing {
            generation: None,
            rebalancer,
            poll_at: None,
            life,
            fetching: Fetching::default(),
        };
        let i = node as usize;
        if i < self.serving.nodes.len() {
            self.serving.nodes[i] = state;
        } else {
            self.serving.nodes.push(state);
        }
        let roots = self.nodes[i].roots.clone();
        self.feed(node, Input::Roots(roots));
        let held: Vec<(u32, Cid)> = self.nodes[i]
            .holds
            .iter()
            .map(|(s, h)| (*s, h.root))
            .collect();
        for (shard, root) in held {
            self.feed(node, Input::Fetched { shard, root });
        }
        // Announce at a random phase of the period, so that nodes do not all read at once.
        let phase = self.rng.below(self.sc.membership.announce_s * 1_000);
        let at = if self.now == Millis(0) { phase } else { 0 };
        self.after(at as f64, Event::Announce { node, life });
    }

    /// The membership the directory holds now and its placement (computed once per
    /// generation).
    fn placement_now(&mut self, side: usize) -> Placed {
        let directory = &mut self.serving.members[side];
        if self.serving.due[side] <= self.now {
            directory.poll(self.now);
            self.serving.due[side] = directory.next_deadline().unwrap_or(Millis(u64::MAX));
        }
        let generation = directory.generation();
        if let Some(p) = &self.serving.placed[side] {
            if p.generation == generation {
                return p.clone();
            }
        }
        let members: Arc<[Member<NodeId>]> = directory.members(self.now).into();
        let placement = Arc::new(
            self.serving
                .place_with(self.serving.place, &self.sc, &members),
        );
        let placed = Placed {
            generation,
            members,
            placement,
        };
        self.serving.placed[side] = Some(placed.clone());
        placed
    }

    /// Feeds `input` to `node`'s repair core and carries out its actions.
    pub(super) fn feed(&mut self, node: NodeId, input: Input) {
        let actions = self.serving.nodes[node as usize]
            .rebalancer
            .handle(input, self.now);
        self.act(node, actions);
    }

    pub(super) fn repair_poll(&mut self, node: NodeId, life: u32) {
        if !self.nodes[node as usize].alive || self.serving.life(node) != life {
            return;
        }
        let s = &mut self.serving.nodes[node as usize];
        if s.poll_at == Some(self.now) {
            s.poll_at = None;
        }
        if s.rebalancer.next_deadline().is_some_and(|t| t <= self.now) {
            let actions = s.rebalancer.poll(self.now);
            self.act(node, actions);
        } else {
            self.act(node, Vec::new());
        }
    }

    fn act(&mut self, node: NodeId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Fetch { shard, root } => self.fetch(node, shard, root),
                Action::Announce { shard, root } => self.tell(node, shard, Some(root)),
                Action::Drop { shard } => {
                    self.nodes[node as usize].holds.remove(&shard);
                    self.providers[shard as usize].remove(&node);
                    self.stats.drops += 1;
                    self.tell(node, shard, None);
                }
                Action::Reconcile { peer, .. } => {
                    // An exchange of heads: a round trip, then each merges what it lacks.
                    self.stats.reconciles += 1;
                    let ms = 2.0 * self.latency();
                    self.after(ms, Event::Reconcile { node, peer });
                }
                Action::Left => {}
            }
        }
        let s = &mut self.serving.nodes[node as usize];
        if let Some(t) = s.rebalancer.next_deadline() {
            if s.poll_at.is_none_or(|p| t < p) {
                s.poll_at = Some(t);
                let life = s.life;
                self.schedule(t, Event::RepairPoll { node, life });
            }
        }
    }

    /// `node` tells the DHT and the shard's other holders that it holds `shard` at `root`, or
    /// (`None`) that it dropped it.
    fn tell(&mut self, node: NodeId, shard: u32, root: Option<Root>) {
        if root.is_some() {
            let expires = Millis(self.now.0 + self.sc.dht.record_ttl_s * 1_000);
            self.providers[shard as usize].insert(node, expires);
        }
        let mut to: Vec<NodeId> = self.providers[shard as usize].keys().copied().collect();
        if let Some(placed) = &self.serving.placed[self.directory_of(node)] {
            to.extend(placed.placement.holders(shard).iter().copied());
        }
        to.sort_unstable();
        to.dedup();
        for peer in to {
            if peer != node && self.reachable(node, peer) {
                let ms = self.latency();
                let event = Event::Report {
                    to: peer,
                    from: node,
                    shard,
                    root,
                };
                self.after(ms, event);
            }
        }
    }

    pub(super) fn report(&mut self, to: NodeId, from: NodeId, shard: u32, root: Option<Root>) {
        if !self.nodes[to as usize].alive {
            return;
        }
        let input = match root {
            Some(root) => Input::Holds {
                peer: from,
                shard,
                root,
            },
            None => Input::Released { peer: from, shard },
        };
        self.feed(to, input);
    }

    /// The periodic announcement: `node` renews its membership and reads the membership.
    pub(super) fn announce(&mut self, node: NodeId, life: u32) {
        if !self.nodes[node as usize].alive || self.serving.life(node) != life {
            return;
        }
        let a = self.announcement(node);
        let side = self.directory_of(node);
        self.observe(side, a);
        let Placed {
            generation,
            members,
            placement,
        } = self.placement_now(side);
        let read = Some((side, generation));
        if self.serving.nodes[node as usize].generation != read {
            self.serving.nodes[node as usize].generation = read;
            self.feed(node, Input::Placed { members, placement });
        }
        let every = self.sc.membership.announce_s as f64 * 1_000.0;
        self.after(every, Event::Announce { node, life });
    }

    /// A new head reached `node`.
    pub(super) fn serving_head(&mut self, node: NodeId) {
        let roots = self.nodes[node as usize].roots.clone();
        self.feed(node, Input::Roots(roots));
    }

    /// `node` started, new or again with its disk.
    pub(super) fn serving_join(&mut self, node: NodeId) {
        self.serving_start_node(node);
    }

    /// Puts announcement `a` in directory `side`, which must then be polled by its expiry.
    fn observe(&mut self, side: usize, a: Announcement<NodeId>) {
        let expires = self.now.after(a.ttl);
        self.serving.members[side].observe(a, self.now);
        let due = &mut self.serving.due[side];
        *due = (*due).min(expires);
    }

    /// The membership directory `node` reaches: the second side's during a partition, if it
    /// is on that side.
    fn directory_of(&self, node: NodeId) -> usize {
        match &self.sides {
            Some(sides) if !sides.get(node as usize).copied().unwrap_or(false) => 1,
            _ => 0,
        }
    }

    /// A partition starts: the second side gets its own directory, holding the members known
    /// now; from here each side hears only its own announcements, so each loses the other's
    /// members when their announcements expire.
    pub(super) fn serving_split(&mut self) {
        let mut second = Membership::default();
        for m in self.serving.members[0].members(self.now) {
            second.observe(self.announcement_of(m.peer, m.capacity), self.now);
        }
        self.serving.members.push(second);
        self.serving.placed.push(None);
        // Polled at once: its members' expiries are now plus their ttl.
        self.serving.due.push(Millis(0));
    }

    /// A partition heals: the second side's members are announced to the first directory
    /// again, which is the one directory from now on.
    pub(super) fn serving_heal(&mut self) {
        if self.serving.members.len() < 2 {
            return;
        }
        let second = self.serving.members.remove(1);
        self.serving.placed.truncate(1);
        self.serving.due.truncate(1);
        for m in second.members(self.now) {
            let a = self.announcement_of(m.peer, m.capacity);
            self.observe(0, a);
        }
    }

    /// Invariant: the placement nodes act on is the one placement gives for the membership
    /// they read. Recomputes it for one node drawn at random and compares.
    pub(super) fn serving_check(&mut self) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let node = live[self.rng.below(live.len() as u64) as usize];
        let side = self.directory_of(node);
        let Some(Placed {
            generation,
            members,
            placement,
        }) = self.serving.placed[side].clone()
        else {
            return;
        };
        if self.serving.nodes[node as usize].generation != Some((side, generation)) {
            return;
        }
        // The node's own placement, even when a test swapped in a broken one.
        let own = self.serving.place_with(place, &self.sc, &members);
        let acted = self.serving.nodes[node as usize].rebalancer.placement();
        if own != *placement || *acted != own {
            self.violate("placement differs between nodes that read the same membership");
        }
    }
}
