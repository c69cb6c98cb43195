//! Distance kernels over one-byte codes, for graphs that walk on codes
//! ([`hnsw::codes`](crate::index::hnsw::codes)): squared L2 of u8 codes, and the inner product
//! of the i8 codes of unit vectors. Both widen the codes to i16 and sum their products in pairs
//! into i32 lanes (`vpmaddwd`), 64 codes a step with AVX-512BW or 32 with AVX2, or run a
//! portable loop of 32 lanes that compilers vectorise; the sums are exact integers, rounded
//! once to f32.

use super::UsearchMetricOf;

/// `1 − a·b / UNIT` is the cosine distance of the i8 codes of two unit vectors, whose lengths
/// are 127 give or take rounding.
const UNIT: f32 = 127.0 * 127.0;

/// The metric of a usearch index of u8 codes under squared Euclidean distance.
pub(crate) fn usearch_u8_l2(dimension: usize) -> UsearchMetricOf<u8> {
    metric(dimension, l2sq_u8_kernel())
}

/// The metric of a usearch index of the i8 codes of unit vectors
/// ([`i8_codes`](crate::index::i8_codes)): `1 − a·b / 127²`, a cosine distance that skips the
/// two norms usearch's angular kernel computes for every pair.
pub(crate) fn usearch_i8_unit_cosine(dimension: usize) -> UsearchMetricOf<i8> {
    metric(dimension, unit_cosine_i8_kernel())
}

/// The distance of two code vectors as bytes: squared L2 of u8 codes, or (`unit`) the
/// cosine distance of the i8 codes of unit vectors, as the usearch metrics above compute it.
pub(crate) fn distance(unit: bool) -> fn(&[u8], &[u8]) -> f32 {
    // Each arm is handed out only once the CPU is known to have its instructions (`isa`).
    match (unit, isa()) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512BW.
        (true, Isa::Avx512) => {
            |a, b| unit_cosine(unsafe { x86::dot_i8_avx512(as_i8(a), as_i8(b)) })
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2.
        (true, Isa::Avx2) => |a, b| unit_cosine(unsafe { x86::dot_i8_avx2(as_i8(a), as_i8(b)) }),
        (true, _) => |a, b| unit_cosine(portable::dot_i8(as_i8(a), as_i8(b))),
        (false, _) => l2sq_u8_kernel(),
    }
}

/// `1 − dot / 127²`.
#[inline]
fn unit_cosine(dot: i32) -> f32 {
    1.0 - dot as f32 / UNIT
}

/// The instructions the code kernels use on the running CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Portable,
}

/// The widest instructions of the running CPU that a code kernel is written for.
fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// Asks the memory for the cache lines of `codes`, which a walk scores soon; reads nothing.
#[inline]
pub(crate) fn prefetch(codes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in codes.chunks(64) {
        // SAFETY: a prefetch is a hint at an address inside a live slice; it reads nothing
        // and cannot fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch(line.as_ptr().cast(), std::arch::x86_64::_MM_HINT_T0)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = codes;
}

fn as_i8(codes: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have the same size and alignment, and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(codes.as_ptr().cast(), codes.len()) }
}

/// `kernel` over two vectors of `dimension` codes given by pointer. Only for usearch: the
/// closure trusts its pointers to address `dimension` codes.
fn metric<T: 'static>(dimension: usize, kernel: fn(&[T], &[T]) -> f32) -> UsearchMetricOf<T> {
    Box::new(move |a, b| {
        // SAFETY: usearch calls the metric of a code index with two vectors of `dimension`
        // codes, valid for the duration of the call.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, dimension),
                std::slice::from_raw_parts(b, dimension),
            )
        };
        kernel(a, b)
    })
}

/// The fastest squared-L2 kernel of u8 codes for the running CPU, chosen once.
fn l2sq_u8_kernel() -> fn(&[u8], &[u8]) -> f32 {
    // Each arm is handed out only once the CPU is known to have its instructions (`isa`).
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512BW.
        Isa::Avx512 => |a, b| unsafe { x86::l2sq_u8_avx512(a, b) } as f32,
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2.
        Isa::Avx2 => |a, b| unsafe { x86::l2sq_u8_avx2(a, b) } as f32,
        _ => |a, b| portable::l2sq_u8(a, b) as f32,
    }
}

/// The fastest unit-cosine kernel of i8 codes for the running CPU, chosen once.
fn unit_cosine_i8_kernel() -> fn(&[i8], &[i8]) -> f32 {
    // Each arm is handed out only once the CPU is known to have its instructions (`isa`).
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512BW.
        Isa::Avx512 => |a, b| unit_cosine(unsafe { x86::dot_i8_avx512(a, b) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2.
        Isa::Avx2 => |a, b| unit_cosine(unsafe { x86::dot_i8_avx2(a, b) }),
        _ => |a, b| unit_cosine(portable::dot_i8(a, b)),
    }
}

mod portable {
    //! 32 lanes of integers, which compilers vectorise.

    /// Inner product of two i8 code vectors in 32 lanes of i32, which compilers vectorise.
    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let mut acc = [0i32; 32];
        let (a_chunks, b_chunks) = (a.chunks_exact(32), b.chunks_exact(32));
        let rest: i32 = a_chunks
            .remainder()
            .iter()
            .zip(b_chunks.remainder())
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        for (x, y) in a_chunks.zip(b_chunks) {
            for lane in 0..32 {
                acc[lane] += i32::from(x[lane]) * i32::from(y[lane]);
            }
        }
        acc.iter().sum::<i32>() + rest
    }

    /// Squared distance of two code vectors in 32 lanes of u32, which compilers vectorise.
    pub fn l2sq_u8(a: &[u8], b: &[u8]) -> u32 {
        let mut acc = [0u32; 32];
        let (a_chunks, b_chunks) = (a.chunks_exact(32), b.chunks_exact(32));
        let rest: u32 = a_chunks
            .remainder()
            .iter()
            .zip(b_chunks.remainder())
            .map(|(x, y)| u32::from(x.abs_diff(*y)).pow(2))
            .sum();
        for (x, y) in a_chunks.zip(b_chunks) {
            for lane in 0..32 {
                acc[lane] += u32::from(x[lane].abs_diff(y[lane])).pow(2);
            }
        }
        acc.iter().sum::<u32>() + rest
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Callers must have checked that the CPU has the instructions a kernel is compiled for:
    //! AVX-512BW (`…_avx512`) or AVX2 (`…_avx2`).

    use std::arch::x86_64::*;

    /// Inner product of two i8 code vectors: 64 codes a step widened to i16, multiplied and
    /// summed in pairs into i32 lanes (`vpmaddwd`), then the tail.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn dot_i8_avx512(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let widen = |p: *const i8| _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.cast()));
        let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        while i + 64 <= n {
            let p0 = _mm512_madd_epi16(widen(pa.add(i)), widen(pb.add(i)));
            let p1 = _mm512_madd_epi16(widen(pa.add(i + 32)), widen(pb.add(i + 32)));
            acc0 = _mm512_add_epi32(acc0, p0);
            acc1 = _mm512_add_epi32(acc1, p1);
            i += 64;
        }
        if i + 32 <= n {
            acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(widen(pa.add(i)), widen(pb.add(i))));
            i += 32;
        }
        let mut sum = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            sum += i32::from(*x) * i32::from(*y);
        }
        sum
    }

    /// Squared distance of two code vectors: 64 codes a step widened to i16, their
    /// differences squared and summed in pairs into i32 lanes (`vpmaddwd`), then the tail.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn l2sq_u8_avx512(a: &[u8], b: &[u8]) -> u32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let widen = |p: *const u8| _mm512_cvtepu8_epi16(_mm256_loadu_si256(p.cast()));
        let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        while i + 64 <= n {
            let d0 = _mm512_sub_epi16(widen(pa.add(i)), widen(pb.add(i)));
            let d1 = _mm512_sub_epi16(widen(pa.add(i + 32)), widen(pb.add(i + 32)));
            acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(d0, d0));
            acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(d1, d1));
            i += 64;
        }
        if i + 32 <= n {
            let d0 = _mm512_sub_epi16(widen(pa.add(i)), widen(pb.add(i)));
            acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(d0, d0));
            i += 32;
        }
        let mut sum = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)) as u32;
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            sum += u32::from(x.abs_diff(*y)).pow(2);
        }
        sum
    }

    /// [`dot_i8_avx512`] in 256-bit registers: 32 codes a step.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let widen = |p: *const i8| _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast()));
        let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        while i + 32 <= n {
            let p0 = _mm256_madd_epi16(widen(pa.add(i)), widen(pb.add(i)));
            let p1 = _mm256_madd_epi16(widen(pa.add(i + 16)), widen(pb.add(i + 16)));
            acc0 = _mm256_add_epi32(acc0, p0);
            acc1 = _mm256_add_epi32(acc1, p1);
            i += 32;
        }
        if i + 16 <= n {
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(widen(pa.add(i)), widen(pb.add(i))));
            i += 16;
        }
        let mut sum = sum_i32_avx2(_mm256_add_epi32(acc0, acc1));
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            sum += i32::from(*x) * i32::from(*y);
        }
        sum
    }

    /// [`l2sq_u8_avx512`] in 256-bit registers: 32 codes a step.
    #[target_feature(enable = "avx2")]
    pub unsafe fn l2sq_u8_avx2(a: &[u8], b: &[u8]) -> u32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let widen = |p: *const u8| _mm256_cvtepu8_epi16(_mm_loadu_si128(p.cast()));
        let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        while i + 32 <= n {
            let d0 = _mm256_sub_epi16(widen(pa.add(i)), widen(pb.add(i)));
            let d1 = _mm256_sub_epi16(widen(pa.add(i + 16)), widen(pb.add(i + 16)));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(d0, d0));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(d1, d1));
            i += 32;
        }
        if i + 16 <= n {
            let d0 = _mm256_sub_epi16(widen(pa.add(i)), widen(pb.add(i)));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(d0, d0));
            i += 16;
        }
        let mut sum = sum_i32_avx2(_mm256_add_epi32(acc0, acc1)) as u32;
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            sum += u32::from(x.abs_diff(*y)).pow(2);
        }
        sum
    }

    /// The sum of the eight i32 lanes (wrapping, as the lanes' own additions do).
    #[target_feature(enable = "avx2")]
    unsafe fn sum_i32_avx2(v: __m256i) -> i32 {
        let x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b01_00_11_10>(x));
        let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b10_11_00_01>(x));
        _mm_cvtsi128_si32(x)
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;

    fn as_u8(codes: &[i8]) -> &[u8] {
        // SAFETY: u8 and i8 have the same size and alignment, and every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(codes.as_ptr().cast(), codes.len()) }
    }

    /// The code kernels give the exact integer sum on every length, the tails included, and
    /// at the extremes of the code range.
    #[test]
    fn the_code_kernel_sums_squared_code_differences_exactly() {
        let mut rng = StdRng::seed_from_u64(11);
        for dim in [1, 31, 32, 63, 64, 65, 100, 784] {
            for extreme in [false, true] {
                let (a, b): (Vec<u8>, Vec<u8>) = (0..dim)
                    .map(|i| match extreme {
                        true if i % 2 == 0 => (0, 255),
                        true => (255, 0),
                        false => (rng.gen(), rng.gen()),
                    })
                    .unzip();
                let want: u64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (i64::from(*x) - i64::from(*y)).pow(2) as u64)
                    .sum();
                assert_eq!(
                    u64::from(portable::l2sq_u8(&a, &b)),
                    want,
                    "portable, dim {dim}"
                );
                let metric = usearch_u8_l2(dim);
                assert_eq!(
                    metric(a.as_ptr(), b.as_ptr()),
                    want as f32,
                    "chosen, dim {dim}"
                );
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU has AVX-512BW.
                    let got = unsafe { x86::l2sq_u8_avx512(&a, &b) };
                    assert_eq!(u64::from(got), want, "avx512bw, dim {dim}");
                }
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    let got = unsafe { x86::l2sq_u8_avx2(&a, &b) };
                    assert_eq!(u64::from(got), want, "avx2, dim {dim}");
                }
                assert_eq!(distance(false)(&a, &b), want as f32, "bytes, dim {dim}");
            }
        }
    }

    /// The i8 dot kernels give the exact integer sum on every length, the tails included, and
    /// at the extremes of i8.
    #[test]
    fn the_i8_code_kernel_sums_products_exactly() {
        let mut rng = StdRng::seed_from_u64(12);
        for dim in [1, 31, 32, 63, 64, 65, 100, 384] {
            for extreme in [false, true] {
                let (a, b): (Vec<i8>, Vec<i8>) = (0..dim)
                    .map(|i| match extreme {
                        true if i % 3 == 0 => (-128, -128),
                        true => (127, -128),
                        false => (rng.gen(), rng.gen()),
                    })
                    .unzip();
                let want: i64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| i64::from(*x) * i64::from(*y))
                    .sum();
                assert_eq!(
                    i64::from(portable::dot_i8(&a, &b)),
                    want,
                    "portable, dim {dim}"
                );
                let metric = usearch_i8_unit_cosine(dim);
                let distance = metric(a.as_ptr(), b.as_ptr());
                assert_eq!(
                    distance,
                    1.0 - want as f32 / (127.0 * 127.0),
                    "chosen, dim {dim}"
                );
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU has AVX-512BW.
                    let got = unsafe { x86::dot_i8_avx512(&a, &b) };
                    assert_eq!(i64::from(got), want, "avx512bw, dim {dim}");
                }
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    let got = unsafe { x86::dot_i8_avx2(&a, &b) };
                    assert_eq!(i64::from(got), want, "avx2, dim {dim}");
                }
                assert_eq!(
                    super::distance(true)(as_u8(&a), as_u8(&b)),
                    distance,
                    "bytes, dim {dim}"
                );
            }
        }
    }
}
