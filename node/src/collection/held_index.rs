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
//! through ([`Restriction`]), cached as a bitset like a filter's.

use std::path::{Path, PathBuf};

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    manifest::{Quantization, ShardRoot},
    Ipld,
};

use super::{
    allowed::{AllowedCache, Restriction},
    cache::{self, CacheTag, KeyMap},
    quantize, CollectionError, OpenProgress, SearchOptions, EXACT_FALLBACK_FRACTION,
    EXACT_FALLBACK_POINTS,
};
use crate::{
    index::{DuplicateStats, Hit, HnswIndex, IndexSpec, VectorIndex},
    store::BlockStore,
    tree,
};

/// The stem of the held index's saved files in collection folder `dir`.
pub(super) fn cache_stem(dir: &Path) -> PathBuf {
    dir.join("index").join("held")
}

/// Entries a rebuild reads from the trees between two bulk inserts.
const BUILD_CHUNK: usize = 4_096;

/// One HNSW index over the points of the shards held here, and its key map.
pub struct HeldIndex {
    pub(super) index: HnswIndex,
    /// Point ids ↔ index keys, with each point's shard and metadata.
    pub(super) keys: KeyMap,
    quantization: Quantization,
    /// Whether the index differs from the saved cache.
    pub(super) dirty: bool,
    /// When a restricted search scores the points it may return exactly: (points, fraction).
    pub(super) exact_fallback: (usize, f64),
    /// The points recent restrictions let through.
    allowed: AllowedCache,
}

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
            keys,
            quantization: spec.quantization,
            dirty,
            exact_fallback: (EXACT_FALLBACK_POINTS, EXACT_FALLBACK_FRACTION),
            allowed: AllowedCache::default(),
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
            return Ok(Self::with(spec, index, keys, false));
        }
        let (index, keys) = build(store, spec, held, progress, threads.max(1)).await?;
        Ok(Self::with(spec, index, keys, true))
    }

    /// Saves the index tagged with the held shards' roots `held`, when it changed since saved.
    pub(super) fn save(
        &mut self,
        dir: &Path,
        held: &[(Cid, ShardRoot)],
    ) -> Result<(), CollectionError> {
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

    /// Puts `entry` (a live point of shard `shard`) in the index, replacing its old vector.
    pub(super) fn put(&mut self, shard: u32, entry: &Entry) -> Result<(), CollectionError> {
        let key = self.keys.assign(&entry.id, shard);
        self.keys.set_metadata(key, entry.meta.clone());
        // Index what readers of the tree will see: the stored (quantized) vector.
        quantize::index_stored(&mut self.index, self.quantization, key, &entry.vec)?;
        self.dirty = true;
        Ok(())
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
        Some((vec, self.keys.metadata(key).cloned()))
    }

    /// The id and shard of a key.
    pub(super) fn point_of(&self, key: u64) -> Option<(&EntryKey, u32)> {
        self.keys.point_of(key)
    }

    /// The metadata of a key.
    pub(super) fn metadata(&self, key: u64) -> Option<&Ipld> {
        self.keys.metadata(key)
    }

    /// Bytes of memory the index holds.
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// Points whose vector the index stores once for several points, and the bytes saved.
    pub fn duplicate_stats(&self) -> DuplicateStats {
        self.index.duplicate_stats()
    }

    /// The index's best keys for `query` among the points `restriction` lets through.
    pub(super) fn hits(
        &self,
        query: &[f32],
        options: SearchOptions,
        restriction: Restriction<'_>,
    ) -> Result<Vec<Hit>, CollectionError> {
        if restriction.is_none() {
            return Ok(match options.exact {
                true => self.index.exact(query, options.k)?,
                false => self.index.search(query, options.k, options.ef, None)?,
            });
        }
        // A restriction is evaluated over every point into a key set, kept for later searches
        // with an equal one until the next write; the HNSW walk then consults it. When few
        // points pass they are scored exactly instead, where a graph walk would have to visit
        // most of the graph.
        let allowed = self.allowed.get(restriction, &self.keys);
        let (points, fraction) = self.exact_fallback;
        let small =
            allowed.len() <= points || (allowed.len() as f64) <= fraction * self.keys.len() as f64;
        Ok(if options.exact || small {
            self.index.exact_among(query, options.k, allowed.iter())?
        } else {
            let test = |key: u64| allowed.contains(key);
            self.index
                .search(query, options.k, options.ef, Some(&test))?
        })
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
        let key = keys.assign(&entry.id, held[i].1.shard);
        keys.set_metadata(key, entry.meta);
        chunk.push((key, entry.vec));
        if chunk.len() == BUILD_CHUNK {
            index.add_stored(std::mem::take(&mut chunk), threads, &added)?;
        }
    }
    if !chunk.is_empty() {
        index.add_stored(chunk, threads, &added)?;
    }
    Ok((index, keys))
}
