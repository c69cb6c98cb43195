//! The conformance suite every [`BlockStore`] passes.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use ipvec_protocol::{cid as pcid, dagcbor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{car, dag, gc, BlockStore, IrohBlockStore, MemBlockStore, StoreError};

async fn put_get_has_list_stats<S: BlockStore>(store: S) {
    let a = store
        .put(pcid::RAW, Bytes::from_static(b"alpha"))
        .await
        .unwrap();
    let b = store
        .put(pcid::RAW, Bytes::from(vec![7u8; 100_000]))
        .await
        .unwrap();
    store
        .put(pcid::RAW, Bytes::from_static(b"alpha"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&a).await.unwrap().unwrap(),
        Bytes::from_static(b"alpha")
    );
    assert!(store.has(&b).await.unwrap());
    let missing = pcid::block_cid(pcid::RAW, b"never stored");
    assert!(!store.has(&missing).await.unwrap());
    assert!(store.get(&missing).await.unwrap().is_none());
    assert!(matches!(
        store.require(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks, 2);
    assert_eq!(stats.bytes, 100_005);
    let listed: HashSet<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.digest)
        .collect();
    assert_eq!(
        listed,
        HashSet::from([pcid::digest(&a).unwrap(), pcid::digest(&b).unwrap()])
    );
    // put_verified refuses bytes that do not match.
    let err = store
        .put_verified(&a, Bytes::from_static(b"alphb"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Protocol(_)), "{err}");
    assert_eq!(store.stats().await.unwrap().blocks, 2);
}

async fn pins_roundtrip<S: BlockStore>(store: S) {
    let a = store
        .put(pcid::RAW, Bytes::from_static(b"x"))
        .await
        .unwrap();
    let b = store
        .put(
            pcid::DAG_CBOR,
            Bytes::from(dagcbor::encode(&Ipld::Link(a)).unwrap()),
        )
        .await
        .unwrap();
    store.pin(&b).await.unwrap();
    store.pin(&b).await.unwrap();
    assert_eq!(store.pins().await.unwrap(), vec![(b.to_string(), b)]);
    // A named pin moves from one root to another; two names may pin one root.
    store.pin_as("col:x", &a).await.unwrap();
    store.pin_as("col:x", &b).await.unwrap();
    store.pin_as("col:y", &b).await.unwrap();
    let mut pins = store.pins().await.unwrap();
    pins.sort();
    let mut want = vec![
        (b.to_string(), b),
        ("col:x".to_string(), b),
        ("col:y".to_string(), b),
    ];
    want.sort();
    assert_eq!(pins, want);
    assert!(store.unpin_name("col:x").await.unwrap());
    assert!(!store.unpin_name("col:x").await.unwrap());
    assert!(store.unpin(&b).await.unwrap());
    assert!(!store.unpin(&b).await.unwrap());
    assert_eq!(store.pins().await.unwrap(), vec![("col:y".to_string(), b)]);
    // What a named pin still reaches survives gc.
    gc::collect_garbage(&store).await.unwrap();
    assert!(store.has(&a).await.unwrap());
    // Shallow pins are named apart from recursive ones, and move the same way.
    store.pin_shallow_as("col:y", &a).await.unwrap();
    store.pin_shallow_as("col:y", &b).await.unwrap();
    assert_eq!(
        store.shallow_pins().await.unwrap(),
        vec![("col:y".to_string(), b)]
    );
    assert_eq!(store.pins().await.unwrap(), vec![("col:y".to_string(), b)]);
    assert!(store.unpin_shallow_name("col:y").await.unwrap());
    assert!(!store.unpin_shallow_name("col:y").await.unwrap());
    assert_eq!(store.pins().await.unwrap(), vec![("col:y".to_string(), b)]);
    // A shallow pin keeps its block and the blocks it links to, not theirs: c → b → a.
    let c = store
        .put(
            pcid::DAG_CBOR,
            Bytes::from(dagcbor::encode(&Ipld::Link(b)).unwrap()),
        )
        .await
        .unwrap();
    store.pin_shallow_as("c", &c).await.unwrap();
    assert!(store.unpin_name("col:y").await.unwrap());
    let report = gc::collect_garbage(&store).await.unwrap();
    assert!(store.has(&c).await.unwrap());
    assert!(store.has(&b).await.unwrap());
    assert!(!store.has(&a).await.unwrap());
    assert_eq!((report.live_blocks, report.missing_blocks), (2, 0));
}

/// A random DAG: node i links to random earlier nodes; some are raw leaves.
async fn random_dag<S: BlockStore>(
    store: &S,
    rng: &mut StdRng,
    n: usize,
) -> (Vec<Cid>, HashMap<Cid, Vec<Cid>>) {
    let mut cids = Vec::new();
    let mut edges = HashMap::new();
    for i in 0..n {
        let cid = if i > 0 && rng.gen_bool(0.7) {
            let k = rng.gen_range(1..=3.min(i));
            let mut children = Vec::new();
            for _ in 0..k {
                children.push(cids[rng.gen_range(0..i)]);
            }
            let value = Ipld::Map(
                [
                    ("n".to_string(), Ipld::Integer(i as i128)),
                    (
                        "links".to_string(),
                        Ipld::List(children.iter().map(|c| Ipld::Link(*c)).collect()),
                    ),
                ]
                .into(),
            );
            let cid = store
                .put(
                    pcid::DAG_CBOR,
                    Bytes::from(dagcbor::encode(&value).unwrap()),
                )
                .await
                .unwrap();
            edges.insert(cid, children);
            cid
        } else {
            let len = rng.gen_range(1..40_000);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let cid = store.put(pcid::RAW, Bytes::from(data)).await.unwrap();
            edges.insert(cid, Vec::new());
            cid
        };
        cids.push(cid);
    }
    (cids, edges)
}

fn closure(edges: &HashMap<Cid, Vec<Cid>>, roots: &[Cid]) -> HashSet<Cid> {
    let mut seen = HashSet::new();
    let mut stack = roots.to_vec();
    while let Some(c) = stack.pop() {
        if seen.insert(c) {
            stack.extend(edges[&c].iter().copied());
        }
    }
    seen
}

async fn gc_removes_exactly_the_unreachable<S: BlockStore>(store: S, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (cids, edges) = random_dag(&store, &mut rng, 60).await;
    let pinned: Vec<Cid> = cids
        .iter()
        .copied()
        .filter(|_| rng.gen_bool(0.15))
        .collect();
    for p in &pinned {
        store.pin(p).await.unwrap();
    }
    // Shallow pins keep their block and the blocks it links to.
    let shallow: Vec<Cid> = cids.iter().copied().filter(|_| rng.gen_bool(0.1)).collect();
    let mut keep = closure(&edges, &pinned);
    for (i, s) in shallow.iter().enumerate() {
        store.pin_shallow_as(&format!("s{i}"), s).await.unwrap();
        keep.insert(*s);
        keep.extend(edges[s].iter().copied());
    }
    let report = gc::collect_garbage(&store).await.unwrap();
    assert_eq!(report.live_blocks as usize, keep.len());
    for cid in &cids {
        assert_eq!(
            store.has(cid).await.unwrap(),
            keep.contains(cid),
            "block {cid} (seed {seed})"
        );
    }
    let distinct: HashSet<&Cid> = cids.iter().collect();
    assert_eq!(report.removed.blocks as usize, distinct.len() - keep.len());
    // A second run removes nothing.
    assert_eq!(gc::collect_garbage(&store).await.unwrap().removed.blocks, 0);
    for p in &pinned {
        dag::check_complete(&store, p).await.unwrap();
    }
}

async fn car_roundtrip<S: BlockStore, T: BlockStore>(source: S, target: T) {
    let mut rng = StdRng::seed_from_u64(9);
    let (cids, edges) = random_dag(&source, &mut rng, 40).await;
    let root = *cids.last().unwrap();
    let mut file = Vec::new();
    let totals = car::export(&source, &root, &mut file, |_| {})
        .await
        .unwrap();
    assert_eq!(totals.blocks as usize, closure(&edges, &[root]).len());
    let summary = car::import(&target, file.as_slice(), |_| {}).await.unwrap();
    assert_eq!(summary.roots, vec![root]);
    assert_eq!(target.pins().await.unwrap(), vec![(root.to_string(), root)]);
    for cid in closure(&edges, &[root]) {
        assert_eq!(
            target.get(&cid).await.unwrap(),
            source.get(&cid).await.unwrap()
        );
    }
}

async fn run_suite<S: BlockStore>(make: impl AsyncFn() -> S) {
    put_get_has_list_stats(make().await).await;
    pins_roundtrip(make().await).await;
    for seed in 0..8 {
        gc_removes_exactly_the_unreachable(make().await, seed).await;
    }
    car_roundtrip(make().await, MemBlockStore::new()).await;
    car_roundtrip(MemBlockStore::new(), make().await).await;
}

#[tokio::test]
async fn memory_store_conforms() {
    run_suite(async || MemBlockStore::new()).await;
}

#[tokio::test]
async fn iroh_mem_store_conforms() {
    run_suite(async || IrohBlockStore::memory()).await;
}

#[tokio::test]
async fn iroh_fs_store_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    run_suite(async || {
        let dir = tempfile::tempdir().unwrap();
        let store = IrohBlockStore::open(dir.path()).await.unwrap();
        dirs.lock().unwrap().push(dir);
        store
    })
    .await;
}

/// A stored block whose bytes changed on disk is refused by `get` as corrupt, whichever side
/// checks it (the backend while reading, or the trait after).
#[tokio::test]
async fn iroh_fs_store_refuses_a_block_changed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let block: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let cid = {
        let store = IrohBlockStore::open(dir.path()).await.unwrap();
        let cid = store.put(pcid::RAW, Bytes::from(block)).await.unwrap();
        store.shutdown().await.unwrap();
        cid
    };
    let hex: String = cid
        .hash()
        .digest()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = walkdir(dir.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&hex) && p.to_string_lossy().ends_with(".data"))
        .unwrap_or_else(|| panic!("no data file for {hex} in {}", dir.path().display()));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[50_000] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let store = IrohBlockStore::open(dir.path()).await.unwrap();
    let got = store.get(&cid).await;
    assert!(matches!(got, Err(StoreError::Corrupt { .. })), "{got:?}");
    store.shutdown().await.unwrap();
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}
