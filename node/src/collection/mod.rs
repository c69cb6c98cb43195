//! Collections: named sets of points split into hash-range shards, each shard a tree
//! ([`shard`]). A collection owns the manifest, the signed head, the write-ahead log and the
//! writer keys, the shards held here — all of them, or some for a partial replica
//! ([`Collection::adopt_shards`], [`Collection::coverage`]) — and one index over the points
//! of every held shard ([`held_index`]), which searches of all or some of them share.
//!
//! A write validates the whole batch first (nothing is stored from a rejected batch), appends
//! it to the write-ahead log and returns once the log is synced; the index sees it then.
//! Checkpoints (on close, or when the log grows large) apply the logged writes to the shard
//! trees, write a new manifest whose `prev` is the old one, move the collection's pin to it and
//! replace the signed head file, which records the last log record the trees hold. Writes and
//! checkpoints run in steps so that a collection shared behind a read/write lock answers
//! searches while they wait for an fsync or build trees ([`shared`]). The HNSW index is
//! derived: saved on close tagged with the held shards' root CIDs it reflects, and rebuilt
//! from their trees whenever that tag is not the current one.
//!
//! # Layout
//! - [`Collection`]: one open collection.
//! - [`shard`]: one shard held here ([`LocalShard`]) and the seam every shard is used
//!   through ([`Shard`]); [`merge`]: the merge of shards' answers.
//! - [`held_index`]: the one HNSW index of the held shards' points.
//! - [`catalog`]: the collections folder of a repository.
//! - [`points`]: points as users give them, and their validation.
//! - [`quantize`]: stored vector encodings.
//! - [`cache`]: the saved index and its key map.
//! - [`allowed`]: the points a filter and a set of shards allow, as a bitset, cached.
//! - [`wal`]: the write-ahead log with group commit.
//! - `open`: creating, registering, opening and advancing a collection.
//! - `write`: upserts and deletes; `checkpoint`: checkpoints; `search`: reads and searches.
//! - [`shared`]: writes and checkpoints on a collection shared behind a read/write lock.
//! - [`filter`]: the filter language; [`history`]: old versions.
//! - [`writers`]: the keys allowed to publish versions, changed by the owner; `merging`:
//!   following and merging several writers' versions.

pub mod allowed;
pub mod cache;
pub mod catalog;
pub mod checkpoint;
pub mod filter;
pub mod held_index;
pub mod history;
pub mod merge;
mod merging;
mod open;
pub mod points;
pub mod quantize;
mod search;
pub mod shard;
pub mod shared;
pub mod snapshot;
pub mod wal;
mod write;
pub mod writers;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use cid::Cid;
use ipvec_protocol::{
    cid as pcid, dagcbor,
    entry::{Entry, EntryId},
    head::{collection_id, public_key_bytes, HeadRecord},
    manifest::{HnswParams, Manifest, Metric, Quantization, ShardRoot},
    ProtocolError,
};
use libp2p_identity::Keypair;

use crate::{
    index::{DuplicateStats, IndexError, IndexSpec},
    store::{BlockStore, StoreError},
    tree::TreeError,
};
pub use cache::PackedMetadata;
pub use filter::{CompiledFilter, Filter};
pub use held_index::{FilterPath, FilterPlan, HeldIndex, IndexSource};
pub use open::{check_held, read_roots, PreparedHeld};
pub use points::Point;
pub use shard::{HeldShard, LocalShard, OpenProgress, Shard, ShardInfo};
pub use write::Staged;

/// Filtered searches fall back to exact search over the matching points when at most this many
/// match, or at most [`EXACT_FALLBACK_FRACTION`] of the collection (a tenth of each when the
/// matching points are spread over the graph, see [`Collection::filter_plan`]). Scoring a point exactly
/// costs about 0.3–0.6 µs at 784 f32 dimensions (memory-bound) and finds every answer. The
/// graph walk of the matching points is faster (on Fashion-MNIST, 6,000 matches of one class:
/// four times the exact speed at ef 64), but a set that follows the vectors keeps some of its
/// points out of the walk's reach, and its recall stops near 0.95 (docs/benchmarks.md).
pub const EXACT_FALLBACK_POINTS: usize = 10_000;
/// Largest replication factor a collection can ask for (the DHT returns at most 20
/// providers of a key, libp2p's K).
pub const MAX_REPLICATION: u32 = 20;
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
    /// The shard of a point is not held here.
    #[error(
        "{what} is in shard {shard} of collection {name:?}, which this node does not hold (it holds \
         shards {held}); ask a peer that holds it, or fetch the collection with that shard \
         (`ipvec fetch ID --shards {shard}`)"
    )]
    ShardNotHeld {
        name: String,
        what: String,
        shard: u32,
        held: String,
    },
    /// The collection was imported without its owner key.
    #[error("collection {0:?} is read-only here: it was imported, and only its owner's node can write to it")]
    ReadOnly(String),
    /// A block or record broke the format.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A file could not be read or written.
    #[error("cannot read or write {path}: {source}; check that the repository is writable and its disk has space")]
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
    /// For a text collection, the model its vectors come from (recorded in the manifest).
    pub embedding: Option<ipvec_protocol::manifest::EmbeddingModel>,
    /// Similarity metric.
    pub metric: Metric,
    /// Storage quantization.
    pub quantization: Quantization,
    /// HNSW parameters.
    pub hnsw: HnswParams,
    /// Number of hash-range shards.
    pub shards: u32,
    /// Replicas each shard should have (the manifest's replication factor, this node
    /// included), which `collection info` compares with the providers the DHT names.
    pub replication: u32,
}

/// The largest `ef_construction` and `ef_search` a collection may set (each search and
/// insert keeps candidate lists of this size).
pub const MAX_EF: u32 = 10_000;

impl CollectionSpec {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), CollectionError> {
        catalog::check_new_name(&self.name)?;
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
        if self.hnsw.ef_construction > MAX_EF || self.hnsw.ef_search > MAX_EF {
            return Err(CollectionError::Invalid(format!(
                "--ef-construction and --ef-search must be at most {MAX_EF}"
            )));
        }
        if self.hnsw.codes && (self.quantization != Quantization::F32 || self.metric == Metric::Dot)
        {
            return Err(CollectionError::Invalid(
                "--codes needs f32 vectors under the l2 or cosine metric (codes of unit \
                 vectors do not keep inner products in order); leave it out, or choose \
                 --quantization f32 and another --metric"
                    .into(),
            ));
        }
        if !(1..=4096).contains(&self.shards) {
            return Err(CollectionError::Invalid(
                "--shards must be between 1 and 4096".into(),
            ));
        }
        if !(1..=MAX_REPLICATION).contains(&self.replication) {
            return Err(CollectionError::Invalid(format!(
                "--replication must be between 1 and {MAX_REPLICATION}"
            )));
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
    /// Metadata, if any, as the point's canonical DAG-CBOR: decoded where it is read
    /// ([`PackedMetadata::unpack`]), which costs more than the rest of a hit's resolution
    /// and is left to the callers that use it.
    pub metadata: Option<PackedMetadata>,
    /// The tree leaf that holds the point's vector; `None` while the write is only in the log.
    pub leaf: Option<Cid>,
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
    /// The key this node signs versions with: the owner's, or a writer's the manifest lists;
    /// `None` where this node does not write (a replica, an imported collection).
    owner: Option<Keypair>,
    /// The head this node is at: its own newest, where it writes; else the newest it merged.
    head: HeadRecord,
    /// The newest head of each writer whose version is merged here, by writer key.
    heads: BTreeMap<Vec<u8>, HeadRecord>,
    /// The CID of `manifest`: the head's, or a merge's that no head names.
    at: Cid,
    manifest: Manifest,
    /// Every shard's committed root, held here or not.
    roots: Vec<ShardRoot>,
    /// The shards held here, by number: all of them, or some for a partial replica.
    held: BTreeMap<u32, LocalShard<S>>,
    /// The index of the held shards' points.
    index: HeldIndex,
    /// The clock and the logged writes not yet applied.
    staging: std::sync::Mutex<write::Staging>,
    /// Held by the writer applying staged writes ([`shared`]): one at a time.
    applier: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The last log record applied: every earlier one is in the index (and pending or in the
    /// trees).
    applied: u64,
    /// Checkpoints take turns.
    checkpoint_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Test hook: a checkpoint stops before building trees until the test lets it go.
    #[cfg(test)]
    checkpoint_pause: std::sync::Arc<std::sync::Mutex<Option<tests::pause::Pause>>>,
    /// The write-ahead log.
    wal: std::sync::Arc<wal::Wal>,
    /// The collection was dropped: see [`Collection::retire`].
    retired: bool,
    /// When checkpoints publish index snapshots (`None`: never; versions then name none).
    publishing: Option<snapshot::Publishing>,
    /// Threads a write inserts its vectors into the graph from ([`Collection::set_write_threads`]).
    write_threads: usize,
    /// Entries committed since the snapshot the current version names (`None`: it names
    /// none). Counted from this process's start: a node that restarts counts from 0.
    since_snapshot: Option<u64>,
    /// The last applied log record the daemon's commit tick saw ([`Collection::quiet_since_asked`]).
    quiet_mark: std::sync::atomic::AtomicU64,
    /// What searches see, as a number no other state of any collection has had in this
    /// process ([`Collection::search_state`]).
    generation: u64,
}

impl<S> std::fmt::Debug for Collection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.manifest.name)
            .field("manifest", &self.at)
            .finish()
    }
}

impl<S: BlockStore> Collection<S> {
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

    /// Live points of every shard (held here or not), counting writes still in the log.
    pub fn points(&self) -> u64 {
        let pending: i64 = self.held.values().map(|s| s.pending_delta).sum();
        (self.manifest.points as i64 + pending).max(0) as u64
    }

    /// Live points of each shard, counting writes still in the log (as of the last version
    /// for a shard not held here).
    pub fn shard_points(&self) -> Vec<u64> {
        self.roots
            .iter()
            .map(|root| match self.held.get(&root.shard) {
                Some(shard) => shard.points(),
                None => root.points,
            })
            .collect()
    }

    /// The shards held here, in order.
    pub fn held_shards(&self) -> Vec<u32> {
        self.held.keys().copied().collect()
    }

    /// Where the index came from when the collection opened.
    pub fn index_source(&self) -> IndexSource {
        self.index.source
    }

    /// Publishes index snapshots at checkpoints as `publishing` says (`None`: none, and the
    /// next version names none).
    pub fn set_publishing(&mut self, publishing: Option<snapshot::Publishing>) {
        self.publishing = publishing;
    }

    /// Writes insert their vectors into the graph from `threads` threads at once (at least
    /// one; one by default). Each slice of a write's entries is inserted together, and the
    /// inserts usearch's concurrent adds leave unreachable are made again from one thread
    /// ([`HnswIndex::cut_off`](crate::index::HnswIndex::cut_off)), so every point stays
    /// findable; the graph then depends on how the threads interleave.
    pub fn set_write_threads(&mut self, threads: usize) {
        self.write_threads = threads.max(1);
    }

    /// The threads writes insert from ([`Collection::set_write_threads`]).
    pub fn write_threads(&self) -> usize {
        self.write_threads
    }

    /// Where this node writes the collection: entries committed since the snapshot the
    /// current version names (`None`: no snapshot, or not known since this process started).
    pub fn snapshot_lag(&self) -> Option<u64> {
        self.since_snapshot.filter(|_| self.writable())
    }

    /// The index snapshot the current version names, if any.
    pub fn published_snapshot(&self) -> Option<Cid> {
        snapshot::named(&self.roots)
    }

    /// Whether every shard is held here.
    pub fn holds_all(&self) -> bool {
        self.held.len() == self.roots.len()
    }

    /// Pins version `manifest_cid` (`manifest`) for what this node holds of it
    /// ([`pin_version`]).
    async fn pin_version(
        &self,
        manifest_cid: &Cid,
        manifest: &Manifest,
    ) -> Result<(), CollectionError> {
        let held = (!self.holds_all()).then(|| self.held_shards());
        pin_version(
            &self.store,
            &self.name(),
            manifest_cid,
            manifest,
            held.as_deref(),
        )
        .await
    }

    /// What a search here covers: the shards held, of how many.
    pub fn coverage(&self) -> Coverage {
        Coverage {
            shards: self.roots.len() as u32,
            searched: self.held_shards(),
        }
    }

    /// The held shard `number`, searched through the index of the held shards.
    pub fn shard(&self, number: u32) -> Option<HeldShard<'_, S>> {
        Some(HeldShard {
            held: &self.held,
            shard: self.held.get(&number)?,
            index: &self.index,
        })
    }

    /// The held shards, in order.
    pub fn shards(&self) -> impl Iterator<Item = &LocalShard<S>> + '_ {
        self.held.values()
    }

    /// The current manifest (of the last checkpoint).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The current manifest's CID (the collection's root at this version).
    pub fn root(&self) -> Cid {
        self.at
    }

    /// The collection's folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// What a search here answers from: the root and a generation that changes with every
    /// change searches could see, acknowledged writes still in the log among them. Two
    /// searches that find the same state (and ask the same) get the same answer, which is
    /// what lets the node cache answers by it with no invalidation.
    ///
    /// Why a change cannot be missed: what searches read (the index, its key map, the held
    /// shards, head, manifest and roots) changes only through `&mut self` (a graph insert
    /// made beside searches stays hidden from them until it is placed, which takes `&mut`),
    /// and each `&mut` method that changes it takes a new generation ([`Collection::changed`]):
    /// the applying of logged writes, a checkpoint put in effect, a version followed, the
    /// exact-search fallback set. An instance opened anew (another set of held shards, a
    /// reopening) starts with a new one too.
    pub fn search_state(&self) -> (Cid, u64) {
        (self.at, self.generation)
    }

    /// Takes a new generation: what searches see has changed.
    fn changed(&mut self) {
        self.generation = next_generation();
    }

    /// Shard `number`'s root as of this node's version (held here or not).
    pub fn shard_root(&self, number: u32) -> Option<&ShardRoot> {
        self.roots.get(number as usize)
    }

    /// The current signed head.
    pub fn head(&self) -> &HeadRecord {
        &self.head
    }

    /// The collection id: the owner key as a peer id.
    pub fn id(&self) -> Result<String, CollectionError> {
        Ok(collection_id(&self.manifest.owner)?)
    }

    /// Bytes of memory the index of the held shards holds.
    pub fn index_memory(&self) -> usize {
        self.index.memory_bytes()
    }

    /// The HNSW index of the held shards' points, for benchmarks that tell the graph's cost
    /// from the collection's around it.
    #[doc(hidden)]
    pub fn hnsw(&self) -> &crate::index::HnswIndex {
        &self.index.index
    }

    /// Points whose vector the index stores once for several points, and the bytes saved.
    pub fn duplicate_stats(&self) -> DuplicateStats {
        self.index.duplicate_stats()
    }

    /// The held shards' root block CIDs and roots, in shard order.
    fn held_roots(&self) -> Vec<(Cid, ShardRoot)> {
        self.held
            .keys()
            .map(|&n| {
                (
                    self.manifest.shards[n as usize],
                    self.roots[n as usize].clone(),
                )
            })
            .collect()
    }

    fn owner(&self) -> Result<&Keypair, CollectionError> {
        self.owner
            .as_ref()
            .ok_or_else(|| CollectionError::ReadOnly(self.manifest.name.clone()))
    }

    fn writer(&self) -> Result<[u8; 32], CollectionError> {
        Ok(public_key_bytes(self.owner()?)?)
    }

    /// The vector of a stored entry, as f32.
    pub fn vector_of(&self, entry: &Entry) -> Vec<f32> {
        quantize::decode(self.manifest.quantization, &entry.vec)
    }

    /// Saves the index when it changed, tagged with the held shards' roots.
    fn save_index(&mut self) -> Result<(), CollectionError> {
        if self.retired {
            return Ok(());
        }
        let held = self.held_roots();
        self.index.save(&self.dir, &held)
    }

    /// Commits pending writes to the trees, saves the index cache and flushes the store; the
    /// collection stays open (what [`Collection::close`] does, for a shared collection).
    pub async fn sync(&mut self) -> Result<(), CollectionError> {
        self.checkpoint().await?;
        self.save_index()?;
        self.store.flush().await?;
        Ok(())
    }

    /// Commits pending writes to the trees, saves the index cache and closes the collection.
    pub async fn close(mut self) -> Result<(), CollectionError> {
        self.sync().await
    }

    /// Bytes in the write-ahead log (acknowledged writes not yet in the trees).
    pub fn wal_bytes(&self) -> u64 {
        self.wal.bytes()
    }

    /// Marks the collection dropped (its folder is gone or going): later writes fail with
    /// [`CollectionError::NotFound`], and nothing is written to its folder or pinned again,
    /// so a request that held it while it was dropped cannot bring part of it back, nor touch
    /// a new collection of the same name. Reads still answer from memory.
    pub fn retire(&mut self) {
        self.retired = true;
    }

    /// Refuses a change to a retired collection.
    fn check_live(&self) -> Result<(), CollectionError> {
        if self.retired {
            return Err(CollectionError::NotFound(self.name()));
        }
        Ok(())
    }
}

/// A generation no collection has had in this process ([`Collection::search_state`]).
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The name of the pins that keep the collection registered as `name` (its folder name).
pub fn pin_name(name: &str) -> String {
    format!("collection:{name}")
}

/// Pins version `manifest_cid` of collection `name` (whose shard roots are `manifest.shards`)
/// so that garbage collection keeps what this node holds of it. A node holding every shard
/// keeps all of it, history included: a recursive pin of the manifest. A partial replica
/// (`held`: its shards) keeps the manifest and every shard root (a shallow pin of a list of
/// them: of the manifest itself, it would also want the previous version, which a partial
/// replica does not fetch) and the trees of the shards it holds (a recursive pin of a list
/// of their roots); both lists are blocks of this store's own. The blocks of a shard it
/// drops, or of an older version, can go.
async fn pin_version<S: BlockStore>(
    store: &S,
    name: &str,
    manifest_cid: &Cid,
    manifest: &Manifest,
    held: Option<&[u32]>,
) -> Result<(), CollectionError> {
    let pin = pin_name(name);
    match held {
        None => {
            store.pin_as(&pin, manifest_cid).await?;
            store.unpin_shallow_name(&pin).await?;
            snapshot::pin(store, &snapshot::pin_name(&pin), manifest).await?;
        }
        Some(held) => {
            let roots: Vec<Cid> = held
                .iter()
                .filter_map(|s| manifest.shards.get(*s as usize).copied())
                .collect();
            let list = |cids: &[Cid]| {
                Ok::<_, CollectionError>(bytes::Bytes::from(dagcbor::encode(&cids)?))
            };
            let trees = store.put(pcid::DAG_CBOR, list(&roots)?).await?;
            let mut named = vec![*manifest_cid];
            named.extend(&manifest.shards);
            let version = store.put(pcid::DAG_CBOR, list(&named)?).await?;
            store.pin_shallow_as(&pin, &version).await?;
            store.pin_as(&pin, &trees).await?;
            // A partial replica does not use the snapshot of every shard.
            store.unpin_name(&snapshot::pin_name(&pin)).await?;
        }
    }
    Ok(())
}

/// Removes the pins of collection `name`; whether there were any.
pub async fn unpin<S: BlockStore>(store: &S, name: &str) -> Result<bool, StoreError> {
    let pin = pin_name(name);
    let recursive = store.unpin_name(&pin).await?;
    store.unpin_name(&snapshot::pin_name(&pin)).await?;
    Ok(store.unpin_shallow_name(&pin).await? || recursive)
}

fn index_spec(manifest: &Manifest) -> IndexSpec {
    IndexSpec {
        dimension: manifest.dimension as usize,
        metric: manifest.metric,
        quantization: manifest.quantization,
        hnsw: manifest.hnsw,
    }
}

/// Shard numbers as a list for people: `0, 3`.
pub fn list_shards(shards: &[u32]) -> String {
    shards
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a search covered: which shards answered, of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Shards the collection has.
    pub shards: u32,
    /// Shards whose points the search considered, in order.
    pub searched: Vec<u32>,
}

impl Coverage {
    /// Whether every shard answered.
    pub fn complete(&self) -> bool {
        self.searched.len() as u32 == self.shards
    }
}

#[cfg(test)]
mod tests;
