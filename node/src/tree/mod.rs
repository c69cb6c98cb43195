//! The history-independent shard tree: a Prolly tree keyed by entry id.
//!
//! Node boundaries are content-defined: an item closes its node when a hash of its key falls
//! under a threshold proportional to its encoded size (so nodes average a target size whatever
//! the vector dimension), or when the next item would push the node past the 1 MiB block cap.
//! Boundaries depend only on the items, so a set of entries has exactly one tree and one root
//! CID however it was built; an edit rewrites only the nodes around it and their ancestors;
//! two roots diff by skipping equal subtrees. docs/format.md specifies the rule exactly.
//!
//! # Layout
//! - [`chunker`]: the boundary rule and the per-level chunker (pure).
//! - [`build`]: building a tree from sorted entries, streaming.
//! - [`cursor`]: walking one level of a stored tree in key order.
//! - [`edit`]: applying upserts and removals to a root, rewriting only what changes.
//! - [`read`]: point lookups and ordered range scans.
//! - [`diff`]: streaming diff of two roots, and the CRDT merge built on it.
//! - `writer`: writing an operation's nodes while it encodes the next ones.

pub mod build;
pub mod chunker;
pub mod cursor;
pub mod diff;
pub mod edit;
pub mod read;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod worked_example;

use std::{collections::HashMap, sync::Arc};

use cid::Cid;
use ipvec_protocol::{
    dagcbor,
    entry::{Entry, EntryKey},
    node::{ChildRef, Node},
    ProtocolError,
};

use crate::store::{BlockStore, StoreError};

pub use build::{build, build_with_shape, TreeBuilder};
pub use chunker::Shape;
pub use diff::{diff, merge, merge_with_shape, Change, Diff};
pub use edit::{apply, apply_with_shape, Edit, EditStats};
pub use read::{get, locate, locate_many, range, LeafDirectory, RangeIter};

/// Errors of tree operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// Reading or writing blocks failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry or node breaks the format.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The stored tree is not shaped as the format requires.
    #[error("tree node {cid} is malformed: {reason}")]
    Malformed { cid: Cid, reason: String },
    /// Entries handed to a builder were not strictly increasing by id.
    #[error("entries must be sorted by id with no duplicates (id {0:?} came out of order)")]
    Unsorted(EntryKey),
}

/// One item of a tree level, encoded once: an entry (level 0) or a child link (above).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub key: EntryKey,
    pub bytes: Vec<u8>,
    pub count: u64,
}

impl Item {
    pub fn entry(entry: &Entry) -> Result<Item, ProtocolError> {
        Ok(Item {
            key: entry.id.clone(),
            bytes: entry.encode_checked()?,
            count: 1,
        })
    }

    pub fn child(child: &ChildRef) -> Result<Item, ProtocolError> {
        Ok(Item {
            key: child.key.clone(),
            bytes: dagcbor::encode(child)?,
            count: child.count,
        })
    }
}

/// Loads and decodes nodes, keeping the ones already seen during one operation.
pub(crate) struct NodeLoader<'a, S> {
    store: &'a S,
    cache: HashMap<Cid, Arc<Node>>,
    /// Nodes read from the store (cache misses).
    pub reads: u64,
}

impl<'a, S: BlockStore> NodeLoader<'a, S> {
    pub fn new(store: &'a S) -> Self {
        Self {
            store,
            cache: HashMap::new(),
            reads: 0,
        }
    }

    pub async fn load(&mut self, cid: &Cid) -> Result<Arc<Node>, TreeError> {
        if let Some(node) = self.cache.get(cid) {
            return Ok(node.clone());
        }
        let bytes = self.store.require(cid).await?;
        let node = Arc::new(Node::decode(&bytes).map_err(|e| TreeError::Malformed {
            cid: *cid,
            reason: e.to_string(),
        })?);
        self.reads += 1;
        if self.cache.len() > 4096 {
            self.cache.clear();
        }
        self.cache.insert(*cid, node.clone());
        Ok(node)
    }

    /// The items of a node, encoded.
    pub async fn items(&mut self, cid: &Cid) -> Result<Vec<Item>, TreeError> {
        let node = self.load(cid).await?;
        let items = match node.as_ref() {
            Node::Leaf(entries) => entries
                .iter()
                .map(|e| {
                    Ok(Item {
                        key: e.id.clone(),
                        bytes: dagcbor::encode(e)?,
                        count: 1,
                    })
                })
                .collect::<Result<Vec<_>, ProtocolError>>()?,
            Node::Branch { children, .. } => children
                .iter()
                .map(Item::child)
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(items)
    }
}

/// Counts of what an operation wrote, for benchmarks and progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Node blocks written (including ones the store already had).
    pub blocks: u64,
    /// Bytes of those blocks.
    pub bytes: u64,
}
