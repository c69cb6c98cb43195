//! Bitswap 1.2.0 (`/ipfs/bitswap/1.2.0`), the block exchange IPFS nodes speak, so Kubo and
//! Helia can fetch our blocks and we theirs.
//!
//! Every message travels on a stream of its own kind: a peer that wants blocks sends its
//! wantlist on a stream it opens; the answer (blocks, HAVE and DONT_HAVE presences) comes
//! back on a stream the other side opens. Messages are framed by an unsigned varint length.
//!
//! Serving: wants are answered from the block store, at most [`SERVING_PER_PEER`] messages of
//! a peer at a time (its stream is not read further meanwhile) and answers written as they
//! fill a message, so a long wantlist never sits in memory whole.
//!
//! Fetching: this module is a thin adapter over the sans-io cores of
//! [`crate::cluster`]: [`Bitswap::fetch_dag`] walks a DAG as a
//! [`DagWalk`](crate::cluster::walk::DagWalk) schedules it (up to [`PARALLEL_WANTS`] blocks
//! at once), and every block is wanted through one
//! [`WantLedger`](crate::cluster::wants::WantLedger), which decides whom to ask (no peer for
//! more than [`WANTS_PER_PEER`] at once, across fetches), when to ask again
//! ([`REBROADCAST`]), when to give up ([`WANT_TIMEOUT`]) and what a block that arrives is to
//! us; one task keeps its timers on tokio's clock. Every received block is hashed under its
//! prefix and stored only if the CID that gives is one we asked for.
//!
//! Tasks: the accept loop, one task per inbound stream, one per message being answered, one
//! per peer with wants to send and the ledger's timer all belong to the network's task set; they
//! stop when its token is cancelled, and so does every fetch in flight
//! ([`FetchError::Stopped`]). Maps kept per peer are bounded: outbound streams and limits of
//! idle peers are forgotten past [`MAX_PEERS_KEPT`] peers, and so are the block counters of
//! the peers that exchanged the fewest blocks.
//!
//! Misbehaviour: a malformed or oversized message gets its sender disconnected and refused
//! for a while at once. So does a wrong block — one whose CID we never asked that peer for —
//! but only after [`GRACE`] (see [`crate::cluster::wants`] for why). Late copies of blocks
//! asked of several peers are counted as duplicates, never held against anyone.
//!
//! # Layout
//! - [`message`]: the protobuf messages and their limits.
//! - `serve`: reading a peer's messages and answering its wants from the store.
//! - `send`: the long-lived outbound streams messages go out on, and the wants queued for
//!   each peer.
//! - `fetch`: fetching blocks and DAGs, driving the want ledger.

mod fetch;
pub mod message;
mod send;
mod serve;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use cid::Cid;
use libp2p::{PeerId, StreamProtocol};

pub use crate::cluster::{
    walk::{FetchTotals, PARALLEL_WANTS},
    wants::{GRACE, REBROADCAST, WANTS_PER_PEER, WANT_TIMEOUT},
};
use crate::{cluster::wants::WantError, tasks::Tasks};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// Messages of one peer handled at once; its streams wait meanwhile.
pub const SERVING_PER_PEER: usize = 8;
/// Peers whose idle outbound streams, limits and counters are kept; past this many, idle
/// peers are forgotten.
pub const MAX_PEERS_KEPT: usize = 1024;

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Blocks we sent.
    pub blocks_sent: AtomicU64,
    /// Blocks we received and stored.
    pub blocks_received: AtomicU64,
    /// Bytes of blocks we received and stored.
    pub bytes_received: AtomicU64,
    /// Messages or blocks refused (malformed, unsolicited, wrong hash).
    pub refused: AtomicU64,
    /// Late or second copies of blocks asked of several peers, dropped.
    pub duplicates: AtomicU64,
    /// Peers disconnected and refused for a while for breaking the protocol or sending
    /// wrong blocks.
    pub peers_banned: AtomicU64,
    /// Blocks sent to and received from each peer.
    by_peer: Mutex<HashMap<PeerId, PeerBlocks>>,
}

/// Blocks exchanged with one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerBlocks {
    /// Blocks we sent it.
    pub sent: u64,
    /// Blocks it sent us that we asked for and stored.
    pub received: u64,
}

impl Stats {
    /// Blocks exchanged with `peer` so far.
    pub fn of_peer(&self, peer: &PeerId) -> PeerBlocks {
        self.by_peer
            .lock()
            .map(|m| m.get(peer).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    fn count(&self, peer: PeerId, sent: u64, received: u64) {
        if let Ok(mut m) = self.by_peer.lock() {
            if m.len() >= MAX_PEERS_KEPT && !m.contains_key(&peer) {
                // The peer that exchanged the fewest blocks makes room.
                if let Some(least) = m
                    .iter()
                    .min_by_key(|(_, b)| b.sent + b.received)
                    .map(|(p, _)| *p)
                {
                    m.remove(&least);
                }
            }
            let blocks = m.entry(peer).or_default();
            blocks.sent += sent;
            blocks.received += received;
        }
    }
}

/// A fetch failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No peer had the block.
    #[error("no peer in the session has block {0}")]
    NotFound(Cid),
    /// Waiting for the block timed out.
    #[error("timed out waiting for block {0}")]
    Timeout(Cid),
    /// There is no peer to ask.
    #[error("no peers to fetch from; connect to one first (ipvec connect) or pass --from")]
    NoPeers,
    /// The CID is not one whose blocks can be checked (ipvec verifies BLAKE3 only).
    #[error("cannot fetch {0}: {1}")]
    Unsupported(Cid, String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
    /// The node is shutting down.
    #[error("the peer-to-peer layer stopped (the node is shutting down); fetch again once it runs: blocks already fetched are kept")]
    Stopped,
}

impl From<WantError<PeerId>> for FetchError {
    fn from(e: WantError<PeerId>) -> Self {
        match e {
            WantError::NotFound { cid, .. } => FetchError::NotFound(cid),
            WantError::Timeout { cid, .. } => FetchError::Timeout(cid),
            WantError::NoPeers { .. } => FetchError::NoPeers,
        }
    }
}

/// Called with a peer that broke the protocol (an oversized or undecodable message): the
/// network disconnects it and refuses it for a while.
pub type Misbehaving = Arc<dyn Fn(PeerId) + Send + Sync>;

struct Inner<S> {
    store: S,
    streams: Mutex<crate::net::streams::Streams>,
    outbound: send::Outbound,
    /// Wants and cancels waiting for their peer's sender task.
    outbox: send::Outbox,
    wants: Mutex<fetch::Wants>,
    /// Wakes the ledger's timer when a want may have moved its next deadline.
    timer: tokio::sync::Notify,
    /// Messages of each peer being answered ([`SERVING_PER_PEER`]).
    serving: serve::PeerLimits,
    /// Wants each peer may send a second (`limits.peer_want_rate`).
    want_rate: Arc<crate::limits::peers::PeerRate>,
    misbehaving: Misbehaving,
    stats: Stats,
    /// The network's tasks; its token stops serving and fetching.
    tasks: Arc<Tasks>,
}

/// The Bitswap engine: a cloneable handle.
pub struct Bitswap<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Bitswap<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Bitswap<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitswap")
            .field("stats", &self.inner.stats)
            .finish()
    }
}

impl<S: crate::store::BlockStore + Clone + Send + Sync + 'static> Bitswap<S> {
    /// Starts serving `store` over the streams `streams` accepts, and opening its own with
    /// it, on tasks of `tasks` (which stop, and stop every fetch, when its token is
    /// cancelled). `misbehaving` hears of peers that break the protocol.
    pub fn start(
        store: S,
        streams: crate::net::streams::Streams,
        misbehaving: Misbehaving,
        tasks: Arc<Tasks>,
    ) -> Self {
        let incoming = streams.accept(PROTOCOL);
        let bitswap = Bitswap {
            inner: Arc::new(Inner {
                store,
                streams: Mutex::new(streams),
                outbound: Default::default(),
                outbox: Default::default(),
                wants: Mutex::new(fetch::Wants::new()),
                timer: Default::default(),
                serving: Default::default(),
                want_rate: Arc::new(crate::limits::peers::PeerRate::new(0)),
                misbehaving,
                stats: Stats::default(),
                tasks,
            }),
        };
        match incoming {
            Ok(incoming) => {
                bitswap.inner.tasks.spawn(bitswap.clone().accept(incoming));
            }
            Err(e) => tracing::error!(error = %e, "cannot accept bitswap streams"),
        }
        bitswap.inner.tasks.spawn(bitswap.clone().keep_time());
        bitswap
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The wants each peer may send a second (unlimited until set).
    pub fn want_rate(&self) -> &crate::limits::peers::PeerRate {
        &self.inner.want_rate
    }

    /// Disconnects `peer` and refuses it for a while.
    fn ban(&self, peer: PeerId) {
        self.inner
            .stats
            .peers_banned
            .fetch_add(1, Ordering::Relaxed);
        (self.inner.misbehaving)(peer);
    }
}
