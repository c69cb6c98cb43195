//! Vector indexes, derived from the shard trees and rebuilt from them when missing.
//!
//! Every index answers top-k queries with scores where higher is better, whatever the metric:
//! cosine similarity, negated squared Euclidean distance, or inner product. Keys are `u64`;
//! the collection maps point ids to keys.
//!
//! # Layout
//! - [`VectorIndex`]: the trait.
//! - [`flat`]: exact search by scanning every vector, the reference the others are measured by.
//! - [`hnsw`]: approximate search with usearch's HNSW graph, optionally walked on one-byte
//!   codes with the candidates scored on the f32 vectors ([`hnsw::codes`]).
//! - [`dedup`]: the bookkeeping that stores identical vectors once in the HNSW index.
//! - [`kernel`]: f32 distance kernels chosen for the CPU at run time.
//! - [`permits`]: the counting semaphore that keeps callers within usearch's thread contexts.

pub mod dedup;
pub mod flat;
pub mod hnsw;
pub mod kernel;
pub mod permits;

use ipvec_protocol::manifest::{HnswParams, Metric, Quantization};

pub use dedup::DuplicateStats;
pub use flat::FlatIndex;
pub use hnsw::{i8_codes, HnswIndex, HnswRuntime};

/// Largest squared length (`‖v‖²`, summed in f64) of a vector or query. Two vectors within it
/// have a squared L2 distance of at most `(‖a‖ + ‖b‖)² ≤ f32::MAX`, and inner products and the
/// products of lengths a cosine divides by stay below it too: every score is finite in f32.
pub const MAX_NORM_SQ: f64 = f32::MAX as f64 / 4.0;

/// Smallest squared length of a vector or query under the cosine metric: shorter vectors have
/// no direction (or lose it to rounding), and their cosine similarity is undefined.
pub const MIN_COSINE_NORM_SQ: f64 = 1e-30;

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The query vector would give scores that are not finite numbers.
    #[error("the query vector {0}")]
    Query(VectorProblem),
    /// A saved index cannot be read back.
    #[error("saved index {path}: {reason}")]
    Format { path: String, reason: String },
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

/// Why a vector with finite components still cannot be scored: what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VectorProblem {
    /// Its squared length is above [`MAX_NORM_SQ`].
    #[error(
        "is too long: its squared length is {norm_sq:e}, above the limit of {MAX_NORM_SQ:e} \
         (f32::MAX / 4) beyond which scores overflow; scale or normalise your vectors"
    )]
    TooLong { norm_sq: f64 },
    /// A component is beyond what f16 storage holds.
    #[error(
        "has component {component} = {value:e}, beyond ±65504, the largest f16 number; scale \
         or normalise your vectors, or store them as f32"
    )]
    BeyondF16 { component: usize, value: f32 },
    /// Under the cosine metric, it is (or is stored as) the zero vector.
    #[error(
        "has no direction: its squared length is {norm_sq:e}{stored}, below the limit of \
         {MIN_COSINE_NORM_SQ:e} under which cosine similarity is undefined; leave it out, \
         or use the l2 or dot metric",
        stored = once_quantized(.quantized)
    )]
    NoDirection { norm_sq: f64, quantized: bool },
}

fn once_quantized(quantized: &bool) -> &'static str {
    if *quantized {
        " once quantized"
    } else {
        ""
    }
}

/// Checks that a vector (with finite components) gives finite scores against any other vector
/// that passes this check, under `metric`, once stored with `quantization`: its squared length
/// is at most [`MAX_NORM_SQ`], it fits f16 storage, and under the cosine metric its squared
/// length, also as stored, is at least [`MIN_COSINE_NORM_SQ`].
pub fn check_scorable(
    metric: Metric,
    quantization: Quantization,
    vector: &[f32],
) -> Result<(), VectorProblem> {
    let norm_sq = squared_length(vector.iter().copied());
    if norm_sq > MAX_NORM_SQ {
        return Err(VectorProblem::TooLong { norm_sq });
    }
    if quantization == Quantization::F16 {
        let beyond = vector
            .iter()
            .position(|v| !half::f16::from_f32(*v).is_finite());
        if let Some(component) = beyond {
            return Err(VectorProblem::BeyondF16 {
                component,
                value: vector[component],
            });
        }
    }
    if metric != Metric::Cosine {
        return Ok(());
    }
    if norm_sq < MIN_COSINE_NORM_SQ {
        return Err(VectorProblem::NoDirection {
            norm_sq,
            quantized: false,
        });
    }
    let stored = match quantization {
        Quantization::F32 => norm_sq,
        Quantization::F16 => {
            squared_length(vector.iter().map(|v| half::f16::from_f32(*v).to_f32()))
        }
        Quantization::I8 => squared_length(i8_codes(vector).iter().map(|c| f32::from(*c) / 127.0)),
    };
    if stored < MIN_COSINE_NORM_SQ {
        return Err(VectorProblem::NoDirection {
            norm_sq: stored,
            quantized: true,
        });
    }
    Ok(())
}

fn squared_length(components: impl Iterator<Item = f32>) -> f64 {
    components.map(|v| f64::from(v) * f64::from(v)).sum()
}

/// Drops hits whose score is not a finite number, warning about each: vectors stored before
/// [`check_scorable`] existed may still overflow, and such a score ranks nowhere sensibly.
pub(crate) fn keep_finite(hits: &mut Vec<Hit>) {
    hits.retain(|h| {
        let finite = h.score.is_finite();
        if !finite {
            tracing::warn!(
                key = h.key,
                score = %h.score,
                "dropping a search hit whose score is not a finite number; re-upsert that point with a smaller vector"
            );
        }
        finite
    });
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
    /// Number of points held (points with identical vectors each count).
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
            let [_, aa, bb] = kernels.dot_norms(a, b);
            if aa == 0.0 || bb == 0.0 {
                0.0
            } else {
                1.0 - kernels.distance(Metric::Cosine, a, b)
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
