//! Streaming diff of two roots, and the CRDT merge built on it.
//!
//! The diff walks both trees side by side from the left, expanding nodes only while they
//! differ: two equal CIDs at the same place stand for the same entries and are skipped
//! unread, so the cost follows the size of the difference, not of the trees.

use std::{cmp::Ordering, collections::VecDeque};

use cid::Cid;
use ipvec_protocol::{
    entry::{Entry, EntryKey},
    node::Node,
};

use super::{
    chunker::Shape,
    edit::{apply_with_shape, EditStats},
    Edit, NodeLoader, TreeError,
};
use crate::store::BlockStore;

/// One id whose entry differs between two trees.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The id (key form).
    pub key: EntryKey,
    /// Its entry in the first tree.
    pub old: Option<Entry>,
    /// Its entry in the second tree.
    pub new: Option<Entry>,
}

impl Change {
    /// The edit that turns the first tree's entry into the second's.
    pub fn to_edit(&self) -> Edit {
        match &self.new {
            Some(entry) => Edit::Put(entry.clone()),
            None => Edit::Remove(self.key.clone()),
        }
    }
}

/// What is left to compare on one side: whole subtrees and single entries, in key order.
#[derive(Debug)]
enum Unit {
    Node {
        cid: Cid,
        level: u32,
        key: Option<EntryKey>,
    },
    Entry(Entry),
}

/// The changes from one tree to another, produced on demand.
pub struct Diff<'a, S> {
    loader: NodeLoader<'a, S>,
    a: VecDeque<Unit>,
    b: VecDeque<Unit>,
}

impl<S> std::fmt::Debug for Diff<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diff")
            .field("a", &self.a.len())
            .field("b", &self.b.len())
            .finish()
    }
}

/// Diffs the tree under `a` against the tree under `b`.
pub fn diff<S: BlockStore>(store: &S, a: Cid, b: Cid) -> Diff<'_, S> {
    let root = |cid| Unit::Node {
        cid,
        level: u32::MAX,
        key: None,
    };
    Diff {
        loader: NodeLoader::new(store),
        a: VecDeque::from([root(a)]),
        b: VecDeque::from([root(b)]),
    }
}

enum Step {
    SkipBoth,
    ExpandA,
    ExpandB,
    ExpandBoth,
    /// The front entry of `a` is not in `b`.
    EmitA,
    /// The front entry of `b` is not in `a`.
    EmitB,
    /// Both fronts are entries with the same id.
    Same,
}

impl<S: BlockStore> Diff<'_, S> {
    /// Nodes read so far.
    pub fn reads(&self) -> u64 {
        self.loader.reads
    }

    async fn expand(
        loader: &mut NodeLoader<'_, S>,
        side: &mut VecDeque<Unit>,
    ) -> Result<(), TreeError> {
        let Some(Unit::Node { cid, .. }) = side.pop_front() else {
            return Ok(());
        };
        let node = loader.load(&cid).await?;
        match node.as_ref() {
            Node::Leaf(entries) => {
                for entry in entries.iter().rev() {
                    side.push_front(Unit::Entry(entry.clone()));
                }
            }
            Node::Branch { level, children } => {
                for child in children.iter().rev() {
                    side.push_front(Unit::Node {
                        cid: child.cid,
                        level: level - 1,
                        key: Some(child.key.clone()),
                    });
                }
            }
        }
        Ok(())
    }

    fn step(&self) -> Option<Step> {
        use Unit::{Entry as E, Node as N};
        Some(match (self.a.front(), self.b.front()) {
            (None, None) => return None,
            (Some(N { .. }), None) => Step::ExpandA,
            (None, Some(N { .. })) => Step::ExpandB,
            (Some(E(_)), None) => Step::EmitA,
            (None, Some(E(_))) => Step::EmitB,
            (Some(E(ea)), Some(E(eb))) => match ea.id.cmp(&eb.id) {
                Ordering::Less => Step::EmitA,
                Ordering::Greater => Step::EmitB,
                Ordering::Equal => Step::Same,
            },
            (
                Some(N {
                    cid: ca,
                    level: la,
                    key: ka,
                }),
                Some(N {
                    cid: cb,
                    level: lb,
                    key: kb,
                }),
            ) => {
                if ca == cb {
                    Step::SkipBoth
                } else if la != lb {
                    if la > lb {
                        Step::ExpandA
                    } else {
                        Step::ExpandB
                    }
                } else {
                    match (ka, kb) {
                        (Some(ka), Some(kb)) if ka < kb => Step::ExpandA,
                        (Some(ka), Some(kb)) if ka > kb => Step::ExpandB,
                        _ => Step::ExpandBoth,
                    }
                }
            }
            // An entry below the first key of the other side's subtree cannot be in it.
            (Some(E(ea)), Some(N { key, .. })) => match key {
                Some(k) if &ea.id < k => Step::EmitA,
                _ => Step::ExpandB,
            },
            (Some(N { key, .. }), Some(E(eb))) => match key {
                Some(k) if &eb.id < k => Step::EmitB,
                _ => Step::ExpandA,
            },
        })
    }

    /// The next change in key order, or `None` when the trees have been fully compared.
    pub async fn next(&mut self) -> Result<Option<Change>, TreeError> {
        loop {
            let Some(step) = self.step() else {
                return Ok(None);
            };
            match step {
                Step::SkipBoth => {
                    self.a.pop_front();
                    self.b.pop_front();
                }
                Step::ExpandA => Self::expand(&mut self.loader, &mut self.a).await?,
                Step::ExpandB => Self::expand(&mut self.loader, &mut self.b).await?,
                Step::ExpandBoth => {
                    Self::expand(&mut self.loader, &mut self.a).await?;
                    Self::expand(&mut self.loader, &mut self.b).await?;
                }
                Step::EmitA => {
                    if let Some(Unit::Entry(e)) = self.a.pop_front() {
                        return Ok(Some(Change {
                            key: e.id.clone(),
                            old: Some(e),
                            new: None,
                        }));
                    }
                }
                Step::EmitB => {
                    if let Some(Unit::Entry(e)) = self.b.pop_front() {
                        return Ok(Some(Change {
                            key: e.id.clone(),
                            old: None,
                            new: Some(e),
                        }));
                    }
                }
                Step::Same => {
                    if let (Some(Unit::Entry(ea)), Some(Unit::Entry(eb))) =
                        (self.a.pop_front(), self.b.pop_front())
                    {
                        if ea != eb {
                            return Ok(Some(Change {
                                key: ea.id.clone(),
                                old: Some(ea),
                                new: Some(eb),
                            }));
                        }
                    }
                }
            }
        }
    }

    /// Collects every remaining change.
    pub async fn collect(mut self) -> Result<Vec<Change>, TreeError> {
        let mut out = Vec::new();
        while let Some(change) = self.next().await? {
            out.push(change);
        }
        Ok(out)
    }
}

/// Merges two versions of a shard: the union of their entries, keeping for each id the
/// last-writer-wins winner ([`Entry::lww_cmp`]). Commutative, associative and idempotent; the
/// result is a tree, so equal merges have equal root CIDs.
pub async fn merge<S: BlockStore>(
    store: &S,
    a: Cid,
    b: Cid,
) -> Result<(Cid, EditStats), TreeError> {
    merge_with_shape(store, Shape::STANDARD, a, b).await
}

/// [`merge`] of trees of another shape (see [`super::build_with_shape`]).
pub async fn merge_with_shape<S: BlockStore>(
    store: &S,
    shape: Shape,
    a: Cid,
    b: Cid,
) -> Result<(Cid, EditStats), TreeError> {
    let mut changes = diff(store, a, b);
    let mut edits = Vec::new();
    while let Some(change) = changes.next().await? {
        if let Some(theirs) = change.new {
            let wins = change
                .old
                .as_ref()
                .is_none_or(|ours| theirs.lww_cmp(ours) == Ordering::Greater);
            if wins {
                edits.push(Edit::Put(theirs));
            }
        }
    }
    apply_with_shape(store, shape, a, edits).await
}
