//! The write path: upserts and deletes go to the log and the index; checkpoints put them in
//! the trees.

use std::collections::BTreeMap;

use bytes::Bytes;
use ipvec_protocol::{
    cid::DAG_CBOR,
    dagcbor,
    entry::{Entry, EntryId, EntryKey},
    head::HeadRecord,
    manifest::shard_of,
};

use super::{
    catalog, now_millis, pin_name, points, quantize, Collection, CollectionError, Point,
    WriteReport,
};
use crate::{
    index::VectorIndex,
    store::BlockStore,
    tree::{self, Edit},
};

/// A checkpoint runs when this many entries are pending…
pub const CHECKPOINT_ENTRIES: usize = 100_000;
/// …or when the log holds this many bytes.
pub const CHECKPOINT_LOG_BYTES: u64 = 256 << 20;
/// A checkpoint applies a shard's writes to its tree in runs of this many consecutive ids.
pub(super) const CHECKPOINT_RUN: usize = 4_096;

impl<S: BlockStore> Collection<S> {
    /// Inserts or replaces points. The whole batch is checked before anything is written; the
    /// call returns once the batch is durable in the log, and the points are searchable then.
    pub async fn upsert(&mut self, points: Vec<Point>) -> Result<WriteReport, CollectionError> {
        let prepared = points::prepare(
            points,
            self.manifest.dimension as usize,
            self.manifest.metric,
            self.manifest.quantization,
        )?;
        let writer = self.writer()?;
        let hlc = self.clock.tick(now_millis());
        let mut entries = Vec::with_capacity(prepared.len());
        for (position, p) in prepared.into_iter().enumerate() {
            let vec = quantize::encode(self.manifest.quantization, &p.vector);
            let entry = Entry::put(p.key, vec, p.metadata, hlc, writer);
            entry
                .encode_checked()
                .map_err(|e| CollectionError::BadPoint {
                    position,
                    id: entry.id.id().to_string(),
                    reason: e.to_string(),
                })?;
            entries.push(entry);
        }
        let changed = entries.len() as u64;
        self.log_and_apply(entries)?;
        self.maybe_checkpoint().await?;
        Ok(WriteReport {
            changed,
            points: self.points(),
        })
    }

    /// Deletes points by id; ids that are not present are skipped. Returns how many went.
    pub async fn delete(&mut self, ids: &[EntryId]) -> Result<WriteReport, CollectionError> {
        let writer = self.writer()?;
        let hlc = self.clock.tick(now_millis());
        let mut tombstones: Vec<Entry> = Vec::new();
        for id in ids {
            let key = id.to_key()?;
            if self.keys.get(&key).is_some() && !tombstones.iter().any(|t| t.id == key) {
                tombstones.push(Entry::tombstone(key, hlc, writer));
            }
        }
        let changed = tombstones.len() as u64;
        if changed > 0 {
            self.log_and_apply(tombstones)?;
            self.maybe_checkpoint().await?;
        }
        Ok(WriteReport {
            changed,
            points: self.points(),
        })
    }

    fn log_and_apply(&mut self, entries: Vec<Entry>) -> Result<(), CollectionError> {
        self.check_live()?;
        self.wal.append(entries.clone())?;
        self.apply_in_memory(entries)
    }

    /// Makes logged entries visible: the key map, the index and the pending set.
    pub(super) fn apply_in_memory(&mut self, entries: Vec<Entry>) -> Result<(), CollectionError> {
        let shard_count = self.shards.len() as u32;
        for entry in entries {
            self.clock.observe(ipvec_protocol::hlc::Hlc(entry.hlc));
            let shard = shard_of(&entry.id, shard_count) as usize;
            match (self.keys.get(&entry.id).is_some(), entry.deleted) {
                (false, false) => self.pending_delta[shard] += 1,
                (true, true) => self.pending_delta[shard] -= 1,
                _ => {}
            }
            if entry.deleted {
                if let Some(key) = self.keys.remove(&entry.id) {
                    self.index.remove(key)?;
                }
            } else {
                let key = self.keys.assign(&entry.id);
                self.keys.set_metadata(key, entry.meta.clone());
                // Index what readers of the tree will see: the stored (quantized) vector.
                quantize::index_stored(
                    &mut self.index,
                    self.manifest.quantization,
                    key,
                    &entry.vec,
                )?;
            }
            self.pending.insert(
                entry.id,
                Pending::of(entry.hlc, entry.writer, entry.deleted),
            );
        }
        self.index_dirty = true;
        Ok(())
    }

    async fn maybe_checkpoint(&mut self) -> Result<(), CollectionError> {
        if self.pending.len() >= CHECKPOINT_ENTRIES || self.wal.bytes() >= CHECKPOINT_LOG_BYTES {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Puts every pending write in the trees and publishes the new version.
    pub async fn checkpoint(&mut self) -> Result<(), CollectionError> {
        if self.pending.is_empty() || self.retired {
            return Ok(());
        }
        let through = self.wal.last_seq();
        let shard_count = self.shards.len() as u32;
        let mut by_shard: BTreeMap<u32, Vec<(EntryKey, Pending)>> = BTreeMap::new();
        for (id, pending) in std::mem::take(&mut self.pending) {
            by_shard
                .entry(shard_of(&id, shard_count))
                .or_default()
                .push((id, pending));
        }
        let mut shard_cids = self.manifest.shards.clone();
        let mut shards = self.shards.clone();
        // A run of consecutive ids at a time: besides the index, only that run's vectors are
        // held (as entries, and as the items and leaves the tree encodes from them).
        for (shard, writes) in by_shard {
            let root = &mut shards[shard as usize];
            for run in writes.chunks(CHECKPOINT_RUN) {
                let edits = run
                    .iter()
                    .map(|(id, pending)| self.pending_entry(id.clone(), pending).map(Edit::Put))
                    .collect::<Result<Vec<_>, _>>()?;
                root.tree = tree::apply(&self.store, root.tree, edits).await?.0;
            }
            root.points = (root.points as i64 + self.pending_delta[shard as usize]).max(0) as u64;
            shard_cids[shard as usize] = self
                .store
                .put(DAG_CBOR, Bytes::from(dagcbor::encode(root)?))
                .await?;
        }
        let mut manifest = self.manifest.clone();
        manifest.shards = shard_cids;
        manifest.prev = Some(self.head.manifest);
        manifest.updated = now_millis().max(manifest.updated);
        manifest.points = self.points();
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
        // one), then the head file names it and the log records it holds; then the log empties.
        self.store
            .pin_as(&pin_name(&self.name()), &manifest_cid)
            .await?;
        self.store.flush().await?;
        catalog::write_head(&self.dir, &head, through)?;
        self.wal.clear()?;
        self.head = head;
        self.manifest = manifest;
        self.shards = shards;
        self.pending_delta.iter_mut().for_each(|d| *d = 0);
        Ok(())
    }
}

impl<S> Collection<S> {
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
            let vec = quantize::stored_from_index(&self.index, self.manifest.quantization, key)
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
}

/// A write that is in the log but not yet in the trees. Its vector and metadata are not kept
/// here: the index and the key map hold them, and [`Collection::pending_entry`] reads them
/// back, so acknowledged points are not held a third time until the checkpoint.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    hlc: u64,
    writer: Vec<u8>,
    deleted: bool,
}

impl Pending {
    fn of(hlc: u64, writer: Vec<u8>, deleted: bool) -> Self {
        Self {
            hlc,
            writer,
            deleted,
        }
    }
}
