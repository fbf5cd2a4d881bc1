//! Sine and cosine of angles given in degrees, written so that a loop over SIMD lanes
//! vectorises: no branches, no libm calls, no integer conversion.
//!
//! Working in degrees lets the range reduction be exact. For |x| <= 180 the quadrant
//! offset `90 * q` is an integer and `x - 90 * q` is computed without rounding, so a pole
//! (latitude +-90) or the antimeridian (longitude +-180) give exactly 0 and +-1 where the
//! maths says so. Only the remaining |r| <= ~45 degrees is converted to radians.

const DEG_TO_RAD: f64 = std::f64::consts::PI / 180.0;

/// 1.5 * 2^52: adding and subtracting it rounds a double to the nearest integer
/// (ties to even) with plain adds, which vectorise on every x86-64 level (SSE2 lacks `roundpd`).
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

#[inline(always)]
fn round_nearest(x: f64) -> f64 {
    (x + ROUND_MAGIC) - ROUND_MAGIC
}

// Taylor coefficients (-1)^k / (2k+1)! and (-1)^k / (2k)!. On |r| <= pi/4 + a little the
// truncation error of these series is below 1e-18, so the result is within ~1 ulp.
const SIN: [f64; 8] = [
    -1.0 / 6.0,
    1.0 / 120.0,
    -1.0 / 5040.0,
    1.0 / 362_880.0,
    -1.0 / 39_916_800.0,
    1.0 / 6_227_020_800.0,
    -1.0 / 1_307_674_368_000.0,
    1.0 / 355_687_428_096_000.0,
];
const COS: [f64; 9] = [
    -1.0 / 2.0,
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40_320.0,
    -1.0 / 3_628_800.0,
    1.0 / 479_001_600.0,
    -1.0 / 87_178_291_200.0,
    1.0 / 20_922_789_888_000.0,
    -1.0 / 6_402_373_705_728_000.0,
];

/// `(sin x, cos x)` for `x` in degrees. Exact reduction for |x| <= 2^44; callers pass
/// validated coordinates (|x| <= 180).
#[inline(always)]
pub fn sincos_deg(x: f64) -> (f64, f64) {
    let q = round_nearest(x * (1.0 / 90.0));
    let r = (x - 90.0 * q) * DEG_TO_RAD;
    let r2 = r * r;

    let mut ps = SIN[7];
    for &c in SIN[..7].iter().rev() {
        ps = ps.mul_add(r2, c);
    }
    let sin_r = (r * r2).mul_add(ps, r);

    let mut pc = COS[8];
    for &c in COS[..8].iter().rev() {
        pc = pc.mul_add(r2, c);
    }
    let cos_r = r2.mul_add(pc, 1.0);

    // Quadrant q mod 4, folded into {-2, -1, 0, 1, 2}.
    let qm = q - 4.0 * round_nearest(q * 0.25);
    let odd = qm == 1.0 || qm == -1.0;
    let (s, c) = if odd { (cos_r, sin_r) } else { (sin_r, cos_r) };
    // sin(90q + r) is negative-signed for q = 2, 3; cos for q = 1, 2.
    let sin = if qm == 2.0 || qm == -2.0 || qm == -1.0 {
        -s
    } else {
        s
    };
    let cos = if qm == 1.0 || qm == 2.0 || qm == -2.0 {
        -c
    } else {
        c
    };
    (sin, cos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libm_on_a_dense_grid() {
        let mut worst: f64 = 0.0;
        let n = 720_001;
        for i in 0..n {
            let x = -360.0 + 720.0 * (i as f64) / ((n - 1) as f64);
            let (s, c) = sincos_deg(x);
            let t = x.to_radians();
            worst = worst.max((s - t.sin()).abs()).max((c - t.cos()).abs());
        }
        // The reference itself rounds x * pi / 180 (up to ~1 ulp of 2 pi), so allow a few ulps.
        assert!(worst < 1e-15, "worst error {worst}");
    }

    #[test]
    fn exact_at_multiples_of_ninety() {
        let cases: [(f64, f64, f64); 6] = [
            (0.0, 0.0, 1.0),
            (90.0, 1.0, 0.0),
            (-90.0, -1.0, 0.0),
            (180.0, 0.0, -1.0),
            (-180.0, 0.0, -1.0),
            (270.0, -1.0, 0.0),
        ];
        for (x, s, c) in cases {
            // Exact values (a zero may carry either sign).
            let (gs, gc) = sincos_deg(x);
            assert_eq!((gs, gc), (s, c), "at {x}");
        }
    }

    #[test]
    fn tiny_angles_keep_relative_precision() {
        // 1e-12 degrees from a pole: sin of the offset must be right to full relative precision.
        let x: f64 = 90.0 - 1e-12;
        let offset = 90.0 - x; // exact (Sterbenz)
        let (_, c) = sincos_deg(x);
        let expected = (offset * DEG_TO_RAD).sin();
        assert!(
            ((c - expected) / expected).abs() < 1e-15,
            "{c} vs {expected}"
        );
    }
}
