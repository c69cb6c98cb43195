//! Writes that insert their vectors into the graph from several threads
//! ([`Collection::set_write_threads`]) leave every point reachable, in process and through the
//! shared path the daemon takes.

use tokio::sync::RwLock;

use super::{points, spec};
use crate::{
    collection::{shared, Collection, SearchOptions},
    store::IrohBlockStore,
};

/// Small, dense, regular data: where usearch's concurrent inserts most often leave points
/// that no walk reaches (see the index's bulk-load test).
fn vector(i: u64) -> Vec<f32> {
    vec![
        (i % 7) as f32,
        (i % 11) as f32 * 0.5,
        (i % 13) as f32 - 6.0,
        (i as f32).sqrt(),
    ]
}

/// A search whose candidate list holds the whole collection returns every point: none is
/// cut off from the graph. Without the check of each slice's inserts (`cut_off`), this test
/// failed in the first few trials on two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_several_threads_leave_no_point_unreachable() {
    for threads in [2, 4] {
        for trial in 0..12u64 {
            let dir = tempfile::tempdir().unwrap();
            let store = IrohBlockStore::open(&dir.path().join("blocks"))
                .await
                .unwrap();
            let mut spec = spec("c", 1 + trial as u32 % 2);
            spec.dimension = 4;
            spec.metric = ipvec_protocol::manifest::Metric::L2;
            let mut c = Collection::create(store, &dir.path().join("c"), &spec)
                .await
                .unwrap();
            c.set_write_threads(threads);
            let n = 200 + trial;
            let data: Vec<Vec<f32>> = (0..n).map(vector).collect();
            // In batches as clients send them, the first into an empty graph; in process on
            // even trials, on odd ones as the daemon writes (inserts beside searches).
            let shared = RwLock::new(c);
            for start in (0..n).step_by(70) {
                let end = (start + 70).min(n);
                let batch = points(&data[start as usize..end as usize], start);
                match trial % 2 {
                    0 => {
                        shared.write().await.upsert(batch).await.unwrap();
                    }
                    _ => {
                        shared::upsert(&shared, batch).await.unwrap();
                    }
                }
            }
            let c = shared.read().await;
            assert_eq!(c.points(), n);
            let all = SearchOptions {
                k: n as usize,
                ef: Some(10_000),
                exact: false,
            };
            for probe in [0, n / 2, n - 1] {
                let hits = c.search(&data[probe as usize], all, None).await.unwrap();
                assert_eq!(
                    hits.len(),
                    n as usize,
                    "{threads} threads, trial {trial}: probe {probe}"
                );
            }
        }
    }
}
