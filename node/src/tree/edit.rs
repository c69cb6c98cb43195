//! Applying a batch of changes to a tree, rewriting only the nodes that change.
//!
//! Each level is re-chunked only around the edits: from the start of the node an edit falls in
//! (where the chunker is known to be empty) through the following nodes until a boundary falls
//! at the end of an old node with no edits left before the next one. From there on the old
//! nodes are what a fresh build would make. The old nodes consumed and the new nodes written
//! become the edits of the level above, up to the root.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    node::{frame_node, ChildRef, Node},
};

use super::{
    build::TreeBuilder,
    chunker::{LevelChunker, Shape},
    cursor::LevelCursor,
    writer::NodeWriter,
    Item, NodeLoader, TreeError, WriteStats,
};
use crate::store::BlockStore;

/// One change to a tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Insert or replace the entry with this id (a tombstone is put like any entry).
    Put(Entry),
    /// Remove the id's entry outright (used to compact tombstones and to apply diffs).
    Remove(EntryKey),
}

impl Edit {
    fn key(&self) -> &EntryKey {
        match self {
            Edit::Put(e) => &e.id,
            Edit::Remove(k) => k,
        }
    }
}

/// What an edit read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EditStats {
    /// Nodes written.
    pub written: WriteStats,
    /// Nodes read.
    pub reads: u64,
}

/// An edit of one level: the item to put at `key`, or `None` to remove it.
#[derive(Debug, Clone)]
struct LevelEdit {
    key: EntryKey,
    item: Option<Item>,
}

/// Applies `edits` to the tree under `root` and returns the new root. Of several edits to one
/// id, the last one counts.
pub async fn apply<S: BlockStore>(
    store: &S,
    root: Cid,
    edits: Vec<Edit>,
) -> Result<(Cid, EditStats), TreeError> {
    apply_with_shape(store, Shape::STANDARD, root, edits).await
}

/// [`apply`] to a tree of another shape (see [`super::build_with_shape`]).
pub async fn apply_with_shape<S: BlockStore>(
    store: &S,
    shape: Shape,
    root: Cid,
    edits: Vec<Edit>,
) -> Result<(Cid, EditStats), TreeError> {
    let mut level_edits: Vec<(usize, LevelEdit)> = Vec::with_capacity(edits.len());
    for (order, edit) in edits.into_iter().enumerate() {
        let item = match &edit {
            Edit::Put(entry) => Some(Item::entry(entry)?),
            Edit::Remove(_) => None,
        };
        level_edits.push((
            order,
            LevelEdit {
                key: edit.key().clone(),
                item,
            },
        ));
    }
    // Sort by key, the last edit of each key last, and keep that one.
    level_edits.sort_by(|a, b| a.1.key.cmp(&b.1.key).then(a.0.cmp(&b.0)));
    let mut edits: Vec<LevelEdit> = Vec::with_capacity(level_edits.len());
    for (_, edit) in level_edits {
        if edits.last().is_some_and(|last| last.key == edit.key) {
            edits.pop();
        }
        edits.push(edit);
    }

    let mut editor = Editor {
        shape,
        loader: NodeLoader::new(store),
        writer: NodeWriter::new(store),
    };
    let height = editor.loader.load(&root).await?.level();
    let mut level = 0;
    loop {
        if edits.is_empty() {
            editor.writer.finish().await?;
            return Ok((root, editor.stats()));
        }
        let (consumed, added) = editor.rechunk_level(root, height, level, &edits).await?;
        if level == height {
            let new_root = match added.len() {
                0 => editor.writer.write(frame_node(0, &[])).await?,
                1 => {
                    // The new root may be a node just written: it is read back once stored.
                    editor.writer.finish().await?;
                    editor.collapse(added[0].cid).await?
                }
                _ => {
                    let mut builder = TreeBuilder::with_shape(store, shape, height + 1);
                    for child in &added {
                        builder.push_item(Item::child(child)?).await?;
                    }
                    let (cid, stats) = builder.finish().await?;
                    editor.writer.stats.blocks += stats.blocks;
                    editor.writer.stats.bytes += stats.bytes;
                    cid
                }
            };
            editor.writer.finish().await?;
            return Ok((new_root, editor.stats()));
        }
        edits = parent_edits(&consumed, &added)?;
        level += 1;
    }
}

/// Turns "these old nodes were replaced by these new ones" into edits of the level above.
fn parent_edits(consumed: &[ChildRef], added: &[ChildRef]) -> Result<Vec<LevelEdit>, TreeError> {
    let old: HashMap<&EntryKey, &ChildRef> = consumed.iter().map(|c| (&c.key, c)).collect();
    let mut edits: BTreeMap<EntryKey, Option<Item>> =
        consumed.iter().map(|c| (c.key.clone(), None)).collect();
    for child in added {
        if old.get(&child.key).is_some_and(|o| *o == child) {
            edits.remove(&child.key);
        } else {
            edits.insert(child.key.clone(), Some(Item::child(child)?));
        }
    }
    Ok(edits
        .into_iter()
        .map(|(key, item)| LevelEdit { key, item })
        .collect())
}

struct Editor<'a, S> {
    shape: Shape,
    loader: NodeLoader<'a, S>,
    writer: NodeWriter<S>,
}

impl<S: BlockStore> Editor<'_, S> {
    fn stats(&self) -> EditStats {
        EditStats {
            written: self.writer.stats,
            reads: self.loader.reads,
        }
    }

    /// A root that is a branch with one child is not canonical: its child is the root.
    async fn collapse(&mut self, mut cid: Cid) -> Result<Cid, TreeError> {
        loop {
            match self.loader.load(&cid).await?.as_ref() {
                Node::Branch { children, .. } if children.len() == 1 => cid = children[0].cid,
                _ => return Ok(cid),
            }
        }
    }

    /// Re-chunks `level` around `edits`; returns the old nodes consumed and the new nodes.
    async fn rechunk_level(
        &mut self,
        root: Cid,
        height: u32,
        level: u32,
        edits: &[LevelEdit],
    ) -> Result<(Vec<ChildRef>, Vec<ChildRef>), TreeError> {
        let mut cursor = LevelCursor::new(root, height, level);
        let mut consumed = Vec::new();
        let mut added = Vec::new();
        let mut i = 0;
        while i < edits.len() {
            cursor.seek(&mut self.loader, &edits[i].key).await?;
            let mut chunker = LevelChunker::new(self.shape, level);
            loop {
                let current = cursor.current().clone();
                let items = self.loader.items(&current.cid).await?;
                let next_key = cursor.next_key().cloned();
                let end = match &next_key {
                    Some(next) => i + edits[i..].partition_point(|e| &e.key < next),
                    None => edits.len(),
                };
                let mut chunks = Vec::new();
                merge(items, &edits[i..end], |item| {
                    chunker.push(item, &mut chunks)
                });
                i = end;
                if next_key.is_none() {
                    chunker.finish(&mut chunks);
                }
                for chunk in chunks {
                    let cid = self.writer.write(chunk.bytes).await?;
                    added.push(ChildRef {
                        cid,
                        key: chunk.key,
                        count: chunk.count,
                    });
                }
                consumed.push(current);
                if chunker.is_empty() {
                    break;
                }
                cursor.advance(&mut self.loader).await?;
            }
        }
        Ok((consumed, added))
    }
}

/// Merges a node's items with the edits that fall in it, both sorted by key.
fn merge(items: Vec<Item>, edits: &[LevelEdit], mut out: impl FnMut(Item)) {
    let mut edits = edits.iter().peekable();
    for item in items {
        while let Some(edit) = edits.next_if(|e| e.key < item.key) {
            if let Some(new) = &edit.item {
                out(new.clone());
            }
        }
        match edits.next_if(|e| e.key == item.key) {
            Some(edit) => {
                if let Some(new) = &edit.item {
                    out(new.clone());
                }
            }
            None => out(item),
        }
    }
    for edit in edits {
        if let Some(new) = &edit.item {
            out(new.clone());
        }
    }
}
