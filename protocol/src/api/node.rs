//! The node itself: its facts, its long operations, and the network as it sees it.

use serde::{Deserialize, Serialize};

/// Store totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreInfo {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Seconds since this node (daemon or command) opened the repository.
    pub uptime_secs: u64,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Addresses to reach it at, each ending in `/p2p/<peer id>` (give one to `ipvec connect`
    /// or `--bootstrap` elsewhere).
    pub addresses: Vec<String>,
    /// Addresses it listens on.
    pub listen: Vec<String>,
    /// Addresses peers said they see it at.
    pub observed: Vec<String>,
    /// ipvec's version.
    pub agent: String,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerOut {
    /// Its peer id.
    pub peer_id: String,
    /// The address of the connection.
    pub address: String,
    /// `outbound` (we dialed) or `inbound`.
    pub direction: String,
    /// Last ping round trip in milliseconds.
    pub latency_ms: Option<f64>,
    /// Protocols it speaks.
    pub protocols: Vec<String>,
    /// Its agent string.
    pub agent: Option<String>,
    /// Its gossipsub score (negative after it forwarded invalid heads).
    pub gossip_score: Option<f64>,
    /// Bitswap blocks we sent it (since this node started).
    pub blocks_sent: u64,
    /// Bitswap blocks it sent us that we asked for and stored.
    pub blocks_received: u64,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
