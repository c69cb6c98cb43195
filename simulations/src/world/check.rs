//! The periodic sample: every [`SAMPLE_EVERY`] of virtual time the world counts, per shard,
//! the live holders at the newest version, and checks the invariants that are about the
//! state rather than one event:
//!
//! - **replication**: a shard below `replication` live holders starts an episode that ends
//!   when it is back; the episodes' lengths are the repair times. (Holders behind the newest
//!   version count: catching up is a fetch of the versions' deltas, measured apart.)
//! - **no acknowledged write lost**: a version of a shard is acknowledged once a sample finds
//!   `replication` live members holding it; from then on some member that is up, or down
//!   with its disk, must hold it or a newer one. (The writer keeps every version too, so this
//!   is about the serving set; a shard with no copy at all on members is also counted as
//!   lost.)
//! - **convergence after a heal**: the time from a heal until every live node has every head
//!   and every shard is back to its replication at the newest version.

use ipvec_node::cluster::Millis;

use super::{Event, World};

/// How often the world samples, virtual milliseconds.
pub(super) const SAMPLE_EVERY: u64 = 10_000;

/// Per shard: since when it is short of replication, if it is; whether it is lost; the
/// newest version acknowledged (held by `replication` live members at some sample).
#[derive(Debug, Default)]
pub(super) struct Replication {
    short_since: Vec<Option<Millis>>,
    lost: Vec<bool>,
    acknowledged: Vec<u64>,
    /// Whether the shard's acknowledged version is lost now (a loss counts once).
    lost_acknowledged: Vec<bool>,
}

impl World {
    pub(super) fn sample(&mut self) {
        let shards = self.sc.shards as usize;
        let mut live_current = vec![0u32; shards];
        let mut live_held = vec![0u32; shards];
        let mut any_copy = vec![false; shards];
        // Per shard, the newest version on a node that is up or will come back.
        let mut kept = vec![None::<u64>; shards];
        for n in &self.nodes {
            for (s, held) in &n.holds {
                let s = *s as usize;
                if n.alive {
                    live_held[s] += 1;
                    if held.version >= self.versions[s] {
                        live_current[s] += 1;
                    }
                }
                if !n.gone {
                    any_copy[s] = true;
                    kept[s] = kept[s].max(Some(held.version));
                }
            }
        }
        let want = self.sc.replication.min(self.serving.live_members(self.now));
        let r = &mut self.replication;
        r.short_since.resize(shards, None);
        r.lost.resize(shards, false);
        r.acknowledged.resize(shards, 0);
        r.lost_acknowledged.resize(shards, false);
        let mut lost_acknowledged = false;
        for s in 0..shards {
            if live_current[s] >= self.sc.replication {
                r.acknowledged[s] = self.versions[s];
            }
            let lost = kept[s].is_none_or(|v| v < r.acknowledged[s]);
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
        let settled = current
            && self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .all(|n| n.seq + 1 == self.history.len() as u64);
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
}
