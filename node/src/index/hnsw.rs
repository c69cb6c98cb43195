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
//!
//! Identical vectors are stored once (see [`dedup`](super::dedup)): usearch's keys are the
//! slots of distinct vectors, and searches expand each slot into the points that share it.
//!
//! A collection created with `hnsw.codes` has its graph over one-byte codes of the vectors and
//! the f32 vectors beside it ([`codes`]): walks read a quarter of the bytes, and the answers'
//! scores are exact.

use std::{
    path::Path,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use ipvec_protocol::manifest::{Metric, Quantization};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind, VectorType};

use super::{
    check_scorable, check_vector,
    dedup::{self, DuplicateStats, Groups, Left},
    keep_finite,
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

mod bulk;
pub mod codes;
mod codes_walk;
mod file;
mod prepared;
mod walk;

pub use prepared::PREPARED_KEYS;

/// What placing a vector under a key still needs, after [`HnswIndex::settle`].
enum Settled {
    /// The key has the vector (its own slot or a shared one).
    Done,
    /// A slot of its own; `remember` the vector's `hash` for later duplicates.
    NeedsSlot { hash: u64, remember: bool },
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
    /// The points that share a slot, and the slot of each stored vector by hash.
    groups: Groups,
    /// Slots inserted from several threads at once and not yet checked to be reachable
    /// ([`HnswIndex::mend`]).
    unmended: Vec<u64>,
    /// With traversal codes: the graph holds codes, and these the f32 vectors.
    codes: Option<codes::Codes>,
    /// The base layer's links as the filtered walk reads them, and the graph change it was
    /// read at (see [`walk`]).
    adjacency: walk::AdjacencyCache,
    /// The graph on codes laid out for unfiltered searches of ipvec's own walk (see
    /// [`codes_walk`]), and whether searches take that walk.
    code_graph: codes_walk::CodeGraphCache,
    own_walk: bool,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("spec", &self.spec)
            .field("len", &self.len())
            .field("slots", &self.index.size())
            .field("contexts", &self.contexts.total())
            .field("kernel", &self.kernel)
            .field("codes", &self.codes.as_ref().map(|c| c.fitted()))
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

/// Whether an index of `spec` walks on codes (see [`codes`]): when its parameters ask for it,
/// for f32 vectors under the L2 or cosine metric (the codes of unit vectors do not keep inner
/// products in order).
fn takes_codes(spec: &IndexSpec) -> bool {
    spec.hnsw.codes && spec.quantization == Quantization::F32 && spec.metric != Metric::Dot
}

/// usearch's options for an index of `spec`, over codes when `codes`.
fn options(spec: &IndexSpec, codes: bool) -> IndexOptions {
    IndexOptions {
        dimensions: spec.dimension,
        metric: match spec.metric {
            Metric::Cosine => MetricKind::Cos,
            Metric::L2 => MetricKind::L2sq,
            Metric::Dot => MetricKind::IP,
        },
        quantization: match spec.quantization {
            Quantization::F32 if codes && spec.metric == Metric::L2 => ScalarKind::U8,
            Quantization::F32 if codes => ScalarKind::I8,
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
        let mut this = Self::without_kernel(spec, runtime, takes_codes(&spec))?;
        this.install_kernel(runtime)?;
        Ok(this)
    }

    fn without_kernel(
        spec: IndexSpec,
        runtime: HnswRuntime,
        codes: bool,
    ) -> Result<Self, IndexError> {
        let index = Index::new(&options(&spec, codes)).map_err(backend)?;
        let this = Self {
            spec,
            index,
            contexts: Permits::new(runtime.contexts),
            ef: RwLock::new(spec.hnsw.ef_search as usize),
            kernel: None,
            groups: Groups::default(),
            unmended: Vec::new(),
            codes: codes.then(|| codes::Codes::new(spec.dimension, spec.metric == Metric::Cosine)),
            adjacency: walk::AdjacencyCache::default(),
            code_graph: codes_walk::CodeGraphCache::default(),
            own_walk: true,
        };
        this.grow_to(0)?;
        Ok(this)
    }

    /// Replaces usearch's distance function with ipvec's kernel when `runtime` asks for it and
    /// the index and CPU allow it. usearch's `Index` keeps one replacement: call this once.
    fn install_kernel(&mut self, runtime: HnswRuntime) -> Result<(), IndexError> {
        if self.codes.is_some() {
            let dimension = self.spec.dimension;
            return match self.spec.metric {
                Metric::L2 => {
                    let metric = kernel::codes::usearch_u8_l2(dimension);
                    <u8 as VectorType>::change_metric(&mut self.index, metric)
                }
                _ => {
                    let metric = kernel::codes::usearch_i8_unit_cosine(dimension);
                    <i8 as VectorType>::change_metric(&mut self.index, metric)
                }
            }
            .map_err(backend);
        }
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

    /// Whether the graph is walked on one-byte codes (see [`codes`]).
    pub fn walks_codes(&self) -> bool {
        self.codes.is_some()
    }

    /// Whether unfiltered searches on codes may take ipvec's own walk of the graph once it
    /// has served a while unchanged (see [`codes_walk`]; on by default). Off, every search
    /// takes usearch's walk; the engine bench compares the two.
    pub fn set_own_walk(&mut self, on: bool) {
        self.own_walk = on;
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

    /// The usearch key that holds the vector of `key` (`key` itself unless it shares a slot).
    fn slot(&self, key: u64) -> u64 {
        self.groups.slot_of(key).unwrap_or(key)
    }

    /// Whether `key` is a point of the index.
    pub fn contains(&self, key: u64) -> bool {
        self.groups.slot_of(key).is_some() || self.index.contains(key)
    }

    /// Points that share another point's stored vector, and the bytes they do not store.
    pub fn duplicate_stats(&self) -> DuplicateStats {
        let points = self.groups.duplicates();
        DuplicateStats {
            points,
            bytes_saved: points
                .saturating_mul(self.spec.dimension * self.spec.quantization.bytes_per_component()),
        }
    }

    /// The stored vector of `key` (after quantization), as f32.
    pub fn vector(&self, key: u64) -> Option<Vec<f32>> {
        let mut buffer = vec![0f32; self.spec.dimension];
        self.read_slot(self.slot(key), &mut buffer)
            .then_some(buffer)
    }

    /// Reads the vector in usearch's `slot` as f32 into `buffer` (of the index's dimension):
    /// from usearch, or the f32 vectors beside the codes. Whether the slot holds one.
    fn read_slot(&self, slot: u64, buffer: &mut [f32]) -> bool {
        match &self.codes {
            Some(codes) => match codes.rows().get(slot) {
                Some(row) => {
                    buffer.copy_from_slice(row);
                    true
                }
                None => false,
            },
            None => matches!(self.index.get(slot, buffer), Ok(n) if n > 0),
        }
    }

    /// The stored i8 codes of `key` in an i8 index (other indexes give their vector as i8
    /// codes of its unit vector: truncated from usearch, rounded beside codes).
    pub fn vector_i8(&self, key: u64) -> Option<Vec<i8>> {
        if self.codes.is_some() {
            return self.vector(key).map(|v| i8_codes(&v));
        }
        let mut buffer = vec![0i8; self.spec.dimension];
        match self.index.get(self.slot(key), &mut buffer) {
            Ok(n) if n > 0 => Some(buffer),
            _ => None,
        }
    }

    /// The exact top `k` by scanning every stored vector (the brute-force reference).
    pub fn exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        self.check_query(query)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        if let Some(codes) = &self.codes {
            let rows = codes.rows();
            let slots = rows
                .iter()
                .map(|(slot, row)| Hit {
                    key: slot,
                    score: score(self.spec.metric, query, row),
                })
                .collect();
            return Ok(self.expand(top_k(slots, k), k, None));
        }
        // usearch reads `expansion_search` on this path too.
        let _ef = self.ef_shared();
        let _context = self.contexts.acquire();
        let matches = match self.spec.quantization {
            Quantization::I8 => self.index.exact_search(&i8_codes(query), k),
            _ => self.index.exact_search(query, k),
        }
        .map_err(backend)?;
        Ok(self.expand(self.hits(&matches), k, None))
    }

    /// The `k` best of `keys` for `query`, scored exactly against the stored vectors (keys not
    /// in the index are skipped).
    pub fn exact_among(
        &self,
        query: &[f32],
        k: usize,
        keys: impl IntoIterator<Item = u64>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check_query(query)?;
        let mut stored = vec![0f32; self.spec.dimension];
        let mut hits = Vec::new();
        for key in keys {
            if self.read_slot(self.slot(key), &mut stored) {
                hits.push(Hit {
                    key,
                    score: score(self.spec.metric, query, &stored),
                });
            }
        }
        keep_finite(&mut hits);
        Ok(top_k(hits, k))
    }

    /// Checks a query's dimension and that its scores are finite numbers.
    fn check_query(&self, query: &[f32]) -> Result<(), IndexError> {
        check_vector(query, self.spec.dimension)?;
        check_scorable(self.spec.metric, self.spec.quantization, query).map_err(IndexError::Query)
    }

    /// Hits on slots as hits on the points that share them and `filter` accepts: the `k` best
    /// with finite scores, ties in key order. Each slot holds at least one accepted point, so
    /// the best `k` slots hold the best `k` points.
    fn expand(
        &self,
        slots: Vec<Hit>,
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<Hit> {
        let mut hits = Vec::with_capacity(slots.len());
        for slot in slots {
            hits.extend(
                self.groups
                    .passing(slot.key, k, filter)
                    .into_iter()
                    .map(|key| Hit {
                        key,
                        score: slot.score,
                    }),
            );
        }
        keep_finite(&mut hits);
        top_k(hits, k)
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

    /// One usearch search at `ef`, holding a thread context. A walk on codes keeps the `ef`
    /// best candidates and scores them on the f32 vectors.
    fn search_at_ef(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>, IndexError> {
        let _context = self.contexts.acquire();
        if let Some(codes) = &self.codes {
            let Some(coder) = codes.fitted() else {
                return Ok(Vec::new());
            };
            let coded = coder.encode(query);
            let graph = match filter.is_none() && self.own_walk {
                true => self.code_graph.get(self, self.adjacency.changes()),
                false => None,
            };
            let candidates = match graph {
                Some(graph) => graph
                    .search(&coded, ef.max(k))
                    .into_iter()
                    .map(|(slot, _)| slot)
                    .collect(),
                None => {
                    match coder {
                        codes::Coder::Unit => {
                            self.usearch_search(&as_i8(&coded), ef.max(k), filter)
                        }
                        codes::Coder::Affine { .. } => {
                            self.usearch_search(&coded, ef.max(k), filter)
                        }
                    }?
                    .keys
                }
            };
            let rows = codes.rows();
            let slots = candidates
                .iter()
                .filter_map(|slot| {
                    rows.get(*slot).map(|row| Hit {
                        key: *slot,
                        score: score(self.spec.metric, query, row),
                    })
                })
                .collect();
            drop(rows);
            return Ok(self.expand(slots, k, filter));
        }
        let matches = match self.spec.quantization {
            Quantization::I8 => self.usearch_search(&i8_codes(query), k, filter),
            _ => self.usearch_search(query, k, filter),
        }?;
        Ok(self.expand(self.hits(&matches), k, filter))
    }

    /// Whether `filter` lets a slot through: a shared slot passes when one of its points does.
    fn slot_passes(&self, filter: &(dyn Fn(u64) -> bool + Sync), slot: u64) -> bool {
        match self.groups.members(slot) {
            Some(members) => members.iter().any(|key| filter(*key)),
            None => filter(slot),
        }
    }

    fn usearch_search<T: VectorType>(
        &self,
        query: &[T],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<usearch::ffi::Matches, IndexError> {
        match filter {
            Some(f) => self
                .index
                .filtered_search(query, k, |slot| self.slot_passes(f, slot)),
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
            Quantization::I8 => self.place(key, codes.iter().map(|c| *c as u8).collect()),
            _ => {
                let vector: Vec<f32> = codes.iter().map(|c| f32::from(*c) / 127.0).collect();
                self.upsert(key, &vector)
            }
        }
    }

    /// The bytes of a vector as the index stores it: f32 or f16 bits, or i8 codes.
    fn stored_form(&self, vector: &[f32]) -> Vec<u8> {
        match self.spec.quantization {
            Quantization::F32 => vector.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Quantization::F16 => vector
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Quantization::I8 => i8_codes(vector).into_iter().map(|c| c as u8).collect(),
        }
    }

    /// The stored form of the vector in usearch's `slot`, if there is one.
    fn stored_at(&self, slot: u64) -> Option<Vec<u8>> {
        match self.spec.quantization {
            Quantization::I8 => {
                let mut codes = vec![0i8; self.spec.dimension];
                matches!(self.index.get(slot, &mut codes), Ok(n) if n > 0)
                    .then(|| codes.into_iter().map(|c| c as u8).collect())
            }
            _ => {
                let mut vector = vec![0f32; self.spec.dimension];
                self.read_slot(slot, &mut vector)
                    .then(|| self.stored_form(&vector))
            }
        }
    }

    /// Gives `key` the vector whose stored form is `stored`: in the slot that already holds
    /// that vector, or in a new slot.
    fn place(&mut self, key: u64, stored: Vec<u8>) -> Result<(), IndexError> {
        let Settled::NeedsSlot { hash, remember } = self.settle(key, &stored)? else {
            return Ok(());
        };
        if self.index.size() + 1 > self.index.capacity() {
            self.grow_to((self.index.capacity() * 2).max(1024))?;
        }
        self.add_one(key, &stored)?;
        if remember {
            self.groups.remember(hash, key);
        }
        Ok(())
    }

    /// Readies `key` for the vector whose stored form is `stored`: nothing to do when it
    /// holds it already, joins the slot that holds that vector when there is one, else takes
    /// `key`'s old vector out and says a slot is needed (and whether to remember its hash).
    fn settle(&mut self, key: u64, stored: &[u8]) -> Result<Settled, IndexError> {
        if self.contains(key) {
            if self.stored_at(self.slot(key)).as_deref() == Some(stored) {
                return Ok(Settled::Done);
            }
            self.detach(key)?;
        }
        let hash = dedup::hash(stored);
        let found = self
            .groups
            .find(hash)
            .map(|slot| (slot, self.stored_at(slot)));
        let remember = match found {
            Some((slot, Some(held))) if held == stored => {
                self.groups.join(slot, key);
                return Ok(Settled::Done);
            }
            // Another vector with the same hash keeps its place in the map.
            Some((_, Some(_))) => false,
            _ => true,
        };
        Ok(Settled::NeedsSlot { hash, remember })
    }

    /// Takes `key` out of the index: out of the slot it shares, which moves to another of its
    /// points if it had `key`'s key, or with its own slot. Returns whether it was there.
    fn detach(&mut self, key: u64) -> Result<bool, IndexError> {
        self.adjacency.changed();
        let left = self.groups.leave(key);
        // The slot under `key`, if any, is still there to read.
        let hash = match left {
            Left::Stays => None,
            _ => self.stored_at(key).map(|stored| dedup::hash(&stored)),
        };
        match left {
            Left::Stays => Ok(true),
            Left::Moved(to) => {
                self.index.rename(key, to).map_err(backend)?;
                if let Some(codes) = &self.codes {
                    codes.rows_mut().rename(key, to);
                }
                if let Some(hash) = hash {
                    self.groups.rekey(hash, key, to);
                }
                Ok(true)
            }
            Left::Alone => {
                let removed = self.index.remove(key).map_err(backend)? > 0;
                if let Some(codes) = &self.codes {
                    codes.rows_mut().remove(key);
                }
                if let Some(hash) = hash {
                    self.groups.forget(hash, key);
                }
                Ok(removed)
            }
        }
    }
}

fn format_error(path: &Path, reason: String) -> IndexError {
    IndexError::Format {
        path: path.display().to_string(),
        reason,
    }
}

/// Code bytes as the i8 codes they hold.
fn as_i8(codes: &[u8]) -> Vec<i8> {
    codes.iter().map(|c| *c as i8).collect()
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
    /// Points held, the ones sharing a slot included.
    fn len(&self) -> usize {
        self.index.size() + self.groups.duplicates()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<(), IndexError> {
        check_vector(vector, self.spec.dimension)?;
        self.place(key, self.stored_form(vector))
    }

    fn remove(&mut self, key: u64) -> Result<bool, IndexError> {
        self.detach(key)
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check_query(query)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let wanted = ef.unwrap_or(self.spec.hnsw.ef_search as usize).max(k);
        let current = self.ef_shared();
        if *current == wanted {
            return self.search_at_ef(query, k, wanted, filter);
        }
        drop(current);
        let mut current = self.ef_exclusive();
        if *current != wanted {
            self.index.change_expansion_search(wanted);
            *current = wanted;
        }
        self.search_at_ef(query, k, wanted, filter)
    }

    fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
            + self.groups.memory_bytes()
            + self.codes.as_ref().map_or(0, |codes| codes.memory_bytes())
            + self.adjacency.bytes()
            + self.code_graph.bytes()
    }
}

#[cfg(test)]
#[path = "hnsw_tests.rs"]
mod tests;
