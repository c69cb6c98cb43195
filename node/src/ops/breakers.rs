//! The circuit breakers of outbound calls as the node shows them: metrics at scrape time.
//! Peers' breakers live in the federation's peer book; those of embedding servers and
//! bridged stores in the process-wide [`Outbound`] handle.

use libp2p::PeerId;

use super::{
    metrics::{BreakerLabels, KindLabels},
    Node,
};
use crate::{
    cluster::Millis,
    outbound::{BreakerState, Outbound, TargetKind},
};

impl Node {
    /// The peers' breakers that are not closed, and the times one opened.
    pub(crate) fn peer_breakers(&self) -> (Vec<(PeerId, BreakerState)>, u64) {
        let now = self.federation_now();
        let book = self.inner.federation.book.lock();
        let book = book.unwrap_or_else(|p| p.into_inner());
        let states = book
            .report(now)
            .into_iter()
            .filter(|r| r.breaker != BreakerState::Closed)
            .map(|r| (r.peer, r.breaker))
            .collect();
        (states, book.breakers_opened())
    }

    /// Calls the peer book, on the federation's clock.
    fn with_book<T>(
        &self,
        f: impl FnOnce(&mut crate::federation::PeerBook<PeerId>, Millis) -> T,
    ) -> T {
        let now = self.federation_now();
        let mut book = self
            .inner
            .federation
            .book
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut book, now)
    }

    /// A call to `peer` outside a search (a dial, a head asked for) failed.
    pub(super) fn peer_failed(&self, peer: &PeerId) {
        self.with_book(|book, now| book.failed(peer, now));
    }

    /// A call to `peer` outside a search went through.
    pub(super) fn peer_reached(&self, peer: &PeerId) {
        self.with_book(|book, now| book.reached(peer, now));
    }

    /// Whether `peer`'s breaker is open (or its trial out): it is to be tried last.
    pub(super) fn peer_refused(&self, peer: &PeerId) -> bool {
        self.with_book(|book, now| book.is_open(peer, now))
    }

    /// `peers` with those whose breaker is open moved to the end, the order otherwise kept.
    pub(super) fn open_peers_last(&self, peers: &[PeerId]) -> Vec<PeerId> {
        let (closed, open): (Vec<PeerId>, Vec<PeerId>) =
            peers.iter().copied().partition(|p| !self.peer_refused(p));
        closed.into_iter().chain(open).collect()
    }

    /// The state of a peer's breaker, as the API tells it.
    pub(super) fn breaker_out(state: BreakerState) -> ipvec_protocol::api::BreakerStateOut {
        use ipvec_protocol::api::BreakerStateOut as Out;
        match state {
            BreakerState::Closed => Out::Closed,
            BreakerState::Open => Out::Open,
            BreakerState::HalfOpen => Out::HalfOpen,
        }
    }

    /// Sets `ipvec_breaker_state` and `ipvec_breaker_opened_total`.
    pub(super) fn set_breaker_metrics(&self) {
        let metrics = &self.inner.metrics;
        let outbound = Outbound::shared();
        let (peers, peers_opened) = self.peer_breakers();
        metrics.breaker_state.clear();
        let set = |kind: TargetKind, target: String, state: BreakerState| {
            metrics
                .breaker_state
                .get_or_create(&BreakerLabels {
                    kind: kind.name().to_string(),
                    target,
                })
                .set(i64::from(state.code()));
        };
        for (peer, state) in peers {
            set(TargetKind::Peer, peer.to_string(), state);
        }
        for kind in [TargetKind::Embedding, TargetKind::Bridge] {
            for r in outbound.report(kind) {
                set(kind, r.target, r.state);
            }
        }
        for kind in TargetKind::ALL {
            let opened = match kind {
                TargetKind::Peer => peers_opened,
                _ => outbound.opened(kind),
            };
            metrics
                .breaker_opened
                .get_or_create(&KindLabels {
                    kind: kind.name().to_string(),
                })
                .inner()
                .fetch_max(opened, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
