//! The spherical-harmonics kernel: a block of `LANES` points at a time, one point per SIMD
//! lane (structure of arrays), so that every recurrence step is one vector operation.
//!
//! Per point there is one sincos for latitude and one for longitude; everything after that is
//! recurrences: `cos(m phi), sin(m phi)` by rotation and the normalised associated Legendre
//! functions by the three-term recurrence in `l` for each `m` (see `plan.rs`).
//!
//! The code is written as plain loops over `[f64; LANES]` and compiled three times, for
//! AVX-512, AVX2+FMA and the baseline target; `SimdLevel::active` picks one at run time.

use super::block::{
    angles, lanes_of, staging_as, target_feature_kernels, transpose_into, unpack, zonal_column,
    AlignedLanes, Angles, Isa, Portable,
};
#[cfg(target_arch = "x86_64")]
use super::block::{Avx2, Avx512};
pub(crate) use super::block::{Lanes, LANES};
use super::simd::SimdLevel;
use super::stream;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::real::Real;

/// How the finished block is written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// Ordinary stores: the output stays in cache for whoever reads it next.
    Cached,
    /// Streaming stores via a staging block (see `stream.rs`): for outputs far larger than
    /// the cache, where they save the read-for-ownership traffic.
    Streaming,
}

/// Writes the `(n, L*L)` row-major features of the `n` points in `lonlat` (interleaved
/// lon, lat) into `out`. Inputs must be validated; `out.len() == n * L * L`.
pub(crate) fn encode_rows<I: Real, O: Real>(
    plan: &Plan,
    lonlat: &[I],
    out: &mut [O],
    level: SimdLevel,
    store: Store,
) -> Result<()> {
    debug_assert_eq!(out.len(), lonlat.len() / 2 * plan.num_features());
    // The thread-local is reached here, outside the target-feature functions: the closure
    // `with_borrow_mut` takes is compiled without their features, so the kernel must not be
    // inside it.
    WORKSPACE.with_borrow_mut(|ws| {
        // Grow the buffers fallibly here, so that running out of memory is an error the
        // caller can report (MemoryError), not an abort inside `Vec::resize`.
        ws.reserve(plan.num_features(), store)?;
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `SimdLevel::Avx512` is only ever active when the CPU reports these features.
            SimdLevel::Avx512 => unsafe { encode_rows_avx512(plan, lonlat, out, store, ws) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX2 + FMA.
            SimdLevel::Avx2 => unsafe { encode_rows_avx2(plan, lonlat, out, store, ws) },
            _ => encode_rows_with::<I, O, Portable>(plan, lonlat, out, store, ws),
        }
        Ok(())
    })
}

/// Workspaces up to this size stay cached in each thread between calls (L <= 256 with
/// streaming stores); larger ones (high L) are freed when the call ends, so that one L = 1000
/// call does not pin ~128 MB per thread for the life of the process.
pub(crate) const WORKSPACE_CACHE_BYTES: usize = 8 << 20;

/// Bytes of workspace a call at `nf` features with `store` needs per thread.
pub(crate) fn workspace_bytes_for(nf: usize, store: Store) -> usize {
    let staged = if store == Store::Streaming {
        LANES * nf
    } else {
        0
    };
    nf.saturating_mul(std::mem::size_of::<Lanes>())
        .saturating_add(staged.saturating_mul(std::mem::size_of::<f64>()))
}

/// Bytes this thread's workspace holds now.
pub(crate) fn cached_workspace_bytes() -> usize {
    WORKSPACE.with_borrow(|ws| {
        ws.scratch.capacity() * std::mem::size_of::<AlignedLanes>()
            + ws.staging.capacity() * std::mem::size_of::<f64>()
    })
}

/// Frees this thread's workspace if it is above [`WORKSPACE_CACHE_BYTES`].
pub(crate) fn trim_workspace() {
    WORKSPACE.with_borrow_mut(|ws| {
        let bytes = ws.scratch.capacity() * std::mem::size_of::<AlignedLanes>()
            + ws.staging.capacity() * std::mem::size_of::<f64>();
        if bytes > WORKSPACE_CACHE_BYTES {
            *ws = Workspace::default();
        }
    })
}

// The kernel compiled per instruction set (the arguments are `encode_rows_with`'s).
target_feature_kernels!(encode_rows_avx512, encode_rows_avx2 => encode_rows_with(
    plan: &Plan, lonlat: &[I], out: &mut [O], store: Store, ws: &mut Workspace));

/// Per-thread buffers, kept between calls: allocated per task they would cost a page fault
/// and a page clear per 4 KiB (they are too large for malloc's heap and get mmap'd).
#[derive(Default)]
pub(crate) struct Workspace {
    /// Feature-major block, `scratch[k][lane]`: the recurrences write whole vectors here.
    scratch: Vec<AlignedLanes>,
    /// Row-major copy of the block for streaming stores (f64 storage, viewed as `O`).
    staging: Vec<f64>,
}

impl Workspace {
    fn reserve(&mut self, nf: usize, store: Store) -> Result<()> {
        let staged = if store == Store::Streaming {
            LANES * nf
        } else {
            0
        };
        let oom = |_| Error::OutOfMemory {
            bytes: workspace_bytes_for(nf, store),
        };
        self.scratch
            .try_reserve_exact(nf.saturating_sub(self.scratch.len()))
            .map_err(oom)?;
        self.staging
            .try_reserve_exact(staged.saturating_sub(self.staging.len()))
            .map_err(oom)?;
        Ok(())
    }
}

thread_local! {
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::new(Workspace::default());
}

#[inline(always)]
fn encode_rows_with<I: Real, O: Real, X: Isa>(
    plan: &Plan,
    lonlat: &[I],
    out: &mut [O],
    store: Store,
    ws: &mut Workspace,
) {
    let nf = plan.num_features();
    let scratch = lanes_of(&mut ws.scratch, nf);
    let staged = if store == Store::Streaming {
        LANES * nf
    } else {
        0
    };
    let staging = staging_as::<O>(&mut ws.staging, staged);
    encode_blocks::<I, O, X>(plan, lonlat, out, scratch, staging, store);
}

#[inline(always)]
fn encode_blocks<I: Real, O: Real, X: Isa>(
    plan: &Plan,
    lonlat: &[I],
    out: &mut [O],
    scratch: &mut [Lanes],
    staging: &mut [O],
    store: Store,
) {
    let nf = plan.num_features();
    let mut pairs = lonlat.chunks_exact(2 * LANES);
    let mut rows = out.chunks_exact_mut(LANES * nf);
    for (pts, block) in (&mut pairs).zip(&mut rows) {
        let (lon, lat) = unpack(pts);
        encode_block(plan, &lon, &lat, scratch);
        match store {
            Store::Cached => transpose_into::<O, X>(scratch, block, LANES),
            Store::Streaming => {
                transpose_into::<O, X>(scratch, staging, LANES);
                X::copy_streaming(staging, block);
            }
        }
    }
    if store == Store::Streaming {
        stream::fence();
    }
    // A last partial block: pad with (0, 0) and keep only the real rows.
    let rest = pairs.remainder();
    if !rest.is_empty() {
        let n = rest.len() / 2;
        let (lon, lat) = unpack(rest);
        encode_block(plan, &lon, &lat, scratch);
        transpose_into::<O, X>(scratch, rows.into_remainder(), n);
    }
}

#[inline(always)]
fn encode_block(plan: &Plan, lon: &Lanes, lat: &Lanes, out: &mut [Lanes]) {
    let degrees = plan.degrees;
    assert_eq!(out.len(), degrees * degrees);
    let Angles {
        x,
        s,
        cos_phi,
        sin_phi,
    } = angles(lon, lat);

    let mut pmm = [plan.p00; LANES]; // Pbar_m^m
    let mut cos_m = [1.0; LANES]; // cos(m phi)
    let mut sin_m = [0.0; LANES]; // sin(m phi)
    let mut step = 0; // index into plan.a / plan.b
    for m in 0..degrees {
        if m > 0 {
            let d = plan.diag[m];
            for i in 0..LANES {
                pmm[i] *= d * s[i];
                let c = cos_m[i] * cos_phi[i] - sin_m[i] * sin_phi[i];
                sin_m[i] = sin_m[i] * cos_phi[i] + cos_m[i] * sin_phi[i];
                cos_m[i] = c;
            }
        }
        // The per-(m, sign) factor that turns Pbar_l^m into the output column.
        let (mut fc, mut fs) = ([0.0; LANES], [0.0; LANES]);
        if m == 0 {
            fc = [plan.zonal_scale; LANES];
        } else {
            for i in 0..LANES {
                fc[i] = std::f64::consts::SQRT_2 * cos_m[i];
                fs[i] = std::f64::consts::SQRT_2 * sin_m[i];
            }
        }

        let mut p_prev = pmm; // Pbar_{l-2}^m
        store(out, zonal_column(m), m, &pmm, &fc, &fs);
        if m + 1 == degrees {
            break;
        }
        let mut p = [0.0; LANES]; // Pbar_{l-1}^m
        let od = plan.offdiag[m];
        for i in 0..LANES {
            p[i] = od * x[i] * pmm[i];
        }
        store(out, zonal_column(m + 1), m, &p, &fc, &fs);
        for l in m + 2..degrees {
            let (a, b) = (plan.a[step], plan.b[step]);
            step += 1;
            let mut next = [0.0; LANES];
            for i in 0..LANES {
                next[i] = a * x[i].mul_add(p[i], -b * p_prev[i]);
            }
            p_prev = p;
            p = next;
            store(out, zonal_column(l), m, &p, &fc, &fs);
        }
    }
}

#[inline(always)]
fn store(out: &mut [Lanes], centre: usize, m: usize, p: &Lanes, fc: &Lanes, fs: &Lanes) {
    let mut pos = [0.0; LANES];
    for i in 0..LANES {
        pos[i] = p[i] * fc[i];
    }
    out[centre + m] = pos;
    if m > 0 {
        let mut neg = [0.0; LANES];
        for i in 0..LANES {
            neg[i] = p[i] * fs[i];
        }
        out[centre - m] = neg;
    }
}
