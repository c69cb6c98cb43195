//! `/ipvec/search/1.0.0` ([`ipvec_protocol::search`]): answering peers' searches of the
//! shards this node holds, and asking a peer to search its shards.
//!
//! One request and one answer per stream. Serving keeps remote searches from crowding out
//! the node's own work:
//! - at most [`MAX_WAITING`] streams are taken at once (being read, waiting or running; a
//!   stream beyond that is closed unanswered, as the head protocol does), and at most
//!   [`MAX_RUNNING`] searches run; one that cannot start, or finish, by its own deadline is
//!   answered `busy`;
//! - each peer may send `p2p.search_rate_per_peer` requests a second (bursts of twice as
//!   many); beyond that it is answered `rate_limited`;
//! - a malformed request is answered `bad_request`; a peer refused [`STRIKES`] times
//!   (malformed, or over its rate) without pausing until its budget is full again, or sending
//!   an oversized frame, is reported as misbehaving — disconnected and refused for
//!   [`BAN`](super::BAN), as Bitswap does.
//!
//! The node runs the searches themselves on its background pool, below its own searches.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::{future::BoxFuture, StreamExt};
use ipvec_protocol::search::{ErrorCode, SearchAnswer, SearchRequest, ShardError};
use libp2p::{PeerId, StreamProtocol};
use tokio::time::Instant;

use super::{bitswap::Misbehaving, frame};
use crate::{
    limits::bucket::{Buckets, Rate},
    tasks::Tasks,
};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(ipvec_protocol::search::PROTOCOL);
/// Streams taken at once, being read, waiting or running; more are closed unanswered.
pub const MAX_WAITING: usize = 64;
/// Remote searches running at once.
pub const MAX_RUNNING: usize = 2;
/// Refusals (malformed, or over the rate) after which a peer that has not paused is banned.
pub const STRIKES: u32 = 50;
/// How long reading a request may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Peers whose rates are remembered at most (the quietest are forgotten first).
const MAX_PEERS: usize = 4_096;

/// Searches the shards a request names, on this node.
pub type SearchSource =
    Arc<dyn Fn(PeerId, SearchRequest) -> BoxFuture<'static, SearchAnswer> + Send + Sync>;

/// Hears of every request served: `true` when it was answered, `false` when refused (over
/// the rate, malformed, busy, or by the source) or its peer banned.
pub type Served = Arc<dyn Fn(bool) + Send + Sync>;

/// Per-peer token buckets ([`Buckets`]) with each peer's strikes kept beside its budget.
#[derive(Debug)]
struct Rates {
    buckets: Buckets<PeerId, u32>,
}

/// What the rate limiter makes of a request.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Yes,
    OverRate,
    Ban,
}

impl Rates {
    /// `rate` requests a second per peer, in bursts of twice as many.
    fn new(rate: u32) -> Self {
        let rate = rate.max(1);
        let rate = Rate::new(rate, rate.saturating_mul(2));
        Self {
            buckets: Buckets::new(rate, MAX_PEERS),
        }
    }

    fn admit(&mut self, peer: PeerId, now: Instant) -> Admit {
        let taken = self.buckets.take(peer, 1.0, now.into_std());
        if taken.rested {
            // Quiet long enough to refill the whole burst: its refusals are forgiven.
            *taken.extra = 0;
        }
        match taken.verdict.admitted() {
            true => Admit::Yes,
            false => strike(taken.extra),
        }
    }

    /// Counts a refusal of `peer` (see [`strike`]).
    fn strike(&mut self, peer: PeerId) -> Admit {
        self.buckets
            .extra_mut(&peer)
            .map_or(Admit::OverRate, strike)
    }
}

/// Counts a refusal in `strikes`; [`Admit::Ban`] at the [`STRIKES`]th since the peer last
/// paused.
fn strike(strikes: &mut u32) -> Admit {
    *strikes += 1;
    if *strikes >= STRIKES {
        *strikes = 0;
        Admit::Ban
    } else {
        Admit::OverRate
    }
}

/// Answers search requests from `source` on the streams peers open to us through `streams`,
/// within the limits above, on tasks of `tasks`; `limited` counts the requests refused over
/// their rate.
pub fn serve(
    streams: &super::streams::Streams,
    source: SearchSource,
    served: Served,
    rate_per_peer: u32,
    limited: Arc<AtomicU64>,
    misbehaving: Misbehaving,
    tasks: &Arc<Tasks>,
) {
    let Ok(mut incoming) = streams.accept(PROTOCOL) else {
        tracing::error!("cannot accept search requests");
        return;
    };
    let owner = tasks.clone();
    tasks.spawn(async move {
        let waiting = Arc::new(tokio::sync::Semaphore::new(MAX_WAITING));
        let running = Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING));
        let rates = Arc::new(Mutex::new(Rates::new(rate_per_peer)));
        while let Some((peer, mut stream)) = incoming.next().await {
            let Ok(taken) = waiting.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "too many search requests at once; refused one");
                served(false);
                continue;
            };
            let (source, misbehaving, served) =
                (source.clone(), misbehaving.clone(), served.clone());
            let (running, rates, limited) = (running.clone(), rates.clone(), limited.clone());
            owner.spawn(async move {
                let _taken = taken;
                let rates = || rates.lock().unwrap_or_else(|p| p.into_inner());
                let read = tokio::time::timeout(
                    READ_TIMEOUT,
                    frame::read(&mut stream, ipvec_protocol::search::MAX_REQUEST_BYTES),
                );
                let bytes = match read.await {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "search request refused");
                        if matches!(e, frame::FrameError::TooLarge { .. }) {
                            misbehaving(peer);
                        }
                        return;
                    }
                    Err(_) => return,
                };
                let admitted = rates().admit(peer, Instant::now());
                if admitted != Admit::Yes {
                    limited.fetch_add(1, Ordering::Relaxed);
                }
                let answer = match admitted {
                    Admit::Ban => {
                        served(false);
                        misbehaving(peer);
                        return;
                    }
                    Admit::OverRate => SearchAnswer::refused(ShardError::new(
                        ErrorCode::RateLimited,
                        "over this peer's searches a second for you (p2p.search_rate_per_peer); slow down",
                    )),
                    Admit::Yes => match SearchRequest::decode(&bytes) {
                        Ok(request) => answer(peer, request, &source, &running).await,
                        Err(e) => {
                            if rates().strike(peer) == Admit::Ban {
                                served(false);
                                misbehaving(peer);
                                return;
                            }
                            SearchAnswer::refused(ShardError::new(
                                ErrorCode::BadRequest,
                                format!("the search request is malformed: {e}"),
                            ))
                        }
                    },
                };
                served(answer.refused.is_none());
                let written = match answer.encode() {
                    Ok(bytes) => frame::write_last(&mut stream, &bytes).await,
                    Err(e) => {
                        let refused = SearchAnswer::refused(ShardError::new(
                            ErrorCode::Internal,
                            format!("the answer could not be sent: {e}; ask for fewer hits or no metadata"),
                        ));
                        match refused.encode() {
                            Ok(bytes) => frame::write_last(&mut stream, &bytes).await,
                            Err(e) => Err(e.to_string()),
                        }
                    }
                };
                if let Err(e) = written {
                    tracing::debug!(%peer, error = %e, "a search answer was not delivered");
                }
            });
        }
    });
}

/// Runs one admitted request: a turn to run, then the search, both within the request's
/// deadline.
async fn answer(
    peer: PeerId,
    request: SearchRequest,
    source: &SearchSource,
    running: &Arc<tokio::sync::Semaphore>,
) -> SearchAnswer {
    let busy = |why: &str| SearchAnswer::refused(ShardError::new(ErrorCode::Busy, why));
    let deadline = Instant::now() + Duration::from_millis(u64::from(request.deadline_ms));
    let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, running.clone().acquire_owned()).await
    else {
        return busy("this peer could not start the search before its deadline");
    };
    tokio::time::timeout_at(deadline, source(peer, request))
        .await
        .unwrap_or_else(|_| busy("the search did not finish before its deadline"))
}

/// Asks `peer` to run `request`, waiting at most `timeout`; its answer, decoded and checked.
pub async fn ask(
    mut streams: super::streams::Streams,
    peer: PeerId,
    request: &SearchRequest,
    timeout: Duration,
) -> Result<SearchAnswer, super::NetError> {
    let failed = |reason: String| super::NetError::Ask {
        peer,
        protocol: PROTOCOL,
        reason,
    };
    let bytes = request
        .encode()
        .map_err(|e| super::NetError::Config(e.to_string()))?;
    let exchange = async {
        let mut stream = streams.open(peer, PROTOCOL).await?;
        frame::write(&mut stream, &bytes).await.map_err(|e| {
            failed(frame::unanswered(
                peer,
                "search",
                frame::FrameError::Closed(e),
            ))
        })?;
        let answer = frame::read(&mut stream, ipvec_protocol::search::MAX_ANSWER_BYTES)
            .await
            .map_err(|e| failed(frame::unanswered(peer, "search", e)))?;
        SearchAnswer::decode(&answer, request.k).map_err(|e| {
            failed(format!(
                "{peer} answered the search with a malformed answer: {e}"
            ))
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(failed(format!(
                "{peer} did not answer the search within {} ms",
                timeout.as_millis()
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_over_its_rate_is_refused_then_banned_and_others_are_not() {
        let mut rates = Rates::new(50);
        let Rate {
            per_second: rate,
            burst,
        } = rates.buckets.rate();
        let (noisy, quiet) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        for _ in 0..burst as usize {
            assert_eq!(rates.admit(noisy, now), Admit::Yes);
        }
        assert_eq!(rates.admit(noisy, now), Admit::OverRate);
        assert_eq!(rates.admit(quiet, now), Admit::Yes);
        // The rate refills with time.
        let later = now + Duration::from_millis(100);
        let refilled = (0..10)
            .filter(|_| rates.admit(noisy, later) == Admit::Yes)
            .count();
        assert_eq!(refilled, (rate / 10.0) as usize);
        // Over its rate without pausing: banned at the STRIKES-th refusal, even with a request
        // let through now and then as the budget refills.
        let mut refusals = 1 + 5;
        let mut at = later;
        let banned = loop {
            at += Duration::from_millis(2);
            match rates.admit(noisy, at) {
                Admit::Yes => {}
                Admit::OverRate => refusals += 1,
                Admit::Ban => break refusals + 1,
            }
            assert!(refusals < 10 * STRIKES, "never banned");
        };
        assert_eq!(banned, STRIKES);
        assert_eq!(rates.admit(quiet, at), Admit::Yes);
        // A peer that pauses until its budget is full again starts with no strikes.
        let calm = at + Duration::from_secs_f64(burst / rate);
        assert_eq!(rates.admit(noisy, calm), Admit::Yes);
        for _ in 0..burst as usize - 1 {
            rates.admit(noisy, calm);
        }
        let again: Vec<Admit> = (0..STRIKES - 1).map(|_| rates.admit(noisy, calm)).collect();
        assert!(!again.contains(&Admit::Ban));
    }
}
