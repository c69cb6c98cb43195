//! Published index snapshots: the index of every shard as blobs that a new replica fetches
//! with the trees, so that it answers searches after the transfer instead of after a graph
//! build (issue #20, "Replica ready").
//!
//! # Format
//! A snapshot is one byte stream cut into raw blocks of [`CHUNK`] bytes (the last one
//! shorter). Every shard root of a version names the same snapshot in its `index` field:
//! the CID of its *listing*, a raw block holding the chunks' BLAKE3 digests one after
//! another, 32 bytes each, in order (the layout of an iroh-blobs hash sequence; each chunk's
//! CID is CIDv1, raw, BLAKE3 of that digest). The stream is:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | `ipvecix1` |
//! | 8 | n, little-endian: the length of the index file |
//! | n | the index file, as [`HnswIndex::save`] writes it (usearch's graph and vectors) |
//! | rest | the key map, DAG-CBOR, as the local cache writes it ([`cache::KeyFile`]), tagged with the shard number and *tree* CID of every shard it reflects |
//!
//! The listing is a raw block on purpose: walks of a collection's DAG (the pin of a version
//! and its history, the fetch of a whole version) stop at it, so the snapshots of old versions
//! are neither kept nor fetched; the current version's chunks have a pin of their own
//! ([`pin`]).
//!
//! # Older trees
//! A writer publishes a new snapshot only when enough changed since the last one ([`due`]):
//! at a checkpoint while writes go on, or in a version of its own once they stop. Until then
//! its versions name the last one, which reflects older trees. A
//! replica loads it and applies what changed between those trees and the held ones, as a
//! following replica does with a new version. A snapshot is refused, and the index built
//! from the trees (the truth), when it is not whole in the store, is for other shards than
//! the held ones, is a file usearch or the key map's checks refuse, would need more changes
//! than half its points, or disagrees with the trees on a sample of points.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{
    cid::{self as pcid, RAW},
    dagcbor,
    manifest::{Manifest, Quantization, ShardRoot},
};

use super::{
    cache::{self, CacheTag, KeyMap},
    quantize, CollectionError,
};
use crate::{
    index::{HnswIndex, IndexSpec},
    store::BlockStore,
    tree,
};

/// Bytes of a snapshot chunk: a raw block well under Bitswap's 2 MiB limit. (Unit tests cut
/// their small indexes into many chunks.)
pub const CHUNK: usize = if cfg!(test) { 16 << 10 } else { 1 << 20 };
const MAGIC: &[u8; 8] = b"ipvecix1";
/// Points of a loaded snapshot compared with the trees.
const SAMPLE: usize = 64;

/// When a writer publishes snapshots. Publishing costs about the index's size in writes;
/// a replica that loads an older snapshot inserts the points changed since, one by one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Publishing {
    /// Collections with fewer live points publish none (their index builds in seconds).
    pub min_points: u64,
    /// While writes go on, a checkpoint publishes a new snapshot when the entries changed
    /// since the last one reach this fraction of the points (a bulk load of n points then
    /// writes about 3n points' worth of snapshots at 0.5); until then versions name the last.
    pub busy: f64,
    /// Once writes stop for a while, a version of its own publishes a new snapshot when the
    /// entries changed since the last reach this fraction ([`Collection::plan_snapshot`]).
    ///
    /// [`Collection::plan_snapshot`]: super::Collection::plan_snapshot
    pub quiet: f64,
}

impl Default for Publishing {
    fn default() -> Self {
        Self {
            min_points: 100_000,
            busy: 0.5,
            quiet: 0.01,
        }
    }
}

/// Whether a collection of `points` live points, `changed` entries changed after the last
/// snapshot (`None`: there is none), should publish a new one: at a checkpoint, or (`quiet`)
/// after writes stopped.
pub fn due(publishing: &Publishing, points: u64, changed: Option<u64>, quiet: bool) -> bool {
    let fraction = if quiet {
        publishing.quiet
    } else {
        publishing.busy
    };
    points >= publishing.min_points.max(1)
        && changed.is_none_or(|changed| changed as f64 >= fraction * points as f64)
}

/// Step one of publishing, while the index reflects exactly the trees `trees` (under the
/// collection's lock): writes the index and key map as files in `dir`, returns their stem.
pub(super) fn write_files(
    dir: &Path,
    index: &HnswIndex,
    keys: &KeyMap,
    trees: &CacheTag,
) -> Result<PathBuf, CollectionError> {
    let stem = dir.join("index").join("publish");
    cache::save(&stem, index, keys, trees)?;
    Ok(stem)
}

/// Step two, without the lock: cuts the files at `stem` into chunks, puts them and their
/// listing in `store`, removes the files; the listing's CID.
pub(super) async fn publish_files<S: BlockStore>(
    store: &S,
    stem: &Path,
) -> Result<Cid, CollectionError> {
    let index_path = cache::index_path(stem);
    let keys_path = cache::keys_path(stem);
    let open = |path: &Path| std::fs::File::open(path).map_err(super::io_at(path));
    let index_len = std::fs::metadata(&index_path)
        .map_err(super::io_at(&index_path))?
        .len();
    let mut head = Vec::with_capacity(16);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&index_len.to_le_bytes());
    let mut stream = std::io::Cursor::new(head)
        .chain(std::io::BufReader::new(open(&index_path)?))
        .chain(std::io::BufReader::new(open(&keys_path)?));
    let mut listing = Vec::new();
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        (&mut stream)
            .take(CHUNK as u64)
            .read_to_end(&mut chunk)
            .map_err(super::io_at(stem))?;
        if chunk.is_empty() {
            break;
        }
        let cid = store.put(RAW, Bytes::from(chunk)).await?;
        listing.extend_from_slice(&pcid::digest(&cid)?);
    }
    let listing = store.put(RAW, Bytes::from(listing)).await?;
    let _ = std::fs::remove_file(&index_path);
    let _ = std::fs::remove_file(&keys_path);
    Ok(listing)
}

/// The chunks of the snapshot whose listing is `listing`, if the store has the listing and
/// it is one.
pub async fn chunks<S: BlockStore>(store: &S, listing: &Cid) -> Result<Vec<Cid>, String> {
    if listing.codec() != RAW {
        return Err("its listing is not a raw block".into());
    }
    let bytes = store
        .get(listing)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("its listing is not in the store")?;
    if bytes.is_empty() || bytes.len() % 32 != 0 {
        return Err("its listing is not a list of BLAKE3 digests".into());
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|d| {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(d);
            pcid::cid_from_digest(RAW, &digest)
        })
        .collect())
}

/// The snapshot every root of `roots` names, if they all name the same one.
pub fn named<'a>(roots: impl IntoIterator<Item = &'a ShardRoot>) -> Option<Cid> {
    let mut named = None;
    for root in roots {
        match (named, root.index) {
            (_, None) => return None,
            (None, Some(cid)) => named = Some(cid),
            (Some(a), Some(b)) if a != b => return None,
            _ => {}
        }
    }
    named
}

/// A snapshot read from the store.
pub(super) struct Loaded {
    pub(super) index: HnswIndex,
    pub(super) keys: KeyMap,
    /// The shards and trees it reflects.
    pub(super) trees: CacheTag,
}

/// Reads the snapshot `listing` from `store`.
pub(super) async fn load<S: BlockStore>(
    store: &S,
    spec: IndexSpec,
    listing: &Cid,
) -> Result<Loaded, String> {
    let chunks = chunks(store, listing).await?;
    // Every chunk is here before any is read: the lengths the first one gives are then at
    // most what the store holds.
    for cid in &chunks {
        if !store.has(cid).await.map_err(|e| e.to_string())? {
            return Err(format!("its chunk {cid} is not in the store"));
        }
    }
    let started = std::time::Instant::now();
    // The index file, then the key file, each gathered in memory (usearch loads from a
    // buffer: no file written and read again).
    let mut head = Vec::with_capacity(16);
    // The index file's bytes so far, and its length.
    let mut index: Option<(Vec<u8>, usize)> = None;
    let mut keys = Vec::new();
    for cid in &chunks {
        let mut bytes = store
            .get(cid)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("its chunk {cid} is not in the store"))?;
        if index.is_none() {
            let take = (16 - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes.split_to(take));
            if head.len() == 16 {
                if &head[..8] != MAGIC {
                    return Err("it is not an ipvec index snapshot".to_string());
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&head[8..]);
                let n = u64::from_le_bytes(n);
                // At most what the chunks hold: a length that says more is a damaged one.
                if n > (chunks.len() * CHUNK) as u64 {
                    return Err("its index file is longer than its chunks".to_string());
                }
                let mut buffer = Vec::new();
                buffer
                    .try_reserve_exact(n as usize)
                    .map_err(|_| format!("its index file ({n} bytes) does not fit in memory"))?;
                index = Some((buffer, n as usize));
            }
        }
        if let Some((index, n)) = index.as_mut() {
            let take = (*n - index.len()).min(bytes.len());
            index.extend_from_slice(&bytes.split_to(take));
            keys.extend_from_slice(&bytes);
        }
    }
    let index = match index {
        Some((index, n)) if index.len() == n => index,
        _ => return Err("it ends inside its index file".to_string()),
    };
    let copied = started.elapsed();
    let file = cache::read_keys(&keys).map_err(str::to_string)?;
    drop(keys);
    let decoded = started.elapsed();
    let trees = file.roots.clone();
    let index = HnswIndex::load_bytes(spec, &index).map_err(cache::index_unusable)?;
    let (index, keys) = cache::assemble(index, file)?;
    tracing::debug!(
        copied_secs = copied.as_secs_f64(),
        keys_secs = (decoded - copied).as_secs_f64(),
        index_secs = (started.elapsed() - decoded).as_secs_f64(),
        "index snapshot read"
    );
    Ok(Loaded { index, keys, trees })
}

/// Whether the index holds the points of `held` (shard, tree) exactly as the trees do, on a
/// sample of its keys spread over the key range, and as many points as the trees (`points`).
pub(super) async fn agrees<S: BlockStore>(
    store: &S,
    quantization: Quantization,
    index: &HnswIndex,
    keys: &KeyMap,
    held: &[(u32, Cid)],
    points: u64,
) -> Result<bool, CollectionError> {
    if points != keys.len() as u64 {
        return Ok(false);
    }
    let limit = keys.key_limit();
    let step = (limit / SAMPLE as u64).max(1);
    let mut key = 0;
    while key < limit {
        // The first live key at or after this one.
        let Some((key_found, id, shard, meta)) = keys.iter_from(key).next() else {
            break;
        };
        let Some((_, tree)) = held.iter().find(|(n, _)| *n == shard) else {
            return Ok(false);
        };
        let Some((entry, _)) = tree::get(store, tree, id).await? else {
            return Ok(false);
        };
        let stored = quantize::stored_from_index(index, quantization, key_found);
        let packed = meta.map(|m| m.unpack());
        if entry.deleted || stored.as_deref() != Some(&entry.vec[..]) || packed != entry.meta {
            return Ok(false);
        }
        key = key_found + step;
    }
    Ok(true)
}

/// The name of the pin that keeps collection pin `pin`'s current snapshot.
pub(super) fn pin_name(pin: &str) -> String {
    format!("{pin}:index")
}

/// Pins the chunks of the snapshot the version `roots` names under `pin` (its name from
/// [`pin_name`]) when the store has them all; else removes that pin. Old snapshots then go
/// with the next garbage collection.
pub(super) async fn pin<S: BlockStore>(
    store: &S,
    pin: &str,
    manifest: &Manifest,
) -> Result<(), CollectionError> {
    // Most versions name none: the first shard root tells, before every root is read.
    let first = match manifest.shards.first() {
        Some(cid) => dagcbor::decode_trusted::<ShardRoot>(&store.require(cid).await?)?.index,
        None => None,
    };
    let roots = match first {
        Some(_) => super::read_roots(store, manifest).await?,
        None => Vec::new(),
    };
    let whole = match named(&roots) {
        Some(listing) => match chunks(store, &listing).await {
            Ok(chunks) => {
                let mut whole = true;
                for chunk in &chunks {
                    whole &= store.has(chunk).await?;
                }
                whole.then_some((listing, chunks))
            }
            Err(_) => None,
        },
        None => None,
    };
    match whole {
        Some((listing, mut chunks)) => {
            chunks.push(listing);
            let list = store
                .put(pcid::DAG_CBOR, Bytes::from(dagcbor::encode(&chunks)?))
                .await?;
            store.pin_as(pin, &list).await?;
        }
        None => {
            store.unpin_name(pin).await?;
        }
    }
    Ok(())
}
