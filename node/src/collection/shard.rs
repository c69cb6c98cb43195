//! Shards: a collection's hash ranges, each held, indexed, searched and served on its own.
//!
//! A [`LocalShard`] is a shard this node holds: its committed root (tree and point count) and
//! its pending entries (logged, not yet in its tree). Its points are indexed in the one index
//! of the shards held here ([`HeldIndex`]), which the collection owns with what else is one
//! per collection: the manifest, the signed head, the write-ahead log and the writer keys; it
//! routes each entry to the shard of its id ([`shard_of`](ipvec_protocol::manifest::shard_of)).
//!
//! [`Shard`] is the seam a shard is used through — search, get, info — so that a shard held
//! by a peer can answer the same calls; [`HeldShard`] is a held shard seen with the index, and
//! searches the index for that shard's points alone.

use std::{
    collections::BTreeMap,
    future::Future,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    manifest::ShardRoot,
};

use super::{
    allowed::Restriction, held_index::HeldIndex, write::Pending, CollectionError, CompiledFilter,
    SearchHit, SearchOptions,
};
use crate::{
    index::{Hit, IndexSpec},
    store::BlockStore,
    tree,
};

/// What a shard tells of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// The shard's number in the manifest.
    pub number: u32,
    /// Live points, counting writes still in the log.
    pub points: u64,
    /// Writes in the log, not yet in the shard's tree.
    pub pending: usize,
    /// The root of the shard's tree at the last checkpoint.
    pub tree: Cid,
}

/// One shard of a collection, wherever it is held: the calls a collection search (and,
/// later, a federated search) makes of each shard.
pub trait Shard: Sync {
    /// The shard's number.
    fn number(&self) -> u32;

    /// Counts and roots.
    fn info(&self) -> ShardInfo;

    /// The `options.k` best points of this shard for `query` among those `filter` accepts,
    /// best first.
    fn search<'a>(
        &'a self,
        query: &'a [f32],
        options: SearchOptions,
        filter: Option<&'a CompiledFilter>,
    ) -> impl Future<Output = Result<Vec<SearchHit>, CollectionError>> + Send + 'a;

    /// The live point with id `key` and its leaf CID (`None` while only in the log).
    fn get<'a>(
        &'a self,
        key: &'a EntryKey,
    ) -> impl Future<Output = Result<Option<(Entry, Option<Cid>)>, CollectionError>> + Send + 'a;
}

/// How far the opening of a collection has come: points indexed of the points to index.
/// Clones share the count: one is given to the opening, others to whoever waits for the
/// collection, to tell how far along it is.
#[derive(Debug, Default, Clone)]
pub struct OpenProgress(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    done: AtomicU64,
    total: AtomicU64,
}

impl OpenProgress {
    /// Points indexed so far and the points to index (points whose saved index is loaded
    /// count as indexed at once).
    pub fn get(&self) -> (u64, u64) {
        (
            self.0.done.load(Ordering::Relaxed),
            self.0.total.load(Ordering::Relaxed),
        )
    }

    /// The share indexed, in percent (0 before the count is known).
    pub fn percent(&self) -> u64 {
        match self.get() {
            (_, 0) => 0,
            (done, total) => (done.min(total) * 100) / total,
        }
    }

    pub(super) fn add_total(&self, points: u64) {
        self.0.total.fetch_add(points, Ordering::Relaxed);
    }

    pub(super) fn add_done(&self, points: u64) {
        self.0.done.fetch_add(points, Ordering::Relaxed);
    }
}

/// What moving a shard to another tree did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Advanced {
    /// Entries that differ between the trees.
    pub(super) changed: u64,
    /// How the live count changed.
    pub(super) live_delta: i64,
    /// The newest clock stamp among the entries taken.
    pub(super) newest_hlc: u64,
}

/// A shard held here.
pub struct LocalShard<S> {
    store: S,
    number: u32,
    /// The committed root: the tree and its live count.
    pub(super) root: ShardRoot,
    /// Writes acknowledged (logged) but not yet in the tree, by id.
    pub(super) pending: BTreeMap<EntryKey, Pending>,
    /// How the pending entries change the live count.
    pub(super) pending_delta: i64,
    /// The leaf directory of the current tree: hits find their leaf CIDs without reading
    /// blocks.
    leaves: Mutex<Option<(Cid, Arc<tree::LeafDirectory>)>>,
}

impl<S> std::fmt::Debug for LocalShard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalShard")
            .field("number", &self.number)
            .field("tree", &self.root.tree)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<S: BlockStore> LocalShard<S> {
    /// The shard at `root`, with nothing pending.
    pub(super) fn new(store: S, root: ShardRoot) -> Self {
        Self {
            store,
            number: root.shard,
            root,
            pending: BTreeMap::new(),
            pending_delta: 0,
            leaves: Mutex::new(None),
        }
    }

    /// The shard's number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Live points, counting writes still in the log.
    pub fn points(&self) -> u64 {
        (self.root.points as i64 + self.pending_delta).max(0) as u64
    }

    /// Makes one logged entry of this shard visible: in `index` and the pending set.
    pub(super) fn apply(
        &mut self,
        entry: Entry,
        prepared: Option<u64>,
        index: &mut HeldIndex,
    ) -> Result<(), CollectionError> {
        let delta = match (index.contains(&entry.id), entry.deleted) {
            (false, false) => 1,
            (true, true) => -1,
            _ => 0,
        };
        self.pending_delta += delta;
        if entry.deleted {
            index.remove(&entry.id)?;
        } else {
            index.put(self.number, &entry, prepared)?;
        }
        let before = self.pending.get(&entry.id).map_or(0, |p| p.delta);
        self.pending.insert(
            entry.id,
            Pending {
                hlc: entry.hlc,
                writer: entry.writer,
                deleted: entry.deleted,
                delta: before + delta,
            },
        );
        Ok(())
    }

    /// Applies what changed between the committed tree and `root` (a newer version of this
    /// shard) to `index`; returns how many entries changed.
    pub(super) async fn advance(
        &mut self,
        root: ShardRoot,
        index: &mut HeldIndex,
    ) -> Result<Advanced, CollectionError> {
        let advanced = index
            .apply_diff(
                &self.store,
                self.number,
                self.root.tree,
                root.tree,
                u64::MAX,
            )
            .await?;
        self.root = root;
        Ok(advanced)
    }

    /// The entry of a pending write, its vector and metadata read back from `index` (which
    /// holds them exactly as stored).
    pub(super) fn pending_entry(
        &self,
        id: EntryKey,
        pending: &Pending,
        index: &HeldIndex,
    ) -> Result<Entry, CollectionError> {
        let (vec, meta) = if pending.deleted {
            (Vec::new(), None)
        } else {
            index.stored(&id).ok_or_else(|| {
                CollectionError::Invalid(format!(
                    "the index lost the vector of pending point {}; reopen the collection to \
                     replay its write-ahead log",
                    id.id()
                ))
            })?
        };
        Ok(Entry {
            id,
            vec,
            meta,
            hlc: pending.hlc,
            writer: pending.writer.clone(),
            deleted: pending.deleted,
        })
    }

    /// The entries of `run` whose pending write is still the one given.
    pub(super) fn current_entries(
        &self,
        run: &[(EntryKey, Pending)],
        index: &HeldIndex,
    ) -> Result<Vec<Option<Entry>>, CollectionError> {
        run.iter()
            .map(|(id, taken)| match self.pending.get(id) {
                Some(now) if now.hlc == taken.hlc => {
                    self.pending_entry(id.clone(), taken, index).map(Some)
                }
                _ => Ok(None),
            })
            .collect()
    }

    /// Marks the writes a checkpoint put in the tree `root` as committed: each leaves the
    /// pending set unless it was written again since.
    pub(super) fn committed(&mut self, root: ShardRoot, taken: &[(EntryKey, Pending)]) {
        for (id, taken) in taken {
            self.pending_delta -= taken.delta;
            if let Some(now) = self.pending.get_mut(id) {
                if now.hlc == taken.hlc {
                    self.pending.remove(id);
                } else {
                    // Written again since: the newer write stays pending, counted from the
                    // state the tree now holds.
                    now.delta -= taken.delta;
                }
            }
        }
        self.root = root;
    }

    /// The leaf of the point `id` of this shard; `None` while the point is only in the log.
    /// `directories` keeps the leaf directories taken, by shard, for the caller's next points.
    async fn leaf_of(
        &self,
        id: &EntryKey,
        directories: &mut Vec<(u32, Arc<tree::LeafDirectory>)>,
    ) -> Result<Option<Cid>, CollectionError> {
        if self.pending.contains_key(id) {
            return Ok(None);
        }
        let at = match directories.iter().position(|(n, _)| *n == self.number) {
            Some(at) => at,
            None => {
                directories.push((self.number, self.leaf_directory().await?));
                directories.len() - 1
            }
        };
        let leaf = directories[at].1.leaf_of(id).ok_or_else(|| {
            CollectionError::Invalid(format!("the tree {} has no leaves", self.root.tree))
        })?;
        Ok(Some(leaf))
    }

    async fn leaf_directory(&self) -> Result<Arc<tree::LeafDirectory>, CollectionError> {
        let tree = self.root.tree;
        let known = self
            .leaves
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((root, directory)) = known {
            if root == tree {
                return Ok(directory);
            }
        }
        let directory = Arc::new(tree::LeafDirectory::read(&self.store, &tree).await?);
        *self.leaves.lock().unwrap_or_else(|p| p.into_inner()) = Some((tree, directory.clone()));
        Ok(directory)
    }

    fn info(&self) -> ShardInfo {
        ShardInfo {
            number: self.number,
            points: self.points(),
            pending: self.pending.len(),
            tree: self.root.tree,
        }
    }

    /// The live point `key` of this shard and its leaf CID (`None` while only in the log).
    pub(super) async fn get(
        &self,
        key: &EntryKey,
        index: &HeldIndex,
    ) -> Result<Option<(Entry, Option<Cid>)>, CollectionError> {
        if let Some(pending) = self.pending.get(key) {
            let entry = self.pending_entry(key.clone(), pending, index)?;
            return Ok((!entry.deleted).then_some((entry, None)));
        }
        let found = tree::get(&self.store, &self.root.tree, key).await?;
        Ok(found
            .filter(|(e, _)| !e.deleted)
            .map(|(e, leaf)| (e, Some(leaf))))
    }
}

/// Search hits for index hits of the shards `held`: ids, metadata, and the leaf CIDs of those
/// in the trees (from each tree's leaf directory, read once per tree version). A hit of a
/// point no longer in the index is dropped.
pub(super) async fn resolve<S: BlockStore>(
    held: &BTreeMap<u32, LocalShard<S>>,
    index: &HeldIndex,
    hits: Vec<Hit>,
) -> Result<Vec<SearchHit>, CollectionError> {
    // Every hit's point is read, then every point's metadata touched, before any is used:
    // after a graph walk these reads miss the cache, and made one by one in a loop that also
    // decodes, each would wait for the one before. Made together, they are waited for at once.
    let points: Vec<_> = hits
        .iter()
        .filter_map(|hit| Some((hit.score, index.point_of(hit.key)?)))
        .collect();
    for (_, point) in &points {
        if let Some(metadata) = point.metadata {
            metadata.touch();
        }
    }
    let mut resolved = Vec::with_capacity(points.len());
    // Each shard's leaf directory, taken once for all its hits.
    let mut directories = Vec::new();
    for (score, point) in points {
        let number = point.shard;
        let shard = held.get(&number).ok_or_else(|| {
            CollectionError::Invalid(format!(
                "the index holds a point of shard {number}, which is not held here"
            ))
        })?;
        resolved.push(SearchHit {
            id: point.id.id(),
            score,
            metadata: point.metadata.cloned(),
            leaf: shard.leaf_of(point.id, &mut directories).await?,
        });
    }
    Ok(resolved)
}

/// A shard held here, seen with the index of the held shards: what [`Shard`] calls act on.
pub struct HeldShard<'a, S> {
    pub(super) held: &'a BTreeMap<u32, LocalShard<S>>,
    pub(super) shard: &'a LocalShard<S>,
    pub(super) index: &'a HeldIndex,
}

impl<S> std::fmt::Debug for HeldShard<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HeldShard")
            .field(&self.shard.number)
            .finish()
    }
}

impl<S: BlockStore> Shard for HeldShard<'_, S> {
    fn number(&self) -> u32 {
        self.shard.number
    }

    fn info(&self) -> ShardInfo {
        self.shard.info()
    }

    /// A search of the held index that lets through this shard's points alone.
    async fn search<'a>(
        &'a self,
        query: &'a [f32],
        options: SearchOptions,
        filter: Option<&'a CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        let only = [self.shard.number];
        let restriction = Restriction {
            filter,
            shards: (self.held.len() > 1).then_some(&only[..]),
        };
        let hits = self.index.hits(query, options, restriction)?;
        resolve(self.held, self.index, hits).await
    }

    async fn get<'a>(
        &'a self,
        key: &'a EntryKey,
    ) -> Result<Option<(Entry, Option<Cid>)>, CollectionError> {
        self.shard.get(key, self.index).await
    }
}

/// Opens the shards `wanted` of `roots` (with their root block CIDs) and the index of their
/// points: loaded from its saved cache when that is for exactly these roots, else rebuilt from
/// their trees on a [`background`](crate::background) thread, `threads` inserting at once (0:
/// one).
pub(super) async fn open_all<S: BlockStore>(
    store: &S,
    spec: IndexSpec,
    dir: &Path,
    roots: &[(Cid, ShardRoot)],
    wanted: &[u32],
    progress: &OpenProgress,
    threads: usize,
) -> Result<(BTreeMap<u32, LocalShard<S>>, HeldIndex), CollectionError> {
    let held: Vec<(Cid, ShardRoot)> = wanted.iter().map(|&n| roots[n as usize].clone()).collect();
    let shards = held
        .iter()
        .map(|(_, root)| (root.shard, LocalShard::new(store.clone(), root.clone())))
        .collect();
    let (store, dir, progress, handle) = (
        store.clone(),
        dir.to_path_buf(),
        progress.clone(),
        tokio::runtime::Handle::current(),
    );
    let index = crate::background::run(move || {
        handle.block_on(HeldIndex::open(
            &store, spec, &dir, &held, &progress, threads,
        ))
    })
    .await
    .map_err(|e| CollectionError::Invalid(format!("opening the index stopped: {e}")))??;
    Ok((shards, index))
}
