//! Bringing a collection into being here: creating it, registering one fetched or imported
//! (whole or some shards), opening it from its folder (each held shard's index loaded or
//! rebuilt, the log replayed), and moving a replica to a newer signed head.

use std::{collections::BTreeMap, path::Path};

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{
    cid::DAG_CBOR,
    dagcbor,
    head::{public_key_bytes, HeadRecord},
    manifest::{shard_range, Manifest, ShardRoot},
};
use libp2p_identity::Keypair;

use super::{
    catalog, index_spec, next_generation, now_millis, pin_version, shard, wal, write, Collection,
    CollectionError, CollectionSpec, HeldIndex, LocalShard, OpenProgress,
};
use crate::{store::BlockStore, tree};

/// A new held set of a partial replica, its index built ([`Collection::prepare_held`]).
pub struct PreparedHeld<S: BlockStore> {
    /// The version and held set it was built from.
    at: Cid,
    base: Vec<u32>,
    held: Vec<u32>,
    shards: BTreeMap<u32, LocalShard<S>>,
    index: HeldIndex,
}

impl<S: BlockStore> std::fmt::Debug for PreparedHeld<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedHeld")
            .field("at", &self.at)
            .field("base", &self.base)
            .field("held", &self.held)
            .finish_non_exhaustive()
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
        let mut roots = Vec::new();
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
            roots.push(root);
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
            replication: spec.replication,
            writers: vec![serde_bytes::ByteBuf::from(owner_pk.to_vec())],
            shards: shard_cids,
            prev: None,
            created: now,
            updated: now,
            points: 0,
            embedding: spec.embedding.clone(),
        };
        manifest.validate()?;
        let manifest_cid = store
            .put(DAG_CBOR, Bytes::from(dagcbor::encode(&manifest)?))
            .await?;
        let head = HeadRecord::sign(owner_pk, 1, manifest_cid, &owner)?;
        catalog::write_new(dir, Some(&owner), &head)?;
        let (wal, _) = wal::Wal::open(&dir.join("wal"), 0)?;
        pin_version(&store, &spec.name, &manifest_cid, &manifest, None).await?;
        store.flush().await?;
        let index = HeldIndex::empty(index_spec(&manifest))?;
        let held = roots
            .iter()
            .map(|root| (root.shard, LocalShard::new(store.clone(), root.clone())))
            .collect();
        let mut this = Self {
            store,
            dir: dir.to_path_buf(),
            owner: Some(owner),
            heads: [(head.writer.clone(), head.clone())].into(),
            at: manifest_cid,
            head,
            manifest,
            roots,
            held,
            index,
            staging: Default::default(),
            applier: Default::default(),
            applied: wal.last_seq(),
            checkpoint_turn: Default::default(),
            #[cfg(test)]
            checkpoint_pause: Default::default(),
            wal: std::sync::Arc::new(wal),
            retired: false,
            publishing: None,
            write_threads: 1,
            since_snapshot: None,
            quiet_mark: u64::MAX.into(),
            generation: next_generation(),
        };
        this.save_index()?;
        Ok(this)
    }

    /// Registers a collection from a signed head whose DAG is already in the store (as after a
    /// CAR import). Without the owner key it is read-only.
    pub async fn adopt(store: S, dir: &Path, head: HeadRecord) -> Result<Self, CollectionError> {
        Self::adopt_shards(store, dir, head, None).await
    }

    /// Registers a collection of which this node holds the shards `held` only (all of them
    /// when `None`): the manifest and every shard root must be in the store, and the trees of
    /// the held shards. A partial replica is read-only, searches its shards only and says so
    /// ([`Collection::coverage`]).
    pub async fn adopt_shards(
        store: S,
        dir: &Path,
        head: HeadRecord,
        held: Option<Vec<u32>>,
    ) -> Result<Self, CollectionError> {
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
        let held = match held {
            Some(held) => Some(check_held(&held, manifest.shards.len() as u32)?),
            None => None,
        };
        let partial = held.as_deref().filter(|h| h.len() < manifest.shards.len());
        pin_version(&store, &name, &head.manifest, &manifest, partial).await?;
        catalog::write_new_partial(dir, &head, held.as_deref())?;
        store.flush().await?;
        Self::open(store, dir).await
    }

    /// Holds the shards `held` from now on, at this version, on a replica that is not a
    /// writer: the trees of the shards newly held must be in the store (a missing block is an
    /// error and changes nothing). The index is opened again over the held shards (its saved
    /// copy is used when it covers exactly them).
    pub async fn set_held(&mut self, held: &[u32]) -> Result<(), CollectionError> {
        let prepared = self.prepare_held(held).await?;
        self.finish_held(prepared).await.map(|_| ())
    }

    /// The first half of [`Collection::set_held`], which needs only shared access, so that
    /// searches go on while the index of the new held set is built.
    pub async fn prepare_held(&self, held: &[u32]) -> Result<PreparedHeld<S>, CollectionError> {
        if self.writable() {
            return Err(CollectionError::Invalid(
                "a writer's node holds every shard of its collection".into(),
            ));
        }
        let held = check_held(held, self.roots.len() as u32)?;
        let with_cids: Vec<(Cid, ShardRoot)> = self
            .manifest
            .shards
            .iter()
            .copied()
            .zip(self.roots.iter().cloned())
            .collect();
        let (shards, index) = shard::open_all(
            &self.store,
            index_spec(&self.manifest),
            &self.dir,
            &with_cids,
            &held,
            &OpenProgress::default(),
            0,
        )
        .await?;
        Ok(PreparedHeld {
            at: self.at,
            base: self.held_shards(),
            held,
            shards,
            index,
        })
    }

    /// The second half of [`Collection::set_held`]: puts the prepared held set in effect,
    /// unless the collection changed since it was prepared (another version, or another held
    /// set); `false` then, and nothing changes: prepare again.
    pub async fn finish_held(
        &mut self,
        prepared: PreparedHeld<S>,
    ) -> Result<bool, CollectionError> {
        if prepared.at != self.at || prepared.base != self.held_shards() {
            return Ok(false);
        }
        let PreparedHeld {
            held,
            shards,
            index,
            ..
        } = prepared;
        // Pinned for the old and new shards both while the folder changes from the one to
        // the other, then for the new ones: a crash in between loses neither.
        let mut both = self.held_shards();
        both.extend(&held);
        self.pin_shards(&check_held(&both, self.roots.len() as u32)?)
            .await?;
        catalog::write_held(&self.dir, &held)?;
        self.pin_shards(&held).await?;
        self.store.flush().await?;
        self.held = shards;
        self.index = index;
        self.generation = next_generation();
        self.save_index()?;
        Ok(true)
    }

    /// Pins this version for holding the shards `held` ([`super::pin_version`]).
    async fn pin_shards(&self, held: &[u32]) -> Result<(), CollectionError> {
        let partial = (held.len() < self.roots.len()).then_some(held);
        pin_version(&self.store, &self.name(), &self.at, &self.manifest, partial).await
    }

    /// Opens the collection in `dir`, loading its saved index or rebuilding it.
    pub async fn open(store: S, dir: &Path) -> Result<Self, CollectionError> {
        Self::open_with(store, dir, &OpenProgress::default(), 0).await
    }

    /// [`Collection::open`], telling `progress` how far the index build has come. A rebuild
    /// inserts from `threads` threads at once (0: one, which gives every replica the writer's
    /// graph; more build faster, each build a graph of its own).
    pub async fn open_with(
        store: S,
        dir: &Path,
        progress: &OpenProgress,
        threads: usize,
    ) -> Result<Self, CollectionError> {
        let (owner, head, committed) = catalog::read(dir)?;
        // With several writers, the manifest may be a merge no head names.
        let merge = catalog::read_merge(dir)?;
        let manifest_cid = merge
            .as_ref()
            .and_then(|m| m.manifest)
            .unwrap_or(head.manifest);
        let heads: BTreeMap<Vec<u8>, HeadRecord> = match merge {
            Some(merge) => merge
                .heads
                .into_iter()
                .map(|h| (h.writer.clone(), h))
                .collect(),
            None => [(head.writer.clone(), head.clone())].into(),
        };
        let manifest: Manifest = dagcbor::decode_trusted(&store.require(&manifest_cid).await?)?;
        // The head's writer was allowed when its version was merged (and may have been removed
        // since, its earlier entries kept).
        let mut writers: Vec<&[u8]> = manifest.writers.iter().map(|w| w.as_slice()).collect();
        writers.extend(heads.keys().map(|w| w.as_slice()));
        head.verify(&writers)?;
        let roots = read_roots(&store, &manifest).await?;
        let held = match catalog::read_held(dir)? {
            Some(held) => check_held(&held, roots.len() as u32)?,
            None => (0..roots.len() as u32).collect(),
        };
        if owner.is_some() && held.len() != roots.len() {
            return Err(CollectionError::Invalid(
                "the owner's node must hold every shard of its collection; remove the folder's \
                 `shards` file"
                    .into(),
            ));
        }
        catalog::remove_legacy_index(dir);
        let with_cids: Vec<(Cid, ShardRoot)> = manifest
            .shards
            .iter()
            .copied()
            .zip(roots.iter().cloned())
            .collect();
        let (held, index) = shard::open_all(
            &store,
            index_spec(&manifest),
            dir,
            &with_cids,
            &held,
            progress,
            threads,
        )
        .await?;
        let mut staging = write::Staging::default();
        staging
            .clock
            .observe(ipvec_protocol::hlc::Hlc::new(manifest.updated, 0));
        let (wal, records) = wal::Wal::open(&dir.join("wal"), committed)?;
        let mut this = Self {
            store,
            dir: dir.to_path_buf(),
            owner,
            head,
            heads,
            at: manifest_cid,
            manifest,
            roots,
            held,
            index,
            staging: std::sync::Mutex::new(staging),
            applier: Default::default(),
            applied: wal.last_seq(),
            checkpoint_turn: Default::default(),
            #[cfg(test)]
            checkpoint_pause: Default::default(),
            wal: std::sync::Arc::new(wal),
            retired: false,
            publishing: None,
            write_threads: 1,
            // How much changed since the named snapshot is not known: a writer publishes a new
            // one when it is next due (one of the same bytes makes no new version).
            since_snapshot: None,
            quiet_mark: u64::MAX.into(),
            generation: next_generation(),
        };
        // Writes acknowledged after the last checkpoint: replay, then put them in the trees.
        let replay: Vec<_> = records.into_iter().filter(|r| r.seq > committed).collect();
        if !replay.is_empty() {
            let count: usize = replay.iter().map(|r| r.entries.len()).sum();
            tracing::info!(
                records = replay.len(),
                entries = count,
                "replaying the write-ahead log"
            );
            for record in replay {
                this.apply_in_memory(record.entries.into_iter().map(|e| (e, None)))?;
            }
            // A writer other than the owner gets its key after opening
            // ([`Collection::take_writer_key`]): its replayed writes stay pending until then.
            if this.owner.is_some() {
                this.checkpoint().await?;
            }
        }
        Ok(this)
    }
}

/// Every shard root of `manifest`, in order, each checked to be at its own place.
pub async fn read_roots<S: BlockStore>(
    store: &S,
    manifest: &Manifest,
) -> Result<Vec<ShardRoot>, CollectionError> {
    let mut roots = Vec::with_capacity(manifest.shards.len());
    for (number, cid) in manifest.shards.iter().enumerate() {
        let root = dagcbor::decode_trusted::<ShardRoot>(&store.require(cid).await?)?;
        // Writes and lookups find a shard by its place in the manifest.
        if root.shard as usize != number {
            return Err(CollectionError::Invalid(format!(
                "the manifest's shard {number} ({cid}) names itself shard {}: a broken version \
                 that cannot be opened; ask the collection's writer to publish a new one",
                root.shard
            )));
        }
        roots.push(root);
    }
    Ok(roots)
}

/// Checks a set of shard numbers against a collection of `count` shards; returns them sorted.
/// It may be empty: a member of a collection that placement gives no shard yet holds none.
pub fn check_held(held: &[u32], count: u32) -> Result<Vec<u32>, CollectionError> {
    let mut sorted = held.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if let Some(bad) = sorted.iter().find(|n| **n >= count) {
        return Err(CollectionError::Invalid(format!(
            "the collection has {count} shards, numbered 0 to {}; there is no shard {bad}",
            count - 1
        )));
    }
    Ok(sorted)
}
