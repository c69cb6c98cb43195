//! The node itself: its facts, its long operations, its log, and the network as it sees it.

use serde::{Deserialize, Serialize};

/// Store totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreInfo {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// This node's peer id.
    pub peer_id: String,
    /// ipvec's version.
    pub version: String,
    /// The repository folder.
    pub repo: String,
    /// Collections in the repository.
    pub collections: usize,
    /// The block store.
    pub store: StoreInfo,
    /// Peer-to-peer addresses it listens on, for a node that reports them here (this one
    /// reports them in `GET /v1/id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen_addresses: Vec<String>,
    /// Seconds since this node (daemon or command) opened the repository. This node always
    /// sends it.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// The API address the daemon announces, for a node that reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// `GET /ready`: whether the node serves, part by part (200 when every part is ready, else
/// 503 with the same body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `ready`, or `not ready`.
    pub status: String,
    /// The parts not ready and what they are doing, or empty when ready.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Each part: `store`, `index`, `p2p`.
    pub components: Vec<ComponentReadiness>,
}

/// One part of the node in [`Readiness`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentReadiness {
    /// `store` (the block store answers), `index` (every collection open, its index loaded
    /// and its log replayed) or `p2p` (the peer-to-peer layer runs and listens).
    pub name: String,
    /// `ready`, `not ready`, or `off` (a part this process does not run; it does not hold
    /// readiness back).
    pub state: String,
    /// What the part is doing, in words.
    pub detail: String,
}

impl Readiness {
    /// Whether every part is ready (or off).
    pub fn is_ready(&self) -> bool {
        self.components.iter().all(|c| c.state != "not ready")
    }
}

/// A long operation and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// Job number, unique while the daemon runs.
    pub id: u64,
    /// What it does: upsert, import, export, gc.
    pub kind: String,
    /// What it works on (a collection, a CID).
    pub target: String,
    /// Units done so far.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// The unit: points, bytes or blocks.
    pub unit: String,
    /// Milliseconds since it started.
    pub elapsed_ms: u64,
}

/// `GET /v1/jobs`: the long operations running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<Job>,
}

/// `GET /v1/id`: this node on the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Addresses to reach it at, each ending in `/p2p/<peer id>` (give one to `ipvec connect`
    /// or `--bootstrap` elsewhere).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Addresses it listens on.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Addresses peers said they see it at.
    #[serde(default)]
    pub observed: Vec<String>,
    /// ipvec's version.
    #[serde(default)]
    pub agent: String,
}

/// A connected peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerOut {
    /// Its peer id.
    pub peer_id: String,
    /// The address of the connection.
    pub address: String,
    /// `outbound` (we dialed) or `inbound`.
    pub direction: String,
    /// Last ping round trip in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Protocols it speaks.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Its agent string, once identify told it.
    #[serde(default)]
    pub agent: Option<String>,
    /// Its gossipsub score (negative after it forwarded invalid heads).
    #[serde(default)]
    pub gossip_score: Option<f64>,
    /// Bitswap blocks we sent it (since this node started). This node always sends it.
    #[serde(default)]
    pub blocks_sent: Option<u64>,
    /// Bitswap blocks it sent us that we asked for and stored. This node always sends it.
    #[serde(default)]
    pub blocks_received: Option<u64>,
    /// How it answers federated searches, once it has been asked one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub searches: Option<PeerSearches>,
    /// Its circuit breaker: whether calls to it (searches, fetches) go through. Daemons
    /// before it was added do not send it (read as closed).
    #[serde(default)]
    pub breaker: BreakerStateOut,
}

/// Where a peer's circuit breaker stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BreakerStateOut {
    /// Calls go through.
    #[default]
    Closed,
    /// After repeated failures: calls are not made (the peer is skipped, or tried last).
    Open,
    /// Its open time is over: the next call is a trial that closes or reopens it.
    HalfOpen,
}

/// A peer's record as a holder of shards for federated searches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerSearches {
    /// Its smoothed answer time in milliseconds, once it has answered.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Its 95th-percentile answer time estimate (when a slower answer is hedged).
    #[serde(default)]
    pub latency_p95_ms: Option<f64>,
    /// Answers it gave.
    pub answers: u64,
    /// Requests it failed (refused, timed out, unreachable; a penalty counts once).
    pub failures: u64,
    /// Hits it answered that failed verification.
    pub penalties: u64,
    /// Whether searches skip it now (its circuit breaker is open).
    pub skipped: bool,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerList {
    /// The connected peers.
    pub peers: Vec<PeerOut>,
}

/// `POST /v1/peers/connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// A multiaddress, e.g. `/ip4/192.0.2.7/tcp/4080/p2p/12D3KooW…`.
    pub address: String,
}

/// A peer that connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connected {
    /// Its peer id.
    pub peer_id: String,
}

/// A provider record's peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderOut {
    /// Its peer id.
    pub peer_id: String,
    /// Addresses known for it.
    pub addresses: Vec<String>,
}

/// `GET /v1/dht/providers/{cid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderList {
    /// The key looked up.
    pub key: String,
    /// Peers that provide it.
    pub providers: Vec<ProviderOut>,
}

/// `GET /v1/peers/denied`: the peers this node refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeniedPeerList {
    /// Each denied peer, in peer id order.
    pub peers: Vec<DeniedPeer>,
}

/// A peer this node refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeniedPeer {
    /// Its peer id.
    pub peer_id: String,
    /// Where the denial comes from: `config` (`p2p.deny_peers`, lifted by editing the
    /// config) or `runtime` (`POST /v1/peers/{peer_id}/deny`, kept in the repository's
    /// `denied_peers` file).
    pub source: String,
}

/// `POST /v1/peers/{peer_id}/deny` and `POST /v1/peers/{peer_id}/allow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerDenial {
    /// The peer.
    pub peer_id: String,
    /// Whether it is denied now.
    pub denied: bool,
    /// Whether this request changed that (false: it already was so).
    pub changed: bool,
}

/// One log event, from `GET /v1/logs` (server-sent events named `log`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// ERROR, WARN, INFO, DEBUG or TRACE.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message.
    pub message: String,
    /// Other fields, as `key=value` pairs.
    #[serde(default)]
    pub fields: String,
}
