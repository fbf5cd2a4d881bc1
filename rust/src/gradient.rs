//! Spherical harmonics together with their derivatives in longitude and latitude.
//!
//! Output layout: values `(n, L*L)` row-major as in `harmonics`, and gradients `(n, L*L, 2)`
//! row-major, `gradients[i][k][0] = dY_k/dlon`, `gradients[i][k][1] = dY_k/dlat`, both **per
//! degree** (the inputs are degrees), i.e. the derivative in radians times `pi / 180`.
//!
//! The entry points validate, split the rows into tasks and run them on the pool, as
//! `harmonics` does for the values alone; the derivatives themselves (the differentiated
//! recurrences) and their block kernel are in `kernel/gradient.rs`.

use rayon::prelude::*;

use crate::coords::validate;
use crate::error::{Error, Result};
use crate::harmonics::{Destination, SERIAL_POINTS};
use crate::kernel::block::LANES;
use crate::kernel::gradient::{release_large_scratch, rows_with_gradient};
use crate::kernel::simd::SimdLevel;
use crate::kernel::values::Store;
use crate::parallel::{pool, rows_per_task};
use crate::plan::Plan;
use crate::real::Real;

// The serial cut-off and the streaming threshold are the value path's (`harmonics.rs`); for
// gradients the threshold applies to values + gradients together.

/// Fills `values` (`n x L*L`) and `gradients` (`n x L*L x 2`, per degree) for the `n` points
/// in `lonlat` (interleaved lon, lat in degrees). Checks the input first and names the first
/// bad row; nothing is written if it fails.
pub fn spherical_harmonics_with_gradient_into<I: Real, O: Real>(
    plan: &Plan,
    lonlat: &[I],
    values: &mut [O],
    gradients: &mut [O],
) -> Result<()> {
    compute_with_gradient(plan, lonlat, values, gradients, Destination::Reused)
}

/// [`spherical_harmonics_with_gradient_into`], told where the output memory comes from (see
/// `harmonics::Destination`).
pub(crate) fn compute_with_gradient<I: Real, O: Real>(
    plan: &Plan,
    lonlat: &[I],
    values: &mut [O],
    gradients: &mut [O],
    destination: Destination,
) -> Result<()> {
    validate(lonlat)?;
    let n = lonlat.len() / 2;
    let nf = plan.num_features();
    if values.len() != n * nf {
        return Err(Error::OutputSize {
            expected: (n, nf),
            found: values.len(),
        });
    }
    if gradients.len() != 2 * n * nf {
        return Err(Error::OutputSize {
            expected: (n, 2 * nf),
            found: gradients.len(),
        });
    }
    let level = SimdLevel::active();
    // Values and gradients are allocated together: the values speak for both.
    let bytes = std::mem::size_of_val(values) + std::mem::size_of_val(gradients);
    let block = LANES * 3 * nf * std::mem::size_of::<O>();
    let streaming =
        destination.store(values.as_ptr() as *const u8, bytes, block) == Store::Streaming;
    if n <= SERIAL_POINTS {
        let result = rows_with_gradient(plan, lonlat, values, gradients, level, streaming);
        release_large_scratch(nf);
        return result;
    }
    let pool = pool();
    let rows = rows_per_task(
        n,
        3 * nf * std::mem::size_of::<O>(),
        pool.current_num_threads(),
        LANES,
    );
    let result = pool.install(|| {
        values
            .par_chunks_mut(rows * nf)
            .zip(gradients.par_chunks_mut(rows * 2 * nf))
            .zip(lonlat.par_chunks(rows * 2))
            .try_for_each(|((v, g), pts)| rows_with_gradient(plan, pts, v, g, level, streaming))
    });
    release_large_scratch(nf);
    result
}

/// Convenience for Rust callers: allocates and returns `(values, gradients)`.
pub fn spherical_harmonics_with_gradient<I: Real>(
    lonlat: &[I],
    degrees: usize,
    basis: crate::plan::Basis,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let plan = Plan::new(degrees, basis)?;
    let n = lonlat.len() / 2;
    let mut values = vec![0.0; n * plan.num_features()];
    let mut gradients = vec![0.0; 2 * n * plan.num_features()];
    spherical_harmonics_with_gradient_into(&plan, lonlat, &mut values, &mut gradients)?;
    Ok((values, gradients))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harmonics::spherical_harmonics;
    use crate::kernel::gradient::DEG;
    use crate::plan::Basis;

    use crate::test_points::{random_and_edge_points, random_points as points};

    #[test]
    fn values_are_bit_identical_to_the_value_kernel() {
        let pts = random_and_edge_points(45, 1);
        for degrees in [1, 2, 7, 40] {
            let want = spherical_harmonics(&pts, degrees, Basis::Satclip).unwrap();
            let (got, _) =
                spherical_harmonics_with_gradient(&pts, degrees, Basis::Satclip).unwrap();
            assert_eq!(got, want, "L = {degrees}");
        }
    }

    #[test]
    fn gradients_match_central_differences() {
        // Fourth-order central differences of the value kernel, away from the poles.
        let degrees = 12;
        let nf = degrees * degrees;
        let pts: Vec<f64> = points(30, 2)
            .chunks(2)
            .flat_map(|p| [p[0].clamp(-179.0, 179.0), p[1].clamp(-89.0, 89.0)])
            .collect();
        let (_, grad) = spherical_harmonics_with_gradient(&pts, degrees, Basis::Satclip).unwrap();
        let h = 1e-3;
        for (i, p) in pts.chunks(2).enumerate() {
            for c in 0..2 {
                let at = |d: f64| {
                    let mut q = [p[0], p[1]];
                    q[c] += d;
                    spherical_harmonics(&q, degrees, Basis::Satclip).unwrap()
                };
                let (p2, p1, m1, m2) = (at(2.0 * h), at(h), at(-h), at(-2.0 * h));
                for k in 0..nf {
                    let fd = (-p2[k] + 8.0 * p1[k] - 8.0 * m1[k] + m2[k]) / (12.0 * h);
                    let g = grad[(i * nf + k) * 2 + c];
                    assert!(
                        (fd - g).abs() < 1e-9,
                        "point {i} feature {k} coord {c}: {g} vs {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn longitude_derivative_vanishes_at_the_poles() {
        let pts = [0.0, 90.0, 33.0, -90.0, -180.0, 90.0];
        let (_, grad) = spherical_harmonics_with_gradient(&pts, 20, Basis::Satclip).unwrap();
        assert!(grad.chunks(2).all(|g| g[0] == 0.0 && g[1].is_finite()));
        // The latitude derivative at a pole is the finite derivative of sin(theta) terms:
        // dY_{1,+1}/dlat at (lon, 90) = sqrt(3/4pi) * x * cos(phi) * pi/180, with x = -1.
        let c1 = (3.0 / (4.0 * std::f64::consts::PI)).sqrt();
        let phi = (0.0f64 + 180.0).to_radians();
        let want = -c1 * phi.cos() * DEG; // x = -1
        assert!((grad[2 * 3 + 1] - want).abs() < 1e-16);
    }

    #[test]
    fn every_batch_size_and_float32_agree() {
        let pts = points(300, 3);
        let plan = Plan::new(9, Basis::Orthonormal).unwrap();
        let (v, g) = spherical_harmonics_with_gradient(&pts, 9, Basis::Orthonormal).unwrap();
        for n in [1, 7, 8, 9, 130, 300] {
            let (mut v1, mut g1) = (vec![0.0f64; n * 81], vec![0.0f64; n * 162]);
            spherical_harmonics_with_gradient_into(&plan, &pts[..2 * n], &mut v1, &mut g1).unwrap();
            assert_eq!(v1[..], v[..n * 81]);
            assert_eq!(g1[..], g[..n * 162]);
        }
        let (mut v32, mut g32) = (vec![0.0f32; 300 * 81], vec![0.0f32; 300 * 162]);
        spherical_harmonics_with_gradient_into(&plan, &pts, &mut v32, &mut g32).unwrap();
        assert!(g32.iter().zip(&g).all(|(a, b)| *a == *b as f32));
    }

    #[test]
    fn invalid_input_or_wrong_sizes_write_nothing() {
        let plan = Plan::new(3, Basis::Satclip).unwrap();
        let pts = [0.0, 0.0, 400.0, 0.0];
        let (mut v, mut g) = (vec![7.0f64; 18], vec![7.0f64; 36]);
        assert!(matches!(
            spherical_harmonics_with_gradient_into(&plan, &pts[..], &mut v, &mut g),
            Err(Error::OutOfRange { row: 1, .. })
        ));
        assert!(v.iter().chain(&g).all(|&x| x == 7.0));
        assert!(spherical_harmonics_with_gradient_into(
            &plan,
            &pts[..2],
            &mut v[..9],
            &mut g[..17]
        )
        .is_err());
    }
}
