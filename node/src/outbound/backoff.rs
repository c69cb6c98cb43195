//! Retrying a call to another machine: when to try again and how long to wait.
//!
//! [`Backoff`] is the whole decision, without a clock or a socket: told how an attempt
//! failed, it answers with the wait before the next one, or `None` when the attempts or the
//! total wait are spent. A throttled answer (429, or 503 with `Retry-After`) waits what the
//! server asks (up to [`RetryPolicy::max_total_wait`]); a server error or a failed
//! connection waits an exponentially growing, jittered interval ("equal jitter": half of it
//! fixed, half drawn from a seeded generator, so a run can be repeated). The bridges, the
//! embedding client and anything else that retries use this one implementation; each
//! adapter sends and sleeps on its own clock.

use std::time::Duration;

/// How persistent a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The longest total wait across all retries of one call.
    pub max_total_wait: Duration,
    /// The first back-off interval after a failure; doubled after each.
    pub base_delay: Duration,
    /// The longest single back-off interval (a `Retry-After` may ask for more, within
    /// `max_total_wait`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_total_wait: Duration::from_secs(120),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// How an attempt failed, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server asked the client to slow down (429, or 503), waiting this long if it
    /// said.
    Throttled(Option<Duration>),
    /// A server error (5xx), a timeout, or a connection that failed or broke.
    Transient,
}

/// The retry state of one call.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempts: u32,
    waited: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// The state before the first attempt; `seed` drives the jitter.
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempts: 1,
            waited: Duration::ZERO,
            jitter: Jitter::new(seed),
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before the next attempt after `failure`, or `None` to give up.
    pub fn next_wait(&mut self, failure: Failure) -> Option<Duration> {
        if self.attempts >= self.policy.max_attempts {
            return None;
        }
        let wait = match failure {
            Failure::Throttled(Some(asked)) => asked,
            Failure::Throttled(None) | Failure::Transient => {
                let exponent = (self.attempts - 1).min(16);
                let full = self
                    .policy
                    .base_delay
                    .saturating_mul(1 << exponent)
                    .min(self.policy.max_delay);
                let half = full / 2;
                half + half.mul_f64(self.jitter.fraction())
            }
        };
        if self.waited + wait > self.policy.max_total_wait {
            return None;
        }
        self.waited += wait;
        self.attempts += 1;
        Some(wait)
    }
}

/// A seeded source of fractions in [0, 1) (SplitMix64), for jitter that a test or a
/// simulation can repeat.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// The generator `seed` starts.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next fraction, in [0, 1).
    pub fn fraction(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_waits_what_the_server_asks_within_the_total() {
        let policy = RetryPolicy {
            max_attempts: 10,
            max_total_wait: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let mut b = Backoff::new(policy, 1);
        let asked = Failure::Throttled(Some(Duration::from_secs(2)));
        assert_eq!(b.next_wait(asked), Some(Duration::from_secs(2)));
        assert_eq!(b.next_wait(asked), Some(Duration::from_secs(2)));
        // A third would pass the 5 s bound.
        assert_eq!(b.next_wait(asked), None);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_and_give_up() {
        let policy = RetryPolicy {
            max_attempts: 5,
            max_total_wait: Duration::from_secs(600),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let mut b = Backoff::new(policy, 7);
        let waits: Vec<_> = std::iter::from_fn(|| b.next_wait(Failure::Transient)).collect();
        assert_eq!(waits.len(), 4, "five attempts make four waits");
        for (i, wait) in waits.iter().enumerate() {
            let full = Duration::from_millis(100 * (1 << i)).min(Duration::from_secs(1));
            assert!(*wait >= full / 2 && *wait <= full, "wait {i}: {wait:?}");
        }
        let mut same = Backoff::new(policy, 7);
        let same: Vec<_> = std::iter::from_fn(|| same.next_wait(Failure::Transient)).collect();
        assert_eq!(waits, same, "one seed, one run");
        let mut other = Backoff::new(policy, 8);
        let other: Vec<_> = std::iter::from_fn(|| other.next_wait(Failure::Transient)).collect();
        assert_ne!(waits, other, "the jitter differs between seeds");
    }

    #[test]
    fn jitter_stays_in_its_interval() {
        let mut j = Jitter::new(42);
        for _ in 0..10_000 {
            let f = j.fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
