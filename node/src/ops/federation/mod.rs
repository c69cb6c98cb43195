//! Federated search: a search of a collection answered by the peers that hold its shards.
//!
//! - `ask`: the asking side. The shards' holders come from the DHT (providers of each shard's
//!   key, and of the collection key for whole replicas; cached for [`ask::HOLDERS_TTL`]) and
//!   from this node's own holding; [`crate::federation::Planner`] decides whom to ask, when
//!   to hedge and fail over, and merges; this adapter sends its requests (a local search for
//!   this node's shards) and feeds it answers and time.
//! - `verify`: checking hits against a signed head this node trusts (what that proves, and
//!   what it cannot).
//! - `serve`: answering peers' searches of the shards held here (`/ipvec/search/1.0.0`), on
//!   the background pool, each shard answered with the root and version it was searched at.

pub mod ask;
mod serve;
mod verify;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Instant,
};

use libp2p::PeerId;

use super::Node;
use crate::{
    cluster::Millis,
    federation::{Holder, PeerBook},
};

/// What a node keeps between federated searches.
#[derive(Debug)]
pub(super) struct State {
    /// Latency, failures and circuit breakers of the peers asked.
    pub(super) book: Mutex<PeerBook<PeerId>>,
    /// The holders found of each collection (by id), and when.
    holders: Mutex<HashMap<String, (Instant, Holders)>>,
}

impl State {
    /// Nothing known yet; the peers' breakers follow `policy`.
    pub(super) fn new(policy: crate::outbound::BreakerPolicy) -> Self {
        Self {
            book: Mutex::new(PeerBook::with_breaker(policy, rand::random())),
            holders: Mutex::default(),
        }
    }
}

/// A collection's shard count, who holds each shard, and the manifest of the signed head
/// hits are verified against.
#[derive(Debug, Clone)]
struct Holders {
    shards: u32,
    by_shard: BTreeMap<u32, Vec<Holder<PeerId>>>,
    trusted: ipvec_protocol::manifest::Manifest,
    /// The sequence of the signed head `trusted` comes from.
    trusted_seq: u64,
}

impl Node {
    /// What federated searches learnt of each peer asked.
    pub(in crate::ops) fn federation_peers(
        &self,
    ) -> HashMap<PeerId, ipvec_protocol::api::PeerSearches> {
        let now = self.federation_now();
        let book = self.inner.federation.book.lock();
        let book = book.unwrap_or_else(|p| p.into_inner());
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        book.report(now)
            .into_iter()
            .map(|r| {
                let skipped = book.is_open(&r.peer, now);
                (
                    r.peer,
                    ipvec_protocol::api::PeerSearches {
                        latency_ms: r.latency.map(ms),
                        latency_p95_ms: r.latency_p95.map(ms),
                        answers: r.answers,
                        failures: r.failures,
                        penalties: r.penalties,
                        skipped,
                    },
                )
            })
            .collect()
    }

    /// Now on the clock of federated searches (the peer book keeps times across searches):
    /// milliseconds since the node started.
    pub(in crate::ops) fn federation_now(&self) -> Millis {
        Millis::from_duration(self.inner.started.elapsed())
    }
}
