//! Points: writing a batch, deleting by id, reading one, and searching.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    vectors::{vector_of, VectorError},
    PointId,
};

pub(super) fn default_k() -> usize {
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
    /// The query vector, as numbers. Give it this way or as `vector_b64`, not both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    /// The query vector in compact form: base64 of its components as little-endian f32
    /// (docs/api.md, "Compact vectors").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_b64: Option<String>,
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
    /// Ask the peers that hold the collection's shards, even when this node holds them all.
    /// A collection this node does not hold, named by its id, is always searched this way.
    #[serde(default, skip_serializing_if = "is_false")]
    pub federated: bool,
    /// Check every hit of a federated search against the collection's signed head (fetching
    /// the tree path to its leaf and recomputing its score); hits that fail are dropped and
    /// named in the coverage report.
    #[serde(default, skip_serializing_if = "is_false")]
    pub verify: bool,
    /// Refuse the answer (503) when less than this fraction of the shards answered (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1.0))]
    pub min_coverage: Option<f64>,
}

impl SearchRequest {
    /// A search of `vector` with the defaults (`k` = 10, the collection's `ef_search`, HNSW).
    pub fn new(vector: Vec<f32>) -> Self {
        Self {
            vector,
            vector_b64: None,
            k: default_k(),
            ef: None,
            exact: false,
            filter: None,
            at: None,
            deadline_ms: None,
            federated: false,
            verify: false,
            min_coverage: None,
        }
    }

    /// Reads a `vector_b64` into `vector`, checking that the request gives exactly one.
    pub fn decode_vector(&mut self) -> Result<(), VectorError> {
        let b64 = self.vector_b64.take();
        self.vector = vector_of(std::mem::take(&mut self.vector), b64.as_deref())?;
        Ok(())
    }
}

pub(super) fn is_false(b: &bool) -> bool {
    !*b
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
    /// A federated search's account of every shard: who answered it, against which root,
    /// how fast, or why it is missing. Empty for a local search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report: Vec<ShardCoverage>,
}

impl Coverage {
    /// The fraction of the shards searched (0 to 1).
    pub fn fraction(&self) -> f64 {
        self.searched.len() as f64 / f64::from(self.shards.max(1))
    }

    /// The shards a federated search is missing and why: `shard 3 (deadline), …`.
    pub fn missing(&self) -> Vec<String> {
        self.report
            .iter()
            .filter_map(|s| {
                s.missing
                    .as_ref()
                    .map(|why| format!("shard {} ({why})", s.shard))
            })
            .collect()
    }
}

/// How one shard of a federated search went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardCoverage {
    /// The shard.
    pub shard: u32,
    /// The peer whose answer was used (`"local"`: this node); absent when the shard is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// The shard root the answer was searched at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The head sequence (version) that root belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Milliseconds from the request to that answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Whether the answer came from a second holder asked because the first was slow.
    #[serde(default)]
    pub hedged: bool,
    /// Why the shard is missing from the hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// Every holder asked, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<String>,
    /// With `verify`: how many of this shard's hits proved true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<u32>,
    /// With `verify`: the hits that did not, and why (they are left out of the answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_failures: Vec<String>,
}
