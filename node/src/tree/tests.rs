//! Property tests of the tree against a model: a sorted map of entries.

use std::{
    collections::{BTreeMap, HashSet},
    ops::Bound,
};

use cid::Cid;
use ipld_core::ipld::Ipld;
use ipvec_protocol::{
    entry::{Entry, EntryId, EntryKey},
    hlc::Hlc,
    node::Node,
};
use proptest::prelude::*;

use super::{build::build_with_shape, diff::merge_with_shape, edit::apply_with_shape, *};
use crate::store::{BlockStore, MemBlockStore, StoreError};

/// Small nodes, so a few hundred entries make trees four or five levels deep.
const SMALL: Shape = Shape {
    leaf_target: 300,
    branch_target: 200,
    max_block: 2_000,
};
/// A block cap so low that size splits happen all the time.
const CRAMPED: Shape = Shape {
    leaf_target: 600,
    branch_target: 300,
    max_block: 420,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn key(id: u64) -> EntryKey {
    EntryId::Int(id).to_key().unwrap()
}

fn entry(id: u64, version: u64, writer: u8, deleted: bool) -> Entry {
    if deleted {
        return Entry::tombstone(key(id), Hlc(version), [writer; 32]);
    }
    let vec: Vec<u8> = (0..16)
        .map(|i| {
            (id as u8)
                .wrapping_mul(31)
                .wrapping_add(i)
                .wrapping_add(version as u8)
        })
        .collect();
    let meta = id
        .is_multiple_of(3)
        .then(|| Ipld::Map([("v".to_string(), Ipld::Integer(i128::from(version)))].into()));
    Entry::put(key(id), vec, meta, Hlc(version), [writer; 32])
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (0u64..400, 0u64..6, 0u8..3, prop::bool::weighted(0.15))
        .prop_map(|(id, v, w, d)| entry(id, v, w, d))
}

fn arb_entries(max: usize) -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(arb_entry(), 0..max)
}

/// The model: the last-writer-wins winner of each id.
fn model(entries: &[Entry]) -> BTreeMap<EntryKey, Entry> {
    let mut map: BTreeMap<EntryKey, Entry> = BTreeMap::new();
    for e in entries {
        match map.get(&e.id) {
            Some(old) if old.lww_cmp(e) != std::cmp::Ordering::Less => {}
            _ => {
                map.insert(e.id.clone(), e.clone());
            }
        }
    }
    map
}

async fn all_entries<S: BlockStore>(store: &S, root: Cid) -> Vec<Entry> {
    range(store, root, Bound::Unbounded, Bound::Unbounded)
        .collect()
        .await
        .unwrap()
}

/// Checks the tree is well formed: levels step down by one, keys and counts agree with the
/// children, and no block is over the cap. Returns the number of nodes.
async fn check_shape<S: BlockStore>(store: &S, root: Cid, shape: &Shape) -> usize {
    let mut nodes = 0;
    let mut stack = vec![(root, None::<(u32, EntryKey, u64)>)];
    while let Some((cid, expect)) = stack.pop() {
        nodes += 1;
        let bytes = store.require(&cid).await.unwrap();
        assert!(
            bytes.len() <= shape.max_block,
            "node of {} bytes over the cap {}",
            bytes.len(),
            shape.max_block
        );
        let node = Node::decode(&bytes).unwrap();
        if let Some((level, first, count)) = expect.clone() {
            assert_eq!(node.level(), level);
            assert_eq!(node.count(), count);
            let actual_first = match &node {
                Node::Leaf(es) => es[0].id.clone(),
                Node::Branch { children, .. } => children[0].key.clone(),
            };
            assert_eq!(actual_first, first);
        }
        if let Node::Branch { level, children } = &node {
            if expect.is_none() {
                assert!(
                    children.len() > 1,
                    "a root branch with one child is not canonical"
                );
            }
            for c in children {
                stack.push((c.cid, Some((level - 1, c.key.clone(), c.count))));
            }
        }
    }
    nodes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any order of inserting, in any batching, gives the root a one-shot build gives.
    #[test]
    fn root_depends_only_on_the_set(entries in arb_entries(300), cuts in prop::collection::vec(0usize..300, 0..6), seed in any::<u64>()) {
        rt().block_on(async {
            for shape in [SMALL, CRAMPED] {
                let store = MemBlockStore::new();
                let expected = build_with_shape(&store, shape, entries.clone()).await.unwrap();
                // Insert in a shuffled order, in batches.
                let mut order: Vec<Entry> = entries.clone();
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
                rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (order.len() + 1)).collect();
                cuts.push(order.len());
                cuts.sort();
                let mut root = build_with_shape(&store, shape, vec![]).await.unwrap();
                let mut start = 0;
                for end in cuts {
                    // Within a batch the last edit of an id counts; keep the model's winner by
                    // feeding only edits that win against what the tree holds.
                    let mut edits = Vec::new();
                    for e in &order[start..end] {
                        let current = get(&store, &root, &e.id).await.unwrap().map(|(c, _)| c);
                        let pending = edits.iter().rev().find_map(|ed: &Edit| match ed { Edit::Put(p) if p.id == e.id => Some(p.clone()), _ => None });
                        let best = pending.or(current);
                        if best.is_none_or(|b| e.lww_cmp(&b) == std::cmp::Ordering::Greater) {
                            edits.push(Edit::Put(e.clone()));
                        }
                    }
                    root = apply_with_shape(&store, shape, root, edits).await.unwrap().0;
                    start = end;
                }
                prop_assert_eq!(root, expected);
                let want: Vec<Entry> = model(&entries).into_values().collect();
                prop_assert_eq!(all_entries(&store, root).await, want);
                check_shape(&store, root, &shape).await;
            }
            Ok(())
        })?;
    }

    /// Removing what was added gives back the old root; diffs are exact and apply.
    #[test]
    fn diff_applies_and_removal_restores(a in arb_entries(250), b in arb_entries(250)) {
        rt().block_on(async {
            let store = MemBlockStore::new();
            let ra = build_with_shape(&store, SMALL, a.clone()).await.unwrap();
            let rb = build_with_shape(&store, SMALL, b.clone()).await.unwrap();
            let changes = diff(&store, ra, rb).collect().await.unwrap();
            // The diff is exactly the model's difference, in key order.
            let (ma, mb) = (model(&a), model(&b));
            let keys: std::collections::BTreeSet<&EntryKey> = ma.keys().chain(mb.keys()).collect();
            let want: Vec<Change> = keys.into_iter().filter_map(|k| {
                let (old, new) = (ma.get(k).cloned(), mb.get(k).cloned());
                (old != new).then(|| Change { key: k.clone(), old, new })
            }).collect();
            prop_assert_eq!(&changes, &want);
            let edits = changes.iter().map(Change::to_edit).collect();
            let (patched, _) = apply_with_shape(&store, SMALL, ra, edits).await.unwrap();
            prop_assert_eq!(patched, rb);
            // Remove every id of b that a does not have: back to a plus b's overrides removed.
            let only_b: Vec<Edit> = mb.keys().filter(|k| !ma.contains_key(*k)).map(|k| Edit::Remove(k.clone())).collect();
            let merged = merge_with_shape(&store, SMALL, ra, rb).await.unwrap().0;
            let back = apply_with_shape(&store, SMALL, ra, vec![]).await.unwrap().0;
            prop_assert_eq!(back, ra);
            let trimmed = apply_with_shape(&store, SMALL, merged, only_b).await.unwrap().0;
            let expect_trimmed = build_with_shape(&store, SMALL, {
                let mut m = model(&[a.clone(), b.clone()].concat());
                m.retain(|k, _| ma.contains_key(k));
                m.into_values().collect()
            }).await.unwrap();
            prop_assert_eq!(trimmed, expect_trimmed);
            Ok(())
        })?;
    }

    /// Merge is the LWW union: commutative, associative, idempotent.
    #[test]
    fn merge_is_a_crdt(a in arb_entries(200), b in arb_entries(200), c in arb_entries(200)) {
        rt().block_on(async {
            let store = MemBlockStore::new();
            let ra = build_with_shape(&store, SMALL, a.clone()).await.unwrap();
            let rb = build_with_shape(&store, SMALL, b.clone()).await.unwrap();
            let rc = build_with_shape(&store, SMALL, c.clone()).await.unwrap();
            let m = |x, y| { let store = store.clone(); async move { merge_with_shape(&store, SMALL, x, y).await.unwrap().0 } };
            let ab = m(ra, rb).await;
            prop_assert_eq!(ab, m(rb, ra).await);
            prop_assert_eq!(m(ab, rc).await, m(ra, m(rb, rc).await).await);
            prop_assert_eq!(m(ab, ab).await, ab);
            prop_assert_eq!(m(ab, ra).await, ab);
            let union = build_with_shape(&store, SMALL, [a, b].concat()).await.unwrap();
            prop_assert_eq!(ab, union);
            Ok(())
        })?;
    }

    /// The leaf directory finds the leaf of string ids whose keys share their first 16 bytes
    /// or more (searched by whole key), and of ids shorter than 16 bytes.
    #[test]
    fn the_leaf_directory_tells_apart_ids_with_long_shared_prefixes(stems in prop::collection::vec(0usize..24, 1..120), probe in 0usize..24) {
        rt().block_on(async {
            let store = MemBlockStore::new();
            let id = |stem: usize, n: usize| EntryId::Str(format!("{}{n}", "p".repeat(stem))).to_key().unwrap();
            let entries: Vec<Entry> = stems.iter().enumerate()
                .map(|(n, stem)| Entry::put(id(*stem, n), vec![0; 16], None, Hlc(1), [1; 32]))
                .collect();
            let root = build_with_shape(&store, CRAMPED, entries).await.unwrap();
            let directory = LeafDirectory::read(&store, &root).await.unwrap();
            let probes = (0..stems.len() + 5).map(|n| id(probe, n)).chain(stems.iter().enumerate().map(|(n, s)| id(*s, n)));
            for key in probes {
                prop_assert_eq!(directory.leaf_of(&key), Some(locate(&store, &root, &key).await.unwrap()));
            }
            Ok(())
        })?;
    }

    /// Lookups and range scans agree with the model.
    #[test]
    fn lookups_and_ranges_match_the_model(entries in arb_entries(300), lo in 0u64..420, len in 0u64..200, probe in 0u64..420) {
        rt().block_on(async {
            let store = MemBlockStore::new();
            let root = build_with_shape(&store, CRAMPED, entries.clone()).await.unwrap();
            let m = model(&entries);
            let found = get(&store, &root, &key(probe)).await.unwrap();
            if let Some((_, leaf)) = &found {
                prop_assert_eq!(&locate(&store, &root, &key(probe)).await.unwrap(), leaf);
            }
            // The leaf directory answers every probe as the descent through branches does,
            // keys absent from the tree included.
            let directory = LeafDirectory::read(&store, &root).await.unwrap();
            for id in (0..420).step_by(7).chain([probe]) {
                prop_assert_eq!(
                    directory.leaf_of(&key(id)),
                    Some(locate(&store, &root, &key(id)).await.unwrap())
                );
            }
            let got = found.map(|(e, _)| e);
            prop_assert_eq!(got, m.get(&key(probe)).cloned());
            let scanned = range(&store, root, Bound::Included(key(lo)), Bound::Excluded(key(lo + len))).collect().await.unwrap();
            let want: Vec<Entry> = m.range(key(lo)..key(lo + len)).map(|(_, e)| e.clone()).collect();
            prop_assert_eq!(scanned, want);
            Ok(())
        })?;
    }
}

fn vector_entry(id: u64, version: u64, dim: usize) -> Entry {
    let vec: Vec<u8> = (0..dim)
        .flat_map(|i| ((id * 7 + i as u64 + version) as f32).to_le_bytes())
        .collect();
    Entry::put(key(id), vec, None, Hlc(version), [1; 32])
}

#[test]
fn one_update_rewrites_one_path() {
    rt().block_on(async {
        let store = MemBlockStore::new();
        let entries: Vec<Entry> = (0..6_000).map(|i| vector_entry(i, 1, 128)).collect();
        let root = build(&store, entries).await.unwrap();
        let height = store
            .require(&root)
            .await
            .map(|b| Node::decode(&b).unwrap().level())
            .unwrap();
        assert!(height >= 1, "6,000 entries of 128 dims span several leaves");
        let (new_root, stats) = apply(&store, root, vec![Edit::Put(vector_entry(4_321, 2, 128))])
            .await
            .unwrap();
        assert_ne!(new_root, root);
        assert!(
            stats.written.blocks <= u64::from(height) + 2,
            "wrote {} blocks for one entry (height {height})",
            stats.written.blocks
        );
        // Diffing the two versions reads only the changed path on each side.
        let mut d = diff(&store, root, new_root);
        let changes = {
            let mut out = vec![];
            while let Some(c) = d.next().await.unwrap() {
                out.push(c);
            }
            out
        };
        assert_eq!(changes.len(), 1);
        assert!(
            d.reads() <= 2 * (u64::from(height) + 2),
            "diff read {} nodes",
            d.reads()
        );
    });
}

#[test]
fn large_metadata_never_makes_a_block_over_one_mib() {
    rt().block_on(async {
        let store = MemBlockStore::new();
        let meta =
            |i: u64| Ipld::Map([("blob".to_string(), Ipld::Bytes(vec![i as u8; 60_000]))].into());
        let entries: Vec<Entry> = (0..60)
            .map(|i| Entry::put(key(i), vec![0; 16_384 * 4], Some(meta(i)), Hlc(1), [3; 32]))
            .collect();
        let root = build(&store, entries.clone()).await.unwrap();
        let nodes = check_shape(&store, root, &Shape::STANDARD).await;
        assert!(nodes >= 5, "7.5 MiB of entries must span several blocks");
        assert_eq!(all_entries(&store, root).await, entries);
        for block in store.list().await.unwrap() {
            assert!(block.size as usize <= ipvec_protocol::limits::MAX_BLOCK_BYTES);
        }
    });
}

#[test]
fn deleting_everything_gives_the_empty_tree() {
    rt().block_on(async {
        let store = MemBlockStore::new();
        let empty = build(&store, vec![]).await.unwrap();
        let entries: Vec<Entry> = (0..500).map(|i| entry(i, 1, 0, false)).collect();
        let root = build_with_shape(&store, SMALL, entries).await.unwrap();
        let removes = (0..500).map(|i| Edit::Remove(key(i))).collect();
        let (after, _) = apply_with_shape(&store, SMALL, root, removes)
            .await
            .unwrap();
        assert_eq!(after, empty);
        let distinct: HashSet<Cid> = [root, after].into();
        assert_eq!(distinct.len(), 2);
    });
}

/// A store that takes its time over each write (the write finishes after the writer's task
/// yields a few times), and fails every write once `writes_left` reaches zero.
#[derive(Clone)]
struct LaggingStore {
    inner: MemBlockStore,
    writes_left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LaggingStore {
    fn new(writes_left: usize) -> Self {
        Self {
            inner: MemBlockStore::new(),
            writes_left: std::sync::Arc::new(writes_left.into()),
        }
    }
}

impl BlockStore for LaggingStore {
    async fn put_raw(&self, digest: [u8; 32], bytes: bytes::Bytes) -> Result<(), StoreError> {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let take = |left: usize| left.checked_sub(1);
        let ordering = std::sync::atomic::Ordering::SeqCst;
        match self.writes_left.fetch_update(ordering, ordering, take) {
            Ok(_) => self.inner.put_raw(digest, bytes).await,
            Err(_) => Err(StoreError::Backend("the disk is full".into())),
        }
    }
    async fn get_raw(&self, digest: [u8; 32]) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.get_raw(digest).await
    }
    async fn has_digest(&self, digest: [u8; 32]) -> Result<bool, StoreError> {
        self.inner.has_digest(digest).await
    }
    async fn list(&self) -> Result<Vec<crate::store::BlockInfo>, StoreError> {
        self.inner.list().await
    }
    async fn pin_as(&self, name: &str, root: &Cid) -> Result<(), StoreError> {
        self.inner.pin_as(name, root).await
    }
    async fn unpin_name(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.unpin_name(name).await
    }
    async fn pins(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        self.inner.pins().await
    }
    async fn pin_shallow_as(&self, name: &str, block: &Cid) -> Result<(), StoreError> {
        self.inner.pin_shallow_as(name, block).await
    }
    async fn unpin_shallow_name(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.unpin_shallow_name(name).await
    }
    async fn shallow_pins(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        self.inner.shallow_pins().await
    }
    async fn delete_unpinned(
        &self,
        live: &HashSet<[u8; 32]>,
    ) -> Result<crate::store::SweepStats, StoreError> {
        self.inner.delete_unpinned(live).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}

/// Builds and edits write their nodes behind them; a root is handed out only once every node
/// under it is stored, on one thread and on several.
#[test]
fn a_root_comes_back_only_with_all_its_nodes_stored() {
    let runtimes = [
        rt(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
    ];
    for runtime in runtimes {
        runtime.block_on(async {
            let store = LaggingStore::new(usize::MAX);
            let entries: Vec<Entry> = (0..600).map(|i| entry(i, 1, 0, false)).collect();
            let root = build_with_shape(&store, SMALL, entries.clone())
                .await
                .unwrap();
            let nodes = check_shape(&store, root, &SMALL).await;
            assert!(nodes > 20, "600 entries in small nodes make a deep tree");
            assert_eq!(all_entries(&store, root).await, entries);
            let edits = (0..600)
                .step_by(7)
                .map(|i| Edit::Put(entry(i, 2, 1, false)));
            let (after, stats) = apply_with_shape(&store, SMALL, root, edits.collect())
                .await
                .unwrap();
            assert!(stats.written.blocks > 8, "every leaf changes");
            check_shape(&store, after, &SMALL).await;
            let expected: Vec<Entry> = (0..600)
                .map(|i| entry(i, 1 + u64::from(i % 7 == 0), u8::from(i % 7 == 0), false))
                .collect();
            assert_eq!(all_entries(&store, after).await, expected);
        });
    }
}

/// A write the store refuses fails the build or edit that made it, wherever it happened.
#[test]
fn a_refused_node_write_fails_the_operation() {
    rt().block_on(async {
        let entries: Vec<Entry> = (0..600).map(|i| entry(i, 1, 0, false)).collect();
        let whole = build_with_shape(&MemBlockStore::new(), SMALL, entries.clone())
            .await
            .unwrap();
        for writes in [0, 1, 5, 30] {
            let store = LaggingStore::new(writes);
            let built = build_with_shape(&store, SMALL, entries.clone()).await;
            assert!(
                matches!(&built, Err(TreeError::Store(StoreError::Backend(e))) if e.contains("full")),
                "a build allowed {writes} writes gave {built:?}"
            );
        }
        let store = LaggingStore::new(usize::MAX);
        let root = build_with_shape(&store, SMALL, entries.clone())
            .await
            .unwrap();
        assert_eq!(root, whole);
        store
            .writes_left
            .store(3, std::sync::atomic::Ordering::SeqCst);
        let edits = (0..600).step_by(5).map(|i| Edit::Put(entry(i, 2, 1, false)));
        let edited = apply_with_shape(&store, SMALL, root, edits.collect()).await;
        assert!(
            matches!(&edited, Err(TreeError::Store(StoreError::Backend(_)))),
            "{edited:?}"
        );
    });
}
