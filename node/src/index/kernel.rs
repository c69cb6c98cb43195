//! f32 distance kernels, chosen at run time for the CPU: AVX-512F, AVX2 with FMA, or portable.
//!
//! usearch's own f32 kernels (NumKong's) widen to f64 and accumulate in one register, a long
//! chain of dependent additions; these keep f32 and four independent vector accumulators (eight
//! scalar ones in the portable kernel). [`Kernels`] hands out only the kernels the running CPU
//! supports, which is what makes calling them sound.

// The SIMD kernels call `std::arch` intrinsics, which are `unsafe`; nothing else here is.
#![allow(unsafe_code)]

use ipvec_protocol::manifest::Metric;

pub mod codes;

/// The instruction sets a kernel is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 with AVX-512F: 16 lanes.
    Avx512,
    /// x86-64 with AVX2 and FMA: 8 lanes.
    Avx2Fma,
    /// Any CPU.
    Portable,
}

impl Isa {
    /// Whether the running CPU has it.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// Sums over the common length of two slices.
type Pair = unsafe fn(&[f32], &[f32]) -> f32;
/// Dot product and both squared norms.
type Triple = unsafe fn(&[f32], &[f32]) -> [f32; 3];

/// The kernels of one instruction set, which the running CPU has.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    isa: Isa,
    l2sq: Pair,
    dot: Pair,
    dot_norms: Triple,
}

impl Kernels {
    /// The fastest kernels for the running CPU.
    pub fn best() -> Self {
        [Isa::Avx512, Isa::Avx2Fma]
            .into_iter()
            .find_map(Self::for_isa)
            .unwrap_or_else(Self::portable)
    }

    /// The portable kernels.
    pub fn portable() -> Self {
        Self {
            isa: Isa::Portable,
            l2sq: portable::l2sq,
            dot: portable::dot,
            dot_norms: portable::dot_norms,
        }
    }

    /// The kernels for `isa`, if the running CPU has it.
    pub fn for_isa(isa: Isa) -> Option<Self> {
        if !isa.available() {
            return None;
        }
        match isa {
            Isa::Portable => Some(Self::portable()),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(Self {
                isa,
                l2sq: x86::l2sq_avx512,
                dot: x86::dot_avx512,
                dot_norms: x86::dot_norms_avx512,
            }),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => Some(Self {
                isa,
                l2sq: x86::l2sq_avx2,
                dot: x86::dot_avx2,
                dot_norms: x86::dot_norms_avx2,
            }),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The instruction set.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Squared Euclidean distance over the common length of `a` and `b`.
    pub fn l2sq(&self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `Kernels` holds only kernels of an instruction set the CPU has (checked when
        // built), and the kernels read no further than the shorter slice.
        unsafe { (self.l2sq)(a, b) }
    }

    /// Inner product over the common length of `a` and `b`.
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as in `l2sq`.
        unsafe { (self.dot)(a, b) }
    }

    /// The inner product and the squared norms of `a` and `b`, in one pass.
    pub fn dot_norms(&self, a: &[f32], b: &[f32]) -> [f32; 3] {
        // SAFETY: as in `l2sq`.
        unsafe { (self.dot_norms)(a, b) }
    }

    /// usearch's distance for `metric` (lower is closer): squared Euclidean, `1 − a·b`, or
    /// `1 − cos(a, b)` (0 when both are zero, 1 when one is).
    ///
    /// `1 − ab/√(aa·bb)` cancels to exactly 0 in f32 for vectors that differ by less than
    /// about one part in 10⁴, and an HNSW graph over many such near-copies at distance 0
    /// strands its searches in them. Below [`NEAR_COSINE`] the distance is computed again
    /// as `‖a/|a| − b/|b|‖² / 2`, which equals `1 − cos` and keeps small differences.
    pub fn distance(&self, metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        match metric {
            Metric::L2 => self.l2sq(a, b),
            Metric::Dot => 1.0 - self.dot(a, b),
            Metric::Cosine => {
                let [ab, aa, bb] = self.dot_norms(a, b);
                match (aa == 0.0, bb == 0.0) {
                    (true, true) => 0.0,
                    (true, false) | (false, true) => 1.0,
                    (false, false) => {
                        let (na, nb) = (aa.sqrt(), bb.sqrt());
                        let d = 1.0 - ab / (na * nb);
                        if d < NEAR_COSINE {
                            cosine_near(a, b, na, nb)
                        } else {
                            d
                        }
                    }
                }
            }
        }
    }
}

/// A distance function over two vectors of `T` given by pointer, as usearch's
/// `Index::change_metric` takes it.
pub(crate) type UsearchMetricOf<T> = Box<dyn Fn(*const T, *const T) -> f32 + Send + Sync>;

/// The metric of f32 vectors.
pub(crate) type UsearchMetric = UsearchMetricOf<f32>;

/// `kernels` as the metric of an f32 usearch index of `dimension` components compared by
/// `metric`. Only for usearch: the closure trusts its pointers to address `dimension` f32s.
/// Cosine distances below this are recomputed without cancellation (see
/// [`Kernels::distance`]). Few pairs are this close in real data, so the second pass is rare.
pub const NEAR_COSINE: f32 = 1e-3;

/// `1 − cos(a, b)` as `‖a/na − b/nb‖² / 2`, for vectors of norms `na`, `nb` (both non-zero).
fn cosine_near(a: &[f32], b: &[f32], na: f32, nb: f32) -> f32 {
    let (ia, ib) = (1.0 / na, 1.0 / nb);
    let sum: f32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x * ia - y * ib;
            d * d
        })
        .sum();
    sum / 2.0
}

pub(crate) fn usearch_metric(kernels: Kernels, metric: Metric, dimension: usize) -> UsearchMetric {
    // SAFETY (each closure): usearch calls the metric of an f32 index with two vectors of
    // `dimension` f32 components, the query (cast to f32 first when given in another type) and
    // stored vectors, both valid for the duration of the call.
    let vectors = move |a: *const f32, b: *const f32| unsafe {
        (
            std::slice::from_raw_parts(a, dimension),
            std::slice::from_raw_parts(b, dimension),
        )
    };
    match metric {
        Metric::L2 => Box::new(move |a, b| {
            let (a, b) = vectors(a, b);
            kernels.l2sq(a, b)
        }),
        Metric::Dot | Metric::Cosine => Box::new(move |a, b| {
            let (a, b) = vectors(a, b);
            kernels.distance(metric, a, b)
        }),
    }
}

mod portable {
    //! Eight independent accumulators, which compilers keep in vector registers.

    const LANES: usize = 8;

    fn fold(
        a: &[f32],
        b: &[f32],
        mut step: impl FnMut(&mut [f32; LANES], usize, f32, f32),
    ) -> [f32; LANES] {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0f32; LANES];
        let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
        for (x, y) in a_chunks.zip(b_chunks) {
            for lane in 0..LANES {
                step(&mut acc, lane, x[lane], y[lane]);
            }
        }
        for (lane, (x, y)) in a_rest.iter().zip(b_rest).enumerate() {
            step(&mut acc, lane, *x, *y);
        }
        acc
    }

    pub unsafe fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, lane, x, y| acc[lane] += (x - y) * (x - y))
            .iter()
            .sum()
    }

    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, lane, x, y| acc[lane] += x * y)
            .iter()
            .sum()
    }

    pub unsafe fn dot_norms(a: &[f32], b: &[f32]) -> [f32; 3] {
        let ab = fold(a, b, |acc, lane, x, y| acc[lane] += x * y);
        let aa = fold(a, a, |acc, lane, x, _| acc[lane] += x * x);
        let bb = fold(b, b, |acc, lane, y, _| acc[lane] += y * y);
        [ab, aa, bb].map(|acc| acc.iter().sum())
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Four vector accumulators per sum over blocks of four vectors, then one vector at a time,
    //! then the tail (masked loads with AVX-512, scalar with AVX2). The loops are written out
    //! in each kernel: intrinsics only inline into functions that carry the target feature.
    //! Callers must have checked the CPU features.

    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    unsafe fn sum512(acc: [__m512; 4]) -> f32 {
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }

    /// The first `lanes` (at most 16) lanes.
    fn mask16(lanes: usize) -> __mmask16 {
        ((1u32 << lanes) - 1) as __mmask16
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn l2sq_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 16 * j;
                let d = _mm512_sub_ps(_mm512_loadu_ps(a.add(at)), _mm512_loadu_ps(b.add(at)));
                *acc = _mm512_fmadd_ps(d, d, *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            let d = _mm512_sub_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)));
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
            i += 16;
        }
        if i < n {
            // Masked-off lanes are neither read nor faulted on, and load as zero.
            let m = mask16(n - i);
            let d = _mm512_sub_ps(
                _mm512_maskz_loadu_ps(m, a.add(i)),
                _mm512_maskz_loadu_ps(m, b.add(i)),
            );
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
        sum512(acc)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 16 * j;
                *acc =
                    _mm512_fmadd_ps(_mm512_loadu_ps(a.add(at)), _mm512_loadu_ps(b.add(at)), *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), acc[0]);
            i += 16;
        }
        if i < n {
            let m = mask16(n - i);
            let (x, y) = (
                _mm512_maskz_loadu_ps(m, a.add(i)),
                _mm512_maskz_loadu_ps(m, b.add(i)),
            );
            acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
        }
        sum512(acc)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_norms_avx512(a: &[f32], b: &[f32]) -> [f32; 3] {
        let n = a.len().min(b.len());
        let (a, b) = (a.as_ptr(), b.as_ptr());
        // Four accumulators, each of the three sums a·b, a·a, b·b.
        let mut acc = [[_mm512_setzero_ps(); 3]; 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, [ab, aa, bb]) in acc.iter_mut().enumerate() {
                let at = i + 16 * j;
                let (x, y) = (_mm512_loadu_ps(a.add(at)), _mm512_loadu_ps(b.add(at)));
                *ab = _mm512_fmadd_ps(x, y, *ab);
                *aa = _mm512_fmadd_ps(x, x, *aa);
                *bb = _mm512_fmadd_ps(y, y, *bb);
            }
            i += 64;
        }
        while i < n {
            // The last block is masked when shorter than 16.
            let m = mask16((n - i).min(16));
            let (x, y) = (
                _mm512_maskz_loadu_ps(m, a.add(i)),
                _mm512_maskz_loadu_ps(m, b.add(i)),
            );
            let [ab, aa, bb] = &mut acc[0];
            *ab = _mm512_fmadd_ps(x, y, *ab);
            *aa = _mm512_fmadd_ps(x, x, *aa);
            *bb = _mm512_fmadd_ps(y, y, *bb);
            i += 16;
        }
        let sum = |k: usize| [acc[0][k], acc[1][k], acc[2][k], acc[3][k]];
        [sum512(sum(0)), sum512(sum(1)), sum512(sum(2))]
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum256(acc: [__m256; 4]) -> f32 {
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        let v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
        _mm_cvtss_f32(v)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(at)), _mm256_loadu_ps(pb.add(at)));
                *acc = _mm256_fmadd_ps(d, d, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
        let tail: f32 = a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        sum256(acc) + tail
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                *acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(at)),
                    _mm256_loadu_ps(pb.add(at)),
                    *acc,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
        sum256(acc) + tail
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_norms_avx2(a: &[f32], b: &[f32]) -> [f32; 3] {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // Four accumulators, each of the three sums a·b, a·a, b·b: twelve of the sixteen
        // registers.
        let mut acc = [[_mm256_setzero_ps(); 3]; 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, [ab, aa, bb]) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                let (x, y) = (_mm256_loadu_ps(pa.add(at)), _mm256_loadu_ps(pb.add(at)));
                *ab = _mm256_fmadd_ps(x, y, *ab);
                *aa = _mm256_fmadd_ps(x, x, *aa);
                *bb = _mm256_fmadd_ps(y, y, *bb);
            }
            i += 32;
        }
        while i + 8 <= n {
            let (x, y) = (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let [ab, aa, bb] = &mut acc[0];
            *ab = _mm256_fmadd_ps(x, y, *ab);
            *aa = _mm256_fmadd_ps(x, x, *aa);
            *bb = _mm256_fmadd_ps(y, y, *bb);
            i += 8;
        }
        let sum = |k: usize| [acc[0][k], acc[1][k], acc[2][k], acc[3][k]];
        let mut out = [sum256(sum(0)), sum256(sum(1)), sum256(sum(2))];
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            out[0] += x * y;
            out[1] += x * x;
            out[2] += y * y;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;

    /// usearch's distances in f64, the plain way.
    fn reference(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
        let pairs = || a.iter().zip(b).map(|(x, y)| (f64::from(*x), f64::from(*y)));
        match metric {
            Metric::L2 => pairs().map(|(x, y)| (x - y) * (x - y)).sum(),
            Metric::Dot => 1.0 - pairs().map(|(x, y)| x * y).sum::<f64>(),
            Metric::Cosine => {
                let ab: f64 = pairs().map(|(x, y)| x * y).sum();
                let aa: f64 = pairs().map(|(x, _)| x * x).sum();
                let bb: f64 = pairs().map(|(_, y)| y * y).sum();
                1.0 - ab / (aa.sqrt() * bb.sqrt())
            }
        }
    }

    /// Near-identical vectors keep a cosine distance close to the exact one (f64), where the
    /// one-pass formula cancels to 0.
    #[test]
    fn close_pairs_keep_their_cosine_distance() {
        let mut rng = StdRng::seed_from_u64(10);
        for dim in [3, 64, 784] {
            let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            for noise in [1e-5f32, 1e-4, 1e-3] {
                let b: Vec<f32> = a
                    .iter()
                    .map(|x| x + noise * rng.gen_range(-1.0f32..1.0))
                    .collect();
                let want = reference(Metric::Cosine, &a, &b);
                assert!(want > 0.0);
                for k in [Isa::Avx512, Isa::Avx2Fma, Isa::Portable]
                    .into_iter()
                    .filter_map(Kernels::for_isa)
                {
                    let got = f64::from(k.distance(Metric::Cosine, &a, &b));
                    assert!(
                        (got - want).abs() <= 0.05 * want,
                        "{:?} dim {dim} noise {noise}: {got} vs {want}",
                        k.isa()
                    );
                }
            }
        }
    }

    #[test]
    fn every_available_kernel_matches_the_reference_on_odd_dimensions() {
        let mut rng = StdRng::seed_from_u64(9);
        let kernels: Vec<Kernels> = [Isa::Avx512, Isa::Avx2Fma, Isa::Portable]
            .into_iter()
            .filter_map(Kernels::for_isa)
            .collect();
        assert_eq!(kernels.last().map(|k| k.isa()), Some(Isa::Portable));
        assert!(Kernels::for_isa(Kernels::best().isa()).is_some());
        for dim in [1, 7, 15, 16, 17, 63, 64, 65, 784, 1000] {
            for _ in 0..20 {
                // Pixel-like values (0..255) and small signed ones.
                let scale = if rng.gen_bool(0.5) { 255.0 } else { 1.0 };
                let mut v = || -> Vec<f32> {
                    (0..dim)
                        .map(|_| rng.gen_range(-0.5f32..1.0) * scale)
                        .collect()
                };
                let (a, b) = (v(), v());
                for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
                    let want = reference(metric, &a, &b);
                    // Relative to the sizes of the summed terms, not to the result, which may
                    // be a difference of near-equal numbers.
                    let size = 1.0
                        + reference(Metric::L2, &a, &vec![0.0; dim])
                        + reference(Metric::L2, &b, &vec![0.0; dim]);
                    let size = if metric == Metric::Cosine { 1.0 } else { size };
                    for k in &kernels {
                        let got = f64::from(k.distance(metric, &a, &b));
                        assert!(
                            (got - want).abs() <= 1e-5 * size,
                            "{:?} {metric:?} dim {dim}: {got} vs {want}",
                            k.isa()
                        );
                    }
                }
            }
        }
        for k in &kernels {
            let zero = [0.0f32; 9];
            let one = [1.0f32; 9];
            assert_eq!(k.distance(Metric::Cosine, &zero, &zero), 0.0);
            assert_eq!(k.distance(Metric::Cosine, &zero, &one), 1.0);
            assert_eq!(k.l2sq(&one, &one[..4]), 0.0, "the common length");
        }
    }
}
