//! Batch search: many query vectors in one request, searched with the same options, answered
//! in order, each answer what `POST …/search` answers for that vector alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    points::{default_k, is_false, is_true, yes},
    vectors::{encode_b64, VectorError},
    SearchRequest, SearchResponse,
};

/// One query of a batch: its vector, as numbers or in compact form (exactly one of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchQuery {
    /// The vector, as numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    /// The vector as base64 of its components as little-endian f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_b64: Option<String>,
    /// A question in plain words (text collections only), embedded by the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl BatchQuery {
    /// A query sent as numbers.
    pub fn numbers(vector: Vec<f32>) -> Self {
        Self {
            vector,
            vector_b64: None,
            text: None,
        }
    }

    /// A query sent in compact form (`vector_b64`).
    pub fn compact(vector: &[f32]) -> Self {
        Self {
            vector: Vec::new(),
            vector_b64: Some(encode_b64(vector)),
            text: None,
        }
    }

    /// A query in plain words.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// The query as a single search's request with `options`' settings: its vector read
    /// from whichever form it came in, or its text left to be embedded.
    pub fn into_request(self, options: &SearchRequest) -> Result<SearchRequest, VectorError> {
        let mut request = SearchRequest {
            vector: self.vector,
            vector_b64: self.vector_b64,
            text: self.text,
            ..options.clone()
        };
        request.decode_vector()?;
        Ok(request)
    }
}

/// `POST /v1/collections/{name}/search/batch`: queries that share one set of options. Send
/// queries that need other options (another `k`, another filter) in another batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchSearchRequest {
    /// The queries, 1 to `search.max_batch_queries` (default 1,024) of them.
    pub queries: Vec<BatchQuery>,
    /// Number of hits per query.
    #[serde(default = "default_k")]
    pub k: usize,
    /// HNSW candidate list size (default: the collection's ef_search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Exact (brute-force) search.
    #[serde(default)]
    pub exact: bool,
    /// Only points that pass this filter (as for a single search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter: Option<Value>,
    /// Search an older version: a manifest CID from the log (exact search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Each query's deadline, as for a single search: a query still running after this many
    /// milliseconds stops the batch, answered 504 (default `search.deadline_ms`, at most
    /// `search.max_deadline_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Ask the peers that hold the collection's shards (each query in turn, as a single
    /// federated search).
    #[serde(default, skip_serializing_if = "is_false")]
    pub federated: bool,
    /// Check every hit of a federated search against the collection's signed head.
    #[serde(default, skip_serializing_if = "is_false")]
    pub verify: bool,
    /// Refuse the answer (503) when less than this fraction of the shards answered a query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1.0))]
    pub min_coverage: Option<f64>,
    /// Use the node's search cache for each query (default true; see the single search's
    /// `cache`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub cache: bool,
}

impl BatchSearchRequest {
    /// A batch of `queries` with the options of `options` (its vector is ignored).
    pub fn with_options(queries: Vec<BatchQuery>, options: &SearchRequest) -> Self {
        Self {
            queries,
            k: options.k,
            ef: options.ef,
            exact: options.exact,
            filter: options.filter.clone(),
            at: options.at.clone(),
            deadline_ms: options.deadline_ms,
            federated: options.federated,
            verify: options.verify,
            min_coverage: options.min_coverage,
            cache: options.cache,
        }
    }

    /// The options every query shares, as a single search (with no vector).
    pub fn options(&self) -> SearchRequest {
        SearchRequest {
            k: self.k,
            ef: self.ef,
            exact: self.exact,
            filter: self.filter.clone(),
            at: self.at.clone(),
            deadline_ms: self.deadline_ms,
            federated: self.federated,
            verify: self.verify,
            min_coverage: self.min_coverage,
            cache: self.cache,
            ..SearchRequest::new(Vec::new())
        }
    }
}

/// The answers of a batch, one per query in the order of the queries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchSearchResponse {
    /// Each query's answer, as `POST …/search` gives it.
    pub results: Vec<SearchResponse>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_go_both_ways_and_queries_take_either_form() {
        let batch: BatchSearchRequest = serde_json::from_value(serde_json::json!({
            "queries": [{"vector": [1.0, 2.0]}, {"vector_b64": "AACAPwAAAMA="}],
            "k": 3, "ef": 40, "filter": {"must": []}, "deadline_ms": 500
        }))
        .unwrap();
        let options = batch.options();
        assert_eq!(
            (options.k, options.ef, options.deadline_ms),
            (3, Some(40), Some(500))
        );
        assert_eq!(
            BatchSearchRequest::with_options(batch.queries.clone(), &options),
            batch
        );
        let requests: Vec<SearchRequest> = batch
            .queries
            .into_iter()
            .map(|q| q.into_request(&options).unwrap())
            .collect();
        assert_eq!(requests[0].vector, [1.0, 2.0]);
        assert_eq!(requests[1].vector, [1.0, -2.0]);
        assert_eq!((requests[1].k, requests[1].ef), (3, Some(40)));
        let question = BatchQuery::text("a question")
            .into_request(&options)
            .unwrap();
        assert_eq!(question.text.as_deref(), Some("a question"));
        assert!(question.vector.is_empty(), "left for the node to embed");
        let both = BatchQuery {
            text: Some("a question".into()),
            ..BatchQuery::numbers(vec![1.0])
        };
        assert_eq!(both.into_request(&options), Err(VectorError::Both));
        let unknown = serde_json::json!({"queries": [{"vector": [1.0], "k": 2}]});
        assert!(serde_json::from_value::<BatchSearchRequest>(unknown).is_err());
    }
}
