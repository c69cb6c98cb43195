//! The write path: upserts and deletes go to the log, then (once durable) to the index.
//!
//! A write runs in three steps so that searches do not wait behind its fsync:
//! 1. [`Collection::stage_upsert`] / [`Collection::stage_delete`] (shared access): validate the
//!    batch, stamp it with the clock and append it to the log, unsynced;
//! 2. [`Staged::sync`] (no access to the collection): wait until the record is durable; one
//!    fsync covers every record appended before it (group commit);
//! 3. [`Collection::prepare_slice`] (shared access, one writer at a time): insert the vectors
//!    of the next slice of durable staged entries into the HNSW graph under keys no point
//!    uses, beside searches; then [`Collection::apply_prepared`] (exclusive access, a few
//!    microseconds an entry): give each insert to its point (a rename), update the key map
//!    and the pending set, in log order. [`Collection::apply_some`] does both halves at once.
//!    [`Collection::report`] answers once this write's record is applied. A search waits
//!    for no graph insert, only for the second halves, and may see part of a durable batch
//!    that is being applied.
//!
//! [`shared`](super::shared) runs these steps on a collection behind a read/write lock.

use std::{collections::BTreeMap, sync::Arc};

use ipvec_protocol::{
    entry::{Entry, EntryId, EntryKey},
    hlc::{Hlc, HlcClock},
    manifest::shard_of,
};

use super::{
    held_index::MAX_PREPARED, now_millis, points, quantize, wal::Wal, Collection, CollectionError,
    Point, WriteReport,
};
use crate::store::BlockStore;

/// A checkpoint runs when this many entries are pending…
pub const CHECKPOINT_ENTRIES: usize = 100_000;
/// …or when the log holds this many bytes.
pub const CHECKPOINT_LOG_BYTES: u64 = 256 << 20;

/// The clock and the logged records not yet applied, taken together so that log order is clock
/// order.
#[derive(Debug, Default)]
pub(super) struct Staging {
    pub(super) clock: HlcClock,
    /// Records appended to the log and not yet (wholly) in the index, by sequence number.
    records: BTreeMap<u64, Vec<Entry>>,
    /// Entries of the first record already applied.
    done: usize,
    /// Why records failed to apply, for their writers.
    failed: BTreeMap<u64, String>,
}

/// A write appended to the log, not yet known durable nor visible.
#[derive(Debug)]
#[must_use = "a staged write is acknowledged only after `sync` and `publish`"]
pub struct Staged {
    /// The record's sequence number; `None` when the write changes nothing.
    seq: Option<u64>,
    changed: u64,
    wal: Arc<Wal>,
}

impl Staged {
    /// Waits until the record is durable (sharing the fsync with concurrent writers).
    pub fn sync(&self) -> Result<(), CollectionError> {
        match self.seq {
            Some(seq) => self.wal.sync_to(seq),
            None => Ok(()),
        }
    }
}

impl<S: BlockStore> Collection<S> {
    /// Inserts or replaces points. The whole batch is checked before anything is written; the
    /// call returns once the batch is durable in the log, and the points are searchable then.
    pub async fn upsert(&mut self, points: Vec<Point>) -> Result<WriteReport, CollectionError> {
        let staged = self.stage_upsert(points)?;
        staged.sync()?;
        let report = self.publish(&staged)?;
        if self.needs_checkpoint() {
            self.checkpoint().await?;
        }
        Ok(report)
    }

    /// Deletes points by id; ids that are not present are skipped. Returns how many went.
    pub async fn delete(&mut self, ids: &[EntryId]) -> Result<WriteReport, CollectionError> {
        let staged = self.stage_delete(ids)?;
        staged.sync()?;
        let report = self.publish(&staged)?;
        if self.needs_checkpoint() {
            self.checkpoint().await?;
        }
        Ok(report)
    }
}

impl<S: BlockStore> Collection<S> {
    pub(super) fn staging(&self) -> std::sync::MutexGuard<'_, Staging> {
        self.staging.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Step 1 of an upsert: checks the whole batch and appends it to the log (unsynced).
    pub fn stage_upsert(&self, points: Vec<Point>) -> Result<Staged, CollectionError> {
        self.check_live()?;
        let prepared = points::prepare(
            points,
            self.manifest.dimension as usize,
            self.manifest.metric,
            self.manifest.quantization,
        )?;
        let writer = self.writer()?;
        // Checked with a timestamp of the same size as the one the log gets below.
        let probe = Hlc::new(now_millis(), 0);
        let mut entries = Vec::with_capacity(prepared.len());
        for (position, p) in prepared.into_iter().enumerate() {
            let vec = quantize::encode(self.manifest.quantization, &p.vector);
            let entry = Entry::put(p.key, vec, p.metadata, probe, writer);
            entry
                .encode_checked()
                .map_err(|e| CollectionError::BadPoint {
                    position,
                    id: entry.id.id().to_string(),
                    reason: e.to_string(),
                })?;
            entries.push(entry);
        }
        self.stage(entries)
    }

    /// Step 1 of a delete: logs a tombstone for each id that is present (unsynced).
    pub fn stage_delete(&self, ids: &[EntryId]) -> Result<Staged, CollectionError> {
        self.check_live()?;
        let writer = self.writer()?;
        // Each id once, in the order given (a set: a batch may name 100,000 ids).
        let mut seen = std::collections::HashSet::new();
        let mut keys = Vec::new();
        for id in ids {
            let key = id.to_key()?;
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        let hlc = Hlc::new(now_millis(), 0);
        let mut staging = self.staging();
        // Present: as the last staged write of the id, or else in the index.
        let tombstones: Vec<Entry> = {
            let mut staged: BTreeMap<&EntryKey, bool> = BTreeMap::new();
            for entry in staging.records.values().flatten() {
                staged.insert(&entry.id, !entry.deleted);
            }
            keys.into_iter()
                .filter(|key| {
                    staged
                        .get(key)
                        .copied()
                        .unwrap_or_else(|| self.contains(key))
                })
                .map(|key| Entry::tombstone(key, hlc, writer))
                .collect()
        };
        self.stage_locked(&mut staging, tombstones)
    }

    fn stage(&self, entries: Vec<Entry>) -> Result<Staged, CollectionError> {
        let mut staging = self.staging();
        self.stage_locked(&mut staging, entries)
    }

    /// Stamps `entries` with one clock tick and appends them to the log, in clock order.
    fn stage_locked(
        &self,
        staging: &mut Staging,
        mut entries: Vec<Entry>,
    ) -> Result<Staged, CollectionError> {
        let changed = entries.len() as u64;
        let seq = if entries.is_empty() {
            None
        } else {
            let hlc = staging.clock.tick(now_millis());
            entries.iter_mut().for_each(|e| e.hlc = hlc.0);
            let seq = self.wal.write(&entries)?;
            staging.records.insert(seq, entries);
            Some(seq)
        };
        Ok(Staged {
            seq,
            changed,
            wal: self.wal.clone(),
        })
    }

    /// Step 3 of a write, all at once: applies every durable staged record and reports.
    pub fn publish(&mut self, staged: &Staged) -> Result<WriteReport, CollectionError> {
        while !self.is_applied(staged) && self.apply_some(usize::MAX) {}
        self.report(staged)
    }

    /// The lock a writer holds while it applies staged writes in two halves
    /// ([`Collection::prepare_slice`], [`Collection::apply_prepared`]).
    pub fn applier(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.applier.clone()
    }

    /// Whether the record of `staged` is applied.
    pub fn is_applied(&self, staged: &Staged) -> bool {
        staged.seq.is_none_or(|seq| seq <= self.applied)
    }

    /// Applies up to `budget` entries of the durable staged records (any writer's), in log
    /// order. Returns whether it applied any. Both halves of step 3 at once, a slice of at
    /// most [`MAX_PREPARED`] entries at a time (the graph inserts of a slice run from
    /// [`Collection::set_write_threads`] threads).
    pub fn apply_some(&mut self, budget: usize) -> bool {
        let mut left = budget;
        while left > 0 {
            if let Err(e) = self.index.settle_prepared() {
                tracing::warn!(error = %e, "making room for a write's graph inserts failed");
            }
            let Some(slice) = self.next_slice(left.min(MAX_PREPARED)) else {
                break;
            };
            left -= slice.entries.len().max(1);
            let prepared = self.index.prepare_all(&slice.entries, self.write_threads);
            self.apply_slice(slice, &prepared);
        }
        if let Err(e) = self.index.settle_prepared() {
            tracing::warn!(error = %e, "tidying the graph inserts of a write failed");
        }
        left < budget
    }

    /// Step 3, first half (shared access; one writer at a time, and the second half before
    /// the next first half): the next slice of up to `budget` durable staged entries, with
    /// the graph inserts of their vectors already made beside searches. The inserts are
    /// nearly all of a write's work; [`Collection::apply_prepared`] then applies the slice
    /// with exclusive access for a few microseconds per entry.
    pub fn prepare_slice(&self, budget: usize) -> Option<PreparedSlice> {
        let slice = self.slice(budget, false)?;
        let prepared = self.index.prepare_all(&slice.entries, self.write_threads);
        Some(PreparedSlice { slice, prepared })
    }

    /// Step 3, second half (exclusive access): applies a slice from
    /// [`Collection::prepare_slice`], unless another writer applied those entries meanwhile.
    /// Returns whether entries were applied, by this call or meanwhile.
    pub fn apply_prepared(&mut self, prepared: PreparedSlice) -> bool {
        let PreparedSlice { slice, prepared } = prepared;
        let applied = match self.next_slice(slice.entries.len()) {
            Some(current) if current.seq == slice.seq && current.from == slice.from => {
                self.apply_slice(current, &prepared);
                true
            }
            // Another writer applied the prepared entries meanwhile: apply the next ones.
            Some(current) => {
                self.apply_slice(current, &[]);
                true
            }
            None => false,
        };
        // Inserts left unplaced (deletes of their points, a failed record) leave the graph,
        // and the next slice's inserts get room.
        if let Err(e) = self.index.settle_prepared() {
            tracing::warn!(error = %e, "tidying the graph inserts of a write failed");
        }
        applied
    }

    /// Takes the next slice of up to `budget` entries of the first durable staged record.
    fn next_slice(&self, budget: usize) -> Option<Slice> {
        self.slice(budget, true)
    }

    /// The next slice of up to `budget` entries of the first durable staged record, taken
    /// out of the staged records when `take`.
    fn slice(&self, budget: usize, take: bool) -> Option<Slice> {
        let synced = self.wal.synced_seq();
        let mut staging = self.staging();
        let done = staging.done;
        let (&seq, entries) = staging.records.first_key_value()?;
        if seq > synced || budget == 0 {
            return None;
        }
        // A graph over codes fits them to the first record it takes, not to one vector.
        self.index.fit_codes(entries);
        let len = entries.len();
        let end = len.min(done.saturating_add(budget));
        let last = end == len;
        let entries = match (take, last) {
            // A whole record taken moves out: no copy of its vectors at the peak of a write.
            (true, true) => {
                let (_, mut entries) = staging.records.pop_first()?;
                staging.done = 0;
                entries.drain(..done);
                entries
            }
            (true, false) => {
                let part = entries[done..end].to_vec();
                staging.done = end;
                part
            }
            (false, _) => entries[done..end].to_vec(),
        };
        Some(Slice {
            seq,
            from: done,
            entries,
            last,
        })
    }

    /// Applies a slice's entries, each with its prepared insert if it has one.
    fn apply_slice(&mut self, slice: Slice, prepared: &[Option<u64>]) {
        let Slice {
            seq, entries, last, ..
        } = slice;
        let with_prepared = entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| (entry, prepared.get(i).copied().flatten()));
        if let Err(e) = self.apply_in_memory(with_prepared) {
            tracing::warn!(seq, error = %e, "applying a logged write to the index failed");
            // The rest of the record is skipped; its writer gets the error.
            let mut staging = self.staging();
            if !last
                && staging
                    .records
                    .first_key_value()
                    .is_some_and(|(s, _)| *s == seq)
            {
                staging.records.pop_first();
                staging.done = 0;
            }
            staging.failed.insert(seq, e.to_string());
            drop(staging);
            self.applied = seq;
            return;
        }
        if last {
            self.applied = seq;
        }
    }

    /// This write's report once its record is applied.
    pub fn report(&mut self, staged: &Staged) -> Result<WriteReport, CollectionError> {
        if !self.is_applied(staged) {
            return Err(CollectionError::Invalid(
                "the write is logged but not yet durable; retry it".into(),
            ));
        }
        let failed = staged
            .seq
            .and_then(|seq| self.staging().failed.remove(&seq));
        if let Some(reason) = failed {
            return Err(CollectionError::Invalid(format!(
                "the batch is in the write-ahead log but the index refused it ({reason}); \
                 reopen the collection to replay the log"
            )));
        }
        Ok(WriteReport {
            changed: staged.changed,
            points: self.points(),
        })
    }

    /// Whether enough is pending for a checkpoint.
    pub fn needs_checkpoint(&self) -> bool {
        self.pending_count() >= CHECKPOINT_ENTRIES || self.wal.bytes() >= CHECKPOINT_LOG_BYTES
    }

    /// Writes in the log, not yet in the trees.
    pub fn pending_count(&self) -> usize {
        self.held.values().map(|s| s.pending.len()).sum()
    }

    /// Whether `key` is live in its (held) shard, counting applied writes.
    fn contains(&self, key: &EntryKey) -> bool {
        self.index.contains(key)
    }

    /// Makes logged entries visible: each goes to the index and its shard's pending set.
    pub(super) fn apply_in_memory(
        &mut self,
        entries: impl IntoIterator<Item = (Entry, Option<u64>)>,
    ) -> Result<(), CollectionError> {
        self.changed();
        let shard_count = self.roots.len() as u32;
        for (entry, prepared) in entries {
            self.staging().clock.observe(Hlc(entry.hlc));
            let number = shard_of(&entry.id, shard_count);
            let shard = self.held.get_mut(&number).ok_or_else(|| {
                CollectionError::Invalid(format!(
                    "a logged write is for shard {number}, which this node does not hold"
                ))
            })?;
            shard.apply(entry, prepared, &mut self.index)?;
        }
        Ok(())
    }
}

/// Entries of one staged record, taken in log order to be applied.
#[derive(Debug)]
struct Slice {
    seq: u64,
    /// The position of the first entry in its record.
    from: usize,
    entries: Vec<Entry>,
    /// Whether the slice ends its record.
    last: bool,
}

/// A slice of staged entries whose vectors are in the graph already, ready to be applied
/// ([`Collection::prepare_slice`]).
#[derive(Debug)]
#[must_use = "prepared inserts stay in the graph until the slice is applied"]
pub struct PreparedSlice {
    slice: Slice,
    /// Each entry's prepared insert.
    prepared: Vec<Option<u64>>,
}

/// A write that is in the log but not yet in the trees. Its vector and metadata are not kept
/// here: the index and its key map hold them, and the shard reads them back
/// (`LocalShard::pending_entry`), so acknowledged points are not held a third time until the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub(super) hlc: u64,
    pub(super) writer: Vec<u8>,
    pub(super) deleted: bool,
    /// How the writes of this id since the trees last took it change its shard's live count.
    pub(super) delta: i64,
}
