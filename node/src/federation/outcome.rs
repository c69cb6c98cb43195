//! What a federated search ends with: the merged top-k, each hit naming the shard, holder,
//! root and head it came from (so the asker can verify it against its leaf), and a coverage
//! report with one line per shard asked for.
//!
//! The kept answers are merged with [`crate::collection::merge::merge`], the function a local
//! search over several shards uses, in shard order: ties keep the order of the shards and of
//! each shard's answer. A point lives in one shard, so shards never name the same id; should
//! two anyway (a holder answering from a wrong tree), the id keeps the hit of the answer from
//! the newer head (higher `seq`; the earlier shard on a tie), and one shard naming an id twice
//! keeps its first (best) hit.

use std::collections::HashMap;

use cid::Cid;
use ipvec_protocol::{entry::EntryId, search::Hit};

use super::Holder;
use crate::collection::{merge::merge, PackedMetadata, SearchHit};

/// How a federated search ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<P> {
    /// The merged top-k, best first.
    pub hits: Vec<FederatedHit<P>>,
    /// One report per shard of the query, in shard order.
    pub coverage: Vec<ShardReport<P>>,
    /// Hedge requests sent.
    pub hedges: u32,
    /// Failover requests sent.
    pub failovers: u32,
    /// Requests sent in all (plan, hedges and failovers).
    pub requests: u32,
}

impl<P> Outcome<P> {
    /// Whether every shard was answered.
    pub fn is_complete(&self) -> bool {
        self.coverage.iter().all(|s| s.answered.is_some())
    }
}

/// One hit of a federated search and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedHit<P> {
    /// The point: id, score, metadata, and the leaf that holds its vector.
    pub hit: SearchHit,
    /// The shard it is in.
    pub shard: u32,
    /// Who answered for that shard.
    pub from: Holder<P>,
    /// The shard root it was found under.
    pub root: Option<Cid>,
    /// The head sequence that root belongs to.
    pub seq: Option<u64>,
}

/// How one shard of the query fared.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardReport<P> {
    /// The shard number.
    pub shard: u32,
    /// The answer kept, if one came.
    pub answered: Option<Answered<P>>,
    /// Why no answer was kept: `every holder failed: …`, `no holder known`, `deadline`,
    /// or the message of a `bad_request`.
    pub missing: Option<String>,
    /// The holders asked, in the order they were (one request each).
    pub tried: Vec<Holder<P>>,
    /// Holders not asked because their circuit breaker was open and another was left.
    pub skipped: Vec<Holder<P>>,
    /// How many of those were failovers.
    pub failovers: u32,
}

/// The answer kept for a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered<P> {
    /// Who answered.
    pub by: Holder<P>,
    /// The shard root it searched.
    pub root: Option<Cid>,
    /// The head sequence of that root.
    pub seq: Option<u64>,
    /// How long after its request was sent the answer came.
    pub latency_ms: u64,
    /// Whether it answered a hedge request.
    pub hedged: bool,
}

/// A shard's kept answer with its hits as they came off the wire.
#[derive(Debug, Clone)]
pub(super) struct Kept<P> {
    pub(super) answered: Answered<P>,
    pub(super) hits: Vec<Hit>,
}

/// The `k` best hits of the kept answers, given in shard order.
pub(super) fn merge_hits<'a, P: Clone + 'a>(
    kept: impl IntoIterator<Item = (u32, &'a Kept<P>)>,
    k: usize,
) -> Vec<FederatedHit<P>> {
    let kept: Vec<(u32, &Kept<P>)> = kept.into_iter().collect();
    let mut lists: Vec<Vec<SearchHit>> = Vec::with_capacity(kept.len());
    // Which answer each id's hit is taken from.
    let mut owner: HashMap<EntryId, usize> = HashMap::new();
    for (i, (_, answer)) in kept.iter().enumerate() {
        let mut list = Vec::with_capacity(answer.hits.len());
        for hit in &answer.hits {
            let id = hit.id.id();
            match owner.get(&id).copied() {
                None => {}
                Some(j) if j == i => continue,
                Some(j) => {
                    if answer.answered.seq <= kept[j].1.answered.seq {
                        continue;
                    }
                    lists[j].retain(|h| h.id != id);
                }
            }
            owner.insert(id.clone(), i);
            list.push(SearchHit {
                id,
                // Scores are finite: the adapter decoded the answer with its checks.
                score: hit.score as f32,
                // Decoded from DAG-CBOR with the answer's checks: it encodes again.
                metadata: hit.meta.as_ref().and_then(|m| PackedMetadata::pack(m).ok()),
                leaf: hit.leaf,
            });
        }
        lists.push(list);
    }
    merge(lists, k)
        .into_iter()
        .filter_map(|hit| {
            let (shard, answer) = kept[*owner.get(&hit.id)?];
            Some(FederatedHit {
                hit,
                shard,
                from: answer.answered.by.clone(),
                root: answer.answered.root,
                seq: answer.answered.seq,
            })
        })
        .collect()
}
