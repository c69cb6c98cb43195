//! A search answers while a write waits for its fsync and while a checkpoint builds trees:
//! the write or checkpoint is held at a pause point, and the test checks that the collection's
//! lock is free for readers and that a search answers, then lets it go.

use std::sync::Arc;

use tokio::sync::RwLock;

use super::{fresh, pause, points};
use crate::{
    collection::{shared, Collection, SearchOptions},
    index::testdata::clustered,
    store::IrohBlockStore,
};
use ipvec_protocol::entry::EntryId;

fn top1() -> SearchOptions {
    SearchOptions {
        k: 1,
        ef: None,
        exact: true,
    }
}

/// Runs `work` on the blocking pool, as the node runs writes: pause points block the thread.
fn run<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(work))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_answers_while_a_write_waits_for_its_fsync() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(300, 24, 11);
    c.upsert(points(&data[..200], 0)).await.unwrap();
    let held = pause::arm(&c.wal.pause);
    let shared: Arc<RwLock<Collection<IrohBlockStore>>> = Arc::new(RwLock::new(c));
    let writer = {
        let shared = shared.clone();
        let batch = points(&data[200..], 200);
        run(async move { shared::upsert(&shared, batch).await })
    };
    let held = held.wait().await;
    // The write is in the log and stopped before its fsync: readers get the lock, and a
    // search answers without the unacknowledged points.
    let c = shared
        .try_read()
        .expect("a write waiting for its fsync holds no lock");
    let hits = c.search(&data[250], top1(), None).await.unwrap();
    assert_ne!(hits[0].id, EntryId::Int(250), "visible only once durable");
    assert_eq!(c.points(), 200);
    drop(c);
    held.release();
    let written = writer.await.unwrap().unwrap();
    assert_eq!(written.report.points, 300);
    let c = shared.read().await;
    let hits = c.search(&data[250], top1(), None).await.unwrap();
    assert_eq!(hits[0].id, EntryId::Int(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_writes_proceed_while_a_checkpoint_builds_trees() {
    let (_dir, store, cdir, mut c) = fresh(2).await;
    let data = clustered(400, 24, 12);
    c.upsert(points(&data[..300], 0)).await.unwrap();
    let before = c.root();
    let held = pause::arm(&c.checkpoint_pause);
    let shared: Arc<RwLock<Collection<IrohBlockStore>>> = Arc::new(RwLock::new(c));
    let checkpoint = {
        let shared = shared.clone();
        run(async move { shared::checkpoint(&shared).await })
    };
    let held = held.wait().await;
    // The checkpoint is building: readers get the lock and a search answers…
    let c = shared
        .try_read()
        .expect("a checkpoint building trees holds no lock");
    let hits = c.search(&data[42], top1(), None).await.unwrap();
    assert_eq!(hits[0].id, EntryId::Int(42));
    drop(c);
    // …and writes go on: a new point, and a new vector for a point being committed.
    let mut batch = points(&data[300..], 300);
    batch.push(crate::collection::Point {
        id: EntryId::Int(7),
        vector: data[399].clone(),
        metadata: None,
    });
    let written = shared::upsert(&shared, batch).await.unwrap();
    assert_eq!(written.report.points, 400);
    held.release();
    checkpoint.await.unwrap().unwrap();
    let mut c = Arc::try_unwrap(shared).unwrap().into_inner();
    assert_ne!(c.root(), before, "a new version");
    // Point 7 was written again during the build: it waits for the next checkpoint, pending
    // along with the points written meanwhile, and the counts still add up.
    assert_eq!(c.manifest().points, 299);
    assert_eq!(c.points(), 400);
    assert!(
        c.wal_bytes() > 0,
        "the writes made meanwhile stay in the log"
    );
    // A crash now (no close): reopening replays them.
    drop(c);
    c = Collection::open(store.clone(), &cdir).await.unwrap();
    assert_eq!(c.points(), 400);
    assert_eq!(c.manifest().points, 400);
    let seven = c.get(&EntryId::Int(7)).await.unwrap().unwrap().0;
    let source = c.get(&EntryId::Int(399)).await.unwrap().unwrap().0;
    assert_eq!(c.vector_of(&seven), c.vector_of(&source));
    let hits = c.search(&data[350], top1(), None).await.unwrap();
    assert_eq!(hits[0].id, EntryId::Int(350));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_are_applied_a_slice_at_a_time_in_log_order() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(30, 24, 13);
    let first = c.stage_upsert(points(&data[..10], 0)).unwrap();
    // The second write replaces point 3 and deletes point 4, both of the first batch.
    let mut second_batch = points(&data[10..20], 10);
    second_batch.push(crate::collection::Point {
        id: EntryId::Int(3),
        vector: data[29].clone(),
        metadata: None,
    });
    let second = c.stage_upsert(second_batch).unwrap();
    let third = c.stage_delete(&[EntryId::Int(4)]).unwrap();
    second.sync().unwrap();
    assert!(!c.is_applied(&first), "nothing applied before a slice");
    assert!(c.apply_some(4));
    assert_eq!(c.points(), 4, "a slice applies only its entries");
    assert!(!c.is_applied(&first));
    assert!(c.apply_some(4) && c.apply_some(4));
    assert!(c.is_applied(&first) && !c.is_applied(&second));
    assert_eq!(c.report(&first).unwrap().changed, 10);
    while c.apply_some(4) {}
    assert!(c.is_applied(&second) && c.is_applied(&third));
    assert_eq!(c.report(&third).unwrap().points, 19);
    let three = c.get(&EntryId::Int(3)).await.unwrap().unwrap().0;
    let source = c.stage_upsert(points(&data[29..], 29)).unwrap();
    c.publish(&source).unwrap_err();
    source.sync().unwrap();
    c.publish(&source).unwrap();
    let twenty_nine = c.get(&EntryId::Int(29)).await.unwrap().unwrap().0;
    assert_eq!(c.vector_of(&three), c.vector_of(&twenty_nine));
    assert!(c.get(&EntryId::Int(4)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_while_a_shared_checkpoint_builds_does_not_wait_for_it() {
    let (_dir, store, cdir, mut c) = fresh(2).await;
    let data = clustered(100, 24, 14);
    c.upsert(points(&data, 0)).await.unwrap();
    let held = pause::arm(&c.checkpoint_pause);
    let shared: Arc<RwLock<Collection<IrohBlockStore>>> = Arc::new(RwLock::new(c));
    let checkpoint = {
        let shared = shared.clone();
        run(async move { shared::checkpoint(&shared).await })
    };
    let held = held.wait().await;
    // With the lock held alone (as a node closing does), a checkpoint runs at once although
    // the shared one holds the turn; that one then finds the collection moved on.
    let mut c = shared.write().await;
    c.sync().await.unwrap();
    let root = c.root();
    assert_eq!(c.manifest().points, 100);
    drop(c);
    held.release();
    checkpoint.await.unwrap().unwrap();
    let c = Arc::try_unwrap(shared).unwrap().into_inner();
    assert_eq!(c.root(), root, "the late checkpoint was discarded");
    assert_eq!(c.wal_bytes(), 0);
    drop(c);
    let c = Collection::open(store, &cdir).await.unwrap();
    assert_eq!((c.root(), c.points()), (root, 100));
}
