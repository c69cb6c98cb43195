//! Searches through the one index of the held shards: the same answers as the merge of each
//! shard's answer, good recall against exact ground truth, writes seen at once, and searches
//! of some of the shards.

use ipvec_protocol::manifest::shard_of;

use super::*;
use crate::index::{score, VectorIndex};

const SHARDS: u32 = 4;

/// Exact top `k` of the points `data` (id = position) that `keep` accepts, by brute force.
fn truth(data: &[Vec<f32>], query: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i as u64))
        .map(|(i, v)| (score(Metric::Cosine, query, v), i as u64))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

fn shard_of_int(id: u64) -> u32 {
    shard_of(&EntryId::Int(id).to_key().unwrap(), SHARDS)
}

fn ints(hits: &[SearchHit]) -> Vec<u64> {
    hits.iter()
        .map(|h| match h.id {
            EntryId::Int(n) => n,
            _ => panic!("an integer id"),
        })
        .collect()
}

/// Queries near the points: each a point moved a little.
fn queries(data: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            data[(i * 37) % data.len()]
                .iter()
                .enumerate()
                .map(|(j, x)| x + if (i + j) % 3 == 0 { 0.05 } else { -0.03 })
                .collect()
        })
        .collect()
}

const EXACT: SearchOptions = SearchOptions {
    k: 10,
    ef: None,
    exact: true,
};

/// An exact search of all held shards gives what merging each shard's exact answer gives:
/// the same ids with the same scores, which are the brute-force top-k.
#[tokio::test(flavor = "multi_thread")]
async fn an_exact_search_equals_the_merge_of_the_shards_answers() {
    let (_dir, _store, _cdir, mut c) = fresh(SHARDS).await;
    let data = clustered(1_200, 24, 51);
    c.upsert(points(&data, 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    for query in queries(&data, 20) {
        let whole = c.search(&query, EXACT, None).await.unwrap();
        let mut answers = Vec::new();
        for number in 0..SHARDS {
            let shard = c.shard(number).unwrap();
            answers.push(shard.search(&query, EXACT, None).await.unwrap());
        }
        let merged = merge::merge(answers, EXACT.k);
        assert_eq!(ints(&whole), ints(&merged));
        for (a, b) in whole.iter().zip(&merged) {
            assert!(
                (a.score - b.score).abs() <= 1e-5,
                "{} vs {}",
                a.score,
                b.score
            );
            assert_eq!((&a.metadata, a.leaf), (&b.metadata, b.leaf));
            assert!(a.leaf.is_some());
        }
        assert_eq!(ints(&whole), truth(&data, &query, EXACT.k, |_| true));
    }
}

/// The HNSW search of the one index finds the exact neighbours on clustered data, over all
/// held shards and over some of them.
#[tokio::test(flavor = "multi_thread")]
async fn hnsw_searches_of_all_or_some_shards_have_good_recall() {
    let (_dir, _store, _cdir, mut c) = fresh(SHARDS).await;
    let data = clustered(3_000, 24, 52);
    c.upsert(points(&data, 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    // Score a subset's walk through the graph, not the exact fallback for few points.
    c.set_exact_fallback(0, 0.0);
    let options = SearchOptions {
        k: 10,
        ef: Some(64),
        exact: false,
    };
    let subset = [1u32, 2];
    let (mut found, mut found_subset, mut wanted) = (0usize, 0usize, 0usize);
    for query in queries(&data, 100) {
        let all = ints(&c.search(&query, options, None).await.unwrap());
        let want = truth(&data, &query, options.k, |_| true);
        found += all.iter().filter(|id| want.contains(id)).count();
        let some = ints(
            &c.search_shards(&query, options, None, Some(&subset))
                .await
                .unwrap(),
        );
        assert!(some.iter().all(|id| subset.contains(&shard_of_int(*id))));
        let want = truth(&data, &query, options.k, |id| {
            subset.contains(&shard_of_int(id))
        });
        found_subset += some.iter().filter(|id| want.contains(id)).count();
        wanted += options.k;
    }
    let recall = found as f64 / wanted as f64;
    let recall_subset = found_subset as f64 / wanted as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
    assert!(
        recall_subset >= 0.95,
        "recall@10 of shards 1, 2: {recall_subset}"
    );
}

/// A search of some held shards, exact, is the exact answer among their points alone, with
/// or without a filter; a shard seen alone ([`Collection::shard`]) answers for its points.
#[tokio::test(flavor = "multi_thread")]
async fn an_exact_search_of_some_shards_is_the_restricted_exact_answer() {
    let (_dir, _store, _cdir, mut c) = fresh(SHARDS).await;
    let data = clustered(1_000, 24, 53);
    c.upsert(points(&data, 0)).await.unwrap();
    // Point i has metadata {"n": i}: keep n < 500.
    let filter = Filter::parse(r#"{"must": [{"key": "n", "range": {"lt": 500}}]}"#)
        .unwrap()
        .compile()
        .unwrap();
    for checkpointed in [false, true] {
        for query in queries(&data, 10) {
            let some = c
                .search_shards(&query, EXACT, None, Some(&[3, 0]))
                .await
                .unwrap();
            let want = truth(&data, &query, EXACT.k, |id| {
                [0, 3].contains(&shard_of_int(id))
            });
            assert_eq!(ints(&some), want);
            assert!(some.iter().all(|h| h.leaf.is_some() == checkpointed));
            let filtered = c
                .search_shards(&query, EXACT, Some(&filter), Some(&[0, 3]))
                .await
                .unwrap();
            let want = truth(&data, &query, EXACT.k, |id| {
                id < 500 && [0, 3].contains(&shard_of_int(id))
            });
            assert_eq!(ints(&filtered), want);
            let alone = c
                .shard(2)
                .unwrap()
                .search(&query, EXACT, None)
                .await
                .unwrap();
            assert_eq!(
                ints(&alone),
                truth(&data, &query, EXACT.k, |id| shard_of_int(id) == 2)
            );
            // Split by shard, in the order asked, they merge to the same answer.
            let split = c
                .search_by_shard(&query, EXACT, None, &[3, 0])
                .await
                .unwrap();
            assert_eq!(split.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 0]);
            assert!(split.iter().all(|(n, hits)| hits
                .iter()
                .all(|h| shard_of(&h.id.to_key().unwrap(), SHARDS) == *n)));
            let merged = merge::merge(split.into_iter().map(|(_, hits)| hits), EXACT.k);
            assert_eq!(ints(&merged), ints(&some));
            // Naming every held shard is a search of them all.
            let every = c
                .search_shards(&query, EXACT, None, Some(&[0, 1, 2, 3]))
                .await
                .unwrap();
            assert_eq!(every, c.search(&query, EXACT, None).await.unwrap());
        }
        c.checkpoint().await.unwrap();
    }
    let err = c
        .search_shards(&data[0], EXACT, None, Some(&[7]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CollectionError::ShardNotHeld { shard: 7, .. }),
        "{err}"
    );
}

/// A write to one shard is seen through the one index at once: the new vector is found, the
/// old one is gone (no second copy of the point), before and after the checkpoint, and a
/// delete takes the point out.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_one_shard_replaces_its_point_in_the_index() {
    let (_dir, _store, _cdir, mut c) = fresh(SHARDS).await;
    let data = clustered(800, 24, 54);
    c.upsert(points(&data, 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    let moved = 5u64;
    let old = data[moved as usize].clone();
    // Its new vector sits in another cluster, next to point 6 (clusters go by i % 16).
    let new: Vec<f32> = data[6].iter().map(|x| x + 0.01).collect();
    c.upsert(vec![Point {
        id: EntryId::Int(moved),
        vector: new.clone(),
        metadata: None,
    }])
    .await
    .unwrap();
    for checkpointed in [false, true] {
        assert_eq!(c.index.keys.len(), 800);
        assert_eq!(c.index.index.len(), 800, "one vector per point");
        let near_new = ints(&c.search(&new, EXACT, None).await.unwrap());
        assert_eq!(near_new[0], moved);
        let hnsw = SearchOptions {
            exact: false,
            ef: Some(64),
            ..EXACT
        };
        assert_eq!(ints(&c.search(&new, hnsw, None).await.unwrap())[0], moved);
        let near_old = c
            .search(&old, SearchOptions { k: 100, ..EXACT }, None)
            .await
            .unwrap();
        assert!(!ints(&near_old).contains(&moved), "the old vector is gone");
        let shard = shard_of_int(moved);
        let alone = c
            .shard(shard)
            .unwrap()
            .search(&new, EXACT, None)
            .await
            .unwrap();
        assert_eq!(ints(&alone)[0], moved);
        assert_eq!(alone[0].leaf.is_some(), checkpointed);
        c.checkpoint().await.unwrap();
    }
    c.delete(&[EntryId::Int(moved)]).await.unwrap();
    let near_new = ints(
        &c.search(&new, SearchOptions { k: 800, ..EXACT }, None)
            .await
            .unwrap(),
    );
    assert_eq!(near_new.len(), 799);
    assert!(!near_new.contains(&moved));
}
