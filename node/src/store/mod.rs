//! Block storage: content-addressed blocks, pins, garbage collection, CAR files.
//!
//! Blocks are stored by their BLAKE3 digest (the iroh-blobs hash); the codec travels in the
//! CIDs that link to them, as in Kubo's multihash-keyed blockstore. Every block read back is
//! verified against its CID. Pins are recursive (garbage collection keeps every block reachable
//! from a pinned root) or shallow (it keeps the pinned block and the blocks it links to, as a
//! partial replica keeps its manifest and shard roots without the trees of shards it does not
//! hold); it removes the rest.
//!
//! # Layout
//! - [`BlockStore`]: the trait every backend implements.
//! - [`iroh`]: the iroh-blobs backend (`FsStore` on disk by default, `MemStore` in memory).
//! - [`memory`]: a plain in-memory backend, the reference implementation.
//! - [`dag`]: walking DAGs: reachable sets, completeness checks.
//! - [`gc`]: mark and sweep.
//! - [`car`]: CAR v1 export and import.

pub mod car;
pub mod dag;
pub mod gc;
pub mod iroh;
pub mod memory;

#[cfg(test)]
mod conformance;

use std::{collections::HashSet, future::Future};

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{cid as pcid, ProtocolError};

pub use self::iroh::IrohBlockStore;
pub use self::memory::MemBlockStore;

/// A block's 32-byte BLAKE3 digest: its key in the store.
pub type Digest = [u8; 32];

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The block is not in the store.
    #[error(
        "block {0} is not in the local store; import it (ipvec dag import) or fetch it from a peer"
    )]
    NotFound(Cid),
    /// A stored block no longer matches its CID: the disk or the store is damaged.
    #[error("stored block {cid} is corrupt ({detail}); remove the repository's damaged data and re-import it")]
    Corrupt { cid: Cid, detail: String },
    /// A backend read bytes that do not hash to the digest asked for (what [`BlockStore::get`]
    /// reports as [`StoreError::Corrupt`], naming the block).
    #[error("stored bytes do not hash to their digest ({0}); remove the repository's damaged data and re-import it")]
    Mismatch(String),
    /// The block or CID breaks the protocol's rules.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The backend failed.
    #[error("block store failure: {0}")]
    Backend(String),
    /// A CAR file is malformed, truncated or holds a bad block.
    #[error("invalid CAR file at byte {offset}: {reason}; nothing from it was pinned")]
    Car { offset: u64, reason: String },
    /// A file could not be read or written.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Block count and bytes of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes of block data stored.
    pub bytes: u64,
}

/// A stored block's key and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockInfo {
    /// BLAKE3 digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepStats {
    /// Blocks removed.
    pub blocks: u64,
    /// Bytes removed.
    pub bytes: u64,
}

/// A content-addressed block store with recursive pins.
///
/// Implementations share the conformance suite in `store/conformance.rs`.
pub trait BlockStore: Clone + Send + Sync + 'static {
    /// Stores `bytes` (already verified to hash to `digest`). Storing a block twice is a no-op.
    fn put_raw(
        &self,
        digest: Digest,
        bytes: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The bytes stored under `digest`, or `None`; checked against it only when
    /// [`BlockStore::reads_verified`] says so ([`StoreError::Mismatch`] when they fail).
    fn get_raw(
        &self,
        digest: Digest,
    ) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;

    /// Whether [`BlockStore::get_raw`] checks what it reads against the digest, so that
    /// [`BlockStore::get`] need not hash the bytes again.
    fn reads_verified(&self) -> bool {
        false
    }

    /// Whether a block is stored under `digest`.
    fn has_digest(&self, digest: Digest) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every stored block.
    fn list(&self) -> impl Future<Output = Result<Vec<BlockInfo>, StoreError>> + Send;

    /// Points the recursive pin called `name` at `root`, replacing what it pinned before (the
    /// new root is pinned before the old one is released). Callers check the DAG is complete.
    /// Names hold no `/`.
    fn pin_as(&self, name: &str, root: &Cid)
        -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the pin called `name`; returns whether there was one.
    fn unpin_name(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every recursive pin: its name and root.
    fn pins(&self) -> impl Future<Output = Result<Vec<(String, Cid)>, StoreError>> + Send;

    /// Points the shallow pin called `name` at `block`: garbage collection keeps that block and
    /// the blocks it links to, not (for this pin's sake) what those link to. Shallow pins have
    /// names of their own (a recursive and a shallow pin may share one). Names hold no `/`.
    fn pin_shallow_as(
        &self,
        name: &str,
        block: &Cid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the shallow pin called `name`; returns whether there was one.
    fn unpin_shallow_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every shallow pin: its name and block.
    fn shallow_pins(&self) -> impl Future<Output = Result<Vec<(String, Cid)>, StoreError>> + Send;

    /// Pins `root` under its own CID as the name (what `ipvec pin add` does).
    fn pin(&self, root: &Cid) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { self.pin_as(&root.to_string(), root).await }
    }

    /// Removes the pin named by `root`'s CID; returns whether there was one.
    fn unpin(&self, root: &Cid) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move { self.unpin_name(&root.to_string()).await }
    }

    /// Removes every block whose digest is not in `live` (nor otherwise protected by the
    /// backend, such as a write in progress).
    fn delete_unpinned(
        &self,
        live: &HashSet<Digest>,
    ) -> impl Future<Output = Result<SweepStats, StoreError>> + Send;

    /// Makes everything written so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a block under `codec` and returns its CID.
    fn put(
        &self,
        codec: u64,
        bytes: Bytes,
    ) -> impl Future<Output = Result<Cid, StoreError>> + Send {
        async move {
            let cid = pcid::block_cid(codec, &bytes);
            self.put_raw(pcid::digest(&cid)?, bytes).await?;
            Ok(cid)
        }
    }

    /// Stores a block that claims to be `cid`, after checking that it is.
    fn put_verified(
        &self,
        cid: &Cid,
        bytes: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            pcid::verify_block(cid, &bytes)?;
            self.put_raw(pcid::digest(cid)?, bytes).await
        }
    }

    /// The block named `cid`, verified against it; `None` if it is not stored.
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send {
        async move {
            let digest = pcid::digest(cid)?;
            let corrupt = |detail: String| StoreError::Corrupt { cid: *cid, detail };
            let bytes = match self.get_raw(digest).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Ok(None),
                Err(StoreError::Mismatch(detail)) => return Err(corrupt(detail)),
                Err(e) => return Err(e),
            };
            if !self.reads_verified() && blake3::hash(&bytes).as_bytes() != &digest {
                return Err(corrupt("bytes do not hash to the CID".into()));
            }
            Ok(Some(bytes))
        }
    }

    /// The block named `cid`, or [`StoreError::NotFound`].
    fn require(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, StoreError>> + Send {
        async move { self.get(cid).await?.ok_or(StoreError::NotFound(*cid)) }
    }

    /// Whether the block named `cid` is stored.
    fn has(&self, cid: &Cid) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move { self.has_digest(pcid::digest(cid)?).await }
    }

    /// Block count and bytes.
    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send {
        async move {
            let blocks = self.list().await?;
            Ok(StoreStats {
                blocks: blocks.len() as u64,
                bytes: blocks.iter().map(|b| b.size).sum(),
            })
        }
    }
}
