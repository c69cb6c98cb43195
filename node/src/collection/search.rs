//! Reads: points by id, searches, old versions.

use std::sync::Arc;

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryId, EntryKey},
    manifest::{shard_of, Manifest},
};

use super::{history, Collection, CollectionError, CompiledFilter, SearchHit, SearchOptions};
use crate::{
    index::{check_vector, VectorIndex},
    store::BlockStore,
    tree,
};

impl<S: BlockStore> Collection<S> {
    /// The leaf CID of each `(tree root, key)`, from the trees' leaf directories (read once
    /// per tree version; only the current versions' are kept).
    async fn leaves_of(&self, lookups: &[(Cid, EntryKey)]) -> Result<Vec<Cid>, CollectionError> {
        let directories = |this: &Self| {
            this.leaf_directories
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let mut known = directories(self);
        for (root, _) in lookups {
            if known.contains_key(root) {
                continue;
            }
            let directory = Arc::new(tree::LeafDirectory::read(&self.store, root).await?);
            known.insert(*root, directory.clone());
            let mut shared = self
                .leaf_directories
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            shared.retain(|cid, _| self.shards.iter().any(|s| s.tree == *cid));
            shared.insert(*root, directory);
        }
        lookups
            .iter()
            .map(|(root, key)| {
                known[root].leaf_of(key).ok_or_else(|| {
                    CollectionError::Invalid(format!("the tree {root} has no leaves"))
                })
            })
            .collect()
    }

    /// The point with `id` and the CID of its leaf (`None` while the write is only in the log);
    /// `None` if absent or deleted.
    pub async fn get(&self, id: &EntryId) -> Result<Option<(Entry, Option<Cid>)>, CollectionError> {
        let key = id.to_key()?;
        if let Some(pending) = self.pending.get(&key) {
            let entry = self.pending_entry(key, pending)?;
            return Ok((!entry.deleted).then_some((entry, None)));
        }
        let shard = shard_of(&key, self.shards.len() as u32) as usize;
        let found = tree::get(&self.store, &self.shards[shard].tree, &key).await?;
        Ok(found
            .filter(|(e, _)| !e.deleted)
            .map(|(e, leaf)| (e, Some(leaf))))
    }

    /// The `k` best points for `query` among those `filter` accepts.
    ///
    /// A filter is evaluated over every point into a key set, kept for later searches with an
    /// equal filter until the next write; the HNSW walk then consults it. When few points match
    /// (see [`super::EXACT_FALLBACK_POINTS`]) they are scored exactly instead, where a graph
    /// walk would have to visit most of the graph.
    pub async fn search(
        &self,
        query: &[f32],
        options: SearchOptions,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        check_vector(query, self.manifest.dimension as usize)?;
        let hits = match filter {
            None if options.exact => self.index.exact(query, options.k)?,
            None => self.index.search(query, options.k, options.ef, None)?,
            Some(filter) => {
                let allowed = self.allowed.get(filter, &self.keys);
                let (points, fraction) = self.exact_fallback;
                let small = allowed.len() <= points
                    || (allowed.len() as f64) <= fraction * self.keys.len() as f64;
                if options.exact || small {
                    self.index.exact_among(query, options.k, allowed.iter())?
                } else {
                    let test = |key: u64| allowed.contains(key);
                    self.index
                        .search(query, options.k, options.ef, Some(&test))?
                }
            }
        };
        // Leaf CIDs of the hits already in the trees, with one branch decode per query.
        let shard_count = self.shards.len() as u32;
        let found: Vec<(&EntryKey, u64, f32)> = hits
            .iter()
            .filter_map(|h| self.keys.id_of(h.key).map(|id| (id, h.key, h.score)))
            .collect();
        let lookups: Vec<(Cid, EntryKey)> = found
            .iter()
            .filter(|(id, _, _)| !self.pending.contains_key(*id))
            .map(|(id, _, _)| {
                (
                    self.shards[shard_of(id, shard_count) as usize].tree,
                    (*id).clone(),
                )
            })
            .collect();
        let mut leaves = self.leaves_of(&lookups).await?.into_iter();
        let mut out = Vec::with_capacity(found.len());
        for (id, key, score) in found {
            let leaf = if self.pending.contains_key(id) {
                None
            } else {
                leaves.next()
            };
            out.push(SearchHit {
                id: id.id(),
                score,
                metadata: self.keys.metadata(key).cloned(),
                leaf,
            });
        }
        Ok(out)
    }

    /// Sets when filtered searches score the matching points exactly instead of walking the
    /// graph: when at most `points` match, or at most `fraction` of the collection.
    pub fn set_exact_fallback(&mut self, points: usize, fraction: f64) {
        self.exact_fallback = (points, fraction);
    }

    /// Exact search of a checkpointed version (a manifest CID from [`Collection::versions`]).
    pub async fn search_at(
        &self,
        at: &Cid,
        query: &[f32],
        k: usize,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        history::search_at(&self.store, &self.manifest.owner, at, query, k, filter).await
    }

    /// This collection's checkpointed versions, newest first.
    pub async fn versions(&self) -> Result<Vec<(Cid, Manifest)>, CollectionError> {
        history::versions(&self.store, self.root()).await
    }
}
