//! The block kernel of spherical harmonics together with their derivatives in longitude and
//! latitude (the entry points are in the top-level `gradient` module).
//!
//! The derivatives come from the same recurrences as the values (see `plan.rs`), with
//! `phi = lon + 180`, `theta = lat + 90`, `x = cos theta`, `s = sin theta`:
//!
//! * longitude: `d/dphi [cos(m phi), sin(m phi)] = m [-sin(m phi), cos(m phi)]`, so the
//!   derivative of column `(l, +m)` is `-m` times column `(l, -m)` and that of `(l, -m)` is
//!   `m` times `(l, +m)`; no new function is evaluated.
//! * latitude (`d theta = d lat`): every recurrence step is differentiated with the product
//!   rule, using `dx/dtheta = -s` and `ds/dtheta = x`:
//!   - `Pbar_m^m = diag[m] s Pbar_{m-1}^{m-1}`  ->  `dPbar_m^m = diag[m] (x Pbar_{m-1}^{m-1} + s dPbar_{m-1}^{m-1})`
//!   - `Pbar_{m+1}^m = offdiag[m] x Pbar_m^m`   ->  `offdiag[m] (x dPbar_m^m - s Pbar_m^m)`
//!   - `Pbar_l^m = a (x Pbar_{l-1}^m - b Pbar_{l-2}^m)` -> `a (x dPbar_{l-1}^m - s Pbar_{l-1}^m - b dPbar_{l-2}^m)`
//!
//!   The differentiated recurrence has the same (stable) homogeneous part as the values' one,
//!   and nothing is divided by `s`: at the poles (`s = 0`) every step is exact and the
//!   latitude derivative is the finite derivative of the formula, while the longitude
//!   derivative of each feature is exactly zero (`Pbar_l^m` carries a factor `s^m`).
//!
//! The block kernel follows `values.rs` (one point per lane, compiled per instruction set,
//! dispatched at run time) and shares its building blocks (`block.rs`), but keeps its own
//! recurrence loop so the value-only path stays as lean as it is.
//! The gradient block is laid out as `2 * L*L` feature-major rows (`dlon_k`, `dlat_k`
//! interleaved), so the same 8 x 8 transposes that write the values write the `(.., L*L, 2)`
//! gradient rows directly.

use super::block::{
    angles, lanes_of, staging_as, target_feature_kernels, transpose_into, unpack, zonal_column,
    AlignedLanes, Angles, Isa, Lanes, Portable, LANES,
};
#[cfg(target_arch = "x86_64")]
use super::block::{Avx2, Avx512};
use super::simd::SimdLevel;
use super::stream;
use crate::error::{Error, Result};
use crate::parallel::pool;
use crate::plan::Plan;
use crate::real::Real;
use std::collections::TryReserveError;

/// One degree in radians: the derivatives are per degree.
pub(crate) const DEG: f64 = std::f64::consts::PI / 180.0;

/// Per-thread buffers, kept between calls (see `values::Workspace`): the feature-major blocks
/// the recurrences write, and row-major staging copies for streaming stores (f64 storage,
/// viewed as `O`).
#[derive(Default)]
struct Scratch {
    values: Vec<AlignedLanes>,
    gradients: Vec<AlignedLanes>,
    staging_values: Vec<f64>,
    staging_gradients: Vec<f64>,
}

/// Room for `total` elements in `v`, reserved fallibly.
fn reserve_total<T>(v: &mut Vec<T>, total: usize) -> std::result::Result<(), TryReserveError> {
    v.try_reserve_exact(total.saturating_sub(v.len()))
}

impl Scratch {
    /// Room for one call at `nf` features, reserved fallibly (see `rows_with_gradient`).
    fn reserve(&mut self, nf: usize, streaming: bool) -> Result<()> {
        let staged = if streaming { LANES * nf } else { 0 };
        let lanes = std::mem::size_of::<AlignedLanes>();
        let oom = |_| Error::OutOfMemory {
            bytes: (3 * nf).saturating_mul(lanes) + (3 * staged).saturating_mul(8),
        };
        reserve_total(&mut self.values, nf).map_err(oom)?;
        reserve_total(&mut self.gradients, 2 * nf).map_err(oom)?;
        reserve_total(&mut self.staging_values, staged).map_err(oom)?;
        reserve_total(&mut self.staging_gradients, 2 * staged).map_err(oom)?;
        Ok(())
    }

    fn bytes(&self) -> usize {
        (self.values.capacity() + self.gradients.capacity()) * std::mem::size_of::<AlignedLanes>()
            + (self.staging_values.capacity() + self.staging_gradients.capacity())
                * std::mem::size_of::<f64>()
    }
}

/// Frees the per-thread scratch after a call whose scratch (3 blocks of `nf` lanes, and as much
/// again for staging) exceeds the kernel's cache cap, as `harmonics::release_large_workspaces`
/// does for values: a high-L call must not pin hundreds of MB per thread.
pub(crate) fn release_large_scratch(nf: usize) {
    if 6 * nf * std::mem::size_of::<Lanes>() <= super::values::WORKSPACE_CACHE_BYTES {
        return;
    }
    let trim = || {
        SCRATCH.with_borrow_mut(|ws| {
            if ws.bytes() > super::values::WORKSPACE_CACHE_BYTES {
                *ws = Scratch::default();
            }
        })
    };
    pool().broadcast(|_| trim());
    trim();
}

/// Bytes of gradient scratch cached now, over the pool's threads and the calling thread.
pub(crate) fn cached_scratch_bytes_total() -> usize {
    let here = || SCRATCH.with_borrow(|ws| ws.bytes());
    pool().broadcast(|_| here()).into_iter().sum::<usize>() + here()
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

pub(crate) fn rows_with_gradient<I: Real, O: Real>(
    plan: &Plan,
    lonlat: &[I],
    values: &mut [O],
    gradients: &mut [O],
    level: SimdLevel,
    streaming: bool,
) -> Result<()> {
    // As in values.rs: the thread-local is reached outside the target-feature functions, and
    // its buffers grow fallibly here so that running out of memory is an error (MemoryError in
    // Python), not an abort inside `Vec::resize`.
    SCRATCH.with_borrow_mut(|ws| {
        ws.reserve(plan.num_features(), streaming)?;
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `SimdLevel::Avx512` is only active when the CPU reports these features.
            SimdLevel::Avx512 => unsafe {
                rows_avx512(plan, lonlat, values, gradients, streaming, ws)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX2 + FMA.
            SimdLevel::Avx2 => unsafe { rows_avx2(plan, lonlat, values, gradients, streaming, ws) },
            _ => rows_with::<I, O, Portable>(plan, lonlat, values, gradients, streaming, ws),
        }
        Ok(())
    })
}

// The kernel compiled per instruction set (the arguments are `rows_with`'s).
target_feature_kernels!(rows_avx512, rows_avx2 => rows_with(
    plan: &Plan, lonlat: &[I], values: &mut [O], gradients: &mut [O], streaming: bool, ws: &mut Scratch));

#[inline(always)]
fn rows_with<I: Real, O: Real, X: Isa>(
    plan: &Plan,
    lonlat: &[I],
    values: &mut [O],
    gradients: &mut [O],
    streaming: bool,
    ws: &mut Scratch,
) {
    let nf = plan.num_features();
    let block_values = lanes_of(&mut ws.values, nf);
    let block_gradients = lanes_of(&mut ws.gradients, 2 * nf);
    let staged = if streaming { LANES } else { 0 };
    let stage_v = staging_as::<O>(&mut ws.staging_values, staged * nf);
    let stage_g = staging_as::<O>(&mut ws.staging_gradients, staged * 2 * nf);
    let mut pairs = lonlat.chunks_exact(2 * LANES);
    let mut vrows = values.chunks_exact_mut(LANES * nf);
    let mut grows = gradients.chunks_exact_mut(LANES * 2 * nf);
    for ((pts, vb), gb) in (&mut pairs).zip(&mut vrows).zip(&mut grows) {
        let (lon, lat) = unpack(pts);
        block_with_gradient(plan, &lon, &lat, block_values, block_gradients);
        if streaming {
            transpose_into::<O, X>(block_values, stage_v, LANES);
            X::copy_streaming(stage_v, vb);
            transpose_into::<O, X>(block_gradients, stage_g, LANES);
            X::copy_streaming(stage_g, gb);
        } else {
            transpose_into::<O, X>(block_values, vb, LANES);
            transpose_into::<O, X>(block_gradients, gb, LANES);
        }
    }
    if streaming {
        stream::fence();
    }
    // A last partial block: pad with (0, 0) and keep only the real rows.
    let rest = pairs.remainder();
    if !rest.is_empty() {
        let n = rest.len() / 2;
        let (lon, lat) = unpack(rest);
        block_with_gradient(plan, &lon, &lat, block_values, block_gradients);
        transpose_into::<O, X>(block_values, vrows.into_remainder(), n);
        transpose_into::<O, X>(block_gradients, grows.into_remainder(), n);
    }
}

/// Values (`vals[k]`) and gradients (`grads[2k]` = d/dlon, `grads[2k + 1]` = d/dlat, per
/// degree) of one block of points, feature-major.
#[inline(always)]
fn block_with_gradient(
    plan: &Plan,
    lon: &Lanes,
    lat: &Lanes,
    vals: &mut [Lanes],
    grads: &mut [Lanes],
) {
    let degrees = plan.degrees;
    assert_eq!(vals.len(), degrees * degrees);
    assert_eq!(grads.len(), 2 * degrees * degrees);
    let Angles {
        x,
        s,
        cos_phi,
        sin_phi,
    } = angles(lon, lat);

    let mut pmm = [plan.p00; LANES]; // Pbar_m^m
    let mut dpmm = [0.0; LANES]; // d/dtheta Pbar_m^m
    let mut cos_m = [1.0; LANES];
    let mut sin_m = [0.0; LANES];
    let mut step = 0;
    for m in 0..degrees {
        if m > 0 {
            let d = plan.diag[m];
            for i in 0..LANES {
                dpmm[i] = d * x[i].mul_add(pmm[i], s[i] * dpmm[i]);
                pmm[i] *= d * s[i];
                let c = cos_m[i] * cos_phi[i] - sin_m[i] * sin_phi[i];
                sin_m[i] = sin_m[i] * cos_phi[i] + cos_m[i] * sin_phi[i];
                cos_m[i] = c;
            }
        }
        let f = Factors::new(plan, m, &cos_m, &sin_m);
        f.store(vals, grads, zonal_column(m), &pmm, &dpmm);
        if m + 1 == degrees {
            break;
        }
        let od = plan.offdiag[m];
        let mut p_prev = pmm;
        let mut dp_prev = dpmm;
        let mut p = [0.0; LANES];
        let mut dp = [0.0; LANES];
        for i in 0..LANES {
            p[i] = od * x[i] * pmm[i];
            dp[i] = od * x[i].mul_add(dpmm[i], -s[i] * pmm[i]);
        }
        f.store(vals, grads, zonal_column(m + 1), &p, &dp);
        for l in m + 2..degrees {
            let (a, b) = (plan.a[step], plan.b[step]);
            step += 1;
            let mut next = [0.0; LANES];
            let mut dnext = [0.0; LANES];
            for i in 0..LANES {
                next[i] = a * x[i].mul_add(p[i], -b * p_prev[i]);
                dnext[i] = a * x[i].mul_add(dp[i], (-s[i]).mul_add(p[i], -b * dp_prev[i]));
            }
            p_prev = p;
            dp_prev = dp;
            p = next;
            dp = dnext;
            f.store(vals, grads, zonal_column(l), &p, &dp);
        }
    }
}

/// The per-order factors that turn `Pbar_l^m` and its theta-derivative into the columns
/// `(l, +m)`, `(l, -m)` and their derivatives.
struct Factors {
    m: usize,
    /// Value factors of the +m (cosine) and -m (sine) columns.
    fc: Lanes,
    fs: Lanes,
    /// The same times pi/180 (latitude derivative per degree) ...
    fc_deg: Lanes,
    fs_deg: Lanes,
    /// ... and times m pi/180 (longitude derivative per degree).
    fc_lon: Lanes,
    fs_lon: Lanes,
}

impl Factors {
    #[inline(always)]
    fn new(plan: &Plan, m: usize, cos_m: &Lanes, sin_m: &Lanes) -> Factors {
        let mut f = Factors {
            m,
            fc: [0.0; LANES],
            fs: [0.0; LANES],
            fc_deg: [0.0; LANES],
            fs_deg: [0.0; LANES],
            fc_lon: [0.0; LANES],
            fs_lon: [0.0; LANES],
        };
        let mdeg = m as f64 * DEG;
        for i in 0..LANES {
            if m == 0 {
                f.fc[i] = plan.zonal_scale;
            } else {
                f.fc[i] = std::f64::consts::SQRT_2 * cos_m[i];
                f.fs[i] = std::f64::consts::SQRT_2 * sin_m[i];
            }
            f.fc_deg[i] = f.fc[i] * DEG;
            f.fs_deg[i] = f.fs[i] * DEG;
            f.fc_lon[i] = f.fc[i] * mdeg;
            f.fs_lon[i] = f.fs[i] * mdeg;
        }
        f
    }

    #[inline(always)]
    fn store(&self, vals: &mut [Lanes], grads: &mut [Lanes], centre: usize, p: &Lanes, dp: &Lanes) {
        let m = self.m;
        let pos = centre + m;
        let (mut v, mut glon, mut glat) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
        for i in 0..LANES {
            v[i] = p[i] * self.fc[i];
            // d/dlon of sqrt2 P cos(m phi) = -m sqrt2 P sin(m phi)
            glon[i] = -(p[i] * self.fs_lon[i]);
            glat[i] = dp[i] * self.fc_deg[i];
        }
        vals[pos] = v;
        grads[2 * pos] = glon;
        grads[2 * pos + 1] = glat;
        if m > 0 {
            let neg = centre - m;
            for i in 0..LANES {
                v[i] = p[i] * self.fs[i];
                glon[i] = p[i] * self.fc_lon[i];
                glat[i] = dp[i] * self.fs_deg[i];
            }
            vals[neg] = v;
            grads[2 * neg] = glon;
            grads[2 * neg + 1] = glat;
        }
    }
}
