use ipvec_protocol::head::public_key_bytes;

use super::*;
use crate::{collection::writers::WriterChange, store::gc::collect_garbage};

const PUBLISH: snapshot::Publishing = snapshot::Publishing {
    min_points: 100,
    busy: 0.1,
    quiet: 0.01,
};

fn options(exact: bool) -> SearchOptions {
    SearchOptions {
        k: 10,
        ef: Some(64),
        exact,
    }
}

/// A writer that publishes snapshots, with `n` points checkpointed.
async fn publishing_writer(
    shards: u32,
    n: usize,
) -> (
    tempfile::TempDir,
    IrohBlockStore,
    Collection<IrohBlockStore>,
    Vec<Vec<f32>>,
) {
    let (dir, store, _cdir, mut writer) = fresh(shards).await;
    writer.set_publishing(Some(PUBLISH));
    let data = clustered(n, 24, 71);
    writer.upsert(points(&data, 0)).await.unwrap();
    writer.checkpoint().await.unwrap();
    (dir, store, writer, data)
}

/// A new replica in `path` of the writer's current version, whose index came from the
/// snapshot the version names.
async fn snapshot_replica(
    store: &IrohBlockStore,
    path: &std::path::Path,
    writer: &Collection<IrohBlockStore>,
) -> Collection<IrohBlockStore> {
    let replica = Collection::adopt(store.clone(), path, writer.head().clone())
        .await
        .unwrap();
    assert_eq!(replica.index_source(), IndexSource::Snapshot);
    replica
}

/// A new replica of a version that names a snapshot loads it and searches the writer's very
/// graph: the same answers, HNSW ones included, with no build.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_replica_loads_the_published_snapshot_and_answers_like_the_writer() {
    let (dir, store, writer, data) = publishing_writer(2, 800).await;
    let listing = writer.published_snapshot().expect("a snapshot is named");
    assert!(writer.roots.iter().all(|r| r.index == Some(listing)));
    assert_eq!(
        listing.codec(),
        pcid::RAW,
        "walks of the DAG stop at the listing"
    );

    let progress = OpenProgress::default();
    let replica = snapshot_replica(&store, &dir.path().join("r"), &writer).await;
    assert_eq!(replica.points(), 800);
    for probe in data.iter().step_by(37) {
        for exact in [false, true] {
            assert_eq!(
                replica.search(probe, options(exact), None).await.unwrap(),
                writer.search(probe, options(exact), None).await.unwrap()
            );
        }
    }
    // Reopened, the replica loads its own cache.
    drop(progress);
    replica.close().await.unwrap();
    let again = Collection::open(store.clone(), &dir.path().join("r"))
        .await
        .unwrap();
    assert_eq!(again.index_source(), IndexSource::Cache);
}

/// Below a tenth of the points changed, versions name the last snapshot; a replica loads it
/// and applies the trees' differences since. Past a tenth, a new one is published.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_older_trees_is_moved_on_by_the_tree_diff() {
    let (dir, store, mut writer, data) = publishing_writer(2, 800).await;
    let first = writer.published_snapshot().unwrap();
    let moved = clustered(30, 24, 72);
    writer.upsert(points(&moved, 100)).await.unwrap();
    writer
        .delete(&(500..520).map(EntryId::Int).collect::<Vec<_>>())
        .await
        .unwrap();
    writer
        .upsert(points(&clustered(20, 24, 73), 800))
        .await
        .unwrap();
    writer.checkpoint().await.unwrap();
    assert_eq!(
        writer.published_snapshot(),
        Some(first),
        "70 changes of 800: kept"
    );

    let replica = snapshot_replica(&store, &dir.path().join("r"), &writer).await;
    assert_eq!(replica.points(), 800);
    assert!(replica.get(&EntryId::Int(510)).await.unwrap().is_none());
    for probe in [&moved[3], &data[510], &data[9], &data[799]] {
        assert_eq!(
            replica.search(probe, options(true), None).await.unwrap(),
            writer.search(probe, options(true), None).await.unwrap()
        );
    }
    let hit = replica
        .search(&moved[3], options(false), None)
        .await
        .unwrap();
    assert_eq!(
        hit[0].id,
        EntryId::Int(103),
        "a changed point is found at its new place"
    );

    writer
        .upsert(points(&clustered(40, 24, 74), 900))
        .await
        .unwrap();
    writer.checkpoint().await.unwrap();
    let second = writer.published_snapshot().unwrap();
    assert_ne!(second, first, "110 changes of 840: a new snapshot");

    // The history pin keeps the old versions but not their snapshots.
    let old_chunks = snapshot::chunks(&store, &first).await.unwrap();
    let new_chunks = snapshot::chunks(&store, &second).await.unwrap();
    // The replica of the older version goes (its pins keep that version's snapshot).
    drop(replica);
    assert!(unpin(&store, "r").await.unwrap());
    collect_garbage(&store).await.unwrap();
    for chunk in &new_chunks {
        assert!(
            store.has(chunk).await.unwrap(),
            "the current snapshot is kept"
        );
    }
    assert!(
        store.has(&first).await.unwrap(),
        "an old version's listing stays"
    );
    // Chunks of equal bytes are one block: the old snapshot's others go.
    let only_old: Vec<&Cid> = old_chunks
        .iter()
        .filter(|c| !new_chunks.contains(c))
        .collect();
    assert!(!only_old.is_empty());
    for chunk in only_old {
        assert!(
            !store.has(chunk).await.unwrap(),
            "an old snapshot's chunks go"
        );
    }
    snapshot_replica(&store, &dir.path().join("r2"), &writer).await;
}

/// Once writes stop, a version of its own publishes a snapshot of the current trees when a
/// small share changed since the last one (a checkpoint would have waited for a larger one).
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_writer_publishes_a_fresh_snapshot_in_a_version_of_its_own() {
    let (dir, store, mut writer, _) = publishing_writer(2, 800).await;
    let first = writer.published_snapshot().unwrap();
    assert!(!writer.snapshot_due(), "just published");
    assert!(!writer.publish_snapshot().await.unwrap());
    let moved = clustered(20, 24, 76);
    writer.upsert(points(&moved, 0)).await.unwrap();
    assert!(!writer.snapshot_due(), "writes are pending");
    writer.checkpoint().await.unwrap();
    assert_eq!(
        writer.published_snapshot(),
        Some(first),
        "20 of 800: kept at a checkpoint"
    );
    assert!(writer.snapshot_due(), "20 of 800 is more than 1%");
    let (seq, trees) = (writer.head().seq, writer.roots.clone());
    assert!(writer.publish_snapshot().await.unwrap());
    let second = writer.published_snapshot().unwrap();
    assert_ne!(second, first);
    assert_eq!(writer.head().seq, seq + 1, "a version of its own");
    for (now, before) in writer.roots.iter().zip(&trees) {
        assert_eq!(
            (now.tree, now.points),
            (before.tree, before.points),
            "no point changed"
        );
    }
    assert!(!writer.snapshot_due());
    assert_eq!(writer.snapshot_lag(), Some(0));

    // Reopened, the writer does not know how old the snapshot is: it publishes again, and
    // the same bytes make no new version.
    let cdir = writer.dir.clone();
    writer.close().await.unwrap();
    let mut writer = Collection::open(store.clone(), &cdir).await.unwrap();
    writer.set_publishing(Some(PUBLISH));
    assert_eq!(writer.snapshot_lag(), None);
    assert!(writer.snapshot_due());
    assert!(!writer.publish_snapshot().await.unwrap());
    assert_eq!(writer.head().seq, seq + 1);
    assert_eq!(writer.published_snapshot(), Some(second));
    assert_eq!(writer.snapshot_lag(), Some(0));
    assert!(!writer.snapshot_due());
    // A new replica loads it as it is: nothing to move on.
    let replica = snapshot_replica(&store, &dir.path().join("r"), &writer).await;
    assert_eq!(
        replica
            .search(&moved[4], options(false), None)
            .await
            .unwrap(),
        writer
            .search(&moved[4], options(false), None)
            .await
            .unwrap()
    );
}

/// A writer's merge of another writer's version names the snapshot its own version named,
/// and counts the merged changes as changed since; a new replica of the merge loads that
/// snapshot and applies the trees' differences, the other writer's points among them.
#[tokio::test(flavor = "multi_thread")]
async fn a_merge_keeps_naming_the_last_snapshot() {
    let (dir, store, mut owner, _) = publishing_writer(2, 800).await;
    let first = owner.published_snapshot().unwrap();
    let key = Keypair::generate_ed25519();
    owner
        .change_writers(WriterChange::Add(public_key_bytes(&key).unwrap()))
        .await
        .unwrap();
    assert_eq!(owner.published_snapshot(), Some(first));
    let mut second = Collection::adopt(store.clone(), &dir.path().join("w2"), owner.head().clone())
        .await
        .unwrap();
    assert!(second.take_writer_key(&key).unwrap());
    let theirs = clustered(30, 24, 77);
    second.upsert(points(&theirs, 5_000)).await.unwrap();
    second.checkpoint().await.unwrap();

    let lag = owner.snapshot_lag().unwrap();
    assert!(owner.advance(second.head().clone()).await.unwrap());
    assert_eq!(owner.points(), 830);
    assert_eq!(
        owner.published_snapshot(),
        Some(first),
        "the merge names it still"
    );
    assert_eq!(owner.snapshot_lag(), Some(lag + 30));
    let replica = snapshot_replica(&store, &dir.path().join("r"), &owner).await;
    assert_eq!(replica.points(), 830);
    for probe in [&theirs[7], &theirs[29]] {
        assert_eq!(
            replica.search(probe, options(true), None).await.unwrap(),
            owner.search(probe, options(true), None).await.unwrap()
        );
    }
}

/// The index that shard roots naming `listing` open to, on a store whose trees are the
/// writer's.
async fn open_with_snapshot(
    store: &IrohBlockStore,
    writer: &Collection<IrohBlockStore>,
    dir: &std::path::Path,
    listing: Cid,
) -> HeldIndex {
    let held: Vec<(Cid, ShardRoot)> = writer
        .manifest
        .shards
        .iter()
        .zip(&writer.roots)
        .map(|(cid, root)| {
            (
                *cid,
                ShardRoot {
                    index: Some(listing),
                    ..root.clone()
                },
            )
        })
        .collect();
    let spec = index_spec(&writer.manifest);
    HeldIndex::open(store, spec, dir, &held, &OpenProgress::default(), 1)
        .await
        .unwrap()
}

/// A snapshot that is damaged, incomplete, of other shards or of other trees is refused and
/// the index built from the trees, which then answers exactly.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_foreign_snapshot_is_refused_and_the_index_rebuilt() {
    let (dir, store, writer, data) = publishing_writer(2, 800).await;
    let listing = writer.published_snapshot().unwrap();
    let chunks = snapshot::chunks(&store, &listing).await.unwrap();
    assert!(chunks.len() >= 2, "{} chunks", chunks.len());
    let digests = |chunks: &[Cid]| {
        let mut bytes = Vec::new();
        for chunk in chunks {
            bytes.extend_from_slice(&pcid::digest(chunk).unwrap());
        }
        bytes::Bytes::from(bytes)
    };
    let put_listing = |chunks: Vec<Cid>| {
        let store = store.clone();
        async move { store.put(pcid::RAW, digests(&chunks)).await.unwrap() }
    };
    // Control: the snapshot itself loads.
    let good = open_with_snapshot(&store, &writer, &dir.path().join("x"), listing).await;
    assert_eq!(good.source, IndexSource::Snapshot);

    let mut cases: Vec<(&str, Cid)> = Vec::new();
    // A chunk of other bytes (its hash is right: a writer's bad upload, not a transfer error).
    let mut garbled = chunks.clone();
    let mut bytes = store.require(&chunks[0]).await.unwrap().to_vec();
    for b in bytes.iter_mut().skip(64).step_by(7) {
        *b ^= 0x5a;
    }
    garbled[0] = store
        .put(pcid::RAW, bytes::Bytes::from(bytes))
        .await
        .unwrap();
    cases.push(("a garbled chunk", put_listing(garbled).await));
    // The last chunk left out.
    cases.push((
        "a truncated listing",
        put_listing(chunks[..chunks.len() - 1].to_vec()).await,
    ));
    // A chunk the store does not have.
    let mut missing = chunks.clone();
    missing[1] = pcid::block_cid(pcid::RAW, b"not stored");
    cases.push(("a missing chunk", put_listing(missing).await));
    // Not a listing at all.
    cases.push(("a DAG-CBOR block", writer.manifest.shards[0]));
    // Another collection's snapshot, of one shard.
    let (_d1, store1, one, _) = publishing_writer(1, 300).await;
    let theirs = one.published_snapshot().unwrap();
    copy_snapshot(&store1, &store, theirs).await;
    cases.push(("a snapshot of other shards", theirs));
    // Another collection's snapshot of as many shards, unrelated trees.
    let (_d2, store2, two, _) = publishing_writer(2, 800).await;
    let unrelated = two.published_snapshot().unwrap();
    copy_snapshot(&store2, &store, unrelated).await;
    for root in &two.roots {
        copy_dag(&store2, &store, root.tree).await;
    }
    cases.push(("a snapshot of other trees", unrelated));

    for (what, listing) in cases {
        let index = open_with_snapshot(&store, &writer, &dir.path().join(what), listing).await;
        assert_eq!(index.source, IndexSource::Built, "{what}");
        assert_eq!(index.keys.len(), 800, "{what}");
        for probe in data.iter().step_by(97) {
            let hits = index
                .hits(probe, options(true), allowed::Restriction::default())
                .unwrap();
            let want = writer
                .index
                .hits(probe, options(true), allowed::Restriction::default())
                .unwrap();
            let ids = |hits: &[crate::index::Hit], index: &HeldIndex| {
                hits.iter()
                    .map(|h| index.point_of(h.key).unwrap().id.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&hits, &index), ids(&want, &writer.index), "{what}");
        }
    }
}

/// Copies a snapshot's listing and chunks from one store to another.
async fn copy_snapshot(from: &IrohBlockStore, to: &IrohBlockStore, listing: Cid) {
    let mut blocks = snapshot::chunks(from, &listing).await.unwrap();
    blocks.push(listing);
    for cid in blocks {
        to.put_verified(&cid, from.require(&cid).await.unwrap())
            .await
            .unwrap();
    }
}

/// Copies every block under `root`.
async fn copy_dag(from: &IrohBlockStore, to: &IrohBlockStore, root: Cid) {
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        let bytes = from.require(&cid).await.unwrap();
        stack.extend(crate::store::dag::block_links(&cid, &bytes).unwrap());
        to.put_verified(&cid, bytes).await.unwrap();
    }
}

/// A checkpoint that races with writes publishes no snapshot of an index that is ahead of
/// its trees; the next one does.
#[tokio::test(flavor = "multi_thread")]
async fn no_snapshot_is_published_of_an_index_ahead_of_the_trees() {
    let (_dir, _store, _cdir, writer) = fresh(2).await;
    let shared = tokio::sync::RwLock::new(writer);
    shared.write().await.set_publishing(Some(PUBLISH));
    let data = clustered(400, 24, 75);
    shared::upsert(&shared, points(&data, 0)).await.unwrap();
    // Step 1, then a write, then step 2.
    let plan = shared.read().await.plan_checkpoint().unwrap().unwrap();
    shared::upsert(&shared, points(&data[..5], 1_000))
        .await
        .unwrap();
    let built = plan.build(&shared).await.unwrap();
    shared.write().await.finish_checkpoint(built).await.unwrap();
    assert_eq!(shared.read().await.published_snapshot(), None);
    shared::checkpoint(&shared).await.unwrap();
    assert!(shared.read().await.published_snapshot().is_some());
}
