//! Searching a collection, or an older version of it, within the request's budget: one
//! vector at a time, or a batch of vectors with the same options.
//!
//! A single search is a batch of one: both go through [`Node::local_searches`] (one read lock,
//! one hand-off to the blocking pool for the whole batch), so a batch's answers are exactly
//! the single searches' answers.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use ipvec_protocol::api::*;
use tokio::time::Instant;

use super::{offload, parse_cid, Error, Node};
use crate::collection::{points::ipld_to_json, Filter, SearchOptions};

/// Where a search goes.
enum SearchRoute {
    /// The shards held here, of the collection with this local name.
    Local(String),
    /// The peers holding collection `id` (known here as `local`, if held here at all).
    Peers { id: String, local: Option<String> },
}

/// An error of query `i` of a batch of `n`: a refused vector names its query.
fn of_query(e: Error, i: usize, n: usize) -> Error {
    match e {
        Error::Invalid(message) if n > 1 => {
            Error::Invalid(format!("query {i} of the batch: {message}"))
        }
        e => e,
    }
}

/// The answer to query `i` of `total` stopped at its `deadline`.
fn past_deadline(deadline: Duration, i: usize, total: usize) -> Error {
    let (what, smaller) = match total {
        1 => ("the search".to_string(), ""),
        _ => (
            format!("query {i} of the batch ({i} of its {total} queries were answered)"),
            "send smaller batches, ",
        ),
    };
    Error::deadline_exceeded(format!(
        "{what} was stopped at its deadline of {} ms; {smaller}ask for a longer deadline_ms \
         (at most search.max_deadline_ms), a smaller k or ef, or an HNSW search instead of an \
         exact one",
        deadline.as_millis()
    ))
}

/// Sets its flag when dropped: a request's handler dropped because its client went away
/// tells the work it started on the blocking pool to stop.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Node {
    /// Checks a search's numbers against `search.*` before any work, and gives its deadline.
    pub(super) fn search_budget(&self, request: &SearchRequest) -> Result<Duration, Error> {
        let limits = &self.inner.config.search;
        let within = |field: &str, value: u64, max: u64, key: &str| {
            if value == 0 || value > max {
                Err(Error::invalid(format!(
                    "{field} = {value} is outside 1..={max} ({key}); {}",
                    if value == 0 {
                        format!("{field} must be at least 1")
                    } else {
                        format!("ask for less, or raise {key} in the config")
                    }
                )))
            } else {
                Ok(value)
            }
        };
        within("k", request.k as u64, limits.max_k, "search.max_k")?;
        if let Some(ef) = request.ef {
            within("ef", ef as u64, limits.max_ef, "search.max_ef")?;
        }
        let deadline = match request.deadline_ms {
            Some(ms) => within(
                "deadline_ms",
                ms,
                limits.max_deadline_ms,
                "search.max_deadline_ms",
            )?,
            None => limits.deadline_ms,
        };
        Ok(Duration::from_millis(deadline))
    }

    /// Where a search of `name` goes: a collection held here by that name or id, unless
    /// `federated`, is searched here; a collection id held only by peers, through them.
    async fn search_route(&self, name: &str, federated: bool) -> Result<SearchRoute, Error> {
        let (name, id) = match self.collection(name).await {
            Ok(shared) => (name.to_string(), shared.read().await.id()?),
            Err(Error::NotFound(not_found)) => match self.name_of_id(name) {
                Some(local) => (local, name.to_string()),
                None if name.parse::<libp2p::PeerId>().is_ok() => {
                    return Ok(SearchRoute::Peers {
                        id: name.to_string(),
                        local: None,
                    });
                }
                None => return Err(Error::NotFound(not_found)),
            },
            Err(e) => return Err(e),
        };
        Ok(match federated {
            true => SearchRoute::Peers {
                id,
                local: Some(name),
            },
            false => SearchRoute::Local(name),
        })
    }

    /// Searches a collection (or, with `at`, an older version of it), stopping at the
    /// request's deadline (`search.deadline_ms` when it names none).
    ///
    /// `name` may also be a collection id: of a collection held here (searched as by its
    /// name), or of one held only by peers, which is searched through them (federated; see
    /// [`Node::federated_search`]). `federated` asks the peers even for a collection held
    /// here; `min_coverage` refuses an answer from too few shards.
    pub async fn search(
        &self,
        name: &str,
        mut request: SearchRequest,
    ) -> Result<SearchResponse, Error> {
        request.decode_vector()?;
        match self.search_route(name, request.federated).await? {
            SearchRoute::Peers { id, local } => {
                self.federated_search(&id, local.as_deref(), request).await
            }
            SearchRoute::Local(name) => {
                if request.text.is_some() {
                    // Embedding the question counts against the search's deadline: the
                    // search gets what is left of it.
                    let budget = self.search_budget(&request)?;
                    let started = tokio::time::Instant::now();
                    let (model, dimension) = self.text_model(&name).await?;
                    let requests = std::slice::from_mut(&mut request);
                    let embedded = self.embed_queries(&name, model.as_ref(), dimension, requests);
                    tokio::time::timeout(budget, embedded).await.map_err(|_| {
                        Error::deadline_exceeded(format!(
                            "embedding the question took longer than the search's deadline \
                                 of {} ms; ask for a longer deadline_ms (at most \
                                 search.max_deadline_ms), or check the embedding provider \
                                 (embedding.http_url answers slowly or not at all)",
                            budget.as_millis()
                        ))
                    })??;
                    let left = budget.saturating_sub(started.elapsed());
                    request.deadline_ms = Some((left.as_millis() as u64).max(1));
                }
                let vector = std::mem::take(&mut request.vector);
                let mut answers = self
                    .local_searches("search", &name, &request, vec![vector])
                    .await?;
                answers
                    .pop()
                    .ok_or_else(|| Error::internal("the search gave no answer"))
            }
        }
    }

    /// Searches many vectors with the same options: the answers in the order of the
    /// queries, each what [`Node::search`] answers for its vector alone.
    ///
    /// The batch holds 1 to `search.max_batch_queries` queries; each has the deadline a
    /// single search would have. Searched here, the batch takes the collection's read lock
    /// once and runs on one thread of the blocking pool; federated, its queries are asked one
    /// after the other. The first query that fails fails the batch, naming its position.
    pub async fn search_batch(
        &self,
        name: &str,
        request: BatchSearchRequest,
    ) -> Result<BatchSearchResponse, Error> {
        let total = request.queries.len();
        let max = self.inner.config.search.max_batch_queries;
        if total == 0 {
            return Err(Error::invalid(
                "the batch holds no queries; give 1 or more in `queries`",
            ));
        }
        if total as u64 > max {
            return Err(Error::too_large(format!(
                "the batch holds {total} queries, over search.max_batch_queries = {max}; send \
                 them in batches of at most {max}"
            )));
        }
        let options = request.options();
        let mut requests = request
            .queries
            .into_iter()
            .enumerate()
            .map(|(i, q)| {
                q.into_request(&options)
                    .map_err(|e| of_query(e.into(), i, total))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let results = match self.search_route(name, options.federated).await? {
            SearchRoute::Local(name) => {
                if requests.iter().any(|r| r.text.is_some()) {
                    let (model, dimension) = self.text_model(&name).await?;
                    self.embed_queries(&name, model.as_ref(), dimension, &mut requests)
                        .await?;
                }
                let vectors = requests.into_iter().map(|r| r.vector).collect();
                self.local_searches("search_batch", &name, &options, vectors)
                    .await?
            }
            SearchRoute::Peers { id, local } => {
                self.federated_searches(&id, local.as_deref(), requests)
                    .await?
            }
        };
        Ok(BatchSearchResponse { results })
    }

    /// Federated searches of `requests`, one after the other, each as a single federated
    /// search.
    async fn federated_searches(
        &self,
        id: &str,
        local: Option<&str>,
        requests: Vec<SearchRequest>,
    ) -> Result<Vec<SearchResponse>, Error> {
        let total = requests.len();
        let mut answers = Vec::with_capacity(total);
        for (i, request) in requests.into_iter().enumerate() {
            let answer = self.federated_search(id, local, request).await;
            answers.push(answer.map_err(|e| of_query(e, i, total))?);
        }
        Ok(answers)
    }

    /// Searches of `vectors` in the shards held here, with `options` (their vector is
    /// ignored), recorded as operation `op`: under one read lock, the searches the cache does
    /// not answer ([`search_cache`](super::search_cache)) on one thread of the blocking pool.
    /// Each query has the deadline a single search has (the first one's includes the wait for
    /// the lock); the batch stops between two queries when its caller goes away.
    async fn local_searches(
        &self,
        op: &str,
        name: &str,
        options: &SearchRequest,
        vectors: Vec<Vec<f32>>,
    ) -> Result<Vec<SearchResponse>, Error> {
        let answers = self
            .observed(op, name, async {
                let deadline = self.search_budget(options)?;
                let filter = options
                    .filter
                    .as_ref()
                    .map(|f| Filter::from_json(f).and_then(Filter::compile))
                    .transpose()?;
                let at = options.at.as_deref().map(parse_cid).transpose()?;
                let shared = self.collection(name).await?;
                let search = SearchOptions {
                    k: options.k,
                    ef: options.ef,
                    exact: options.exact,
                };
                let total = vectors.len();
                let due = Instant::now() + deadline;
                let c = tokio::time::timeout_at(due, shared.read_owned())
                    .await
                    .map_err(|_| past_deadline(deadline, 0, total))?;
                let held = c.coverage();
                let coverage = Coverage {
                    complete: held.complete(),
                    shards: held.shards,
                    searched: held.searched,
                    report: Vec::new(),
                };
                if let Some(min) = options
                    .min_coverage
                    .filter(|min| coverage.fraction() < *min)
                {
                    return Err(Error::unavailable(format!(
                        "this node holds shards {} of {}, under min_coverage {min}; search \
                         with `federated` to ask the peers that hold the others",
                        crate::collection::list_shards(&coverage.searched),
                        coverage.shards
                    )));
                }
                // Keyed under the read lock the searches below hold: each answer is kept under
                // the state it was searched at.
                let keys = self.cache_keys(name, c.search_state(), options, &vectors);
                let mut answers = self.cached_answers(keys.as_deref(), total);
                let misses: Vec<(usize, Vec<f32>)> = vectors
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| answers[*i].is_none())
                    .collect();
                if !misses.is_empty() {
                    let stop = Arc::new(AtomicBool::new(false));
                    let _stop_on_drop = StopOnDrop(stop.clone());
                    // The deadlines run inside the blocking task, so a search stopped by one
                    // stops working too (at its next wait: a block read) instead of running
                    // on unseen.
                    let work = async move {
                        let mut found = Vec::with_capacity(misses.len());
                        for (n, (i, vector)) in misses.into_iter().enumerate() {
                            let due = match n {
                                0 => due,
                                _ if stop.load(Ordering::Relaxed) => {
                                    return Err(Error::unavailable("the caller went away"));
                                }
                                _ => Instant::now() + deadline,
                            };
                            let one = async {
                                match at {
                                    Some(at) => {
                                        c.search_at(&at, &vector, search.k, filter.as_ref()).await
                                    }
                                    None => c.search(&vector, search, filter.as_ref()).await,
                                }
                            };
                            let hits = tokio::time::timeout_at(due, one)
                                .await
                                .map_err(|_| past_deadline(deadline, i, total))?
                                .map_err(|e| of_query(e.into(), i, total))?;
                            let answer = SearchResponse {
                                hits: hits
                                    .into_iter()
                                    .map(|h| Hit {
                                        id: PointId::from(&h.id),
                                        score: h.score,
                                        cid: h.leaf.map(|c| c.to_string()),
                                        metadata: h.metadata.map(|m| ipld_to_json(&m.unpack())),
                                    })
                                    .collect(),
                                coverage: Some(coverage.clone()),
                                cached: false,
                            };
                            found.push((i, answer));
                        }
                        Ok(found)
                    };
                    let found = offload(work).await?;
                    self.keep_answers(keys.as_deref(), &found);
                    for (i, answer) in found {
                        answers[i] = Some(answer);
                    }
                }
                answers
                    .into_iter()
                    .map(|a| {
                        a.ok_or_else(|| Error::internal("a search of the batch gave no answer"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let hits = answers.iter().map(|a| a.hits.len()).sum();
        self.inner.metrics.hits(name, hits);
        Ok(answers)
    }
}
