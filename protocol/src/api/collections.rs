//! Collections: creating, describing, listing, versions, dropping, importing and fetching.

use serde::{Deserialize, Serialize};

use crate::manifest::{EmbeddingModel, Metric, Quantization};

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

/// `POST /v1/collections`: a new collection's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Name: letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// Vector dimension. May be left out (or 0) when `embedding` names a model: its
    /// dimension is taken.
    #[serde(default)]
    pub dim: u32,
    /// For a text collection, the model that embeds its texts and queries: `local`
    /// (all-MiniLM-L6-v2 on the node's CPU) or `http` / `http:MODEL` (the node's
    /// `embedding.http_url` server; MODEL defaults to `embedding.http_model`). Recorded in
    /// the manifest; points and searches may then give `text` instead of a vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<String>,
    /// Similarity metric: cosine, l2 (negated squared distance) or dot.
    #[serde(default = "default_metric")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "cosine"))]
    pub metric: Metric,
    /// Storage quantization: f32, f16 or i8 (i8 with cosine only).
    #[serde(default = "default_quantization")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "f32"))]
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
    /// Walk the graph on one-byte codes of the vectors and score the candidates again on the
    /// f32 vectors: faster searches and inserts for about a quarter more index memory (f32
    /// collections under the l2 or cosine metric).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub codes: bool,
    /// Number of hash-range shards.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Replicas each shard should have, this node included (the manifest's replication
    /// factor; `collection info` compares it with the providers the DHT names).
    #[serde(default = "default_replication")]
    pub replication: u32,
    /// Most live points this node keeps in the collection (0: no quota of its own). The
    /// node's `limits.collection_max_points` holds too: the lower one applies.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_points: u64,
    /// Most vector bytes (points × dimension × bytes per component), likewise with
    /// `limits.collection_max_bytes`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_bytes: u64,
}

impl CreateCollection {
    /// A collection `name` of `dim` dimensions with every other setting at its default
    /// (cosine, f32, M = 16, ef 128/64, one shard, replication 1, no quota of its own).
    pub fn new(name: impl Into<String>, dim: u32) -> Self {
        Self {
            name: name.into(),
            dim,
            embedding: None,
            metric: default_metric(),
            quantization: default_quantization(),
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
            codes: false,
            shards: default_shards(),
            replication: default_replication(),
            max_points: 0,
            max_bytes: 0,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `PUT /v1/collections/{name}/quota`: a collection's own quota on this node (0: none). The
/// node's `limits.collection_max_*` hold as well, so a collection's own quota can only lower
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CollectionQuota {
    /// Most live points (0: none of its own).
    #[serde(default)]
    pub max_points: u64,
    /// Most vector bytes (0: none of its own).
    #[serde(default)]
    pub max_bytes: u64,
}

impl CollectionQuota {
    /// Whether it sets neither limit.
    pub fn is_none(&self) -> bool {
        self.max_points == 0 && self.max_bytes == 0
    }
}

/// HNSW parameters of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HnswInfo {
    /// Links per node.
    pub m: u32,
    /// Candidate list size while building.
    pub ef_construction: u32,
    /// Default candidate list size while searching.
    pub ef_search: u32,
    /// Whether the graph is walked on one-byte codes, the candidates scored on the f32
    /// vectors.
    #[serde(default)]
    pub codes: bool,
}

/// A collection's settings, counts and current version. Fields a node may not send (older
/// ones) read as their defaults; the metric and quantization are read as text, so a value
/// this version does not know is still shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectionInfo {
    /// Name in this repository.
    pub name: String,
    /// The collection id: the peer id of its owner key.
    #[serde(default)]
    pub id: String,
    /// Vector dimension.
    pub dim: u32,
    /// Similarity metric: cosine, l2 or dot (as [`Metric`] spells it).
    pub metric: String,
    /// Storage quantization: f32, f16 or i8 (as [`Quantization`] spells it).
    #[serde(default)]
    pub quantization: String,
    /// HNSW parameters.
    #[serde(default)]
    pub hnsw: HnswInfo,
    /// Number of shards.
    #[serde(default)]
    pub shards: usize,
    /// The shards this node holds, in order: all of them, or some for a partial replica
    /// (fetched with `shards`). Searches here cover these. (Absent from older nodes, which
    /// held every shard.)
    #[serde(default)]
    pub held_shards: Option<Vec<u32>>,
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
    /// Where this node's index came from when the collection opened: `built` (from the
    /// trees, or grown by writes), `cache` (saved here) or `snapshot` (the writer's published
    /// index snapshot). Absent from older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_source: Option<String>,
    /// The index snapshot the current version names (the CID of its listing), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_snapshot: Option<String>,
    /// On the node that writes the collection: entries committed since that snapshot was
    /// published (0: it is of the current trees; absent: not known since the node started,
    /// or no snapshot). A new one is published once writes stop (`storage.index_snapshot_min_points`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_snapshot_lag: Option<u64>,
    /// Whether this node holds the owner key (imported collections are read-only).
    pub writable: bool,
    /// Replication state: `writer` (this node writes it); for a replica `syncing` (fetching
    /// a newer version), `following` (a newer version was seen and is not fetched yet) or
    /// `caught up`. This node always sends it.
    #[serde(default)]
    pub state: Option<String>,
    /// While `syncing`: the share (0–100) of the blocks discovered so far that have arrived.
    #[serde(default)]
    pub sync_percent: Option<f64>,
    /// Versions behind the newest signed head seen from peers (0 for the writer). This node
    /// always sends it.
    #[serde(default)]
    pub lag: Option<u64>,
    /// Replicas each shard should have (the manifest's replication factor). This node always
    /// sends it.
    #[serde(default)]
    pub replication_factor: Option<u32>,
    /// Providers of the least replicated shard in the DHT (this node included), once counted.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// Seconds since this node last announced the collection in the DHT (none without the
    /// peer-to-peer layer).
    #[serde(default)]
    pub announced_secs_ago: Option<u64>,
    /// Each shard's root, points and providers.
    #[serde(default)]
    pub shard_status: Vec<ShardInfo>,
    /// For a text collection, the model its texts and text queries are embedded with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingModel>,
    /// The collection's own quota on this node, when it has one (see [`CollectionQuota`]).
    #[serde(default, skip_serializing_if = "CollectionQuota::is_none")]
    pub quota: CollectionQuota,
    /// The keys allowed to publish versions, as peer ids, the owner's first (absent from
    /// older nodes).
    #[serde(default)]
    pub writers: Vec<String>,
    /// The newest head merged here from each writer (with several writers, the collection is
    /// the merge of their versions).
    #[serde(default)]
    pub writer_heads: Vec<WriterHead>,
    /// A CID of the shard trees alone: equal on every node holding the same points, whatever
    /// versions got them there (`root` also covers settings, times and history). Nodes that
    /// merged the same writers' heads show the same one.
    #[serde(default)]
    pub merged_root: Option<String>,
    /// This node's membership of the collection's serving set, when it joined it or hears
    /// its members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipInfo>,
}

/// `GET /v1/collections/{name}/shards`: who holds each shard of a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardMap {
    /// The collection's name here.
    pub name: String,
    /// The collection id.
    pub id: String,
    /// Holders each shard should have (the manifest's replication factor).
    pub replication: u32,
    /// Each shard, in order.
    pub shards: Vec<ShardHolders>,
}

/// One shard in a [`ShardMap`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardHolders {
    /// Shard number.
    pub shard: u32,
    /// The tree root of the shard as this node has it.
    pub root: String,
    /// Live points (as of this node's version).
    pub points: u64,
    /// The peers that announce it in the DHT, this node included when it holds it.
    pub holders: Vec<Holder>,
    /// How many of them are alive (this node, or connected now).
    pub live: u32,
    /// The members placement gives the shard, as this node knows the collection's members
    /// (empty when it knows none).
    #[serde(default)]
    pub placed: Vec<String>,
    /// Moves of the shard under way, comma-separated: on this node as a member, `fetching
    /// here` (placed here and being fetched) or `handing over here` (held here, placed
    /// elsewhere, kept until its new holders have it); on other members, as their records
    /// say, `fetching on …PEER` (placed there, not held yet) or `handing over on …PEER` (held
    /// there, placed elsewhere), PEER being the last six characters of its peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<String>,
}

/// A peer holding a shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holder {
    /// Its peer id.
    pub peer_id: String,
    /// Whether it is this node.
    pub here: bool,
    /// Whether it is this node or connected to it now (a provider record outlives a peer
    /// that went away until the record expires).
    pub alive: bool,
}

/// The newest head merged on a node from one writer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriterHead {
    /// The writer's key as a peer id.
    pub writer: String,
    /// The head's sequence number.
    pub seq: u64,
    /// The manifest the head names.
    pub root: String,
}

/// One key a collection allows to publish versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriterInfo {
    /// The key as a peer id (`12D3KooW…`, what the writer's `ipvec id` prints).
    pub id: String,
    /// Whether it is the owner's key (which signs changes of the list and always stays).
    pub owner: bool,
}

/// `GET /v1/collections/{name}/writers`, and the answer of `PUT` or `DELETE
/// /v1/collections/{name}/writers/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriterList {
    /// The collection.
    pub name: String,
    /// The allowed keys, the owner's first.
    pub writers: Vec<WriterInfo>,
    /// The version (head sequence) the list is of.
    pub version: u64,
    /// Whether this request changed the list (a new version); false when it already was so,
    /// and for a read.
    pub changed: bool,
}

/// One shard of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardInfo {
    /// Shard number.
    pub shard: u32,
    /// The shard root's CID at the current version.
    pub root: String,
    /// Live points (acknowledged writes included; as of the current version for a shard not
    /// held here).
    pub points: u64,
    /// Whether this node holds the shard (absent from older nodes: held).
    #[serde(default)]
    pub held: Option<bool>,
    /// Peers the DHT names as providers of the shard (this node included), once counted.
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// `GET /v1/collections`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectionList {
    /// Every collection, by name.
    pub collections: Vec<CollectionInfo>,
}

/// One manifest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionInfo {
    /// The manifest CID (give it to search's `at`).
    pub root: String,
    /// Live points in that version.
    pub points: u64,
    /// When it was made (milliseconds since the Unix epoch).
    pub updated: u64,
}

/// `GET /v1/collections/{name}/log`: versions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionList {
    /// The versions.
    pub versions: Vec<VersionInfo>,
}

/// `DELETE /v1/collections/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dropped {
    /// The dropped collection's name.
    pub dropped: String,
    /// Its last manifest CID (its blocks go at the next gc).
    pub root: String,
}

/// `POST /v1/collections/import`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// `POST /v1/collections/fetch`: replicate another node's collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Hold only these shards (numbers from 0): only their trees are fetched, announced and
    /// searched. Default: every shard. A collection already held keeps the shards it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<u32>>,
}

/// `POST /v1/collections/join`: make this node a member of a collection's serving set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinCollection {
    /// The collection id (its owner's peer id, as `collection info` prints it).
    pub id: String,
    /// Bytes this node offers the collection: placement gives it shards in proportion
    /// (default: 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// Name to register it under, when it is not held here yet (default: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Peers to fetch its head from (multiaddresses); empty: its providers in the DHT.
    #[serde(default)]
    pub from: Vec<String>,
}

/// This node's membership of a collection: `POST /v1/collections/join`, `POST
/// /v1/collections/{name}/leave` and `GET /v1/collections/{name}/membership`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembershipInfo {
    /// The collection's name here.
    pub name: String,
    /// The collection id.
    pub id: String,
    /// `serving`, `leaving` (handing its shards over), or `observing` (this node holds the
    /// collection and hears its members, but has not joined).
    pub state: String,
    /// Bytes this node offers (0 unless a member).
    pub capacity: u64,
    /// The members heard from, this node included when it is one.
    pub members: Vec<MemberInfo>,
    /// Where each shard stands on this member (empty unless a member).
    pub shards: Vec<MemberShard>,
}

/// A member of a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberInfo {
    /// Its peer id.
    pub peer_id: String,
    /// The bytes it offers (0 while it leaves).
    pub capacity: u64,
    /// Whether it is this node.
    pub here: bool,
    /// The shards it says it holds.
    pub holds: Vec<u32>,
}

/// One shard as a member sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberShard {
    /// Shard number.
    pub shard: u32,
    /// Whether placement gives it to this node.
    pub placed: bool,
    /// Whether this node holds it at the collection's current version.
    pub current: bool,
    /// Whether this node holds it at all (a shard placed elsewhere is kept until its new
    /// holders have it).
    pub held: bool,
    /// Whether it is being fetched here now.
    pub fetching: bool,
    /// Members known to hold it at the current version, this node included.
    pub holders: u32,
    /// Holders placement wants (the replication factor, or fewer when fewer members can
    /// hold it).
    pub replication: u32,
}
