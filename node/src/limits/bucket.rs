//! Keyed token buckets, sans-io: every call takes the time, so the same code runs under the
//! daemon's clock, a paused tokio clock or a test's hand-moved instant.
//!
//! Each key (an API token, a client address, a peer) has a bucket of `burst` tokens that
//! refills at `per_second`; a request takes `cost` tokens or is refused with the time until
//! it could be taken. Memory is bounded: at `capacity` keys the eighth heard from longest ago
//! are forgotten at once (one pass over the keys for every `capacity / 8` new ones, so a flood
//! of new keys costs little each). A forgotten key starts again with a full bucket, which is
//! what a key quiet that long would have anyway unless the rate is very slow.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added a second; 0 means unlimited (nothing is counted or remembered).
    pub per_second: f64,
    /// Tokens a full bucket holds: what a key may spend at once after a quiet spell.
    pub burst: f64,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0.0,
    };

    /// `per_second` tokens a second in buckets of `burst` (at least one token); a rate of 0
    /// is [`Rate::UNLIMITED`].
    pub fn new(per_second: u32, burst: u32) -> Self {
        if per_second == 0 {
            return Self::UNLIMITED;
        }
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
        }
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// The answer to a request for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The tokens were taken.
    Admitted,
    /// Not enough tokens: this much later there will be.
    Refused {
        /// Time until the request's cost has refilled.
        retry_after: Duration,
    },
}

impl Verdict {
    /// Whether the request was admitted.
    pub fn admitted(&self) -> bool {
        matches!(self, Verdict::Admitted)
    }
}

/// What [`Buckets::take`] found, with the key's own data for the caller to update.
#[derive(Debug)]
pub struct Taken<'a, V> {
    /// Admitted or refused.
    pub verdict: Verdict,
    /// The bucket was full before this request: the key had paused long enough to refill it.
    pub rested: bool,
    /// The caller's data kept with the key (e.g. strikes), forgotten with it.
    pub extra: &'a mut V,
}

#[derive(Debug)]
struct Bucket<V> {
    tokens: f64,
    at: Instant,
    extra: V,
}

/// Token buckets by key, at most `capacity` of them.
#[derive(Debug)]
pub struct Buckets<K, V = ()> {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<K, Bucket<V>>,
    /// Where [`Buckets::take`] puts an unlimited key's data (never kept).
    scratch: V,
}

impl<K: Hash + Eq + Clone, V: Default> Buckets<K, V> {
    /// Buckets refilling at `rate`, remembering at most `capacity` keys (at least one).
    pub fn new(rate: Rate, capacity: usize) -> Self {
        Self {
            rate,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
            scratch: V::default(),
        }
    }

    /// The rate every bucket refills at.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Takes `cost` tokens from `key`'s bucket at `now`, or says how long until it could.
    /// A cost over the burst is charged as the whole burst (so it passes once the bucket
    /// is full rather than never).
    pub fn take(&mut self, key: K, cost: f64, now: Instant) -> Taken<'_, V> {
        if self.rate.is_unlimited() {
            self.scratch = V::default();
            return Taken {
                verdict: Verdict::Admitted,
                rested: true,
                extra: &mut self.scratch,
            };
        }
        if self.buckets.len() >= self.capacity && !self.buckets.contains_key(&key) {
            self.forget_quietest();
        }
        let Rate { per_second, burst } = self.rate;
        let bucket = self.buckets.entry(key).or_insert_with(|| Bucket {
            tokens: burst,
            at: now,
            extra: V::default(),
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        // An instant earlier than the last one (two callers racing to the lock) leaves the
        // bucket's time where it is, so time never runs backwards.
        bucket.at = bucket.at.max(now);
        let rested = bucket.tokens >= burst;
        let cost = cost.clamp(0.0, burst);
        let verdict = if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Verdict::Admitted
        } else {
            let missing = cost - bucket.tokens;
            // Round up to whole microseconds so that asking again after exactly this long
            // is admitted.
            let micros = (missing / per_second * 1e6).ceil() as u64;
            Verdict::Refused {
                retry_after: Duration::from_micros(micros.max(1)),
            }
        };
        Taken {
            verdict,
            rested,
            extra: &mut bucket.extra,
        }
    }

    /// The data kept with `key`, if it is remembered.
    pub fn extra_mut(&mut self, key: &K) -> Option<&mut V> {
        self.buckets.get_mut(key).map(|b| &mut b.extra)
    }

    /// Forgets the eighth of the keys heard from longest ago (at least one).
    fn forget_quietest(&mut self) {
        let mut times: Vec<Instant> = self.buckets.values().map(|b| b.at).collect();
        if times.is_empty() {
            return;
        }
        let n = (times.len() / 8).max(1);
        let (_, last, _) = times.select_nth_unstable(n - 1);
        let last = *last;
        let mut left = n;
        self.buckets.retain(|_, b| {
            let forget = left > 0 && b.at <= last;
            left -= usize::from(forget);
            !forget
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(buckets: &mut Buckets<&'static str>, key: &'static str, now: Instant) -> bool {
        buckets.take(key, 1.0, now).verdict.admitted()
    }

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let mut b = Buckets::new(Rate::new(10, 5), 16);
        let t0 = Instant::now();
        let burst = (0..20).filter(|_| admitted(&mut b, "noisy", t0)).count();
        assert_eq!(burst, 5);
        match b.take("noisy", 1.0, t0).verdict {
            Verdict::Refused { retry_after } => assert_eq!(retry_after, Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (0..5).filter(|_| admitted(&mut b, "quiet", t0)).count(),
            5,
            "another key keeps its whole burst"
        );
        // After the announced wait exactly one more is admitted; a second of quiet refills
        // ten tokens, capped at the burst.
        let t1 = t0 + Duration::from_millis(100);
        assert!(admitted(&mut b, "noisy", t1));
        assert!(!admitted(&mut b, "noisy", t1));
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| admitted(&mut b, "noisy", t2)).count(), 5);
    }

    #[test]
    fn costs_refill_in_proportion_and_rested_says_the_bucket_was_full() {
        let mut b: Buckets<u8> = Buckets::new(Rate::new(4, 8), 4);
        let t0 = Instant::now();
        assert!(b.take(1, 6.0, t0).rested);
        let taken = b.take(1, 6.0, t0);
        assert!(!taken.rested);
        assert_eq!(
            taken.verdict,
            Verdict::Refused {
                retry_after: Duration::from_secs(1)
            }
        );
        assert!(b
            .take(1, 6.0, t0 + Duration::from_secs(1))
            .verdict
            .admitted());
        // A cost over the burst passes once the bucket is full.
        let t3 = t0 + Duration::from_secs(10);
        assert!(b.take(1, 100.0, t3).verdict.admitted());
        assert!(!b.take(1, 1.0, t3).verdict.admitted());
    }

    #[test]
    fn unlimited_admits_everything_and_remembers_nothing() {
        let mut b: Buckets<u32> = Buckets::new(Rate::new(0, 10), 4);
        let t0 = Instant::now();
        for key in 0..1000 {
            assert!(b.take(key, 1e9, t0).verdict.admitted());
        }
        assert!(b.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_quietest_key() {
        let mut b: Buckets<u32, u32> = Buckets::new(Rate::new(1, 1), 3);
        let t0 = Instant::now();
        for (i, key) in [1u32, 2, 3].into_iter().enumerate() {
            *b.take(key, 1.0, t0 + Duration::from_millis(i as u64)).extra = key;
        }
        // Key 1 is heard again, so key 2 is now the quietest and makes room for key 4.
        assert!(!b
            .take(1, 1.0, t0 + Duration::from_millis(10))
            .verdict
            .admitted());
        b.take(4, 1.0, t0 + Duration::from_millis(11));
        assert_eq!(b.len(), 3);
        assert!(b.extra_mut(&2).is_none());
        assert_eq!(b.extra_mut(&1).copied(), Some(1));
        assert_eq!(b.extra_mut(&3).copied(), Some(3));
        for key in 100..10_000 {
            b.take(key, 1.0, t0 + Duration::from_millis(20));
        }
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn an_earlier_instant_does_not_refill_or_rewind() {
        let mut b = Buckets::new(Rate::new(1, 1), 2);
        let t0 = Instant::now() + Duration::from_secs(5);
        assert!(admitted(&mut b, "k", t0));
        assert!(!admitted(&mut b, "k", t0 - Duration::from_secs(3)));
        assert!(!admitted(&mut b, "k", t0 + Duration::from_millis(500)));
        assert!(admitted(&mut b, "k", t0 + Duration::from_secs(1)));
    }
}
