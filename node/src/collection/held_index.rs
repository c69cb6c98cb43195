//! The index of the shards held here: one HNSW graph over the points of every held shard.
//!
//! A shard stays the unit of storage, announcement and serving, but a node that holds several
//! shards of a collection searches them through one graph: four graphs of 15,000 points each
//! cost four searches, where one graph of 60,000 costs little more than one (a search's cost
//! grows with the logarithm of the points). Like a shard's tree-derived index before it, the
//! held index is derived: built from the held shards' trees, saved on close tagged with the
//! held shards' numbers and root CIDs ([`cache::CacheTag`]), and rebuilt whenever that tag is
//! not the current one (another version, another set of shards, a damaged file).
//!
//! Each key of the graph knows its point's shard, so a search of some of the held shards (a
//! federated request names shards) is a search of the one graph that lets only their points
//! through ([`Restriction`](super::allowed::Restriction)), cached as a bitset like a filter's.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex,
    },
};

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    manifest::{Quantization, ShardRoot},
    Ipld,
};

use super::{
    allowed::AllowedCache,
    cache::{self, CacheTag, KeyMap, PackedMetadata},
    quantize,
    shard::Advanced,
    snapshot, CollectionError, OpenProgress, EXACT_FALLBACK_FRACTION, EXACT_FALLBACK_POINTS,
};
use crate::{
    index::{hnsw::PREPARED_KEYS, DuplicateStats, HnswIndex, IndexSpec, VectorIndex},
    store::BlockStore,
    tree,
};

/// The stem of the held index's saved files in collection folder `dir`.
pub(super) fn cache_stem(dir: &Path) -> PathBuf {
    dir.join("index").join("held")
}

/// Entries a rebuild reads from the trees between two bulk inserts.
const BUILD_CHUNK: usize = 4_096;

mod search;

pub use search::{FilterPath, FilterPlan};

/// Where an opened index came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSource {
    /// Built from the trees (or grown by writes from empty).
    Built,
    /// This node's saved cache.
    Cache,
    /// A snapshot the collection's writer published ([`snapshot`]).
    Snapshot,
}

impl std::fmt::Display for IndexSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Built => "built",
            Self::Cache => "cache",
            Self::Snapshot => "snapshot",
        })
    }
}

/// One HNSW index over the points of the shards held here, and its key map.
pub struct HeldIndex {
    pub(super) index: HnswIndex,
    /// Where it came from when opened.
    pub(super) source: IndexSource,
    /// Point ids ↔ index keys, with each point's shard and metadata.
    pub(super) keys: KeyMap,
    quantization: Quantization,
    /// Whether the index differs from the saved cache.
    pub(super) dirty: bool,
    /// When a restricted search scores the points it may return exactly: (points, fraction).
    pub(super) exact_fallback: (usize, f64),
    /// The points recent restrictions let through.
    allowed: AllowedCache,
    /// The next key for a prepared insert ([`HeldIndex::prepare`]).
    next_prepared: AtomicU64,
    /// Keys of prepared inserts not yet placed nor discarded.
    prepared: Mutex<Vec<u64>>,
}

/// Prepared inserts a search may meet at once: a writer prepares at most one slice of this
/// many entries before it places them ([`shared`](super::shared)).
pub(super) const MAX_PREPARED: usize = super::shared::APPLY_SLICE;

impl std::fmt::Debug for HeldIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldIndex")
            .field("points", &self.keys.len())
            .field("dirty", &self.dirty)
            .finish()
    }
}

impl HeldIndex {
    fn with(spec: IndexSpec, index: HnswIndex, keys: KeyMap, dirty: bool) -> Self {
        Self {
            index,
            source: IndexSource::Built,
            keys,
            quantization: spec.quantization,
            dirty,
            exact_fallback: (EXACT_FALLBACK_POINTS, EXACT_FALLBACK_FRACTION),
            allowed: AllowedCache::default(),
            next_prepared: AtomicU64::new(PREPARED_KEYS),
            prepared: Mutex::default(),
        }
    }

    /// An empty index.
    pub(super) fn empty(spec: IndexSpec) -> Result<Self, CollectionError> {
        Ok(Self::with(
            spec,
            HnswIndex::new(spec)?,
            KeyMap::default(),
            true,
        ))
    }

    /// The index of the shards `held` (each with its root block CID, in shard order): loaded
    /// from the cache in `dir` when that was saved for exactly these roots, else built from
    /// their trees with `threads` threads inserting (0: one, which reproduces the graph of a
    /// writer that wrote in id order; see [`build`]), reporting to `progress`.
    pub(super) async fn open<S: BlockStore>(
        store: &S,
        spec: IndexSpec,
        dir: &Path,
        held: &[(Cid, ShardRoot)],
        progress: &OpenProgress,
        threads: usize,
    ) -> Result<Self, CollectionError> {
        remove_shard_caches(dir);
        let points = held.iter().map(|(_, root)| root.points).sum();
        progress.add_total(points);
        if let Some((index, keys)) = cache::load(&cache_stem(dir), spec, &tag(held)) {
            progress.add_done(points);
            return Ok(Self {
                source: IndexSource::Cache,
                ..Self::with(spec, index, keys, false)
            });
        }
        if let Some(listing) = snapshot::named(held.iter().map(|(_, root)| root)) {
            match Self::from_snapshot(store, spec, held, &listing).await {
                Ok(this) => {
                    progress.add_done(points);
                    tracing::info!(%listing, points, "index loaded from the published snapshot");
                    return Ok(this);
                }
                Err(reason) => tracing::info!(
                    %listing,
                    reason,
                    "the published index snapshot is not used; building the index from the trees"
                ),
            }
        }
        let (index, keys) = build(store, spec, held, progress, threads.max(1)).await?;
        Ok(Self::with(spec, index, keys, true))
    }

    /// The index of the shards `held` from the published snapshot `listing` ([`snapshot`]),
    /// moved on to the held trees if it reflects older ones; why not, when it cannot be used.
    async fn from_snapshot<S: BlockStore>(
        store: &S,
        spec: IndexSpec,
        held: &[(Cid, ShardRoot)],
        listing: &Cid,
    ) -> Result<Self, String> {
        let started = std::time::Instant::now();
        let loaded = snapshot::load(store, spec, listing).await?;
        let read = started.elapsed();
        let shards = |tag: &CacheTag| tag.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        let trees: CacheTag = held.iter().map(|(_, r)| (r.shard, r.tree)).collect();
        if shards(&loaded.trees) != shards(&trees) {
            return Err(format!(
                "it is of shards {:?}, this node holds {:?}",
                shards(&loaded.trees),
                shards(&trees)
            ));
        }
        let mut this = Self {
            source: IndexSource::Snapshot,
            ..Self::with(spec, loaded.index, loaded.keys, true)
        };
        let points: u64 = held.iter().map(|(_, r)| r.points).sum();
        // Past half the points, a build from the trees costs less and gives the writer's graph.
        let mut budget = points / 2 + 1;
        let why = |e: CollectionError| format!("its trees could not be compared: {e}");
        for ((_, old), (shard, new)) in loaded.trees.iter().zip(&trees) {
            if old != new {
                let advanced = this
                    .apply_diff(store, *shard, *old, *new, budget)
                    .await
                    .map_err(why)?;
                if advanced.changed > budget {
                    return Err("it is older than half the points".into());
                }
                budget -= advanced.changed;
            }
        }
        let moved = started.elapsed();
        if !snapshot::agrees(
            store,
            spec.quantization,
            &this.index,
            &this.keys,
            &trees,
            points,
        )
        .await
        .map_err(why)?
        {
            return Err("its points differ from the trees".into());
        }
        tracing::info!(
            read_secs = read.as_secs_f64(),
            moved_on_secs = (moved - read).as_secs_f64(),
            changes = points / 2 + 1 - budget,
            checked_secs = (started.elapsed() - moved).as_secs_f64(),
            "index snapshot read, moved on to the held trees and checked"
        );
        Ok(this)
    }

    /// Applies what changed between trees `from` and `to` of shard `shard` to the index; stops
    /// once more than `limit` entries changed.
    pub(super) async fn apply_diff<S: BlockStore>(
        &mut self,
        store: &S,
        shard: u32,
        from: Cid,
        to: Cid,
        limit: u64,
    ) -> Result<Advanced, CollectionError> {
        let mut advanced = Advanced::default();
        let mut changes = tree::diff(store, from, to);
        while let Some(change) = changes.next().await? {
            advanced.changed += 1;
            if advanced.changed > limit {
                break;
            }
            let was_live = change.old.as_ref().is_some_and(|e| !e.deleted);
            if let Some(entry) = &change.new {
                advanced.newest_hlc = advanced.newest_hlc.max(entry.hlc);
            }
            match change.new.filter(|e| !e.deleted) {
                Some(entry) => {
                    self.put(shard, &entry, None)?;
                    advanced.live_delta += i64::from(!was_live);
                }
                None => {
                    self.remove(&change.key)?;
                    advanced.live_delta -= i64::from(was_live);
                }
            }
        }
        Ok(advanced)
    }

    /// Saves the index tagged with the held shards' roots `held`, when it changed since saved.
    pub(super) fn save(
        &mut self,
        dir: &Path,
        held: &[(Cid, ShardRoot)],
    ) -> Result<(), CollectionError> {
        self.settle_prepared()?;
        if self.dirty {
            cache::save(&cache_stem(dir), &self.index, &self.keys, &tag(held))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Whether `id` is a live point here.
    pub(super) fn contains(&self, id: &EntryKey) -> bool {
        self.keys.get(id).is_some()
    }

    /// Puts `entry` (a live point of shard `shard`) in the index, replacing its old vector;
    /// `prepared` is the key of its vector's insert made by [`HeldIndex::prepare`], if any.
    pub(super) fn put(
        &mut self,
        shard: u32,
        entry: &Entry,
        prepared: Option<u64>,
    ) -> Result<(), CollectionError> {
        let metadata = PackedMetadata::of(entry)?;
        let key = self.keys.assign(&entry.id, shard);
        self.keys.set_metadata(key, metadata);
        self.dirty = true;
        // Index what readers of the tree will see: the stored (quantized) vector.
        match prepared.filter(|temp| self.take_prepared(*temp)) {
            Some(temp) => self.index.place_prepared(key, temp, &entry.vec)?,
            None => quantize::index_stored(&mut self.index, self.quantization, key, &entry.vec)?,
        }
        Ok(())
    }

    /// Fits the codes of an index that walks on them to the vectors of `entries`, unless they
    /// are fitted already (see [`HnswIndex::fit_codes`]).
    pub(super) fn fit_codes(&self, entries: &[Entry]) {
        if self.quantization == Quantization::F32 {
            self.index.fit_codes(
                entries
                    .iter()
                    .filter(|entry| !entry.deleted)
                    .map(|entry| entry.vec.as_slice()),
            );
        }
    }

    /// Inserts the vector of `entry` into the graph beside searches (shared access; one
    /// caller at a time), for [`HeldIndex::put`] to give to its point with exclusive access
    /// in a moment. Returns the insert's key, or `None` when the point needs no graph insert
    /// (a delete, an unchanged vector, a vector another point has) or there is no room.
    pub(super) fn prepare(&self, entry: &Entry) -> Result<Option<u64>, CollectionError> {
        if entry.deleted
            || !self
                .index
                .needs_insert(self.keys.get(&entry.id), &entry.vec)
        {
            return Ok(None);
        }
        let temp = self.next_prepared.fetch_add(1, Ordering::Relaxed);
        // Listed before the insert begins: a search that overlaps it knows a writer is busy.
        self.prepared_keys().push(temp);
        match self.index.prepare(temp, &entry.vec) {
            Ok(true) => Ok(Some(temp)),
            unplaced => {
                self.prepared_keys().retain(|k| *k != temp);
                unplaced?;
                Ok(None)
            }
        }
    }

    /// [`HeldIndex::prepare`] for each of `entries`, from up to `threads` threads at once
    /// (one caller at a time); each entry's insert key, `None` where it has none (an insert
    /// that fails here is made again when the entry is applied, which reports the error).
    /// usearch's concurrent inserts can leave a point that no walk reaches
    /// ([`HnswIndex::cut_off`]): such an insert is made again from this thread under a new
    /// key, and the first is discarded with the unplaced ones.
    pub(super) fn prepare_all(&self, entries: &[Entry], threads: usize) -> Vec<Option<u64>> {
        let prepare = |entry: &Entry| {
            self.prepare(entry).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "a graph insert beside searches failed");
                None
            })
        };
        // Fewer than a few inserts a thread are not worth one.
        let threads = threads.min(entries.len() / 4).max(1);
        if threads == 1 {
            return entries.iter().map(prepare).collect();
        }
        let next = AtomicUsize::new(0);
        let slots: Vec<std::sync::OnceLock<Option<u64>>> =
            entries.iter().map(|_| Default::default()).collect();
        let work = || loop {
            let at = next.fetch_add(1, Ordering::Relaxed);
            let Some(entry) = entries.get(at) else { return };
            let _ = slots[at].set(prepare(entry));
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
        let mut prepared: Vec<Option<u64>> = slots
            .into_iter()
            .map(|slot| slot.into_inner().flatten())
            .collect();
        // Inserts made again come from this thread alone, and nearly always link at once.
        let mut check: Vec<u64> = prepared.iter().flatten().copied().collect();
        for _ in 0..3 {
            let lost = self.index.cut_off(&check);
            if lost.is_empty() {
                break;
            }
            check.clear();
            for (entry, temp) in entries.iter().zip(prepared.iter_mut()) {
                if temp.is_some_and(|t| lost.contains(&t)) {
                    *temp = prepare(entry);
                    check.extend(*temp);
                }
            }
        }
        prepared
    }

    /// Forgets the prepared insert `temp`; false when it was discarded already.
    fn take_prepared(&mut self, temp: u64) -> bool {
        let prepared = self.prepared.get_mut().unwrap_or_else(|p| p.into_inner());
        let Some(at) = prepared.iter().position(|k| *k == temp) else {
            return false;
        };
        prepared.swap_remove(at);
        true
    }

    /// Takes every prepared insert not placed yet out of the graph (their writes were not
    /// applied: a failed slice, or a writer that stopped between preparing and placing), and
    /// makes room for the next slice's inserts.
    pub(super) fn settle_prepared(&mut self) -> Result<(), CollectionError> {
        let left = std::mem::take(self.prepared.get_mut().unwrap_or_else(|p| p.into_inner()));
        for temp in left {
            self.index.discard_prepared(temp)?;
        }
        // A slice's inserts, and as many again for those made twice (`prepare_all`).
        self.index.room_for(2 * MAX_PREPARED)?;
        Ok(())
    }

    /// Whether a writer's graph inserts are in the index, not yet placed.
    pub(super) fn has_prepared(&self) -> bool {
        !self.prepared_keys().is_empty()
    }

    fn prepared_keys(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.prepared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the point `id` out of the index; returns whether it was there.
    pub(super) fn remove(&mut self, id: &EntryKey) -> Result<bool, CollectionError> {
        let Some(key) = self.keys.remove(id) else {
            return Ok(false);
        };
        self.index.remove(key)?;
        self.dirty = true;
        Ok(true)
    }

    /// The stored vector and the metadata of the live point `id`, exactly as stored.
    pub(super) fn stored(&self, id: &EntryKey) -> Option<(Vec<u8>, Option<Ipld>)> {
        let key = self.keys.get(id)?;
        let vec = quantize::stored_from_index(&self.index, self.quantization, key)?;
        Some((vec, self.keys.metadata(key)))
    }

    /// The id and shard of a key.
    pub(super) fn point_of(&self, key: u64) -> Option<super::cache::PointRef<'_>> {
        self.keys.point_of(key)
    }

    /// Bytes of memory the index holds.
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// Points whose vector the index stores once for several points, and the bytes saved.
    pub fn duplicate_stats(&self) -> DuplicateStats {
        self.index.duplicate_stats()
    }
}

/// The cache tag of the held shards `held`: their numbers and root block CIDs.
fn tag(held: &[(Cid, ShardRoot)]) -> CacheTag {
    held.iter().map(|(cid, root)| (root.shard, *cid)).collect()
}

/// Removes the per-shard caches of an older ipvec (`index/shard-N.*`), which nothing reads.
fn remove_shard_caches(dir: &Path) {
    let Ok(files) = std::fs::read_dir(dir.join("index")) else {
        return;
    };
    for file in files.flatten() {
        if file.file_name().to_string_lossy().starts_with("shard-") {
            let _ = std::fs::remove_file(file.path());
        }
    }
}

/// Builds the index of the shards `held` from their trees: the trees are the truth. The
/// trees are read together in id order, a chunk at a time on this thread; each chunk's vectors
/// then go into the graph from `threads` threads. With one, a rebuild inserts in the order of
/// a writer that wrote the points in id order, and so reproduces its graph and its answers
/// (on every replica alike); more threads build faster but each build's graph differs.
async fn build<S: BlockStore>(
    store: &S,
    spec: IndexSpec,
    held: &[(Cid, ShardRoot)],
    progress: &OpenProgress,
    threads: usize,
) -> Result<(HnswIndex, KeyMap), CollectionError> {
    let mut index = HnswIndex::new(spec)?;
    let points: u64 = held.iter().map(|(_, root)| root.points).sum();
    index.reserve((points as usize).max(1))?;
    let mut keys = KeyMap::default();
    let added = |n: u64| progress.add_done(n);
    let mut scans = Vec::with_capacity(held.len());
    let mut heads = Vec::with_capacity(held.len());
    for (_, root) in held {
        let mut scan = tree::range(
            store,
            root.tree,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
        );
        heads.push(scan.next().await?.map(|(entry, _)| entry));
        scans.push(scan);
    }
    let mut chunk = Vec::with_capacity(BUILD_CHUNK);
    loop {
        // The shard whose next entry has the smallest id.
        let next = heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| Some((i, &head.as_ref()?.id)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        let Some(i) = next else {
            break;
        };
        let following = scans[i].next().await?.map(|(entry, _)| entry);
        let Some(entry) = std::mem::replace(&mut heads[i], following) else {
            break;
        };
        if entry.deleted {
            continue;
        }
        let metadata = PackedMetadata::of(&entry)?;
        let key = keys.assign(&entry.id, held[i].1.shard);
        keys.set_metadata(key, metadata);
        chunk.push((key, entry.vec));
        if chunk.len() == BUILD_CHUNK {
            index.add_stored(std::mem::take(&mut chunk), threads, &added)?;
        }
    }
    if !chunk.is_empty() {
        index.add_stored(chunk, threads, &added)?;
    }
    // Points inserted from several threads at once are checked to be reachable.
    let mended = index.mend()?;
    if mended > 0 {
        tracing::info!(
            mended,
            "inserted again the points the index build's threads left out of reach"
        );
    }
    Ok((index, keys))
}
