//! Reads: points by id, searches over the held shards, old versions.

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryId, EntryKey},
    manifest::{shard_of, Manifest},
};

use super::{
    history, merge::merge, Collection, CollectionError, CompiledFilter, LocalShard, SearchHit,
    SearchOptions, Shard,
};
use crate::{
    index::{check_vector, Hit},
    store::BlockStore,
};

impl<S: BlockStore> Collection<S> {
    /// The held shard of `key`, or why it is not here (`what` names the point for the error).
    pub(super) fn shard_of_key(
        &self,
        key: &EntryKey,
        what: impl FnOnce() -> String,
    ) -> Result<&LocalShard<S>, CollectionError> {
        let number = shard_of(key, self.roots.len() as u32);
        self.held
            .get(&number)
            .ok_or_else(|| CollectionError::ShardNotHeld {
                name: self.name(),
                what: what(),
                shard: number,
                held: super::list_shards(&self.held_shards()),
            })
    }

    /// The point with `id` and the CID of its leaf (`None` while the write is only in the log);
    /// `None` if absent or deleted. An id of a shard not held here is an error.
    pub async fn get(&self, id: &EntryId) -> Result<Option<(Entry, Option<Cid>)>, CollectionError> {
        let key = id.to_key()?;
        let shard = self.shard_of_key(&key, || format!("point {id}"))?;
        shard.get(&key).await
    }

    /// The `k` best points for `query` among those `filter` accepts, in the shards held here
    /// ([`Collection::coverage`] tells which).
    ///
    /// Each shard answers from its own index (see [`LocalShard`]); with several shards their
    /// index searches run in parallel and their answers are merged ([`merge`]).
    pub async fn search(
        &self,
        query: &[f32],
        options: SearchOptions,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        check_vector(query, self.manifest.dimension as usize)?;
        let shards: Vec<&LocalShard<S>> = self.held.values().collect();
        if let [shard] = shards.as_slice() {
            return shard.search(query, options, filter).await;
        }
        // One lane per core (the caller's thread is the first), each searching every
        // lanes-th shard: no more threads than cores are started per query.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores =
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let lanes = shards.len().min(cores).max(1);
        let lane = |first: usize| -> Vec<(usize, Result<Vec<Hit>, CollectionError>)> {
            (first..shards.len())
                .step_by(lanes)
                .map(|i| (i, shards[i].index_hits(query, options, filter)))
                .collect()
        };
        let mut found = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..lanes).map(|l| scope.spawn(move || lane(l))).collect();
            let mut found = lane(0);
            for handle in handles {
                let searched = handle
                    .join()
                    .map_err(|_| CollectionError::Invalid("a shard search panicked".into()))?;
                found.extend(searched);
            }
            Ok::<_, CollectionError>(found)
        })?;
        // Shard order, so that equal scores merge in the same order every time.
        found.sort_by_key(|(i, _)| *i);
        let found = found.into_iter().map(|(_, hits)| hits);
        let mut answers = Vec::with_capacity(shards.len());
        for (shard, hits) in shards.iter().zip(found) {
            answers.push(shard.resolve(hits?).await?);
        }
        Ok(merge(answers, options.k))
    }

    /// Sets when filtered searches score the matching points exactly instead of walking the
    /// graph: when at most `points` match, or at most `fraction` of the collection.
    pub fn set_exact_fallback(&mut self, points: usize, fraction: f64) {
        for shard in self.held.values_mut() {
            shard.exact_fallback = (points, fraction);
        }
    }

    /// Exact search of a checkpointed version (a manifest CID from [`Collection::versions`]).
    pub async fn search_at(
        &self,
        at: &Cid,
        query: &[f32],
        k: usize,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        if !self.holds_all() {
            return Err(CollectionError::Invalid(format!(
                "searching an older version reads every shard, and this node holds only shards \
                 {} of collection {:?}; search the current version, or ask a node that holds \
                 them all",
                super::list_shards(&self.held_shards()),
                self.name()
            )));
        }
        history::search_at(&self.store, &self.manifest.owner, at, query, k, filter).await
    }

    /// This collection's checkpointed versions, newest first.
    pub async fn versions(&self) -> Result<Vec<(Cid, Manifest)>, CollectionError> {
        history::versions(&self.store, self.root()).await
    }
}
