//! A plain in-memory block store: the reference the other backends are tested against.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use cid::Cid;

use super::{BlockInfo, BlockStore, Digest, StoreError, SweepStats};

/// Blocks in a hash map, pins in maps by name.
#[derive(Debug, Clone, Default)]
pub struct MemBlockStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    blocks: HashMap<Digest, Bytes>,
    pins: BTreeMap<String, Cid>,
    shallow: BTreeMap<String, Cid>,
}

impl MemBlockStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (every change is one insert
        // or remove), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BlockStore for MemBlockStore {
    async fn put_raw(&self, digest: Digest, bytes: Bytes) -> Result<(), StoreError> {
        self.lock().blocks.entry(digest).or_insert(bytes);
        Ok(())
    }

    async fn get_raw(&self, digest: Digest) -> Result<Option<Bytes>, StoreError> {
        Ok(self.lock().blocks.get(&digest).cloned())
    }

    async fn has_digest(&self, digest: Digest) -> Result<bool, StoreError> {
        Ok(self.lock().blocks.contains_key(&digest))
    }

    async fn list(&self) -> Result<Vec<BlockInfo>, StoreError> {
        Ok(self
            .lock()
            .blocks
            .iter()
            .map(|(d, b)| BlockInfo {
                digest: *d,
                size: b.len() as u64,
            })
            .collect())
    }

    async fn pin_as(&self, name: &str, root: &Cid) -> Result<(), StoreError> {
        self.lock().pins.insert(name.to_string(), *root);
        Ok(())
    }

    async fn unpin_name(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.lock().pins.remove(name).is_some())
    }

    async fn pins(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        Ok(self
            .lock()
            .pins
            .iter()
            .map(|(n, c)| (n.clone(), *c))
            .collect())
    }

    async fn pin_shallow_as(&self, name: &str, block: &Cid) -> Result<(), StoreError> {
        self.lock().shallow.insert(name.to_string(), *block);
        Ok(())
    }

    async fn unpin_shallow_name(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.lock().shallow.remove(name).is_some())
    }

    async fn shallow_pins(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        Ok(self
            .lock()
            .shallow
            .iter()
            .map(|(n, c)| (n.clone(), *c))
            .collect())
    }

    async fn delete_unpinned(&self, live: &HashSet<Digest>) -> Result<SweepStats, StoreError> {
        let mut inner = self.lock();
        let mut stats = SweepStats::default();
        inner.blocks.retain(|digest, bytes| {
            let keep = live.contains(digest);
            if !keep {
                stats.blocks += 1;
                stats.bytes += bytes.len() as u64;
            }
            keep
        });
        Ok(stats)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
