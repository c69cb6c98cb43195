//! Tests of the HNSW index.

use ipvec_protocol::manifest::HnswParams;

use super::*;
use crate::index::{testdata::clustered, FlatIndex};

fn spec(metric: Metric, quantization: Quantization) -> IndexSpec {
    IndexSpec {
        dimension: 24,
        metric,
        quantization,
        hnsw: HnswParams {
            m: 16,
            ef_construction: 100,
            ef_search: 64,
            codes: false,
        },
    }
}

fn recall(metric: Metric, quantization: Quantization) -> f32 {
    recall_of(spec(metric, quantization))
}

fn recall_of(spec: IndexSpec) -> f32 {
    let metric = spec.metric;
    // Queries come from the same distribution as the data, held out of the index.
    let mut data = clustered(3_100, 24, 1);
    let queries = data.split_off(3_000);
    let mut exact = FlatIndex::new(24, metric);
    let mut hnsw = HnswIndex::new(spec).unwrap();
    assert_eq!(hnsw.walks_codes(), spec.hnsw.codes);
    for (i, v) in data.iter().enumerate() {
        exact.upsert(i as u64, v).unwrap();
        hnsw.upsert(i as u64, v).unwrap();
    }
    recall_in(&hnsw, &exact, &queries)
}

/// Recall@10 of `hnsw` at ef 64 against `exact` (the same points), over `queries`.
fn recall_in(hnsw: &HnswIndex, exact: &FlatIndex, queries: &[Vec<f32>]) -> f32 {
    let metric = hnsw.spec.metric;
    // A hit counts when its exact score reaches the tenth true score (ties are common in
    // tight clusters, and any of the tied points is a correct answer).
    let mut found = 0;
    for q in queries {
        let tenth = exact.search(q, 10, None, None).unwrap()[9].score;
        let got = hnsw.search(q, 10, Some(64), None).unwrap();
        let tolerance = 1e-5 * tenth.abs().max(1.0);
        found += got
            .iter()
            .filter(|h| {
                crate::index::score(metric, q, exact.vector(h.key).unwrap()) >= tenth - tolerance
            })
            .count();
    }
    found as f32 / (10 * queries.len()) as f32
}

#[test]
fn recall_against_exact_search() {
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let r = recall(metric, Quantization::F32);
        assert!(r >= 0.95, "{metric:?} recall@10 {r}");
    }
    let r = recall(Metric::Cosine, Quantization::F16);
    assert!(r >= 0.9, "f16 recall@10 {r}");
}

#[test]
fn scores_match_the_exact_definition() {
    let data = clustered(200, 24, 3);
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let mut exact = FlatIndex::new(24, metric);
        let mut hnsw = HnswIndex::new(spec(metric, Quantization::F32)).unwrap();
        for (i, v) in data.iter().enumerate() {
            exact.upsert(i as u64, v).unwrap();
            hnsw.upsert(i as u64, v).unwrap();
        }
        let top = hnsw.search(&data[5], 1, None, None).unwrap()[0];
        let want = crate::index::score(metric, &data[5], exact.vector(top.key).unwrap());
        assert!(
            (top.score - want).abs() <= 1e-3 * want.abs().max(1.0),
            "{metric:?}: {} vs {want}",
            top.score
        );
    }
}

#[test]
fn upsert_replaces_remove_forgets_filter_restricts_and_save_load_roundtrips() {
    let data = clustered(500, 24, 4);
    let mut hnsw = HnswIndex::new(spec(Metric::L2, Quantization::F32)).unwrap();
    for (i, v) in data.iter().enumerate() {
        hnsw.upsert(i as u64, v).unwrap();
    }
    hnsw.upsert(7, &data[300]).unwrap();
    assert_eq!(hnsw.len(), 500);
    let hits = hnsw.search(&data[300], 2, Some(200), None).unwrap();
    let keys: Vec<u64> = hits.iter().map(|h| h.key).collect();
    assert!(keys.contains(&7) && keys.contains(&300), "{keys:?}");
    assert!(hnsw.remove(300).unwrap());
    assert!(hnsw
        .search(&data[300], 5, None, None)
        .unwrap()
        .iter()
        .all(|h| h.key != 300));
    let even = |k: u64| k.is_multiple_of(2);
    assert!(hnsw
        .search(&data[11], 10, None, Some(&even))
        .unwrap()
        .iter()
        .all(|h| h.key % 2 == 0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.usearch");
    hnsw.save(&path).unwrap();
    let loaded = HnswIndex::load(spec(Metric::L2, Quantization::F32), &path).unwrap();
    assert_eq!(loaded.len(), hnsw.len());
    assert_eq!(
        loaded.search(&data[42], 3, None, None).unwrap(),
        hnsw.search(&data[42], 3, None, None).unwrap()
    );
    assert!(matches!(
        hnsw.search(&[0.0; 3], 1, None, None),
        Err(IndexError::Dimension { .. })
    ));
}

fn filled(n: usize, runtime: HnswRuntime) -> (Vec<Vec<f32>>, HnswIndex) {
    let data = clustered(n, 24, 6);
    let mut hnsw = HnswIndex::with_runtime(spec(Metric::L2, Quantization::F32), runtime).unwrap();
    for (i, v) in data.iter().enumerate() {
        hnsw.upsert(i as u64, v).unwrap();
    }
    (data, hnsw)
}

/// More threads than usearch has contexts (it has at least one per core): without the
/// permits, calls that find every context taken fail with "Reserve capacity ahead of
/// searches!".
#[test]
fn more_threads_than_contexts_all_get_answers() {
    let (data, hnsw) = filled(
        3_000,
        HnswRuntime {
            contexts: 2,
            ..HnswRuntime::default()
        },
    );
    let queries = &data[..40];
    let want: Vec<Vec<Hit>> = queries
        .iter()
        .map(|q| hnsw.search(q, 10, None, None).unwrap())
        .collect();
    let odd = |k: u64| k % 2 == 1;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) * 4;
    std::thread::scope(|s| {
        for t in 0..threads.max(16) {
            let (hnsw, want) = (&hnsw, &want);
            s.spawn(move || {
                for round in 0..15 {
                    for (q, want) in queries.iter().zip(want) {
                        if (t + round) % 5 == 0 {
                            let hits = hnsw.search(q, 10, None, Some(&odd)).unwrap();
                            assert!(hits.iter().all(|h| h.key % 2 == 1));
                        } else if (t + round) % 7 == 0 {
                            assert_eq!(hnsw.exact(q, 1).unwrap()[0].score, 0.0);
                        } else {
                            assert_eq!(&hnsw.search(q, 10, None, None).unwrap(), want);
                        }
                    }
                }
            });
        }
    });
}

/// Threads asking for different `ef` values each get what a lone caller at that `ef` gets.
#[test]
fn concurrent_searches_at_different_ef_values_keep_their_own() {
    let (data, hnsw) = filled(
        2_000,
        HnswRuntime {
            contexts: 3,
            ..HnswRuntime::default()
        },
    );
    let queries = &data[..30];
    let efs = [10, 64, 300];
    let want: Vec<Vec<Vec<Hit>>> = efs
        .iter()
        .map(|ef| {
            queries
                .iter()
                .map(|q| hnsw.search(q, 10, Some(*ef), None).unwrap())
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..12 {
            let (hnsw, want) = (&hnsw, &want);
            s.spawn(move || {
                for round in 0..10 {
                    // Most threads stay at one ef, some alternate.
                    let which = if t < 8 { t % 3 } else { (t + round) % 3 };
                    for (q, want) in queries.iter().zip(&want[which]) {
                        assert_eq!(&hnsw.search(q, 10, Some(efs[which]), None).unwrap(), want);
                    }
                }
            });
        }
    });
}

/// With ipvec's kernel, a search wide enough to see every point finds the exact top 10, and
/// the index keeps the kernel through save and load.
#[test]
fn kernel_search_finds_the_exact_neighbours() {
    let data = clustered(400, 37, 8);
    let dir = tempfile::tempdir().unwrap();
    for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
        let spec = IndexSpec {
            dimension: 37,
            ..spec(metric, Quantization::F32)
        };
        let mut exact = FlatIndex::new(37, metric);
        let mut hnsw = HnswIndex::new(spec).unwrap();
        for (i, v) in data.iter().enumerate() {
            exact.upsert(i as u64, v).unwrap();
            hnsw.upsert(i as u64, v).unwrap();
        }
        let path = dir.path().join(format!("{metric:?}.usearch"));
        hnsw.save(&path).unwrap();
        let loaded = HnswIndex::load(spec, &path).unwrap();
        assert_eq!(loaded.kernel(), hnsw.kernel());
        assert_eq!(
            hnsw.kernel().is_some(),
            Kernels::best().isa() != Isa::Portable
        );
        for q in data.iter().step_by(40) {
            let want = exact.search(q, 10, None, None).unwrap();
            for index in [&hnsw, &loaded] {
                let got = index.search(q, 10, Some(400), None).unwrap();
                let keys = |hits: &[Hit]| hits.iter().map(|h| h.key).collect::<Vec<_>>();
                assert_eq!(keys(&got), keys(&want), "{metric:?}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.score - w.score).abs() <= 1e-4 * w.score.abs().max(1.0));
                }
            }
        }
    }
}

/// An i8 index holds the codes it is given; f32 vectors become the same (rounded) codes,
/// and queries are rounded the same way.
#[test]
fn i8_indexes_hold_the_given_codes_and_round_vectors_and_queries() {
    let data = clustered(300, 24, 10);
    let i8_spec = spec(Metric::Cosine, Quantization::I8);
    let mut from_codes = HnswIndex::new(i8_spec).unwrap();
    let mut from_f32 = HnswIndex::new(i8_spec).unwrap();
    for (i, v) in data.iter().enumerate() {
        from_codes.upsert_i8(i as u64, &i8_codes(v)).unwrap();
        from_f32.upsert(i as u64, v).unwrap();
    }
    let held = |index: &HnswIndex, key: u64| -> Vec<i8> {
        let v = index.vector(key).unwrap();
        v.iter().map(|x| (x * 127.0).round() as i8).collect()
    };
    for key in [0, 17, 299] {
        let codes = i8_codes(&data[key as usize]);
        assert!(codes.iter().any(|c| c.abs() > 20), "{codes:?}");
        assert_eq!(held(&from_codes, key), codes);
        assert_eq!(held(&from_f32, key), codes);
    }
    for q in data.iter().step_by(50) {
        assert_eq!(
            from_codes.search(q, 5, None, None).unwrap(),
            from_f32.search(q, 5, None, None).unwrap()
        );
        assert_eq!(
            from_codes.exact(q, 1).unwrap()[0].key,
            from_f32.exact(q, 1).unwrap()[0].key
        );
    }
    assert!(matches!(
        from_codes.upsert_i8(1, &[1, 2]),
        Err(IndexError::Dimension { .. })
    ));
    assert_eq!(i8_codes(&[0.0; 3]), vec![0; 3]);
}

/// Bulk loads leave every point reachable, on one thread (what a rebuild does by default,
/// `storage.index_build_threads = 1`) or, once mended, on several: a search whose candidate
/// list holds the whole index returns every point. Small, dense, regular data is where
/// usearch's concurrent inserts leave points no walk reaches: on 2 threads and unmended, this
/// test found 198 of 200 in its first trial. Checking that each point's neighbours link back
/// to it is not enough: a pair of points linked only to each other was found so.
#[test]
fn bulk_loads_leave_no_point_unreachable() {
    let mut spec = spec(Metric::L2, Quantization::F32);
    spec.dimension = 4;
    let vector = |i: u64| -> Vec<f32> {
        vec![
            (i % 7) as f32,
            (i % 11) as f32 * 0.5,
            (i % 13) as f32 - 6.0,
            (i as f32).sqrt(),
        ]
    };
    for threads in [1, 2, 4] {
        for trial in 0..40u64 {
            let n = 200 + trial;
            let points: Vec<(u64, Vec<u8>)> = (0..n)
                .map(|i| (i, vector(i).iter().flat_map(|x| x.to_le_bytes()).collect()))
                .collect();
            let mut index = HnswIndex::new(spec).unwrap();
            // In two bulk loads, as a rebuild loads its chunks, then mended.
            let (first, second) = points.split_at(n as usize / 2);
            index.add_stored(first.to_vec(), threads, &|_| {}).unwrap();
            index.add_stored(second.to_vec(), threads, &|_| {}).unwrap();
            index.mend().unwrap();
            assert_eq!(index.len(), n as usize);
            for probe in [0, n / 2, n - 1] {
                let got = index
                    .search(&vector(probe), n as usize, Some(10_000), None)
                    .unwrap();
                assert_eq!(
                    got.len(),
                    n as usize,
                    "{threads} threads, trial {trial}: probe {probe}"
                );
            }
        }
    }
}

fn with_codes(metric: Metric, quantization: Quantization) -> IndexSpec {
    let mut spec = spec(metric, quantization);
    spec.hnsw.codes = true;
    spec
}

fn recall_on_codes(metric: Metric) -> f32 {
    recall_of(with_codes(metric, Quantization::F32))
}

/// Walks on codes find the exact neighbours as well as walks on f32, and answer with the exact
/// scores of the f32 vectors; inner products and quantized vectors do not take codes.
#[test]
fn walks_on_codes_find_the_exact_neighbours_with_exact_scores() {
    for metric in [Metric::L2, Metric::Cosine] {
        let r = recall_on_codes(metric);
        assert!(r >= 0.95, "{metric:?} on codes: recall@10 {r}");
        let data = clustered(300, 24, 12);
        let mut hnsw = HnswIndex::new(with_codes(metric, Quantization::F32)).unwrap();
        for (i, v) in data.iter().enumerate() {
            hnsw.upsert(i as u64, v).unwrap();
        }
        assert!(hnsw.walks_codes());
        let query: Vec<f32> = data[17].iter().map(|x| x * 0.9 + 0.1).collect();
        for hit in hnsw.search(&query, 10, None, None).unwrap() {
            let want = crate::index::score(metric, &query, &data[hit.key as usize]);
            assert_eq!(hit.score, want, "{metric:?}: key {}", hit.key);
        }
        assert_eq!(hnsw.vector(17).as_deref(), Some(data[17].as_slice()));
        let exact = hnsw.exact(&query, 5).unwrap();
        let mut scored: Vec<Hit> = data
            .iter()
            .enumerate()
            .map(|(i, v)| Hit {
                key: i as u64,
                score: crate::index::score(metric, &query, v),
            })
            .collect();
        keep_finite(&mut scored);
        assert_eq!(
            exact,
            top_k(scored, 5),
            "{metric:?}: exact search beside codes"
        );
    }
    for (metric, quantization) in [
        (Metric::Dot, Quantization::F32),
        (Metric::L2, Quantization::F16),
        (Metric::Cosine, Quantization::I8),
    ] {
        let hnsw = HnswIndex::new(with_codes(metric, quantization)).unwrap();
        assert!(!hnsw.walks_codes(), "{metric:?} {quantization:?}");
    }
}

/// Once a graph on codes has served its share of searches unchanged, searches take the own
/// walk of its layout (`codes_walk`) with usearch's recall; a change sends them back to
/// usearch's walk until the layout is read again, with the points added, moved and removed.
#[test]
fn the_own_walk_on_codes_keeps_recall_and_follows_every_change() {
    for metric in [Metric::L2, Metric::Cosine] {
        let mut data = clustered(3_100, 24, 1);
        let queries = data.split_off(3_000);
        let mut exact = FlatIndex::new(24, metric);
        let mut hnsw = HnswIndex::new(with_codes(metric, Quantization::F32)).unwrap();
        for (i, v) in data.iter().enumerate() {
            exact.upsert(i as u64, v).unwrap();
            hnsw.upsert(i as u64, v).unwrap();
        }
        hnsw.set_own_walk(false);
        let usearch = recall_in(&hnsw, &exact, &queries);
        assert_eq!(
            hnsw.code_graph.bytes(),
            0,
            "{metric:?}: laid out with the walk off"
        );
        hnsw.set_own_walk(true);
        // 3,000 points: laid out at the 24th search, and the second pass is all own walks.
        recall_in(&hnsw, &exact, &queries);
        let laid_out = hnsw.code_graph.bytes();
        assert!(
            laid_out >= 3_000 * 24,
            "{metric:?}: {laid_out} bytes laid out"
        );
        let own = recall_in(&hnsw, &exact, &queries);
        assert!(
            own >= 0.95 && own >= usearch - 0.01,
            "{metric:?}: own walk {own}, usearch's {usearch}"
        );

        // Each change is searched for at once (usearch's walk) and again after enough
        // searches for the layout to be read again (the own walk).
        let top = |hnsw: &HnswIndex, q: &[f32]| hnsw.search(q, 1, None, None).unwrap()[0].key;
        let settle = |hnsw: &HnswIndex| {
            for q in queries.iter().cycle().take(30) {
                hnsw.search(q, 10, None, None).unwrap();
            }
        };
        for (i, q) in queries.iter().enumerate().step_by(10) {
            hnsw.upsert(3_000 + i as u64, q).unwrap();
        }
        // A point moved onto a query.
        hnsw.upsert(5, &queries[5]).unwrap();
        for when in ["at once", "laid out again"] {
            for (i, q) in queries.iter().enumerate().step_by(10) {
                assert_eq!(top(&hnsw, q), 3_000 + i as u64, "{metric:?}: added, {when}");
            }
            assert_eq!(top(&hnsw, &queries[5]), 5, "{metric:?}: moved, {when}");
            settle(&hnsw);
        }
        assert!(
            hnsw.code_graph.bytes() > laid_out,
            "{metric:?}: the added points laid out"
        );
        hnsw.remove(3_000).unwrap();
        for when in ["at once", "laid out again"] {
            let hits = hnsw.search(&queries[0], 10, None, None).unwrap();
            assert!(
                hits.iter().all(|h| h.key != 3_000),
                "{metric:?}: removed, {when}"
            );
            assert_eq!(hits.len(), 10);
            settle(&hnsw);
        }
    }
}

/// Replacing, sharing, removing, preparing and filtering keep the f32 vectors beside the codes
/// in step with the graph, and a saved index loads back (as a file or as bytes, whatever the
/// runtime asks for) walking on codes and answering the same; a damaged section is refused.
#[test]
fn codes_follow_every_change_and_survive_save_and_load() {
    let data = clustered(600, 24, 13);
    let spec = with_codes(Metric::L2, Quantization::F32);
    let mut hnsw = HnswIndex::new(spec).unwrap();
    let stored = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let first: Vec<(u64, Vec<u8>)> = (0..400).map(|i| (i, stored(&data[i as usize]))).collect();
    hnsw.add_stored(first, 2, &|_| {}).unwrap();
    hnsw.mend().unwrap();
    for i in 400..550 {
        hnsw.upsert(i, &data[i as usize]).unwrap();
    }
    // Prepared beside searches, then placed; one prepared and dropped.
    for i in 550..600u64 {
        hnsw.room_for(1).unwrap();
        let temp = PREPARED_KEYS + i;
        assert!(hnsw.prepare(temp, &stored(&data[i as usize])).unwrap());
        hnsw.place_prepared(i, temp, &stored(&data[i as usize]))
            .unwrap();
    }
    hnsw.room_for(1).unwrap();
    assert!(hnsw.prepare(PREPARED_KEYS, &stored(&data[0])).unwrap());
    hnsw.discard_prepared(PREPARED_KEYS).unwrap();
    // Key 7 moves to point 300's vector (and shares its slot); 301 is removed; 5 replaced.
    hnsw.upsert(7, &data[300]).unwrap();
    assert!(hnsw.remove(301).unwrap());
    hnsw.upsert(5, &data[302]).unwrap();
    assert_eq!(hnsw.len(), 599);
    assert_eq!(hnsw.vector(7).as_deref(), Some(data[300].as_slice()));
    assert_eq!(hnsw.vector(5).as_deref(), Some(data[302].as_slice()));
    assert_eq!(hnsw.vector(301), None);
    let keys = |hits: Vec<Hit>| hits.into_iter().map(|h| h.key).collect::<Vec<u64>>();
    let near_300 = keys(hnsw.search(&data[300], 2, Some(100), None).unwrap());
    assert!(
        near_300.contains(&7) && near_300.contains(&300),
        "{near_300:?}"
    );
    assert!(!keys(hnsw.search(&data[301], 10, Some(100), None).unwrap()).contains(&301));
    for i in (550..600).step_by(7) {
        assert_eq!(
            keys(hnsw.search(&data[i], 1, None, None).unwrap()),
            vec![i as u64]
        );
    }
    let odd = |k: u64| k % 2 == 1;
    let filtered = hnsw.search(&data[40], 10, None, Some(&odd)).unwrap();
    assert_eq!(filtered.len(), 10);
    assert!(filtered.iter().all(|h| h.key % 2 == 1));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.usearch");
    hnsw.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for loaded in [
        HnswIndex::load(spec, &path).unwrap(),
        HnswIndex::load_bytes(spec, &bytes).unwrap(),
    ] {
        assert!(loaded.walks_codes());
        assert_eq!(loaded.len(), hnsw.len());
        assert_eq!(loaded.vector(7), hnsw.vector(7));
        for q in [3, 42, 333] {
            assert_eq!(
                loaded.search(&data[q], 10, None, None).unwrap(),
                hnsw.search(&data[q], 10, None, None).unwrap()
            );
        }
    }
    // The section's row count is its third word after the magic (coder, lo, step, count).
    let groups_start = Groups::read_from_bytes(&bytes).unwrap().2 as usize;
    let section_length = u64::from_le_bytes(
        bytes[groups_start - 16..groups_start - 8]
            .try_into()
            .unwrap(),
    );
    let section = groups_start - 16 - section_length as usize;
    let mut damaged = bytes.clone();
    damaged[section + 8 * 4] ^= 1;
    let err = HnswIndex::load_bytes(spec, &damaged)
        .unwrap_err()
        .to_string();
    assert!(err.contains("damaged"), "{err}");
    // A file whose graph holds another metric than the collection's is refused, and so is
    // a graph over codes where the collection's index walks on f32 vectors, and back.
    let cosine = IndexSpec {
        metric: Metric::Cosine,
        ..spec
    };
    let err = HnswIndex::load(cosine, &path).unwrap_err().to_string();
    assert!(err.contains("another kind"), "{err}");
    let plain = self::spec(Metric::L2, Quantization::F32);
    let err = HnswIndex::load(plain, &path).unwrap_err().to_string();
    assert!(err.contains("over one-byte codes"), "{err}");
    let f32_path = dir.path().join("plain.usearch");
    let mut f32_index = HnswIndex::new(plain).unwrap();
    f32_index.upsert(1, &data[1]).unwrap();
    f32_index.save(&f32_path).unwrap();
    let err = HnswIndex::load(spec, &f32_path).unwrap_err().to_string();
    assert!(err.contains("not over one-byte codes"), "{err}");
}

/// The affine codes span the first vectors' range, twice it when they are few, and a graph
/// whose codes were fitted to one vector still finds the wider ones that follow, with exact
/// scores (values beyond the range saturate; the f32 vectors score the candidates).
#[test]
fn codes_fitted_on_few_vectors_leave_room_for_wider_ones() {
    let many: Vec<f32> = (0..codes::FEW).flat_map(|i| [i as f32, 2.0]).collect();
    assert_eq!(
        codes::Coder::fit(many.iter().copied(), codes::FEW),
        Some(codes::Coder::Affine {
            lo: 0.0,
            step: (codes::FEW - 1) as f32 / 255.0
        })
    );
    assert_eq!(
        codes::Coder::fit([1.0, 3.0], 1),
        Some(codes::Coder::Affine {
            lo: 0.0,
            step: 4.0 / 255.0
        })
    );
    assert_eq!(codes::Coder::fit([], 0), None);

    let data = clustered(2_000, 24, 14);
    let spec = with_codes(Metric::L2, Quantization::F32);
    let mut hnsw = HnswIndex::new(spec).unwrap();
    let narrow: Vec<f32> = data[0].iter().map(|x| x * 0.5).collect();
    hnsw.upsert(10_000, &narrow).unwrap();
    for (i, v) in data.iter().enumerate() {
        hnsw.upsert(i as u64, v).unwrap();
    }
    let mut found = 0;
    for i in (0..2_000).step_by(20) {
        let hits = hnsw.search(&data[i], 1, Some(64), None).unwrap();
        let stored = match hits[0].key {
            10_000 => &narrow,
            key => &data[key as usize],
        };
        assert_eq!(
            hits[0].score,
            crate::index::score(Metric::L2, &data[i], stored)
        );
        found += usize::from(hits[0].key == i as u64);
    }
    assert!(found >= 95, "{found} of 100 points found themselves");
}

/// Recall@10 of `search_passing` against the exact top 10 of the points `passes` accepts, and
/// whether every hit passed: over clustered points (cluster `i % 16`), held-out queries.
fn recall_passing(spec: IndexSpec, passes: &(dyn Fn(u64) -> bool + Sync), ef: usize) -> f32 {
    let metric = spec.metric;
    let mut data = clustered(3_100, 24, 7);
    let queries = data.split_off(3_000);
    let mut exact = FlatIndex::new(24, metric);
    let mut hnsw = HnswIndex::new(spec).unwrap();
    for (i, v) in data.iter().enumerate() {
        exact.upsert(i as u64, v).unwrap();
        hnsw.upsert(i as u64, v).unwrap();
    }
    let allowed: Vec<u64> = (0..data.len() as u64).filter(|k| passes(*k)).collect();
    let every = allowed.len().div_ceil(64);
    let seeds: Vec<u64> = allowed.iter().copied().step_by(every).collect();
    let mut found = 0;
    for q in &queries {
        let truth = exact.search(q, 10, None, Some(passes)).unwrap();
        let tenth = truth[9].score;
        let got = hnsw
            .search_passing(q, 10, Some(ef), passes, seeds.iter().copied())
            .unwrap();
        assert_eq!(got.len(), 10);
        assert!(
            got.iter().all(|h| passes(h.key)),
            "a hit the filter rejects"
        );
        let tolerance = 1e-5 * tenth.abs().max(1.0);
        for hit in &got {
            let exact_score = crate::index::score(metric, q, exact.vector(hit.key).unwrap());
            assert!(
                (hit.score - exact_score).abs() <= 1e-3 * exact_score.abs().max(1.0),
                "scores are exact"
            );
            found += usize::from(exact_score >= tenth - tolerance);
        }
    }
    found as f32 / (10 * queries.len()) as f32
}

#[test]
fn walks_of_passing_points_find_the_exact_filtered_neighbours() {
    // Filters that follow the data (whole clusters) and one that does not.
    let one_cluster = |key: u64| key % 16 == 3;
    let half_the_clusters = |key: u64| key % 16 < 8;
    let spread_tenth = |key: u64| (key / 16) % 10 == 3;
    let spread_hundredth = |key: u64| (key / 16) % 100 == 3;
    let tenth_of_a_cluster = |key: u64| key % 16 == 3 && (key / 16).is_multiple_of(10);
    let filters: [(&str, &(dyn Fn(u64) -> bool + Sync)); 5] = [
        ("a tenth of one cluster", &tenth_of_a_cluster),
        ("one cluster", &one_cluster),
        ("half the clusters", &half_the_clusters),
        ("a tenth, spread", &spread_tenth),
        ("a hundredth, spread", &spread_hundredth),
    ];
    for spec in [
        spec(Metric::L2, Quantization::F32),
        spec(Metric::Cosine, Quantization::F32),
        with_codes(Metric::L2, Quantization::F32),
    ] {
        for (name, passes) in filters {
            let r = recall_passing(spec, passes, 64);
            assert!(r >= 0.95, "{name}, {spec:?}: recall@10 {r}");
        }
    }
}

/// An exact L2 index and an f32 HNSW index of `data`, each point under its position.
fn l2_indexes(data: &[Vec<f32>]) -> (FlatIndex, HnswIndex) {
    let mut exact = FlatIndex::new(data[0].len(), Metric::L2);
    let mut hnsw = HnswIndex::new(spec(Metric::L2, Quantization::F32)).unwrap();
    for (i, v) in data.iter().enumerate() {
        exact.upsert(i as u64, v).unwrap();
        hnsw.upsert(i as u64, v).unwrap();
    }
    (exact, hnsw)
}

#[test]
fn walks_of_passing_points_equal_exact_search_on_small_sets() {
    // 2,000 points, 200 of which pass, spread over every cluster: at an `ef` above 200 the
    // walk goes on until it has met every passing point it can reach, and answers exactly
    // what exact search answers when it reaches them all.
    let data = clustered(2_000, 24, 11);
    let (exact, hnsw) = l2_indexes(&data);
    let passes = |key: u64| (key / 16) % 10 == 4;
    let allowed: Vec<u64> = (0..2_000).filter(|k| passes(*k)).collect();
    let seeds: Vec<u64> = allowed.iter().copied().step_by(4).collect();
    let keys = |hits: &[Hit]| hits.iter().map(|h| h.key).collect::<Vec<_>>();
    for q in data.iter().step_by(97) {
        let truth = exact.search(q, 10, None, Some(&passes)).unwrap();
        let got = hnsw
            .search_passing(q, 10, Some(256), &passes, seeds.iter().copied())
            .unwrap();
        assert_eq!(keys(&got), keys(&truth));
    }
}

#[test]
fn walks_of_passing_points_follow_every_change_to_the_graph() {
    // The walk reads the graph's links once and keeps them until the graph changes: points
    // added, moved and removed after a walk are walked, or not, by the next one. The seeds
    // are the first points' only, so the points added are found through the links alone.
    let mut data = clustered(2_000, 24, 12);
    let added = data.split_off(1_800);
    let (mut exact, mut hnsw) = l2_indexes(&data);
    let passes = |key: u64| (key / 16) % 10 == 4;
    let seeds: Vec<u64> = (0..1_800).filter(|k| passes(*k)).step_by(4).collect();
    let keys = |hits: &[Hit]| hits.iter().map(|h| h.key).collect::<Vec<_>>();
    let queries: Vec<Vec<f32>> = added.iter().step_by(13).cloned().collect();
    let check = |hnsw: &HnswIndex, exact: &FlatIndex, when: &str| {
        for q in &queries {
            let truth = exact.search(q, 10, None, Some(&passes)).unwrap();
            let got = hnsw
                .search_passing(q, 10, Some(256), &passes, seeds.iter().copied())
                .unwrap();
            assert_eq!(keys(&got), keys(&truth), "{when}");
        }
    };
    let before = hnsw.memory_bytes();
    check(&hnsw, &exact, "before any change");
    // The links read are counted in the index's memory: 4 bytes a link, a point has several.
    let after = hnsw.memory_bytes();
    assert!(after >= before + 4 * 4 * 1_800, "{before} -> {after}");
    for (i, v) in added.iter().enumerate() {
        let key = 1_800 + i as u64;
        exact.upsert(key, v).unwrap();
        hnsw.upsert(key, v).unwrap();
    }
    check(&hnsw, &exact, "after points were added");
    // Passing points moved onto the queries, and others taken out.
    for (n, key) in (0..1_800).filter(|k| passes(*k)).step_by(7).enumerate() {
        if n % 2 == 0 {
            let mut v = queries[n % queries.len()].clone();
            v[0] += 0.01 * (n + 1) as f32;
            exact.upsert(key, &v).unwrap();
            hnsw.upsert(key, &v).unwrap();
        } else {
            exact.remove(key).unwrap();
            hnsw.remove(key).unwrap();
        }
    }
    check(&hnsw, &exact, "after points were moved and removed");
}

#[test]
fn passing_share_tells_sets_that_follow_the_graph() {
    let data = clustered(3_000, 24, 5);
    let mut hnsw = HnswIndex::new(spec(Metric::L2, Quantization::F32)).unwrap();
    for (i, v) in data.iter().enumerate() {
        hnsw.upsert(i as u64, v).unwrap();
    }
    let share = |passes: &(dyn Fn(u64) -> bool + Sync)| {
        let keys: Vec<u64> = (0..3_000).filter(|k| passes(*k)).collect();
        hnsw.passing_share(keys.iter().copied().step_by(keys.len() / 64), passes)
    };
    // A sixteenth of the points each: one cluster, and spread over all of them.
    let cluster = share(&|key| key % 16 == 3);
    let spread = share(&|key| (key / 16) % 16 == 3);
    assert!(cluster > 0.9, "one cluster's links stay in it: {cluster}");
    assert!(
        spread < 0.2,
        "a spread set's links follow its share: {spread}"
    );
}
