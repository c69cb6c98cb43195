//! Points: writing a batch, deleting by id, reading one, and searching.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PointId;

fn default_k() -> usize {
    10
}

/// A point to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PointIn {
    /// The id.
    pub id: PointId,
    /// The vector (as many numbers as the collection's dimension).
    pub vector: Vec<f32>,
    /// Metadata: a JSON object, stored as a DAG-CBOR map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

/// `PUT /v1/collections/{name}/points`: a batch, stored whole or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpsertPoints {
    /// The points.
    pub points: Vec<PointIn>,
}

/// `POST /v1/collections/{name}/points/delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeletePoints {
    /// The ids to delete.
    pub ids: Vec<PointId>,
}

/// What a write did; returned once it is durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriteResult {
    /// Points written or deleted.
    pub changed: u64,
    /// Live points after the write.
    pub points: u64,
    /// The manifest CID after the write (it moves when the log is committed into the tree).
    pub root: String,
}

/// `GET /v1/collections/{name}/points/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PointOut {
    /// The id.
    pub id: PointId,
    /// The stored vector (after quantization), as f32.
    pub vector: Vec<f32>,
    /// Metadata, if any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
    /// The tree leaf holding the point; null while the write is only in the log.
    #[serde(default)]
    pub cid: Option<String>,
}

/// `POST /v1/collections/{name}/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hit {
    /// The point id.
    pub id: PointId,
    /// Score; higher is better (see docs/api.md for each metric).
    pub score: f32,
    /// The tree leaf holding the point's vector; null while the write is only in the log.
    #[serde(default)]
    pub cid: Option<String>,
    /// Metadata, if any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

impl Hit {
    /// The id as text, spelled as `id:` queries and the node's URL paths read it
    /// ([`PointId::spelled`]).
    pub fn id_text(&self) -> String {
        self.id.spelled()
    }
}

/// Search results, best first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResponse {
    /// The hits.
    pub hits: Vec<Hit>,
    /// Which shards the hits come from. A node holding only some shards of a collection
    /// searches those: the hits are then the best of part of the data, and this says so.
    /// (Absent from older nodes, which always searched every shard.)
    #[serde(default)]
    pub coverage: Option<Coverage>,
}

/// What a search covered: which of a collection's shards answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Coverage {
    /// Shards the collection has.
    pub shards: u32,
    /// Shards whose points were searched, in order.
    pub searched: Vec<u32>,
    /// Whether every shard was searched (the hits are the collection's best).
    pub complete: bool,
}
