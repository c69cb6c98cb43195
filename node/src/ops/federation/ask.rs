//! Asking: a search of a collection answered by the peers that hold its shards (and this
//! node, for the shards it holds), driven by [`federation::Planner`](crate::federation).

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use ipvec_protocol::{
    announce,
    api::{Coverage, Hit, PointId, SearchRequest, SearchResponse, ShardCoverage},
    dagcbor,
    manifest::Manifest,
    search::SearchRequest as WireRequest,
};
use libp2p::PeerId;
use tokio::task::JoinSet;

use super::{super::Node, verify::Checked, Holders};
use crate::{
    collection::points::{ipld_to_json, json_to_ipld},
    federation::{Action, Holder, Input, Outcome, Planner, Query, RequestId},
    ops::Error,
};

/// How long the shards' holders found in the DHT are reused before they are looked up again.
pub const HOLDERS_TTL: Duration = Duration::from_secs(30);
/// Collections whose holders are remembered at most.
const MAX_CACHED: usize = 1_024;

impl Node {
    /// Searches collection `id` through the peers that hold its shards: local shards here,
    /// the others on their holders, merged; the answer's coverage names every shard and
    /// who answered it. `local` is the collection's name when this node holds some of it.
    pub async fn federated_search(
        &self,
        id: &str,
        local: Option<&str>,
        mut request: SearchRequest,
    ) -> Result<SearchResponse, Error> {
        let label = local.unwrap_or(id).to_string();
        self.observed("federated_search", &label, async {
            let deadline = self.search_budget(&request)?;
            if request.at.is_some() {
                return Err(Error::invalid(
                    "a federated search answers the current version; leave out `at`, or search \
                     an older version on a node that holds the whole collection",
                ));
            }
            if let Some(min) = request.min_coverage {
                if !(0.0..=1.0).contains(&min) {
                    return Err(Error::invalid(format!(
                        "min_coverage = {min} is not a fraction from 0 to 1"
                    )));
                }
            }
            let started = Instant::now();
            // Finding the holders counts against the deadline (a DHT lookup can wait on a
            // peer that does not answer).
            let mut holders = tokio::time::timeout(deadline, self.holders(id, local))
                .await
                .map_err(|_| {
                    Error::deadline_exceeded(format!(
                        "finding the holders of collection {id}'s shards took over the \
                         deadline of {} ms; ask again (they are looked up in the background), \
                         or with a longer deadline_ms",
                        deadline.as_millis()
                    ))
                })??;
            // A question in words is embedded here, once, with the model the trusted
            // manifest names; the peers get its vector.
            if request.text.is_some() {
                let trusted = &holders.trusted;
                let (model, dimension) = (trusted.embedding.as_ref(), trusted.dimension);
                let requests = std::slice::from_mut(&mut request);
                self.embed_queries(&label, model, dimension, requests)
                    .await?;
            }
            // What is left of it is the planner's.
            let deadline = deadline.saturating_sub(started.elapsed());
            let planned = Instant::now();
            let mut outcome = self
                .run_planner(id, &holders, &request, planned, deadline)
                .await?;
            // Shards whose every holder failed (not the deadline) may have moved since the
            // holders were looked up (a member left, one died and was repaired): look them up
            // again and ask once more, within what is left of the deadline.
            let failed = outcome.coverage.iter().any(|s| {
                s.answered.is_none()
                    && s.missing.as_deref() != Some(crate::federation::plan::DEADLINE)
            });
            let left = deadline.saturating_sub(planned.elapsed());
            if failed && !left.is_zero() {
                let again = Instant::now();
                if let Ok(Ok(fresh)) =
                    tokio::time::timeout(left, self.refresh_holders(id, local)).await
                {
                    let left = left.saturating_sub(again.elapsed());
                    let mut retry = self
                        .run_planner(id, &fresh, &request, Instant::now(), left)
                        .await?;
                    let answered = |o: &Outcome<PeerId>| {
                        o.coverage.iter().filter(|s| s.answered.is_some()).count()
                    };
                    if answered(&retry) > answered(&outcome) {
                        retry.requests += outcome.requests;
                        retry.hedges += outcome.hedges;
                        retry.failovers += outcome.failovers;
                        outcome = retry;
                        holders = fresh;
                    }
                }
            }
            if request.verify && local.is_none() {
                self.newer_trust(id, &mut holders, &outcome).await;
            }
            let checked = if request.verify {
                self.verify_hits(
                    &holders.trusted,
                    &holders.by_shard,
                    &request.vector,
                    &mut outcome,
                )
                .await
            } else {
                BTreeMap::new()
            };
            let metrics = &self.inner.metrics;
            metrics.federation("searches", 1);
            metrics.federation("shard_requests", u64::from(outcome.requests));
            metrics.federation("hedges", u64::from(outcome.hedges));
            metrics.federation("failovers", u64::from(outcome.failovers));
            let missing = outcome.coverage.iter().filter(|s| s.answered.is_none());
            metrics.federation("missing_shards", missing.clone().count() as u64);
            metrics.federation(
                "timeouts",
                missing
                    .filter(|s| s.missing.as_deref() == Some(crate::federation::plan::DEADLINE))
                    .count() as u64,
            );
            metrics.federation(
                "verification_failures",
                checked.values().map(|c| c.failures.len() as u64).sum(),
            );
            let response = response(outcome, holders.shards, checked);
            if let (Some(min), Some(coverage)) = (request.min_coverage, &response.coverage) {
                if coverage.fraction() < min {
                    let missing = coverage.missing();
                    return Err(Error::unavailable(format!(
                        "{} of {} shards answered, under min_coverage {min}; missing: {}. \
                         Retry later, ask for a longer deadline_ms, or lower min_coverage",
                        coverage.searched.len(),
                        coverage.shards,
                        missing.join(", ")
                    )));
                }
            }
            Ok(response)
        })
        .await
    }

    /// Moves `holders`' trusted manifest to the newest signed head among the peers that
    /// answered from a newer version than it (a collection not held here changes while its
    /// holders are cached), so that their hits can be verified.
    async fn newer_trust(&self, id: &str, holders: &mut Holders, outcome: &Outcome<PeerId>) {
        let mut ahead: Vec<PeerId> = outcome
            .coverage
            .iter()
            .filter_map(|s| s.answered.as_ref())
            .filter(|a| a.seq.is_some_and(|seq| seq > holders.trusted_seq))
            .filter_map(|a| match a.by {
                Holder::Peer(peer) => Some(peer),
                Holder::Local => None,
            })
            .collect();
        ahead.sort();
        ahead.dedup();
        if ahead.is_empty() {
            return;
        }
        match self.trusted_manifest(id, &ahead).await {
            Ok((seq, manifest)) if seq > holders.trusted_seq => {
                holders.trusted_seq = seq;
                holders.trusted = manifest;
                let mut cache = self
                    .inner
                    .federation
                    .holders
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some((_, cached)) = cache.get_mut(id) {
                    cached.trusted_seq = seq;
                    cached.trusted = holders.trusted.clone();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "no newer head to verify against"),
        }
    }

    /// Runs one planner to its end: sends its requests (a local search for this node's
    /// shards), feeds it answers and time, until every shard is settled or the deadline.
    async fn run_planner(
        &self,
        id: &str,
        holders: &Holders,
        request: &SearchRequest,
        started: Instant,
        deadline: Duration,
    ) -> Result<Outcome<PeerId>, Error> {
        // The node's clock: the peer book keeps times across searches.
        let now = || self.federation_now();
        let end = now().after(deadline);
        let wire = WireRequest {
            ef: request.ef.map(|ef| u32::try_from(ef).unwrap_or(u32::MAX)),
            exact: request.exact,
            filter: request.filter.clone().map(json_to_ipld),
            metadata: true,
            ..WireRequest::new(
                id.to_string(),
                Vec::new(),
                &request.vector,
                u32::try_from(request.k).unwrap_or(u32::MAX),
                u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX),
            )
        };
        let mut planner = Planner::new(
            Query {
                shards: (0..holders.shards).collect(),
                holders: holders.by_shard.clone(),
                k: request.k,
                deadline: end,
            },
            now(),
        );
        let book = &self.inner.federation.book;
        let lock = || book.lock().unwrap_or_else(|p| p.into_inner());
        let mut actions = planner.poll(&mut lock(), now());
        let mut running: JoinSet<(RequestId, Input)> = JoinSet::new();
        let mut handles = HashMap::new();
        loop {
            for action in actions.drain(..) {
                match action {
                    Action::Send {
                        request: rid,
                        to,
                        shards,
                        ..
                    } => {
                        let mut asked = wire.clone();
                        asked.shards = shards;
                        let remaining = deadline.saturating_sub(started.elapsed());
                        asked.deadline_ms = u32::try_from(remaining.as_millis())
                            .unwrap_or(u32::MAX)
                            .max(1);
                        let node = self.clone();
                        let handle = running.spawn(async move {
                            let answered = match to {
                                Holder::Local => Ok(node.answer_search(asked).await),
                                Holder::Peer(peer) => match node.network() {
                                    Ok(network) => network
                                        .search_peer(peer, &asked, remaining)
                                        .await
                                        .map_err(|e| e.to_string()),
                                    Err(e) => Err(e.to_string()),
                                },
                            };
                            let input = match answered {
                                Ok(answer) => Input::Answered {
                                    request: rid,
                                    answer,
                                },
                                Err(reason) => Input::Failed {
                                    request: rid,
                                    reason,
                                },
                            };
                            (rid, input)
                        });
                        handles.insert(rid, handle);
                    }
                    Action::Cancel { request: rid } => {
                        if let Some(handle) = handles.remove(&rid) {
                            handle.abort();
                        }
                    }
                }
            }
            if planner.is_done() || now() >= end {
                break;
            }
            let wake = planner.next_deadline().unwrap_or(end).min(end);
            let sleep = tokio::time::sleep(wake.since(now()));
            tokio::select! {
                Some(joined) = running.join_next() => {
                    if let Ok((rid, input)) = joined {
                        handles.remove(&rid);
                        actions = planner.handle(input, &mut lock(), now());
                    }
                }
                () = sleep => {
                    actions = planner.poll(&mut lock(), now());
                }
            }
        }
        running.abort_all();
        Ok(planner.finish(now()))
    }

    /// The collection's shard count and who holds each shard: this node for those it holds,
    /// and the peers the DHT names (providers of a shard's key, and of the collection key for
    /// all shards), looked up again after [`HOLDERS_TTL`].
    ///
    /// A list older than that is used as it is while a new one is looked up in the
    /// background, so that a slow lookup (a peer that does not answer) never holds up a search
    /// that has a list.
    async fn holders(&self, id: &str, local: Option<&str>) -> Result<Holders, Error> {
        let cached = {
            let cache = self.inner.federation.holders.lock();
            let mut cache = cache.unwrap_or_else(|p| p.into_inner());
            cache.get_mut(id).map(|(at, h)| {
                let fresh = at.elapsed() < HOLDERS_TTL;
                if !fresh {
                    // One lookup at a time: the list counts as fresh while it runs.
                    *at = Instant::now();
                }
                (fresh, h.clone())
            })
        };
        let mut holders = match cached {
            Some((fresh, holders)) => {
                if !fresh {
                    let (node, id, local) = (self.clone(), id.to_string(), local.map(String::from));
                    self.inner.tasks.spawn(async move {
                        if let Err(e) = node.refresh_holders(&id, local.as_deref()).await {
                            tracing::debug!(collection = %id, error = %e, "looking up holders again failed");
                        }
                    });
                }
                holders
            }
            None => self.refresh_holders(id, local).await?,
        };
        // What this node holds now, and its version (a fetch, a drop or a write may have
        // changed them since).
        let held = match local {
            Some(name) => {
                let shared = self.collection(name).await?;
                let c = shared.read().await;
                holders.trusted = c.manifest().clone();
                holders.trusted_seq = c.head().seq;
                c.held_shards()
            }
            None => Vec::new(),
        };
        for (shard, list) in holders.by_shard.iter_mut() {
            // Denied peers are never asked, even when no other holder is left.
            list.retain(|h| match h {
                Holder::Local => false,
                Holder::Peer(peer) => !self.is_denied(peer),
            });
            if held.contains(shard) {
                list.insert(0, Holder::Local);
            }
        }
        Ok(holders)
    }

    /// Looks the holders up and caches them.
    async fn refresh_holders(&self, id: &str, local: Option<&str>) -> Result<Holders, Error> {
        let found = self.find_holders(id, local).await?;
        let mut cache = self
            .inner
            .federation
            .holders
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < HOLDERS_TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(id.to_string(), (Instant::now(), found.clone()));
        Ok(found)
    }

    async fn find_holders(&self, id: &str, local: Option<&str>) -> Result<Holders, Error> {
        let network = self.network()?;
        let me = network.peer_id();
        let providers = |key| async move {
            match network.providers(key).await {
                Ok(found) => found
                    .into_iter()
                    .map(|p| p.peer_id)
                    .filter(|p| *p != me)
                    .collect(),
                Err(e) => {
                    tracing::debug!(%key, error = %e, "looking up providers failed");
                    Vec::new()
                }
            }
        };
        let (whole, first) = tokio::join!(
            providers(announce::collection_key(id)),
            providers(announce::shard_key(id, 0))
        );
        let trusted = match local {
            Some(name) => {
                let shared = self.collection(name).await?;
                let c = shared.read().await;
                (c.head().seq, c.manifest().clone())
            }
            None => {
                let mut peers: Vec<PeerId> = whole.iter().chain(&first).copied().collect();
                peers.sort();
                peers.dedup();
                if peers.is_empty() {
                    return Err(Error::not_found(format!(
                        "no peer announces collection {id} or its shard 0 in the DHT; check the \
                         id, and that this node is connected (ipvec peers)"
                    )));
                }
                self.trusted_manifest(id, &peers).await?
            }
        };
        let shards = trusted.1.shards.len() as u32;
        let mut by_shard = BTreeMap::new();
        let lookups = (1..shards).map(|n| providers(announce::shard_key(id, n)));
        let found = futures::future::join_all(lookups).await;
        for (n, peers) in std::iter::once(first).chain(found).enumerate() {
            let mut list: Vec<Holder<PeerId>> = Vec::new();
            for peer in peers.into_iter().chain(whole.iter().copied()) {
                if !list.contains(&Holder::Peer(peer)) {
                    list.push(Holder::Peer(peer));
                }
            }
            by_shard.insert(n as u32, list);
        }
        Ok(Holders {
            shards,
            by_shard,
            trusted_seq: trusted.0,
            trusted: trusted.1,
        })
    }

    /// The newest signed head of collection `id` that `peers` give, and its manifest.
    async fn trusted_manifest(&self, id: &str, peers: &[PeerId]) -> Result<(u64, Manifest), Error> {
        let head = self.newest_head(id, peers).await?;
        let manifest: Manifest = dagcbor::decode(
            &self
                .network()?
                .bitswap()
                .fetch_block(head.manifest, peers)
                .await
                .map_err(|e| Error::unavailable(e.to_string()))?,
        )?;
        manifest.validate()?;
        Ok((head.seq, manifest))
    }
}

/// The HTTP answer of a federated search.
fn response(
    outcome: Outcome<PeerId>,
    shards: u32,
    mut checked: BTreeMap<u32, Checked>,
) -> SearchResponse {
    let name = |h: &Holder<PeerId>| match h {
        Holder::Local => "local".to_string(),
        Holder::Peer(p) => p.to_string(),
    };
    let report: Vec<ShardCoverage> = outcome
        .coverage
        .iter()
        .map(|s| {
            let checked = checked.remove(&s.shard);
            ShardCoverage {
                shard: s.shard,
                answered_by: s.answered.as_ref().map(|a| name(&a.by)),
                root: s
                    .answered
                    .as_ref()
                    .and_then(|a| a.root.map(|r| r.to_string())),
                seq: s.answered.as_ref().and_then(|a| a.seq),
                latency_ms: s.answered.as_ref().map(|a| a.latency_ms),
                hedged: s.answered.as_ref().is_some_and(|a| a.hedged),
                missing: s.missing.clone(),
                tried: s.tried.iter().map(name).collect(),
                skipped: s.skipped.iter().map(name).collect(),
                verified: checked.as_ref().map(|c| c.verified),
                verify_failures: checked.map(|c| c.failures).unwrap_or_default(),
            }
        })
        .collect();
    let searched: Vec<u32> = report
        .iter()
        .filter(|s| s.answered_by.is_some())
        .map(|s| s.shard)
        .collect();
    SearchResponse {
        hits: outcome
            .hits
            .into_iter()
            .map(|h| Hit {
                id: PointId::from(&h.hit.id),
                score: h.hit.score,
                cid: h.hit.leaf.map(|c| c.to_string()),
                metadata: h.hit.metadata.map(|m| ipld_to_json(&m.unpack())),
            })
            .collect(),
        coverage: Some(Coverage {
            complete: searched.len() as u32 == shards,
            shards,
            searched,
            report,
        }),
        cached: false,
    }
}
