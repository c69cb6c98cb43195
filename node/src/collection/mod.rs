//! Collections: named sets of points split into hash-range shards, each shard a tree.
//!
//! A write validates the whole batch first (nothing is stored from a rejected batch), applies it
//! to the shard trees, writes a new manifest whose `prev` is the old one, pins it, and replaces
//! the signed head file. The HNSW index is derived: it is updated in memory with each write,
//! saved on close next to the manifest CID it reflects, and rebuilt from the trees whenever
//! that CID is not the current one.
//!
//! # Layout
//! - [`Collection`]: one open collection.
//! - [`catalog`]: the collections folder of a repository.
//! - [`points`]: points as users give them, and their validation.
//! - [`quantize`]: stored vector encodings.
//! - [`cache`]: the saved index and its key map.

pub mod cache;
pub mod catalog;
pub mod filter;
pub mod history;
pub mod points;
pub mod quantize;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{
    cid::DAG_CBOR,
    dagcbor,
    entry::{Entry, EntryId},
    head::{collection_id, public_key_bytes, HeadRecord},
    hlc::HlcClock,
    manifest::{shard_of, shard_range, HnswParams, Manifest, Metric, Quantization, ShardRoot},
    Ipld, ProtocolError,
};
use libp2p_identity::Keypair;

use crate::{
    index::{HnswIndex, IndexError, IndexSpec, VectorIndex},
    store::{BlockStore, StoreError},
    tree::{self, Edit, TreeError},
};
pub use filter::{CompiledFilter, Filter};
pub use points::Point;

/// Filtered searches fall back to exact search over the matching points when at most this many
/// match, or at most [`EXACT_FALLBACK_FRACTION`] of the collection.
pub const EXACT_FALLBACK_POINTS: usize = 2_000;
/// See [`EXACT_FALLBACK_POINTS`].
pub const EXACT_FALLBACK_FRACTION: f64 = 0.02;

/// Errors of the collection layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionError {
    /// No collection has that name.
    #[error("no collection named {0:?}; `ipvec collection list` shows the collections")]
    NotFound(String),
    /// A collection with that name exists.
    #[error("a collection named {0:?} already exists; pick another name or drop it first")]
    Exists(String),
    /// A request or setting is invalid.
    #[error("{0}")]
    Invalid(String),
    /// One point of a batch is invalid; nothing of the batch was stored.
    #[error("point {position} (id {id}): {reason}; nothing from this batch was stored")]
    BadPoint {
        position: usize,
        id: String,
        reason: String,
    },
    /// The tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The collection was imported without its owner key.
    #[error("collection {0:?} is read-only here: it was imported, and only its owner's node can write to it")]
    ReadOnly(String),
    /// A block or record broke the format.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CollectionError + '_ {
    move |source| CollectionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The settings a collection is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSpec {
    /// Name, unique in the repository: letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Similarity metric.
    pub metric: Metric,
    /// Storage quantization.
    pub quantization: Quantization,
    /// HNSW parameters.
    pub hnsw: HnswParams,
    /// Number of hash-range shards.
    pub shards: u32,
}

impl CollectionSpec {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), CollectionError> {
        catalog::check_name(&self.name)?;
        let max = ipvec_protocol::limits::MAX_DIMENSION as u32;
        if self.dimension == 0 || self.dimension > max {
            return Err(CollectionError::Invalid(format!(
                "--dim must be between 1 and {max}"
            )));
        }
        quantize::check_pairing(self.metric, self.quantization)?;
        if !(2..=256).contains(&self.hnsw.m) {
            return Err(CollectionError::Invalid(
                "--m must be between 2 and 256".into(),
            ));
        }
        if self.hnsw.ef_construction < self.hnsw.m || self.hnsw.ef_search == 0 {
            return Err(CollectionError::Invalid(
                "--ef-construction must be at least --m, and --ef-search at least 1".into(),
            ));
        }
        if !(1..=4096).contains(&self.shards) {
            return Err(CollectionError::Invalid(
                "--shards must be between 1 and 4096".into(),
            ));
        }
        Ok(())
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The point id.
    pub id: EntryId,
    /// Score; higher is better.
    pub score: f32,
    /// Metadata, if any.
    pub metadata: Option<Ipld>,
    /// The tree leaf that holds the point's vector.
    pub leaf: Cid,
}

/// How a search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchOptions {
    /// Number of hits.
    pub k: usize,
    /// HNSW candidate list size (default: the collection's ef_search).
    pub ef: Option<usize>,
    /// Exact (brute-force) search instead of HNSW.
    pub exact: bool,
}

/// Counts reported after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteReport {
    /// Points written or deleted.
    pub changed: u64,
    /// Live points after the write.
    pub points: u64,
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An open collection.
pub struct Collection<S> {
    store: S,
    dir: PathBuf,
    /// The owner key; `None` for a collection imported from elsewhere (read-only).
    owner: Option<Keypair>,
    head: HeadRecord,
    manifest: Manifest,
    shards: Vec<ShardRoot>,
    index: HnswIndex,
    keys: cache::KeyMap,
    clock: HlcClock,
    /// Whether the in-memory index differs from the saved cache.
    index_dirty: bool,
    /// When a filtered search scores the matching points exactly: (points, fraction).
    exact_fallback: (usize, f64),
}

impl<S> std::fmt::Debug for Collection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.manifest.name)
            .field("manifest", &self.head.manifest)
            .finish()
    }
}

impl<S: BlockStore> Collection<S> {
    /// Creates a collection in `dir` (which must not exist): a fresh owner key, empty shards.
    pub async fn create(
        store: S,
        dir: &Path,
        spec: &CollectionSpec,
    ) -> Result<Self, CollectionError> {
        spec.validate()?;
        let owner = Keypair::generate_ed25519();
        let owner_pk = public_key_bytes(&owner)?;
        let empty = tree::build(&store, Vec::new()).await?;
        let mut shard_cids = Vec::new();
        let mut shards = Vec::new();
        for shard in 0..spec.shards {
            let root = ShardRoot {
                shard,
                range: shard_range(shard, spec.shards),
                points: 0,
                tree: empty,
                index: None,
            };
            shard_cids.push(
                store
                    .put(DAG_CBOR, Bytes::from(dagcbor::encode(&root)?))
                    .await?,
            );
            shards.push(root);
        }
        let now = now_millis();
        let manifest = Manifest {
            format: 1,
            name: spec.name.clone(),
            owner: owner_pk.to_vec(),
            dimension: spec.dimension,
            metric: spec.metric,
            quantization: spec.quantization,
            hnsw: spec.hnsw,
            replication: 1,
            writers: vec![serde_bytes::ByteBuf::from(owner_pk.to_vec())],
            shards: shard_cids,
            prev: None,
            created: now,
            updated: now,
            points: 0,
        };
        manifest.validate()?;
        let manifest_cid = store
            .put(DAG_CBOR, Bytes::from(dagcbor::encode(&manifest)?))
            .await?;
        let head = HeadRecord::sign(owner_pk, 1, manifest_cid, &owner)?;
        catalog::write_new(dir, Some(&owner), &head)?;
        store.pin_as(&pin_name(&spec.name), &manifest_cid).await?;
        store.flush().await?;
        let index = HnswIndex::new(index_spec(&manifest))?;
        let mut this = Self {
            store,
            dir: dir.to_path_buf(),
            owner: Some(owner),
            head,
            manifest,
            shards,
            index,
            keys: cache::KeyMap::default(),
            clock: HlcClock::default(),
            index_dirty: true,
            exact_fallback: (EXACT_FALLBACK_POINTS, EXACT_FALLBACK_FRACTION),
        };
        this.save_index()?;
        Ok(this)
    }

    /// Registers a collection from a signed head whose DAG is already in the store (as after a
    /// CAR import). Without the owner key it is read-only.
    pub async fn adopt(store: S, dir: &Path, head: HeadRecord) -> Result<Self, CollectionError> {
        let manifest: Manifest = dagcbor::decode(&store.require(&head.manifest).await?)?;
        manifest.validate()?;
        let writers: Vec<&[u8]> = manifest.writers.iter().map(|w| w.as_slice()).collect();
        head.verify(&writers)?;
        if head.collection != manifest.owner {
            return Err(CollectionError::Invalid(
                "the head names another collection than its manifest".into(),
            ));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        store.pin_as(&pin_name(&name), &head.manifest).await?;
        catalog::write_new(dir, None, &head)?;
        store.flush().await?;
        Self::open(store, dir).await
    }

    /// The name the collection is registered under here (its folder name).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether this node holds the owner key and can write.
    pub fn writable(&self) -> bool {
        self.owner.is_some()
    }

    /// Opens the collection in `dir`, loading its index cache or rebuilding the index.
    pub async fn open(store: S, dir: &Path) -> Result<Self, CollectionError> {
        let (owner, head) = catalog::read(dir)?;
        let manifest: Manifest = dagcbor::decode_trusted(&store.require(&head.manifest).await?)?;
        let writers: Vec<&[u8]> = manifest.writers.iter().map(|w| w.as_slice()).collect();
        head.verify(&writers)?;
        let mut shards = Vec::new();
        for cid in &manifest.shards {
            shards.push(dagcbor::decode_trusted::<ShardRoot>(
                &store.require(cid).await?,
            )?);
        }
        let spec = index_spec(&manifest);
        let (index, keys, dirty) = match cache::load(dir, spec, &head.manifest) {
            Some((index, keys)) => (index, keys, false),
            None => {
                let (index, keys) = rebuild_index(&store, spec, &shards).await?;
                (index, keys, true)
            }
        };
        let mut clock = HlcClock::default();
        clock.observe(ipvec_protocol::hlc::Hlc::new(manifest.updated, 0));
        Ok(Self {
            store,
            dir: dir.to_path_buf(),
            owner,
            head,
            manifest,
            shards,
            index,
            keys,
            clock,
            index_dirty: dirty,
            exact_fallback: (EXACT_FALLBACK_POINTS, EXACT_FALLBACK_FRACTION),
        })
    }

    /// The current manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The current manifest's CID (the collection's root at this version).
    pub fn root(&self) -> Cid {
        self.head.manifest
    }

    /// The current signed head.
    pub fn head(&self) -> &HeadRecord {
        &self.head
    }

    /// The collection id: the owner key as a peer id.
    pub fn id(&self) -> Result<String, CollectionError> {
        Ok(collection_id(&self.manifest.owner)?)
    }

    /// Bytes of memory the index holds.
    pub fn index_memory(&self) -> usize {
        self.index.memory_bytes()
    }

    fn owner(&self) -> Result<&Keypair, CollectionError> {
        self.owner
            .as_ref()
            .ok_or_else(|| CollectionError::ReadOnly(self.manifest.name.clone()))
    }

    fn writer(&self) -> Result<[u8; 32], CollectionError> {
        Ok(public_key_bytes(self.owner()?)?)
    }

    /// Inserts or replaces points. The whole batch is checked before anything is written.
    pub async fn upsert(&mut self, points: Vec<Point>) -> Result<WriteReport, CollectionError> {
        let dimension = self.manifest.dimension as usize;
        let prepared = points::prepare(points, dimension)?;
        let hlc = self.clock.tick(now_millis());
        let writer = self.writer()?;
        let mut entries = Vec::with_capacity(prepared.len());
        for (position, p) in prepared.iter().enumerate() {
            let vec = quantize::encode(self.manifest.quantization, &p.vector);
            let entry = Entry::put(p.key.clone(), vec, p.metadata.clone(), hlc, writer);
            entry
                .encode_checked()
                .map_err(|e| CollectionError::BadPoint {
                    position,
                    id: p.key.id().to_string(),
                    reason: e.to_string(),
                })?;
            entries.push(entry);
        }
        let changed = entries.len() as u64;
        self.commit(entries.into_iter().map(Edit::Put).collect())
            .await?;
        for p in &prepared {
            let key = self.keys.assign(&p.key);
            self.keys.set_metadata(key, p.metadata.clone());
            // Index what readers of the tree will see: the stored (possibly quantized) vector.
            let stored = quantize::decode(
                self.manifest.quantization,
                &quantize::encode(self.manifest.quantization, &p.vector),
            );
            self.index.upsert(key, &stored)?;
        }
        self.index_dirty = true;
        Ok(WriteReport {
            changed,
            points: self.manifest.points,
        })
    }

    /// Deletes points by id; ids that are not present are skipped. Returns how many went.
    pub async fn delete(&mut self, ids: &[EntryId]) -> Result<WriteReport, CollectionError> {
        let hlc = self.clock.tick(now_millis());
        let writer = self.writer()?;
        let mut keys = Vec::new();
        for id in ids {
            let key = id.to_key()?;
            if self.keys.get(&key).is_some() && !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Ok(WriteReport {
                changed: 0,
                points: self.manifest.points,
            });
        }
        self.commit(
            keys.iter()
                .map(|k| Edit::Put(Entry::tombstone(k.clone(), hlc, writer)))
                .collect(),
        )
        .await?;
        for key in &keys {
            if let Some(k) = self.keys.remove(key) {
                self.index.remove(k)?;
            }
        }
        self.index_dirty = true;
        Ok(WriteReport {
            changed: keys.len() as u64,
            points: self.manifest.points,
        })
    }

    /// Applies edits to the shard trees and publishes a new version.
    async fn commit(&mut self, edits: Vec<Edit>) -> Result<(), CollectionError> {
        let shard_count = self.shards.len() as u32;
        // Edits per shard, and how each shard's live count moves.
        let mut by_shard: HashMap<u32, (Vec<Edit>, i64)> = HashMap::new();
        for edit in edits {
            let Edit::Put(entry) = &edit else { continue };
            let delta = match (self.keys.get(&entry.id).is_some(), entry.deleted) {
                (false, false) => 1,
                (true, true) => -1,
                _ => 0,
            };
            let slot = by_shard
                .entry(shard_of(&entry.id, shard_count))
                .or_default();
            slot.1 += delta;
            slot.0.push(edit);
        }
        let live_delta: i64 = by_shard.values().map(|(_, d)| d).sum();
        let mut shard_cids = self.manifest.shards.clone();
        let mut shards = self.shards.clone();
        for (shard, (edits, delta)) in by_shard {
            let root = &mut shards[shard as usize];
            let (tree, _) = tree::apply(&self.store, root.tree, edits).await?;
            root.tree = tree;
            root.points = (root.points as i64 + delta).max(0) as u64;
            shard_cids[shard as usize] = self
                .store
                .put(DAG_CBOR, Bytes::from(dagcbor::encode(root)?))
                .await?;
        }
        let old = self.head.manifest;
        let mut manifest = self.manifest.clone();
        manifest.shards = shard_cids;
        manifest.prev = Some(old);
        manifest.updated = now_millis().max(manifest.updated);
        manifest.points = (manifest.points as i64 + live_delta).max(0) as u64;
        let manifest_cid = self
            .store
            .put(DAG_CBOR, Bytes::from(dagcbor::encode(&manifest)?))
            .await?;
        let head = HeadRecord::sign(
            self.writer()?,
            self.head.seq + 1,
            manifest_cid,
            self.owner()?,
        )?;
        // Durable order: blocks, then the pin moves to the new manifest (which links the old
        // one), then the head file.
        self.store
            .pin_as(&pin_name(&self.name()), &manifest_cid)
            .await?;
        self.store.flush().await?;
        catalog::write_head(&self.dir, &head)?;
        self.head = head;
        self.manifest = manifest;
        self.shards = shards;
        Ok(())
    }

    /// The point with `id`, and the CID of its leaf; `None` if absent or deleted.
    pub async fn get(&self, id: &EntryId) -> Result<Option<(Entry, Cid)>, CollectionError> {
        let key = id.to_key()?;
        let shard = shard_of(&key, self.shards.len() as u32) as usize;
        Ok(tree::get(&self.store, &self.shards[shard].tree, &key)
            .await?
            .filter(|(e, _)| !e.deleted))
    }

    /// The vector of a stored entry, as f32.
    pub fn vector_of(&self, entry: &Entry) -> Vec<f32> {
        quantize::decode(self.manifest.quantization, &entry.vec)
    }

    /// The `k` best points for `query` among those `filter` accepts.
    ///
    /// A filter is evaluated once per point into a key set, which the HNSW walk then consults;
    /// when few points match (see [`EXACT_FALLBACK_POINTS`]) the matching points are scored
    /// exactly instead, where a graph walk would have to visit most of the graph to find them.
    pub async fn search(
        &self,
        query: &[f32],
        options: SearchOptions,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        crate::index::check_vector(query, self.manifest.dimension as usize)?;
        let hits = match filter {
            None if options.exact => self.index.exact(query, options.k)?,
            None => self.index.search(query, options.k, options.ef, None)?,
            Some(filter) => {
                let allowed: std::collections::HashSet<u64> = self
                    .keys
                    .iter()
                    .filter(|(_, id, meta)| filter.test(id, *meta))
                    .map(|(k, _, _)| k)
                    .collect();
                let (points, fraction) = self.exact_fallback;
                let small = allowed.len() <= points
                    || (allowed.len() as f64) <= fraction * self.keys.len() as f64;
                if options.exact || small {
                    self.exact_among(query, options.k, &allowed)
                } else {
                    let test = |key: u64| allowed.contains(&key);
                    self.index
                        .search(query, options.k, options.ef, Some(&test))?
                }
            }
        };
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            let Some(id) = self.keys.id_of(hit.key) else {
                continue;
            };
            let shard = shard_of(id, self.shards.len() as u32) as usize;
            let leaf = tree::locate(&self.store, &self.shards[shard].tree, id).await?;
            out.push(SearchHit {
                id: id.id(),
                score: hit.score,
                metadata: self.keys.metadata(hit.key).cloned(),
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

    /// Scores every key of `allowed` exactly.
    fn exact_among(
        &self,
        query: &[f32],
        k: usize,
        allowed: &std::collections::HashSet<u64>,
    ) -> Vec<crate::index::Hit> {
        let metric = self.manifest.metric;
        let mut hits: Vec<crate::index::Hit> = allowed
            .iter()
            .filter_map(|key| {
                self.index.vector(*key).map(|v| crate::index::Hit {
                    key: *key,
                    score: crate::index::score(metric, query, &v),
                })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.key.cmp(&b.key)));
        hits.truncate(k);
        hits
    }

    /// Exact search of an older version (a manifest CID from [`history::versions`]).
    pub async fn search_at(
        &self,
        at: &Cid,
        query: &[f32],
        k: usize,
        filter: Option<&CompiledFilter>,
    ) -> Result<Vec<SearchHit>, CollectionError> {
        history::search_at(&self.store, &self.manifest.owner, at, query, k, filter).await
    }

    /// This collection's versions, newest first.
    pub async fn versions(&self) -> Result<Vec<(Cid, Manifest)>, CollectionError> {
        history::versions(&self.store, self.root()).await
    }

    fn save_index(&mut self) -> Result<(), CollectionError> {
        if self.index_dirty {
            cache::save(&self.dir, &self.index, &self.keys, &self.head.manifest)?;
            self.index_dirty = false;
        }
        Ok(())
    }

    /// Saves the index cache and closes the collection.
    pub async fn close(mut self) -> Result<(), CollectionError> {
        self.save_index()?;
        self.store.flush().await?;
        Ok(())
    }
}

/// The name of the pin that keeps the collection registered as `name` (its folder name).
pub fn pin_name(name: &str) -> String {
    format!("collection:{name}")
}

fn index_spec(manifest: &Manifest) -> IndexSpec {
    IndexSpec {
        dimension: manifest.dimension as usize,
        metric: manifest.metric,
        quantization: manifest.quantization,
        hnsw: manifest.hnsw,
    }
}

/// Builds the index from the shard trees: the trees are the truth.
async fn rebuild_index<S: BlockStore>(
    store: &S,
    spec: IndexSpec,
    shards: &[ShardRoot],
) -> Result<(HnswIndex, cache::KeyMap), CollectionError> {
    let mut index = HnswIndex::new(spec)?;
    index.reserve(
        shards
            .iter()
            .map(|s| s.points as usize)
            .sum::<usize>()
            .max(1),
    )?;
    let mut keys = cache::KeyMap::default();
    for shard in shards {
        let mut scan = tree::range(
            store,
            shard.tree,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
        );
        while let Some((entry, _)) = scan.next().await? {
            if entry.deleted {
                continue;
            }
            let key = keys.assign(&entry.id);
            keys.set_metadata(key, entry.meta.clone());
            index.upsert(key, &quantize::decode(spec.quantization, &entry.vec))?;
        }
    }
    Ok((index, keys))
}

#[cfg(test)]
mod tests;
