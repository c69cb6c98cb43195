//! Repair and rebalancing of one collection on one member, sans-io: which shards this
//! member fetches, announces, keeps, drops and reconciles as the membership, the
//! collection's head and the other holders change. Like the other cores of
//! [`crate::cluster`] it holds no socket, task or clock: the adapter feeds a [`Rebalancer`]
//! what happened ([`Input`]) with the time it happened, carries out the [`Action`]s it
//! answers, and calls [`Rebalancer::poll`] at [`Rebalancer::next_deadline`].
//! [`Rebalancer::status`] is what collection info and the TUI show. Peers are a type
//! parameter `P` (the daemon's `libp2p::PeerId`, a simulator's integers), shard roots
//! another, `R` (a CID, or a simulator's number): the core only compares them.
//!
//! # The rules
//! - **Placement**: this member holds the shards [`placement`] gives it: the first
//!   `replication` members of each shard's HRW ranking over the live membership (as
//!   [`members`](super::members) keeps it). A shard placed here that is not held at the
//!   collection's current root (missing, or stale after a new head) is fetched, at most
//!   [`Config::max_fetches`] at once, those with the fewest holders known first; one that
//!   fails is tried again after [`Config::retry_after`]. Until a fetch of a new root ends,
//!   the old one is kept and served.
//! - **Dropping**: a shard placement no longer gives this member is dropped only when at
//!   least `replication` of its placed holders (other than this member; all of them when
//!   fewer can hold it) are reported holding it at the current root. Until then it is kept,
//!   served and announced. As only members placement does not name drop, and they count
//!   only placed ones, a shard never has fewer than `replication` copies during a move, as
//!   long as members agree on the membership and reports are current (a holder that drops
//!   a shard says so: [`Input::Released`]).
//! - **Repair**: when a holder drops out of the membership, placement over the remaining
//!   members names the next member of the shard's ranking, which fetches it: repair is
//!   placement plus the rules above.
//! - **Leaving**: a leaving member gets no placement (it is placed as if it were not a
//!   member), keeps serving each shard until its new holders report the current root, then
//!   drops it; once it holds nothing and fetches nothing it answers [`Action::Left`], once.
//! - **Reports**: a report that a peer holds a shard at some root is believed for
//!   [`Config::report_ttl`] after it arrives; reports of peers that are not members are
//!   ignored. This member announces each shard it holds when it gets it and again every
//!   [`Config::announce_every`], so that its own reports stay fresh elsewhere.
//! - **Anti-entropy**: when a peer that placement also gives a shard this member holds and
//!   is placed on reports another root than ours, and neither root is the current one (the
//!   side behind a known head catches up by fetching), this member asks to
//!   [`Action::Reconcile`] with it: exchange heads and merge. It does so when such a report
//!   arrives and in a sweep every [`Config::reconcile_every`], at most once per shard and
//!   peer in that period.
//!
//! # Layout
//! - this file: the [`Rebalancer`], its [`Input`]s and [`Action`]s.
//! - `config`: its [`Config`] and the [`ConfigError`] of a bad one.
//! - `status`: what it shows of each shard, [`ShardStatus`].

mod config;
mod status;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt::Debug, sync::Arc};

pub use self::{
    config::{Config, ConfigError},
    status::ShardStatus,
};
use super::{
    placement::{self, Identity, Member, Placement},
    Millis,
};

/// What the rebalancer is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<P, R> {
    /// The collection's members are now these.
    Members(Vec<Member<P>>),
    /// The collection's members are now these, and this is their placement, computed by
    /// the caller with [`placement::place`] for this collection, shard count and
    /// replication (a simulator computes it once for all its members). A placement of
    /// another shard count is computed again here.
    Placed {
        /// The members (shared too: a simulator hands the same list to every member).
        members: Arc<[Member<P>]>,
        /// Their placement.
        placement: Arc<Placement<P>>,
    },
    /// The collection has a new head: the root of each shard, in shard order.
    Roots(Vec<R>),
    /// This member now holds `shard` at `root`: a fetch ended, or it was found on disk.
    Fetched {
        /// The shard.
        shard: u32,
        /// The root it holds.
        root: R,
    },
    /// The fetch of `shard` started by [`Action::Fetch`] failed.
    FetchFailed {
        /// The shard.
        shard: u32,
    },
    /// This member no longer holds `shard`, though no [`Action::Drop`] asked it to (its
    /// adapter found it gone): fetched again if placed here.
    Lost {
        /// The shard.
        shard: u32,
    },
    /// `peer` holds `shard` at `root` (its announcement or provider record).
    Holds {
        /// The peer.
        peer: P,
        /// The shard.
        shard: u32,
        /// The root it holds.
        root: R,
    },
    /// `peer` no longer holds `shard`.
    Released {
        /// The peer.
        peer: P,
        /// The shard.
        shard: u32,
    },
    /// This member leaves the collection.
    Leave,
}

/// What the rebalancer asks its adapter to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P, R> {
    /// Fetch the blocks of `shard` at `root` that are missing here, from its holders; report
    /// [`Input::Fetched`] or [`Input::FetchFailed`].
    Fetch {
        /// The shard.
        shard: u32,
        /// The root to fetch.
        root: R,
    },
    /// Tell the collection's peers (provider record, gossip) that this member holds `shard`
    /// at `root`.
    Announce {
        /// The shard.
        shard: u32,
        /// The root held.
        root: R,
    },
    /// Stop serving `shard`, unpin its blocks, and tell the peers it is no longer held here.
    Drop {
        /// The shard.
        shard: u32,
    },
    /// Exchange heads of `shard` with `peer`, which holds another root of it, and merge.
    Reconcile {
        /// The shard.
        shard: u32,
        /// The peer.
        peer: P,
    },
    /// This member left: it holds nothing of the collection any more.
    Left,
}

/// What is known of one shard here.
#[derive(Debug, Clone)]
struct Shard<R> {
    /// The root the collection's head names.
    current: Option<R>,
    /// The root held here.
    held: Option<R>,
    /// The root being fetched.
    fetching: Option<R>,
    /// After a failed fetch, not before this.
    retry_at: Option<Millis>,
    /// When it was last announced.
    announced: Option<Millis>,
}

impl<R> Default for Shard<R> {
    fn default() -> Self {
        Self {
            current: None,
            held: None,
            fetching: None,
            retry_at: None,
            announced: None,
        }
    }
}

/// A peer's report of a root it holds, and until when it is believed.
#[derive(Debug, Clone)]
struct Report<R> {
    root: R,
    until: Millis,
}

/// Repair and rebalancing of one collection on one member.
#[derive(Debug)]
pub struct Rebalancer<P, R> {
    me: P,
    collection: Vec<u8>,
    config: Config,
    /// Sorted by peer.
    /// Sorted by peer.
    members: Arc<[Member<P>]>,
    placement: Arc<Placement<P>>,
    shards: Vec<Shard<R>>,
    /// By (shard, peer); only of members.
    reports: BTreeMap<(u32, P), Report<R>>,
    /// When this member last asked to reconcile each (shard, peer).
    reconciled: BTreeMap<(u32, P), Millis>,
    fetches: usize,
    leaving: bool,
    left: bool,
    next_sweep: Option<Millis>,
}

impl<P, R> Rebalancer<P, R>
where
    P: Identity + Ord + Clone + Debug,
    R: Clone + Eq + Debug,
{
    /// The rebalancer of member `me` for the collection with id bytes `collection` and
    /// `shards` shards.
    pub fn new(
        me: P,
        collection: Vec<u8>,
        shards: u32,
        config: Config,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            me,
            placement: Arc::new(placement::place(&collection, 0, &[], 1)),
            collection,
            config,
            members: Arc::from(Vec::new()),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            reports: BTreeMap::new(),
            reconciled: BTreeMap::new(),
            fetches: 0,
            leaving: false,
            left: false,
            next_sweep: None,
        })
    }

    /// Takes in what happened at `now`; answers what to do.
    pub fn handle(&mut self, input: Input<P, R>, now: Millis) -> Vec<Action<P, R>> {
        let mut out = Vec::new();
        if self.left {
            return out;
        }
        self.next_sweep
            .get_or_insert(now.after(self.config.reconcile_every));
        match input {
            Input::Members(members) => {
                self.set_members(members.into());
                self.place();
            }
            Input::Placed { members, placement } => {
                self.set_members(members);
                if self.leaving || placement.shards() as usize != self.shards.len() {
                    self.place();
                } else {
                    self.placement = placement;
                }
            }
            Input::Roots(roots) => {
                for (shard, root) in self.shards.iter_mut().zip(roots) {
                    shard.current = Some(root);
                }
            }
            Input::Fetched { shard, root } => {
                if let Some(s) = self.shards.get_mut(shard as usize) {
                    if s.fetching.take().is_some() {
                        self.fetches -= 1;
                    }
                    s.retry_at = None;
                    if s.held.as_ref() != Some(&root) {
                        s.held = Some(root.clone());
                        s.announced = Some(now);
                        out.push(Action::Announce { shard, root });
                    }
                }
            }
            Input::FetchFailed { shard } => {
                if let Some(s) = self.shards.get_mut(shard as usize) {
                    if s.fetching.take().is_some() {
                        self.fetches -= 1;
                        s.retry_at = Some(now.after(self.config.retry_after));
                    }
                }
            }
            Input::Holds { peer, shard, root } => {
                if peer != self.me && self.is_member(&peer) && (shard as usize) < self.shards.len()
                {
                    let until = now.after(self.config.report_ttl);
                    self.reports
                        .insert((shard, peer.clone()), Report { root, until });
                    self.reconcile(shard, &peer, now, &mut out);
                }
            }
            Input::Released { peer, shard } => {
                self.reports.remove(&(shard, peer));
            }
            Input::Lost { shard } => {
                if let Some(s) = self.shards.get_mut(shard as usize) {
                    s.held = None;
                    s.announced = None;
                }
            }
            Input::Leave => {
                self.leaving = true;
                self.place();
            }
        }
        self.settle(now, &mut out);
        out
    }

    /// Does what is due at `now`: fetches to try again, announcements to refresh, the
    /// anti-entropy sweep.
    pub fn poll(&mut self, now: Millis) -> Vec<Action<P, R>> {
        let mut out = Vec::new();
        if self.left {
            return out;
        }
        self.reports.retain(|_, r| r.until > now);
        let every = self.config.announce_every;
        for (shard, s) in (0u32..).zip(self.shards.iter_mut()) {
            if let (Some(root), Some(at)) = (&s.held, s.announced) {
                if at.after(every) <= now {
                    s.announced = Some(now);
                    out.push(Action::Announce {
                        shard,
                        root: root.clone(),
                    });
                }
            }
        }
        if self.next_sweep.is_some_and(|at| at <= now) {
            self.next_sweep = Some(now.after(self.config.reconcile_every));
            let period = self.config.reconcile_every;
            self.reconciled.retain(|_, at| at.after(period) > now);
            let peers: Vec<(u32, P)> = self.reports.keys().cloned().collect();
            for (shard, peer) in peers {
                self.reconcile(shard, &peer, now, &mut out);
            }
        }
        self.settle(now, &mut out);
        out
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.left {
            return None;
        }
        let every = self.config.announce_every;
        // A retry waits for a free fetch slot, and a fetch that ends is an input: polling
        // before then would do nothing (and a deadline in the past would spin the caller).
        let can_fetch = self.fetches < self.config.max_fetches;
        let shards = self.shards.iter().flat_map(|s| {
            let announce = s.held.as_ref().and(s.announced).map(|at| at.after(every));
            [announce, s.retry_at.filter(|_| can_fetch)]
        });
        shards.chain([self.next_sweep]).flatten().min()
    }

    /// Whether this member has left (answered [`Action::Left`]).
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Fetches running.
    pub fn fetching(&self) -> usize {
        self.fetches
    }

    /// The placement this member works to: over the members, without this one once it
    /// leaves.
    pub fn placement(&self) -> &Placement<P> {
        &self.placement
    }

    fn set_members(&mut self, mut members: Arc<[Member<P>]>) {
        if !members.is_sorted_by(|a, b| a.peer <= b.peer) {
            let mut sorted = members.to_vec();
            sorted.sort_unstable_by(|a, b| a.peer.cmp(&b.peer));
            members = sorted.into();
        }
        self.members = members;
        let reports = std::mem::take(&mut self.reports);
        self.reports = reports
            .into_iter()
            .filter(|((_, peer), _)| self.is_member(peer))
            .collect();
    }

    fn is_member(&self, peer: &P) -> bool {
        self.members.binary_search_by(|m| m.peer.cmp(peer)).is_ok()
    }

    fn place(&mut self) {
        let me = &self.me;
        let members: Vec<Member<P>> = self
            .members
            .iter()
            .filter(|m| !self.leaving || m.peer != *me)
            .cloned()
            .collect();
        self.placement = Arc::new(placement::place(
            &self.collection,
            self.shards.len() as u32,
            &members,
            self.config.replication,
        ));
    }

    /// Whether `shard` is placed here.
    fn wanted(&self, shard: u32) -> bool {
        !self.leaving && self.placement.holds(&self.me, shard)
    }

    /// Members other than this one believed, at `now`, to hold `shard` at its current root;
    /// only placed holders when `placed`.
    fn holders_at_current(&self, shard: u32, now: Millis, placed: bool) -> usize {
        let Some(current) = self.shards[shard as usize].current.as_ref() else {
            return 0;
        };
        let holds = |peer: &P| {
            self.reports
                .get(&(shard, peer.clone()))
                .is_some_and(|r| r.until > now && r.root == *current)
        };
        if placed {
            let placed = self.placement.holders(shard);
            placed.iter().filter(|p| **p != self.me && holds(p)).count()
        } else {
            let members = self.members.iter().map(|m| &m.peer);
            members.filter(|p| **p != self.me && holds(p)).count()
        }
    }

    /// Whether `shard`, not placed here, has enough copies elsewhere to be dropped.
    fn handed_over(&self, shard: u32, now: Millis) -> bool {
        let others = self
            .placement
            .holders(shard)
            .iter()
            .filter(|p| **p != self.me)
            .count();
        let need = self.config.replication.min(others).max(1);
        self.holders_at_current(shard, now, true) >= need
    }

    /// Drops what is handed over, starts the fetches due, and leaves when all is handed over.
    fn settle(&mut self, now: Millis, out: &mut Vec<Action<P, R>>) {
        for shard in 0..self.shards.len() as u32 {
            let s = &self.shards[shard as usize];
            let idle = s.held.is_some() && s.fetching.is_none();
            if idle && !self.wanted(shard) && self.handed_over(shard, now) {
                let s = &mut self.shards[shard as usize];
                s.held = None;
                s.announced = None;
                out.push(Action::Drop { shard });
            }
        }
        // A shard no longer placed here, or held at its current root, has nothing to retry.
        for shard in 0..self.shards.len() as u32 {
            let wanted = self.wanted(shard);
            let s = &mut self.shards[shard as usize];
            if !wanted || s.held == s.current {
                s.retry_at = None;
            }
        }
        if self.fetches < self.config.max_fetches {
            let mut due: Vec<(usize, u32)> = (0..self.shards.len() as u32)
                .filter(|&shard| {
                    let s = &self.shards[shard as usize];
                    self.wanted(shard)
                        && s.fetching.is_none()
                        && s.current.is_some()
                        && s.held != s.current
                        && s.retry_at.is_none_or(|at| at <= now)
                })
                .map(|shard| (self.holders_at_current(shard, now, false), shard))
                .collect();
            due.sort_unstable();
            for (_, shard) in due.into_iter().take(self.config.max_fetches - self.fetches) {
                let s = &mut self.shards[shard as usize];
                let Some(root) = s.current.clone() else {
                    continue;
                };
                s.fetching = Some(root.clone());
                s.retry_at = None;
                self.fetches += 1;
                out.push(Action::Fetch { shard, root });
            }
        }
        let empty = self.shards.iter().all(|s| s.held.is_none());
        if self.leaving && empty && self.fetches == 0 {
            self.left = true;
            out.push(Action::Left);
        }
    }

    /// Asks to reconcile `shard` with `peer` if their roots differ and the period allows.
    fn reconcile(&mut self, shard: u32, peer: &P, now: Millis, out: &mut Vec<Action<P, R>>) {
        let s = &self.shards[shard as usize];
        let (Some(ours), Some(theirs)) = (&s.held, self.reports.get(&(shard, peer.clone()))) else {
            return;
        };
        let current = s.current.as_ref();
        let differ = theirs.root != *ours
            && theirs.until > now
            && current != Some(ours)
            && current != Some(&theirs.root);
        let co_holder = self.wanted(shard) && self.placement.holds(peer, shard);
        let key = (shard, peer.clone());
        let period = self.config.reconcile_every;
        let recent = self
            .reconciled
            .get(&key)
            .is_some_and(|at| at.after(period) > now);
        if differ && co_holder && !recent {
            self.reconciled.insert(key, now);
            out.push(Action::Reconcile {
                shard,
                peer: peer.clone(),
            });
        }
    }
}
