//! Identical vectors stored once in the HNSW index.
//!
//! Real data holds identical embeddings (a text embedded twice, a placeholder image), and an
//! HNSW graph loses its way around them: copies at distance zero fill each other's neighbour
//! lists, and searches stop finding the rest (recall@10 fell to 0 with 1,500 copies among
//! 2,000 vectors). [`HnswIndex`](super::HnswIndex) therefore stores each distinct vector once,
//! in a *slot*: usearch holds it under the key of one point that has it, and [`Groups`] records
//! the other points that share it. A point with a vector of its own (every point, for distinct
//! data) appears only in the hash map that finds the slot of a vector.
//!
//! Vectors are compared as the index stores them (f32 bits, f16 bits or i8 codes), so a point
//! in a shared slot reads back what it would have stored alone. The hash only finds a
//! candidate slot: its stored vector is compared before a point joins it, so a collision just
//! stores a vector twice.
//!
//! Saved indexes carry the groups after usearch's own bytes, in a trailer (little-endian
//! u64s): the magic `ipvecdd1`, the number of slots, the hash map as `(count, (hash, slot)…)`,
//! the groups as `(count, (slot, members, member…)…)`, then the trailer's length and the magic
//! again. usearch reads its part and ignores what follows.

use std::{
    collections::{BTreeSet, HashMap},
    io::{Read, Seek, SeekFrom, Write},
    path::Path,
};

const MAGIC: &[u8; 8] = b"ipvecdd1";

/// What storing identical vectors once saves in an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DuplicateStats {
    /// Points whose vector another point already holds: they share its slot.
    pub points: usize,
    /// Bytes of vectors these points do not store (the graph nodes they do not need save more).
    pub bytes_saved: usize,
}

/// The slots that several points share, and the hashes that find a vector's slot.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// By hash of a stored vector: the slot that holds it. A hint, checked before use.
    by_hash: HashMap<u64, u64>,
    /// The group of each point in a shared slot (the slot's own point included).
    group_of: HashMap<u64, u64>,
    /// Shared slots by group id (an id that stays when the slot changes key).
    groups: HashMap<u64, Group>,
    /// The group of each shared slot, by the slot's usearch key.
    by_slot: HashMap<u64, u64>,
    next_group: u64,
}

#[derive(Debug)]
struct Group {
    /// The usearch key: one of the members.
    slot: u64,
    /// Every point holding the vector, at least two.
    members: BTreeSet<u64>,
}

/// What became of a point's slot when the point left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// The point shared no slot: its own slot is to be removed.
    Alone,
    /// Other points keep the slot under its key.
    Stays,
    /// The slot was the point's key: usearch must rename it to this member's key.
    Moved(u64),
}

/// The hash of a stored vector's bytes (FNV-1a: stable across builds, since it is saved).
pub(crate) fn hash(stored: &[u8]) -> u64 {
    stored.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Groups {
    /// Points beyond one per slot: those that store no vector of their own.
    pub fn duplicates(&self) -> usize {
        self.group_of.len().saturating_sub(self.groups.len())
    }

    /// The slot of `key` when it shares one (`None` for a point alone in its slot, or absent).
    pub fn slot_of(&self, key: u64) -> Option<u64> {
        Some(self.groups.get(self.group_of.get(&key)?)?.slot)
    }

    /// The points of a shared slot in key order; `None` when the slot is one point's own.
    pub fn members(&self, slot: u64) -> Option<&BTreeSet<u64>> {
        Some(&self.groups.get(self.by_slot.get(&slot)?)?.members)
    }

    /// The points of `slot` that `filter` accepts, in key order, at most `k`.
    pub fn passing(
        &self,
        slot: u64,
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<u64> {
        let accepts = |key: &u64| filter.is_none_or(|f| f(*key));
        match self.members(slot) {
            Some(members) => members.iter().copied().filter(accepts).take(k).collect(),
            None => Some(slot).into_iter().filter(accepts).take(k).collect(),
        }
    }

    /// The slot whose vector has `hash`, if one was recorded.
    pub fn find(&self, hash: u64) -> Option<u64> {
        self.by_hash.get(&hash).copied()
    }

    /// Records `slot` as the holder of the vector with `hash`.
    pub fn remember(&mut self, hash: u64, slot: u64) {
        self.by_hash.insert(hash, slot);
    }

    /// Forgets `slot` as the holder of `hash` (another slot recorded there stays).
    pub fn forget(&mut self, hash: u64, slot: u64) {
        if self.by_hash.get(&hash) == Some(&slot) {
            self.by_hash.remove(&hash);
        }
    }

    /// Records that the slot holding `hash` changed key from `from` to `to`.
    pub fn rekey(&mut self, hash: u64, from: u64, to: u64) {
        if let Some(slot) = self.by_hash.get_mut(&hash) {
            if *slot == from {
                *slot = to;
            }
        }
    }

    /// Adds `key` (which holds no slot) to the points of `slot`.
    pub fn join(&mut self, slot: u64, key: u64) {
        let group = match self.by_slot.get(&slot) {
            Some(group) => *group,
            None => {
                let group = self.next_group;
                self.next_group += 1;
                self.groups.insert(
                    group,
                    Group {
                        slot,
                        members: BTreeSet::from([slot]),
                    },
                );
                self.by_slot.insert(slot, group);
                self.group_of.insert(slot, group);
                group
            }
        };
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.insert(key);
            self.group_of.insert(key, group);
        }
    }

    /// Takes `key` out of its slot's points. A slot left with one point becomes that point's
    /// own again (and leaves these maps).
    pub fn leave(&mut self, key: u64) -> Left {
        let Some(id) = self.group_of.remove(&key) else {
            return Left::Alone;
        };
        let Some(group) = self.groups.get_mut(&id) else {
            return Left::Alone;
        };
        group.members.remove(&key);
        let mut left = Left::Stays;
        if group.slot == key {
            if let Some(next) = group.members.first().copied() {
                group.slot = next;
                self.by_slot.remove(&key);
                self.by_slot.insert(next, id);
                left = Left::Moved(next);
            }
        }
        if group.members.len() <= 1 {
            let slot = group.slot;
            self.groups.remove(&id);
            self.by_slot.remove(&slot);
            self.group_of.remove(&slot);
        }
        left
    }

    /// Whether the groups fit an index where `stored(key)` tells if usearch holds `key`: each
    /// shared slot is there, and its other points are not.
    pub fn fit(&self, stored: impl Fn(u64) -> bool) -> bool {
        self.groups.values().all(|group| {
            group
                .members
                .iter()
                .all(|member| stored(*member) == (*member == group.slot))
        })
    }

    /// Approximate bytes of memory these maps hold.
    pub fn memory_bytes(&self) -> usize {
        // A hash map entry: key, value and a control byte; a set member: its key and about
        // half as much again of B-tree node.
        let entry = 2 * std::mem::size_of::<u64>() + 1;
        (self.by_hash.capacity() + self.group_of.capacity() + self.by_slot.capacity()) * entry
            + self.groups.capacity() * (std::mem::size_of::<(u64, Group)>() + 1)
            + self.group_of.len() * 12
    }

    /// Appends the trailer to the saved index at `path`, which holds `slots` vectors.
    pub fn append_to(&self, path: &Path, slots: usize) -> std::io::Result<()> {
        let mut body: Vec<u8> = Vec::with_capacity(8 * (4 + 2 * self.by_hash.len()));
        body.extend_from_slice(MAGIC);
        let mut put = |v: u64| body.extend_from_slice(&v.to_le_bytes());
        put(slots as u64);
        let mut hashes: Vec<(u64, u64)> = self.by_hash.iter().map(|(h, s)| (*h, *s)).collect();
        hashes.sort_unstable();
        put(hashes.len() as u64);
        for (hash, slot) in hashes {
            put(hash);
            put(slot);
        }
        let mut groups: Vec<&Group> = self.groups.values().collect();
        groups.sort_unstable_by_key(|g| g.slot);
        put(groups.len() as u64);
        for group in groups {
            put(group.slot);
            put(group.members.len() as u64);
            group.members.iter().for_each(|m| put(*m));
        }
        let length = body.len() as u64;
        body.extend_from_slice(&length.to_le_bytes());
        body.extend_from_slice(MAGIC);
        let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
        file.write_all(&body)?;
        file.sync_all()
    }

    /// Reads the trailer of a saved index: the number of slots it holds, the groups, and the
    /// offset where the trailer starts. A file without one (written before ipvec stored
    /// duplicates once) is an error.
    pub fn read_from(path: &Path) -> Result<(usize, Self, u64), String> {
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        let mut tail = [0u8; 16];
        if size < 16 {
            return Err("the file is too short".into());
        }
        file.seek(SeekFrom::Start(size - 16))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| e.to_string())?;
        let length = Self::trailer(&tail, size)?;
        let mut body = vec![0u8; length as usize];
        file.seek(SeekFrom::Start(size - 16 - length))
            .and_then(|_| file.read_exact(&mut body))
            .map_err(|e| e.to_string())?;
        let (slots, this) =
            Self::decode(&body).ok_or_else(|| "the duplicate map is damaged".to_string())?;
        Ok((slots, this, size - 16 - length))
    }

    /// [`Groups::read_from`] of a file's bytes.
    pub fn read_from_bytes(bytes: &[u8]) -> Result<(usize, Self, u64), String> {
        let size = bytes.len() as u64;
        let tail = bytes
            .get(bytes.len().saturating_sub(16)..)
            .filter(|t| t.len() == 16)
            .ok_or("the file is too short")?;
        let length = Self::trailer(tail, size)?;
        let body = &bytes[(size - 16 - length) as usize..bytes.len() - 16];
        let (slots, this) =
            Self::decode(body).ok_or_else(|| "the duplicate map is damaged".to_string())?;
        Ok((slots, this, size - 16 - length))
    }

    /// The length of the duplicate map that the 16-byte `tail` of a file of `size` bytes ends.
    fn trailer(tail: &[u8], size: u64) -> Result<u64, String> {
        let (length, magic) = tail.split_at(8);
        let length = u64::from_le_bytes(length.try_into().map_err(|_| "short trailer")?);
        if magic != MAGIC || length > size - 16 || length < 8 {
            return Err(
                "no duplicate map after the graph (written by an older ipvec, or damaged)".into(),
            );
        }
        Ok(length)
    }

    fn decode(body: &[u8]) -> Option<(usize, Self)> {
        let (magic, rest) = body.split_at_checked(8)?;
        if magic != MAGIC {
            return None;
        }
        let mut words = rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        let mut next = || words.next();
        let slots = usize::try_from(next()?).ok()?;
        let mut this = Self::default();
        for _ in 0..next()? {
            let (hash, slot) = (next()?, next()?);
            this.by_hash.insert(hash, slot);
        }
        for _ in 0..next()? {
            let slot = next()?;
            let count = next()?;
            let mut members = BTreeSet::new();
            for _ in 0..count {
                members.insert(next()?);
            }
            let id = this.next_group;
            let fresh = members.len() >= 2
                && members.contains(&slot)
                && members.iter().all(|m| !this.group_of.contains_key(m));
            if !fresh {
                return None;
            }
            this.next_group += 1;
            members.iter().for_each(|m| {
                this.group_of.insert(*m, id);
            });
            this.by_slot.insert(slot, id);
            this.groups.insert(id, Group { slot, members });
        }
        Some((slots, this))
    }
}

#[cfg(test)]
#[path = "dedup_tests.rs"]
mod tests;
