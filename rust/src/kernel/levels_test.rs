//! Every kernel this machine can run, checked against the portable one.
//!
//! The dispatcher picks one level per process, so the other tests only ever exercise the best
//! level of the machine they run on (an AVX-512 machine never runs the AVX2 kernel). Here each
//! level up to `SimdLevel::supported()` runs explicitly, for both output types and both store
//! paths, on block sizes that do and do not fill the SIMD lanes; the same for the kernel of
//! values with gradients.

use super::gradient::rows_with_gradient;
use super::simd::SimdLevel;
use super::values::{encode_rows, Store, LANES};
use crate::gradient::spherical_harmonics_with_gradient_into;
use crate::plan::{Basis, Plan};
use crate::test_points::random_points;

const LEVELS: [SimdLevel; 3] = [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512];

/// Points that cover the sphere, the poles, the antimeridian and signed zeros.
fn points(n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(2 * n + 12);
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    for i in 0..n {
        let lon = 360.0 * ((i as f64 * golden).fract()) - 180.0;
        let lat = (1.0 - 2.0 * (i as f64 + 0.5) / n as f64)
            .asin()
            .to_degrees();
        v.extend_from_slice(&[lon, lat]);
    }
    v.extend_from_slice(&[
        0.0,
        90.0,
        -0.0,
        -90.0,
        180.0,
        -0.0,
        -180.0,
        45.0,
        1e-9,
        89.999_999_9,
        -12.5,
        -0.0,
    ]);
    v
}

fn run<O: crate::real::Real + Default>(
    plan: &Plan,
    pts: &[f64],
    level: SimdLevel,
    store: Store,
) -> Vec<O> {
    let mut out = vec![O::default(); pts.len() / 2 * plan.num_features()];
    encode_rows(plan, pts, &mut out, level, store).unwrap();
    out
}

fn levels_here() -> Vec<SimdLevel> {
    LEVELS
        .into_iter()
        .filter(|l| *l <= SimdLevel::supported())
        .collect()
}

#[test]
fn every_supported_level_agrees_with_the_portable_kernel() {
    let mut compared = 0;
    for degrees in [1, 3, 10, 40] {
        let plan = Plan::new(degrees, Basis::Satclip).unwrap();
        for n in [1, LANES - 1, LANES, 3 * LANES + 5, 61] {
            let pts = points(n);
            let reference: Vec<f64> = run(&plan, &pts, SimdLevel::Baseline, Store::Cached);
            for level in levels_here() {
                for store in [Store::Cached, Store::Streaming] {
                    let got: Vec<f64> = run(&plan, &pts, level, store);
                    for (k, (a, b)) in got.iter().zip(&reference).enumerate() {
                        // FMA contraction may round differently from the portable path; the
                        // recurrences keep that at a few ulps of the O(1) values.
                        assert!(
                            (a - b).abs() <= 1e-13,
                            "{} L={degrees} n={n} {store:?} element {k}: {a} vs {b}",
                            level.name()
                        );
                    }
                    let single: Vec<f32> = run(&plan, &pts, level, store);
                    for (a, b) in single.iter().zip(&got) {
                        assert_eq!(
                            *a,
                            *b as f32,
                            "{} float32 is the rounded float64",
                            level.name()
                        );
                    }
                    compared += 1;
                }
            }
        }
    }
    assert!(compared >= 4 * 5 * 2, "compared {compared} runs");
}

#[test]
fn gradient_kernel_writes_the_same_with_either_store_at_every_level() {
    // Which store kind a call takes depends on the machine's caches (see
    // `harmonics::Destination`), so both are driven here directly, with a row count that leaves
    // a partial last block.
    let n = 203;
    let pts = random_points(n, 5);
    for degrees in [10, 40] {
        let plan = Plan::new(degrees, Basis::Satclip).unwrap();
        let nf = plan.num_features();
        let (mut v_ref, mut g_ref) = (vec![0.0f64; n * nf], vec![0.0f64; 2 * n * nf]);
        rows_with_gradient(
            &plan,
            &pts,
            &mut v_ref,
            &mut g_ref,
            SimdLevel::Baseline,
            false,
        )
        .unwrap();
        for level in levels_here() {
            for streaming in [false, true] {
                let (mut v, mut g) = (vec![0.0f64; n * nf], vec![0.0f64; 2 * n * nf]);
                rows_with_gradient(&plan, &pts, &mut v, &mut g, level, streaming).unwrap();
                super::stream::fence();
                let close =
                    |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12);
                assert!(close(&v, &v_ref), "{level:?} streaming={streaming} values");
                assert!(
                    close(&g, &g_ref),
                    "{level:?} streaming={streaming} gradients"
                );
                if level == SimdLevel::active() && !streaming {
                    // The public entry point computes the same (any store kind).
                    let (mut v1, mut g1) = (vec![0.0f64; n * nf], vec![0.0f64; 2 * n * nf]);
                    spherical_harmonics_with_gradient_into(&plan, &pts, &mut v1, &mut g1).unwrap();
                    assert_eq!(v1, v);
                    assert_eq!(g1, g);
                }
            }
        }
    }
}

#[test]
fn levels_below_the_best_are_really_exercised() {
    // On an AVX-512 machine this runs all three kernels; the list is printed so that a CI log
    // shows which were covered.
    let here: Vec<&str> = levels_here().into_iter().map(SimdLevel::name).collect();
    eprintln!("SIMD levels tested on this CPU: {here:?}");
    assert_eq!(here[0], "baseline");
    assert_eq!(*here.last().unwrap(), SimdLevel::supported().name());
}

/// Longitudes in (180, 360] with their twins `lon - 360` (exact), plus 180 / -180 and 360 / 0,
/// at latitudes that include both poles; every pair is (lon, lat) interleaved.
fn longitude_twins() -> (Vec<f64>, Vec<f64>) {
    let mut lons = vec![
        180.000_000_1,
        180.5,
        225.0,
        270.0,
        314.999_999,
        315.0,
        359.999,
        359.999_999_999_9,
        360.0,
    ];
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    lons.extend((0..40).map(|i| 180.0 + 180.0 * (i as f64 * golden).fract()));
    let lats = [-90.0, -89.999, -33.3, -0.0, 0.0, 12.5, 89.999_999_9, 90.0];
    let (mut wide, mut twin) = (Vec::new(), Vec::new());
    for (i, &lon) in lons.iter().enumerate() {
        let lat = lats[i % lats.len()];
        let back = if lon > 180.0 { lon - 360.0 } else { lon };
        wide.extend_from_slice(&[lon, lat]);
        twin.extend_from_slice(&[back, lat]);
    }
    // Not remapped, but the same meridians, so the same bits: the antimeridian from both sides,
    // and 360 against 0.
    wide.extend_from_slice(&[180.0, 45.0, 360.0, -60.0]);
    twin.extend_from_slice(&[-180.0, 45.0, 0.0, -60.0]);
    (wide, twin)
}

fn same_bits<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (*x).into().to_bits() == (*y).into().to_bits())
}

#[test]
fn longitudes_up_to_360_give_the_bits_of_lon_minus_360_at_every_level() {
    let (wide, twin) = longitude_twins();
    let n = wide.len() / 2;
    let (wide32, twin32): (Vec<f32>, Vec<f32>) = (
        wide.iter().map(|&x| x as f32).collect(),
        // In f32 too `lon - 360` is exact, so the f32 twin is the rounded f64 twin's own twin.
        wide.iter()
            .zip(&twin)
            .map(|(&w, &t)| {
                if w > 180.0 {
                    w as f32 - 360.0
                } else {
                    t as f32
                }
            })
            .collect(),
    );
    let mut compared = 0;
    for degrees in [1, 2, 10, 40] {
        let plan = Plan::new(degrees, Basis::Satclip).unwrap();
        let nf = plan.num_features();
        for level in levels_here() {
            for store in [Store::Cached, Store::Streaming] {
                let a: Vec<f64> = run(&plan, &wide, level, store);
                let b: Vec<f64> = run(&plan, &twin, level, store);
                assert!(same_bits(&a, &b), "{} L={degrees} {store:?}", level.name());
                let a: Vec<f32> = run(&plan, &wide, level, store);
                let b: Vec<f32> = run(&plan, &twin, level, store);
                assert!(
                    same_bits(&a, &b),
                    "{} L={degrees} {store:?} f32",
                    level.name()
                );
                let (mut a, mut b) = (vec![0.0f64; n * nf], vec![0.0f64; n * nf]);
                encode_rows(&plan, &wide32, &mut a, level, store).unwrap();
                encode_rows(&plan, &twin32, &mut b, level, store).unwrap();
                assert!(
                    same_bits(&a, &b),
                    "{} L={degrees} {store:?} f32 in",
                    level.name()
                );
            }
            for streaming in [false, true] {
                let grads = |pts: &[f64]| {
                    let (mut v, mut g) = (vec![0.0f64; n * nf], vec![0.0f64; 2 * n * nf]);
                    rows_with_gradient(&plan, pts, &mut v, &mut g, level, streaming).unwrap();
                    super::stream::fence();
                    (v, g)
                };
                let ((va, ga), (vb, gb)) = (grads(&wide), grads(&twin));
                assert!(same_bits(&va, &vb), "{} L={degrees} values", level.name());
                assert!(
                    same_bits(&ga, &gb),
                    "{} L={degrees} gradients",
                    level.name()
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 4 * 2, "compared {compared} runs");
}
