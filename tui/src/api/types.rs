//! The JSON the dashboard reads from a node: its own small copies of the fields it shows.
//! Fields a node may not send yet (the peer-to-peer layer's) are optional, so the dashboard
//! works with older and newer daemons alike.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Store totals, from `GET /v1/node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's peer id.
    pub peer_id: String,
    /// ipvec's version.
    pub version: String,
    /// The repository folder.
    pub repo: String,
    /// Collections in the repository.
    pub collections: usize,
    /// The block store.
    pub store: StoreInfo,
    /// Peer-to-peer addresses it listens on (once the node runs the peer-to-peer layer).
    #[serde(default)]
    pub listen_addresses: Vec<String>,
    /// Seconds since the daemon started, if it says.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// The API address the daemon announces, if it says.
    #[serde(default)]
    pub api: Option<String>,
}

/// `GET /v1/id`: the node on the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Addresses to reach it at, each ending in `/p2p/<peer id>`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Addresses it listens on.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Addresses peers said they see it at.
    #[serde(default)]
    pub observed: Vec<String>,
    /// Its agent string (ipvec's version).
    #[serde(default)]
    pub agent: String,
}

/// One connected peer, from `GET /v1/peers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    /// Its peer id.
    pub peer_id: String,
    /// The address of the connection.
    pub address: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Last ping round trip, in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Protocols it speaks.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Its agent string, once identify told it.
    #[serde(default)]
    pub agent: Option<String>,
    /// Blocks we sent it, if the node counts them.
    #[serde(default)]
    pub blocks_sent: Option<u64>,
    /// Blocks we received from it, if the node counts them.
    #[serde(default)]
    pub blocks_received: Option<u64>,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerList {
    /// The connected peers.
    pub peers: Vec<Peer>,
}

/// A collection, from `GET /v1/collections`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Name in the repository.
    pub name: String,
    /// The collection id (its owner's peer id).
    #[serde(default)]
    pub id: String,
    /// Vector dimension.
    pub dim: u32,
    /// cosine, l2 or dot.
    pub metric: String,
    /// f32, f16 or i8.
    #[serde(default)]
    pub quantization: String,
    /// Number of shards.
    #[serde(default)]
    pub shards: usize,
    /// Live points.
    pub points: u64,
    /// The current manifest CID.
    pub root: String,
    /// The signed head's sequence number.
    pub version: u64,
    /// Bytes the HNSW index uses in memory.
    #[serde(default)]
    pub index_memory_bytes: u64,
    /// Bytes of acknowledged writes not yet committed into the tree.
    #[serde(default)]
    pub wal_bytes: u64,
    /// Whether this node holds the owner key.
    pub writable: bool,
    /// Replicas of the collection's shards that peers hold, once the node reports them.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// The replication factor the collection asks for, once the node reports it.
    #[serde(default)]
    pub replication_factor: Option<u32>,
    /// Replication state (writer, syncing, following, caught up), once the node reports it.
    #[serde(default)]
    pub state: Option<String>,
    /// While syncing: the share (0–100) of the blocks discovered so far that arrived.
    #[serde(default)]
    pub sync_percent: Option<f64>,
    /// Versions behind the newest head the node has seen from peers.
    #[serde(default)]
    pub lag: Option<u64>,
    /// Seconds since the node last announced the collection in the DHT.
    #[serde(default)]
    pub announced_secs_ago: Option<u64>,
    /// Each shard's root, points and providers, once the node reports them.
    #[serde(default)]
    pub shard_status: Vec<ShardInfo>,
}

/// One shard of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Shard number.
    pub shard: u32,
    /// The shard root's CID.
    pub root: String,
    /// Live points.
    pub points: u64,
    /// Peers providing it in the DHT (this node included), once counted.
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// `GET /v1/collections`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionList {
    /// Every collection.
    pub collections: Vec<CollectionInfo>,
}

/// `GET /v1/collections/{name}/points/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The id (a number or a string).
    pub id: Value,
    /// The stored vector.
    pub vector: Vec<f32>,
}

/// `POST /v1/collections/{name}/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Number of hits.
    pub k: usize,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The point id (a number or a string).
    pub id: Value,
    /// Score; higher is better.
    pub score: f32,
    /// The tree leaf holding the point; null while the write is only in the log.
    #[serde(default)]
    pub cid: Option<String>,
}

impl Hit {
    /// The id as text, spelled as `id:` queries and the node's URL paths read it: numbers
    /// as digits, strings as they are, except one that would read as a number (or starts
    /// with `"`), which is quoted: `"42"`.
    pub fn id_text(&self) -> String {
        match &self.id {
            Value::String(s) => {
                let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if digits || s.starts_with('"') {
                    self.id.to_string()
                } else {
                    s.clone()
                }
            }
            other => other.to_string(),
        }
    }
}

/// `POST /v1/collections/{name}/search`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Hits, best first.
    pub hits: Vec<Hit>,
}

/// One log event from `GET /v1/logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// The error body every failed API request carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, as the node says it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    /// A stable code (not_found, bad_request, …).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn node_info_without_the_optional_fields() {
        let node: NodeInfo = serde_json::from_str(
            r#"{"peer_id": "12D3KooW", "version": "0.1.0", "repo": "/r", "collections": 2,
                "store": {"blocks": 3, "bytes": 40}}"#,
        )
        .unwrap();
        assert_eq!(node.store.blocks, 3);
        assert!(node.listen_addresses.is_empty() && node.uptime_secs.is_none());
    }

    #[test]
    fn node_info_with_extra_and_unknown_fields() {
        let node: NodeInfo = serde_json::from_str(
            r#"{"peer_id": "p", "version": "v", "repo": "/r", "collections": 0,
                "store": {"blocks": 0, "bytes": 0}, "uptime_secs": 61,
                "listen_addresses": ["/ip4/127.0.0.1/tcp/4001"], "something_new": true}"#,
        )
        .unwrap();
        assert_eq!(node.uptime_secs, Some(61));
        assert_eq!(node.listen_addresses, ["/ip4/127.0.0.1/tcp/4001"]);
    }

    #[test]
    fn hits_with_integer_and_string_ids() {
        let r: SearchResponse = serde_json::from_str(
            r#"{"hits": [{"id": 7, "score": 0.5, "cid": null, "metadata": null},
                         {"id": "doc-2", "score": 0.25, "cid": "bafy", "metadata": {"a": 1}},
                         {"id": "42", "score": 0.125, "cid": null, "metadata": null}]}"#,
        )
        .unwrap();
        assert_eq!(r.hits[0].id_text(), "7");
        assert_eq!(r.hits[1].id_text(), "doc-2");
        assert_eq!(
            r.hits[2].id_text(),
            "\"42\"",
            "the string id 42 is not the integer 42"
        );
        assert_eq!(r.hits[1].cid.as_deref(), Some("bafy"));
    }

    #[test]
    fn peers_in_the_planned_shape() {
        let p: PeerList = serde_json::from_str(
            r#"{"peers": [{"peer_id": "12D3KooWA", "address": "/ip4/10.0.0.2/tcp/4001",
                "direction": "outbound", "latency_ms": null, "protocols": ["/ipfs/ping/1.0.0"],
                "agent": "ipvec/0.1.0"}]}"#,
        )
        .unwrap();
        assert_eq!(p.peers[0].direction, "outbound");
        assert_eq!(p.peers[0].latency_ms, None);
        assert_eq!(p.peers[0].agent.as_deref(), Some("ipvec/0.1.0"));
    }
}
