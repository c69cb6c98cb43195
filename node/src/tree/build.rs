//! Building a tree from entries in id order, writing each node once as it closes.

use std::collections::VecDeque;

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    node::{frame_node, ChildRef},
};

use super::{
    chunker::{Chunk, LevelChunker, Shape},
    writer::NodeWriter,
    Item, TreeError, WriteStats,
};
use crate::store::BlockStore;

/// Builds a tree bottom-up from a stream of items, holding only the open node of each level.
#[derive(Debug)]
pub struct TreeBuilder<S> {
    writer: NodeWriter<S>,
    shape: Shape,
    base: u32,
    levels: Vec<Level>,
    last_key: Option<EntryKey>,
}

#[derive(Debug)]
struct Level {
    chunker: LevelChunker,
    /// Items received from the level below.
    received: u64,
    /// The first item, held back until a second arrives: a level with one node is the root,
    /// and writing a one-child parent for it would only make garbage.
    first: Option<(Cid, Item)>,
}

impl Level {
    fn new(shape: Shape, level: u32) -> Self {
        Self {
            chunker: LevelChunker::new(shape, level),
            received: 0,
            first: None,
        }
    }
}

impl<S: BlockStore> TreeBuilder<S> {
    /// A builder of a tree from entries.
    pub fn new(store: &S) -> Self {
        Self::with_shape(store, Shape::STANDARD, 0)
    }

    /// A builder of a tree of another shape whose pushed items sit at `base` (above 0 to grow
    /// a tree upward from nodes already written).
    pub(crate) fn with_shape(store: &S, shape: Shape, base: u32) -> Self {
        Self {
            writer: NodeWriter::new(store),
            shape,
            base,
            levels: vec![Level::new(shape, base)],
            last_key: None,
        }
    }

    /// Adds the next entry; ids must strictly increase.
    pub async fn push(&mut self, entry: &Entry) -> Result<(), TreeError> {
        self.push_item(Item::entry(entry)?).await
    }

    pub(crate) async fn push_item(&mut self, item: Item) -> Result<(), TreeError> {
        if self.last_key.as_ref().is_some_and(|last| last >= &item.key) {
            return Err(TreeError::Unsorted(item.key));
        }
        self.last_key = Some(item.key.clone());
        let mut out = Vec::new();
        self.levels[0].chunker.push(item, &mut out);
        self.emit(0, out).await
    }

    /// Writes closed nodes and feeds their links to the level above, cascading upward.
    async fn emit(&mut self, index: usize, chunks: Vec<Chunk>) -> Result<(), TreeError> {
        let mut queue: VecDeque<(usize, Chunk)> = chunks.into_iter().map(|c| (index, c)).collect();
        while let Some((i, chunk)) = queue.pop_front() {
            let cid = self.writer.write(chunk.bytes).await?;
            let item = Item::child(&ChildRef {
                cid,
                key: chunk.key,
                count: chunk.count,
            })?;
            let parent = i + 1;
            if self.levels.len() <= parent {
                self.levels
                    .push(Level::new(self.shape, self.base + parent as u32));
            }
            let level = &mut self.levels[parent];
            level.received += 1;
            let mut out = Vec::new();
            match level.received {
                1 => level.first = Some((cid, item)),
                2 => {
                    if let Some((_, first)) = level.first.take() {
                        level.chunker.push(first, &mut out);
                    }
                    level.chunker.push(item, &mut out);
                }
                _ => level.chunker.push(item, &mut out),
            }
            queue.extend(out.into_iter().map(|c| (parent, c)));
        }
        Ok(())
    }

    /// Closes every level and returns the root and what was written, once all of it is stored.
    pub async fn finish(mut self) -> Result<(Cid, WriteStats), TreeError> {
        let root = self.close().await?;
        self.writer.finish().await?;
        Ok((root, self.writer.stats))
    }

    /// Closes every level; the root.
    async fn close(&mut self) -> Result<Cid, TreeError> {
        let mut i = 0;
        loop {
            let mut out = Vec::new();
            self.levels[i].chunker.finish(&mut out);
            self.emit(i, out).await?;
            let above = self.levels.get(i + 1).map_or(0, |l| l.received);
            match above {
                0 => {
                    // No items at all: the empty tree is an empty leaf.
                    return self.writer.write(frame_node(0, &[])).await;
                }
                // One node at this level: it is the root (`first` always holds a lone item).
                1 => {
                    if let Some((cid, _)) = self.levels[i + 1].first.take() {
                        return Ok(cid);
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }
}

/// Builds the tree of `entries` (any order; of two entries with one id the last-writer-wins
/// winner is kept). Returns the root CID.
pub async fn build<S: BlockStore>(store: &S, entries: Vec<Entry>) -> Result<Cid, TreeError> {
    build_with_shape(store, Shape::STANDARD, entries).await
}

/// [`build`] with nodes of another shape: not ipvec's format, for tests and simulations that
/// want deep trees of few entries.
pub async fn build_with_shape<S: BlockStore>(
    store: &S,
    shape: Shape,
    mut entries: Vec<Entry>,
) -> Result<Cid, TreeError> {
    entries.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.lww_cmp(b)));
    let mut builder = TreeBuilder::with_shape(store, shape, 0);
    let mut iter = entries.into_iter().peekable();
    while let Some(entry) = iter.next() {
        // Of equal ids the winner sorts last.
        if iter.peek().is_some_and(|next| next.id == entry.id) {
            continue;
        }
        builder.push(&entry).await?;
    }
    Ok(builder.finish().await?.0)
}
