//! Point lookups and ordered range scans.

use std::{collections::VecDeque, ops::Bound, sync::Arc};

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    node::Node,
};

use super::{cursor::LevelCursor, NodeLoader, TreeError};
use crate::store::BlockStore;

/// The entry for `key` (tombstones included), and the CID of the leaf that holds it.
pub async fn get<S: BlockStore>(
    store: &S,
    root: &Cid,
    key: &EntryKey,
) -> Result<Option<(Entry, Cid)>, TreeError> {
    let mut loader = NodeLoader::new(store);
    let leaf = leaf_for(&mut loader, root, key).await?;
    let node = loader.load(&leaf).await?;
    let Node::Leaf(entries) = node.as_ref() else {
        return Err(TreeError::Malformed {
            cid: leaf,
            reason: "a branch where a leaf was expected".into(),
        });
    };
    Ok(entries
        .binary_search_by(|e| e.id.cmp(key))
        .ok()
        .map(|i| (entries[i].clone(), leaf)))
}

/// The CID of the leaf that holds `key` if the tree has it, reading only branches.
pub async fn locate<S: BlockStore>(
    store: &S,
    root: &Cid,
    key: &EntryKey,
) -> Result<Cid, TreeError> {
    leaf_for(&mut NodeLoader::new(store), root, key).await
}

/// Like [`locate`] for many keys, decoding each branch once.
pub async fn locate_many<S: BlockStore>(
    store: &S,
    lookups: &[(Cid, EntryKey)],
) -> Result<Vec<Cid>, TreeError> {
    let mut loader = NodeLoader::new(store);
    let mut out = Vec::with_capacity(lookups.len());
    for (root, key) in lookups {
        out.push(leaf_for(&mut loader, root, key).await?);
    }
    Ok(out)
}

/// Every leaf of one tree, in key order, with the first key under each: which leaf holds a
/// key, answered without reading a block. Reading it decodes the branches once (a tree of
/// 60,000 784-d vectors has a handful); a tree that is a single leaf reads that leaf.
#[derive(Debug, Clone, Default)]
pub struct LeafDirectory {
    /// First key under each leaf but the first (the first leaf holds everything below).
    bounds: Vec<EntryKey>,
    /// Each bound's [`prefix`]: a lookup searches this one small array, and compares whole
    /// keys only among bounds of its own prefix (none, for integer ids).
    prefixes: Vec<u128>,
    leaves: Vec<Cid>,
}

/// The first 16 bytes of `key` as a big-endian number, zero-padded: keys in order have
/// prefixes in order, and a whole integer id's key (9 bytes) is its prefix.
fn prefix(key: &EntryKey) -> u128 {
    let bytes = key.as_bytes();
    let mut head = [0u8; 16];
    let n = bytes.len().min(16);
    head[..n].copy_from_slice(&bytes[..n]);
    u128::from_be_bytes(head)
}

impl LeafDirectory {
    /// The directory of the tree under `root`.
    pub async fn read<S: BlockStore>(store: &S, root: &Cid) -> Result<Self, TreeError> {
        let mut loader = NodeLoader::new(store);
        let mut directory = LeafDirectory::default();
        // Depth first, children in key order.
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            match loader.load(&cid).await?.as_ref() {
                Node::Leaf(_) => directory.leaves.push(cid),
                Node::Branch { level: 1, children } => {
                    for child in children {
                        if !directory.leaves.is_empty() {
                            directory.bounds.push(child.key.clone());
                        }
                        directory.leaves.push(child.cid);
                    }
                }
                Node::Branch { children, .. } => {
                    stack.extend(children.iter().rev().map(|c| c.cid));
                }
            }
        }
        directory.prefixes = directory.bounds.iter().map(prefix).collect();
        Ok(directory)
    }

    /// The leaf whose key range holds `key` (the same answer as [`locate`]).
    pub fn leaf_of(&self, key: &EntryKey) -> Option<Cid> {
        let head = prefix(key);
        let below = self.prefixes.partition_point(|p| *p < head);
        // Integer ids have no two bounds of one prefix: the tie is settled by one compare.
        let tied = match self.prefixes.get(below) {
            Some(p) if *p == head => self.prefixes[below..].partition_point(|p| *p == head),
            _ => 0,
        };
        let among = self.bounds[below..below + tied].partition_point(|b| b <= key);
        self.leaves.get(below + among).copied()
    }

    /// Leaves in the tree.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether the directory is empty (never, for a tree that was read).
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}

/// Descends branches to the leaf whose key range holds `key`, without loading that leaf.
async fn leaf_for<S: BlockStore>(
    loader: &mut NodeLoader<'_, S>,
    root: &Cid,
    key: &EntryKey,
) -> Result<Cid, TreeError> {
    let mut cid = *root;
    loop {
        let node = loader.load(&cid).await?;
        let Node::Branch { level, children } = node.as_ref() else {
            return Ok(cid);
        };
        let child = &children[children
            .partition_point(|c| &c.key <= key)
            .saturating_sub(1)];
        if *level == 1 {
            return Ok(child.cid);
        }
        cid = child.cid;
    }
}

/// Entries in key order between two bounds, read one leaf at a time.
pub struct RangeIter<'a, S> {
    loader: NodeLoader<'a, S>,
    root: Cid,
    cursor: Option<LevelCursor>,
    start: Bound<EntryKey>,
    end: Bound<EntryKey>,
    buffer: VecDeque<(Entry, Cid)>,
    done: bool,
}

impl<S> std::fmt::Debug for RangeIter<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeIter")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

/// Scans the entries of the tree under `root` whose keys fall between `start` and `end`.
pub fn range<S: BlockStore>(
    store: &S,
    root: Cid,
    start: Bound<EntryKey>,
    end: Bound<EntryKey>,
) -> RangeIter<'_, S> {
    RangeIter {
        loader: NodeLoader::new(store),
        root,
        cursor: None,
        start,
        end,
        buffer: VecDeque::new(),
        done: false,
    }
}

impl<S: BlockStore> RangeIter<'_, S> {
    fn after_start(&self, key: &EntryKey) -> bool {
        match &self.start {
            Bound::Included(s) => key >= s,
            Bound::Excluded(s) => key > s,
            Bound::Unbounded => true,
        }
    }

    fn before_end(&self, key: &EntryKey) -> bool {
        match &self.end {
            Bound::Included(e) => key <= e,
            Bound::Excluded(e) => key < e,
            Bound::Unbounded => true,
        }
    }

    async fn fill(&mut self) -> Result<(), TreeError> {
        let cursor = match self.cursor.as_mut() {
            Some(cursor) => {
                if !cursor.advance(&mut self.loader).await? {
                    self.done = true;
                    return Ok(());
                }
                cursor
            }
            None => {
                let height = self.loader.load(&self.root).await?.level();
                let mut cursor = LevelCursor::new(self.root, height, 0);
                match &self.start {
                    Bound::Included(k) | Bound::Excluded(k) => {
                        cursor.seek(&mut self.loader, k).await?
                    }
                    Bound::Unbounded => cursor.seek_first(&mut self.loader).await?,
                }
                self.cursor.insert(cursor)
            }
        };
        let leaf_cid = cursor.current().cid;
        let node: Arc<Node> = self.loader.load(&leaf_cid).await?;
        let Node::Leaf(entries) = node.as_ref() else {
            return Err(TreeError::Malformed {
                cid: leaf_cid,
                reason: "a branch where a leaf was expected".into(),
            });
        };
        for entry in entries {
            if !self.before_end(&entry.id) {
                self.done = true;
                break;
            }
            if self.after_start(&entry.id) {
                self.buffer.push_back((entry.clone(), leaf_cid));
            }
        }
        Ok(())
    }

    /// The next entry and the CID of its leaf, or `None` past the end of the range.
    pub async fn next(&mut self) -> Result<Option<(Entry, Cid)>, TreeError> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            self.fill().await?;
        }
    }

    /// Collects the rest of the range.
    pub async fn collect(mut self) -> Result<Vec<Entry>, TreeError> {
        let mut out = Vec::new();
        while let Some((entry, _)) = self.next().await? {
            out.push(entry);
        }
        Ok(out)
    }
}
