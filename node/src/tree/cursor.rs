//! A cursor over the nodes of one level of a stored tree, in key order.

use std::sync::Arc;

use cid::Cid;
use ipvec_protocol::{
    entry::EntryKey,
    node::{ChildRef, Node},
};

use super::{NodeLoader, TreeError};
use crate::store::BlockStore;

/// One branch on the path, and which of its children the path goes through.
#[derive(Debug)]
struct Frame {
    node: Arc<Node>,
    index: usize,
}

impl Frame {
    fn children(&self) -> &[ChildRef] {
        match self.node.as_ref() {
            Node::Branch { children, .. } => children,
            Node::Leaf(_) => &[],
        }
    }
}

/// Points at one node of `level`, keeping the path of branches above it.
///
/// The path starts at a virtual branch whose only child is the root, so the root level is a
/// level like the others.
#[derive(Debug)]
pub(crate) struct LevelCursor {
    level: u32,
    height: u32,
    frames: Vec<Frame>,
}

impl LevelCursor {
    /// A cursor on `level` of the tree under `root` (whose own level is `height`).
    pub fn new(root: Cid, height: u32, level: u32) -> Self {
        // The root's key is never used for routing: it is the only child of the virtual branch.
        let key =
            ipvec_protocol::entry::EntryKey::new(vec![0; 9]).unwrap_or_else(|_| unreachable!());
        let children = vec![ChildRef {
            cid: root,
            key,
            count: 0,
        }];
        let virtual_root = Frame {
            node: Arc::new(Node::Branch {
                level: height + 1,
                children,
            }),
            index: 0,
        };
        Self {
            level,
            height,
            frames: vec![virtual_root],
        }
    }

    /// Level of the nodes the last frame's children sit at.
    fn child_level(&self) -> u32 {
        self.height + 1 - self.frames.len() as u32
    }

    /// Descends from the last frame until its children are at the cursor's level, going to
    /// the child that may hold `key` (the leftmost child when `key` is `None`).
    async fn descend<S: BlockStore>(
        &mut self,
        loader: &mut NodeLoader<'_, S>,
        key: Option<&EntryKey>,
    ) -> Result<(), TreeError> {
        while self.child_level() > self.level {
            let cid = self.current().cid;
            let node = loader.load(&cid).await?;
            let Node::Branch { level, children } = node.as_ref() else {
                return Err(TreeError::Malformed {
                    cid,
                    reason: "a leaf where a branch was expected".into(),
                });
            };
            if *level != self.child_level() {
                return Err(TreeError::Malformed {
                    cid,
                    reason: format!("level {level}, expected {}", self.child_level()),
                });
            }
            let index = match key {
                Some(key) => children
                    .partition_point(|c| &c.key <= key)
                    .saturating_sub(1),
                None => 0,
            };
            self.frames.push(Frame {
                node: node.clone(),
                index,
            });
        }
        Ok(())
    }

    /// Moves to the node of the level that holds `key` (or would): the last node whose first
    /// key is ≤ `key`, or the first node.
    pub async fn seek<S: BlockStore>(
        &mut self,
        loader: &mut NodeLoader<'_, S>,
        key: &EntryKey,
    ) -> Result<(), TreeError> {
        self.frames.truncate(1);
        self.descend(loader, Some(key)).await
    }

    /// Moves to the first node of the level.
    pub async fn seek_first<S: BlockStore>(
        &mut self,
        loader: &mut NodeLoader<'_, S>,
    ) -> Result<(), TreeError> {
        self.frames.truncate(1);
        self.descend(loader, None).await
    }

    /// The link to the current node (its first key and CID).
    pub fn current(&self) -> &ChildRef {
        let frame = &self.frames[self.frames.len() - 1];
        &frame.children()[frame.index]
    }

    /// The first key of the next node of the level, if there is one.
    pub fn next_key(&self) -> Option<&EntryKey> {
        self.frames
            .iter()
            .rev()
            .find(|f| f.index + 1 < f.children().len())
            .map(|f| &f.children()[f.index + 1].key)
    }

    /// Moves to the next node of the level; false at the end.
    pub async fn advance<S: BlockStore>(
        &mut self,
        loader: &mut NodeLoader<'_, S>,
    ) -> Result<bool, TreeError> {
        let Some(depth) = self
            .frames
            .iter()
            .rposition(|f| f.index + 1 < f.children().len())
        else {
            return Ok(false);
        };
        self.frames.truncate(depth + 1);
        self.frames[depth].index += 1;
        self.descend(loader, None).await?;
        Ok(true)
    }
}
