//! Following and merging writers' versions.
//!
//! Every writer signs heads of its own (its own sequence), and a version names the shard
//! trees as that writer has them. A node takes another writer's version by merging each held
//! shard's tree with it ([`tree::merge`]: the union of the entries, last writer wins per id by
//! `(hlc, writer)`, deletions kept as tombstones). The merge is commutative, associative and
//! idempotent and the trees are history-independent, so **nodes that merged the same writers'
//! heads hold the same trees, whatever order the heads came in**, and the same
//! [`Collection::merged_root`].
//!
//! - A replica that finds the merge equal to the version's own trees (one writer, or a writer
//!   that had merged everything this node holds) simply moves to that version, as it always
//!   has. Otherwise it writes the merge as a manifest of its own (the settings of the newest
//!   version, the merged shard roots, the previous version as `prev`) that no head names: the
//!   `merge` file records it with the heads it merges.
//! - A writer commits its pending writes first, merges, then signs the merge as its own next
//!   version (and the caller gossips it), so every writer's newest head ends up naming the
//!   union of what all of them wrote; its clock moves past the newest entry merged, so its
//!   next writes win over what it has seen.
//!
//! Heads are accepted only from keys the current manifest lists ([`super::writers`]); a
//! writer's head no newer than the one already merged from it changes nothing.

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{
    cid::{block_cid, DAG_CBOR},
    dagcbor,
    head::{public_key_bytes, HeadRecord},
    hlc::Hlc,
    manifest::{Manifest, ShardRoot},
};
use libp2p_identity::Keypair;

use super::{
    catalog, checkpoint::owner_key, index_spec, list_shards, open::read_roots, Collection,
    CollectionError,
};
use crate::{store::BlockStore, tree};

impl<S: BlockStore> Collection<S> {
    /// The newest head of each writer merged here, by writer key.
    pub fn writer_heads(&self) -> Vec<HeadRecord> {
        self.heads.values().cloned().collect()
    }

    /// The key this node signs versions with, if it writes the collection.
    pub fn signer_key(&self) -> Option<[u8; 32]> {
        self.owner.as_ref().and_then(|k| public_key_bytes(k).ok())
    }

    /// A CID of the shard trees alone: equal on every node that holds the same points, whatever
    /// versions and histories got them there (the manifest CID, [`Collection::root`], also
    /// covers settings, times and the previous version).
    pub fn merged_root(&self) -> Result<Cid, CollectionError> {
        let trees: Vec<Cid> = self.roots.iter().map(|r| r.tree).collect();
        Ok(block_cid(DAG_CBOR, &dagcbor::encode(&trees)?))
    }

    /// Writes the collection with `key` (this node's) while the manifest lists it and the
    /// node holds every shard, and stops when the owner removes it (its writes are then
    /// refused as read-only); whether this call changed that. The owner's key is never given
    /// up.
    pub fn take_writer_key(&mut self, key: &Keypair) -> Result<bool, CollectionError> {
        let public = public_key_bytes(key)?;
        let listed = self
            .manifest
            .writers
            .iter()
            .any(|w| w.as_slice() == public.as_slice());
        let is_owner = public.as_slice() == self.manifest.owner.as_slice();
        match self.signer_key() {
            None if listed && self.holds_all() => {
                self.owner = Some(key.clone());
                Ok(true)
            }
            Some(signer) if signer == public && !listed && !is_owner => {
                self.owner = None;
                tracing::warn!(collection = %self.name(), "the owner removed this node's key from the writers: read-only from now on");
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Records which heads are merged here, and the merge's manifest when no head names it
    /// (no file while the collection is one writer's version).
    pub(super) fn save_merge(&self) -> Result<(), CollectionError> {
        let path = self.dir.join("merge");
        if self.heads.len() <= 1 && self.at == self.head.manifest {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(super::io_at(&path)(e)),
                _ => Ok(()),
            };
        }
        catalog::write_merge(
            &self.dir,
            &catalog::MergeFile {
                manifest: (self.at != self.head.manifest).then_some(self.at),
                heads: self.writer_heads(),
            },
        )
    }

    /// Takes a newer signed head of this collection whose blocks (the held shards' trees at
    /// least) are in the store: merges its version into the held shards and applies what
    /// changed to the index (see the module). `Ok(true)` if this node's version changed; a
    /// head no newer than the one merged from its writer changes nothing. A writer's pending
    /// writes are committed first, and the merge becomes its own next version.
    pub async fn advance(&mut self, head: HeadRecord) -> Result<bool, CollectionError> {
        self.check_live()?;
        if head.collection != self.manifest.owner {
            return Err(CollectionError::Invalid(
                "the head is of another collection".into(),
            ));
        }
        let merged_seq = self.heads.get(&head.writer).map_or(0, |h| h.seq);
        let own = self
            .owner
            .as_ref()
            .map(public_key_bytes)
            .transpose()?
            .is_some_and(|k| k.as_slice() == head.writer.as_slice());
        if head.seq <= merged_seq || own {
            return Ok(false);
        }
        let writers: Vec<&[u8]> = self.manifest.writers.iter().map(|w| w.as_slice()).collect();
        head.verify(&writers)?;
        let theirs: Manifest = dagcbor::decode(&self.store.require(&head.manifest).await?)?;
        theirs.validate()?;
        let same_layout = theirs.shards.len() == self.roots.len()
            && index_spec(&theirs) == index_spec(&self.manifest);
        if !same_layout {
            return self.move_to_new_layout(head, theirs).await;
        }
        let their_roots = read_roots(&self.store, &theirs).await?;
        for number in self.held.keys() {
            let tree = their_roots[*number as usize].tree;
            crate::store::dag::check_complete(&self.store, &tree).await?;
        }
        if self.owner.is_some() {
            // Merged trees must hold every acknowledged write, and the writes made after the
            // merge must be newer than what it brings.
            self.checkpoint().await?;
        }
        // Each held shard: the merge of ours and theirs.
        let mut merged = Vec::with_capacity(self.held.len());
        for number in self.held.keys() {
            let (ours, theirs) = (
                self.roots[*number as usize].tree,
                their_roots[*number as usize].tree,
            );
            let tree = if ours == theirs {
                ours
            } else {
                tree::merge(&self.store, ours, theirs).await?.0
            };
            merged.push((*number, tree));
        }
        // Settings (the writer list among them) come with the owner's versions only; another
        // writer's carry them as it last saw them, and are not taken from it.
        let from_owner = head.writer == self.manifest.owner;
        let theirs_whole = merged
            .iter()
            .all(|(n, tree)| *tree == their_roots[*n as usize].tree)
            && (from_owner || same_settings(&theirs, &self.manifest));
        let name = self.name();
        let ours_whole = merged
            .iter()
            .all(|(n, tree)| *tree == self.roots[*n as usize].tree);
        let new_settings = from_owner && !same_settings(&theirs, &self.manifest);
        if ours_whole && !new_settings && !(self.owner.is_none() && theirs_whole) {
            // Nothing new in the held shards nor in the settings (a writer merging a version
            // it already holds would otherwise answer every merge with one of its own,
            // forever): only note the head.
            self.heads.insert(head.writer.clone(), head);
            self.save_merge()?;
            return Ok(false);
        }
        let moved = if self.owner.is_none() && theirs_whole {
            // Their version is the merge: move to it.
            self.pin_version(&head.manifest, &theirs).await?;
            let through = catalog::read(&self.dir)?.2;
            catalog::write_head(&self.dir, &head, through)?;
            self.apply_roots(&their_roots).await?;
            self.at = head.manifest;
            self.manifest = theirs;
            self.roots = their_roots;
            self.heads.insert(head.writer.clone(), head.clone());
            self.head = head;
            true
        } else {
            let mut manifest = if from_owner {
                theirs.clone()
            } else {
                self.manifest.clone()
            };
            let mut roots = self.roots.clone();
            // The index snapshot ours named stays named: a replica that loads it applies the
            // trees' differences since, the merge's among them.
            for (number, tree) in &merged {
                roots[*number as usize].tree = *tree;
            }
            // Shards not held here: the newer version's roots.
            for number in 0..roots.len() as u32 {
                if !self.held.contains_key(&number) && theirs.updated >= self.manifest.updated {
                    roots[number as usize] = their_roots[number as usize].clone();
                }
            }
            let (newest_hlc, changed) = self.apply_roots(&roots).await?;
            self.since_snapshot = self.since_snapshot.map(|since| since + changed);
            for (number, shard) in &self.held {
                roots[*number as usize].points = shard.root.points;
            }
            for (number, root) in roots.iter().enumerate() {
                manifest.shards[number] = self
                    .store
                    .put(DAG_CBOR, Bytes::from(dagcbor::encode(root)?))
                    .await?;
            }
            manifest.prev = Some(self.at);
            manifest.updated = manifest
                .updated
                .max(theirs.updated)
                .max(self.manifest.updated);
            manifest.points = roots.iter().map(|r| r.points).sum();
            let cid = self
                .store
                .put(DAG_CBOR, Bytes::from(dagcbor::encode(&manifest)?))
                .await?;
            self.heads.insert(head.writer.clone(), head.clone());
            // A writer signs the merge as its next version, unless the owner's version it
            // merges has just removed its key (it is then a replica like any other).
            let listed = |key: &Keypair| {
                public_key_bytes(key).is_ok_and(|k| {
                    manifest
                        .writers
                        .iter()
                        .any(|w| w.as_slice() == k.as_slice())
                })
            };
            if let Some(key) = self.owner.clone().filter(listed) {
                let seq = self.head.seq.max(head.seq) + 1;
                let own = HeadRecord::sign(owner_key(&manifest)?, seq, cid, &key)?;
                self.staging().clock.observe(Hlc(newest_hlc));
                self.heads.insert(own.writer.clone(), own.clone());
                self.head = own;
            } else if head.seq > self.head.seq {
                self.head = head;
            }
            // Durable order: the blocks, the pin, the merge file, then the head file.
            self.store.flush().await?;
            self.pin_version(&cid, &manifest).await?;
            self.store.flush().await?;
            self.at = cid;
            self.manifest = manifest;
            self.roots = roots;
            self.save_merge()?;
            let through = catalog::read(&self.dir)?.2;
            catalog::write_head(&self.dir, &self.head, through)?;
            true
        };
        self.save_merge()?;
        self.changed();
        tracing::debug!(collection = %name, at = %self.at, writers = self.heads.len(), "merged a writer's version");
        Ok(moved)
    }

    /// Moves every held shard to `roots` (applying what changed to the index, and counting
    /// the live points from the changes); the newest clock stamp among the entries taken,
    /// and how many entries changed.
    async fn apply_roots(&mut self, roots: &[ShardRoot]) -> Result<(u64, u64), CollectionError> {
        let mut newest = 0;
        let mut changed = 0u64;
        for (number, shard) in &mut self.held {
            let before = shard.root.points;
            let advanced = shard
                .advance(roots[*number as usize].clone(), &mut self.index)
                .await?;
            shard.root.points = (before as i64 + advanced.live_delta).max(0) as u64;
            newest = newest.max(advanced.newest_hlc);
            changed += advanced.changed;
        }
        tracing::debug!(collection = %self.name(), changed, "applied a version's changes");
        Ok((newest, changed))
    }

    /// Moves a replica holding every shard to a version whose shard layout or index settings
    /// differ (it is reopened, which rebuilds the index). Only the owner changes those, and a
    /// merge across layouts is not possible: a replica holding some shards, or a writer, is
    /// refused with what to do.
    async fn move_to_new_layout(
        &mut self,
        head: HeadRecord,
        theirs: Manifest,
    ) -> Result<bool, CollectionError> {
        if !self.holds_all() || self.owner.is_some() || self.heads.len() > 1 {
            return Err(CollectionError::Invalid(format!(
                "version {} of collection {:?} changes its shard layout or index settings, and \
                 this node holds only shards {} or merges several writers; drop it and fetch \
                 it again",
                head.seq,
                self.name(),
                list_shards(&self.held_shards())
            )));
        }
        crate::store::dag::check_complete(&self.store, &head.manifest).await?;
        self.pin_version(&head.manifest, &theirs).await?;
        let through = catalog::read(&self.dir)?.2;
        catalog::write_head(&self.dir, &head, through)?;
        self.store.flush().await?;
        *self = Self::open(self.store.clone(), &self.dir).await?;
        Ok(true)
    }
}

/// Whether two versions have the same settings (all but their shards, times, counts and
/// previous version).
fn same_settings(a: &Manifest, b: &Manifest) -> bool {
    let strip = |m: &Manifest| Manifest {
        shards: Vec::new(),
        prev: None,
        updated: 0,
        points: 0,
        ..m.clone()
    };
    strip(a) == strip(b)
}
