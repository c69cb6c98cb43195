//! What a node knows of its peers across federated searches: how fast each answers, how
//! often it fails lately, whether its circuit breaker is open, and the budget that bounds
//! hedging. One [`PeerBook`] lives in the node and is lent to every [`Planner`], which
//! records each answer and failure in it.
//!
//! - **Latency**: a smoothed mean and mean deviation per peer, as TCP estimates its round
//!   trip (RFC 6298: weights 1/8 and 1/4, the first sample `s` gives mean `s` and deviation
//!   `s/2`); the p95 is taken as `mean + 2 · deviation`. A peer never heard from is assumed
//!   to take [`DEFAULT_LATENCY`]. This node's own searches get an estimate of their own.
//! - **Recent failures**: a count that halves every [`FAILURE_HALF_LIFE`], used to rank
//!   peers.
//! - **Circuit breaker**: each peer has the node's one breaker ([`Breaker`]; by default,
//!   and when the `[outbound]` settings leave them, these constants): after
//!   [`FAILURES_TO_OPEN`] failures in a row the breaker opens: the peer is skipped for
//!   [`FIRST_BACKOFF`]. Then it is half-open: the first request sent to it is a trial, and
//!   while the trial is out (at most [`TRIAL_TIMEOUT`]) it counts as open for everyone else.
//!   An answer closes the breaker; a failure once the back-off is over opens it again for
//!   twice as long, up to [`MAX_BACKOFF`], less a seeded jitter of up to
//!   [`JITTER_PERCENT`]. Failures of requests sent before it opened do not lengthen it. [`PeerBook::penalise`] (a hit that failed
//!   verification, say) counts as [`PENALTY`] failures, opens the breaker at once, and bans
//!   the peer: it counts as open for [`LIAR_BAN`], twice that for each further lie (up to
//!   [`MAX_LIAR_BAN`]), whatever it answers meanwhile. (A forger answers every request, so
//!   a breaker that an answer closes let it back in after a minute; the simulations showed
//!   forged hits costing a tenth of the recall that way.) Open and banned peers are still
//!   asked when no other holder is left.
//! - **Hedging budget**: a token bucket counted in credits: it starts at
//!   [`HEDGE_CREDIT_START`], each request of a search's plan earns [`HEDGE_EARN`] (up to
//!   [`HEDGE_CREDIT_MAX`]), each hedge request costs [`HEDGE_COST`]. So hedges add at most
//!   a tenth to the load, past the first few.
//! - **Memory**: at most [`MAX_PEERS`] peers; a new one beyond that first forgets the peers
//!   not heard from for [`FORGET_AFTER`], then the least recently heard from.
//!
//! [`Planner`]: super::Planner

use std::{
    collections::HashMap,
    fmt::Debug,
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use crate::{
    cluster::Millis,
    outbound::{Breaker, BreakerPolicy, BreakerState},
};

/// The latency assumed of a peer never heard from (its mean and its p95).
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(50);
/// The shortest wait before a request is hedged.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(5);
/// A request silent for this many times its holder's hedge delay counts as failed for the
/// shards another holder can answer (see [`PeerBook::silence_limit`]).
pub const SILENCE_FACTOR: u32 = 10;
/// The shortest wait before a silent request counts as failed.
pub const MIN_SILENCE: Duration = Duration::from_secs(1);
/// Failures in a row that open a peer's circuit breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long a breaker first stays open.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest a breaker stays open (the back-off doubles up to it).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a half-open peer's trial request holds others off before it is taken as lost.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Each reopening of a breaker is shortened by up to this share (percent), at random.
pub const JITTER_PERCENT: u32 = 20;
/// How long it takes a peer's count of recent failures to halve.
pub const FAILURE_HALF_LIFE: Duration = Duration::from_secs(30);
/// How long a peer caught lying is skipped the first time.
pub const LIAR_BAN: Duration = Duration::from_secs(3_600);
/// The longest ban (it doubles with each lie).
pub const MAX_LIAR_BAN: Duration = Duration::from_secs(24 * 3_600);
/// How many failures a [`PeerBook::penalise`] counts as.
pub const PENALTY: u32 = FAILURES_TO_OPEN;
/// The most peers remembered.
pub const MAX_PEERS: usize = 4_096;
/// How long a peer not heard from is remembered when room is needed.
pub const FORGET_AFTER: Duration = Duration::from_secs(3_600);
/// Hedging credit a fresh book starts with (three hedges).
pub const HEDGE_CREDIT_START: u32 = 30;
/// The most hedging credit saved up (ten hedges).
pub const HEDGE_CREDIT_MAX: u32 = 100;
/// Credit one request of a plan earns (a tenth of a hedge).
pub const HEDGE_EARN: u32 = 1;
/// Credit one hedge request costs.
pub const HEDGE_COST: u32 = 10;

/// A smoothed latency: mean and mean deviation, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Estimate {
    mean_us: f64,
    dev_us: f64,
    samples: u64,
}

impl Estimate {
    fn add(&mut self, latency: Duration) {
        let s = latency.as_secs_f64() * 1e6;
        if self.samples == 0 {
            self.mean_us = s;
            self.dev_us = s / 2.0;
        } else {
            self.dev_us += ((s - self.mean_us).abs() - self.dev_us) / 4.0;
            self.mean_us += (s - self.mean_us) / 8.0;
        }
        self.samples = self.samples.saturating_add(1);
    }

    fn mean(&self) -> Option<Duration> {
        (self.samples > 0).then(|| micros(self.mean_us))
    }

    fn p95(&self) -> Option<Duration> {
        (self.samples > 0).then(|| micros(self.mean_us + 2.0 * self.dev_us))
    }
}

/// `us` microseconds, to the nanosecond.
fn micros(us: f64) -> Duration {
    // Saturating: `as` maps NaN to 0 and clamps what is out of range.
    Duration::from_nanos((us * 1e3).round() as u64)
}

/// One peer's record.
#[derive(Debug, Clone)]
struct Peer {
    latency: Estimate,
    /// The decaying count of failures, as of `recent_at`.
    recent: f64,
    recent_at: Millis,
    breaker: Breaker,
    /// Caught lying: skipped until then, whatever it answers.
    banned_until: Option<Millis>,
    last_seen: Millis,
    answers: u64,
    failures: u64,
    penalties: u64,
}

impl Peer {
    fn new(breaker: Breaker, now: Millis) -> Self {
        Self {
            latency: Estimate::default(),
            recent: 0.0,
            recent_at: now,
            breaker,
            banned_until: None,
            last_seen: now,
            answers: 0,
            failures: 0,
            penalties: 0,
        }
    }

    /// The recent failures as of `now`.
    fn recent(&self, now: Millis) -> f64 {
        let halves = now.since(self.recent_at).as_secs_f64() / FAILURE_HALF_LIFE.as_secs_f64();
        self.recent * 0.5f64.powf(halves)
    }

    fn add_failures(&mut self, n: u32, now: Millis) {
        self.recent = self.recent(now) + f64::from(n);
        self.recent_at = now;
        self.failures = self.failures.saturating_add(1);
        self.last_seen = now;
    }

    fn is_open(&self, now: Millis) -> bool {
        self.breaker.refuses(now) || self.banned_until.is_some_and(|t| t > now)
    }
}

/// What the book knows of one peer, for reports and dashboards.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerReport<P> {
    /// The peer.
    pub peer: P,
    /// Its smoothed mean latency, once it has answered.
    pub latency: Option<Duration>,
    /// Its p95 latency estimate, once it has answered.
    pub latency_p95: Option<Duration>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The decaying count of recent failures.
    pub recent_failures: f64,
    /// Until when its breaker is open (`None`: closed, or half-open).
    pub open_until: Option<Millis>,
    /// Its breaker's state.
    pub breaker: BreakerState,
    /// Answers recorded.
    pub answers: u64,
    /// Failures recorded (a penalty is one).
    pub failures: u64,
    /// Penalties given.
    pub penalties: u64,
    /// When it was last heard from (or penalised).
    pub last_seen: Millis,
}

/// What the node knows of its peers across searches.
#[derive(Debug)]
pub struct PeerBook<P> {
    peers: HashMap<P, Peer>,
    local: Estimate,
    credit: u32,
    /// The policy of the peers' breakers, and the seed of their jitter (mixed with each
    /// peer).
    breaker: BreakerPolicy,
    seed: u64,
    /// Times a peer's breaker opened (a ban included).
    opened: u64,
}

/// The peers' breaker policy when none is given: this module's constants.
pub fn default_breaker() -> BreakerPolicy {
    BreakerPolicy {
        failures_to_open: FAILURES_TO_OPEN,
        first_open: FIRST_BACKOFF,
        max_open: MAX_BACKOFF,
        jitter_percent: JITTER_PERCENT,
        trial_timeout: TRIAL_TIMEOUT,
    }
}

impl<P> Default for PeerBook<P> {
    fn default() -> Self {
        Self::with_breaker(default_breaker(), 0)
    }
}

impl<P> PeerBook<P> {
    /// An empty book whose peers' breakers follow `policy`, jittered from `seed`.
    pub fn with_breaker(policy: BreakerPolicy, seed: u64) -> Self {
        Self {
            peers: HashMap::new(),
            local: Estimate::default(),
            credit: HEDGE_CREDIT_START,
            breaker: policy,
            seed,
            opened: 0,
        }
    }

    /// Times a peer's breaker opened.
    pub fn breakers_opened(&self) -> u64 {
        self.opened
    }
}

impl<P: Clone + Eq + Hash + Ord + Debug> PeerBook<P> {
    /// An empty book with the starting hedging budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// `peer` answered a request after `latency`.
    pub fn answered(&mut self, peer: &P, latency: Duration, now: Millis) {
        let p = self.entry(peer, now);
        p.latency.add(latency);
        p.breaker.succeeded();
        p.answers = p.answers.saturating_add(1);
        p.last_seen = now;
    }

    /// `peer` was reached outside a search (a dial, a head asked for replication): its
    /// breaker closes; no latency is recorded.
    pub fn reached(&mut self, peer: &P, now: Millis) {
        let p = self.entry(peer, now);
        p.breaker.succeeded();
        p.last_seen = now;
    }

    /// A request to `peer` failed (could not connect, stream error, timeout, an error that
    /// says it is in trouble, a malformed answer).
    pub fn failed(&mut self, peer: &P, now: Millis) {
        let p = self.entry(peer, now);
        p.add_failures(1, now);
        if p.breaker.failed(now) {
            self.opened = self.opened.saturating_add(1);
        }
    }

    /// `peer` did something worse than failing (a hit that failed verification): it counts
    /// as [`PENALTY`] failures, its breaker opens now, and it is banned for [`LIAR_BAN`],
    /// doubling with each further lie up to [`MAX_LIAR_BAN`].
    pub fn penalise(&mut self, peer: &P, now: Millis) {
        let p = self.entry(peer, now);
        p.add_failures(PENALTY, now);
        p.penalties = p.penalties.saturating_add(1);
        let mut opened = false;
        for _ in 0..PENALTY {
            opened |= p.breaker.failed(now);
        }
        // A peer caught lying is not worth a trial soon: the longest back-off at once.
        opened |= p.breaker.open_longest(now);
        let lies = u32::try_from(p.penalties.min(16)).unwrap_or(16);
        let ban = LIAR_BAN.saturating_mul(1 << (lies - 1)).min(MAX_LIAR_BAN);
        p.banned_until = Some(now.after(ban));
        if opened {
            self.opened = self.opened.saturating_add(1);
        }
    }

    /// Whether `peer` is to be skipped: its breaker is open, or it is half-open with a trial
    /// request out.
    pub fn is_open(&self, peer: &P, now: Millis) -> bool {
        self.peers.get(peer).is_some_and(|p| p.is_open(now))
    }

    /// The p95 latency estimate of `peer`, once it has answered.
    pub fn latency_p95(&self, peer: &P) -> Option<Duration> {
        self.peers.get(peer).and_then(|p| p.latency.p95())
    }

    /// The smoothed mean latency of `peer`, once it has answered.
    pub fn latency(&self, peer: &P) -> Option<Duration> {
        self.peers.get(peer).and_then(|p| p.latency.mean())
    }

    /// The hedging credit left ([`HEDGE_COST`] a hedge).
    pub fn hedge_credit(&self) -> u32 {
        self.credit
    }

    /// Every peer remembered, in peer order.
    pub fn report(&self, now: Millis) -> Vec<PeerReport<P>> {
        let mut out: Vec<PeerReport<P>> = self
            .peers
            .iter()
            .map(|(peer, p)| PeerReport {
                peer: peer.clone(),
                latency: p.latency.mean(),
                latency_p95: p.latency.p95(),
                consecutive_failures: p.breaker.failures(),
                recent_failures: p.recent(now),
                open_until: p.breaker.open_until(now),
                breaker: if p.banned_until.is_some_and(|t| t > now) {
                    BreakerState::Open
                } else {
                    p.breaker.state(now)
                },
                answers: p.answers,
                failures: p.failures,
                penalties: p.penalties,
                last_seen: p.last_seen,
            })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// Peers remembered.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is remembered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// This node's own search answered after `latency`.
    pub(super) fn answered_local(&mut self, latency: Duration) {
        self.local.add(latency);
    }

    /// How long a request to `holder` may take before it is hedged.
    pub(super) fn hedge_delay(&self, holder: &super::Holder<P>) -> Duration {
        let p95 = match holder {
            super::Holder::Local => self.local.p95(),
            super::Holder::Peer(peer) => self.latency_p95(peer),
        };
        p95.unwrap_or(DEFAULT_LATENCY).max(MIN_HEDGE_DELAY)
    }

    /// How long a request to `holder` may stay silent before the shards it asked for that
    /// another holder could answer are asked of that holder: [`SILENCE_FACTOR`] times its
    /// hedge delay, at least [`MIN_SILENCE`].
    pub(super) fn silence_limit(&self, holder: &super::Holder<P>) -> Duration {
        (self.hedge_delay(holder) * SILENCE_FACTOR).max(MIN_SILENCE)
    }

    /// What asking `peer` costs before load: its mean latency in milliseconds (or
    /// [`DEFAULT_LATENCY`]) times one plus its recent failures.
    pub(super) fn cost(&self, peer: &P, now: Millis) -> f64 {
        let (latency, recent) = match self.peers.get(peer) {
            Some(p) => (p.latency.mean(), p.recent(now)),
            None => (None, 0.0),
        };
        // A floor, so a peer answering in no time still ranks by its failures and load.
        let ms = (latency.unwrap_or(DEFAULT_LATENCY).as_secs_f64() * 1e3).max(0.1);
        ms * (1.0 + recent)
    }

    /// A request is being sent to `peer`: a half-open peer's first request is its trial.
    pub(super) fn sent(&mut self, peer: &P, now: Millis) {
        let p = self.entry(peer, now);
        // Refused when open (an open peer is still asked when no other holder is left);
        // the trial when half-open.
        let _ = p.breaker.begin(now);
    }

    /// A search's plan sent a request: the budget earns [`HEDGE_EARN`].
    pub(super) fn earn_hedge(&mut self) {
        self.credit = self.credit.saturating_add(HEDGE_EARN).min(HEDGE_CREDIT_MAX);
    }

    /// Takes the cost of one hedge from the budget, if it has it.
    pub(super) fn spend_hedge(&mut self) -> bool {
        if self.credit < HEDGE_COST {
            return false;
        }
        self.credit -= HEDGE_COST;
        true
    }

    /// The record of `peer`, made (room made first) if there is none.
    fn entry(&mut self, peer: &P, now: Millis) -> &mut Peer {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_PEERS {
            self.make_room(now);
        }
        let (policy, seed) = (self.breaker, self.seed);
        self.peers.entry(peer.clone()).or_insert_with(|| {
            let mut h = DefaultHasher::new();
            peer.hash(&mut h);
            Peer::new(Breaker::new(policy, seed ^ h.finish()), now)
        })
    }

    /// Forgets the peers not heard from for [`FORGET_AFTER`]; if that frees nothing, the
    /// eighth least recently heard from.
    fn make_room(&mut self, now: Millis) {
        self.peers
            .retain(|_, p| now.since(p.last_seen) < FORGET_AFTER);
        if self.peers.len() < MAX_PEERS {
            return;
        }
        let mut seen: Vec<(Millis, P)> = self
            .peers
            .iter()
            .map(|(peer, p)| (p.last_seen, peer.clone()))
            .collect();
        seen.sort();
        for (_, peer) in seen.into_iter().take(MAX_PEERS / 8) {
            self.peers.remove(&peer);
        }
    }
}
