//! Where tree nodes end.
//!
//! An item at `level` closes its node when `H(level, key) < 2^64 · size / target`, where `H` is
//! the first 8 bytes (little-endian) of BLAKE3 over the level as 4 big-endian bytes followed by
//! the key bytes, `size` is the item's encoded length and `target` is the level's target node
//! size. A node is also closed before an item that would push its encoding past the block cap.
//! Both rules restart from an empty node after every boundary, which is what lets an edit
//! re-chunk only from the start of the node it touches until boundaries line up again.

use ipvec_protocol::{
    entry::EntryKey,
    limits::{BRANCH_TARGET_BYTES, LEAF_TARGET_BYTES, MAX_BLOCK_BYTES, MAX_HASHED_LEVEL},
    node::{frame_len, frame_node},
};

use super::Item;

/// The sizes that shape a tree. Trees in ipvec's format use [`Shape::STANDARD`]; other shapes
/// exist so tests can grow deep trees from few entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Target encoded size of leaves.
    pub leaf_target: usize,
    /// Target encoded size of branches.
    pub branch_target: usize,
    /// Largest encoded node.
    pub max_block: usize,
}

impl Shape {
    /// The shape of the ipvec format.
    pub const STANDARD: Shape = Shape {
        leaf_target: LEAF_TARGET_BYTES,
        branch_target: BRANCH_TARGET_BYTES,
        max_block: MAX_BLOCK_BYTES,
    };
}

impl Default for Shape {
    fn default() -> Self {
        Self::STANDARD
    }
}

/// Whether an item of `size` encoded bytes with `key` closes its node at `level`.
pub fn is_boundary(shape: &Shape, level: u32, key: &EntryKey, size: usize) -> bool {
    if level >= MAX_HASHED_LEVEL {
        return false;
    }
    let target = if level == 0 {
        shape.leaf_target
    } else {
        shape.branch_target
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(&level.to_be_bytes());
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    let h = u128::from(u64::from_le_bytes(first));
    let threshold = ((size as u128) << 64) / target as u128;
    h < threshold
}

/// A closed node: its encoding, first key and entry count.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub key: EntryKey,
    pub bytes: Vec<u8>,
    pub count: u64,
}

/// Cuts the items of one level into nodes.
#[derive(Debug)]
pub(crate) struct LevelChunker {
    shape: Shape,
    level: u32,
    items: Vec<Item>,
    body: usize,
}

impl LevelChunker {
    pub fn new(shape: Shape, level: u32) -> Self {
        Self {
            shape,
            level,
            items: Vec::new(),
            body: 0,
        }
    }

    /// True when no node is open: the chunker is at a boundary.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds the next item (keys strictly increasing); closed nodes go to `out`.
    pub fn push(&mut self, item: Item, out: &mut Vec<Chunk>) {
        let len = item.bytes.len();
        if !self.items.is_empty()
            && frame_len(self.level, self.items.len() + 1) + self.body + len > self.shape.max_block
        {
            out.extend(self.close());
        }
        let boundary = is_boundary(&self.shape, self.level, &item.key, len);
        self.body += len;
        self.items.push(item);
        if boundary {
            out.extend(self.close());
        }
    }

    /// Closes the open node, if any: the end of the level.
    pub fn finish(&mut self, out: &mut Vec<Chunk>) {
        out.extend(self.close());
    }

    fn close(&mut self) -> Option<Chunk> {
        let key = self.items.first()?.key.clone();
        let items = std::mem::take(&mut self.items);
        self.body = 0;
        let refs: Vec<&[u8]> = items.iter().map(|i| i.bytes.as_slice()).collect();
        let bytes = frame_node(self.level, &refs);
        let count = items.iter().map(|i| i.count).sum();
        Some(Chunk { key, bytes, count })
    }
}
