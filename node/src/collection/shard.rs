//! Shards: a collection's hash ranges, each held, indexed, searched and served on its own.
//!
//! A [`LocalShard`] is a shard this node holds: its committed root (tree and point count),
//! its own HNSW index and key map, and its pending entries (logged, not yet in its tree).
//! The collection around it owns what is one per collection: the manifest, the signed head,
//! the write-ahead log and the writer keys; it routes each entry to the shard of its id
//! ([`shard_of`](ipvec_protocol::manifest::shard_of)) and merges its shards' answers ([`super::merge`]).
//!
//! [`Shard`] is the seam a shard is used through — search, get, info — so that a shard held
//! by a peer can answer the same calls.

use std::{
    collections::BTreeMap,
    future::Future,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    manifest::{Quantization, ShardRoot},
};

use super::{
    allowed::AllowedCache, cache, quantize, write::Pending, CollectionError, CompiledFilter,
    SearchHit, SearchOptions, EXACT_FALLBACK_FRACTION, EXACT_FALLBACK_POINTS,
};
use crate::{
    index::{DuplicateStats, Hit, HnswIndex, IndexSpec, VectorIndex},
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
    /// Bytes of memory the shard's index holds.
    pub index_bytes: usize,
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
    /// Points indexed so far and the points to index (a shard whose saved index is loaded
    /// counts as indexed at once).
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

    fn add_total(&self, points: u64) {
        self.0.total.fetch_add(points, Ordering::Relaxed);
    }

    fn add_done(&self, points: u64) {
        self.0.done.fetch_add(points, Ordering::Relaxed);
    }
}

/// A shard held here.
pub struct LocalShard<S> {
    store: S,
    number: u32,
    quantization: Quantization,
    /// The committed root: the tree and its live count.
    pub(super) root: ShardRoot,
    pub(super) index: HnswIndex,
    pub(super) keys: cache::KeyMap,
    /// Writes acknowledged (logged) but not yet in the tree, by id.
    pub(super) pending: BTreeMap<EntryKey, Pending>,
    /// How the pending entries change the live count.
    pub(super) pending_delta: i64,
    /// Whether the index differs from the saved cache.
    pub(super) index_dirty: bool,
    /// When a filtered search scores the matching points exactly: (points, fraction).
    pub(super) exact_fallback: (usize, f64),
    /// The points recent filters allow.
    allowed: AllowedCache,
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

/// The stem of shard `number`'s saved index files in collection folder `dir`.
pub(super) fn cache_stem(dir: &Path, number: u32) -> PathBuf {
    dir.join("index").join(format!("shard-{number}"))
}

impl<S: BlockStore> LocalShard<S> {
    /// An empty shard with an empty index.
    pub(super) fn empty(
        store: S,
        spec: IndexSpec,
        root: ShardRoot,
    ) -> Result<Self, CollectionError> {
        Ok(Self::with_index(
            store,
            spec,
            root,
            HnswIndex::new(spec)?,
            cache::KeyMap::default(),
            true,
        ))
    }

    fn with_index(
        store: S,
        spec: IndexSpec,
        root: ShardRoot,
        index: HnswIndex,
        keys: cache::KeyMap,
        index_dirty: bool,
    ) -> Self {
        Self {
            store,
            number: root.shard,
            quantization: spec.quantization,
            root,
            index,
            keys,
            pending: BTreeMap::new(),
            pending_delta: 0,
            index_dirty,
            exact_fallback: (EXACT_FALLBACK_POINTS, EXACT_FALLBACK_FRACTION),
            allowed: AllowedCache::default(),
            leaves: Mutex::new(None),
        }
    }

    /// Opens the shard whose root block is `cid`: its index from the saved cache in `dir` when
    /// that reflects this root, else rebuilt from the tree (reporting to `progress`).
    pub(super) async fn open(
        store: S,
        spec: IndexSpec,
        dir: &Path,
        cid: &Cid,
        root: ShardRoot,
        progress: &OpenProgress,
    ) -> Result<Self, CollectionError> {
        let stem = cache_stem(dir, root.shard);
        if let Some((index, keys)) = cache::load(&stem, spec, cid) {
            progress.add_done(root.points);
            return Ok(Self::with_index(store, spec, root, index, keys, false));
        }
        let (index, keys) = build_index(&store, spec, &root, progress).await?;
        Ok(Self::with_index(store, spec, root, index, keys, true))
    }

    /// Saves the index for the shard root block `cid` when it changed since it was saved.
    pub(super) fn save_index(&mut self, dir: &Path, cid: &Cid) -> Result<(), CollectionError> {
        if self.index_dirty {
            cache::save(&cache_stem(dir, self.number), &self.index, &self.keys, cid)?;
            self.index_dirty = false;
        }
        Ok(())
    }

    /// Live points, counting writes still in the log.
    pub fn points(&self) -> u64 {
        (self.root.points as i64 + self.pending_delta).max(0) as u64
    }

    /// Whether `key` is live here (in the tree or pending).
    pub(super) fn contains(&self, key: &EntryKey) -> bool {
        self.keys.get(key).is_some()
    }

    /// Points whose vector the index stores once for several points, and the bytes saved.
    pub fn duplicate_stats(&self) -> DuplicateStats {
        self.index.duplicate_stats()
    }

    /// Makes one logged entry visible: the key map, the index and the pending set.
    pub(super) fn apply(&mut self, entry: Entry) -> Result<(), CollectionError> {
        let delta = match (self.keys.get(&entry.id).is_some(), entry.deleted) {
            (false, false) => 1,
            (true, true) => -1,
            _ => 0,
        };
        self.pending_delta += delta;
        if entry.deleted {
            if let Some(key) = self.keys.remove(&entry.id) {
                self.index.remove(key)?;
            }
        } else {
            let key = self.keys.assign(&entry.id);
            self.keys.set_metadata(key, entry.meta.clone());
            // Index what readers of the tree will see: the stored (quantized) vector.
            quantize::index_stored(&mut self.index, self.quantization, key, &entry.vec)?;
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
        self.index_dirty = true;
        Ok(())
    }

    /// Applies what changed between the committed tree and `root` (a newer version of this
    /// shard) to the index and the key map; returns how many entries changed.
    pub(super) async fn advance(&mut self, root: ShardRoot) -> Result<u64, CollectionError> {
        let mut changed = 0u64;
        let mut changes = tree::diff(&self.store, self.root.tree, root.tree);
        while let Some(change) = changes.next().await? {
            changed += 1;
            match change.new.filter(|e| !e.deleted) {
                Some(entry) => {
                    let key = self.keys.assign(&entry.id);
                    self.keys.set_metadata(key, entry.meta.clone());
                    quantize::index_stored(&mut self.index, self.quantization, key, &entry.vec)?;
                }
                None => {
                    if let Some(key) = self.keys.remove(&change.key) {
                        self.index.remove(key)?;
                    }
                }
            }
        }
        self.root = root;
        self.index_dirty |= changed > 0;
        Ok(changed)
    }

    /// The entry of a pending write, its vector and metadata read back from the index and the
    /// key map (which hold them exactly as stored).
    pub(super) fn pending_entry(
        &self,
        id: EntryKey,
        pending: &Pending,
    ) -> Result<Entry, CollectionError> {
        let (vec, meta) = if pending.deleted {
            (Vec::new(), None)
        } else {
            let lost = || {
                CollectionError::Invalid(format!(
                    "the index lost the vector of pending point {}; reopen the collection to \
                     replay its write-ahead log",
                    id.id()
                ))
            };
            let key = self.keys.get(&id).ok_or_else(lost)?;
            let vec = quantize::stored_from_index(&self.index, self.quantization, key)
                .ok_or_else(lost)?;
            (vec, self.keys.metadata(key).cloned())
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
    ) -> Result<Vec<Option<Entry>>, CollectionError> {
        run.iter()
            .map(|(id, taken)| match self.pending.get(id) {
                Some(now) if now.hlc == taken.hlc => {
                    self.pending_entry(id.clone(), taken).map(Some)
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

    /// The index's best keys for `query` (the part of a search that needs no blocks).
    pub(super) fn index_hits(
        &self,
        query: &[f32],
        options: SearchOptions,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<Hit>, CollectionError> {
        Ok(match filter {
            None if options.exact => self.index.exact(query, options.k)?,
            None => self.index.search(query, options.k, options.ef, None)?,
            Some(filter) => {
                // A filter is evaluated over every point into a key set, kept for later
                // searches with an equal filter until the next write; the HNSW walk then
                // consults it. When few points match they are scored exactly instead, where
                // a graph walk would have to visit most of the graph.
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
        })
    }

    /// Search hits for index hits: ids, metadata, and the leaf CIDs of those in the tree
    /// (from the tree's leaf directory, read once per tree version).
    pub(super) async fn resolve(&self, hits: Vec<Hit>) -> Result<Vec<SearchHit>, CollectionError> {
        let found: Vec<(&EntryKey, u64, f32)> = hits
            .iter()
            .filter_map(|h| self.keys.id_of(h.key).map(|id| (id, h.key, h.score)))
            .collect();
        let committed = found
            .iter()
            .any(|(id, _, _)| !self.pending.contains_key(*id));
        let directory = match committed {
            true => Some(self.leaf_directory().await?),
            false => None,
        };
        found
            .into_iter()
            .map(|(id, key, score)| {
                let leaf = match (&directory, self.pending.contains_key(id)) {
                    (Some(directory), false) => Some(directory.leaf_of(id).ok_or_else(|| {
                        CollectionError::Invalid(format!(
                            "the tree {} has no leaves",
                            self.root.tree
                        ))
                    })?),
                    _ => None,
                };
                Ok(SearchHit {
                    id: id.id(),
                    score,
                    metadata: self.keys.metadata(key).cloned(),
                    leaf,
                })
            })
            .collect()
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
}

impl<S: BlockStore> Shard for LocalShard<S> {
    fn number(&self) -> u32 {
        self.number
    }

    fn info(&self) -> ShardInfo {
        ShardInfo {
            number: self.number,
            points: self.points(),
            pending: self.pending.len(),
            tree: self.root.tree,
            index_bytes: self.index.memory_bytes(),
        }
    }

    async fn search<'a>(
        &'a self,
        query: &'a [f32],
        options: SearchOptions,
        filter: Option<&'a CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        let hits = self.index_hits(query, options, filter)?;
        self.resolve(hits).await
    }

    async fn get<'a>(
        &'a self,
        key: &'a EntryKey,
    ) -> Result<Option<(Entry, Option<Cid>)>, CollectionError> {
        if let Some(pending) = self.pending.get(key) {
            let entry = self.pending_entry(key.clone(), pending)?;
            return Ok((!entry.deleted).then_some((entry, None)));
        }
        let found = tree::get(&self.store, &self.root.tree, key).await?;
        Ok(found
            .filter(|(e, _)| !e.deleted)
            .map(|(e, leaf)| (e, Some(leaf))))
    }
}

/// Entries a rebuild reads from a tree between two progress reports.
const BUILD_CHUNK: usize = 4_096;

/// Builds a shard's index from its tree: the tree is the truth. Runs on a thread of its own
/// (see [`open_all`]): reading the tree and inserting into the index both take a core.
async fn build_index<S: BlockStore>(
    store: &S,
    spec: IndexSpec,
    root: &ShardRoot,
    progress: &OpenProgress,
) -> Result<(HnswIndex, cache::KeyMap), CollectionError> {
    let mut index = HnswIndex::new(spec)?;
    index.reserve((root.points as usize).max(1))?;
    let mut keys = cache::KeyMap::default();
    let mut scan = tree::range(
        store,
        root.tree,
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
    );
    let mut unreported = 0u64;
    while let Some((entry, _)) = scan.next().await? {
        if entry.deleted {
            continue;
        }
        let key = keys.assign(&entry.id);
        keys.set_metadata(key, entry.meta);
        quantize::index_stored(&mut index, spec.quantization, key, &entry.vec)?;
        unreported += 1;
        if unreported == BUILD_CHUNK as u64 {
            progress.add_done(unreported);
            unreported = 0;
        }
    }
    progress.add_done(unreported);
    Ok((index, keys))
}

/// Opens the shards `wanted` of `roots` (with their root block CIDs), `threads` at a time (0:
/// as many as the machine has cores), each on a [`background`](crate::background) thread of
/// its own: their index builds run in parallel.
pub(super) async fn open_all<S: BlockStore>(
    store: &S,
    spec: IndexSpec,
    dir: &Path,
    roots: &[(Cid, ShardRoot)],
    wanted: &[u32],
    progress: &OpenProgress,
    threads: usize,
) -> Result<BTreeMap<u32, LocalShard<S>>, CollectionError> {
    let parallel = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    progress.add_total(wanted.iter().map(|&n| roots[n as usize].1.points).sum());
    let handle = tokio::runtime::Handle::current();
    let mut queue = wanted.iter().map(|&n| roots[n as usize].clone());
    let mut running = tokio::task::JoinSet::new();
    let mut open = BTreeMap::new();
    loop {
        while running.len() < parallel {
            let Some((cid, root)) = queue.next() else {
                break;
            };
            let (store, dir, progress, handle) = (
                store.clone(),
                dir.to_path_buf(),
                progress.clone(),
                handle.clone(),
            );
            running.spawn_blocking_on(
                move || handle.block_on(LocalShard::open(store, spec, &dir, &cid, root, &progress)),
                &crate::background::handle(),
            );
        }
        match running.join_next().await {
            Some(done) => {
                let shard = done.map_err(|e| {
                    CollectionError::Invalid(format!("opening a shard stopped: {e}"))
                })??;
                open.insert(shard.number, shard);
            }
            None => break,
        }
    }
    Ok(open)
}
