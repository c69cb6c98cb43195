//! Identical vectors stored once, through commits and reopening; vectors and queries whose
//! scores would not be finite.

use super::*;
use crate::index::DuplicateStats;

fn top(hits: &[SearchHit]) -> Vec<EntryId> {
    let best = hits[0].score;
    hits.iter()
        .filter(|h| h.score == best)
        .map(|h| h.id.clone())
        .collect()
}

fn ints(ids: impl IntoIterator<Item = u64>) -> Vec<EntryId> {
    ids.into_iter().map(EntryId::Int).collect()
}

const WIDE: SearchOptions = SearchOptions {
    k: 80,
    ef: Some(200),
    exact: false,
};

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_stored_once_through_commit_and_reopen() {
    // One shard: each shard keeps its own index, so identical vectors share a slot within a shard.
    let (_dir, store, cdir, mut c) = fresh(1).await;
    let data = clustered(200, 24, 31);
    c.upsert(points(&data, 0)).await.unwrap();
    // Ids 1000–1049 hold point 3's vector, 2000–2009 point 4's.
    c.upsert(points(&vec![data[3].clone(); 50], 1_000))
        .await
        .unwrap();
    c.upsert(points(&vec![data[4].clone(); 10], 2_000))
        .await
        .unwrap();
    let stats = |c: &Collection<IrohBlockStore>| c.duplicate_stats();
    let want = DuplicateStats {
        points: 60,
        bytes_saved: 60 * 24 * 4,
    };
    assert_eq!(stats(&c), want);
    let holders: Vec<EntryId> = ints(std::iter::once(3).chain(1_000..1_050));
    assert_eq!(top(&c.search(&data[3], WIDE, None).await.unwrap()), holders);
    // Pending writes read their vectors back from the shared slot, exactly.
    let vector_of =
        |c: &Collection<IrohBlockStore>, (entry, _): (Entry, Option<Cid>)| c.vector_of(&entry);
    let pending = c.get(&EntryId::Int(1_020)).await.unwrap().unwrap();
    assert_eq!(vector_of(&c, pending), data[3]);
    c.close().await.unwrap();

    // Reopened from the saved index (not rebuilt), with the same groups.
    let c = Collection::open(store.clone(), &cdir).await.unwrap();
    let tag = vec![(0, c.manifest().shards[0])];
    let stem = held_index::cache_stem(&cdir);
    assert!(cache::load(&stem, index_spec(c.manifest()), &tag).is_some());
    assert_eq!((c.points(), stats(&c)), (260, want));
    assert_eq!(top(&c.search(&data[3], WIDE, None).await.unwrap()), holders);
    let stored = c.get(&EntryId::Int(1_020)).await.unwrap().unwrap();
    assert_eq!(vector_of(&c, stored), data[3]);

    // The point whose key holds the slot goes, another moves to a new vector.
    let mut c = c;
    c.delete(&[EntryId::Int(3)]).await.unwrap();
    c.upsert(points(&[data[100].clone()], 1_000)).await.unwrap();
    c.sync().await.unwrap();
    drop(c);
    let c = Collection::open(store.clone(), &cdir).await.unwrap();
    assert_eq!(stats(&c).points, 59);
    assert_eq!(
        top(&c.search(&data[3], WIDE, None).await.unwrap()),
        ints(1_001..1_050)
    );
    assert_eq!(
        top(&c.search(&data[100], WIDE, None).await.unwrap()),
        ints([100, 1_000])
    );
    c.close().await.unwrap();

    // An index saved without the duplicate map (by an older ipvec) is rebuilt, not misread.
    let path = held_index::cache_stem(&cdir).with_extension("usearch");
    let bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    let trailer = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
    std::fs::write(&path, &bytes[..n - 16 - trailer]).unwrap();
    let c = Collection::open(store, &cdir).await.unwrap();
    assert_eq!(stats(&c).points, 59);
    // The rebuild hands out keys shard by shard, and ties come in key order.
    let mut rebuilt = top(&c.search(&data[3], WIDE, None).await.unwrap());
    rebuilt.sort_by_key(|id| id.to_string().parse::<u64>().unwrap());
    assert_eq!(rebuilt, ints(1_001..1_050));
}

#[tokio::test(flavor = "multi_thread")]
async fn vectors_and_queries_with_overflowing_or_undefined_scores_are_refused() {
    let (dir, store, _cdir, mut c) = fresh(1).await;
    let mut huge = vec![0.0f32; 24];
    huge[..2].copy_from_slice(&[3.4e38, 3.4e38]);
    let good = clustered(2, 24, 32);
    for (vector, expect) in [(huge.clone(), "too long"), (vec![0.0; 24], "no direction")] {
        let batch = vec![
            Point {
                id: EntryId::Int(1),
                vector: good[0].clone(),
                metadata: None,
            },
            Point {
                id: EntryId::Str("big".into()),
                vector,
                metadata: None,
            },
        ];
        let err = c.upsert(batch).await.unwrap_err().to_string();
        assert!(err.starts_with("point 1 (id big): the vector"), "{err}");
        assert!(
            err.contains(expect) && err.contains("nothing from this batch was stored"),
            "{err}"
        );
        assert_eq!(c.points(), 0);
    }
    c.upsert(points(&good, 0)).await.unwrap();
    let opts = SearchOptions {
        k: 1,
        ef: None,
        exact: false,
    };
    for query in [huge.clone(), vec![0.0; 24]] {
        let err = c.search(&query, opts, None).await.unwrap_err().to_string();
        assert!(err.starts_with("the query vector"), "{err}");
    }
    // Under L2 the zero vector is a point like any other; a huge one is not.
    let l2 = CollectionSpec {
        metric: Metric::L2,
        ..spec("l2", 1)
    };
    let mut c = Collection::create(store, &dir.path().join("l2"), &l2)
        .await
        .unwrap();
    c.upsert(points(&[vec![0.0; 24]], 0)).await.unwrap();
    assert_eq!(
        c.search(&[0.0; 24], opts, None).await.unwrap()[0].id,
        EntryId::Int(0)
    );
    assert!(c.upsert(points(&[huge], 1)).await.is_err());
}
