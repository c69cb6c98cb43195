//! The tools' inputs: each a JSON object whose schema (from `schemars`) the server
//! announces with its tool. Inputs that an operation takes whole (`create_vector_collection`,
//! `search_vectors`) are written back into the operation's own request type, so its defaults
//! and checks apply unchanged.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use ipvec_protocol::api::PointId;

/// A point id: an unsigned integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Id {
    /// An unsigned integer id.
    Int(u64),
    /// A string id (1 to 128 bytes).
    Str(String),
}

impl From<Id> for PointId {
    fn from(id: Id) -> Self {
        match id {
            Id::Int(n) => PointId::Int(n),
            Id::Str(s) => PointId::Str(s),
        }
    }
}

/// Names one collection.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CollectionName {
    /// The collection's name (`list_collections` names them).
    pub collection: String,
}

/// `create_vector_collection`: the settings of a new collection (omitted ones take the
/// node's defaults).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreateParams {
    /// Name: letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// Vector dimension (leave it out with `embedding`: the model's is taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<u32>,
    /// Make a text collection embedded by this model: `local` (all-MiniLM-L6-v2 on the
    /// node's CPU) or `http` / `http:MODEL` (the node's embedding server). Its points and
    /// searches may then be texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<String>,
    /// Similarity metric: `cosine` (default), `l2` or `dot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Storage quantization: `f32` (default), `f16` or `i8` (i8 with cosine only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// HNSW links per node (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<u32>,
    /// HNSW candidate list size while building (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<u32>,
    /// Default HNSW candidate list size while searching (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_search: Option<u32>,
    /// Walk the graph on one-byte codes and score the candidates on the f32 vectors: faster
    /// searches and inserts, a quarter more index memory (f32 under l2 or cosine; default
    /// false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codes: Option<bool>,
    /// Number of hash-range shards (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Replicas each shard should have, this node included (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
}

/// One vector to add.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VectorIn {
    /// Its id; adding an id that exists replaces that point.
    pub id: Id,
    /// The vector: as many numbers as the collection's dimension.
    pub vector: Vec<f32>,
    /// Metadata: a JSON object (searches can filter on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `add_vectors_to_collection`: points to add or replace, stored whole or not at all.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddParams {
    /// The collection's name.
    pub collection: String,
    /// The vectors to add.
    #[serde(default)]
    pub vectors: Vec<VectorIn>,
    /// Texts to embed with the collection's model and add (text collections only): plain
    /// strings (their ids made from the texts) or {id, text, metadata}. Each text is kept in
    /// its point's metadata under "text" unless `store_text` is false.
    #[serde(default)]
    pub texts: Vec<TextIn>,
    /// Keep each text in its point's metadata (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_text: Option<bool>,
}

/// One text to add: a plain string, or with its id and metadata.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TextIn {
    /// The text alone; its id is `t` and 16 hex digits of its BLAKE3 hash.
    Plain(String),
    /// The text with its id (made from the text when left out) and metadata.
    Point {
        /// Its id; adding an id that exists replaces that point.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        /// The text.
        text: String,
        /// Metadata: a JSON object.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_json::Map<String, Value>>,
    },
}

impl TextIn {
    /// The point to write: its vector left for the node to embed.
    pub fn into_point(self) -> ipvec_protocol::api::PointIn {
        use ipvec_protocol::api::PointIn;
        match self {
            TextIn::Plain(text) => PointIn::text(PointId::of_text(&text), text),
            TextIn::Point { id, text, metadata } => PointIn {
                metadata: metadata.map(Value::Object),
                ..PointIn::text(id.map_or_else(|| PointId::of_text(&text), Into::into), text)
            },
        }
    }
}

/// `search_vectors`: the nearest points to a vector.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SearchParams {
    /// The collection's name, or a collection id (one held only by peers is searched through
    /// them).
    #[serde(skip_serializing)]
    pub collection: String,
    /// The query vector: as many numbers as the collection's dimension. Give it or `text`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    /// A question in plain words instead of a vector (text collections): the node embeds it
    /// with the collection's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Number of hits (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// HNSW candidate list size (default: the collection's ef_search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Exact (brute-force) search instead of HNSW.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<bool>,
    /// Only points whose metadata pass this filter:
    /// `{"must": […], "should": […], "must_not": […]}` of conditions such as
    /// `{"key": "color", "match": "red"}` (docs/api.md, "Filters").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Search an older version: a manifest CID from the collection's log (exact search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Ask the peers that hold the collection's shards, even for a collection held here; the
    /// answer carries a coverage report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<bool>,
    /// Check each hit of a federated search against the collection's signed head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// Stop after this many milliseconds (default: the node's search deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Fail unless at least this fraction of the shards answered (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_coverage: Option<f64>,
}

/// Names one point of a collection.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PointParams {
    /// The collection's name.
    pub collection: String,
    /// The point's id.
    pub id: Id,
}

/// `delete_vectors`: points to delete.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeleteParams {
    /// The collection's name.
    pub collection: String,
    /// The ids to delete (ids not stored are skipped).
    pub ids: Vec<Id>,
}

/// `update_vector_metadata`: new metadata for one point, its vector kept.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MetadataParams {
    /// The collection's name.
    pub collection: String,
    /// The point's id.
    pub id: Id,
    /// The metadata: a JSON object.
    pub metadata: serde_json::Map<String, Value>,
    /// Merge these keys into the point's metadata instead of replacing all of it.
    #[serde(default)]
    pub merge: bool,
}

/// `export_collection_to_car`: where to write a collection's CAR file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ExportParams {
    /// The collection's name.
    pub collection: String,
    /// The file to write (on the machine this server runs on); replaced if it exists.
    pub path: String,
}

/// `import_collection_from_car`: a CAR file written by an export.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ImportParams {
    /// The CAR file (on the machine this server runs on).
    pub path: String,
    /// Name to register the collection under (default: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `fetch_collection`: another node's collection to replicate here.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FetchParams {
    /// The collection id (`get_collection_cid` on the writer's node gives it).
    pub id: String,
    /// Name to register it under (default: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Peers to fetch from, as multiaddresses ending in `/p2p/<peer id>` (default: the
    /// collection's providers in the DHT).
    #[serde(default)]
    pub from: Vec<String>,
    /// Hold only these shards (numbers from 0; default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<u32>>,
}

/// `import_collection_from_ipld`: a collection's root, to bring in from peers or from
/// blocks already here.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct IpldImportParams {
    /// A collection id (`12D3KooW…`, as `get_collection_cid` answers on its node), or the
    /// CID of one of its manifests (`bafy…`, as `export_collection_to_ipld` answers).
    pub root: String,
    /// Name to register a collection id under (default: its own). A manifest CID is pinned
    /// as a DAG, not named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Peers to fetch from, as multiaddresses ending in `/p2p/<peer id>` (default: for a
    /// collection id its providers in the DHT, for a manifest CID the connected peers).
    #[serde(default)]
    pub from: Vec<String>,
}

/// `migrate_collection`: a collection of another store to bring in.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MigrateParams {
    /// Where it comes from: `faiss` (an index file), `parquet`, `bulk` (an
    /// Elasticsearch/OpenSearch bulk NDJSON file), `qdrant`, `elasticsearch`, `opensearch`,
    /// or `ipvec` (a collection of this node).
    pub source: String,
    /// The source's location: a file path; for a server, its URL ending in the collection or
    /// index (`http://127.0.0.1:6333/items`); for `ipvec`, a collection name.
    pub location: String,
    /// Name of the new collection.
    pub name: String,
    /// The metric when the source records none (Parquet, bulk files): `cosine`, `l2` or
    /// `dot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Parquet, Elasticsearch/OpenSearch: the column or field of the vectors (default
    /// `vector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_field: Option<String>,
    /// Parquet: the column of the ids (default `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// Qdrant: the named vector to read (default: the unnamed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_name: Option<String>,
    /// Qdrant's api-key, or an Elasticsearch/OpenSearch API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// FAISS: a side file of metadata by id (JSON lines `{"id": …, …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_file: Option<String>,
}
