use ipvec_protocol::manifest::shard_of;

use super::*;
use crate::store::dag::block_links;

const EXACT: SearchOptions = SearchOptions {
    k: 20,
    ef: None,
    exact: true,
};

/// Copies the block `root` and, when `deep`, every block under it.
async fn copy(from: &IrohBlockStore, to: &IrohBlockStore, root: Cid, deep: bool) {
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        let bytes = from.require(&cid).await.unwrap();
        if deep {
            stack.extend(block_links(&cid, &bytes).unwrap());
        }
        to.put_verified(&cid, bytes).await.unwrap();
    }
}

/// A replica holding 2 of 4 shards needs only their trees: it searches them alone and says
/// so, and refuses to guess about points of the other shards.
#[tokio::test(flavor = "multi_thread")]
async fn a_partial_replica_serves_the_shards_it_holds_and_names_them() {
    let (dir, store, _cdir, mut writer) = fresh(4).await;
    let data = clustered(800, 24, 41);
    writer.upsert(points(&data, 0)).await.unwrap();
    writer.checkpoint().await.unwrap();

    // Another node's store: the manifest, every shard root, and the trees of shards 1 and 3.
    let other = IrohBlockStore::open(&dir.path().join("other"))
        .await
        .unwrap();
    let manifest = writer.manifest().clone();
    copy(&store, &other, writer.root(), false).await;
    for (number, cid) in manifest.shards.iter().enumerate() {
        copy(&store, &other, *cid, false).await;
        if number == 1 || number == 3 {
            copy(&store, &other, writer.roots[number].tree, true).await;
        }
    }
    let rdir = dir.path().join("part");
    let wrong = Collection::adopt_shards(
        other.clone(),
        &rdir,
        writer.head().clone(),
        Some(vec![1, 4]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(wrong.contains("no shard 4"), "{wrong}");
    let part = Collection::adopt_shards(
        other.clone(),
        &rdir,
        writer.head().clone(),
        Some(vec![3, 1]),
    )
    .await
    .unwrap();
    assert!(!part.writable());
    assert_eq!(part.held_shards(), [1, 3]);
    let coverage = part.coverage();
    assert_eq!(
        (coverage.shards, coverage.searched.clone()),
        (4, vec![1, 3])
    );
    assert!(!coverage.complete() && writer.coverage().complete());
    assert_eq!(part.points(), 800, "counts come from every shard root");
    // Its index holds the points of its shards, and no others.
    let shard_points = part.shard_points();
    assert_eq!(
        part.index.keys.len() as u64,
        shard_points[1] + shard_points[3]
    );
    assert!(part
        .index
        .keys
        .iter()
        .all(|(_, id, shard, _)| [1, 3].contains(&shard) && shard == shard_of(id, 4)));

    let in_shard =
        |id: &EntryId, wanted: &[u32]| wanted.contains(&shard_of(&id.to_key().unwrap(), 4));
    for probe in [&data[0], &data[333], &data[799]] {
        let hits = part.search(probe, EXACT, None).await.unwrap();
        assert_eq!(hits.len(), EXACT.k);
        assert!(hits.iter().all(|h| in_shard(&h.id, &[1, 3])));
        // Exactly the best points of those shards: the whole collection's, minus the others'.
        let all = writer
            .search(probe, SearchOptions { k: 800, ..EXACT }, None)
            .await
            .unwrap();
        let want: Vec<EntryId> = all
            .into_iter()
            .filter(|h| in_shard(&h.id, &[1, 3]))
            .take(EXACT.k)
            .map(|h| h.id)
            .collect();
        assert_eq!(hits.into_iter().map(|h| h.id).collect::<Vec<_>>(), want);
    }

    let (held, other_shard): (Vec<u64>, Vec<u64>) =
        (0..800u64).partition(|n| in_shard(&EntryId::Int(*n), &[1, 3]));
    let (entry, leaf) = part.get(&EntryId::Int(held[0])).await.unwrap().unwrap();
    assert_eq!(part.vector_of(&entry), data[held[0] as usize]);
    assert!(leaf.is_some());
    let id = EntryId::Int(other_shard[0]);
    match part.get(&id).await {
        Err(CollectionError::ShardNotHeld { shard, held, .. }) => {
            assert_eq!(shard, shard_of(&id.to_key().unwrap(), 4));
            assert_eq!(held, "1, 3");
        }
        other => panic!("expected ShardNotHeld, got {other:?}"),
    }
    let message = part.get(&id).await.unwrap_err().to_string();
    assert!(message.contains("--shards"), "{message}");

    // Reopened, it holds the same shards.
    drop(part);
    let part = Collection::open(other, &rdir).await.unwrap();
    assert_eq!(part.held_shards(), [1, 3]);
}

/// Garbage collection on a partial replica keeps the manifest, every shard root and the held
/// shards' trees, and frees the trees of shards it does not hold or no longer holds.
#[tokio::test(flavor = "multi_thread")]
async fn gc_on_a_partial_replica_keeps_its_shards_and_frees_the_others() {
    let (dir, store, _cdir, mut writer) = fresh(4).await;
    let data = clustered(800, 24, 44);
    writer.upsert(points(&data, 0)).await.unwrap();
    writer.checkpoint().await.unwrap();
    let trees: Vec<Cid> = writer.roots.iter().map(|r| r.tree).collect();

    // Another node's store holds the whole collection, and registers shards 1 and 3 only.
    let other = IrohBlockStore::open(&dir.path().join("other"))
        .await
        .unwrap();
    copy(&store, &other, writer.root(), true).await;
    let rdir = dir.path().join("part");
    let mut part = Collection::adopt_shards(
        other.clone(),
        &rdir,
        writer.head().clone(),
        Some(vec![1, 3]),
    )
    .await
    .unwrap();
    let held = |c: &Collection<IrohBlockStore>, shards: &[usize]| {
        let trees = trees.clone();
        let store = c.store.clone();
        let shards = shards.to_vec();
        async move {
            let mut out = Vec::new();
            for (n, tree) in trees.iter().enumerate() {
                let kept = crate::store::dag::check_complete(&store, tree)
                    .await
                    .is_ok();
                assert_eq!(kept, store.has(tree).await.unwrap(), "shard {n} half kept");
                out.push(kept);
            }
            let want: Vec<bool> = (0..trees.len()).map(|n| shards.contains(&n)).collect();
            assert_eq!(out, want, "which shards' trees the store keeps");
        }
    };
    let report = crate::store::gc::collect_garbage(&other).await.unwrap();
    assert!(report.removed.blocks > 0);
    assert_eq!(report.missing_blocks, 0);
    held(&part, &[1, 3]).await;

    // Dropping shard 3 frees it at the next gc; the replica reopens and searches shard 1.
    part.set_held(&[1]).await.unwrap();
    let report = crate::store::gc::collect_garbage(&other).await.unwrap();
    assert_eq!(report.missing_blocks, 0);
    held(&part, &[1]).await;
    drop(part);
    let mut part = Collection::open(other.clone(), &rdir).await.unwrap();
    assert_eq!(part.held_shards(), [1]);
    let in_shard_1 = (0..data.len())
        .find(|&i| shard_of(&EntryId::Int(i as u64).to_key().unwrap(), 4) == 1)
        .unwrap();
    let hits = part.search(&data[in_shard_1], EXACT, None).await.unwrap();
    assert_eq!(hits[0].id, EntryId::Int(in_shard_1 as u64));

    // Taking shard 0 again (its blocks fetched anew) keeps it from then on.
    copy(&store, &other, trees[0], true).await;
    part.set_held(&[0, 1]).await.unwrap();
    crate::store::gc::collect_garbage(&other).await.unwrap();
    held(&part, &[0, 1]).await;

    // A new version keeps only its own trees of the held shards.
    writer
        .upsert(points(&clustered(40, 24, 45), 5_000))
        .await
        .unwrap();
    writer.checkpoint().await.unwrap();
    copy(&store, &other, writer.root(), true).await;
    part.advance(writer.head().clone()).await.unwrap();
    assert_eq!(part.root(), writer.root());
    let report = crate::store::gc::collect_garbage(&other).await.unwrap();
    assert_eq!(report.missing_blocks, 0);
    for n in [0, 1] {
        let tree = part.roots[n].tree;
        crate::store::dag::check_complete(&other, &tree)
            .await
            .unwrap();
    }
    for n in [2, 3] {
        assert!(!other.has(&part.roots[n].tree).await.unwrap(), "shard {n}");
    }

    // A version after one the replica never saw, fetched as a partial replica fetches (the
    // manifest, every shard root, the held trees; no older versions): nothing it keeps is
    // missing, though the manifest links to the version it skipped.
    for seed in [46, 47] {
        writer
            .upsert(points(&clustered(40, 24, seed), 6_000 + seed * 100))
            .await
            .unwrap();
        writer.checkpoint().await.unwrap();
    }
    let skipped = writer.manifest().prev.unwrap();
    copy(&store, &other, writer.root(), false).await;
    for cid in &writer.manifest().shards {
        copy(&store, &other, *cid, false).await;
    }
    for n in [0, 1] {
        copy(&store, &other, writer.roots[n].tree, true).await;
    }
    part.advance(writer.head().clone()).await.unwrap();
    assert_eq!(part.root(), writer.root());
    assert!(!other.has(&skipped).await.unwrap());
    let report = crate::store::gc::collect_garbage(&other).await.unwrap();
    assert_eq!(report.missing_blocks, 0, "{report:?}");
    for n in [0, 1] {
        let tree = part.roots[n].tree;
        crate::store::dag::check_complete(&other, &tree)
            .await
            .unwrap();
    }
    drop(part);
    let part = Collection::open(other, &rdir).await.unwrap();
    assert_eq!(part.points(), writer.points());
}

/// A partial replica follows new versions of the shards it holds, and needs no others.
#[tokio::test(flavor = "multi_thread")]
async fn a_partial_replica_advances_its_shards_only() {
    let (dir, store, _cdir, mut writer) = fresh(3).await;
    let data = clustered(300, 24, 42);
    writer.upsert(points(&data, 0)).await.unwrap();
    writer.checkpoint().await.unwrap();
    let mut part = Collection::adopt_shards(
        store.clone(),
        &dir.path().join("part"),
        writer.head().clone(),
        Some(vec![2]),
    )
    .await
    .unwrap();
    writer.delete(&[EntryId::Int(7)]).await.unwrap();
    writer
        .upsert(points(&clustered(60, 24, 43), 1_000))
        .await
        .unwrap();
    writer.checkpoint().await.unwrap();
    part.advance(writer.head().clone()).await.unwrap();
    assert_eq!(part.root(), writer.root());
    assert_eq!(part.points(), 300 - 1 + 60);
    assert_eq!(part.shard_points(), writer.shard_points());
    let hits = part.search(&data[5], EXACT, None).await.unwrap();
    let all = writer
        .search(&data[5], SearchOptions { k: 400, ..EXACT }, None)
        .await
        .unwrap();
    let want: Vec<EntryId> = all
        .into_iter()
        .filter(|h| shard_of(&h.id.to_key().unwrap(), 3) == 2)
        .take(EXACT.k)
        .map(|h| h.id)
        .collect();
    assert_eq!(hits.into_iter().map(|h| h.id).collect::<Vec<_>>(), want);
}

/// The one index of the held shards is saved tagged with their roots: reopened at those roots
/// it loads, and a cache for an older version or for another collection is refused and
/// rebuilt from the trees, reporting its progress up to every point.
#[tokio::test(flavor = "multi_thread")]
async fn the_held_index_is_saved_for_its_shard_roots_and_rebuilt_for_others() {
    let (dir, store, cdir, mut c) = fresh(4).await;
    let data = clustered(400, 24, 44);
    c.upsert(points(&data, 0)).await.unwrap();
    let ids = |hits: Vec<SearchHit>| hits.into_iter().map(|h| h.id).collect::<Vec<_>>();
    let before = ids(c.search(&data[9], EXACT, None).await.unwrap());
    c.close().await.unwrap();

    let progress = OpenProgress::default();
    let mut c = Collection::open_with(store.clone(), &cdir, &progress, 0)
        .await
        .unwrap();
    assert!(!c.index.dirty, "the cache loaded");
    assert_eq!(progress.get(), (400, 400));
    assert_eq!(ids(c.search(&data[9], EXACT, None).await.unwrap()), before);
    let stem = held_index::cache_stem(&cdir);
    let old_keys = std::fs::read(stem.with_extension("keys")).unwrap();
    let old_index = std::fs::read(stem.with_extension("usearch")).unwrap();

    // One new point in one shard: a new version, and a new cache for it.
    c.upsert(vec![Point {
        id: EntryId::Int(10_000),
        vector: data[1].clone(),
        metadata: None,
    }])
    .await
    .unwrap();
    assert!(c.index.dirty);
    c.close().await.unwrap();
    let c = Collection::open(store.clone(), &cdir).await.unwrap();
    assert!(!c.index.dirty, "saved for the new roots");
    let now = ids(c.search(&data[9], EXACT, None).await.unwrap());
    drop(c);

    // The cache of the older version is refused: one shard root differs.
    std::fs::write(stem.with_extension("keys"), &old_keys).unwrap();
    std::fs::write(stem.with_extension("usearch"), &old_index).unwrap();
    let progress = OpenProgress::default();
    let c = Collection::open_with(store.clone(), &cdir, &progress, 2)
        .await
        .unwrap();
    assert!(c.index.dirty, "rebuilt from the trees");
    assert_eq!(progress.get(), (401, 401));
    assert_eq!(progress.percent(), 100);
    assert_eq!(ids(c.search(&data[9], EXACT, None).await.unwrap()), now);
    assert_eq!(
        c.get(&EntryId::Int(10_000)).await.unwrap().unwrap().0.id,
        EntryId::Int(10_000).to_key().unwrap()
    );
    drop(c);

    // Another collection's cache (other points, other roots) is refused too.
    let odir = dir.path().join("other");
    let mut other = Collection::create(store.clone(), &odir, &spec("other", 4))
        .await
        .unwrap();
    other
        .upsert(points(&clustered(50, 24, 46), 0))
        .await
        .unwrap();
    other.close().await.unwrap();
    let theirs = held_index::cache_stem(&odir);
    for ext in ["keys", "usearch"] {
        std::fs::copy(theirs.with_extension(ext), stem.with_extension(ext)).unwrap();
    }
    let c = Collection::open(store, &cdir).await.unwrap();
    assert!(c.index.dirty, "rebuilt from the trees");
    assert_eq!(c.index.keys.len(), 401);
    assert_eq!(ids(c.search(&data[9], EXACT, None).await.unwrap()), now);
}

/// A version whose manifest lists a shard root at another shard's place is refused: writes
/// and lookups find a shard by its place.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_with_shards_out_of_place_is_refused() {
    let (dir, store, _cdir, mut c) = fresh(2).await;
    c.upsert(points(&clustered(50, 24, 45), 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    let mut manifest = c.manifest().clone();
    manifest.shards.swap(0, 1);
    let cid = store
        .put(
            ipvec_protocol::cid::DAG_CBOR,
            bytes::Bytes::from(ipvec_protocol::dagcbor::encode(&manifest).unwrap()),
        )
        .await
        .unwrap();
    let owner = c.owner.clone().unwrap();
    let head = HeadRecord::sign(
        public_key_bytes(&owner).unwrap(),
        c.head().seq + 1,
        cid,
        &owner,
    )
    .unwrap();
    let err = Collection::adopt(store, &dir.path().join("forged"), head)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("names itself shard 1"), "{err}");
}
