//! A circuit breaker for one target, without a clock: time is passed in.
//!
//! - **Closed**: calls go through. [`BreakerPolicy::failures_to_open`] failures in a row
//!   open it (a success in between starts the count over).
//! - **Open**: calls are refused at once, with a [`Refusal`] saying how many failures opened
//!   it and when it will be tried again. It first stays open
//!   [`BreakerPolicy::first_open`].
//! - **Half-open**, once that time is over: the first call is let through as a trial, and
//!   while it is out (at most [`BreakerPolicy::trial_timeout`]) the others are refused. A
//!   success closes the breaker; a failure opens it again for twice as long as the last
//!   time, up to [`BreakerPolicy::max_open`], less a jitter of up to
//!   [`BreakerPolicy::jitter_percent`] drawn from a seeded generator, so that many callers
//!   whose breakers opened together do not all try again in the same instant. Failures of
//!   calls made before it opened do not lengthen it.
//!
//! A consecutive count was chosen over a failure ratio: the targets here (a peer, an
//! embedding server, a vector store) see a few calls a second at most, too few for a ratio
//! over a window to tell a dead target from bad luck sooner than a count does.

use std::time::Duration;

use super::backoff::Jitter;
use crate::cluster::Millis;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that open it.
    pub failures_to_open: u32,
    /// How long it stays open the first time.
    pub first_open: Duration,
    /// The longest it stays open (the time doubles with each failed trial up to it).
    pub max_open: Duration,
    /// Each reopening is shortened by up to this share of its length (0 to 100).
    pub jitter_percent: u32,
    /// How long a trial call holds the others off before it is taken as lost.
    pub trial_timeout: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            first_open: Duration::from_secs(1),
            max_open: Duration::from_secs(60),
            jitter_percent: 20,
            trial_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused.
    Open,
    /// One trial call goes through (or is out); the others are refused.
    HalfOpen,
}

impl BreakerState {
    /// Its number in metrics: 0 closed, 1 open, 2 half-open.
    pub fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// Its name in the API and the dashboard.
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// Why a call was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Failures in a row so far.
    pub failures: u32,
    /// When a call will be let through again (a trial).
    pub retry_at: Millis,
}

/// One target's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    /// Failures in a row.
    consecutive: u32,
    /// Set while tripped: open until then, half-open after.
    open_until: Option<Millis>,
    /// The unjittered length of the last opening; the next one is twice it.
    nominal: Duration,
    /// A half-open breaker's trial call is out until then.
    trial_until: Option<Millis>,
    /// Times it opened.
    opened: u64,
    jitter: Jitter,
}

impl Breaker {
    /// A closed breaker; `seed` drives its jitter.
    pub fn new(policy: BreakerPolicy, seed: u64) -> Self {
        Self {
            policy,
            consecutive: 0,
            open_until: None,
            nominal: policy.first_open,
            trial_until: None,
            opened: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// Where it stands at `now`.
    pub fn state(&self, now: Millis) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if until > now => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a call at `now` would be refused: it is open, or half-open with its trial
    /// out.
    pub fn refuses(&self, now: Millis) -> bool {
        self.check(now).is_err()
    }

    /// Whether a call at `now` would go through, without starting a trial.
    pub fn check(&self, now: Millis) -> Result<(), Refusal> {
        let refusal = |retry_at| Refusal {
            failures: self.consecutive,
            retry_at,
        };
        match self.open_until {
            None => Ok(()),
            Some(until) if until > now => Err(refusal(until)),
            Some(_) => match self.trial_until {
                Some(trial) if trial > now => Err(refusal(trial)),
                _ => Ok(()),
            },
        }
    }

    /// A call is about to be made at `now`: refused if it would be; when half-open, this
    /// call is the trial.
    pub fn begin(&mut self, now: Millis) -> Result<(), Refusal> {
        self.check(now)?;
        if self.open_until.is_some() {
            self.trial_until = Some(now.after(self.policy.trial_timeout));
        }
        Ok(())
    }

    /// A call succeeded: the breaker closes and its back-off starts over.
    pub fn succeeded(&mut self) {
        self.consecutive = 0;
        self.open_until = None;
        self.trial_until = None;
        self.nominal = self.policy.first_open;
    }

    /// A call failed at `now`. Returns whether this opened the breaker.
    pub fn failed(&mut self, now: Millis) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        if self.open_until.is_some() || self.consecutive >= self.policy.failures_to_open {
            self.trip(now)
        } else {
            false
        }
    }

    /// Opens it at `now` for the longest time, whatever its state (a target caught doing
    /// worse than failing). Returns whether it was not open already.
    pub fn open_longest(&mut self, now: Millis) -> bool {
        let was_open = self.state(now) == BreakerState::Open;
        self.nominal = self.policy.max_open;
        self.open_until = Some(now.after(self.policy.max_open));
        self.trial_until = None;
        if !was_open {
            self.opened = self.opened.saturating_add(1);
        }
        !was_open
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.consecutive
    }

    /// Until when it is open (`None`: closed or half-open at `now`).
    pub fn open_until(&self, now: Millis) -> Option<Millis> {
        self.open_until.filter(|t| *t > now)
    }

    /// Times it opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Opens it: for the first length, or, when it was tripped and that time is over (a
    /// failed trial), for twice the last one, jittered.
    fn trip(&mut self, now: Millis) -> bool {
        let length = match self.open_until {
            Some(until) if until > now => return false,
            Some(_) => {
                self.nominal = self.nominal.saturating_mul(2).min(self.policy.max_open);
                let share = f64::from(self.policy.jitter_percent.min(100)) / 100.0;
                self.nominal
                    .saturating_sub(self.nominal.mul_f64(share * self.jitter.fraction()))
            }
            None => {
                self.nominal = self.policy.first_open;
                self.nominal
            }
        };
        self.open_until = Some(now.after(length));
        self.trial_until = None;
        self.opened = self.opened.saturating_add(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Millis {
        Millis(ms)
    }

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failures_to_open: 3,
            first_open: Duration::from_secs(1),
            max_open: Duration::from_secs(30),
            jitter_percent: 20,
            trial_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_after_n_failures_in_a_row_and_refuses_until_the_delay_is_over() {
        let mut b = Breaker::new(policy(), 1);
        assert!(!b.failed(at(0)));
        b.succeeded();
        assert!(!b.failed(at(0)));
        assert!(!b.failed(at(0)));
        assert_eq!(
            b.state(at(0)),
            BreakerState::Closed,
            "the success reset the count"
        );
        assert!(b.failed(at(10)));
        assert_eq!(b.state(at(10)), BreakerState::Open);
        assert_eq!(
            b.begin(at(500)),
            Err(Refusal {
                failures: 3,
                retry_at: at(1_010)
            })
        );
        assert!(b.refuses(at(1_009)));
        assert_eq!(b.state(at(1_010)), BreakerState::HalfOpen);
        assert_eq!(b.opened(), 1);
    }

    #[test]
    fn half_open_lets_one_trial_through_and_a_success_closes_it() {
        let mut b = Breaker::new(policy(), 1);
        for _ in 0..3 {
            b.failed(at(0));
        }
        assert_eq!(b.begin(at(1_000)), Ok(()), "the trial");
        let refused = b.begin(at(1_001)).unwrap_err();
        assert_eq!(
            refused.retry_at,
            at(6_000),
            "held off while the trial is out"
        );
        b.succeeded();
        assert_eq!(b.state(at(1_002)), BreakerState::Closed);
        assert_eq!(b.begin(at(1_002)), Ok(()));
        assert_eq!(b.failures(), 0);
        // Opening again starts from the first length.
        for _ in 0..3 {
            b.failed(at(2_000));
        }
        assert_eq!(b.open_until(at(2_000)), Some(at(3_000)));
    }

    #[test]
    fn a_lost_trial_lets_another_through_after_the_trial_timeout() {
        let mut b = Breaker::new(policy(), 1);
        for _ in 0..3 {
            b.failed(at(0));
        }
        assert!(b.begin(at(1_000)).is_ok());
        assert!(b.begin(at(5_999)).is_err());
        assert!(b.begin(at(6_000)).is_ok());
    }

    #[test]
    fn a_failed_trial_reopens_it_for_longer_with_bounded_jitter_up_to_the_cap() {
        let mut b = Breaker::new(policy(), 9);
        let mut now = at(0);
        for _ in 0..3 {
            b.failed(now);
        }
        let mut lengths = Vec::new();
        for _ in 0..8 {
            let until = b.open_until(now).unwrap();
            lengths.push(until.since(now));
            now = until;
            assert!(b.begin(now).is_ok(), "half-open: the trial goes");
            assert!(b.failed(now), "the failed trial reopens it");
        }
        assert_eq!(
            lengths[0],
            Duration::from_secs(1),
            "the first opening is exact"
        );
        let mut nominal = Duration::from_secs(1);
        for length in &lengths[1..] {
            nominal = (nominal * 2).min(Duration::from_secs(30));
            assert!(
                *length <= nominal && *length >= nominal.mul_f64(0.8),
                "{length:?} against {nominal:?}"
            );
        }
        assert!(
            lengths[1..].iter().any(|l| l.subsec_millis() != 0),
            "jittered"
        );
        assert_eq!(b.opened(), 9);

        // The same seed repeats the same lengths; another seed does not.
        let run = |seed| {
            let mut b = Breaker::new(policy(), seed);
            let mut now = at(0);
            for _ in 0..3 {
                b.failed(now);
            }
            (0..6)
                .map(|_| {
                    let until = b.open_until(now).unwrap();
                    now = until;
                    b.failed(now);
                    until
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn failures_of_calls_made_before_it_opened_do_not_lengthen_it() {
        let mut b = Breaker::new(policy(), 1);
        for _ in 0..3 {
            b.failed(at(0));
        }
        assert!(!b.failed(at(500)));
        assert_eq!(b.open_until(at(500)), Some(at(1_000)));
        assert_eq!(b.failures(), 4);
    }

    #[test]
    fn open_longest_opens_at_once_for_the_cap() {
        let mut b = Breaker::new(policy(), 1);
        assert!(b.open_longest(at(0)));
        assert_eq!(b.open_until(at(0)), Some(at(30_000)));
        assert!(!b.open_longest(at(10)), "already open");
        assert_eq!(b.opened(), 1);
    }
}
