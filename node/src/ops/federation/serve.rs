//! Answering peers' searches of the shards held here (`/ipvec/search/1.0.0`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
};

use ipvec_protocol::search::{
    ErrorCode, Hit as WireHit, SearchAnswer, SearchRequest as WireRequest, ShardAnswer, ShardError,
};
use libp2p::PeerId;

use super::super::{Inner, Node};
use crate::collection::{points::ipld_to_json, CollectionError, Filter, SearchOptions};

fn refused(code: ErrorCode, message: impl Into<String>) -> SearchAnswer {
    SearchAnswer::refused(ShardError::new(code, message))
}

impl Node {
    /// Answers `/ipvec/search/1.0.0` from this node's shards (a weak handle, so the network
    /// does not keep the node alive).
    pub(in crate::ops) fn serve_searches(&self, network: &crate::net::Network) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let counting = weak.clone();
        network.serve_searches(
            Arc::new(move |_peer: PeerId, request: WireRequest| {
                let weak = weak.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(inner) => Node { inner }.answer_search(request).await,
                        None => refused(ErrorCode::Busy, "this peer is shutting down"),
                    }
                })
            }),
            Arc::new(move |answered| {
                if let Some(inner) = counting.upgrade() {
                    let event = if answered {
                        "remote_served"
                    } else {
                        "remote_refused"
                    };
                    inner.metrics.federation(event, 1);
                }
            }),
            self.inner.config.p2p.search_rate_per_peer,
        );
    }

    /// One peer's search of shards held here: per shard, the hits and the root they come
    /// from, or why not. Runs on the background pool, below this node's own searches.
    pub async fn answer_search(&self, request: WireRequest) -> SearchAnswer {
        let Some(name) = self.name_of_id(&request.collection) else {
            return refused(
                ErrorCode::NotHeld,
                format!(
                    "this peer holds no shard of collection {}",
                    request.collection
                ),
            );
        };
        let limits = &self.inner.config.search;
        if u64::from(request.k) > limits.max_k
            || request.ef.is_some_and(|ef| u64::from(ef) > limits.max_ef)
        {
            return refused(
                ErrorCode::BadRequest,
                format!(
                    "k = {} or ef = {:?} is over this peer's limits (k ≤ {}, ef ≤ {})",
                    request.k, request.ef, limits.max_k, limits.max_ef
                ),
            );
        }
        let filter = match request
            .filter
            .as_ref()
            .map(|f| Filter::from_json(&ipld_to_json(f)).and_then(Filter::compile))
        {
            None => None,
            Some(Ok(filter)) => Some(filter),
            Some(Err(e)) => {
                return refused(ErrorCode::BadRequest, format!("the filter is invalid: {e}"))
            }
        };
        let shared = match self.collection(&name).await {
            Ok(shared) => shared,
            Err(e) => return refused(ErrorCode::Busy, e.to_string()),
        };
        let work = async move {
            let c = shared.read_owned().await;
            let query = request.query();
            let dimension = c.manifest().dimension as usize;
            if query.len() != dimension {
                return refused(
                    ErrorCode::BadRequest,
                    format!(
                        "the query has {} dimensions and collection {} has {dimension}",
                        query.len(),
                        request.collection
                    ),
                );
            }
            let options = SearchOptions {
                k: request.k as usize,
                ef: request.ef.map(|ef| ef as usize),
                exact: request.exact,
            };
            let seq = c.head().seq;
            // Each shard asked for is checked first; the ones this peer can answer are then
            // searched together, one search of the joint index split by shard (whose answers
            // merge to the top-k of those shards, as separate answers would).
            let mut shards: Vec<Option<ShardAnswer>> = Vec::with_capacity(request.shards.len());
            let mut good: Vec<u32> = Vec::new();
            for (i, &number) in request.shards.iter().enumerate() {
                let failed = |code, message: String| {
                    Some(ShardAnswer::failed(number, ShardError::new(code, message)))
                };
                let Some(&root) = c.manifest().shards.get(number as usize) else {
                    shards.push(failed(
                        ErrorCode::BadRequest,
                        format!(
                            "collection {} has {} shards; there is no shard {number}",
                            request.collection,
                            c.manifest().shards.len()
                        ),
                    ));
                    continue;
                };
                if c.shard(number).is_none() {
                    shards.push(failed(
                        ErrorCode::NotHeld,
                        format!("this peer does not hold shard {number}"),
                    ));
                    continue;
                }
                if let Some(wanted) = request.roots.as_ref().map(|r| r[i]) {
                    if wanted != root {
                        shards.push(failed(
                            ErrorCode::Stale,
                            format!("this peer holds shard {number} at root {root}, not {wanted}"),
                        ));
                        continue;
                    }
                }
                if request.seq.is_some_and(|wanted| wanted > seq) {
                    shards.push(failed(
                        ErrorCode::Stale,
                        format!(
                            "this peer holds version {seq}, older than the {} asked for",
                            request.seq.unwrap_or_default()
                        ),
                    ));
                    continue;
                }
                shards.push(None);
                good.push(number);
            }
            let answers = if good.is_empty() {
                Ok(Vec::new())
            } else {
                c.search_by_shard(&query, options, filter.as_ref(), &good)
                    .await
            };
            // By shard (the request's shards are strictly increasing: each is named once).
            let mut answers: BTreeMap<u32, Result<Vec<_>, ShardAnswer>> = match answers {
                Ok(answers) => answers.into_iter().map(|(n, hits)| (n, Ok(hits))).collect(),
                Err(e) => {
                    let code = match e {
                        CollectionError::Index(_) | CollectionError::Invalid(_) => {
                            ErrorCode::BadRequest
                        }
                        _ => ErrorCode::Internal,
                    };
                    let failed =
                        |n: u32| ShardAnswer::failed(n, ShardError::new(code, e.to_string()));
                    good.iter().map(|n| (*n, Err(failed(*n)))).collect()
                }
            };
            let shards: Vec<ShardAnswer> = request
                .shards
                .iter()
                .zip(shards)
                .map(|(&number, checked)| {
                    if let Some(failed) = checked {
                        return failed;
                    }
                    match answers.remove(&number) {
                        Some(Ok(hits)) => ShardAnswer {
                            shard: number,
                            root: c.manifest().shards.get(number as usize).copied(),
                            seq: Some(seq),
                            hits: hits
                                .into_iter()
                                .filter_map(|h| {
                                    Some(WireHit {
                                        id: h.id.to_key().ok()?,
                                        score: f64::from(h.score),
                                        leaf: h.leaf,
                                        meta: match request.metadata {
                                            true => h.metadata.map(|m| m.unpack()),
                                            false => None,
                                        },
                                    })
                                })
                                .collect(),
                            error: None,
                        },
                        Some(Err(failed)) => failed,
                        None => ShardAnswer::failed(
                            number,
                            ShardError::new(ErrorCode::Internal, "the search gave no answer"),
                        ),
                    }
                })
                .collect();
            SearchAnswer {
                shards,
                refused: None,
            }
        };
        let handle = tokio::runtime::Handle::current();
        crate::background::run(move || handle.block_on(work))
            .await
            .unwrap_or_else(|e| refused(ErrorCode::Internal, format!("the search stopped: {e}")))
    }
}
