//! Identical and nearly identical vectors in the HNSW index.

use ipvec_protocol::manifest::{HnswParams, Metric, Quantization};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::*;
use crate::index::{
    i8_codes, score, testdata::clustered, FlatIndex, Hit, HnswIndex, IndexError, IndexSpec,
    VectorIndex,
};

const DIM: usize = 64;

fn spec(metric: Metric, quantization: Quantization) -> IndexSpec {
    IndexSpec {
        dimension: DIM,
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

/// 500 clustered points (keys 0–499), then 1,500 copies of point 0 (keys 500–1999), each
/// copy moved by `noise` in every component; and 20 held-out queries.
fn with_copies(noise: f32) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut data = clustered(520, DIM, 21);
    let queries = data.split_off(500);
    let mut rng = StdRng::seed_from_u64(22);
    let copies: Vec<Vec<f32>> = (0..1_500)
        .map(|_| {
            data[0]
                .iter()
                .map(|x| x + noise * rng.gen_range(-1.0..1.0))
                .collect()
        })
        .collect();
    data.extend(copies);
    (data, queries)
}

fn both(metric: Metric, data: &[Vec<f32>]) -> (FlatIndex, HnswIndex) {
    let mut exact = FlatIndex::new(DIM, metric);
    let mut hnsw = HnswIndex::new(spec(metric, Quantization::F32)).unwrap();
    for (i, v) in data.iter().enumerate() {
        exact.upsert(i as u64, v).unwrap();
        hnsw.upsert(i as u64, v).unwrap();
    }
    (exact, hnsw)
}

/// Recall@10 against exact search; a hit counts when its exact score reaches the tenth true
/// score (the copies tie).
fn recall(metric: Metric, exact: &FlatIndex, hnsw: &HnswIndex, queries: &[Vec<f32>]) -> f32 {
    let mut found = 0;
    for q in queries {
        let tenth = exact.search(q, 10, None, None).unwrap()[9].score;
        let tolerance = 1e-5 * tenth.abs().max(1.0);
        let got = hnsw.search(q, 10, None, None).unwrap();
        found += got
            .iter()
            .filter(|h| score(metric, q, exact.vector(h.key).unwrap()) >= tenth - tolerance)
            .count();
    }
    found as f32 / (10 * queries.len()) as f32
}

fn keys(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.key).collect()
}

#[test]
fn identical_copies_keep_recall_and_every_holder_is_returned() {
    let (data, queries) = with_copies(0.0);
    for metric in [Metric::L2, Metric::Cosine] {
        let (exact, hnsw) = both(metric, &data);
        let r = recall(metric, &exact, &hnsw, &queries);
        println!("{metric:?}: recall@10 with 1,500 identical copies {r}");
        assert!(r >= 0.99, "{metric:?} recall@10 {r}");
        assert_eq!(hnsw.len(), 2_000);
        assert_eq!(
            hnsw.duplicate_stats(),
            DuplicateStats {
                points: 1_500,
                bytes_saved: 1_500 * DIM * 4
            }
        );
        // A stored point's own vector finds it, and every point holding that vector, in key
        // order, before anything else.
        let want: Vec<u64> = std::iter::once(0).chain(500..2_000).collect();
        assert_eq!(
            keys(&hnsw.search(&data[700], 10, None, None).unwrap()),
            want[..10]
        );
        let all = hnsw.search(&data[0], 1_600, Some(1_600), None).unwrap();
        assert_eq!(keys(&all[..1_501]), want);
        assert!(all[1_501..].iter().all(|h| h.score < all[0].score));
        assert_eq!(keys(&hnsw.exact(&data[0], 3).unwrap()), [0, 500, 501]);
        assert_eq!(hnsw.search(&data[7], 1, None, None).unwrap()[0].key, 7);
    }
}

/// Near-copies are distinct vectors: none is deduplicated, and search still finds the true
/// neighbours. For cosine this needs the kernel's cancellation-free path for close pairs
/// (without it, recall here was 0.75).
#[test]
fn near_duplicates_keep_recall() {
    for noise in [1e-4, 1e-3] {
        let (data, queries) = with_copies(noise);
        for metric in [Metric::L2, Metric::Cosine] {
            let (exact, hnsw) = both(metric, &data);
            let r = recall(metric, &exact, &hnsw, &queries);
            println!("{metric:?}: recall@10 with 1,500 near-copies (noise {noise}) {r}");
            assert!(r >= 0.95, "{metric:?} noise {noise}: recall@10 {r}");
            assert_eq!(hnsw.duplicate_stats().points, 0);
            assert_eq!(hnsw.len(), 2_000);
        }
    }
}

#[test]
fn members_leave_move_out_filter_and_survive_save_and_load() {
    let data = clustered(300, DIM, 23);
    let mut hnsw = HnswIndex::new(spec(Metric::L2, Quantization::F32)).unwrap();
    for (i, v) in data.iter().enumerate() {
        hnsw.upsert(i as u64, v).unwrap();
    }
    // Keys 1000–1009 hold point 5's vector, 2000–2002 point 9's.
    for key in 1_000..1_010 {
        hnsw.upsert(key, &data[5]).unwrap();
    }
    for key in 2_000..2_003 {
        hnsw.upsert(key, &data[9]).unwrap();
    }
    assert_eq!((hnsw.len(), hnsw.duplicate_stats().points), (313, 13));
    let holders = |index: &HnswIndex, v: &[f32]| {
        let hits = index.search(v, 20, Some(100), None).unwrap();
        let best = hits[0].score;
        keys(&hits)
            .into_iter()
            .zip(&hits)
            .filter(|(_, h)| h.score == best)
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    // Removing the point whose key the slot has leaves the others searchable.
    assert!(hnsw.remove(5).unwrap());
    assert!(!hnsw.remove(5).unwrap());
    assert_eq!(holders(&hnsw, &data[5]), (1_000..1_010).collect::<Vec<_>>());
    assert_eq!(hnsw.vector(1_003).unwrap(), data[5]);
    assert_eq!(hnsw.vector(5), None);
    assert_eq!(hnsw.len(), 312);
    // A point upserted with a new vector leaves the group; one upserted with its own vector
    // stays.
    hnsw.upsert(1_000, &data[200]).unwrap();
    hnsw.upsert(1_001, &data[5]).unwrap();
    assert_eq!(holders(&hnsw, &data[5]), (1_001..1_010).collect::<Vec<_>>());
    assert_eq!(holders(&hnsw, &data[200]), [200, 1_000]);
    assert_eq!(hnsw.duplicate_stats().points, 12);
    // Filters see every point of a slot, and only the accepted ones come back.
    let odd = |k: u64| k % 2 == 1;
    let hits = hnsw.search(&data[5], 3, None, Some(&odd)).unwrap();
    assert_eq!(keys(&hits), [1_001, 1_003, 1_005]);
    // The slot has key 1001, which this filter refuses; its other points still pass.
    let even = |k: u64| k.is_multiple_of(2);
    let hits = hnsw.search(&data[5], 3, None, Some(&even)).unwrap();
    assert_eq!(keys(&hits), [1_002, 1_004, 1_006]);
    let among = hnsw
        .exact_among(&data[9], 2, [2_001, 2_002, 9, 77])
        .unwrap();
    assert_eq!(keys(&among), [9, 2_001]);
    // Save and load keep the groups.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.usearch");
    hnsw.save(&path).unwrap();
    let mut loaded = HnswIndex::load(spec(Metric::L2, Quantization::F32), &path).unwrap();
    assert_eq!(loaded.len(), hnsw.len());
    assert_eq!(loaded.duplicate_stats(), hnsw.duplicate_stats());
    for v in [&data[5], &data[9], &data[200], &data[42]] {
        assert_eq!(holders(&loaded, v), holders(&hnsw, v));
    }
    // The loaded index still finds slots by hash: a new copy joins point 9's.
    loaded.upsert(3_000, &data[9]).unwrap();
    assert_eq!(holders(&loaded, &data[9]), [9, 2_000, 2_001, 2_002, 3_000]);
    // Emptying a group leaves no trace in the maps.
    for key in [9, 2_000, 2_001, 2_002] {
        assert!(loaded.remove(key).unwrap());
    }
    assert_eq!(holders(&loaded, &data[9]), [3_000]);
    assert_eq!(loaded.duplicate_stats().points, 9);
    // A file without the duplicate map (as older ipvec wrote) is refused, not misread.
    let bytes = std::fs::read(&path).unwrap();
    let tail = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap());
    let old = dir.path().join("old.usearch");
    std::fs::write(&old, &bytes[..bytes.len() - 16 - tail as usize]).unwrap();
    assert!(matches!(
        HnswIndex::load(spec(Metric::L2, Quantization::F32), &old),
        Err(IndexError::Format { .. })
    ));
}

#[test]
fn f16_and_i8_indexes_share_slots_of_equal_stored_vectors() {
    let data = clustered(100, DIM, 24);
    for quantization in [Quantization::F16, Quantization::I8] {
        let mut hnsw = HnswIndex::new(spec(Metric::Cosine, quantization)).unwrap();
        for (i, v) in data.iter().enumerate() {
            hnsw.upsert(i as u64, v).unwrap();
        }
        hnsw.upsert(500, &data[3]).unwrap();
        assert_eq!(hnsw.vector(500), hnsw.vector(3), "{quantization:?}");
        assert_eq!(hnsw.duplicate_stats().points, 1, "{quantization:?}");
    }
    // An i8 index takes codes as they are: the codes of a vector land in its slot.
    let mut hnsw = HnswIndex::new(spec(Metric::Cosine, Quantization::I8)).unwrap();
    hnsw.upsert(3, &data[3]).unwrap();
    hnsw.upsert_i8(4, &i8_codes(&data[3])).unwrap();
    assert_eq!(hnsw.vector_i8(4), Some(i8_codes(&data[3])));
    assert_eq!((hnsw.len(), hnsw.duplicate_stats().points), (2, 1));
}

#[test]
fn scores_stay_finite() {
    use crate::index::{check_scorable, VectorProblem};
    let huge = [3.4e38f32, 3.4e38, 0.0, 0.0];
    for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
        assert!(matches!(
            check_scorable(metric, Quantization::F32, &huge),
            Err(VectorProblem::TooLong { .. })
        ));
        assert!(check_scorable(metric, Quantization::F32, &[9e18, 0.0, 1.0, 0.0]).is_ok());
    }
    assert!(matches!(
        check_scorable(Metric::Cosine, Quantization::F32, &[0.0; 4]),
        Err(VectorProblem::NoDirection {
            quantized: false,
            ..
        })
    ));
    assert!(check_scorable(Metric::L2, Quantization::F32, &[0.0; 4]).is_ok());
    assert!(matches!(
        check_scorable(Metric::Cosine, Quantization::F16, &[1e-9; 4]),
        Err(VectorProblem::NoDirection {
            quantized: true,
            ..
        })
    ));
    assert!(matches!(
        check_scorable(Metric::L2, Quantization::F16, &[7e4, 0.0, 0.0, 0.0]),
        Err(VectorProblem::BeyondF16 { component: 0, .. })
    ));
    // Vectors stored before the check still overflow; their hits never leave the index.
    let mut hnsw = HnswIndex::new(IndexSpec {
        dimension: 4,
        ..spec(Metric::Cosine, Quantization::F32)
    })
    .unwrap();
    hnsw.upsert(1, &huge).unwrap();
    hnsw.upsert(2, &[1.0, 2.0, 0.0, 0.0]).unwrap();
    for hits in [
        hnsw.search(&[1.0, 1.0, 0.0, 0.0], 2, None, None).unwrap(),
        hnsw.exact(&[1.0, 1.0, 0.0, 0.0], 2).unwrap(),
        hnsw.exact_among(&[1.0, 1.0, 0.0, 0.0], 2, [1, 2]).unwrap(),
    ] {
        assert_eq!(keys(&hits), [2]);
    }
    let err = hnsw.search(&huge, 1, None, None).unwrap_err();
    assert!(matches!(
        err,
        IndexError::Query(VectorProblem::TooLong { .. })
    ));
    assert!(
        err.to_string().starts_with("the query vector is too long"),
        "{err}"
    );
    assert!(matches!(
        hnsw.exact(&[0.0; 4], 1),
        Err(IndexError::Query(VectorProblem::NoDirection { .. }))
    ));
}

/// A bulk load from two threads, mended, stores what one-by-one upserts store: identical
/// vectors in one slot (within the load and with points already there), each point's vector
/// exactly as given, and a graph that finds the exact neighbours.
#[test]
fn a_bulk_load_groups_copies_and_matches_upserts() {
    for quantization in [Quantization::F32, Quantization::F16, Quantization::I8] {
        let spec = spec(Metric::Cosine, quantization);
        let mut data = clustered(1_000, DIM, 23);
        // Keys 1000–1009 copy point 3; key 1010 copies point 500, which is upserted first.
        data.extend(std::iter::repeat_n(data[3].clone(), 10));
        data.push(data[500].clone());
        let mut one_by_one = HnswIndex::new(spec).unwrap();
        for (i, v) in data.iter().enumerate() {
            one_by_one.upsert(i as u64, v).unwrap();
        }
        let stored = |v: &[f32]| -> Vec<u8> {
            match quantization {
                Quantization::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Quantization::F16 => v
                    .iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect(),
                Quantization::I8 => i8_codes(v).into_iter().map(|c| c as u8).collect(),
            }
        };
        let mut bulk = HnswIndex::new(spec).unwrap();
        bulk.upsert(500, &data[500]).unwrap();
        let added = std::sync::atomic::AtomicU64::new(0);
        let points = data
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 500)
            .map(|(i, v)| (i as u64, stored(v)))
            .collect();
        bulk.add_stored(points, 2, &|n| {
            added.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        // As a rebuild does after its last chunk: the points the two threads left out of
        // reach are inserted again (once, in a CI run, they cost 56 of these 500 hits).
        bulk.mend().unwrap();
        assert_eq!(
            added.into_inner(),
            data.len() as u64 - 1,
            "{quantization:?}"
        );
        assert_eq!(bulk.len(), one_by_one.len());
        assert_eq!(bulk.duplicate_stats(), one_by_one.duplicate_stats());
        assert_eq!(bulk.duplicate_stats().points, 11);
        for key in [0u64, 3, 1_005, 1_010, 999] {
            assert_eq!(
                bulk.vector(key),
                one_by_one.vector(key),
                "{quantization:?} {key}"
            );
        }
        let mut found = 0;
        for q in &data[..50] {
            let want = bulk.exact(q, 10).unwrap();
            // ef 128: the graph two threads build depends on how their inserts interleave,
            // and at ef 64 interleavings measured 489–500 of 500 (498–500 at ef 128).
            let got = bulk.search(q, 10, Some(128), None).unwrap();
            // Copies tie: a hit counts when it scores as well as the tenth exact neighbour,
            // whichever of the tied keys it names.
            let tenth = want.last().map_or(f32::NEG_INFINITY, |w| w.score);
            found += got.iter().filter(|h| h.score >= tenth - 1e-5).count();
        }
        assert!(found >= 490, "{quantization:?}: recall@10 {found}/500");
        let twice = bulk.add_stored(vec![(7, stored(&data[7]))], 1, &|_| {});
        assert!(twice.is_err(), "a key already in the index");
    }
}
