//! The shards' contents: real shard trees in one shared block store, written by the writers
//! with the node's `tree::apply` and merged on every node with its `tree::merge`.
//!
//! Every shard starts as the same tree on every node (its genesis). Each writer keeps its own
//! root of every shard and signs heads of its own, in its own sequence, as the daemon's
//! writers do: a commit merges the other writers' newest roots of one shard (writers hear
//! each other's heads), then upserts (and now and then deletes) a run of neighbouring ids of
//! it, stamped with the writer's hybrid logical clock, and is that writer's next head. A
//! node that takes writer `w`'s head merges, shard by shard, its own roots with the roots
//! that head names (only the shards the writer changed since the head it took before), so
//! its roots are the merge of every head it has taken. The merge is last writer wins per id;
//! the world checks that nodes which took the same heads hold the same roots, whatever order
//! the heads came in.
//!
//! The trees use the real format at a reduced node size (a leaf holds a few dozen small
//! entries), so a shard of `repair.shard_bytes` is about `shard_bytes / block_bytes` leaves
//! under a branch or two, as a real one would be. Each stored byte of a leaf stands for
//! `shard_bytes / (stored bytes of a genesis tree's leaves)` bytes on the wire, so fetches
//! move the scenario's sizes; branches cost their real size. The trees stand for the data
//! only in their shape: searches score the dataset's vectors (see `data`), not these
//! entries.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use cid::Cid;
use futures::executor::block_on;
use ipvec_node::{
    store::{BlockStore, MemBlockStore},
    tree::{self, Edit, Shape, TreeError},
};
use ipvec_protocol::{
    entry::{Entry, EntryId, EntryKey},
    hlc::Hlc,
    node::Node as TreeNode,
};

use super::NodeId;
use crate::{rng::Rng, scenario::Scenario};

/// How two roots of a shard are merged: the node's `tree::merge`, unless a test swaps in a
/// broken one to prove the checks catch it.
pub type MergeFn = fn(&MemBlockStore, Shape, Cid, Cid) -> Result<Cid, TreeError>;

/// The node's merge, `tree::merge` at the simulation's node size.
pub fn merge(store: &MemBlockStore, shape: Shape, a: Cid, b: Cid) -> Result<Cid, TreeError> {
    block_on(tree::merge_with_shape(store, shape, a, b)).map(|(root, _)| root)
}

/// Entries a genesis leaf holds, about.
const ENTRIES_PER_LEAF: u64 = 32;
/// The share of a commit's edits that delete.
const DELETE_SHARE: f64 = 0.1;

/// One writer: its key, its roots and its heads.
#[derive(Debug)]
struct Writer {
    key: [u8; 32],
    /// Its newest root of each shard.
    roots: Vec<Cid>,
    /// Its heads by sequence (from 1): the shard each changed and the root it left.
    commits: Vec<(u32, Cid)>,
    /// Per shard, the sequences of its heads that changed it.
    changed: Vec<Vec<u64>>,
    /// Its clock (the last stamp it handed out).
    clock: Hlc,
    /// Every block of every root it wrote (the writer keeps its history).
    blocks: HashSet<Cid>,
}

/// A block's stored size and links.
#[derive(Debug, Clone)]
struct Stored {
    bytes: u64,
    /// Empty for a leaf.
    links: Arc<[Cid]>,
}

/// The shards' trees, their writers, and what is known of their blocks.
#[derive(Debug)]
pub(super) struct Trees {
    store: MemBlockStore,
    shape: Shape,
    merge: MergeFn,
    /// Entries of a genesis shard, and ids one commit writes.
    entries: u64,
    per_commit: u64,
    /// Wire bytes per stored byte of a leaf (an entry stands for a point of the scenario's
    /// size; branches are charged at their real size, which is what links cost).
    scale: f64,
    genesis: Vec<Cid>,
    writers: Vec<Writer>,
    /// Merges done, by (ours, theirs).
    merges: HashMap<(Cid, Cid), Cid>,
    blocks: HashMap<Cid, Stored>,
    /// Every block under a root, by root.
    under: HashMap<Cid, Arc<HashSet<Cid>>>,
}

/// A shard tree operation failed: the simulated store always has its blocks, so this is a
/// defect (of the tree code or of the simulator).
fn fatal(e: TreeError) -> ! {
    panic!("a simulated shard tree is broken: {e}")
}

impl Trees {
    /// The genesis trees of `sc`'s shards, and `sc.writes.writers` writers holding them.
    pub(super) fn new(sc: &Scenario) -> Self {
        let block = sc.repair.block_bytes.max(1);
        let leaves = sc.repair.shard_bytes.div_ceil(block).max(1);
        let entries = leaves * ENTRIES_PER_LEAF;
        let per_commit = (sc.writes.delta_bytes as f64 / sc.repair.shard_bytes.max(1) as f64
            * entries as f64)
            .ceil()
            .clamp(1.0, entries as f64) as u64;
        let sample = Entry::put(key(0, 0), value(0, 0), None, Hlc(0), [0; 32]);
        let entry_bytes = sample.encode_checked().map_or(64, |b| b.len());
        let target = entry_bytes * ENTRIES_PER_LEAF as usize;
        let shape = Shape {
            leaf_target: target,
            branch_target: target,
            max_block: target * 16,
        };
        let store = MemBlockStore::new();
        let genesis: Vec<Cid> = (0..sc.shards)
            .map(|shard| {
                let entries = (0..entries)
                    .map(|i| Entry::put(key(shard, i), value(i, 0), None, Hlc(0), [0; 32]))
                    .collect();
                block_on(tree::build_with_shape(&store, shape, entries))
                    .unwrap_or_else(|e| fatal(e))
            })
            .collect();
        let writers = (0..sc.writes.writers)
            .map(|w| {
                let mut key = [0u8; 32];
                key.copy_from_slice(blake3::hash(&w.to_le_bytes()).as_bytes());
                Writer {
                    key,
                    roots: genesis.clone(),
                    commits: Vec::new(),
                    changed: vec![Vec::new(); sc.shards as usize],
                    clock: Hlc(0),
                    blocks: HashSet::new(),
                }
            })
            .collect();
        let mut trees = Self {
            store,
            shape,
            merge,
            entries,
            per_commit,
            scale: 1.0,
            genesis,
            writers,
            merges: HashMap::new(),
            blocks: HashMap::new(),
            under: HashMap::new(),
        };
        let leaf_bytes: u64 = match trees.genesis.first().copied() {
            Some(root) => {
                let under = trees.under(root);
                under
                    .iter()
                    .map(|c| trees.stored(c))
                    .filter(|s| s.links.is_empty())
                    .map(|s| s.bytes)
                    .sum()
            }
            None => 1,
        };
        trees.scale = sc.repair.shard_bytes as f64 / leaf_bytes.max(1) as f64;
        for root in trees.genesis.clone() {
            let under = trees.under(root);
            for w in &mut trees.writers {
                w.blocks.extend(under.iter().copied());
            }
        }
        trees
    }

    /// Merges with `f` from now on.
    pub(super) fn replace_merge(&mut self, f: MergeFn) {
        self.merge = f;
        self.merges.clear();
    }

    pub(super) fn genesis(&self) -> &[Cid] {
        &self.genesis
    }

    pub(super) fn writers(&self) -> u32 {
        self.writers.len() as u32
    }

    /// Every writer's newest head.
    pub(super) fn heads(&self) -> Vec<u64> {
        self.writers
            .iter()
            .map(|w| w.commits.len() as u64)
            .collect()
    }

    /// How many of writer `w`'s commits to `shard` a root that took its heads up to `seq`
    /// holds.
    pub(super) fn included(&self, w: u32, shard: u32, seq: u64) -> usize {
        self.writers[w as usize].changed[shard as usize].partition_point(|s| *s <= seq)
    }

    /// How many commits writer `w` made to `shard`.
    pub(super) fn commits_to(&self, w: u32, shard: u32) -> usize {
        self.writers[w as usize].changed[shard as usize].len()
    }

    /// Writer `w`'s root of `shard` as its head `seq` names it.
    fn root_at(&self, w: u32, shard: u32, seq: u64) -> Cid {
        let writer = &self.writers[w as usize];
        let changed = &writer.changed[shard as usize];
        match changed.partition_point(|s| *s <= seq) {
            0 => self.genesis[shard as usize],
            n => writer.commits[changed[n - 1] as usize - 1].1,
        }
    }

    /// The trees a node that took the heads `seen` reads to hold `shard`, having it already
    /// at the heads `held` if it does: each writer's root of it as `seen` names it, but for
    /// the writers that have not changed the shard since `held` (their trees are merged in
    /// the root held). The merge of the root held and these is the node's root.
    pub(super) fn inputs(&self, shard: u32, seen: &[u64], held: Option<&[u64]>) -> Vec<Cid> {
        let mut roots: Vec<Cid> = Vec::new();
        for (w, seq) in seen.iter().enumerate() {
            let root = self.root_at(w as u32, shard, *seq);
            let merged = held
                .and_then(|h| h.get(w))
                .is_some_and(|h| self.root_at(w as u32, shard, *h) == root);
            if !merged && !roots.contains(&root) {
                roots.push(root);
            }
        }
        // Every writer's tree grew from the genesis one: another tree merges it already.
        let genesis = self.genesis[shard as usize];
        if roots.len() > 1 {
            roots.retain(|r| *r != genesis);
        }
        roots
    }

    /// The root of `shard` of a node that took the heads `seen` one writer after the other.
    pub(super) fn merged_in_order(&mut self, shard: u32, seen: &[u64]) -> Cid {
        let mut root = self.genesis[shard as usize];
        for (w, seq) in seen.iter().enumerate() {
            let theirs = self.root_at(w as u32, shard, *seq);
            root = self.merge(root, theirs);
        }
        root
    }

    /// Writer `w`'s head of writes to a run of ids of `shard`, at virtual time `millis`;
    /// answers its sequence.
    pub(super) fn commit(&mut self, w: u32, shard: u32, millis: u64, rng: &mut Rng) -> u64 {
        let start = rng.below(self.entries);
        let mut edits = Vec::new();
        let writer = &mut self.writers[w as usize];
        for i in 0..self.per_commit {
            let id = key(shard, (start + i) % self.entries);
            writer.clock = if millis > writer.clock.millis() {
                Hlc::new(millis, 0)
            } else {
                Hlc::new(
                    writer.clock.millis(),
                    writer.clock.counter().saturating_add(1),
                )
            };
            let entry = if rng.unit() < DELETE_SHARE {
                Entry::tombstone(id, writer.clock, writer.key)
            } else {
                Entry::put(id, value(i, writer.clock.0), None, writer.clock, writer.key)
            };
            edits.push(Edit::Put(entry));
        }
        // A writer merges the others' heads before it writes (it hears them as any node
        // does; writers are always up), so its head names the union of what all wrote.
        let mut base = writer.roots[shard as usize];
        for other in 0..self.writers.len() {
            let theirs = self.writers[other].roots[shard as usize];
            base = self.merge(base, theirs);
        }
        let (root, _) = block_on(tree::apply_with_shape(&self.store, self.shape, base, edits))
            .unwrap_or_else(|e| fatal(e));
        let under = self.under(root);
        let writer = &mut self.writers[w as usize];
        writer.blocks.extend(under.iter().copied());
        writer.roots[shard as usize] = root;
        writer.commits.push((shard, root));
        let seq = writer.commits.len() as u64;
        writer.changed[shard as usize].push(seq);
        seq
    }

    /// Merges into a node's `roots` writer `w`'s head `to`, having taken its head `from`:
    /// each shard the writer changed in between merged with the writer's root of it.
    /// Answers how many shards it merged.
    pub(super) fn take(&mut self, roots: &mut [Cid], w: u32, from: u64, to: u64) -> u64 {
        let writer = &self.writers[w as usize];
        let changed: BTreeSet<(u32, Cid)> = {
            // The last root of each shard changed in (from, to].
            let mut last: HashMap<u32, Cid> = HashMap::new();
            let window = writer
                .commits
                .get(from as usize..(to as usize).min(writer.commits.len()))
                .unwrap_or(&[]);
            for (shard, root) in window {
                last.insert(*shard, *root);
            }
            last.into_iter().collect()
        };
        let merged = changed.len() as u64;
        for (shard, theirs) in changed {
            if let Some(ours) = roots.get_mut(shard as usize) {
                *ours = self.merge(*ours, theirs);
            }
        }
        merged
    }

    fn merge(&mut self, ours: Cid, theirs: Cid) -> Cid {
        if ours == theirs {
            return ours;
        }
        if let Some(root) = self.merges.get(&(ours, theirs)) {
            return *root;
        }
        let root = (self.merge)(&self.store, self.shape, ours, theirs).unwrap_or_else(|e| fatal(e));
        self.merges.insert((ours, theirs), root);
        root
    }

    /// `cid`'s size and links, read from the store once.
    fn stored(&mut self, cid: &Cid) -> Stored {
        if let Some(s) = self.blocks.get(cid) {
            return s.clone();
        }
        let bytes = block_on(self.store.get(cid))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the simulated store has no block {cid}"));
        let links: Arc<[Cid]> = match TreeNode::decode(&bytes) {
            Ok(TreeNode::Branch { children, .. }) => children.iter().map(|c| c.cid).collect(),
            Ok(TreeNode::Leaf(_)) => Arc::from([]),
            Err(e) => panic!("simulated block {cid} is not a tree node: {e}"),
        };
        let s = Stored {
            bytes: bytes.len() as u64,
            links,
        };
        self.blocks.insert(*cid, s.clone());
        s
    }

    /// Every block of the tree under `root`.
    pub(super) fn under(&mut self, root: Cid) -> Arc<HashSet<Cid>> {
        if let Some(u) = self.under.get(&root) {
            return u.clone();
        }
        let mut set = HashSet::new();
        let mut stack = vec![root];
        while let Some(cid) = stack.pop() {
            if set.insert(cid) {
                stack.extend(self.stored(&cid).links.iter().copied());
            }
        }
        let set = Arc::new(set);
        self.under.insert(root, set.clone());
        set
    }

    /// The links of block `cid`.
    pub(super) fn links(&mut self, cid: &Cid) -> Vec<Cid> {
        self.stored(cid).links.to_vec()
    }

    /// Bytes block `cid` stands for on the wire.
    pub(super) fn bytes(&mut self, cid: &Cid) -> u64 {
        let stored = self.stored(cid);
        if stored.links.is_empty() {
            (stored.bytes as f64 * self.scale).round() as u64
        } else {
            stored.bytes
        }
    }

    /// Whether writer `w` has block `cid`.
    pub(super) fn writer_has(&self, w: u32, cid: &Cid) -> bool {
        self.writers
            .get(w as usize)
            .is_some_and(|w| w.blocks.contains(cid))
    }

    /// Whether a node holding the shard roots `roots` has block `cid`.
    pub(super) fn held(&mut self, cid: &Cid, roots: impl IntoIterator<Item = Cid>) -> bool {
        roots.into_iter().any(|root| self.under(root).contains(cid))
    }
}

/// The writers, as peers: node numbers from the top, outside the serving set's.
pub(super) fn writer_node(w: u32) -> NodeId {
    NodeId::MAX - w
}

/// The writer a node number names, if it names one.
pub(super) fn writer_of(node: NodeId, writers: u32) -> Option<u32> {
    let w = NodeId::MAX - node;
    (w < writers).then_some(w)
}

/// The key of entry `i` of `shard`.
fn key(shard: u32, i: u64) -> EntryKey {
    let id = EntryId::Int((u64::from(shard) << 32) | i);
    id.to_key()
        .unwrap_or_else(|e| panic!("an integer id has a key: {e}"))
}

/// A small vector standing for entry `i`'s data as written at `stamp`.
fn value(i: u64, stamp: u64) -> Vec<u8> {
    let mut v = (i as f32).to_le_bytes().to_vec();
    v.extend_from_slice(&(stamp as f32).to_le_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trees(writers: u32, shards: u32) -> Trees {
        let sc = Scenario {
            shards,
            writes: crate::scenario::Writes {
                writers,
                ..Default::default()
            },
            ..Default::default()
        };
        Trees::new(&sc)
    }

    #[test]
    fn heads_taken_in_any_order_merge_to_one_root() {
        let mut t = trees(3, 2);
        let mut rng = Rng::new(4);
        for i in 0..30u64 {
            // Every writer writes both shards, at times that interleave.
            let w = (i % 3) as u32;
            t.commit(w, (i / 3 % 2) as u32, 1_000 + i * 7, &mut rng);
        }
        let heads = t.heads();
        let genesis = t.genesis().to_vec();
        let mut forward = genesis.clone();
        for w in 0..3 {
            t.take(&mut forward, w, 0, heads[w as usize]);
        }
        let mut backward = genesis.clone();
        for w in (0..3).rev() {
            t.take(&mut backward, w, 0, heads[w as usize]);
        }
        // Writer 1's heads one at a time, between the others'.
        let mut stepwise = genesis;
        t.take(&mut stepwise, 2, 0, heads[2]);
        for seq in 1..=heads[1] {
            t.take(&mut stepwise, 1, seq - 1, seq);
        }
        t.take(&mut stepwise, 0, 0, heads[0]);
        assert_eq!(forward, backward);
        assert_eq!(forward, stepwise);
        for shard in 0..2 {
            assert_eq!(forward[shard as usize], t.merged_in_order(shard, &heads));
            assert_ne!(forward[shard as usize], t.genesis()[shard as usize]);
        }
    }

    #[test]
    fn a_catch_up_reads_only_the_trees_and_blocks_that_changed() {
        let mut t = trees(2, 1);
        let mut rng = Rng::new(9);
        let genesis = t.genesis()[0];
        let seq = t.commit(0, 0, 5_000, &mut rng);
        let mut roots = vec![genesis];
        t.take(&mut roots, 0, 0, seq);
        // Writer 1 changed nothing: only writer 0's tree is read, and not at all by a holder
        // that already has it.
        assert_eq!(t.inputs(0, &[seq, 0], Some(&[0, 0])), vec![roots[0]]);
        assert_eq!(t.inputs(0, &[seq, 0], Some(&[seq, 0])), Vec::<Cid>::new());
        assert_eq!(t.inputs(0, &[seq, 0], None), vec![roots[0]]);
        // A commit of a few neighbouring ids rewrites a few leaves and the branches above.
        let old = t.under(genesis);
        let new = t.under(roots[0]);
        let fresh: Vec<&Cid> = new.iter().filter(|c| !old.contains(*c)).collect();
        assert!(
            !fresh.is_empty() && fresh.len() * 4 < new.len(),
            "{} of {}",
            fresh.len(),
            new.len()
        );
        let bytes: u64 = fresh.iter().map(|c| t.bytes(c)).sum();
        let whole: u64 = new.iter().map(|c| t.bytes(c)).sum();
        assert!(bytes * 4 < whole, "{bytes} of {whole} bytes");
        assert!(t.held(fresh[0], [roots[0]]) && !t.held(fresh[0], [genesis]));
        assert!(t.writer_has(0, fresh[0]) && !t.writer_has(1, fresh[0]));
    }
}
