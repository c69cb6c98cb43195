//! Points: writing a batch, deleting by id, reading one, and searching.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    vectors::{encode_b64, vector_of, VectorError},
    BadPoint, PointId,
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
    /// The vector (as many numbers as the collection's dimension). Empty when `text` is to
    /// be embedded instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    /// Text to embed with the collection's model when no vector is given (text
    /// collections only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Metadata: a JSON object, stored as a DAG-CBOR map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

/// The metadata key a point's text is kept under.
pub const TEXT_KEY: &str = "text";

impl PointIn {
    /// A point with its vector.
    pub fn vector(id: PointId, vector: Vec<f32>, metadata: Option<Value>) -> Self {
        Self {
            id,
            vector,
            text: None,
            metadata,
        }
    }

    /// A point whose vector is `text`'s embedding (in a text collection).
    pub fn text(id: PointId, text: String) -> Self {
        Self {
            id,
            vector: Vec::new(),
            text: Some(text),
            metadata: None,
        }
    }

    /// Copies the point's text into its metadata under `"text"` (unless the metadata
    /// already has that key), so that searches answer with it. Metadata that is not an
    /// object is left for the write to refuse.
    pub fn keep_text(&mut self) {
        let Some(text) = &self.text else { return };
        let metadata = self
            .metadata
            .get_or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(map) = metadata {
            map.entry(TEXT_KEY)
                .or_insert_with(|| Value::String(text.clone()));
        }
    }
}

/// A point of a `PUT …/points` body: its vector as numbers or in compact form (exactly one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpsertPoint {
    /// The id.
    pub id: PointId,
    /// The vector, as numbers (as many as the collection's dimension). Give it this way or
    /// as `vector_b64`, not both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    /// The vector in compact form: base64 of its components as little-endian f32
    /// (docs/api.md, "Compact vectors").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_b64: Option<String>,
    /// Text to embed with the collection's model instead of a vector (text collections
    /// only); kept in the metadata under `"text"` unless the batch says `store_text: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Metadata: a JSON object, stored as a DAG-CBOR map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

impl UpsertPoint {
    /// `point` sent with its vector as numbers.
    pub fn numbers(point: PointIn) -> Self {
        Self {
            id: point.id,
            vector: point.vector,
            vector_b64: None,
            text: point.text,
            metadata: point.metadata,
        }
    }

    /// `point` sent with its vector in compact form (`vector_b64`).
    pub fn compact(point: PointIn) -> Self {
        let vector_b64 = (!point.vector.is_empty()).then(|| encode_b64(&point.vector));
        Self {
            id: point.id,
            vector: Vec::new(),
            vector_b64,
            text: point.text,
            metadata: point.metadata,
        }
    }

    /// The point, its vector read from whichever form it came in; a point with `text`
    /// and no vector keeps an empty vector for the node to embed.
    pub fn into_point(self) -> Result<PointIn, (PointId, VectorError)> {
        let only_text = self.text.is_some() && self.vector.is_empty() && self.vector_b64.is_none();
        let vector = if only_text {
            Ok(Vec::new())
        } else {
            vector_of(self.vector, self.vector_b64.as_deref())
        };
        match vector {
            Ok(vector) => Ok(PointIn {
                id: self.id,
                vector,
                text: self.text,
                metadata: self.metadata,
            }),
            Err(e) => Err((self.id, e)),
        }
    }
}

/// `PUT /v1/collections/{name}/points`: a batch, stored whole or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpsertPoints {
    /// The points.
    pub points: Vec<UpsertPoint>,
    /// Keep each point's `text` in its metadata under `"text"` (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub store_text: bool,
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn is_true(b: &bool) -> bool {
    *b
}

impl UpsertPoints {
    /// A batch of `points` whose vectors travel in compact form: about half the bytes of
    /// JSON numbers, and no decimal text to parse. The points are sent as they are: a text
    /// is embedded, and kept only if [`PointIn::keep_text`] put it in the metadata.
    pub fn compact(points: Vec<PointIn>) -> Self {
        Self {
            points: points.into_iter().map(UpsertPoint::compact).collect(),
            store_text: false,
        }
    }

    /// The points, each vector read from whichever form it came in. The first point that
    /// gives no vector, both forms, or a `vector_b64` that cannot be read is refused, named
    /// by its position in the batch.
    pub fn into_points(self) -> Result<Vec<PointIn>, BadPoint> {
        let store_text = self.store_text;
        self.points
            .into_iter()
            .enumerate()
            .map(|(position, point)| {
                let mut point = point.into_point().map_err(|(id, e)| BadPoint {
                    position,
                    id: id.to_string(),
                    reason: e.to_string(),
                })?;
                if store_text {
                    point.keep_text();
                }
                Ok(point)
            })
            .collect()
    }
}

/// `POST /v1/collections/{name}/points/delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeletePoints {
    /// The ids to delete.
    pub ids: Vec<PointId>,
}

/// `POST /v1/collections/{name}/points/page`: the next page of a collection's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PagePoints {
    /// Where the page starts: `next` of the page before; absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Points per page (1 to `api.max_batch_points`).
    #[serde(default = "default_page")]
    pub limit: usize,
}

fn default_page() -> usize {
    1_000
}

/// A page of a collection's points, in shard order and id order within a shard. Every page
/// of one walk reads the version the first page named, so writes made during the walk do
/// not show in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PointPage {
    /// The points, each with its stored vector, metadata and leaf.
    pub points: Vec<PointOut>,
    /// The cursor of the next page; absent after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The version (manifest CID) the pages read.
    pub version: String,
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
    /// The key that wrote this version of the point, as a peer id (absent from older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// When it was written: a hybrid logical clock stamp, milliseconds since the Unix epoch
    /// times 65,536 plus a counter. Of two writers' versions of a point, the higher
    /// `(hlc, writer)` wins (absent from older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hlc: Option<u64>,
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
    /// A question in plain words instead of a vector (text collections only): the node
    /// embeds it once with the collection's model, also for a federated search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
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
    /// Answer from the node's search cache when it holds this search at the collection's
    /// current state, and keep the answer there (default true; `search.cache_entries`).
    /// `false` searches the index and leaves the cache alone, as `Cache-Control: no-cache`
    /// or `no-store` does over HTTP.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub cache: bool,
}

impl SearchRequest {
    /// A search of `vector` with the defaults (`k` = 10, the collection's `ef_search`, HNSW).
    pub fn new(vector: Vec<f32>) -> Self {
        Self {
            vector,
            vector_b64: None,
            text: None,
            k: default_k(),
            ef: None,
            exact: false,
            filter: None,
            at: None,
            deadline_ms: None,
            federated: false,
            verify: false,
            min_coverage: None,
            cache: true,
        }
    }

    /// A search for the nearest points to `text` (a text collection's), with the defaults.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::new(Vec::new())
        }
    }

    /// Reads a `vector_b64` into `vector`, checking that the request gives exactly one of
    /// `vector`, `vector_b64` and `text` (which leaves `vector` empty, to be embedded).
    pub fn decode_vector(&mut self) -> Result<(), VectorError> {
        let b64 = self.vector_b64.take();
        if self.text.is_some() {
            return match self.vector.is_empty() && b64.is_none() {
                true => Ok(()),
                false => Err(VectorError::Both),
            };
        }
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
    /// Whether the answer came from the node's search cache: the same search at the same
    /// state of the collection was answered before (absent when it did not).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cached: bool,
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
    /// Holders not asked because their circuit breaker was open (after repeated
    /// failures) and another holder was left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// With `verify`: how many of this shard's hits proved true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<u32>,
    /// With `verify`: the hits that did not, and why (they are left out of the answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_failures: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_either_form_and_names_the_point_it_cannot() {
        let point = |id: u64, vector: Vec<f32>| PointIn::vector(PointId::Int(id), vector, None);
        let points = vec![point(1, vec![1.0, -2.0]), point(2, vec![0.5, f32::NAN])];
        let compact = UpsertPoints::compact(points.clone());
        let text = serde_json::to_string(&compact).unwrap();
        assert!(text.starts_with(r#"{"points":[{"id":1,"vector_b64":"AACAPwAAAMA="}"#));
        let back: UpsertPoints = serde_json::from_str(&text).unwrap();
        let read = back.into_points().unwrap();
        assert_eq!(read[0], points[0]);
        assert!(
            read[1].vector[1].is_nan(),
            "NaN is the collection's to refuse"
        );
        let numbers = UpsertPoints {
            points: vec![UpsertPoint::numbers(points[0].clone())],
            store_text: true,
        };
        assert_eq!(numbers.into_points().unwrap(), [points[0].clone()]);

        let body = serde_json::json!({"points": [
            {"id": 1, "vector": [1.0]}, {"id": "b", "vector_b64": "AACAPwAA"}
        ]});
        let bad = serde_json::from_value::<UpsertPoints>(body)
            .unwrap()
            .into_points()
            .unwrap_err();
        assert_eq!((bad.position, bad.id.as_str()), (1, "b"));
        assert_eq!(bad.reason, VectorError::Length(6).to_string());
        let neither = serde_json::json!({"points": [{"id": 3}]});
        let bad = serde_json::from_value::<UpsertPoints>(neither)
            .unwrap()
            .into_points()
            .unwrap_err();
        assert_eq!(bad.reason, VectorError::Missing.to_string());
    }

    #[test]
    fn texts_are_left_to_embed_and_kept_in_the_metadata_unless_asked_not_to() {
        let body = serde_json::json!({"points": [
            {"id": 1, "text": "a cat sat"},
            {"id": 2, "text": "a dog ran", "metadata": {"lang": "en"}},
            {"id": 3, "text": "given", "vector": [1.0, 2.0]},
            {"id": 4, "text": "mine", "metadata": {"text": "shown instead"}}
        ]});
        let points = serde_json::from_value::<UpsertPoints>(body.clone())
            .unwrap()
            .into_points()
            .unwrap();
        assert!(points[0].vector.is_empty() && points[1].vector.is_empty());
        assert_eq!(points[2].vector, [1.0, 2.0], "a vector given is used");
        let metadata: Vec<_> = points.iter().map(|p| p.metadata.clone().unwrap()).collect();
        assert_eq!(metadata[0], serde_json::json!({"text": "a cat sat"}));
        assert_eq!(
            metadata[1],
            serde_json::json!({"lang": "en", "text": "a dog ran"})
        );
        assert_eq!(metadata[3], serde_json::json!({"text": "shown instead"}));

        let mut unkept = body;
        unkept["store_text"] = false.into();
        let points = serde_json::from_value::<UpsertPoints>(unkept)
            .unwrap()
            .into_points()
            .unwrap();
        assert_eq!(points[0].metadata, None);
        assert_eq!(points[0].text.as_deref(), Some("a cat sat"));

        // What the node's client sends: the points as they are, texts not kept twice.
        let sent = UpsertPoints::compact(vec![PointIn::text(PointId::of_text("x"), "x".into())]);
        let again = serde_json::from_str::<UpsertPoints>(&serde_json::to_string(&sent).unwrap())
            .unwrap()
            .into_points()
            .unwrap();
        assert_eq!(
            (again[0].metadata.as_ref(), again[0].text.as_deref()),
            (None, Some("x"))
        );
        assert_eq!(PointId::of_text("x"), PointId::of_text("x"));
        assert_ne!(PointId::of_text("x"), PointId::of_text("y"));

        let mut search: SearchRequest =
            serde_json::from_value(serde_json::json!({"text": "a question", "k": 3})).unwrap();
        search.decode_vector().unwrap();
        assert!(search.vector.is_empty() && search.text.is_some());
        let mut both: SearchRequest =
            serde_json::from_value(serde_json::json!({"text": "q", "vector": [1.0]})).unwrap();
        assert_eq!(both.decode_vector(), Err(VectorError::Both));
    }
}
