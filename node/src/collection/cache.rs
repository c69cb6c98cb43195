//! A saved index: the usearch file and the map from point ids to index keys, tagged with the
//! shard roots they reflect (each held shard's number and root block CID). A cache for another
//! version or another set of shards, or a damaged one, is ignored and the index rebuilt from
//! the trees.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use cid::Cid;
use ipvec_protocol::{dagcbor, entry::EntryKey, Ipld};
use serde::{Deserialize, Serialize};

use super::{catalog::write_atomic, CollectionError};
use crate::index::{HnswIndex, IndexError, IndexSpec, VectorIndex};

/// Point ids ↔ index keys, and each live point's shard and metadata for filters. Keys are
/// handed out in sequence and never reused, so everything but the id lookup is a `Vec` indexed
/// by key.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    by_id: HashMap<EntryKey, u64>,
    /// By key: the live point that has it, `None` once deleted. Its length is the next key.
    slots: Vec<Option<Slot>>,
    /// Counts changes, so that what is derived from the map can tell it is stale.
    version: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    id: EntryKey,
    shard: u32,
    metadata: Option<Ipld>,
}

impl KeyMap {
    /// The key of `id` (a point of shard `shard`), handing out a new one if it has none.
    pub fn assign(&mut self, id: &EntryKey, shard: u32) -> u64 {
        if let Some(key) = self.by_id.get(id) {
            return *key;
        }
        let key = self.slots.len() as u64;
        self.by_id.insert(id.clone(), key);
        self.slots.push(Some(Slot {
            id: id.clone(),
            shard,
            metadata: None,
        }));
        self.version += 1;
        key
    }

    /// The key of a live id.
    pub fn get(&self, id: &EntryKey) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Forgets an id; returns its key.
    pub fn remove(&mut self, id: &EntryKey) -> Option<u64> {
        let key = self.by_id.remove(id)?;
        if let Some(slot) = self.slots.get_mut(key as usize) {
            *slot = None;
        }
        self.version += 1;
        Some(key)
    }

    /// Records the metadata of a live key.
    pub fn set_metadata(&mut self, key: u64, metadata: Option<Ipld>) {
        if let Some(Some(slot)) = self.slots.get_mut(key as usize) {
            slot.metadata = metadata;
            self.version += 1;
        }
    }

    fn slot(&self, key: u64) -> Option<&Slot> {
        self.slots.get(usize::try_from(key).ok()?)?.as_ref()
    }

    /// The metadata of a live key.
    pub fn metadata(&self, key: u64) -> Option<&Ipld> {
        self.slot(key)?.metadata.as_ref()
    }

    /// Every live key with its id, shard and metadata, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &EntryKey, u32, Option<&Ipld>)> + '_ {
        self.slots.iter().enumerate().filter_map(|(key, slot)| {
            slot.as_ref()
                .map(|s| (key as u64, &s.id, s.shard, s.metadata.as_ref()))
        })
    }

    /// The id of a key.
    pub fn id_of(&self, key: u64) -> Option<&EntryKey> {
        self.slot(key).map(|s| &s.id)
    }

    /// The id and shard of a key.
    pub fn point_of(&self, key: u64) -> Option<(&EntryKey, u32)> {
        self.slot(key).map(|s| (&s.id, s.shard))
    }

    /// Live ids.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no id is live.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// One more than the highest key ever handed out.
    pub fn key_limit(&self) -> u64 {
        self.slots.len() as u64
    }

    /// A number that changes whenever an id, key or metadata value does.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// What a saved index reflects: each held shard's number and root block CID, in order.
pub type CacheTag = Vec<(u32, Cid)>;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    roots: CacheTag,
    next: u64,
    keys: Vec<(u64, EntryKey, u32, Option<Ipld>)>,
}

/// The index file of the saved index at `stem`.
fn index_path(stem: &Path) -> PathBuf {
    stem.with_extension("usearch")
}

/// The key file of the saved index at `stem`.
fn keys_path(stem: &Path) -> PathBuf {
    stem.with_extension("keys")
}

/// Saves the index and key map as `stem.usearch` and `stem.keys`, tagged with `roots` (the
/// shard roots they reflect).
pub(crate) fn save(
    stem: &Path,
    index: &HnswIndex,
    keys: &KeyMap,
    roots: &CacheTag,
) -> Result<(), CollectionError> {
    if let Some(folder) = stem.parent() {
        std::fs::create_dir_all(folder).map_err(super::io_at(folder))?;
    }
    // The key file names the roots; write the index first, so a crash between the two leaves
    // a key file for older roots, which is ignored.
    let index_path = index_path(stem);
    let tmp = stem.with_extension("usearch.tmp");
    index.save(&tmp)?;
    std::fs::rename(&tmp, &index_path).map_err(super::io_at(&index_path))?;
    let file = KeyFile {
        roots: roots.clone(),
        next: keys.key_limit(),
        // In key order, as `iter` gives them.
        keys: keys
            .iter()
            .map(|(k, id, shard, meta)| (k, id.clone(), shard, meta.cloned()))
            .collect(),
    };
    write_atomic(&keys_path(stem), &dagcbor::encode(&file)?)
}

/// Loads the index saved at `stem` if it reflects exactly `roots`.
pub(crate) fn load(stem: &Path, spec: IndexSpec, roots: &CacheTag) -> Option<(HnswIndex, KeyMap)> {
    let bytes = std::fs::read(keys_path(stem)).ok()?;
    let Ok(file) = dagcbor::decode_trusted::<KeyFile>(&bytes) else {
        tracing::info!("index cache is damaged or from an older ipvec; rebuilding");
        return None;
    };
    if &file.roots != roots {
        tracing::info!(
            cached = ?file.roots,
            current = ?roots,
            "index cache is for other shard roots; rebuilding"
        );
        return None;
    }
    // Keys index a Vec. Deleted keys leave holes; when they outnumber the live ones, rebuilding
    // (which hands out keys afresh) is worth its cost. A damaged limit lands here too.
    let limit = usize::try_from(file.next).ok()?;
    let held = |shard: &u32| roots.iter().any(|(n, _)| n == shard);
    if limit > 2 * file.keys.len() + 1024
        || file
            .keys
            .iter()
            .any(|(key, _, shard, _)| *key >= file.next || !held(shard))
    {
        tracing::info!(
            keys = limit,
            live = file.keys.len(),
            "index cache has mostly deleted keys; rebuilding"
        );
        return None;
    }
    let index = match HnswIndex::load(spec, &index_path(stem)) {
        Ok(index) => index,
        Err(e @ IndexError::Format { .. }) => {
            tracing::info!(error = %e, "index cache is damaged or from an older ipvec; rebuilding");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "index cache is damaged; rebuilding");
            return None;
        }
    };
    if index.len() != file.keys.len() {
        tracing::warn!("index cache and key map disagree; rebuilding");
        return None;
    }
    let mut keys = KeyMap {
        slots: vec![None; limit],
        ..KeyMap::default()
    };
    for (key, id, shard, metadata) in file.keys {
        keys.by_id.insert(id.clone(), key);
        keys.slots[key as usize] = Some(Slot {
            id,
            shard,
            metadata,
        });
    }
    Some((index, keys))
}
