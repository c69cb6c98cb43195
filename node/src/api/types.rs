//! What the HTTP API sends and receives, as JSON. The daemon's handlers, the CLI's client and
//! the CLI's direct (no daemon) path all speak these types, so both paths print the same.

use ipvec_protocol::{
    entry::EntryId,
    manifest::{Metric, Quantization},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A point id: an unsigned integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PointId {
    /// An unsigned integer id.
    Int(u64),
    /// A string id (1 to 128 bytes of UTF-8).
    Str(String),
}

/// Reads an id, with an error that says what an id is (serde's own for untagged enums names
/// the Rust type).
impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Id;
        const WHAT: &str =
            "an id: an unsigned integer (0 to 18446744073709551615) or a string of 1 to 128 bytes";
        impl serde::de::Visitor<'_> for Id {
            type Value = PointId;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(WHAT)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<PointId, E> {
                Ok(PointId::Int(n))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<PointId, E> {
                u64::try_from(n)
                    .map(PointId::Int)
                    .map_err(|_| E::custom(format!("id {n} is negative; expected {WHAT}")))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<PointId, E> {
                Err(E::custom(format!(
                    "id {n} is not a whole number in range; expected {WHAT}"
                )))
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PointId, E> {
                Ok(PointId::Str(s.to_string()))
            }

            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<PointId, E> {
                Ok(PointId::Str(s))
            }
        }
        deserializer.deserialize_any(Id)
    }
}

impl From<&EntryId> for PointId {
    fn from(id: &EntryId) -> Self {
        match id {
            EntryId::Int(n) => PointId::Int(*n),
            EntryId::Str(s) => PointId::Str(s.clone()),
        }
    }
}

impl From<PointId> for EntryId {
    fn from(id: PointId) -> Self {
        match id {
            PointId::Int(n) => EntryId::Int(n),
            PointId::Str(s) => EntryId::Str(s),
        }
    }
}

impl std::fmt::Display for PointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointId::Int(n) => write!(f, "{n}"),
            PointId::Str(s) => f.write_str(s),
        }
    }
}

impl PointId {
    /// The id as URL paths and the CLI spell it (read back by
    /// [`parse_point_id`](crate::ops::points::parse_point_id)): a string id that would read as an
    /// integer, or that starts with `"`, is written as a JSON string literal (`"42"`).
    pub fn spelled(&self) -> String {
        match self {
            PointId::Int(n) => n.to_string(),
            PointId::Str(s) => {
                let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if digits || s.starts_with('"') {
                    serde_json::Value::String(s.clone()).to_string()
                } else {
                    s.clone()
                }
            }
        }
    }
}

fn default_metric() -> Metric {
    Metric::Cosine
}
fn default_quantization() -> Quantization {
    Quantization::F32
}
fn default_m() -> u32 {
    16
}
fn default_ef_construction() -> u32 {
    128
}
fn default_ef_search() -> u32 {
    64
}
fn default_shards() -> u32 {
    1
}
fn default_replication() -> u32 {
    1
}
fn default_k() -> usize {
    10
}

/// `POST /v1/collections`: a new collection's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Name: letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// Vector dimension.
    pub dim: u32,
    /// Similarity metric: cosine, l2 (negated squared distance) or dot.
    #[serde(default = "default_metric")]
    #[schema(value_type = String, example = "cosine")]
    pub metric: Metric,
    /// Storage quantization: f32, f16 or i8 (i8 with cosine only).
    #[serde(default = "default_quantization")]
    #[schema(value_type = String, example = "f32")]
    pub quantization: Quantization,
    /// HNSW links per node.
    #[serde(default = "default_m")]
    pub m: u32,
    /// HNSW candidate list size while building.
    #[serde(default = "default_ef_construction")]
    pub ef_construction: u32,
    /// Default HNSW candidate list size while searching.
    #[serde(default = "default_ef_search")]
    pub ef_search: u32,
    /// Number of hash-range shards.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Replicas each shard should have, this node included (the manifest's replication
    /// factor; `collection info` compares it with the providers the DHT names).
    #[serde(default = "default_replication")]
    pub replication: u32,
}

/// HNSW parameters of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HnswInfo {
    /// Links per node.
    pub m: u32,
    /// Candidate list size while building.
    pub ef_construction: u32,
    /// Default candidate list size while searching.
    pub ef_search: u32,
}

/// A collection's settings, counts and current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionInfo {
    /// Name in this repository.
    pub name: String,
    /// The collection id: the peer id of its owner key.
    pub id: String,
    /// Vector dimension.
    pub dim: u32,
    /// Similarity metric.
    #[schema(value_type = String)]
    pub metric: Metric,
    /// Storage quantization.
    #[schema(value_type = String)]
    pub quantization: Quantization,
    /// HNSW parameters.
    pub hnsw: HnswInfo,
    /// Number of shards.
    pub shards: usize,
    /// Live points.
    pub points: u64,
    /// The current manifest CID.
    pub root: String,
    /// The signed head's sequence number.
    pub version: u64,
    /// Bytes the HNSW index uses in memory.
    pub index_memory_bytes: usize,
    /// Bytes of acknowledged writes not yet committed into the tree.
    pub wal_bytes: u64,
    /// Whether this node holds the owner key (imported collections are read-only).
    pub writable: bool,
    /// Replication state: `writer` (this node writes it); for a replica `syncing` (fetching
    /// a newer version), `following` (a newer version was seen and is not fetched yet) or
    /// `caught up`.
    pub state: String,
    /// While `syncing`: the share (0–100) of the blocks discovered so far that have arrived.
    pub sync_percent: Option<f64>,
    /// Versions behind the newest signed head seen from peers (0 for the writer).
    pub lag: u64,
    /// Replicas each shard should have (the manifest's replication factor).
    pub replication_factor: u32,
    /// Providers of the least replicated shard in the DHT (this node included), once counted.
    pub replicas: Option<u32>,
    /// Seconds since this node last announced the collection in the DHT (none without the
    /// peer-to-peer layer).
    pub announced_secs_ago: Option<u64>,
    /// Each shard's root, points and providers.
    pub shard_status: Vec<ShardInfo>,
}

/// One shard of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardInfo {
    /// Shard number.
    pub shard: u32,
    /// The shard root's CID at the current version.
    pub root: String,
    /// Live points (acknowledged writes included).
    pub points: u64,
    /// Peers the DHT names as providers of the shard (this node included), once counted.
    pub replicas: Option<u32>,
}

/// `GET /v1/collections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionList {
    /// Every collection, by name.
    pub collections: Vec<CollectionInfo>,
}

/// One manifest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    /// The manifest CID (give it to search's `at`).
    pub root: String,
    /// Live points in that version.
    pub points: u64,
    /// When it was made (milliseconds since the Unix epoch).
    pub updated: u64,
}

/// `GET /v1/collections/{name}/log`: versions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    /// The versions.
    pub versions: Vec<VersionInfo>,
}

/// `DELETE /v1/collections/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dropped {
    /// The dropped collection's name.
    pub dropped: String,
    /// Its last manifest CID (its blocks go at the next gc).
    pub root: String,
}

/// A point to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointIn {
    /// The id.
    pub id: PointId,
    /// The vector (as many numbers as the collection's dimension).
    pub vector: Vec<f32>,
    /// Metadata: a JSON object, stored as a DAG-CBOR map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `PUT /v1/collections/{name}/points`: a batch, stored whole or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertPoints {
    /// The points.
    pub points: Vec<PointIn>,
}

/// `POST /v1/collections/{name}/points/delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletePoints {
    /// The ids to delete.
    pub ids: Vec<PointId>,
}

/// What a write did; returned once it is durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WriteResult {
    /// Points written or deleted.
    pub changed: u64,
    /// Live points after the write.
    pub points: u64,
    /// The manifest CID after the write (it moves when the log is committed into the tree).
    pub root: String,
}

/// `GET /v1/collections/{name}/points/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PointOut {
    /// The id.
    pub id: PointId,
    /// The stored vector (after quantization), as f32.
    pub vector: Vec<f32>,
    /// Metadata, if any.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// The tree leaf holding the point; null while the write is only in the log.
    pub cid: Option<String>,
}

/// `POST /v1/collections/{name}/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Number of hits.
    #[serde(default = "default_k")]
    pub k: usize,
    /// HNSW candidate list size (default: the collection's ef_search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Exact (brute-force) search.
    #[serde(default)]
    pub exact: bool,
    /// Only points that pass this filter: `{"must": […], "should": […], "must_not": […]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Search an older version: a manifest CID from the log (exact search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Stop and answer 504 after this many milliseconds (default `search.deadline_ms`, at
    /// most `search.max_deadline_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    /// The point id.
    pub id: PointId,
    /// Score; higher is better (see docs/api.md for each metric).
    pub score: f32,
    /// The tree leaf holding the point's vector; null while the write is only in the log.
    pub cid: Option<String>,
    /// Metadata, if any.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Search results, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// The hits.
    pub hits: Vec<Hit>,
}

/// `POST /v1/dag`: a stored block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DagPut {
    /// Its CID.
    pub cid: String,
    /// Whether it was pinned.
    pub pinned: bool,
}

/// `GET /v1/blocks/{cid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockStat {
    /// The CID.
    pub cid: String,
    /// Size in bytes.
    pub size: usize,
    /// Codec name (dag-cbor or raw).
    pub codec: String,
}

/// A named pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pin {
    /// The pinned root.
    pub cid: String,
    /// Its name: the CID itself for `pin add`, `collection:<name>` for collections.
    pub name: String,
}

/// `GET /v1/pins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PinList {
    /// Every pin.
    pub pins: Vec<Pin>,
}

/// `POST /v1/gc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GcResult {
    /// Blocks removed.
    pub removed_blocks: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// Blocks kept because a pin reaches them.
    pub live_blocks: u64,
    /// Blocks pins link to that this repository lacks.
    pub missing_blocks: u64,
}

/// A CAR file read into the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CarImported {
    /// The CAR's roots (pinned).
    pub roots: Vec<String>,
    /// Blocks read.
    pub blocks: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// `POST /v1/collections/import`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionImported {
    /// The name it was registered under.
    pub name: String,
    /// The collection id.
    pub id: String,
    /// Its manifest CID.
    pub root: String,
    /// Live points.
    pub points: u64,
    /// Whether this node holds its owner key.
    pub writable: bool,
}

/// Store totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StoreInfo {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<Job>,
}

/// The error object every failed request returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: bad_request, bad_point, not_found, conflict, read_only, payload_too_large,
    /// unauthorized, unavailable, insufficient_storage, internal.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// For bad_point: which point of the batch was refused, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<BadPoint>,
}

/// The point that made a batch fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BadPoint {
    /// Its position in the batch, from 0.
    pub position: usize,
    /// Its id.
    pub id: String,
    /// What is wrong with it.
    pub reason: String,
}

/// `GET /v1/id`: this node on the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    /// The connected peers.
    pub peers: Vec<PeerOut>,
}

/// `POST /v1/peers/connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// A multiaddress, e.g. `/ip4/192.0.2.7/tcp/4080/p2p/12D3KooW…`.
    pub address: String,
}

/// A peer that connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Connected {
    /// Its peer id.
    pub peer_id: String,
}

/// A provider record's peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderOut {
    /// Its peer id.
    pub peer_id: String,
    /// Addresses known for it.
    pub addresses: Vec<String>,
}

/// `GET /v1/dht/providers/{cid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    /// The key looked up.
    pub key: String,
    /// Peers that provide it.
    pub providers: Vec<ProviderOut>,
}

/// `POST /v1/dag/fetch`: fetch a DAG from peers over Bitswap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagFetch {
    /// The root CID.
    pub cid: String,
    /// Peers to ask (multiaddresses, dialed first); empty: every connected peer.
    #[serde(default)]
    pub from: Vec<String>,
}

/// A fetched DAG, now pinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Fetched {
    /// The root CID.
    pub root: String,
    /// Blocks in the DAG.
    pub blocks: u64,
    /// Of those, fetched from peers (the rest were already stored).
    pub fetched: u64,
    /// Bytes fetched.
    pub bytes: u64,
}

/// `POST /v1/collections/fetch`: replicate another node's collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchCollection {
    /// The collection id (its owner's peer id, as `collection info` prints it).
    pub id: String,
    /// Name to register it under (default: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Peers to fetch from (multiaddresses); empty: its providers in the DHT.
    #[serde(default)]
    pub from: Vec<String>,
}
