//! Inserts prepared beside searches: the graph insert of a point, which is nearly all of a
//! write's cost, runs with shared access (usearch adds and searches concurrently, each in a
//! thread context of its own), under a key from a range no point uses; placing the point
//! under its own key afterwards is a rename, which takes exclusive access for microseconds.
//!
//! Searches may meet a prepared vector before it is placed: its key is at or above
//! [`PREPARED_KEYS`], which callers drop from the hits (see the collection's held index).

use super::{backend, dedup, HnswIndex, IndexError, Settled};

/// The first key of the range for prepared vectors; the keys of points stay below it.
pub const PREPARED_KEYS: u64 = 1 << 62;

impl HnswIndex {
    /// Whether placing `stored` under `key` would need a graph insert: not when `key` holds
    /// that vector already, nor when a slot holds the same vector (the point joins it).
    pub fn needs_insert(&self, key: Option<u64>, stored: &[u8]) -> bool {
        if let Some(key) = key.filter(|key| self.contains(*key)) {
            if self.stored_at(self.slot(key)).as_deref() == Some(stored) {
                return false;
            }
        }
        match self.groups.find(dedup::hash(stored)) {
            Some(slot) => self.stored_at(slot).as_deref() != Some(stored),
            None => true,
        }
    }

    /// Inserts the stored vector `stored` into the graph under `temp` (a key at or above
    /// [`PREPARED_KEYS`]) with shared access, for [`HnswIndex::place_prepared`] to give to its
    /// point later. Returns false, inserting nothing, when the index has no room left: room is
    /// reserved with exclusive access ([`HnswIndex::room_for`]). One caller at a time.
    pub fn prepare(&self, temp: u64, stored: &[u8]) -> Result<bool, IndexError> {
        debug_assert!(temp >= PREPARED_KEYS);
        let width = self.spec.dimension * self.spec.quantization.bytes_per_component();
        if stored.len() != width {
            return Err(IndexError::Dimension {
                expected: self.spec.dimension,
                actual: stored.len() / self.spec.quantization.bytes_per_component(),
            });
        }
        if self.index.size() >= self.index.capacity() {
            return Ok(false);
        }
        let _context = self.contexts.acquire();
        self.add_one(temp, stored)?;
        Ok(true)
    }

    /// Gives `key` the vector prepared under `temp` (whose stored form is `stored`), as
    /// [`VectorIndex::upsert`](crate::index::VectorIndex::upsert) would place it: the
    /// prepared insert becomes `key`'s slot, or is dropped when `key` holds that vector
    /// already or joins a slot that does.
    pub fn place_prepared(&mut self, key: u64, temp: u64, stored: &[u8]) -> Result<(), IndexError> {
        // Exclusive access: no walk reads the graph until this returns.
        self.adjacency.changed();
        match self.settle(key, stored)? {
            Settled::Done => self.discard_prepared(temp),
            Settled::NeedsSlot { hash, remember } => {
                self.index.rename(temp, key).map_err(backend)?;
                if let Some(codes) = &self.codes {
                    codes.rows_mut().rename(temp, key);
                }
                if remember {
                    self.groups.remember(hash, key);
                }
                Ok(())
            }
        }
    }

    /// Takes the vector prepared under `temp` out of the graph.
    pub fn discard_prepared(&mut self, temp: u64) -> Result<(), IndexError> {
        self.index.remove(temp).map_err(backend)?;
        if let Some(codes) = &self.codes {
            codes.rows_mut().remove(temp);
        }
        Ok(())
    }

    /// Makes room for `n` more inserts, growing the capacity by doubling.
    pub fn room_for(&mut self, n: usize) -> Result<(), IndexError> {
        let wanted = self.index.size() + n;
        if wanted > self.index.capacity() {
            self.grow_to(wanted.max(self.index.capacity() * 2).max(1024))?;
        }
        Ok(())
    }
}
