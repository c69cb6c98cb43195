//! A saved index: the usearch file and the map from point ids to index keys, tagged with the
//! shard roots they reflect (each held shard's number and root block CID). A cache for another
//! version or another set of shards, or a damaged one, is ignored and the index rebuilt from
//! the trees.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use cid::Cid;
use ipvec_protocol::{
    dagcbor,
    entry::{Entry, EntryKey},
    Ipld,
};
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
    metadata: Option<PackedMetadata>,
}

/// What the key map holds of one live point.
#[derive(Debug, Clone, Copy)]
pub struct PointRef<'a> {
    /// The point's id.
    pub id: &'a EntryKey,
    /// Its shard.
    pub shard: u32,
    /// Its metadata, if it has any.
    pub metadata: Option<&'a PackedMetadata>,
}

/// A point's metadata as its canonical DAG-CBOR. A map of two small fields packs into about
/// 25 bytes, where the decoded `Ipld` map takes more than a kilobyte (a B-tree node of eleven
/// slots, each as large as the largest `Ipld` variant, a CID): for 60,000 points, 84 MB of a
/// collection's memory. Search hits carry it packed too: decoding it took about 5% of a
/// search at ef 16, which callers that do not read it need not pay.
#[derive(Clone, PartialEq)]
pub struct PackedMetadata(Box<[u8]>);

impl std::fmt::Debug for PackedMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PackedMetadata")
            .field(&self.unpack())
            .finish()
    }
}

impl PackedMetadata {
    /// Packs a value (one that came out of an entry, so it encodes).
    pub fn pack(value: &Ipld) -> Result<Self, CollectionError> {
        Ok(Self(dagcbor::encode(value)?.into_boxed_slice()))
    }

    /// The packed metadata of `entry`, if it has any (packed before its point gets a key, so
    /// that a failure leaves the key map unchanged).
    pub fn of(entry: &Entry) -> Result<Option<Self>, CollectionError> {
        entry.meta.as_ref().map(Self::pack).transpose()
    }

    /// Reads the first byte, so that the memory holding it is on its way to the cache (see
    /// [`shard::resolve`](super::shard::resolve)).
    pub fn touch(&self) {
        std::hint::black_box(self.0.first().copied());
    }

    /// The value again.
    pub fn unpack(&self) -> Ipld {
        // Written by `pack` from a value that encoded: it decodes.
        dagcbor::decode_trusted(&self.0).unwrap_or(Ipld::Null)
    }
}

/// In a key file, the value itself: the file's format does not depend on how memory holds it.
impl Serialize for PackedMetadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.unpack().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PackedMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Ipld::deserialize(deserializer)?;
        Self::pack(&value).map_err(serde::de::Error::custom)
    }
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
    pub fn set_metadata(&mut self, key: u64, metadata: Option<PackedMetadata>) {
        if let Some(Some(slot)) = self.slots.get_mut(key as usize) {
            slot.metadata = metadata;
            self.version += 1;
        }
    }

    fn slot(&self, key: u64) -> Option<&Slot> {
        self.slots.get(usize::try_from(key).ok()?)?.as_ref()
    }

    /// The metadata of a live key.
    pub fn metadata(&self, key: u64) -> Option<Ipld> {
        self.slot(key)?
            .metadata
            .as_ref()
            .map(PackedMetadata::unpack)
    }

    /// Every live key with its id, shard and packed metadata, in key order.
    pub fn iter(
        &self,
    ) -> impl Iterator<Item = (u64, &EntryKey, u32, Option<&PackedMetadata>)> + '_ {
        self.slots.iter().enumerate().filter_map(|(key, slot)| {
            slot.as_ref()
                .map(|s| (key as u64, &s.id, s.shard, s.metadata.as_ref()))
        })
    }

    /// [`KeyMap::iter`] from key `first` on.
    pub fn iter_from(
        &self,
        first: u64,
    ) -> impl Iterator<Item = (u64, &EntryKey, u32, Option<&PackedMetadata>)> + '_ {
        let first = usize::try_from(first)
            .unwrap_or(usize::MAX)
            .min(self.slots.len());
        self.slots[first..]
            .iter()
            .enumerate()
            .filter_map(move |(at, slot)| {
                slot.as_ref()
                    .map(|s| ((first + at) as u64, &s.id, s.shard, s.metadata.as_ref()))
            })
    }

    /// The id of a key.
    pub fn id_of(&self, key: u64) -> Option<&EntryKey> {
        self.slot(key).map(|s| &s.id)
    }

    /// The id, shard and packed metadata of a live key.
    pub fn point_of(&self, key: u64) -> Option<PointRef<'_>> {
        self.slot(key).map(|s| PointRef {
            id: &s.id,
            shard: s.shard,
            metadata: s.metadata.as_ref(),
        })
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

/// A saved key map, tagged with the shard roots (a local cache) or trees (a published
/// snapshot) it reflects.
#[derive(Serialize, Deserialize)]
pub(crate) struct KeyFile {
    pub(crate) roots: CacheTag,
    next: u64,
    keys: Vec<(u64, EntryKey, u32, Option<PackedMetadata>)>,
}

/// The index file of the saved index at `stem`.
pub(crate) fn index_path(stem: &Path) -> PathBuf {
    stem.with_extension("usearch")
}

/// The key file of the saved index at `stem`.
pub(crate) fn keys_path(stem: &Path) -> PathBuf {
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
    let file = match read_keys(&bytes) {
        Ok(file) => file,
        Err(reason) => {
            tracing::info!(reason, "index cache not used; rebuilding");
            return None;
        }
    };
    if &file.roots != roots {
        tracing::info!(
            cached = ?file.roots,
            current = ?roots,
            "index cache is for other shard roots; rebuilding"
        );
        return None;
    }
    let index = HnswIndex::load(spec, &index_path(stem)).map_err(index_unusable);
    match index.and_then(|index| assemble(index, file)) {
        Ok(loaded) => Some(loaded),
        Err(reason) => {
            tracing::info!(reason, "index cache not used; rebuilding");
            None
        }
    }
}

/// A key file, checked to be usable: its keys index a `Vec`, so deleted keys leave holes, and
/// when they outnumber the live ones rebuilding (which hands out keys afresh) is worth its
/// cost; every key lies below the limit and belongs to a shard the file's tag names.
pub(crate) fn read_keys(bytes: &[u8]) -> Result<KeyFile, &'static str> {
    let file: KeyFile = dagcbor::decode_trusted(bytes)
        .map_err(|_| "the key map is damaged or from an older ipvec")?;
    let limit = usize::try_from(file.next).map_err(|_| "the key map is damaged")?;
    let tagged = |shard: &u32| file.roots.iter().any(|(n, _)| n == shard);
    if file
        .keys
        .iter()
        .any(|(key, _, shard, _)| *key >= file.next || !tagged(shard))
    {
        return Err("the key map names keys or shards it does not hold");
    }
    if limit > 2 * file.keys.len() + 1024 {
        return Err("the key map has mostly deleted keys");
    }
    Ok(file)
}

/// Why a saved index file cannot be used.
pub(crate) fn index_unusable(e: IndexError) -> String {
    match e {
        IndexError::Format { .. } => {
            format!("the index file is damaged or from an older ipvec: {e}")
        }
        e => format!("the index file is damaged: {e}"),
    }
}

/// A loaded index and the key map of `file`, which must agree.
pub(crate) fn assemble(index: HnswIndex, file: KeyFile) -> Result<(HnswIndex, KeyMap), String> {
    if index.len() != file.keys.len() {
        return Err(format!(
            "the index holds {} points, its key map {}",
            index.len(),
            file.keys.len()
        ));
    }
    let mut keys = KeyMap {
        slots: vec![None; file.next as usize],
        ..KeyMap::default()
    };
    for (key, id, shard, metadata) in file.keys {
        if keys.by_id.insert(id.clone(), key).is_some() || !index.contains(key) {
            return Err("the key map and the index disagree".into());
        }
        keys.slots[key as usize] = Some(Slot {
            id,
            shard,
            metadata,
        });
    }
    Ok((index, keys))
}

#[cfg(test)]
mod tests {
    use ipvec_protocol::entry::EntryId;

    use super::*;
    use crate::collection::points::json_to_ipld;

    #[test]
    fn packed_metadata_comes_back_whole_and_key_files_keep_their_format() {
        let values = [
            serde_json::json!({"label": 3, "id_mod10": 7}),
            serde_json::json!({"tags": ["a", "b"], "nested": {"x": 1.5, "y": null}, "ok": true}),
            serde_json::json!({}),
        ];
        let mut keys = KeyMap::default();
        for (n, value) in values.iter().enumerate() {
            let id = EntryId::Int(n as u64).to_key().unwrap();
            let key = keys.assign(&id, 0);
            let packed = PackedMetadata::pack(&json_to_ipld(value.clone())).unwrap();
            keys.set_metadata(key, Some(packed));
        }
        for (n, value) in values.iter().enumerate() {
            assert_eq!(keys.metadata(n as u64), Some(json_to_ipld(value.clone())));
        }
        // A key file written from packed values is the file of the values themselves.
        #[derive(Serialize)]
        struct Unpacked {
            roots: CacheTag,
            next: u64,
            keys: Vec<(u64, EntryKey, u32, Option<Ipld>)>,
        }
        let packed = KeyFile {
            roots: Vec::new(),
            next: keys.key_limit(),
            keys: keys
                .iter()
                .map(|(k, id, shard, meta)| (k, id.clone(), shard, meta.cloned()))
                .collect(),
        };
        let unpacked = Unpacked {
            roots: Vec::new(),
            next: keys.key_limit(),
            keys: keys
                .iter()
                .map(|(k, id, shard, _)| (k, id.clone(), shard, keys.metadata(k)))
                .collect(),
        };
        let bytes = dagcbor::encode(&packed).unwrap();
        assert_eq!(bytes, dagcbor::encode(&unpacked).unwrap());
        let again: KeyFile = dagcbor::decode_trusted(&bytes).unwrap();
        assert_eq!(again.keys, packed.keys);
    }
}
