//! The periodic sample: every [`SAMPLE_EVERY`] of virtual time the world counts, per shard,
//! the live holders current with every commit, and checks the invariants that are about the
//! state rather than one event:
//!
//! - **replication**: a shard below `replication` live holders starts an episode that ends
//!   when it is back; the episodes' lengths are the repair times. (Holders behind the newest
//!   heads count: catching up is a fetch of the heads' deltas, measured apart.)
//! - **no acknowledged write lost**: the writes to a shard are acknowledged once a sample
//!   finds `replication` live members holding a root that merges every commit to it (by the
//!   heads it was fetched at); from then on some member that is up, or down with its disk,
//!   must hold a root that merges every one of them. (The writers keep their own trees too,
//!   so this is about the serving set; a shard with no copy at all on members is also counted
//!   as lost.)
//! - **same heads, same root**: nodes that took the same heads of every writer have the same
//!   root of every shard, and holders of a shard that fetched it at the same heads hold the
//!   same root, whatever order the heads came in (the merge is a CRDT); and a node drawn at
//!   random holds the roots that taking its heads one writer after the other gives.
//! - **convergence after a heal**: the time from a heal until every live node has every head
//!   and every shard is back to its replication at a root that merges every commit.

use std::collections::HashMap;

use cid::Cid;
use ipvec_node::cluster::Millis;

use super::{Event, World};

/// How often the world samples, virtual milliseconds.
pub(super) const SAMPLE_EVERY: u64 = 10_000;

/// Per shard: since when it is short of replication, if it is; whether it is lost; per
/// writer, how many of its commits are acknowledged (held by `replication` live members at
/// some sample).
#[derive(Debug, Default)]
pub(super) struct Replication {
    short_since: Vec<Option<Millis>>,
    lost: Vec<bool>,
    acknowledged: Vec<Vec<usize>>,
    /// Whether the shard's acknowledged version is lost now (a loss counts once).
    lost_acknowledged: Vec<bool>,
}

impl World {
    pub(super) fn sample(&mut self) {
        let shards = self.sc.shards as usize;
        let mut live_current = vec![0u32; shards];
        let mut live_held = vec![0u32; shards];
        let mut any_copy = vec![false; shards];
        let writers = self.trees.writers();
        // Per shard and writer, the most of its commits a node that is up or will come back
        // holds.
        let mut kept = vec![vec![0usize; writers as usize]; shards];
        for n in &self.nodes {
            if n.gone {
                continue;
            }
            for (shard, held) in &n.holds {
                let s = *shard as usize;
                any_copy[s] = true;
                // Whether the root held merges every commit to the shard.
                let mut every = true;
                for (w, seq) in held.seen.iter().enumerate() {
                    let included = self.trees.included(w as u32, *shard, *seq);
                    every &= included == self.trees.commits_to(w as u32, *shard);
                    kept[s][w] = kept[s][w].max(included);
                }
                if n.alive {
                    live_held[s] += 1;
                    live_current[s] += u32::from(every);
                }
            }
        }
        self.check_same_roots();
        let want = self.sc.replication.min(self.serving.live_members(self.now));
        let r = &mut self.replication;
        r.short_since.resize(shards, None);
        r.lost.resize(shards, false);
        r.acknowledged.resize(shards, vec![0; writers as usize]);
        r.lost_acknowledged.resize(shards, false);
        let mut lost_acknowledged = false;
        for s in 0..shards {
            if live_current[s] >= self.sc.replication {
                r.acknowledged[s] = (0..writers)
                    .map(|w| self.trees.commits_to(w, s as u32))
                    .collect();
            }
            let lost = !any_copy[s]
                || kept[s]
                    .iter()
                    .zip(&r.acknowledged[s])
                    .any(|(kept, acknowledged)| kept < acknowledged);
            lost_acknowledged |= lost && !r.lost_acknowledged[s];
            r.lost_acknowledged[s] = lost;
            match (live_held[s] >= want, r.short_since[s]) {
                (false, None) => r.short_since[s] = Some(self.now),
                (true, Some(since)) => {
                    self.stats
                        .repair_times
                        .push(self.now.since(since).as_millis() as u64);
                    r.short_since[s] = None;
                }
                _ => {}
            }
            if !any_copy[s] && !r.lost[s] {
                self.stats.shards_lost += 1;
            }
            r.lost[s] = !any_copy[s];
        }
        if lost_acknowledged {
            self.violate("an acknowledged version is on no member that is up or coming back");
        }
        let current = live_current.iter().all(|n| *n >= want);
        let heads = self.trees.heads();
        let settled = current
            && self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .all(|n| n.seen == heads);
        if settled && self.sides.is_none() {
            if let Some(heal) = self
                .stats
                .healed_at
                .get(self.stats.converged_after_heal.len())
            {
                let ms = self.now.since(*heal).as_millis() as u64;
                self.stats.converged_after_heal.push(ms);
            }
        }
        self.serving_check();
        let next = Millis(self.now.0 + SAMPLE_EVERY);
        if next <= self.end {
            self.schedule(next, Event::Sample);
        } else {
            self.stats.under_replicated_at_end =
                self.replication.short_since.iter().flatten().count() as u64;
        }
    }

    /// Invariant: nodes that took the same heads have the same roots, and holders of a shard
    /// that fetched it at the same heads hold the same root; and one live node drawn at
    /// random has the roots a node that took its heads one writer after the other would.
    fn check_same_roots(&mut self) {
        let live = self.live();
        if !live.is_empty() {
            let node = live[self.rng.below(live.len() as u64) as usize] as usize;
            let seen = self.nodes[node].seen.clone();
            let in_order: Vec<Cid> = (0..self.sc.shards)
                .map(|shard| self.trees.merged_in_order(shard, &seen))
                .collect();
            if in_order != self.nodes[node].roots {
                self.violate("replicas that took the same heads hold different roots");
                return;
            }
        }
        let mut by_heads: HashMap<&[u64], &[Cid]> = HashMap::new();
        let mut held: HashMap<(u32, &[u64]), Cid> = HashMap::new();
        let mut differ = false;
        for n in self.nodes.iter().filter(|n| !n.gone) {
            differ |= *by_heads.entry(&n.seen).or_insert(&n.roots) != n.roots.as_slice();
            for (shard, h) in &n.holds {
                differ |= *held.entry((*shard, &h.seen)).or_insert(h.root) != h.root;
            }
        }
        if differ {
            self.violate("replicas that took the same heads hold different roots");
        }
    }
}
