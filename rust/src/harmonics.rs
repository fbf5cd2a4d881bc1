//! The public entry point of the numeric core: spherical harmonics for many points, validated
//! and computed in parallel into a caller-provided buffer.

use rayon::prelude::*;

use crate::coords::validate;
use crate::error::{Error, Result};
use crate::kernel::{encode_rows, Store, LANES};
use crate::parallel::{pool, rows_per_task};
pub use crate::plan::{Basis, Plan};
use crate::real::Real;
use crate::simd::SimdLevel;

/// Below this many points the work runs on the calling thread: handing it to the pool costs
/// more than it saves.
const SERIAL_POINTS: usize = 256;

/// Outputs of at least this size are written with streaming stores (see `stream.rs`): they
/// cannot stay in the cache anyway. Smaller ones stay cached for the matmul that follows.
const STREAM_BYTES: usize = 16 << 20;

/// Fills `out` (row-major, `n x L*L`) with the spherical harmonics of the `n` points in
/// `lonlat` (interleaved lon, lat in degrees). Checks the input first and names the first bad
/// row; nothing is written if it fails.
pub fn spherical_harmonics_into<I: Real, O: Real>(
    plan: &Plan,
    lonlat: &[I],
    out: &mut [O],
) -> Result<()> {
    validate(lonlat)?;
    let n = lonlat.len() / 2;
    let nf = plan.num_features();
    if out.len() != n * nf {
        return Err(Error::OutputSize {
            expected: (n, nf),
            found: out.len(),
        });
    }
    let level = SimdLevel::active();
    let store = if std::mem::size_of_val(out) >= STREAM_BYTES {
        Store::Streaming
    } else {
        Store::Cached
    };
    if n <= SERIAL_POINTS {
        encode_rows(plan, lonlat, out, level, store);
        return Ok(());
    }
    let rows = rows_per_task(nf * std::mem::size_of::<O>(), LANES);
    pool().install(|| {
        out.par_chunks_mut(rows * nf)
            .zip(lonlat.par_chunks(rows * 2))
            .for_each(|(o, pts)| encode_rows(plan, pts, o, level, store));
    });
    Ok(())
}

/// Convenience for Rust callers: allocates and returns the `n x L*L` features.
pub fn spherical_harmonics<I: Real>(
    lonlat: &[I],
    degrees: usize,
    basis: Basis,
) -> Result<Vec<f64>> {
    let plan = Plan::new(degrees, basis)?;
    let mut out = vec![0.0; lonlat.len() / 2 * plan.num_features()];
    spherical_harmonics_into(&plan, lonlat, &mut out)?;
    Ok(out)
}
