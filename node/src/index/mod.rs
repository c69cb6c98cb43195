//! Vector indexes, derived from the shard trees and rebuilt from them when missing.
//!
//! Every index answers top-k queries with scores where higher is better, whatever the metric:
//! cosine similarity, negated squared Euclidean distance, or inner product. Keys are `u64`;
//! the collection maps point ids to keys.
//!
//! # Layout
//! - [`VectorIndex`]: the trait.
//! - [`flat`]: exact search by scanning every vector, the reference the others are measured by.
//! - [`hnsw`]: approximate search with usearch's HNSW graph.
//! - [`kernel`]: f32 distance kernels chosen for the CPU at run time.
//! - [`permits`]: the counting semaphore that keeps callers within usearch's thread contexts.

pub mod flat;
pub mod hnsw;
pub mod kernel;
pub mod permits;

use ipvec_protocol::manifest::{HnswParams, Metric, Quantization};

pub use flat::FlatIndex;
pub use hnsw::{i8_codes, HnswIndex, HnswRuntime};

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A vector or query has the wrong number of components.
    #[error("vector has {actual} dimensions, the collection has {expected}")]
    Dimension { expected: usize, actual: usize },
    /// A vector holds NaN or infinity.
    #[error("vector component {0} is not a finite number")]
    NotFinite(usize),
    /// The HNSW library failed.
    #[error("HNSW index error: {0}")]
    Backend(String),
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The point's key.
    pub key: u64,
    /// Similarity score; higher is better.
    pub score: f32,
}

/// Settings of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpec {
    /// Dimension of every vector.
    pub dimension: usize,
    /// How vectors are compared.
    pub metric: Metric,
    /// How the index stores vectors.
    pub quantization: Quantization,
    /// HNSW parameters.
    pub hnsw: HnswParams,
}

/// A top-k vector index.
pub trait VectorIndex: Send + Sync {
    /// Number of vectors held.
    fn len(&self) -> usize;

    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces the vector under `key`.
    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<(), IndexError>;

    /// Removes `key`; returns whether it was there.
    fn remove(&mut self, key: u64) -> Result<bool, IndexError>;

    /// The `k` best keys for `query`, best first, among those `filter` accepts. `ef` is the
    /// candidate list size for approximate indexes (ignored by exact ones).
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>, IndexError>;

    /// Bytes of memory the index holds.
    fn memory_bytes(&self) -> usize;
}

/// Checks a vector's dimension and that every component is finite.
pub fn check_vector(vector: &[f32], dimension: usize) -> Result<(), IndexError> {
    if vector.len() != dimension {
        return Err(IndexError::Dimension {
            expected: dimension,
            actual: vector.len(),
        });
    }
    match vector.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(IndexError::NotFinite(i)),
        None => Ok(()),
    }
}

/// The `k` best of `hits`, best first (ties by key).
pub fn top_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    let k = k.min(hits.len());
    if k == 0 {
        return Vec::new();
    }
    let by_score = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.key.cmp(&b.key));
    hits.select_nth_unstable_by(k - 1, by_score);
    hits.truncate(k);
    hits.sort_by(by_score);
    hits
}

/// The score of `b` for query `a` under `metric` (higher is better): negated squared
/// Euclidean distance, inner product, or cosine similarity (0 when either vector is zero).
/// Computed with the CPU's fastest [`kernel`].
pub fn score(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    static KERNELS: std::sync::OnceLock<kernel::Kernels> = std::sync::OnceLock::new();
    let kernels = KERNELS.get_or_init(kernel::Kernels::best);
    match metric {
        Metric::L2 => -kernels.l2sq(a, b),
        Metric::Dot => kernels.dot(a, b),
        Metric::Cosine => {
            let [ab, aa, bb] = kernels.dot_norms(a, b);
            if aa == 0.0 || bb == 0.0 {
                0.0
            } else {
                ab / (aa.sqrt() * bb.sqrt())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testdata {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Clustered points (a Gaussian-like mixture around a few centres): structured, unlike
    /// uniform noise, which is pathological for graph indexes.
    pub fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres: Vec<Vec<f32>> = (0..16)
            .map(|_| (0..dim).map(|_| rng.gen_range(-4.0..4.0)).collect())
            .collect();
        (0..n)
            .map(|i| {
                let c = &centres[i % centres.len()];
                c.iter()
                    .map(|x| {
                        x + (rng.gen::<f32>() + rng.gen::<f32>() + rng.gen::<f32>() - 1.5) * 0.8
                    })
                    .collect()
            })
            .collect()
    }
}
