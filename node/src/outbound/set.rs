//! The breakers of many targets, keyed by target, in bounded memory.
//!
//! A target with no failures since its last success needs no record, so a success forgets
//! it. When [`BreakerSet::capacity`] records are kept and another target fails, the closed
//! record used least recently is forgotten first, then the least recently used of all.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use super::breaker::{Breaker, BreakerPolicy, BreakerState, Refusal};
use crate::cluster::Millis;

/// The most targets remembered by default.
pub const DEFAULT_CAPACITY: usize = 1_024;

/// One target's breaker, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport<K> {
    /// The target.
    pub target: K,
    /// Its breaker's state.
    pub state: BreakerState,
    /// Failures in a row.
    pub failures: u32,
    /// Until when it is open.
    pub open_until: Option<Millis>,
}

#[derive(Debug, Clone)]
struct Entry {
    breaker: Breaker,
    last_used: Millis,
}

/// The breakers of many targets.
#[derive(Debug, Clone)]
pub struct BreakerSet<K> {
    policy: BreakerPolicy,
    seed: u64,
    capacity: usize,
    entries: HashMap<K, Entry>,
    /// Times a breaker of this set opened, forgotten ones included.
    opened: u64,
}

impl<K: Clone + Eq + Hash + Ord> BreakerSet<K> {
    /// An empty set whose breakers follow `policy`; `seed` (mixed with each target) drives
    /// their jitter; at most `capacity` targets are remembered.
    pub fn new(policy: BreakerPolicy, seed: u64, capacity: usize) -> Self {
        Self {
            policy,
            seed,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            opened: 0,
        }
    }

    /// The policy its breakers follow.
    pub fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    /// The most targets remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A call to `target` is about to be made at `now`: refused if its breaker is open;
    /// the trial if it is half-open.
    pub fn begin(&mut self, target: &K, now: Millis) -> Result<(), Refusal> {
        match self.entries.get_mut(target) {
            None => Ok(()),
            Some(entry) => {
                entry.last_used = now;
                entry.breaker.begin(now)
            }
        }
    }

    /// Whether a call to `target` at `now` would go through, without starting a trial.
    pub fn check(&self, target: &K, now: Millis) -> Result<(), Refusal> {
        match self.entries.get(target) {
            None => Ok(()),
            Some(entry) => entry.breaker.check(now),
        }
    }

    /// Whether a call to `target` at `now` would be refused.
    pub fn refuses(&self, target: &K, now: Millis) -> bool {
        self.entries
            .get(target)
            .is_some_and(|e| e.breaker.refuses(now))
    }

    /// A call to `target` succeeded: its breaker closes (and is forgotten).
    pub fn succeeded(&mut self, target: &K) {
        self.entries.remove(target);
    }

    /// A call to `target` failed at `now`. Returns whether this opened its breaker.
    pub fn failed(&mut self, target: &K, now: Millis) -> bool {
        if !self.entries.contains_key(target) && self.entries.len() >= self.capacity {
            self.forget_one(now);
        }
        let (policy, seed) = (self.policy, self.seed_for(target));
        let entry = self.entries.entry(target.clone()).or_insert_with(|| Entry {
            breaker: Breaker::new(policy, seed),
            last_used: now,
        });
        entry.last_used = now;
        let opened = entry.breaker.failed(now);
        if opened {
            self.opened = self.opened.saturating_add(1);
        }
        opened
    }

    /// Times a breaker opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Targets remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no target is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every target remembered, in target order.
    pub fn report(&self, now: Millis) -> Vec<TargetReport<K>> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(target, e)| TargetReport {
                target: target.clone(),
                state: e.breaker.state(now),
                failures: e.breaker.failures(),
                open_until: e.breaker.open_until(now),
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }

    fn seed_for(&self, target: &K) -> u64 {
        let mut h = DefaultHasher::new();
        target.hash(&mut h);
        self.seed ^ h.finish()
    }

    /// Forgets the closed target used least recently, or else the least recently used.
    fn forget_one(&mut self, now: Millis) {
        let oldest = |closed_only: bool| {
            self.entries
                .iter()
                .filter(|(_, e)| !closed_only || e.breaker.state(now) == BreakerState::Closed)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        };
        let target = oldest(true).or_else(|| oldest(false));
        if let Some(target) = target {
            self.entries.remove(&target);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn set(capacity: usize) -> BreakerSet<u32> {
        let policy = BreakerPolicy {
            failures_to_open: 2,
            first_open: Duration::from_secs(1),
            ..BreakerPolicy::default()
        };
        BreakerSet::new(policy, 5, capacity)
    }

    #[test]
    fn each_target_has_its_own_breaker() {
        let mut s = set(8);
        assert!(!s.failed(&1, Millis(0)));
        assert!(s.failed(&1, Millis(0)));
        assert!(s.begin(&1, Millis(10)).is_err());
        assert!(s.begin(&2, Millis(10)).is_ok());
        assert_eq!(s.opened(), 1);
        assert_eq!(s.report(Millis(10))[0].state, BreakerState::Open);
        s.succeeded(&1);
        assert!(s.is_empty(), "a closed breaker is not remembered");
    }

    #[test]
    fn memory_is_bounded_and_open_breakers_are_kept_over_closed_ones() {
        let mut s = set(3);
        s.failed(&1, Millis(0));
        s.failed(&1, Millis(0));
        s.failed(&2, Millis(1));
        s.failed(&3, Millis(2));
        // Full: target 4 makes room by forgetting 2 (closed, least recently used), not 1.
        s.failed(&4, Millis(3));
        assert_eq!(s.len(), 3);
        let kept: Vec<u32> = s.report(Millis(3)).into_iter().map(|r| r.target).collect();
        assert_eq!(kept, [1, 3, 4]);
        for t in 5..1_000 {
            s.failed(&t, Millis(u64::from(t)));
        }
        assert_eq!(s.len(), 3);
    }
}
