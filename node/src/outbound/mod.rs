//! Calls to other machines: retries and circuit breakers, one implementation for all.
//!
//! - `backoff`: [`Backoff`], the sans-io retry decision (exponential, jittered, bounded),
//!   used by the bridges and the embedding client.
//! - `breaker`: [`Breaker`], the sans-io circuit breaker of one target (time passed in).
//! - `set`: [`BreakerSet`], the breakers of many targets in bounded memory.
//!
//! [`Outbound`] is the thin handle that the embedding client and the bridges share: a
//! [`BreakerSet`] per kind of target under a lock, with tokio's clock for time (so tests
//! pause it). Peers keep their breakers in the federation's peer book, which embeds the same
//! [`Breaker`]. One process-wide handle ([`Outbound::shared`]) is configured from the
//! `[outbound]` section when a command or the daemon starts.

mod backoff;
mod breaker;
mod set;

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

pub use backoff::{Backoff, Failure, Jitter, RetryPolicy};
pub use breaker::{Breaker, BreakerPolicy, BreakerState, Refusal};
pub use set::{BreakerSet, TargetReport, DEFAULT_CAPACITY};

use crate::{cluster::Millis, repo::OutboundConfig};

/// What kind of machine a call goes to; a label in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    /// Another ipvec node (federated search, replication, Bitswap).
    Peer,
    /// An embedding server.
    Embedding,
    /// A vector store a bridge moves collections to or from.
    Bridge,
}

impl TargetKind {
    /// Every kind, in label order.
    pub const ALL: [TargetKind; 3] = [Self::Bridge, Self::Embedding, Self::Peer];

    /// Its label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Embedding => "embedding",
            Self::Bridge => "bridge",
        }
    }
}

/// A call refused at once because its target's breaker is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} {target} is not called for now: its circuit breaker opened after {failures} failures \
     in a row; it will be tried again in {}",
    .kind.name(),
    format_wait(.retry_in)
)]
pub struct OpenBreaker {
    /// The kind of target.
    pub kind: TargetKind,
    /// The target (a URL, a peer id).
    pub target: String,
    /// Failures in a row so far.
    pub failures: u32,
    /// How long until a trial call is let through.
    pub retry_in: Duration,
}

fn format_wait(d: &Duration) -> String {
    if *d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The breakers of the embedding servers and bridged stores: a cloneable handle.
#[derive(Debug, Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Time zero of this handle's clock.
    origin: tokio::time::Instant,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    retry: RetryPolicy,
    embedding: BreakerSet<String>,
    bridge: BreakerSet<String>,
}

impl State {
    fn set(&mut self, kind: TargetKind) -> &mut BreakerSet<String> {
        match kind {
            // Peers keep their breakers in the peer book; none are called through here.
            TargetKind::Embedding | TargetKind::Peer => &mut self.embedding,
            TargetKind::Bridge => &mut self.bridge,
        }
    }
}

/// The process-wide handle.
static SHARED: OnceLock<Outbound> = OnceLock::new();

impl Outbound {
    /// A handle whose breakers and retries follow `config`.
    pub fn new(config: &OutboundConfig) -> Self {
        let policy = config.breaker();
        let seed = rand::random();
        Self {
            inner: Arc::new(Inner {
                origin: tokio::time::Instant::now(),
                state: Mutex::new(State {
                    retry: config.retry(),
                    embedding: BreakerSet::new(policy, seed, DEFAULT_CAPACITY),
                    bridge: BreakerSet::new(policy, seed, DEFAULT_CAPACITY),
                }),
            }),
        }
    }

    /// The process-wide handle (with the default settings until [`Outbound::configure`]).
    pub fn shared() -> &'static Outbound {
        SHARED.get_or_init(|| Outbound::new(&OutboundConfig::default()))
    }

    /// Applies `config` to this handle; breakers already open keep their state until they
    /// close.
    pub fn configure(&self, config: &OutboundConfig) {
        let mut state = self.lock();
        state.retry = config.retry();
        for kind in [TargetKind::Embedding, TargetKind::Bridge] {
            let set = state.set(kind);
            if set.policy() != config.breaker() {
                *set = BreakerSet::new(config.breaker(), rand::random(), set.capacity());
            }
        }
    }

    /// Now on this handle's clock.
    pub fn now(&self) -> Millis {
        Millis::from_duration(tokio::time::Instant::now().duration_since(self.inner.origin))
    }

    /// The retry policy of bridge requests.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.lock().retry
    }

    /// A call to `target` is about to be made: refused with an error naming it if its
    /// breaker is open.
    pub fn begin(&self, kind: TargetKind, target: &str) -> Result<(), OpenBreaker> {
        let now = self.now();
        let mut state = self.lock();
        state
            .set(kind)
            .begin(&target.to_string(), now)
            .map_err(|r| OpenBreaker {
                kind,
                target: target.to_string(),
                failures: r.failures,
                retry_in: r.retry_at.since(now),
            })
    }

    /// How long until a call to `target` would be let through (zero if it would be now).
    pub fn wait(&self, kind: TargetKind, target: &str) -> Duration {
        let now = self.now();
        let mut state = self.lock();
        match state.set(kind).check(&target.to_string(), now) {
            Ok(()) => Duration::ZERO,
            Err(refusal) => refusal.retry_at.since(now),
        }
    }

    /// A call to `target` succeeded.
    pub fn succeeded(&self, kind: TargetKind, target: &str) {
        self.lock().set(kind).succeeded(&target.to_string());
    }

    /// A call to `target` failed; logs when this opens its breaker.
    pub fn failed(&self, kind: TargetKind, target: &str) {
        let now = self.now();
        let mut state = self.lock();
        let set = state.set(kind);
        if set.failed(&target.to_string(), now) {
            let report = set.report(now);
            let until = report
                .iter()
                .find(|r| r.target == target)
                .and_then(|r| r.open_until);
            tracing::warn!(
                kind = kind.name(),
                %target,
                open_for = ?until.map(|u| u.since(now)),
                "circuit breaker opened after repeated failures"
            );
        }
    }

    /// Every target of `kind` remembered, with its breaker.
    pub fn report(&self, kind: TargetKind) -> Vec<TargetReport<String>> {
        let now = self.now();
        self.lock().set(kind).report(now)
    }

    /// Times a breaker of `kind` opened.
    pub fn opened(&self, kind: TargetKind) -> u64 {
        self.lock().set(kind).opened()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_fails_fast_naming_the_target_and_when_it_is_tried_again() {
        let outbound = Outbound::new(&OutboundConfig::default());
        let url = "http://127.0.0.1:9/api/embed";
        for _ in 0..3 {
            outbound.begin(TargetKind::Embedding, url).unwrap();
            outbound.failed(TargetKind::Embedding, url);
        }
        let err = outbound.begin(TargetKind::Embedding, url).unwrap_err();
        assert_eq!((err.failures, err.retry_in), (3, Duration::from_secs(1)));
        let text = err.to_string();
        assert!(text.contains(url) && text.contains("3 failures"), "{text}");
        assert!(
            outbound.begin(TargetKind::Bridge, url).is_ok(),
            "kinds are apart"
        );
        assert_eq!(outbound.opened(TargetKind::Embedding), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            outbound.begin(TargetKind::Embedding, url).is_ok(),
            "the trial"
        );
        assert_eq!(
            outbound.report(TargetKind::Embedding)[0].state,
            BreakerState::HalfOpen
        );
        outbound.succeeded(TargetKind::Embedding, url);
        assert!(outbound.report(TargetKind::Embedding).is_empty());
    }
}
