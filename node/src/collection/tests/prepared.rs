//! A write's graph inserts run beside searches: the writer prepares a slice with shared access
//! and places it with exclusive access afterwards. Searches made in between answer a full `k`
//! of placed points; a slice left unplaced leaves nothing behind.

use ipvec_protocol::entry::EntryId;
use tokio::sync::RwLock;

use super::{fresh, points};
use crate::{
    collection::{shared, Point, SearchOptions},
    index::{testdata::clustered, VectorIndex},
};

fn hnsw(k: usize) -> SearchOptions {
    SearchOptions {
        k,
        ef: Some(64),
        exact: false,
    }
}

fn ids(hits: &[crate::collection::SearchHit]) -> Vec<EntryId> {
    hits.iter().map(|h| h.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_between_a_slices_inserts_and_their_placing_answers_k_placed_points() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(300, 24, 14);
    c.upsert(points(&data[..200], 0)).await.unwrap();
    let staged = c.stage_upsert(points(&data[200..], 200)).unwrap();
    staged.sync().unwrap();
    let shared = RwLock::new(c);

    let reader = shared.read().await;
    let prepared = reader.prepare_slice(100).expect("a durable slice");
    // The 100 vectors are in the graph under keys no point has; a second reader (a search
    // beside the writer) gets the lock and a full answer of placed points, although the
    // query is one of the prepared vectors and sits at distance 0 from it.
    let other = shared
        .try_read()
        .expect("preparing takes shared access only");
    for options in [
        hnsw(10),
        SearchOptions {
            exact: true,
            ..hnsw(10)
        },
    ] {
        let hits = other.search(&data[250], options, None).await.unwrap();
        assert_eq!(hits.len(), 10, "{options:?}");
        assert!(
            hits.iter()
                .all(|h| matches!(h.id, EntryId::Int(n) if n < 200)),
            "no prepared insert is a hit: {:?}",
            ids(&hits)
        );
    }
    assert_eq!(other.points(), 200);
    drop((reader, other));

    let mut c = shared.write().await;
    assert!(c.apply_prepared(prepared));
    assert!(c.is_applied(&staged));
    assert_eq!(c.points(), 300);
    let hits = c.search(&data[250], hnsw(1), None).await.unwrap();
    assert_eq!(ids(&hits), [EntryId::Int(250)]);
    assert_eq!(
        c.index.index.len(),
        c.index.keys.len(),
        "no insert left over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_replacements_and_duplicates_are_placed_as_a_plain_apply_would() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(300, 24, 15);
    c.upsert(points(&data[..200], 0)).await.unwrap();
    let point = |id: u64, from: usize| Point {
        id: EntryId::Int(id),
        vector: data[from].clone(),
        metadata: None,
    };
    // A new vector for point 3; point 201 with point 5's vector; points 210 and 211 with one
    // new vector between them; a delete of point 7 in the same slice as its prepared upsert.
    let staged = c
        .stage_upsert(vec![
            point(3, 250),
            point(201, 5),
            point(210, 299),
            point(211, 299),
            point(7, 260),
        ])
        .unwrap();
    let delete = c.stage_delete(&[EntryId::Int(7)]).unwrap();
    delete.sync().unwrap();
    let prepared = c.prepare_slice(64).unwrap();
    assert!(c.apply_prepared(prepared));
    assert!(c.is_applied(&staged));
    while c.apply_some(64) {}
    assert!(c.is_applied(&delete));
    assert_eq!(c.points(), 202);
    for (id, from) in [(3, 250), (201, 5), (210, 299), (211, 299)] {
        let entry = c
            .get(&EntryId::Int(id))
            .await
            .unwrap()
            .expect("a live point")
            .0;
        assert_eq!(c.vector_of(&entry), data[from], "point {id}");
    }
    assert!(c.get(&EntryId::Int(7)).await.unwrap().is_none());
    // 201 shares point 5's slot and 211 shares 210's, as a plain apply would place them.
    assert_eq!(c.duplicate_stats().points, 2);
    assert_eq!(c.index.index.len(), c.index.keys.len());
    let hits = c.search(&data[250], hnsw(1), None).await.unwrap();
    assert_eq!(ids(&hits), [EntryId::Int(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_prepared_and_never_placed_leaves_nothing_in_the_graph() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(300, 24, 16);
    c.upsert(points(&data[..200], 0)).await.unwrap();
    let staged = c.stage_upsert(points(&data[200..250], 200)).unwrap();
    staged.sync().unwrap();
    // The writer stops after its inserts (its task was dropped): the entries stay staged.
    let abandoned = c.prepare_slice(64).unwrap();
    drop(abandoned);
    let len = c.index.index.len();
    assert_eq!(len, 250, "200 points and 50 prepared inserts");
    let shared = RwLock::new(c);
    // The next writer applies them in its turn and the leftovers leave the graph.
    let written = shared::upsert(&shared, points(&data[250..], 250))
        .await
        .unwrap();
    assert_eq!(written.report.points, 300);
    let c = shared.into_inner();
    assert!(c.is_applied(&staged));
    assert_eq!(c.index.index.len(), 300);
    assert_eq!(c.index.keys.len(), 300);
    for i in [210, 260] {
        let hits = c.search(&data[i], hnsw(1), None).await.unwrap();
        assert_eq!(ids(&hits), [EntryId::Int(i as u64)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_during_concurrent_writers_always_answer_k_distinct_points() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(1_200, 24, 17);
    c.upsert(points(&data[..200], 0)).await.unwrap();
    let shared = std::sync::Arc::new(RwLock::new(c));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let shared = shared.clone();
        let data = data.clone();
        writers.push(tokio::spawn(async move {
            for b in 0..5u64 {
                let from = 200 + (w * 5 + b) as usize * 50;
                shared::upsert(&shared, points(&data[from..from + 50], from as u64))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut searches = 0;
    while writers.iter().any(|w| !w.is_finished()) || searches < 50 {
        let c = shared.read().await;
        let query = &data[200 + searches % 1_000];
        let hits = c.search(query, hnsw(10), None).await.unwrap();
        let mut seen: Vec<EntryId> = ids(&hits);
        seen.sort_by_key(|id| format!("{id:?}"));
        seen.dedup();
        assert_eq!((hits.len(), seen.len()), (10, 10), "search {searches}");
        searches += 1;
        drop(c);
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let c = shared.read().await;
    assert_eq!(c.points(), 1_200);
    assert_eq!(c.index.index.len(), 1_200, "no insert left over");
}
