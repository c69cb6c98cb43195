//! The iroh-blobs backend: `FsStore` on disk (the default) or `MemStore` in memory.
//!
//! A block is a blob whose hash is the block's BLAKE3 digest. A pin is a tag named
//! `pin/<name>/<cid>` on the root blob (the CID keeps the root's codec, which the blob hash
//! alone does not). iroh-blobs has no delete and no public one-shot collector:
//! the store runs its garbage collector on a short interval with a protect callback that
//! aborts every run unless a sweep was asked for. A sweep hands the live set we computed to the
//! next run, which removes every blob outside it (and not held by a tag or a temp tag), and
//! learns the run has finished when the callback is called again.

use std::{
    collections::HashSet,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use ipvec_protocol::cid::parse_cid;
use iroh_blobs::{
    api::{blobs::BlobStatus, Store},
    store::{fs::FsStore, mem::MemStore, GcConfig, ProtectCb, ProtectOutcome},
    Hash, HashAndFormat,
};
use tokio::sync::oneshot;

use super::{BlockInfo, BlockStore, Digest, StoreError, SweepStats};

/// Tags of recursive pins, then of shallow ones: `<prefix><name>/<cid>`.
const PIN_PREFIX: &str = "pin/";
const SHALLOW_PREFIX: &str = "shallow/";

/// How often the store's collector calls back to see whether a sweep was asked for.
const GC_POLL: Duration = Duration::from_millis(25);
/// Longest a sweep may take before it is reported as stuck.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(600);

/// A block store over an iroh-blobs store.
#[derive(Debug, Clone)]
pub struct IrohBlockStore {
    store: Store,
    sweeps: SweepQueue,
}

/// Sweeps asked for, handed to the store's collector through its protect callback.
#[derive(Debug, Clone, Default)]
struct SweepQueue {
    inner: Arc<Mutex<SweepState>>,
}

#[derive(Debug, Default)]
struct SweepState {
    /// A sweep asked for and not yet started: its live set and who waits for it.
    pending: Option<(HashSet<Hash>, oneshot::Sender<()>)>,
    /// The sweep the collector is running now.
    running: Option<oneshot::Sender<()>>,
}

impl SweepQueue {
    fn config(&self) -> GcConfig {
        let queue = self.clone();
        let callback: ProtectCb = Arc::new(move |live: &mut HashSet<Hash>| {
            let outcome = queue.next_run(live);
            Box::pin(async move { outcome })
        });
        GcConfig {
            interval: GC_POLL,
            add_protected: Some(callback),
        }
    }

    /// Called by the collector before each run.
    fn next_run(&self, live: &mut HashSet<Hash>) -> ProtectOutcome {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Being called again means the previous run has finished.
        if let Some(done) = state.running.take() {
            let _ = done.send(());
        }
        match state.pending.take() {
            Some((set, done)) => {
                live.extend(set);
                state.running = Some(done);
                ProtectOutcome::Continue
            }
            // Never run without a live set: it would remove every unpinned-root block.
            None => ProtectOutcome::Abort,
        }
    }

    async fn sweep(&self, live: HashSet<Hash>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if state.pending.is_some() || state.running.is_some() {
                return Err(StoreError::Backend(
                    "a garbage collection is already running; try again when it ends".into(),
                ));
            }
            state.pending = Some((live, tx));
        }
        match tokio::time::timeout(SWEEP_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(StoreError::Backend(
                "the block store's garbage collector stopped; see the log, restart ipvec and run gc again".into(),
            )),
        }
    }
}

/// First wait before retrying a read the store called busy; it doubles up to the last.
const BUSY_FIRST_DELAY: std::time::Duration = std::time::Duration::from_micros(500);
/// Last wait before a busy read gives up (about 1 s of waiting in all).
const BUSY_LAST_DELAY: std::time::Duration = std::time::Duration::from_millis(512);

/// Whether an iroh error is its per-blob inbox being full (a transient condition).
fn is_busy(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ResourceBusy)
            || e.to_string().contains("resource busy")
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The backend's error with its whole chain of causes (iroh's outer messages are terse).
fn backend(e: impl std::error::Error) -> StoreError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    StoreError::Backend(message)
}

impl IrohBlockStore {
    /// The tags that make up the pin called `name` among the pins under `prefix`.
    async fn tags_of(&self, prefix: &str, name: &str) -> Result<Vec<String>, StoreError> {
        let mut tags = self
            .store
            .tags()
            .list_prefix(format!("{prefix}{name}/"))
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        while let Some(tag) = tags.next().await {
            out.push(String::from_utf8_lossy(tag.map_err(backend)?.name.as_ref()).into_owned());
        }
        Ok(out)
    }

    /// A pin is a tag `<prefix><name>/<cid>`: the new one is set before the old one goes.
    async fn set_pin(&self, prefix: &str, name: &str, root: &Cid) -> Result<(), StoreError> {
        if name.contains('/') {
            return Err(StoreError::Backend(format!(
                "pin name {name:?} must not contain '/'"
            )));
        }
        let digest = ipvec_protocol::cid::digest(root)?;
        let new_tag = format!("{prefix}{name}/{root}");
        let old = self.tags_of(prefix, name).await?;
        self.store
            .tags()
            .set(&new_tag, HashAndFormat::raw(Hash::from(digest)))
            .await
            .map_err(backend)?;
        for tag in old.into_iter().filter(|t| *t != new_tag) {
            self.store.tags().delete(tag).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn drop_pin(&self, prefix: &str, name: &str) -> Result<bool, StoreError> {
        let removed = self
            .store
            .tags()
            .delete_prefix(format!("{prefix}{name}/"))
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }

    async fn list_pins(&self, prefix: &str) -> Result<Vec<(String, Cid)>, StoreError> {
        let mut tags = self
            .store
            .tags()
            .list_prefix(prefix)
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        while let Some(tag) = tags.next().await {
            let tag = tag.map_err(backend)?;
            let text = String::from_utf8_lossy(tag.name.as_ref()).into_owned();
            let parsed = text
                .strip_prefix(prefix)
                .and_then(|rest| rest.rsplit_once('/'))
                .and_then(|(name, cid)| parse_cid(cid).ok().map(|cid| (name.to_string(), cid)));
            match parsed {
                Some(pin) => out.push(pin),
                None => tracing::warn!(tag = %text, "ignoring a malformed pin tag"),
            }
        }
        Ok(out)
    }

    /// Opens (creating if needed) an on-disk store in `dir`.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        let sweeps = SweepQueue::default();
        let mut options = iroh_blobs::store::fs::options::Options::new(dir);
        options.gc = Some(sweeps.config());
        let fs = FsStore::load_with_opts(dir.join("blobs.db"), options).await.map_err(|e| {
            StoreError::Backend(format!(
                "cannot open the block store in {}: {e}; is another ipvec process using this repository?",
                dir.display()
            ))
        })?;
        Ok(Self {
            store: Store::from(fs),
            sweeps,
        })
    }

    /// A store that lives in memory.
    pub fn memory() -> Self {
        let sweeps = SweepQueue::default();
        let mem = MemStore::new_with_opts(iroh_blobs::store::mem::Options {
            gc_config: Some(sweeps.config()),
        });
        Self {
            store: Store::from(mem),
            sweeps,
        }
    }

    /// The underlying iroh-blobs store, for serving blobs to iroh peers.
    pub fn blobs(&self) -> &Store {
        &self.store
    }

    /// Flushes and stops the store's actor; call before the process exits.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.store.sync_db().await.map_err(backend)?;
        self.store.shutdown().await.map_err(backend)
    }
}

impl BlockStore for IrohBlockStore {
    async fn put_raw(&self, digest: Digest, bytes: Bytes) -> Result<(), StoreError> {
        if self.has_digest(digest).await? {
            return Ok(());
        }
        let tag = self
            .store
            .add_bytes(bytes)
            .temp_tag()
            .await
            .map_err(backend)?;
        if tag.hash().as_bytes() != &digest {
            return Err(StoreError::Backend(
                "iroh-blobs hashed the block differently".into(),
            ));
        }
        // Dropping the temp tag leaves the block unprotected: it lives until a sweep that does
        // not find it reachable from a pin.
        Ok(())
    }

    async fn get_raw(&self, digest: Digest) -> Result<Option<Bytes>, StoreError> {
        let hash = Hash::from(digest);
        // iroh serialises work on one blob through a small per-blob inbox and answers "busy"
        // when it is full (many concurrent searches read the same root block): wait and retry.
        let mut delay = BUSY_FIRST_DELAY;
        loop {
            let read = async {
                match self.store.status(hash).await? {
                    BlobStatus::Complete { .. } => {}
                    _ => return Ok(None),
                }
                self.store
                    .get_bytes(hash)
                    .await
                    .map(Some)
                    .map_err(Into::into)
            };
            let result: Result<Option<Bytes>, iroh_blobs::api::Error> = read.await;
            match result {
                Err(e) if is_busy(&e) && delay <= BUSY_LAST_DELAY => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                // iroh reads a blob checking each chunk against the hash tree under its
                // BLAKE3 hash (our digest); bytes that fail are invalid data.
                Err(iroh_blobs::api::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::InvalidData =>
                {
                    return Err(StoreError::Mismatch(e.to_string()))
                }
                other => return other.map_err(backend),
            }
        }
    }

    fn reads_verified(&self) -> bool {
        true
    }

    async fn has_digest(&self, digest: Digest) -> Result<bool, StoreError> {
        self.store.has(Hash::from(digest)).await.map_err(backend)
    }

    async fn list(&self) -> Result<Vec<BlockInfo>, StoreError> {
        let hashes = self.store.list().hashes().await.map_err(backend)?;
        let mut out = Vec::with_capacity(hashes.len());
        for hash in hashes {
            if let BlobStatus::Complete { size } = self.store.status(hash).await.map_err(backend)? {
                out.push(BlockInfo {
                    digest: *hash.as_bytes(),
                    size,
                });
            }
        }
        Ok(out)
    }

    async fn pin_as(&self, name: &str, root: &Cid) -> Result<(), StoreError> {
        self.set_pin(PIN_PREFIX, name, root).await
    }

    async fn unpin_name(&self, name: &str) -> Result<bool, StoreError> {
        self.drop_pin(PIN_PREFIX, name).await
    }

    async fn pins(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        self.list_pins(PIN_PREFIX).await
    }

    async fn pin_shallow_as(&self, name: &str, block: &Cid) -> Result<(), StoreError> {
        self.set_pin(SHALLOW_PREFIX, name, block).await
    }

    async fn unpin_shallow_name(&self, name: &str) -> Result<bool, StoreError> {
        self.drop_pin(SHALLOW_PREFIX, name).await
    }

    async fn shallow_pins(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        self.list_pins(SHALLOW_PREFIX).await
    }

    async fn delete_unpinned(&self, live: &HashSet<Digest>) -> Result<SweepStats, StoreError> {
        let before = self.list().await?;
        self.sweeps
            .sweep(live.iter().map(|d| Hash::from(*d)).collect())
            .await?;
        self.store.sync_db().await.map_err(backend)?;
        let mut stats = SweepStats::default();
        for block in before {
            if !self.has_digest(block.digest).await? {
                stats.blocks += 1;
                stats.bytes += block.size;
            }
        }
        Ok(stats)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.store.sync_db().await.map_err(backend)
    }
}
