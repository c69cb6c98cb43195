//! Collection behaviour on a real on-disk store.

use ipvec_protocol::{
    entry::EntryId,
    manifest::{HnswParams, Metric, Quantization},
    Ipld,
};

use super::*;
use crate::{index::testdata::clustered, store::IrohBlockStore, tree};

fn spec(name: &str, shards: u32) -> CollectionSpec {
    CollectionSpec {
        name: name.into(),
        dimension: 24,
        embedding: None,
        metric: Metric::Cosine,
        quantization: Quantization::F32,
        hnsw: HnswParams::default(),
        shards,
        replication: 1,
    }
}

/// A new collection with `shards` shards in a fresh on-disk store; keep the dir alive.
async fn fresh(
    shards: u32,
) -> (
    tempfile::TempDir,
    IrohBlockStore,
    std::path::PathBuf,
    Collection<IrohBlockStore>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = IrohBlockStore::open(&dir.path().join("blocks"))
        .await
        .unwrap();
    let cdir = dir.path().join("c");
    let c = Collection::create(store.clone(), &cdir, &spec("c", shards))
        .await
        .unwrap();
    (dir, store, cdir, c)
}

fn points(vectors: &[Vec<f32>], offset: u64) -> Vec<Point> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            id: EntryId::Int(offset + i as u64),
            vector: v.clone(),
            metadata: Some(Ipld::Map(
                [("n".to_string(), Ipld::Integer(i as i128))].into(),
            )),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn write_search_reopen_and_rebuild() {
    let (_dir, store, cdir, mut c) = fresh(4).await;
    let data = clustered(600, 24, 7);
    let report = c.upsert(points(&data, 0)).await.unwrap();
    assert_eq!(report.points, 600);
    // Searchable at once, from the log; the leaf comes with the checkpoint.
    let early = c
        .search(
            &data[9],
            SearchOptions {
                k: 1,
                ef: None,
                exact: false,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (early[0].id.clone(), early[0].leaf),
        (EntryId::Int(9), None)
    );
    assert_eq!(c.manifest().points, 0, "not yet in the trees");
    c.checkpoint().await.unwrap();
    assert_eq!(c.manifest().points, 600);
    // Searches find each point itself first, with a leaf CID that really holds it.
    for probe in [0usize, 123, 599] {
        let hits = c
            .search(
                &data[probe],
                SearchOptions {
                    k: 3,
                    ef: None,
                    exact: false,
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(hits[0].id, EntryId::Int(probe as u64));
        let leaf = ipvec_protocol::node::Node::decode(
            &store.require(&hits[0].leaf.unwrap()).await.unwrap(),
        )
        .unwrap();
        assert!(
            matches!(leaf, ipvec_protocol::node::Node::Leaf(es) if es.iter().any(|e| e.id == EntryId::Int(probe as u64).to_key().unwrap()))
        );
    }
    // Replace one point, delete another.
    c.upsert(vec![Point {
        id: EntryId::Int(5),
        vector: data[77].clone(),
        metadata: None,
    }])
    .await
    .unwrap();
    let report = c
        .delete(&[EntryId::Int(6), EntryId::Int(100_000)])
        .await
        .unwrap();
    assert_eq!((report.changed, report.points), (1, 599));
    c.checkpoint().await.unwrap();
    assert!(c.get(&EntryId::Int(6)).await.unwrap().is_none());
    let exact = c
        .search(
            &data[77],
            SearchOptions {
                k: 2,
                ef: None,
                exact: true,
            },
            None,
        )
        .await
        .unwrap();
    let ids: Vec<EntryId> = exact.iter().map(|h| h.id.clone()).collect();
    assert!(
        ids.contains(&EntryId::Int(5)) && ids.contains(&EntryId::Int(77)),
        "{ids:?}"
    );
    let root = c.root();
    c.close().await.unwrap();

    // Reopen: the saved index is used and answers the same.
    let c = Collection::open(store.clone(), &cdir).await.unwrap();
    assert_eq!(c.root(), root);
    assert_eq!(c.manifest().points, 599);
    let again = c
        .search(
            &data[77],
            SearchOptions {
                k: 2,
                ef: None,
                exact: true,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(again, exact);
    c.close().await.unwrap();

    // Without the cache the index is rebuilt from the trees.
    std::fs::remove_dir_all(cdir.join("index")).unwrap();
    let c = Collection::open(store.clone(), &cdir).await.unwrap();
    let rebuilt = c
        .search(
            &data[77],
            SearchOptions {
                k: 2,
                ef: None,
                exact: true,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        rebuilt.iter().map(|h| &h.id).collect::<Vec<_>>(),
        exact.iter().map(|h| &h.id).collect::<Vec<_>>()
    );
    assert!(c
        .search(
            &data[6],
            SearchOptions {
                k: 600,
                ef: Some(600),
                exact: true
            },
            None
        )
        .await
        .unwrap()
        .iter()
        .all(|h| h.id != EntryId::Int(6)));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_batches_store_nothing() {
    let (_dir, _store, _cdir, mut c) = fresh(1).await;
    let good = clustered(3, 24, 1);
    c.upsert(points(&good, 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    let root = c.root();
    let cases: Vec<(Vec<Point>, &str)> = vec![
        (
            vec![Point {
                id: EntryId::Int(9),
                vector: vec![1.0; 3],
                metadata: None,
            }],
            "dimensions",
        ),
        (
            vec![Point {
                id: EntryId::Int(9),
                vector: {
                    let mut v = good[0].clone();
                    v[4] = f32::NAN;
                    v
                },
                metadata: None,
            }],
            "NaN",
        ),
        (
            vec![Point {
                id: EntryId::Str("x".repeat(300)),
                vector: good[0].clone(),
                metadata: None,
            }],
            "string id",
        ),
        (
            vec![Point {
                id: EntryId::Int(9),
                vector: good[0].clone(),
                metadata: Some(Ipld::Integer(1)),
            }],
            "JSON object",
        ),
        (
            points(&[good[0].clone(), good[1].clone()], 50)
                .into_iter()
                .chain(points(&[good[2].clone()], 50))
                .collect(),
            "twice",
        ),
        (
            vec![Point {
                id: EntryId::Int(9),
                vector: good[0].clone(),
                metadata: Some(Ipld::Map(
                    [("b".to_string(), Ipld::Bytes(vec![0; 70_000]))].into(),
                )),
            }],
            "metadata",
        ),
    ];
    for (batch, expect) in cases {
        let err = c.upsert(batch).await.unwrap_err().to_string();
        assert!(
            err.contains(expect) && err.contains("nothing from this batch was stored"),
            "{expect}: {err}"
        );
        assert_eq!(
            c.points(),
            3,
            "a rejected batch must not change the collection"
        );
        assert!(c.get(&EntryId::Int(9)).await.unwrap().is_none());
    }
    c.checkpoint().await.unwrap();
    assert_eq!(c.root(), root, "nothing was logged by the rejected batches");
    assert_eq!(c.manifest().points, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn old_versions_stay_searchable() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(200, 24, 9);
    c.upsert(points(&data, 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    let v1 = c.root();
    c.delete(&[EntryId::Int(10)]).await.unwrap();
    c.checkpoint().await.unwrap();
    c.upsert(vec![Point {
        id: EntryId::Int(11),
        vector: data[150].clone(),
        metadata: None,
    }])
    .await
    .unwrap();
    c.checkpoint().await.unwrap();
    let versions = c.versions().await.unwrap();
    assert_eq!(versions.len(), 4);
    assert_eq!(versions[2].0, v1);
    // At v1, point 10 is there and 11 still has its old vector.
    let old = c.search_at(&v1, &data[10], 1, None).await.unwrap();
    assert_eq!(old[0].id, EntryId::Int(10));
    // With the metadata it had then.
    assert_eq!(
        old[0].metadata.as_ref().map(|m| m.unpack()),
        Some(Ipld::Map([("n".to_string(), Ipld::Integer(10))].into()))
    );
    let now = c
        .search(
            &data[10],
            SearchOptions {
                k: 1,
                ef: None,
                exact: true,
            },
            None,
        )
        .await
        .unwrap();
    assert_ne!(now[0].id, EntryId::Int(10));
    let old11 = c.search_at(&v1, &data[11], 1, None).await.unwrap();
    assert_eq!(old11[0].id, EntryId::Int(11));
    // The exact scan of the current version agrees with the index's exact search.
    let current = c.search_at(&c.root(), &data[42], 5, None).await.unwrap();
    let indexed = c
        .search(
            &data[42],
            SearchOptions {
                k: 5,
                ef: None,
                exact: true,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        current.iter().map(|h| &h.id).collect::<Vec<_>>(),
        indexed.iter().map(|h| &h.id).collect::<Vec<_>>()
    );
    let unrelated = ipvec_protocol::cid::block_cid(0x71, b"nothing");
    assert!(c
        .search_at(&unrelated, &data[0], 1, None)
        .await
        .unwrap_err()
        .to_string()
        .contains("collection log"));
}

/// Point `i` of `data` with id `i` and the metadata `metadata(i)`.
fn points_with(data: &[Vec<f32>], metadata: impl Fn(usize) -> serde_json::Value) -> Vec<Point> {
    data.iter()
        .enumerate()
        .map(|(i, v)| Point {
            id: EntryId::Int(i as u64),
            vector: v.clone(),
            metadata: Some(super::points::json_to_ipld(metadata(i))),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_plans_follow_the_set_share_and_how_it_lies_in_the_graph() {
    // Point i lies in cluster i % 16; `spread` does not follow the clusters.
    let (_dir, _store, _cdir, mut c) = fresh(1).await;
    let data = clustered(3_200, 24, 9);
    let pts = points_with(&data, |i| {
        serde_json::json!({
            "cluster": (i % 16) as i64,
            "spread": ((i / 16) % 10) as i64,
        })
    });
    c.upsert(pts).await.unwrap();
    let plan = |c: &Collection<IrohBlockStore>, json: &str| {
        c.filter_plan(&Filter::parse(json).unwrap().compile().unwrap())
    };
    let one_cluster = r#"{"must": [{"key": "cluster", "match": 3}]}"#;
    let spread_half = r#"{"must": [{"key": "spread", "range": {"lt": 5}}]}"#;
    let spread_tenth = r#"{"must": [{"key": "spread", "match": 3}]}"#;
    // Exact up to 1,000 matches, and a tenth of that for a set spread over the graph.
    c.set_exact_fallback(1_000, 0.0);
    let cluster = plan(&c, one_cluster);
    assert_eq!((cluster.matching, cluster.path), (200, FilterPath::Exact));
    assert!(cluster.linked_share > 0.5, "{cluster:?}");
    let tenth = plan(&c, spread_tenth);
    assert_eq!(
        (tenth.matching, tenth.path),
        (320, FilterPath::MatchingPoints)
    );
    assert!(tenth.linked_share < 0.2, "{tenth:?}");
    let half = plan(&c, spread_half);
    assert_eq!(
        (half.matching, half.path),
        (1_600, FilterPath::FilteredWalk)
    );
    c.set_exact_fallback(0, 0.0);
    assert_eq!(plan(&c, one_cluster).path, FilterPath::MatchingPoints);
    assert_eq!(plan(&c, spread_tenth).path, FilterPath::MatchingPoints);
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_search_matches_exact_filtered_truth() {
    let (_dir, _store, _cdir, mut c) = fresh(2).await;
    let data = clustered(3_000, 24, 21);
    let pts = points_with(&data, |i| {
        serde_json::json!({
            "half": if i % 2 == 0 { "even" } else { "odd" },
            "tenth": (i % 10) as i64,
            "rare": i % 100 == 0,
        })
    });
    c.upsert(pts).await.unwrap();
    let filters = [
        r#"{"must": [{"key": "half", "match": "even"}]}"#,
        r#"{"must": [{"key": "tenth", "range": {"gte": 3, "lt": 4}}]}"#,
        r#"{"must": [{"key": "rare", "match": true}]}"#,
        r#"{"should": [{"ids": [5, 6, 7]}], "must_not": [{"key": "tenth", "match": 6}]}"#,
    ];
    // Once through the HNSW walk with the filter inside it, once through the exact fallback.
    for (f, fallback) in filters
        .iter()
        .flat_map(|f| [(f, 0usize), (f, EXACT_FALLBACK_POINTS)])
    {
        c.set_exact_fallback(fallback, 0.0);
        let compiled = Filter::parse(f).unwrap().compile().unwrap();
        let mut found = 0;
        let mut total = 0;
        for q in data.iter().step_by(97).take(20) {
            let truth = c
                .search(
                    q,
                    SearchOptions {
                        k: 10,
                        ef: None,
                        exact: true,
                    },
                    Some(&compiled),
                )
                .await
                .unwrap();
            let got = c
                .search(
                    q,
                    SearchOptions {
                        k: 10,
                        ef: Some(128),
                        exact: false,
                    },
                    Some(&compiled),
                )
                .await
                .unwrap();
            for h in &got {
                let id = h.id.to_key().unwrap();
                let meta = h.metadata.as_ref().map(|m| m.unpack());
                assert!(
                    compiled.test(&id, meta.as_ref()),
                    "{f}: hit {:?} does not pass the filter",
                    h.id
                );
            }
            let truth_ids: Vec<&EntryId> = truth.iter().map(|h| &h.id).collect();
            found += got.iter().filter(|h| truth_ids.contains(&&h.id)).count();
            total += truth.len();
        }
        let recall = found as f64 / total as f64;
        assert!(
            recall >= 0.95,
            "{f} (fallback {fallback}): filtered recall@10 {recall}"
        );
    }
    let ids = Filter::parse(
        r#"{"should": [{"ids": [5, 6, 7]}], "must_not": [{"key": "tenth", "match": 6}]}"#,
    )
    .unwrap()
    .compile()
    .unwrap();
    let hits = c
        .search(
            &data[0],
            SearchOptions {
                k: 10,
                ef: None,
                exact: false,
            },
            Some(&ids),
        )
        .await
        .unwrap();
    let mut got: Vec<EntryId> = hits.into_iter().map(|h| h.id).collect();
    got.sort();
    assert_eq!(got, vec![EntryId::Int(5), EntryId::Int(7)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn logged_writes_survive_a_crash_before_checkpoint() {
    let (_dir, store, cdir, mut c) = fresh(2).await;
    let data = clustered(300, 24, 3);
    c.upsert(points(&data[..200], 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    let checkpointed = c.root();
    c.upsert(points(&data[200..], 200)).await.unwrap();
    c.delete(&[EntryId::Int(3)]).await.unwrap();
    // Drop without close: what a crash leaves (the log, an old head, a stale index cache).
    drop(c);
    let c = Collection::open(store.clone(), &cdir).await.unwrap();
    assert_ne!(
        c.root(),
        checkpointed,
        "opening replays the log into a new version"
    );
    assert_eq!(c.points(), 299);
    assert_eq!(c.manifest().points, 299);
    assert!(c.get(&EntryId::Int(3)).await.unwrap().is_none());
    let (entry, leaf) = c.get(&EntryId::Int(250)).await.unwrap().unwrap();
    assert!(leaf.is_some());
    assert_eq!(c.vector_of(&entry), data[250]);
    let hit = c
        .search(
            &data[250],
            SearchOptions {
                k: 1,
                ef: None,
                exact: true,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(hit[0].id, EntryId::Int(250));
    c.close().await.unwrap();
    // The log is empty after the replay's checkpoint; reopening changes nothing.
    let again = Collection::open(store, &cdir).await.unwrap();
    assert_eq!(again.points(), 299);
    assert_eq!(std::fs::metadata(cdir.join("wal")).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retired_collection_refuses_writes_and_touches_nothing() {
    let (_dir, store, cdir, mut c) = fresh(2).await;
    let data = clustered(50, 24, 3);
    c.upsert(points(&data[..40], 0)).await.unwrap();
    let pinned = store.pins().await.unwrap();
    let head = std::fs::read(cdir.join("head")).unwrap();
    c.retire();
    let refused = c.upsert(points(&data[40..], 40)).await;
    assert!(matches!(refused, Err(CollectionError::NotFound(n)) if n == "c"));
    assert!(matches!(
        c.delete(&[EntryId::Int(1)]).await,
        Err(CollectionError::NotFound(_))
    ));
    // What the log held is not committed: no new version, no pin moved, no file written.
    c.checkpoint().await.unwrap();
    c.sync().await.unwrap();
    assert_eq!(store.pins().await.unwrap(), pinned);
    assert_eq!(std::fs::read(cdir.join("head")).unwrap(), head);
    // Reads still answer from memory.
    let options = SearchOptions {
        k: 1,
        ef: None,
        exact: true,
    };
    let hits = c.search(&data[7], options, None).await.unwrap();
    assert_eq!(hits[0].id, EntryId::Int(7));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_index_cache_is_rebuilt_from_the_trees() {
    let (_dir, store, cdir, mut c) = fresh(1).await;
    let data = clustered(400, 24, 5);
    c.upsert(points(&data, 0)).await.unwrap();
    c.close().await.unwrap();
    let opts = SearchOptions {
        k: 5,
        ef: None,
        exact: true,
    };
    let before = Collection::open(store.clone(), &cdir)
        .await
        .unwrap()
        .search(&data[17], opts, None)
        .await
        .unwrap();
    // Garble the saved index: the key map still names the current manifest.
    let path = held_index::cache_stem(&cdir).with_extension("usearch");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, bytes).unwrap();
    let c = Collection::open(store, &cdir).await.unwrap();
    assert_eq!(c.points(), 400);
    assert_eq!(c.search(&data[17], opts, None).await.unwrap(), before);
}

/// The allowed set of a filter is cached; every write must make searches see the new state.
#[tokio::test(flavor = "multi_thread")]
async fn cached_filter_sets_follow_upserts_and_deletes() {
    let (_dir, _store, _cdir, mut c) = fresh(1).await;
    let data = clustered(400, 24, 31);
    let tagged = |i: usize, tag: &str| Point {
        id: EntryId::Int(i as u64),
        vector: data[i].clone(),
        metadata: Some(super::points::json_to_ipld(serde_json::json!({"tag": tag}))),
    };
    let pts = (0..300)
        .map(|i| tagged(i, if i % 3 == 0 { "a" } else { "b" }))
        .collect();
    c.upsert(pts).await.unwrap();
    let json = r#"{"must": [{"key": "tag", "match": "a"}]}"#;
    let compiled = Filter::parse(json).unwrap().compile().unwrap();
    // Every "a" point, and whether `probe` (searched by its own vector) comes first.
    async fn check(
        c: &mut Collection<IrohBlockStore>,
        compiled: &CompiledFilter,
        probe: &[f32],
    ) -> (usize, EntryId) {
        let mut seen = Vec::new();
        // The exact fallback, then the graph walk with the bitset inside it.
        for fallback in [usize::MAX, 0] {
            c.set_exact_fallback(fallback, 0.0);
            let all = c
                .search(
                    probe,
                    SearchOptions {
                        k: 1_000,
                        ef: Some(1_000),
                        exact: false,
                    },
                    Some(compiled),
                )
                .await
                .unwrap();
            seen.push((all.len(), all[0].id.clone()));
        }
        assert_eq!(seen[0].1, seen[1].1, "both paths agree on the best hit");
        seen.swap_remove(0)
    }
    assert_eq!(
        check(&mut c, &compiled, &data[0]).await,
        (100, EntryId::Int(0))
    );
    // Metadata changes into the filter, and out of it.
    c.upsert(vec![tagged(1, "a"), tagged(3, "b")])
        .await
        .unwrap();
    assert_eq!(
        check(&mut c, &compiled, &data[1]).await,
        (100, EntryId::Int(1))
    );
    let (_, best) = check(&mut c, &compiled, &data[3]).await;
    assert_ne!(best, EntryId::Int(3), "3 left the filter");
    // A delete, then a new point, with an equal filter compiled afresh.
    c.delete(&[EntryId::Int(0)]).await.unwrap();
    let again = Filter::parse(json).unwrap().compile().unwrap();
    let (count, best) = check(&mut c, &again, &data[0]).await;
    assert_eq!(count, 99);
    assert_ne!(best, EntryId::Int(0), "0 is deleted");
    c.upsert(vec![tagged(350, "a")]).await.unwrap();
    assert_eq!(
        check(&mut c, &compiled, &data[350]).await,
        (100, EntryId::Int(350))
    );
}

/// An i8 collection's index holds exactly the codes the trees store, whether it was fed by the
/// writes or rebuilt from the trees.
#[tokio::test(flavor = "multi_thread")]
async fn i8_index_holds_the_stored_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = IrohBlockStore::open(&dir.path().join("blocks"))
        .await
        .unwrap();
    let cdir = dir.path().join("c");
    let spec = CollectionSpec {
        quantization: Quantization::I8,
        ..spec("c", 2)
    };
    let mut c = Collection::create(store.clone(), &cdir, &spec)
        .await
        .unwrap();
    let data = clustered(200, 24, 12);
    c.upsert(points(&data, 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    async fn check(c: &Collection<IrohBlockStore>) {
        for n in [0u64, 77, 199] {
            let (entry, _) = c.get(&EntryId::Int(n)).await.unwrap().unwrap();
            let key = c.index.keys.get(&entry.id).unwrap();
            let held: Vec<u8> = c
                .index
                .index
                .vector(key)
                .unwrap()
                .iter()
                .map(|x| (x * 127.0).round() as i8 as u8)
                .collect();
            assert_eq!(held, entry.vec, "point {n}");
        }
    }
    check(&c).await;
    drop(c);
    std::fs::remove_dir_all(cdir.join("index")).unwrap();
    let c = Collection::open(store, &cdir).await.unwrap();
    assert!(c.index.dirty, "rebuilt from the trees");
    check(&c).await;
}

/// A collection whose graph walks on codes answers what exact search answers, with the f32
/// vectors' scores: fed by writes (their vectors read back exactly before the checkpoint),
/// loaded from its saved index, and rebuilt from its trees. `--codes` is refused where codes
/// cannot keep the order.
#[tokio::test(flavor = "multi_thread")]
async fn a_collection_on_codes_answers_as_exact_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = IrohBlockStore::open(&dir.path().join("blocks"))
        .await
        .unwrap();
    let cdir = dir.path().join("c");
    let mut on_codes = CollectionSpec {
        metric: Metric::L2,
        ..spec("c", 2)
    };
    on_codes.hnsw.codes = true;
    let mut c = Collection::create(store.clone(), &cdir, &on_codes)
        .await
        .unwrap();
    assert!(c.index.index.walks_codes());
    let data = clustered(600, 24, 21);
    c.upsert(points(&data[..400], 0)).await.unwrap();
    for n in [0u64, 123, 399] {
        let (entry, _) = c.get(&EntryId::Int(n)).await.unwrap().unwrap();
        let stored: Vec<u8> = data[n as usize]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(entry.vec, stored, "point {n} before the checkpoint");
    }
    c.checkpoint().await.unwrap();
    c.upsert(points(&data[400..], 400)).await.unwrap();
    let queries: Vec<Vec<f32>> = [3usize, 250, 450, 599]
        .iter()
        .map(|i| data[*i].iter().map(|x| x + 0.05).collect())
        .collect();
    // Ids and scores: leaves change when the close commits the second batch.
    async fn answers(
        c: &Collection<IrohBlockStore>,
        queries: &[Vec<f32>],
        exact: bool,
    ) -> Vec<Vec<(EntryId, f32)>> {
        let options = SearchOptions {
            k: 10,
            ef: Some(100),
            exact,
        };
        let mut all = Vec::new();
        for q in queries {
            let hits = c.search(q, options, None).await.unwrap();
            all.push(hits.into_iter().map(|h| (h.id, h.score)).collect());
        }
        all
    }
    let want = answers(&c, &queries, true).await;
    for (q, hits) in queries.iter().zip(&want) {
        assert_eq!(hits.len(), 10);
        for (id, score) in hits {
            let EntryId::Int(n) = id else {
                panic!("{id:?}")
            };
            assert_eq!(
                *score,
                crate::index::score(Metric::L2, q, &data[*n as usize])
            );
        }
    }
    assert_eq!(answers(&c, &queries, false).await, want, "fed by writes");
    c.close().await.unwrap();
    let c = Collection::open(store.clone(), &cdir).await.unwrap();
    assert!(!c.index.dirty, "loaded from its saved index");
    assert!(c.index.index.walks_codes());
    assert_eq!(answers(&c, &queries, false).await, want, "loaded");
    drop(c);
    std::fs::remove_dir_all(cdir.join("index")).unwrap();
    let c = Collection::open(store, &cdir).await.unwrap();
    assert!(c.index.dirty, "rebuilt from the trees");
    assert!(c.index.index.walks_codes());
    assert_eq!(answers(&c, &queries, false).await, want, "rebuilt");

    for (metric, quantization) in [
        (Metric::Dot, Quantization::F32),
        (Metric::L2, Quantization::F16),
    ] {
        let mut bad = CollectionSpec {
            metric,
            quantization,
            ..spec("d", 1)
        };
        bad.hnsw.codes = true;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("--codes needs f32 vectors"), "{err}");
    }
}

/// Pending writes keep no copy of their vectors: what `get` returns before the checkpoint, and
/// what the checkpoint writes into the trees, is read back from the index and the key map, and
/// must be exactly what was stored, in every quantization.
#[tokio::test(flavor = "multi_thread")]
async fn pending_writes_reach_the_trees_exactly_as_stored() {
    for quantization in [Quantization::F32, Quantization::F16, Quantization::I8] {
        let dir = tempfile::tempdir().unwrap();
        let store = IrohBlockStore::open(&dir.path().join("blocks"))
            .await
            .unwrap();
        let spec = CollectionSpec {
            quantization,
            ..spec("c", 3)
        };
        let mut c = Collection::create(store, &dir.path().join("c"), &spec)
            .await
            .unwrap();
        let data = clustered(120, 24, 14);
        let sent = points(&data, 0);
        c.upsert(sent.clone()).await.unwrap();
        c.delete(&[EntryId::Int(5)]).await.unwrap();
        let expect = |n: usize| {
            let p = &sent[n];
            (
                quantize::encode(quantization, &p.vector),
                p.metadata.clone(),
            )
        };
        for checkpointed in [false, true] {
            for n in [0usize, 1, 64, 119] {
                let (entry, leaf) = c.get(&EntryId::Int(n as u64)).await.unwrap().unwrap();
                assert_eq!((entry.vec, entry.meta), expect(n), "{quantization:?} {n}");
                assert_eq!(leaf.is_some(), checkpointed);
            }
            assert!(c.get(&EntryId::Int(5)).await.unwrap().is_none());
            c.checkpoint().await.unwrap();
        }
        assert_eq!(c.points(), 119);
    }
}

/// A checkpoint applies many writes in several runs; the tree must still be the one tree of
/// its entries (as if built in one go), with every point in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_in_several_runs_builds_the_canonical_tree() {
    let (_dir, store, _cdir, mut c) = fresh(1).await;
    let data = clustered(checkpoint::CHECKPOINT_RUN + 700, 24, 15);
    c.upsert(points(&data, 0)).await.unwrap();
    c.checkpoint().await.unwrap();
    let root = c.roots[0].tree;
    let mut scan = tree::range(
        &store,
        root,
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
    );
    let mut entries = Vec::new();
    while let Some((entry, _)) = scan.next().await.unwrap() {
        entries.push(entry);
    }
    assert_eq!(entries.len(), data.len());
    assert_eq!(tree::build(&store, entries).await.unwrap(), root);
}

/// A replica moved to a newer head applies only the trees' differences, and ends up answering
/// exactly like a replica opened from scratch at that head (and like the writer).
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_advances_by_the_tree_diff() {
    let (dir, store, _cdir, mut writer) = fresh(2).await;
    let data = clustered(800, 24, 11);
    writer.upsert(points(&data, 0)).await.unwrap();
    writer.checkpoint().await.unwrap();
    let mut replica =
        Collection::adopt(store.clone(), &dir.path().join("r"), writer.head().clone())
            .await
            .unwrap();
    assert_eq!(replica.points(), 800);

    // New values for 40 points, 30 deleted, 50 new ones.
    let moved = clustered(40, 24, 12);
    writer.upsert(points(&moved, 100)).await.unwrap();
    let gone: Vec<EntryId> = (500..530).map(EntryId::Int).collect();
    writer.delete(&gone).await.unwrap();
    writer
        .upsert(points(&clustered(50, 24, 13), 800))
        .await
        .unwrap();
    writer.checkpoint().await.unwrap();
    replica.advance(writer.head().clone()).await.unwrap();
    assert_eq!(replica.root(), writer.root());
    assert_eq!(replica.points(), 800 - 30 + 50);
    assert!(replica.get(&EntryId::Int(510)).await.unwrap().is_none());
    let (entry, leaf) = replica.get(&EntryId::Int(110)).await.unwrap().unwrap();
    assert_eq!(replica.vector_of(&entry), moved[10]);
    assert!(leaf.is_some());

    let fresh_replica =
        Collection::adopt(store.clone(), &dir.path().join("r2"), writer.head().clone())
            .await
            .unwrap();
    for probe in [&data[3], &moved[5], &data[515], &data[799]] {
        let options = SearchOptions {
            k: 10,
            ef: Some(200),
            exact: true,
        };
        let want = writer.search(probe, options, None).await.unwrap();
        assert_eq!(replica.search(probe, options, None).await.unwrap(), want);
        assert_eq!(
            fresh_replica.search(probe, options, None).await.unwrap(),
            want
        );
        let options = SearchOptions {
            exact: false,
            ..options
        };
        assert_eq!(
            replica.search(probe, options, None).await.unwrap()[0].id,
            fresh_replica.search(probe, options, None).await.unwrap()[0].id
        );
    }
}

/// Searches that answer while writes and checkpoints run.
mod concurrent;
/// Identical vectors and scores that must stay finite.
mod duplicates;
/// Searches of all or some held shards through their one index.
mod one_index;
pub(crate) mod pause;
/// Graph inserts made beside searches and placed afterwards.
mod prepared;
/// Shards held, the index cache tagged with their roots; partial replicas.
mod shards;
/// Published index snapshots: loaded by new replicas, refused when wrong.
mod snapshots;
/// Writes that insert from several threads.
mod write_threads;
/// The writer list and its changes.
mod writers;
