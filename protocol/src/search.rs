//! Federated search between peers: `/ipvec/search/1.0.0`.
//!
//! The asking peer opens a stream to a peer that holds some shards of a collection and writes
//! one [`SearchRequest`]; the peer answers with one [`SearchAnswer`] and closes the stream.
//! Each message is one canonical DAG-CBOR value in a frame: an unsigned LEB128 length, then
//! that many bytes. A request is at most [`MAX_REQUEST_BYTES`], an answer at most
//! [`MAX_ANSWER_BYTES`]; a peer refuses anything larger without reading it.
//!
//! The answer holds one [`ShardAnswer`] per shard asked for, in the request's order: either the
//! root the shard was searched at, the head sequence that root belongs to and the hits, or a
//! [`ShardError`] saying why not. A request that cannot be served at all (malformed, over a
//! limit, over the peer's rate) gets an answer with `refused` set and no shards.
//!
//! ```text
//! SearchRequest { collection: string, shards: [u32], roots: [CID] | null, seq: u64 | null,
//!                 vector: bytes (LE f32), k: u32, ef: u32 | null, exact: bool,
//!                 filter: any | null, metadata: bool, deadline_ms: u32 }
//! SearchAnswer  { shards: [ShardAnswer], refused: ShardError | null }
//! ShardAnswer   { shard: u32, root: CID | null, seq: u64 | null, hits: [Hit],
//!                 error: ShardError | null }
//! Hit           { id: bytes (entry key), score: f64, leaf: CID | null, meta: any | null }
//! ShardError    { code: string, message: string }
//! ```

use ::cid::Cid;
use ipld_core::ipld::Ipld;
use serde::{Deserialize, Serialize};

use crate::{
    dagcbor,
    entry::EntryKey,
    limits::{MAX_DIMENSION, MAX_METADATA_BYTES},
    ProtocolError,
};

/// The protocol name peers negotiate.
pub const PROTOCOL: &str = "/ipvec/search/1.0.0";
/// Most hits one shard answers with (a request's `k` above it is refused).
pub const MAX_K: u32 = 1_000;
/// Most shards one request names.
pub const MAX_SHARDS: usize = 1_024;
/// Largest filter of a request, encoded.
pub const MAX_FILTER_BYTES: usize = 64 << 10;
/// Largest request: the largest vector, the largest filter, and room for the rest.
pub const MAX_REQUEST_BYTES: usize = MAX_DIMENSION * 4 + MAX_FILTER_BYTES + (64 << 10);
/// Largest answer (metadata makes hits large; a peer answering more is cut off).
pub const MAX_ANSWER_BYTES: usize = 8 << 20;
/// Longest deadline a request may carry, in milliseconds.
pub const MAX_DEADLINE_MS: u32 = 60_000;

/// A search of some shards of one collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The collection id (its owner's peer id).
    pub collection: String,
    /// The shards to search, strictly increasing.
    pub shards: Vec<u32>,
    /// The shard roots the asker wants answered against, one per shard in `shards`; a shard
    /// held at another root answers `stale`.
    pub roots: Option<Vec<Cid>>,
    /// The least head sequence the asker accepts; a shard held at an older head answers
    /// `stale`.
    pub seq: Option<u64>,
    /// The query: little-endian f32s, as many as the collection's dimension.
    #[serde(with = "serde_bytes")]
    pub vector: Vec<u8>,
    /// Hits wanted per shard.
    pub k: u32,
    /// The HNSW search breadth; `None` for the collection's default.
    pub ef: Option<u32>,
    /// Score every point instead of walking the graph.
    pub exact: bool,
    /// A filter in the HTTP API's form (as IPLD), or `None`.
    pub filter: Option<Ipld>,
    /// Whether hits carry their metadata.
    pub metadata: bool,
    /// How long the asker waits for the answer, in milliseconds.
    pub deadline_ms: u32,
}

/// One found point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The point's id in key form.
    pub id: EntryKey,
    /// Its score; higher is better.
    pub score: f64,
    /// The tree leaf that holds the point (`None` for a write not yet committed).
    pub leaf: Option<Cid>,
    /// Its metadata, when asked for.
    pub meta: Option<Ipld>,
}

/// Why a shard (or a whole request) was not answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardError {
    /// One of [`ErrorCode`]'s names; unknown codes are kept as they came.
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

/// The reasons a peer gives for not answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The peer does not hold the shard (or the collection).
    NotHeld,
    /// The peer's search queue is full; ask another holder.
    Busy,
    /// The peer holds the shard at another root or an older head than asked for.
    Stale,
    /// The request is malformed or over a limit (not worth retrying anywhere).
    BadRequest,
    /// The asker sent more than the peer's per-peer rate.
    RateLimited,
    /// The search failed on the peer.
    Internal,
}

impl ErrorCode {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotHeld => "not_held",
            ErrorCode::Busy => "busy",
            ErrorCode::Stale => "stale",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code named `name`, if it is one of these.
    pub fn parse(name: &str) -> Option<Self> {
        [
            ErrorCode::NotHeld,
            ErrorCode::Busy,
            ErrorCode::Stale,
            ErrorCode::BadRequest,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }
}

impl ShardError {
    /// An error with a known code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str().to_string(),
            message: message.into(),
        }
    }

    /// The code, if it is a known one.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

/// One shard's part of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardAnswer {
    /// The shard number.
    pub shard: u32,
    /// The shard root searched.
    pub root: Option<Cid>,
    /// The head sequence of the version `root` belongs to.
    pub seq: Option<u64>,
    /// The hits, best first (empty with an error).
    pub hits: Vec<Hit>,
    /// Why the shard was not searched.
    pub error: Option<ShardError>,
}

impl ShardAnswer {
    /// A shard that was not searched.
    pub fn failed(shard: u32, error: ShardError) -> Self {
        Self {
            shard,
            root: None,
            seq: None,
            hits: Vec::new(),
            error: Some(error),
        }
    }
}

/// A peer's answer to a [`SearchRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchAnswer {
    /// One per shard asked for, in the request's order.
    pub shards: Vec<ShardAnswer>,
    /// Set when the whole request was refused (then `shards` is empty).
    pub refused: Option<ShardError>,
}

impl SearchAnswer {
    /// The answer to a request refused as a whole.
    pub fn refused(error: ShardError) -> Self {
        Self {
            shards: Vec::new(),
            refused: Some(error),
        }
    }
}

impl SearchRequest {
    /// A search of `shards` of `collection` for the `k` nearest to `query`, answered within
    /// `deadline_ms`: any root and head, the collection's `ef`, a graph walk, no filter and no
    /// metadata (set those fields to ask otherwise).
    pub fn new(
        collection: impl Into<String>,
        shards: Vec<u32>,
        query: &[f32],
        k: u32,
        deadline_ms: u32,
    ) -> Self {
        let mut request = Self {
            collection: collection.into(),
            shards,
            roots: None,
            seq: None,
            vector: Vec::new(),
            k,
            ef: None,
            exact: false,
            filter: None,
            metadata: false,
            deadline_ms,
        };
        request.set_query(query);
        request
    }

    /// The query vector as f32s.
    pub fn query(&self) -> Vec<f32> {
        self.vector
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// Sets the query vector from f32s.
    pub fn set_query(&mut self, query: &[f32]) {
        self.vector = query.iter().flat_map(|x| x.to_le_bytes()).collect();
    }

    /// Checks what the schema cannot say: shard list order and size, vector length, `k`,
    /// the deadline, the filter's size and the roots' count.
    pub fn check(&self) -> Result<(), ProtocolError> {
        let invalid = |field, reason: String| ProtocolError::Invalid { field, reason };
        if self.shards.is_empty() || self.shards.len() > MAX_SHARDS {
            return Err(invalid(
                "shards",
                format!("name 1 to {MAX_SHARDS} shards, not {}", self.shards.len()),
            ));
        }
        if self.shards.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("shards", "must be strictly increasing".to_string()));
        }
        if let Some(roots) = &self.roots {
            if roots.len() != self.shards.len() {
                return Err(invalid(
                    "roots",
                    format!(
                        "{} roots for {} shards; give one per shard, or none",
                        roots.len(),
                        self.shards.len()
                    ),
                ));
            }
        }
        let dim = self.vector.len() / 4;
        if !self.vector.len().is_multiple_of(4) || dim == 0 || dim > MAX_DIMENSION {
            return Err(invalid(
                "vector",
                format!(
                    "{} bytes is not 1 to {MAX_DIMENSION} little-endian f32s",
                    self.vector.len()
                ),
            ));
        }
        if self.query().iter().any(|x| !x.is_finite()) {
            return Err(invalid("vector", "holds NaN or an infinity".to_string()));
        }
        if self.k == 0 || self.k > MAX_K {
            return Err(invalid("k", format!("{} is not 1 to {MAX_K}", self.k)));
        }
        if self.deadline_ms == 0 || self.deadline_ms > MAX_DEADLINE_MS {
            return Err(invalid(
                "deadline_ms",
                format!("{} is not 1 to {MAX_DEADLINE_MS}", self.deadline_ms),
            ));
        }
        if let Some(filter) = &self.filter {
            let size = dagcbor::encode(filter)?.len();
            if size > MAX_FILTER_BYTES {
                return Err(ProtocolError::TooLarge {
                    what: "search filter",
                    actual: size,
                    limit: MAX_FILTER_BYTES,
                });
            }
        }
        Ok(())
    }

    /// Encodes the request (checked first).
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        self.check()?;
        let bytes = dagcbor::encode(self)?;
        too_large("search request", bytes.len(), MAX_REQUEST_BYTES)?;
        Ok(bytes)
    }

    /// Decodes and checks a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        too_large("search request", bytes.len(), MAX_REQUEST_BYTES)?;
        let request: Self = dagcbor::decode(bytes)?;
        request.check()?;
        Ok(request)
    }
}

impl SearchAnswer {
    /// Encodes the answer.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let bytes = dagcbor::encode(self)?;
        too_large("search answer", bytes.len(), MAX_ANSWER_BYTES)?;
        Ok(bytes)
    }

    /// Decodes an answer and checks its hits: valid ids, finite scores, at most `k` per shard
    /// and metadata within the entry limit. Which shards it names is for the asker to judge.
    pub fn decode(bytes: &[u8], k: u32) -> Result<Self, ProtocolError> {
        too_large("search answer", bytes.len(), MAX_ANSWER_BYTES)?;
        let answer: Self = dagcbor::decode(bytes)?;
        for shard in &answer.shards {
            if shard.hits.len() > k as usize {
                return Err(ProtocolError::invalid(
                    "hits",
                    format!(
                        "shard {} answered {} hits for k = {k}",
                        shard.shard,
                        shard.hits.len()
                    ),
                ));
            }
            for hit in &shard.hits {
                EntryKey::new(hit.id.as_bytes().to_vec())?;
                if !hit.score.is_finite() {
                    return Err(ProtocolError::invalid("score", "not a finite number"));
                }
                if let Some(meta) = &hit.meta {
                    too_large(
                        "hit metadata",
                        dagcbor::encode(meta)?.len(),
                        MAX_METADATA_BYTES,
                    )?;
                }
            }
        }
        Ok(answer)
    }
}

fn too_large(what: &'static str, actual: usize, limit: usize) -> Result<(), ProtocolError> {
    if actual > limit {
        return Err(ProtocolError::TooLarge {
            what,
            actual,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cid::block_cid, entry::EntryId};

    fn request() -> SearchRequest {
        SearchRequest {
            seq: Some(7),
            ef: Some(64),
            metadata: true,
            ..SearchRequest::new(
                "12D3KooWAPmaSRLPd63XuTnFn88X4CESYWGEvoeQ9LN5SRoHw9VP",
                vec![1, 3],
                &[0.5, -1.25, 3.0],
                10,
                2_000,
            )
        }
    }

    #[test]
    fn a_request_and_an_answer_survive_the_wire() {
        let r = request();
        let back = SearchRequest::decode(&r.encode().unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.query(), vec![0.5, -1.25, 3.0]);

        let leaf = block_cid(crate::cid::DAG_CBOR, b"leaf");
        let answer = SearchAnswer {
            shards: vec![
                ShardAnswer {
                    shard: 1,
                    root: Some(leaf),
                    seq: Some(9),
                    hits: vec![Hit {
                        id: EntryId::Str("a".into()).to_key().unwrap(),
                        score: -0.25,
                        leaf: Some(leaf),
                        meta: Some(Ipld::Map([("n".to_string(), Ipld::Integer(1))].into())),
                    }],
                    error: None,
                },
                ShardAnswer::failed(3, ShardError::new(ErrorCode::NotHeld, "not here")),
            ],
            refused: None,
        };
        let back = SearchAnswer::decode(&answer.encode().unwrap(), 10).unwrap();
        assert_eq!(back, answer);
        assert_eq!(
            back.shards[1].error.as_ref().unwrap().code(),
            Some(ErrorCode::NotHeld)
        );
    }

    #[test]
    fn bad_requests_are_refused_with_the_field_at_fault() {
        let refused = |change: fn(&mut SearchRequest)| {
            let mut r = request();
            change(&mut r);
            r.check().unwrap_err().to_string()
        };
        assert!(refused(|r| r.shards = vec![]).contains("shards"));
        assert!(refused(|r| r.shards = vec![3, 1]).contains("increasing"));
        assert!(refused(|r| r.roots = Some(vec![])).contains("roots"));
        assert!(refused(|r| r.vector = vec![0; 5]).contains("vector"));
        assert!(refused(|r| r.set_query(&[f32::NAN])).contains("NaN"));
        assert!(refused(|r| r.k = 0).contains("k"));
        assert!(refused(|r| r.k = MAX_K + 1).contains("k"));
        assert!(refused(|r| r.deadline_ms = MAX_DEADLINE_MS + 1).contains("deadline_ms"));
        assert!(
            refused(|r| r.filter = Some(Ipld::Bytes(vec![0; MAX_FILTER_BYTES]))).contains("filter")
        );

        // Bytes from the wire: garbage, oversized, non-canonical, or valid CBOR that breaks
        // the rules.
        assert!(SearchRequest::decode(b"\xff\x00").is_err());
        assert!(matches!(
            SearchRequest::decode(&vec![0; MAX_REQUEST_BYTES + 1]),
            Err(ProtocolError::TooLarge { .. })
        ));
        let mut r = request();
        r.k = 0;
        let bytes = dagcbor::encode(&r).unwrap();
        assert!(SearchRequest::decode(&bytes).is_err());
    }

    #[test]
    fn answers_with_bad_hits_are_refused() {
        let hit = |id: Vec<u8>, score: f64| Hit {
            id: serde_ipld_dagcbor::from_slice(
                &dagcbor::encode(&serde_bytes::ByteBuf::from(id)).unwrap(),
            )
            .unwrap(),
            score,
            leaf: None,
            meta: None,
        };
        let answer = |hits| SearchAnswer {
            shards: vec![ShardAnswer {
                shard: 0,
                root: None,
                seq: None,
                hits,
                error: None,
            }],
            refused: None,
        };
        let good = EntryId::Int(4).to_key().unwrap().as_bytes().to_vec();
        let ok = answer(vec![hit(good.clone(), 1.0)]);
        assert!(SearchAnswer::decode(&ok.encode().unwrap(), 1).is_ok());
        // More hits than k.
        let many = answer(vec![hit(good.clone(), 1.0), hit(good.clone(), 0.5)]);
        assert!(SearchAnswer::decode(&many.encode().unwrap(), 1).is_err());
        // An id that is no entry key.
        let bad_id = answer(vec![hit(vec![7, 7], 1.0)]);
        assert!(SearchAnswer::decode(&bad_id.encode().unwrap(), 1).is_err());
    }
}
