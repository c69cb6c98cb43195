//! Blocks that came from a peer nobody asked for them, and the memory of whom each block
//! was asked of.
//!
//! Bitswap blocks carry a prefix, not a CID, so bytes that do not hash to what was asked
//! look exactly like an honest answer to a want this node sent before it restarted; those
//! are asked for again within seconds of the restart, which forgives them. So a block not
//! asked of its sender makes the sender a suspect for [`GRACE`]: still suspected then, it
//! is convicted (banned). A peer with [`MAX_SUSPECT_BLOCKS`] blocks waiting is convicted at
//! the next one. Late copies from peers a block was asked of, up to [`REMEMBER_ASKED`] after
//! its want ended, are duplicates, never held against anyone.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::Hash,
};

use cid::Cid;

use super::{GRACE, MAX_SUSPECT_BLOCKS, REMEMBER_ASKED};
use crate::cluster::Millis;

/// What a block not asked of its sender is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unasked {
    /// From now on waiting out [`GRACE`].
    Suspect,
    /// The same block from the same peer, already waiting out [`GRACE`].
    StillSuspect,
    /// Its sender has [`MAX_SUSPECT_BLOCKS`] such blocks waiting already.
    TooMany,
}

/// Suspects and the peers recently asked for blocks.
#[derive(Debug)]
pub(super) struct Suspects<P> {
    /// Peers a block was asked of, for [`REMEMBER_ASKED`] after its want ended.
    recent: HashMap<Cid, HashSet<P>>,
    recent_order: VecDeque<(Millis, Cid)>,
    /// Who sent a block nobody asked for, by its CID (`None`: bytes under a prefix we cannot
    /// hash, which we never ask for).
    by_cid: HashMap<Option<Cid>, HashSet<P>>,
    count: HashMap<P, usize>,
    /// Suspicions to judge, by the time their grace ends (in order: the grace is fixed).
    grace: VecDeque<(Millis, P, Option<Cid>)>,
}

impl<P> Default for Suspects<P> {
    fn default() -> Self {
        Self {
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            by_cid: HashMap::new(),
            count: HashMap::new(),
            grace: VecDeque::new(),
        }
    }
}

impl<P: Clone + Eq + Hash> Suspects<P> {
    /// The want for `cid`, asked of `asked`, ended at `now`.
    pub fn remember(&mut self, cid: Cid, asked: impl Iterator<Item = P>, now: Millis) {
        while let Some((at, old)) = self.recent_order.front() {
            if now.since(*at) < REMEMBER_ASKED {
                break;
            }
            self.recent.remove(old);
            self.recent_order.pop_front();
        }
        self.recent.entry(cid).or_default().extend(asked);
        self.recent_order.push_back((now, cid));
    }

    /// Whether `cid` was recently asked of `peer`.
    pub fn was_asked(&self, cid: &Cid, peer: &P) -> bool {
        self.recent.get(cid).is_some_and(|p| p.contains(peer))
    }

    /// `peer` sent `cid`, not asked of it, at `now`.
    pub fn arrived(&mut self, peer: P, cid: Option<Cid>, now: Millis) -> Unasked {
        if self.by_cid.get(&cid).is_some_and(|p| p.contains(&peer)) {
            return Unasked::StillSuspect;
        }
        let count = self.count.entry(peer.clone()).or_default();
        if *count >= MAX_SUSPECT_BLOCKS {
            return Unasked::TooMany;
        }
        *count += 1;
        self.by_cid.entry(cid).or_default().insert(peer.clone());
        self.grace.push_back((now.after(GRACE), peer, cid));
        Unasked::Suspect
    }

    /// `cid` is asked for now: whoever sent it unasked is forgiven.
    pub fn forgive(&mut self, cid: &Cid) {
        for peer in self.by_cid.remove(&Some(*cid)).unwrap_or_default() {
            self.unsuspect(&peer);
        }
    }

    /// The peers whose grace ended by `now` still suspected: convicted, one entry a block.
    pub fn poll(&mut self, now: Millis) -> Vec<P> {
        let mut convicted = Vec::new();
        while let Some((at, _, _)) = self.grace.front() {
            if *at > now {
                break;
            }
            let Some((_, peer, cid)) = self.grace.pop_front() else {
                break;
            };
            if self.convict(&peer, cid) {
                convicted.push(peer);
            }
        }
        convicted
    }

    /// When the next grace ends.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.grace.front().map(|(at, _, _)| *at)
    }

    /// Whether `peer` still stands suspected for the block `cid` (and no longer does).
    fn convict(&mut self, peer: &P, cid: Option<Cid>) -> bool {
        let Some(senders) = self.by_cid.get_mut(&cid) else {
            return false;
        };
        let was = senders.remove(peer);
        if senders.is_empty() {
            self.by_cid.remove(&cid);
        }
        if was {
            self.unsuspect(peer);
        }
        was
    }

    fn unsuspect(&mut self, peer: &P) {
        if let Some(n) = self.count.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.count.remove(peer);
            }
        }
    }

    /// Whether nobody is suspected.
    #[cfg(test)]
    pub fn is_clear(&self) -> bool {
        self.by_cid.is_empty() && self.count.is_empty()
    }
}
