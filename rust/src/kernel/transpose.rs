//! 8 x 8 transposes of f64 tiles, from the kernel's feature-major scratch (one vector per
//! feature, one lane per point) to the row-major output (one row per point).
//!
//! LLVM does not vectorise a transpose written as plain loops (it emits 64 scalar moves per
//! tile), so the AVX-512 and AVX2 versions use shuffles explicitly.

pub(crate) type Tile = [[f64; 8]; 8];

/// Returns `t` transposed: `out[i][j] = t[j][i]`.
#[inline(always)]
pub(crate) fn transpose_portable(t: &Tile) -> Tile {
    let mut out = [[0.0; 8]; 8];
    for i in 0..8 {
        for j in 0..8 {
            out[i][j] = t[j][i];
        }
    }
    out
}

/// AVX-512: 8 unpacks and 16 two-source permutes per tile.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn transpose_avx512(t: &Tile) -> Tile {
    use std::arch::x86_64::*;
    let r: [__m512d; 8] = std::array::from_fn(|j| _mm512_loadu_pd(t[j].as_ptr()));
    // Stage 1: interleave pairs of rows. u[2p] holds columns 0,2,4,6 of rows 2p, 2p+1;
    // u[2p+1] columns 1,3,5,7.
    let mut u = [_mm512_setzero_pd(); 8];
    for p in 0..4 {
        u[2 * p] = _mm512_unpacklo_pd(r[2 * p], r[2 * p + 1]);
        u[2 * p + 1] = _mm512_unpackhi_pd(r[2 * p], r[2 * p + 1]);
    }
    // Stage 2: gather four rows. s[q] for rows 0..3 (q < 4) and rows 4..7 (q >= 4):
    // s[0]: cols 0|4, s[1]: cols 1|5, s[2]: cols 2|6, s[3]: cols 3|7.
    let lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    let hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    let mut s = [_mm512_setzero_pd(); 8];
    for half in 0..2 {
        let (a0, a1, b0, b1) = (
            u[4 * half],
            u[4 * half + 1],
            u[4 * half + 2],
            u[4 * half + 3],
        );
        s[4 * half] = _mm512_permutex2var_pd(a0, lo, b0);
        s[4 * half + 1] = _mm512_permutex2var_pd(a1, lo, b1);
        s[4 * half + 2] = _mm512_permutex2var_pd(a0, hi, b0);
        s[4 * half + 3] = _mm512_permutex2var_pd(a1, hi, b1);
    }
    // Stage 3: join rows 0..3 with rows 4..7.
    let first = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    let second = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    let mut out = [[0.0; 8]; 8];
    for q in 0..4 {
        _mm512_storeu_pd(
            out[q].as_mut_ptr(),
            _mm512_permutex2var_pd(s[q], first, s[q + 4]),
        );
        _mm512_storeu_pd(
            out[q + 4].as_mut_ptr(),
            _mm512_permutex2var_pd(s[q], second, s[q + 4]),
        );
    }
    out
}

/// AVX2: four 4 x 4 transposes (4 unpacks + 4 lane permutes each).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn transpose_avx2(t: &Tile) -> Tile {
    use std::arch::x86_64::*;
    let mut out = [[0.0; 8]; 8];
    for bi in 0..2 {
        for bj in 0..2 {
            // Block (bi, bj) of the input: rows 4bi.., columns 4bj..; lands at (bj, bi).
            let r: [__m256d; 4] =
                std::array::from_fn(|k| _mm256_loadu_pd(t[4 * bi + k][4 * bj..].as_ptr()));
            let a0 = _mm256_unpacklo_pd(r[0], r[1]);
            let a1 = _mm256_unpackhi_pd(r[0], r[1]);
            let a2 = _mm256_unpacklo_pd(r[2], r[3]);
            let a3 = _mm256_unpackhi_pd(r[2], r[3]);
            let c = [
                _mm256_permute2f128_pd(a0, a2, 0x20),
                _mm256_permute2f128_pd(a1, a3, 0x20),
                _mm256_permute2f128_pd(a0, a2, 0x31),
                _mm256_permute2f128_pd(a1, a3, 0x31),
            ];
            for k in 0..4 {
                _mm256_storeu_pd(out[4 * bj + k][4 * bi..].as_mut_ptr(), c[k]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tile {
        std::array::from_fn(|j| std::array::from_fn(|i| (10 * j + i) as f64))
    }

    #[test]
    fn portable_transposes() {
        let t = transpose_portable(&sample());
        assert_eq!(t[3][5], 53.0);
        assert_eq!(transpose_portable(&t), sample());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_versions_agree_with_portable() {
        let t = sample();
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked on the line above).
            assert_eq!(unsafe { transpose_avx512(&t) }, transpose_portable(&t));
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked on the line above).
            assert_eq!(unsafe { transpose_avx2(&t) }, transpose_portable(&t));
        }
    }
}
