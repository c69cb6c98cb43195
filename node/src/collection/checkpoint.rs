//! Checkpoints: the pending writes go into the shard trees and a new signed version.
//!
//! A checkpoint runs in three steps so that searches do not wait while it builds trees:
//! 1. [`Collection::plan_checkpoint`] (shared access): note the pending ids with their clock
//!    stamps, and the log position they reach;
//! 2. [`CheckpointPlan::build`] (shared access a run of entries at a time, only to read their
//!    vectors back from the index): apply them to the trees and write the blocks, the shard
//!    roots and the manifest, and sign the head;
//! 3. [`Collection::finish_checkpoint`] (exclusive access, short): move the pin, write the head
//!    file, drop the committed records from the log and swap the new version in. Writes made
//!    meanwhile stay pending (an id written again since step 1 keeps its newer write).
//!
//! Shared checkpoints of a collection take turns ([`Collection::checkpoint_turn`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    path::PathBuf,
    sync::Arc,
};

use bytes::Bytes;
use ipvec_protocol::{
    cid::DAG_CBOR,
    dagcbor,
    entry::{Entry, EntryKey},
    head::HeadRecord,
    manifest::{Manifest, ShardRoot},
};
use libp2p_identity::Keypair;

pub use super::write::Pending;
use super::{cache::CacheTag, catalog, now_millis, snapshot, Collection, CollectionError};
use crate::{
    store::BlockStore,
    tree::{self, Edit},
};

/// A checkpoint applies a shard's writes to its tree in runs of this many consecutive ids.
/// Each run's entries and leaves are held at once: 1,024 keeps a checkpoint of 784-float
/// vectors under the peak of the writes before it (docs/benchmarks.md, "Memory").
pub(super) const CHECKPOINT_RUN: usize = 1_024;

/// Reads the current entries of pending writes (step 2 reads them a run at a time).
pub trait PendingSource: Sync {
    /// For each `(id, pending)` of shard `shard`, its entry if the id's pending write is still
    /// that one (`None` if it was written again since).
    fn read<'a>(
        &'a self,
        shard: u32,
        run: &'a [(EntryKey, Pending)],
    ) -> impl Future<Output = Result<Vec<Option<Entry>>, CollectionError>> + Send + 'a;

    /// Writes the index as the files of a snapshot of the trees `trees` if it reflects
    /// exactly them: no write was logged since step 1 reached log record `through`
    /// ([`snapshot::write_files`]). The files' stem, or `None`.
    fn snapshot_files<'a>(
        &'a self,
        through: u64,
        trees: &'a CacheTag,
    ) -> impl Future<Output = Result<Option<PathBuf>, CollectionError>> + Send + 'a;
}

impl<S: BlockStore> PendingSource for Collection<S> {
    fn read<'a>(
        &'a self,
        shard: u32,
        run: &'a [(EntryKey, Pending)],
    ) -> impl Future<Output = Result<Vec<Option<Entry>>, CollectionError>> + Send + 'a {
        std::future::ready(self.current_entries(shard, run))
    }

    fn snapshot_files<'a>(
        &'a self,
        through: u64,
        trees: &'a CacheTag,
    ) -> impl Future<Output = Result<Option<PathBuf>, CollectionError>> + Send + 'a {
        std::future::ready(self.snapshot_files_now(through, trees))
    }
}

impl<S: BlockStore> PendingSource for tokio::sync::RwLock<Collection<S>> {
    async fn read<'a>(
        &'a self,
        shard: u32,
        run: &'a [(EntryKey, Pending)],
    ) -> Result<Vec<Option<Entry>>, CollectionError> {
        self.read().await.current_entries(shard, run)
    }

    async fn snapshot_files<'a>(
        &'a self,
        through: u64,
        trees: &'a CacheTag,
    ) -> Result<Option<PathBuf>, CollectionError> {
        // Writers wait meanwhile (searches go on): none is between its graph inserts and
        // placing them, and none starts.
        let applier = self.read().await.applier();
        let _turn = applier.lock().await;
        self.read().await.snapshot_files_now(through, trees)
    }
}

/// What step 1 saw: the writes to commit.
pub struct CheckpointPlan<S> {
    store: S,
    name: String,
    owner: Keypair,
    head: HeadRecord,
    /// The CID of `manifest`, the version the new one follows.
    at: cid::Cid,
    manifest: Manifest,
    shards: Vec<ShardRoot>,
    /// The last log record the pending writes reach.
    through: u64,
    by_shard: BTreeMap<u32, Vec<(EntryKey, Pending)>>,
    /// What becomes of the index snapshot the versions name.
    snapshot: SnapshotStep,
    #[cfg(test)]
    pause: Arc<std::sync::Mutex<Option<super::tests::pause::Pause>>>,
}

impl<S> std::fmt::Debug for CheckpointPlan<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointPlan")
            .field("name", &self.name)
            .field("base", &self.head.seq)
            .field("through", &self.through)
            .field(
                "entries",
                &self.by_shard.values().map(Vec::len).sum::<usize>(),
            )
            .finish()
    }
}

/// What a checkpoint does with the index snapshot the versions name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotStep {
    /// The new version names the one the old one did.
    Keep,
    /// It names a new one, if the index still reflects the new trees when they are built.
    Publish,
    /// It names none.
    Clear,
}

/// What step 2 built: the new version, not yet in effect.
#[derive(Debug)]
pub struct BuiltCheckpoint {
    base_seq: u64,
    head: HeadRecord,
    manifest: Manifest,
    shards: Vec<ShardRoot>,
    through: u64,
    /// The writes the trees took, by shard.
    committed: BTreeMap<u32, Vec<(EntryKey, Pending)>>,
    /// Whether the new version names a snapshot published by this checkpoint.
    pub(super) published: bool,
    /// Whether it is the version before with nothing changed: no write taken, and the
    /// snapshot published the one named already (the same bytes).
    pub(super) same: bool,
}

impl<S: BlockStore> Collection<S> {
    /// Publishes a version that changes no point and names a new index snapshot, if one is
    /// due ([`Collection::plan_snapshot`]); whether it did.
    pub async fn publish_snapshot(&mut self) -> Result<bool, CollectionError> {
        let Some(plan) = self.plan_snapshot()? else {
            return Ok(false);
        };
        let built = plan.build(&*self).await?;
        self.finish_snapshot(built).await
    }

    /// Puts a built version of [`Collection::plan_snapshot`] in effect if it published a
    /// snapshot that differs from the one named; whether it did.
    pub(super) async fn finish_snapshot(
        &mut self,
        built: BuiltCheckpoint,
    ) -> Result<bool, CollectionError> {
        if built.published && built.same && self.head.seq == built.base_seq {
            self.since_snapshot = Some(0);
        }
        if !built.published || built.same {
            return Ok(false);
        }
        self.finish_checkpoint(built).await?;
        Ok(true)
    }

    /// Puts every pending write in the trees and publishes the new version. With exclusive
    /// access nothing else plans or finishes a checkpoint meanwhile, so this does not wait for
    /// the turn: a shared checkpoint that is building (and may be waiting for this very
    /// access) finds the collection moved on and discards its result.
    pub async fn checkpoint(&mut self) -> Result<(), CollectionError> {
        if let Some(plan) = self.plan_checkpoint()? {
            let built = plan.build(&*self).await?;
            self.finish_checkpoint(built).await?;
        }
        Ok(())
    }

    /// Step 1: the pending writes to commit, or `None` if there is nothing to do.
    pub fn plan_checkpoint(&self) -> Result<Option<CheckpointPlan<S>>, CollectionError> {
        if self.pending_count() == 0 || self.retired {
            return Ok(None);
        }
        let snapshot = match self.publishing {
            None => SnapshotStep::Clear,
            Some(publishing) => {
                let changed = self
                    .since_snapshot
                    .map(|since| since + self.pending_count() as u64);
                match snapshot::due(&publishing, self.points(), changed, false) {
                    true => SnapshotStep::Publish,
                    false => SnapshotStep::Keep,
                }
            }
        };
        self.plan(snapshot).map(Some)
    }

    /// Step 1 of a version that changes no point and names a new index snapshot, for a
    /// collection written here that was quiet since the last write (see
    /// [`snapshot::due`]); `None` when none is due.
    pub fn plan_snapshot(&self) -> Result<Option<CheckpointPlan<S>>, CollectionError> {
        match self.snapshot_due() {
            true => self.plan(SnapshotStep::Publish).map(Some),
            false => Ok(None),
        }
    }

    /// Whether a version of its own should publish a new index snapshot now: this node
    /// writes the collection, nothing is pending, and enough changed since the last one.
    pub fn snapshot_due(&self) -> bool {
        let quiet = self.pending_count() == 0 && !self.retired && self.writable();
        let due = self.publishing.is_some_and(|publishing| {
            snapshot::due(&publishing, self.points(), self.since_snapshot, true)
        });
        quiet && due && self.since_snapshot != Some(0)
    }

    /// Whether no write was applied since the last call (the daemon's commit tick asks
    /// before it publishes a snapshot of its own: writes stopped for a tick at least).
    pub fn quiet_since_asked(&self) -> bool {
        let before = self
            .quiet_mark
            .swap(self.applied, std::sync::atomic::Ordering::Relaxed);
        before == self.applied
    }

    fn plan(&self, snapshot: SnapshotStep) -> Result<CheckpointPlan<S>, CollectionError> {
        let by_shard: BTreeMap<u32, Vec<(EntryKey, Pending)>> = self
            .held
            .iter()
            .filter(|(_, shard)| !shard.pending.is_empty())
            .map(|(number, shard)| {
                let writes = shard
                    .pending
                    .iter()
                    .map(|(id, pending)| (id.clone(), pending.clone()))
                    .collect();
                (*number, writes)
            })
            .collect();
        Ok(CheckpointPlan {
            store: self.store.clone(),
            name: self.name(),
            owner: self.owner()?.clone(),
            head: self.head.clone(),
            at: self.at,
            manifest: self.manifest.clone(),
            shards: self.roots.clone(),
            through: self.applied,
            by_shard,
            snapshot,
            #[cfg(test)]
            pause: self.checkpoint_pause.clone(),
        })
    }

    /// Step 3: puts a built version in effect, unless the collection moved on meanwhile (it
    /// was dropped, or another version was put in effect: the built one is then discarded and
    /// its writes stay pending).
    pub async fn finish_checkpoint(
        &mut self,
        built: BuiltCheckpoint,
    ) -> Result<(), CollectionError> {
        if self.retired || self.head.seq != built.base_seq {
            return Ok(());
        }
        let manifest_cid = built.head.manifest;
        // Durable order: blocks (flushed by step 2), then the pin moves to the new manifest
        // (which links the old one), then the head file names it and the log records it holds;
        // then the log drops those records.
        self.pin_version(&manifest_cid, &built.manifest).await?;
        self.store.flush().await?;
        catalog::write_head(&self.dir, &built.head, built.through)?;
        self.wal.drop_through(built.through)?;
        let committed: usize = built.committed.values().map(Vec::len).sum();
        self.since_snapshot = match (built.published, snapshot::named(&built.shards)) {
            (true, _) => Some(0),
            // Not known since this process started: stays so until one is published.
            (false, Some(_)) => self.since_snapshot.map(|since| since + committed as u64),
            (false, None) => None,
        };
        for (number, taken) in &built.committed {
            if let Some(shard) = self.held.get_mut(number) {
                shard.committed(built.shards[*number as usize].clone(), taken);
            }
        }
        self.changed();
        self.at = built.head.manifest;
        self.heads
            .insert(built.head.writer.clone(), built.head.clone());
        self.head = built.head;
        self.manifest = built.manifest;
        self.roots = built.shards;
        self.save_merge()?;
        Ok(())
    }

    /// The lock that makes checkpoints of this collection take turns.
    pub fn checkpoint_turn(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.checkpoint_turn.clone()
    }
}

impl<S: BlockStore> Collection<S> {
    /// See [`PendingSource::snapshot_files`].
    fn snapshot_files_now(
        &self,
        through: u64,
        trees: &CacheTag,
    ) -> Result<Option<PathBuf>, CollectionError> {
        if self.retired || self.applied != through || self.index.has_prepared() {
            return Ok(None);
        }
        snapshot::write_files(&self.dir, &self.index.index, &self.index.keys, trees).map(Some)
    }

    /// The entries of shard `shard`'s `run` whose pending write is still the one given.
    fn current_entries(
        &self,
        shard: u32,
        run: &[(EntryKey, Pending)],
    ) -> Result<Vec<Option<Entry>>, CollectionError> {
        match self.held.get(&shard) {
            Some(shard) => shard.current_entries(run, &self.index),
            None => Ok(vec![None; run.len()]),
        }
    }
}

impl<S: BlockStore> CheckpointPlan<S> {
    /// Step 2: builds the new trees, shard roots and manifest, writes their blocks and signs
    /// the head; reads vectors back through `source` a run at a time.
    pub async fn build(
        self,
        source: &impl PendingSource,
    ) -> Result<BuiltCheckpoint, CollectionError> {
        #[cfg(test)]
        super::tests::pause::reached(&self.pause);
        let mut manifest = self.manifest.clone();
        let mut shards = self.shards;
        let mut committed: BTreeMap<u32, Vec<(EntryKey, Pending)>> = BTreeMap::new();
        // The shards whose root block changes.
        let mut changed = BTreeSet::new();
        // A run of consecutive ids at a time: besides the index, only that run's vectors are
        // held (as entries, and as the items and leaves the tree encodes from them).
        for (shard, writes) in self.by_shard {
            let root = &mut shards[shard as usize];
            for run in writes.chunks(CHECKPOINT_RUN) {
                let entries = source.read(shard, run).await?;
                let mut edits = Vec::with_capacity(run.len());
                for ((id, taken), entry) in run.iter().zip(entries) {
                    // An id written again since step 1 waits for the next checkpoint.
                    if let Some(entry) = entry {
                        root.points = (root.points as i64 + taken.delta).max(0) as u64;
                        committed
                            .entry(shard)
                            .or_default()
                            .push((id.clone(), taken.clone()));
                        edits.push(Edit::Put(entry));
                    }
                }
                if !edits.is_empty() {
                    root.tree = tree::apply(&self.store, root.tree, edits).await?.0;
                }
            }
            changed.insert(shard);
        }
        let mut published = false;
        let before = snapshot::named(&shards);
        let named = match self.snapshot {
            SnapshotStep::Keep => snapshot::named(&shards),
            SnapshotStep::Clear => None,
            SnapshotStep::Publish => {
                let trees: CacheTag = shards.iter().map(|r| (r.shard, r.tree)).collect();
                match source.snapshot_files(self.through, &trees).await? {
                    Some(stem) => {
                        published = true;
                        let listing = snapshot::publish_files(&self.store, &stem).await?;
                        tracing::info!(collection = %self.name, %listing, "published an index snapshot");
                        Some(listing)
                    }
                    // Written to since step 1: the next checkpoint tries again.
                    None => snapshot::named(&shards),
                }
            }
        };
        for root in &mut shards {
            if root.index != named {
                root.index = named;
                changed.insert(root.shard);
            }
        }
        for shard in changed {
            manifest.shards[shard as usize] = self
                .store
                .put(
                    DAG_CBOR,
                    Bytes::from(dagcbor::encode(&shards[shard as usize])?),
                )
                .await?;
        }
        manifest.prev = Some(self.at);
        manifest.updated = now_millis().max(manifest.updated);
        manifest.points = shards.iter().map(|s| s.points).sum();
        let manifest_cid = self
            .store
            .put(DAG_CBOR, Bytes::from(dagcbor::encode(&manifest)?))
            .await?;
        let head = HeadRecord::sign(
            owner_key(&manifest)?,
            self.head.seq + 1,
            manifest_cid,
            &self.owner,
        )?;
        self.store.flush().await?;
        let entries: usize = committed.values().map(Vec::len).sum();
        tracing::debug!(collection = %self.name, seq = head.seq, entries, "checkpoint built");
        Ok(BuiltCheckpoint {
            base_seq: self.head.seq,
            head,
            manifest,
            shards,
            through: self.through,
            same: committed.is_empty() && named == before,
            committed,
            published,
        })
    }
}

/// The collection key a head of `manifest`'s collection names: its owner's.
pub(super) fn owner_key(manifest: &Manifest) -> Result<[u8; 32], CollectionError> {
    <[u8; 32]>::try_from(manifest.owner.as_slice())
        .map_err(|_| CollectionError::Invalid("the manifest's owner is not a 32-byte key".into()))
}
