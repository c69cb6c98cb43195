//! The writers a collection allows: the manifest's `writers`, which only the owner changes.
//!
//! A change is a new version: the same shards under a manifest whose writer list differs,
//! with the old version as `prev`, signed by the owner. Replicas take it like any version and
//! from then on accept heads only from the keys it lists (`HeadRecord::verify`). The owner's
//! own key always stays: it signs every change of the list. Writes still in the log stay
//! pending and go into the next version.

use bytes::Bytes;
use ipvec_protocol::{cid::DAG_CBOR, dagcbor, head::HeadRecord};

use super::{catalog, now_millis, Collection, CollectionError};
use crate::store::BlockStore;

/// Most writers a collection may list (every head check looks the signer up in the list).
pub const MAX_WRITERS: usize = 256;

/// A change of a collection's writer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterChange {
    /// Allow this 32-byte ed25519 key to publish versions.
    Add([u8; 32]),
    /// Stop allowing it.
    Remove([u8; 32]),
}

impl<S: BlockStore> Collection<S> {
    /// The keys allowed to publish versions (32-byte ed25519), the owner's first.
    pub fn writers(&self) -> Vec<[u8; 32]> {
        self.manifest
            .writers
            .iter()
            .filter_map(|w| <[u8; 32]>::try_from(w.as_slice()).ok())
            .collect()
    }

    /// Applies `change` to the writer list as a new version signed by the owner; `Ok(false)`
    /// when the list already is as asked (no new version). Refused on a node without the
    /// owner key, for the owner's own key, and past [`MAX_WRITERS`].
    pub async fn change_writers(&mut self, change: WriterChange) -> Result<bool, CollectionError> {
        self.check_live()?;
        let owner = self.owner()?.clone();
        let name = self.name();
        if ipvec_protocol::head::public_key_bytes(&owner)?.as_slice() != self.manifest.owner {
            return Err(CollectionError::Invalid(format!(
                "this node writes collection {name:?} with a writer key, not the owner's: only \
                 the owner's node changes the writer list"
            )));
        }
        let mut manifest = self.manifest.clone();
        let listed = |key: &[u8; 32]| manifest.writers.iter().position(|w| w.as_slice() == key);
        match change {
            WriterChange::Add(key) => {
                if listed(&key).is_some() {
                    return Ok(false);
                }
                if manifest.writers.len() >= MAX_WRITERS {
                    return Err(CollectionError::Invalid(format!(
                        "collection {name:?} already lists {MAX_WRITERS} writers, the most it \
                         may; remove one first (`ipvec collection writers rm`)"
                    )));
                }
                manifest
                    .writers
                    .push(serde_bytes::ByteBuf::from(key.to_vec()));
            }
            WriterChange::Remove(key) => {
                if key.as_slice() == manifest.owner.as_slice() {
                    return Err(CollectionError::Invalid(format!(
                        "that is the owner's key of collection {name:?}: it signs every change \
                         of the writer list and cannot be removed"
                    )));
                }
                let Some(at) = listed(&key) else {
                    return Ok(false);
                };
                manifest.writers.remove(at);
            }
        }
        manifest.prev = Some(self.at);
        manifest.updated = now_millis().max(manifest.updated);
        let manifest_cid = self
            .store
            .put(DAG_CBOR, Bytes::from(dagcbor::encode(&manifest)?))
            .await?;
        let head = HeadRecord::sign(
            super::checkpoint::owner_key(&manifest)?,
            self.head.seq + 1,
            manifest_cid,
            &owner,
        )?;
        // The head file keeps the log position its trees hold: the shards are the same.
        let (_, _, through) = catalog::read(&self.dir)?;
        // Durable order as a checkpoint's: the block, the pin, then the head file.
        self.store.flush().await?;
        self.pin_version(&manifest_cid, &manifest).await?;
        self.store.flush().await?;
        catalog::write_head(&self.dir, &head, through)?;
        self.changed();
        self.at = manifest_cid;
        self.heads.insert(head.writer.clone(), head.clone());
        self.head = head;
        self.manifest = manifest;
        self.save_merge()?;
        tracing::info!(collection = %name, seq = self.head.seq, writers = self.manifest.writers.len(), "writer list changed");
        Ok(true)
    }
}
