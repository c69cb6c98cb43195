//! Reads: points by id, searches over all or some of the held shards, old versions.

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryId, EntryKey},
    manifest::{shard_of, Manifest},
};

use super::{
    allowed::Restriction, history, shard, Collection, CollectionError, CompiledFilter, FilterPlan,
    LocalShard, SearchHit, SearchOptions,
};
use crate::{index::check_vector, store::BlockStore};

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
        shard.get(&key, &self.index).await
    }

    /// The `k` best points for `query` among those `filter` accepts, in the shards held here
    /// ([`Collection::coverage`] tells which).
    ///
    /// The held shards are searched through their one index ([`HeldIndex`]): the answer is
    /// the one the merge ([`merge`](super::merge::merge)) of each shard's answer would give,
    /// for the cost of about one search.
    pub async fn search(
        &self,
        query: &[f32],
        options: SearchOptions,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        self.search_shards(query, options, filter, None).await
    }

    /// [`Collection::search`] among the points of the held shards `shards` alone (every held
    /// shard when `None`): one search of the index, which lets only their points through.
    /// Shards not held here are an error.
    pub async fn search_shards(
        &self,
        query: &[f32],
        options: SearchOptions,
        filter: Option<&CompiledFilter>,
        shards: Option<&[u32]>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        check_vector(query, self.manifest.dimension as usize)?;
        let wanted = match shards {
            Some(shards) => self.restrict_to(shards)?,
            None => None,
        };
        let restriction = Restriction {
            filter,
            shards: wanted.as_deref(),
        };
        let hits = self.index.hits(query, options, restriction)?;
        shard::resolve(&self.held, &self.index, hits).await
    }

    /// One search of the held shards `shards` (see [`Collection::search_shards`]), its hits
    /// split by shard, in the order of `shards`: for a federated answer, which names its hits
    /// shard by shard. Each shard gets its points among the `k` best of them all, not its own
    /// `k` best, which merge ([`merge`](super::merge::merge)) to the same top `k` for the cost
    /// of one search instead of one per shard.
    pub async fn search_by_shard(
        &self,
        query: &[f32],
        options: SearchOptions,
        filter: Option<&CompiledFilter>,
        shards: &[u32],
    ) -> Result<Vec<(u32, Vec<SearchHit>)>, CollectionError> {
        let hits = self
            .search_shards(query, options, filter, Some(shards))
            .await?;
        let mut answers: Vec<(u32, Vec<SearchHit>)> = Vec::new();
        for &number in shards {
            if !answers.iter().any(|(n, _)| *n == number) {
                answers.push((number, Vec::new()));
            }
        }
        let count = self.roots.len() as u32;
        for hit in hits {
            let number = shard_of(&hit.id.to_key()?, count);
            if let Some((_, answer)) = answers.iter_mut().find(|(n, _)| *n == number) {
                answer.push(hit);
            }
        }
        Ok(answers)
    }

    /// The held shards `shards` as a restriction of a search: sorted, or `None` when they are
    /// every shard held.
    fn restrict_to(&self, shards: &[u32]) -> Result<Option<Vec<u32>>, CollectionError> {
        let mut wanted = shards.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if let Some(&shard) = wanted.iter().find(|n| !self.held.contains_key(n)) {
            return Err(CollectionError::ShardNotHeld {
                name: self.name(),
                what: "a search".into(),
                shard,
                held: super::list_shards(&self.held_shards()),
            });
        }
        Ok((wanted.len() < self.held.len()).then_some(wanted))
    }

    /// How a search with `filter` runs here now (without `exact`): exact scoring of the
    /// matching points, or which walk of the graph, and what chose it. Nothing is searched.
    pub fn filter_plan(&self, filter: &CompiledFilter) -> FilterPlan {
        let restriction = Restriction {
            filter: Some(filter),
            shards: None,
        };
        self.index.plan(restriction, false).1
    }

    /// Sets when filtered searches score the matching points exactly instead of walking the
    /// graph: when at most `points` match, or at most `fraction` of the collection (a tenth of
    /// each for a filter spread over the graph, see [`Collection::filter_plan`]).
    pub fn set_exact_fallback(&mut self, points: usize, fraction: f64) {
        self.changed();
        self.index.exact_fallback = (points, fraction);
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

    /// A page of the live points of a checkpointed version (see [`history::page_at`]).
    pub async fn page_at(
        &self,
        at: &Cid,
        start: history::PageStart,
        limit: usize,
    ) -> Result<(Vec<(Entry, Cid)>, Option<history::PageStart>), CollectionError> {
        if !self.holds_all() {
            return Err(CollectionError::Invalid(format!(
                "reading every point needs every shard, and this node holds only shards {} of \
                 collection {:?}; fetch the others first",
                super::list_shards(&self.held_shards()),
                self.name()
            )));
        }
        history::page_at(&self.store, &self.manifest.owner, at, start, limit).await
    }

    /// This collection's checkpointed versions, newest first.
    pub async fn versions(&self) -> Result<Vec<(Cid, Manifest)>, CollectionError> {
        history::versions(&self.store, self.root()).await
    }
}
