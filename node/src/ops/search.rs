//! Searching a collection, or an older version of it, within the request's budget.

use std::time::Duration;

use ipvec_protocol::api::*;

use super::{offload, parse_cid, Error, Node};
use crate::collection::{points::ipld_to_json, Filter, SearchOptions};

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
        request: SearchRequest,
    ) -> Result<SearchResponse, Error> {
        let (name, id) = match self.collection(name).await {
            Ok(shared) => (name.to_string(), shared.read().await.id()?),
            Err(Error::NotFound(not_found)) => match self.name_of_id(name) {
                Some(local) => (local, name.to_string()),
                None if name.parse::<libp2p::PeerId>().is_ok() => {
                    return self.federated_search(name, None, request).await;
                }
                None => return Err(Error::NotFound(not_found)),
            },
            Err(e) => return Err(e),
        };
        if request.federated {
            return self.federated_search(&id, Some(&name), request).await;
        }
        let min_coverage = request.min_coverage;
        let response = self.local_search(&name, request).await?;
        if let (Some(min), Some(coverage)) = (min_coverage, &response.coverage) {
            if coverage.fraction() < min {
                return Err(Error::unavailable(format!(
                    "this node holds shards {} of {}, under min_coverage {min}; search with \
                     `federated` to ask the peers that hold the others",
                    crate::collection::list_shards(&coverage.searched),
                    coverage.shards
                )));
            }
        }
        Ok(response)
    }

    /// A search of the shards held here.
    async fn local_search(
        &self,
        name: &str,
        request: SearchRequest,
    ) -> Result<SearchResponse, Error> {
        let response = self
            .observed("search", name, async {
                let deadline = self.search_budget(&request)?;
                let filter = request
                    .filter
                    .as_ref()
                    .map(|f| Filter::from_json(f).and_then(Filter::compile))
                    .transpose()?;
                let at = request.at.as_deref().map(parse_cid).transpose()?;
                let shared = self.collection(name).await?;
                let work = async move {
                    let c = shared.read_owned().await;
                    let coverage = c.coverage();
                    let hits = match at {
                        Some(at) => {
                            c.search_at(&at, &request.vector, request.k, filter.as_ref())
                                .await?
                        }
                        None => {
                            let options = SearchOptions {
                                k: request.k,
                                ef: request.ef,
                                exact: request.exact,
                            };
                            c.search(&request.vector, options, filter.as_ref()).await?
                        }
                    };
                    Ok(SearchResponse {
                        hits: hits
                            .into_iter()
                            .map(|h| Hit {
                                id: PointId::from(&h.id),
                                score: h.score,
                                cid: h.leaf.map(|c| c.to_string()),
                                metadata: h.metadata.as_ref().map(ipld_to_json),
                            })
                            .collect(),
                        coverage: Some(Coverage {
                            complete: coverage.complete(),
                            shards: coverage.shards,
                            searched: coverage.searched,
                            report: Vec::new(),
                        }),
                    })
                };
                // The deadline runs inside the blocking task, so a search stopped by it stops
                // working too (at its next wait: a lock, a block read) instead of running on
                // unseen.
                offload(async move {
                    tokio::time::timeout(deadline, work)
                        .await
                        .unwrap_or_else(|_| {
                            Err(Error::deadline_exceeded(format!(
                            "the search was stopped at its deadline of {} ms; ask for a longer \
                             deadline_ms (at most search.max_deadline_ms), a smaller k or ef, \
                             or an HNSW search instead of an exact one",
                            deadline.as_millis()
                        )))
                        })
                })
                .await
            })
            .await?;
        self.inner.metrics.hits(name, response.hits.len());
        Ok(response)
    }
}
