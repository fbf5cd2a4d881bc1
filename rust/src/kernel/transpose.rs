//! 8 x 8 transposes of f64 tiles, from the kernel's feature-major scratch (one vector per
//! feature, one lane per point) to the row-major output (one row per point).
//!
//! LLVM does not vectorise a transpose written as plain loops (it emits 64 scalar moves per
//! tile), so the AVX-512 and AVX2 versions use shuffles explicitly.
//!
//! For float32 output the tile is rounded to f32 first (one conversion per feature vector,
//! round to nearest even like `as f32`) and transposed as f32 in 256-bit registers, straight
//! into the output rows: half the bytes to shuffle, and no f64 copy of the tile in between.
//! Written as an f64 transpose followed by per-row conversions, LLVM merged the two into
//! scalar-width shuffles and spills that cost most of the kernel's time.

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

/// Writes `t` rounded to f32 and transposed into `rows` output rows: row `i` (`i < rows <= 8`)
/// gets `t[j][i]` for `j = 0..8` at `out[i * stride + j]`.
///
/// # Safety
/// `out` must be valid for writes at `out[i * stride .. i * stride + 8]` for every `i < rows`.
#[inline(always)]
pub(crate) unsafe fn store_f32_portable(t: &Tile, out: *mut f32, stride: usize, rows: usize) {
    for i in 0..rows {
        for (j, feature) in t.iter().enumerate() {
            *out.add(i * stride + j) = feature[i] as f32;
        }
    }
}

/// [`store_f32_portable`] for AVX-512: eight 512-bit conversions, then [`transpose_f32x8`].
///
/// # Safety
/// As [`store_f32_portable`], and the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
#[inline]
pub(crate) unsafe fn store_f32_avx512(t: &Tile, out: *mut f32, stride: usize, rows: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|j| _mm512_cvtpd_ps(_mm512_loadu_pd(t[j].as_ptr())));
    store_rows_f32x8(&transpose_f32x8(&r), out, stride, rows);
}

/// [`store_f32_portable`] for AVX2: two 256-bit conversions per feature, then
/// [`transpose_f32x8`].
///
/// # Safety
/// As [`store_f32_portable`], and the CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn store_f32_avx2(t: &Tile, out: *mut f32, stride: usize, rows: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|j| {
        let lo = _mm256_cvtpd_ps(_mm256_loadu_pd(t[j].as_ptr()));
        let hi = _mm256_cvtpd_ps(_mm256_loadu_pd(t[j][4..].as_ptr()));
        _mm256_set_m128(hi, lo)
    });
    store_rows_f32x8(&transpose_f32x8(&r), out, stride, rows);
}

/// 8 x 8 f32 transpose in 256-bit registers (8 unpacks, 8 shuffles, 8 lane permutes):
/// `out[i][j] = r[j][i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transpose_f32x8(r: &[std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    // t[2p] = r[2p][0] r[2p+1][0] r[2p][1] r[2p+1][1] | the same for lanes 4, 5; t[2p+1]: 2, 3 | 6, 7.
    let t: [__m256; 8] = std::array::from_fn(|k| {
        let (a, b) = (r[k / 2 * 2], r[k / 2 * 2 + 1]);
        if k % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // s[q] (rows 0..3 for q < 4, rows 4..7 for q >= 4): lane q % 4 | lane q % 4 + 4 of four rows.
    let s: [__m256; 8] = std::array::from_fn(|q| {
        let base = q / 4 * 4;
        let (a, b) = (t[base + (q % 4) / 2], t[base + 2 + (q % 4) / 2]);
        if q % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    // Row i joins the low (i < 4) or high (i >= 4) halves of s[i % 4] and s[i % 4 + 4].
    std::array::from_fn(|i| {
        if i < 4 {
            _mm256_permute2f128_ps::<0x20>(s[i], s[i + 4])
        } else {
            _mm256_permute2f128_ps::<0x31>(s[i - 4], s[i])
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_rows_f32x8(
    rows_f32: &[std::arch::x86_64::__m256; 8],
    out: *mut f32,
    stride: usize,
    rows: usize,
) {
    use std::arch::x86_64::*;
    for (i, row) in rows_f32.iter().enumerate().take(rows) {
        let dst = out.add(i * stride);
        if (dst as usize).is_multiple_of(32) {
            _mm256_storeu_ps(dst, *row);
        } else {
            // Two 16-byte halves: a 32-byte store at an address that is not a multiple of 32
            // crosses a cache line every other tile (NumPy's large arrays start 16 bytes into a
            // page), which measured ~10% slower at L = 40; 16-byte-aligned halves never cross.
            _mm_storeu_ps(dst, _mm256_castps256_ps128(*row));
            _mm_storeu_ps(dst.add(4), _mm256_extractf128_ps::<1>(*row));
        }
    }
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

    /// Values whose f32 rounding is a tie or near one, so a wrong rounding mode would show.
    fn awkward() -> Tile {
        std::array::from_fn(|j| {
            std::array::from_fn(|i| {
                let x = 1.0 + (8 * j + i) as f64 * 2f64.powi(-24); // odd multiples of half an f32 ulp
                if (i + j) % 3 == 0 {
                    -x / 3.0
                } else {
                    x
                }
            })
        })
    }

    #[test]
    fn f32_stores_round_like_as_and_transpose() {
        let t = awkward();
        // Rows further apart than 8, as in the real output; stride 8 keeps every row at the
        // same alignment, stride 11 varies it. `shift` places the first row 0..7 floats past a
        // 32-byte boundary, so both the 32-byte and the split 16-byte stores are taken.
        for stride in [8, 11] {
            for rows in [8, 5, 1] {
                for shift in 0..8 {
                    let want = stored(stride, shift, |out| {
                        // SAFETY: `stored` gives room for 8 rows of `stride` from `out`.
                        unsafe { store_f32_portable(&t, out, stride, rows) }
                    });
                    for i in 0..8 {
                        for j in 0..8 {
                            let cell = want[i * stride + j];
                            if i < rows {
                                assert_eq!(cell.to_bits(), (t[j][i] as f32).to_bits());
                            } else {
                                assert!(cell.is_nan(), "row {i} written with rows = {rows}");
                            }
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    {
                        let case = format!("stride {stride}, rows {rows}, shift {shift}");
                        if is_x86_feature_detected!("avx512f") {
                            let got = stored(stride, shift, |out| {
                                // SAFETY: AVX-512F is present (checked above); room as above.
                                unsafe { store_f32_avx512(&t, out, stride, rows) }
                            });
                            assert_eq!(bits(&got), bits(&want), "avx512, {case}");
                        }
                        if is_x86_feature_detected!("avx2") {
                            let got = stored(stride, shift, |out| {
                                // SAFETY: AVX2 is present (checked above); room as above.
                                unsafe { store_f32_avx2(&t, out, stride, rows) }
                            });
                            assert_eq!(bits(&got), bits(&want), "avx2, {case}");
                        }
                    }
                }
            }
        }
    }

    /// Runs `store` on a NaN-filled buffer of 8 rows of `stride` floats that starts `shift`
    /// floats past a 32-byte boundary, and returns those rows.
    fn stored(stride: usize, shift: usize, store: impl FnOnce(*mut f32)) -> Vec<f32> {
        let mut buf = vec![f32::NAN; 8 * stride + 16];
        let aligned = buf.as_ptr().align_offset(32);
        let start = aligned + shift;
        store(buf[start..].as_mut_ptr());
        buf[start..start + 8 * stride].to_vec()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
