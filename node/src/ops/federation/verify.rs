//! Verifying the hits of a federated search against a signed head this node trusts.
//!
//! For each hit the asker fetches (from its own store, or over Bitswap from the shard's
//! holders) the shard root that the trusted head's manifest names for the hit's shard, then
//! the tree's nodes from that root down to the leaf that must hold the hit's id, checks that
//! this leaf is the one the peer named, decodes the entry, and recomputes the score from the
//! entry's stored vector and the query.
//!
//! What a verified hit proves: the point is in the collection at the trusted version (a head
//! signed by one of its writers), in the shard the peer answered for, with the vector and
//! metadata the entry holds, and its score is what the query gives. What it cannot prove: that
//! the peer did not leave out better points (a peer can withhold hits; only asking another
//! holder, or holding the shard, tells), nor anything about a hit from a version other than
//! the trusted one, which fails verification here.

use std::collections::BTreeMap;

use cid::Cid;
use ipvec_protocol::{
    dagcbor,
    entry::EntryKey,
    manifest::{Manifest, ShardRoot},
    node::Node as TreeNode,
};
use libp2p::PeerId;

use super::super::Node;
use crate::{
    collection::quantize,
    federation::{Holder, Outcome},
};

/// How the hits of one shard fared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Checked {
    /// Hits that proved true.
    pub(super) verified: u32,
    /// What was wrong with each one that did not.
    pub(super) failures: Vec<String>,
}

/// Why a hit did not verify, and whether its peer is to blame: a hit still in the writer's
/// log, from another version than the trusted one, or whose blocks cannot be fetched, cannot
/// be checked, but is no lie.
struct Failure {
    why: String,
    lied: bool,
}

impl Failure {
    fn unchecked(why: impl Into<String>) -> Self {
        Failure {
            why: why.into(),
            lied: false,
        }
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure { why, lied: true }
    }
}

impl From<&str> for Failure {
    fn from(why: &str) -> Self {
        why.to_string().into()
    }
}

/// Deepest tree a walk follows (the tree's height is bounded far below this).
const MAX_DEPTH: usize = 64;

/// Relative difference allowed between a peer's score and the one recomputed here (HNSW
/// kernels and exact ones round differently).
const SCORE_TOLERANCE: f32 = 1e-3;

impl Node {
    /// Checks every hit of `outcome` against `trusted` (a manifest from a signed head): drops
    /// those that fail, penalises the peers of those that were lies (not of hits that could
    /// not be checked), and returns how each shard's hits fared.
    pub(super) async fn verify_hits(
        &self,
        trusted: &Manifest,
        holders: &BTreeMap<u32, Vec<Holder<PeerId>>>,
        query: &[f32],
        outcome: &mut Outcome<PeerId>,
    ) -> BTreeMap<u32, Checked> {
        let mut checked: BTreeMap<u32, Checked> = BTreeMap::new();
        let mut kept = Vec::with_capacity(outcome.hits.len());
        for hit in std::mem::take(&mut outcome.hits) {
            let peers: Vec<PeerId> = holders
                .get(&hit.shard)
                .into_iter()
                .flatten()
                .filter_map(|h| match h {
                    Holder::Peer(p) => Some(*p),
                    Holder::Local => None,
                })
                .collect();
            let result = self.verify_one(trusted, &peers, query, &hit).await;
            let shard = checked.entry(hit.shard).or_default();
            match result {
                Ok(()) => {
                    shard.verified += 1;
                    kept.push(hit);
                }
                Err(Failure { why, lied }) => {
                    let id = &hit.hit.id;
                    shard.failures.push(format!("hit {id}: {why}"));
                    if let (true, Holder::Peer(peer)) = (lied, &hit.from) {
                        let now = self.federation_now();
                        self.inner
                            .federation
                            .book
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .penalise(peer, now);
                    }
                }
            }
        }
        outcome.hits = kept;
        checked
    }

    async fn verify_one(
        &self,
        trusted: &Manifest,
        peers: &[PeerId],
        query: &[f32],
        hit: &crate::federation::FederatedHit<PeerId>,
    ) -> Result<(), Failure> {
        let Some(&root) = trusted.shards.get(hit.shard as usize) else {
            return Err(format!(
                "the collection has no shard {} in the trusted version",
                hit.shard
            )
            .into());
        };
        if hit.root != Some(root) {
            return Err(Failure::unchecked(format!(
                "answered at shard root {}, not {root} of the trusted version",
                hit.root.map_or("(none)".to_string(), |r| r.to_string())
            )));
        }
        let Some(leaf) = hit.hit.leaf else {
            return Err(Failure::unchecked(
                "no leaf named (a write not yet committed cannot be verified)",
            ));
        };
        let key = hit.hit.id.to_key().map_err(|e| e.to_string())?;
        let block = self.block(root, peers).await.map_err(Failure::unchecked)?;
        let shard_root: ShardRoot = dagcbor::decode(&block).map_err(|e| e.to_string())?;
        let entry = self.walk_to(shard_root.tree, &key, leaf, peers).await?;
        if entry.deleted {
            return Err("the trusted version holds a tombstone for this id".into());
        }
        let vector = quantize::decode(trusted.quantization, &entry.vec);
        if vector.len() != query.len() {
            return Err("the entry's vector has another dimension".into());
        }
        let score = crate::index::score(trusted.metric, query, &vector);
        let claimed = hit.hit.score;
        if (score - claimed).abs() > SCORE_TOLERANCE * score.abs().max(1.0) {
            return Err(format!("score {claimed} claimed, {score} recomputed").into());
        }
        Ok(())
    }

    /// Follows the tree from `tree` to the leaf that must hold `key`; the entry, once that
    /// leaf is `leaf` and holds it.
    async fn walk_to(
        &self,
        tree: Cid,
        key: &EntryKey,
        leaf: Cid,
        peers: &[PeerId],
    ) -> Result<ipvec_protocol::entry::Entry, Failure> {
        let mut at = tree;
        for _ in 0..MAX_DEPTH {
            let block = self.block(at, peers).await.map_err(Failure::unchecked)?;
            let node = TreeNode::decode(&block).map_err(|e| e.to_string())?;
            match node {
                TreeNode::Leaf(entries) => {
                    if at != leaf {
                        return Err(format!("the id lies in leaf {at}, not in leaf {leaf}").into());
                    }
                    return entries
                        .into_iter()
                        .find(|e| &e.id == key)
                        .ok_or_else(|| format!("leaf {leaf} does not hold this id").into());
                }
                TreeNode::Branch { children, .. } => {
                    let child = children
                        .iter()
                        .take_while(|c| &c.key <= key)
                        .last()
                        .or(children.first())
                        .ok_or("an empty branch")?;
                    at = child.cid;
                }
            }
        }
        Err("the tree is deeper than any valid one".into())
    }

    /// A block from the store, or fetched from `peers` over Bitswap (hashed on arrival).
    async fn block(&self, cid: Cid, peers: &[PeerId]) -> Result<bytes::Bytes, String> {
        let network = self.network().map_err(|e| e.to_string())?;
        network
            .bitswap()
            .fetch_block(cid, peers)
            .await
            .map_err(|e| format!("block {cid} could not be fetched: {e}"))
    }
}
