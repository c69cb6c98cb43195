//! Approximate search with usearch's HNSW graph.
//!
//! usearch grows only when told to (`reserve`), rejects a key added twice, keeps a fixed pool
//! of per-thread contexts (a call that finds none free fails), and keeps one
//! `expansion_search` for all queries. This wrapper reserves ahead, removes before re-adding,
//! makes callers beyond the context pool wait for a free context, and lets searches run
//! together while they ask for the `ef` the index is set to: a search that asks for another
//! `ef` waits for the running ones, switches the index to its `ef` and runs alone (later
//! searches at that `ef` run together again). A server whose clients use a handful of `ef`
//! values therefore serialises only at the switches.

use std::{
    path::Path,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use ipvec_protocol::manifest::{Metric, Quantization};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind, VectorType};

use super::{
    check_vector,
    kernel::{self, Isa, Kernels},
    permits::Permits,
    score, top_k, Hit, IndexError, IndexSpec, VectorIndex,
};

/// How an [`HnswIndex`] runs in this process (nothing of it is saved with the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswRuntime {
    /// Calls that may run inside usearch at once (its thread contexts); more callers wait.
    /// Each context costs about one bit per indexed vector plus a few `ef`-sized heaps.
    pub contexts: usize,
    /// Whether f32 indexes compute distances with ipvec's [`kernel`](super::kernel)s (when the
    /// CPU has AVX2 and FMA, or AVX-512) instead of usearch's own.
    pub f32_kernel: bool,
}

impl Default for HnswRuntime {
    /// One context per available core, and at least four.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            contexts: cores.max(4),
            f32_kernel: true,
        }
    }
}

/// An HNSW index over f32 queries, storing vectors in the spec's quantization.
pub struct HnswIndex {
    spec: IndexSpec,
    index: Index,
    /// One permit per usearch thread context.
    contexts: Permits,
    /// The `expansion_search` the index is set to: searches hold it shared, a change of `ef`
    /// holds it exclusively.
    ef: RwLock<usize>,
    /// The instruction set of ipvec's kernel, when it replaces usearch's.
    kernel: Option<Isa>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("spec", &self.spec)
            .field("len", &self.index.size())
            .field("contexts", &self.contexts.total())
            .field("kernel", &self.kernel)
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

fn options(spec: &IndexSpec) -> IndexOptions {
    IndexOptions {
        dimensions: spec.dimension,
        metric: match spec.metric {
            Metric::Cosine => MetricKind::Cos,
            Metric::L2 => MetricKind::L2sq,
            Metric::Dot => MetricKind::IP,
        },
        quantization: match spec.quantization {
            Quantization::F32 => ScalarKind::F32,
            Quantization::F16 => ScalarKind::F16,
            Quantization::I8 => ScalarKind::I8,
        },
        connectivity: spec.hnsw.m as usize,
        expansion_add: spec.hnsw.ef_construction as usize,
        expansion_search: spec.hnsw.ef_search as usize,
        multi: false,
    }
}

impl HnswIndex {
    /// An empty index with the default [`HnswRuntime`].
    pub fn new(spec: IndexSpec) -> Result<Self, IndexError> {
        Self::with_runtime(spec, HnswRuntime::default())
    }

    /// An empty index.
    pub fn with_runtime(spec: IndexSpec, runtime: HnswRuntime) -> Result<Self, IndexError> {
        let mut this = Self::without_kernel(spec, runtime)?;
        this.install_kernel(runtime)?;
        Ok(this)
    }

    fn without_kernel(spec: IndexSpec, runtime: HnswRuntime) -> Result<Self, IndexError> {
        let index = Index::new(&options(&spec)).map_err(backend)?;
        let this = Self {
            spec,
            index,
            contexts: Permits::new(runtime.contexts),
            ef: RwLock::new(spec.hnsw.ef_search as usize),
            kernel: None,
        };
        this.grow_to(0)?;
        Ok(this)
    }

    /// Replaces usearch's distance function with ipvec's kernel when `runtime` asks for it and
    /// the index and CPU allow it. usearch's `Index` keeps one replacement: call this once.
    fn install_kernel(&mut self, runtime: HnswRuntime) -> Result<(), IndexError> {
        let kernels = Kernels::best();
        if !runtime.f32_kernel
            || self.spec.quantization != Quantization::F32
            || kernels.isa() == Isa::Portable
        {
            return Ok(());
        }
        let metric = kernel::usearch_metric(kernels, self.spec.metric, self.spec.dimension);
        <f32 as VectorType>::change_metric(&mut self.index, metric).map_err(backend)?;
        self.kernel = Some(kernels.isa());
        Ok(())
    }

    /// The instruction set of ipvec's distance kernel, `None` when usearch's own is in use.
    pub fn kernel(&self) -> Option<Isa> {
        self.kernel
    }

    /// Reserves room for `n` vectors in total (avoids growing step by step during a bulk load).
    pub fn reserve(&mut self, n: usize) -> Result<(), IndexError> {
        if n > self.index.capacity() {
            self.grow_to(n)?;
        }
        Ok(())
    }

    /// Sets the capacity to at least `n` and the thread contexts to one per permit. usearch
    /// requires that nothing else runs meanwhile: callers hold `&mut self`, or own the index
    /// alone.
    fn grow_to(&self, n: usize) -> Result<(), IndexError> {
        self.index
            .reserve_capacity_and_threads(n.max(self.index.capacity()), self.contexts.total())
            .map_err(backend)
    }

    /// Writes the index to a file.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        self.index.save(&path.to_string_lossy()).map_err(backend)
    }

    /// Reads an index written by [`HnswIndex::save`] with the same spec.
    pub fn load(spec: IndexSpec, path: &Path) -> Result<Self, IndexError> {
        Self::load_with_runtime(spec, HnswRuntime::default(), path)
    }

    /// [`HnswIndex::load`] with a runtime.
    pub fn load_with_runtime(
        spec: IndexSpec,
        runtime: HnswRuntime,
        path: &Path,
    ) -> Result<Self, IndexError> {
        // Loading puts back usearch's distance function: the kernel goes in afterwards.
        let mut this = Self::without_kernel(spec, runtime)?;
        this.index.load(&path.to_string_lossy()).map_err(backend)?;
        if this.index.dimensions() != spec.dimension {
            return Err(IndexError::Dimension {
                expected: spec.dimension,
                actual: this.index.dimensions(),
            });
        }
        this.install_kernel(runtime)?;
        // Loading restores the saved expansion values; put back the spec's. The thread
        // contexts survive a load, but set them again rather than rely on it.
        this.index
            .change_expansion_search(spec.hnsw.ef_search as usize);
        this.grow_to(this.index.size())?;
        Ok(this)
    }

    /// The stored vector of `key` (after quantization), as f32.
    pub fn vector(&self, key: u64) -> Option<Vec<f32>> {
        let mut buffer = vec![0f32; self.spec.dimension];
        match self.index.get(key, &mut buffer) {
            Ok(n) if n > 0 => Some(buffer),
            _ => None,
        }
    }

    /// The stored i8 codes of `key` in an i8 index (other indexes give their vector as i8
    /// codes of its unit vector, truncated).
    pub fn vector_i8(&self, key: u64) -> Option<Vec<i8>> {
        let mut buffer = vec![0i8; self.spec.dimension];
        match self.index.get(key, &mut buffer) {
            Ok(n) if n > 0 => Some(buffer),
            _ => None,
        }
    }

    /// The exact top `k` by scanning every stored vector (the brute-force reference).
    pub fn exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        check_vector(query, self.spec.dimension)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        // usearch reads `expansion_search` on this path too.
        let _ef = self.ef_shared();
        let _context = self.contexts.acquire();
        let matches = match self.spec.quantization {
            Quantization::I8 => self.index.exact_search(&i8_codes(query), k),
            _ => self.index.exact_search(query, k),
        }
        .map_err(backend)?;
        Ok(self.hits(&matches))
    }

    /// The `k` best of `keys` for `query`, scored exactly against the stored vectors (keys not
    /// in the index are skipped).
    pub fn exact_among(
        &self,
        query: &[f32],
        k: usize,
        keys: impl IntoIterator<Item = u64>,
    ) -> Result<Vec<Hit>, IndexError> {
        check_vector(query, self.spec.dimension)?;
        let mut stored = vec![0f32; self.spec.dimension];
        let mut hits = Vec::new();
        for key in keys {
            if matches!(self.index.get(key, &mut stored), Ok(n) if n > 0) {
                hits.push(Hit {
                    key,
                    score: score(self.spec.metric, query, &stored),
                });
            }
        }
        Ok(top_k(hits, k))
    }

    /// usearch's matches as hits with scores (higher is better).
    fn hits(&self, matches: &usearch::ffi::Matches) -> Vec<Hit> {
        let score = |d: f32| match self.spec.metric {
            Metric::Cosine | Metric::Dot => 1.0 - d,
            Metric::L2 => -d,
        };
        matches
            .keys
            .iter()
            .zip(&matches.distances)
            .map(|(key, d)| Hit {
                key: *key,
                score: score(*d),
            })
            .collect()
    }

    // The guarded value is a plain integer, consistent after any panic: poisoning is ignored.
    fn ef_shared(&self) -> RwLockReadGuard<'_, usize> {
        self.ef
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ef_exclusive(&self) -> RwLockWriteGuard<'_, usize> {
        self.ef
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One usearch search at `ef`, holding a thread context.
    fn search_at_ef(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>, IndexError> {
        let _context = self.contexts.acquire();
        let matches = match self.spec.quantization {
            Quantization::I8 => self.usearch_search(&i8_codes(query), k, filter),
            _ => self.usearch_search(query, k, filter),
        }?;
        Ok(self.hits(&matches))
    }

    fn usearch_search<T: VectorType>(
        &self,
        query: &[T],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<usearch::ffi::Matches, IndexError> {
        match filter {
            Some(f) => self.index.filtered_search(query, k, f),
            None => self.index.search(query, k),
        }
        .map_err(backend)
    }

    /// Adds or replaces the stored i8 codes of `key` (`i8_codes` of the vector), which an i8
    /// index then holds exactly as given; other indexes take them as the vector `codes / 127`.
    pub fn upsert_i8(&mut self, key: u64, codes: &[i8]) -> Result<(), IndexError> {
        if codes.len() != self.spec.dimension {
            return Err(IndexError::Dimension {
                expected: self.spec.dimension,
                actual: codes.len(),
            });
        }
        match self.spec.quantization {
            Quantization::I8 => self.replace(key, codes),
            _ => {
                let vector: Vec<f32> = codes.iter().map(|c| f32::from(*c) / 127.0).collect();
                self.upsert(key, &vector)
            }
        }
    }

    /// Removes `key` if present, makes room, adds `vector`.
    fn replace<T: VectorType>(&mut self, key: u64, vector: &[T]) -> Result<(), IndexError> {
        if self.index.contains(key) {
            self.index.remove(key).map_err(backend)?;
        }
        if self.index.size() + 1 > self.index.capacity() {
            self.grow_to((self.index.capacity() * 2).max(1024))?;
        }
        self.index.add(key, vector).map_err(backend)
    }
}

/// The i8 codes of a vector: its unit vector scaled by 127 and rounded (usearch's own cast
/// truncates instead). The zero vector has zero codes.
pub fn i8_codes(vector: &[f32]) -> Vec<i8> {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    let scale = if norm > 0.0 { 127.0 / norm } else { 0.0 };
    vector
        .iter()
        .map(|v| (v * scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

impl VectorIndex for HnswIndex {
    fn len(&self) -> usize {
        self.index.size()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<(), IndexError> {
        check_vector(vector, self.spec.dimension)?;
        match self.spec.quantization {
            Quantization::I8 => self.replace(key, &i8_codes(vector)),
            _ => self.replace(key, vector),
        }
    }

    fn remove(&mut self, key: u64) -> Result<bool, IndexError> {
        Ok(self.index.remove(key).map_err(backend)? > 0)
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>, IndexError> {
        check_vector(query, self.spec.dimension)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let wanted = ef.unwrap_or(self.spec.hnsw.ef_search as usize).max(k);
        let current = self.ef_shared();
        if *current == wanted {
            return self.search_at_ef(query, k, filter);
        }
        drop(current);
        let mut current = self.ef_exclusive();
        if *current != wanted {
            self.index.change_expansion_search(wanted);
            *current = wanted;
        }
        self.search_at_ef(query, k, filter)
    }

    fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
    }
}

#[cfg(test)]
mod tests {
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
            },
        }
    }

    fn recall(metric: Metric, quantization: Quantization) -> f32 {
        // Queries come from the same distribution as the data, held out of the index.
        let mut data = clustered(3_100, 24, 1);
        let queries = data.split_off(3_000);
        let mut exact = FlatIndex::new(24, metric);
        let mut hnsw = HnswIndex::new(spec(metric, quantization)).unwrap();
        for (i, v) in data.iter().enumerate() {
            exact.upsert(i as u64, v).unwrap();
            hnsw.upsert(i as u64, v).unwrap();
        }
        // A hit counts when its exact score reaches the tenth true score (ties are common in
        // tight clusters, and any of the tied points is a correct answer).
        let mut found = 0;
        for q in &queries {
            let tenth = exact.search(q, 10, None, None).unwrap()[9].score;
            let got = hnsw.search(q, 10, Some(64), None).unwrap();
            let tolerance = 1e-5 * tenth.abs().max(1.0);
            found += got
                .iter()
                .filter(|h| {
                    crate::index::score(metric, q, exact.vector(h.key).unwrap())
                        >= tenth - tolerance
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
        let mut hnsw =
            HnswIndex::with_runtime(spec(Metric::L2, Quantization::F32), runtime).unwrap();
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
}
