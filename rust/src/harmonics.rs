//! The public entry point of the numeric core: spherical harmonics for many points, validated
//! and computed in parallel into a caller-provided buffer.

use rayon::prelude::*;

use crate::coords::validate;
use crate::error::{Error, Result};
use crate::kernel::simd::SimdLevel;
use crate::kernel::stream;
use crate::kernel::values::{
    cached_workspace_bytes, encode_rows, trim_workspace, workspace_bytes_for, Store, LANES,
    WORKSPACE_CACHE_BYTES,
};
use crate::parallel::{pool, rows_per_task};
pub use crate::plan::{Basis, Plan};
use crate::real::Real;

/// Below this many points the work runs on the calling thread: handing it to the pool costs
/// more than it saves.
pub(crate) const SERIAL_POINTS: usize = 256;

/// Which threads compute a call. The bits are the same either way: every row is computed by
/// the same kernel whichever thread runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    /// satclip's pool (`parallel::pool`), for inputs above [`SERIAL_POINTS`].
    Pool,
    /// The calling thread only: for callers that run one worker thread per core themselves
    /// (`satclip.encode`'s CPU workers), whose next step reads the output from this core's
    /// cache. Fanned out to the pool, half of it would land in the other cores' caches, and
    /// the pool's threads would compete with the other workers for the cores.
    Caller,
}

/// Where the output memory comes from, which decides how it is best written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A buffer the caller has written before (`out=`): large outputs take streaming stores
    /// (where the kernel's blocks are small enough), which skip reading every line before it
    /// is overwritten.
    Reused,
    /// Memory just allocated for the result. Two cases, told apart by asking the OS whether the
    /// page in its middle is mapped yet (`stream::is_mapped`; not the first page, which the
    /// allocator's own header shares):
    /// * not mapped (large allocations get new pages): the OS zeroes each page as it is first
    ///   touched, which leaves the page's lines in the cache, so ordinary stores hit them;
    ///   streaming stores would write past them, and measured 25-45% slower (an A/B of the two
    ///   store kinds, L = 40 float64, 1 thread, N from 2e3 to 1e5);
    /// * mapped (the allocator handed back memory a previous result used): it is cold, and is
    ///   written like a reused buffer.
    ///
    /// The benchmarks that keep watching this are `rust_fresh` against `sphericart_fresh` and
    /// `fresh_floor` in `benches/bench_spherical_harmonics.py`.
    Fresh,
}

impl Destination {
    /// How an output of `bytes` bytes starting at `first` is best written by a kernel whose
    /// blocks of `LANES` rows take `block_bytes` (see `stream::STREAMED_BLOCK_BYTES`).
    pub(crate) fn store(self, first: *const u8, bytes: usize, block_bytes: usize) -> Store {
        if bytes < stream::streaming_threshold() || block_bytes > stream::STREAMED_BLOCK_BYTES {
            return Store::Cached;
        }
        match self {
            Destination::Reused => Store::Streaming,
            Destination::Fresh if stream::is_mapped(first.wrapping_add(bytes / 2)) => {
                Store::Streaming
            }
            Destination::Fresh => Store::Cached,
        }
    }
}

/// Fills `out` (row-major, `n x L*L`) with the spherical harmonics of the `n` points in
/// `lonlat` (interleaved lon, lat in degrees). Checks the input first and names the first bad
/// row; nothing is written if it fails.
pub fn spherical_harmonics_into<I: Real, O: Real>(
    plan: &Plan,
    lonlat: &[I],
    out: &mut [O],
) -> Result<()> {
    validate(lonlat)?;
    let result = compute_validated(plan, lonlat, out, Destination::Reused, Threads::Pool);
    release_large_workspaces(plan.num_features(), Threads::Pool);
    result
}

/// The computation of [`spherical_harmonics_into`] without the input check (the caller has
/// validated `lonlat`) and without trimming the workspaces afterwards: the Python binding
/// calls this once per batch, checking for Ctrl-C in between.
pub(crate) fn compute_validated<I: Real, O: Real>(
    plan: &Plan,
    lonlat: &[I],
    out: &mut [O],
    destination: Destination,
    threads: Threads,
) -> Result<()> {
    let n = lonlat.len() / 2;
    let nf = plan.num_features();
    if Some(out.len()) != n.checked_mul(nf) {
        return Err(Error::OutputSize {
            expected: (n, nf),
            found: out.len(),
        });
    }
    let level = SimdLevel::active();
    let store = destination.store(
        out.as_ptr() as *const u8,
        std::mem::size_of_val(out),
        LANES * nf * std::mem::size_of::<O>(),
    );
    if n <= SERIAL_POINTS || threads == Threads::Caller {
        return encode_rows(plan, lonlat, out, level, store);
    }
    let pool = pool();
    let rows = rows_per_task(
        n,
        nf * std::mem::size_of::<O>(),
        pool.current_num_threads(),
        LANES,
    );
    pool.install(|| {
        out.par_chunks_mut(rows * nf)
            .zip(lonlat.par_chunks(rows * 2))
            .try_for_each(|(o, pts)| encode_rows(plan, pts, o, level, store))
    })
}

/// After a call at `nf` features run by `threads`: frees the per-thread workspaces if they
/// grew above the cache cap (see `kernel::values::WORKSPACE_CACHE_BYTES`). For a pool call this
/// costs one broadcast to the pool, and only for high L, where a call takes far longer than
/// that; a `Caller` call touched no pool thread (and must not start the pool), so only the
/// calling thread's workspace is trimmed.
pub(crate) fn release_large_workspaces(nf: usize, threads: Threads) {
    if workspace_bytes_for(nf, Store::Streaming) > WORKSPACE_CACHE_BYTES {
        if threads == Threads::Pool {
            pool().broadcast(|_| trim_workspace());
        }
        trim_workspace();
    }
}

/// Bytes of workspace cached now (values and gradient kernels), over the pool's threads and
/// the calling thread.
pub(crate) fn cached_workspace_bytes_total() -> usize {
    pool()
        .broadcast(|_| cached_workspace_bytes())
        .into_iter()
        .sum::<usize>()
        + cached_workspace_bytes()
        + crate::kernel::gradient::cached_scratch_bytes_total()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    use crate::test_points::random_and_edge_points as points;

    #[test]
    fn low_degrees_match_closed_forms() {
        // Real orthonormal SH without Condon-Shortley phase, theta = lat + 90, phi = lon + 180.
        let pts = points(200, 1);
        let y = spherical_harmonics(&pts, 3, Basis::Orthonormal).unwrap();
        for (i, p) in pts.chunks(2).enumerate() {
            let (phi, theta) = ((p[0] + 180.0).to_radians(), (p[1] + 90.0).to_radians());
            let (x, s) = (theta.cos(), theta.sin());
            let c1 = (3.0 / (4.0 * PI)).sqrt();
            let c2 = (15.0 / (4.0 * PI)).sqrt();
            let want = [
                0.5 / PI.sqrt(),
                c1 * s * phi.sin(),
                c1 * x,
                c1 * s * phi.cos(),
                0.5 * c2 * s * s * (2.0 * phi).sin(),
                c2 * s * x * phi.sin(),
                (5.0 / (16.0 * PI)).sqrt() * (3.0 * x * x - 1.0),
                c2 * s * x * phi.cos(),
                0.5 * c2 * s * s * (2.0 * phi).cos(),
            ];
            for k in 0..9 {
                let got = y[i * 9 + k];
                assert!(
                    (got - want[k]).abs() < 1e-14,
                    "point {i} column {k}: {got} vs {}",
                    want[k]
                );
            }
        }
    }

    #[test]
    fn addition_theorem_at_degree_200() {
        let degrees = 200;
        let pts = points(20, 2);
        let y = spherical_harmonics(&pts, degrees, Basis::Orthonormal).unwrap();
        let nf = degrees * degrees;
        for row in y.chunks(nf) {
            for l in 0..degrees {
                let sum: f64 = row[l * l..(l + 1) * (l + 1)].iter().map(|v| v * v).sum();
                let want = (2 * l + 1) as f64 / (4.0 * PI);
                assert!(
                    ((sum - want) / want).abs() < 1e-12,
                    "l = {l}: {sum} vs {want}"
                );
            }
        }
    }

    #[test]
    fn satclip_basis_scales_zonal_columns_by_pi() {
        let pts = points(37, 3);
        let sat = spherical_harmonics(&pts, 6, Basis::Satclip).unwrap();
        let ortho = spherical_harmonics(&pts, 6, Basis::Orthonormal).unwrap();
        for (k, (a, b)) in sat.iter().zip(&ortho).enumerate() {
            let col = k % 36;
            let zonal = (0..6).any(|l| col == l * l + l);
            let want = if zonal { b * PI } else { *b };
            assert!((a - want).abs() < 1e-15);
        }
    }

    #[test]
    fn every_batch_size_agrees_with_single_points() {
        let pts = points(40, 4);
        let single: Vec<f64> = pts
            .chunks(2)
            .flat_map(|p| spherical_harmonics(p, 5, Basis::Satclip).unwrap())
            .collect();
        for n in [1, 7, 8, 9, 16, 23, 45] {
            let batch = spherical_harmonics(&pts[..2 * n], 5, Basis::Satclip).unwrap();
            assert_eq!(batch[..], single[..25 * n], "batch of {n}");
        }
    }

    #[test]
    fn large_outputs_take_the_streaming_path_and_agree() {
        // 2000 points x 40^2 features x 8 bytes = 25.6 MB is above the streaming threshold;
        // 10 points are far below it.
        let pts = points(2000, 5);
        let plan = Plan::new(40, Basis::Satclip).unwrap();
        let n = pts.len() / 2;
        let mut big = vec![0.0f64; n * 1600];
        spherical_harmonics_into(&plan, &pts, &mut big).unwrap();
        let mut small = vec![0.0f64; 10 * 1600];
        for start in [0usize, 999, n - 10] {
            spherical_harmonics_into(&plan, &pts[2 * start..2 * start + 20], &mut small).unwrap();
            assert_eq!(small[..], big[start * 1600..(start + 10) * 1600]);
        }
    }

    #[test]
    fn caller_threads_compute_here_with_the_pool_bits() {
        // 2000 points is far above SERIAL_POINTS, so `Pool` hands the rows to the pool.
        let pts = points(2000, 8);
        let plan = Plan::new(40, Basis::Satclip).unwrap();
        let n = pts.len() / 2;
        // Each run on a new thread: its workspace is empty until a kernel runs on it.
        let run = |threads: Threads| {
            let (pts, plan) = (&pts, &plan);
            std::thread::scope(|scope| {
                scope
                    .spawn(move || {
                        let mut out = vec![0.0f32; n * 1600];
                        compute_validated(plan, pts, &mut out, Destination::Reused, threads)
                            .unwrap();
                        (out, cached_workspace_bytes())
                    })
                    .join()
                    .unwrap()
            })
        };
        let (pooled, pool_here) = run(Threads::Pool);
        let (here, caller_here) = run(Threads::Caller);
        assert_eq!(pooled, here);
        assert_eq!(pool_here, 0, "Pool ran a kernel on the calling thread");
        assert!(
            caller_here > 0,
            "Caller did not run the kernel on the calling thread"
        );
    }

    #[test]
    fn float32_output_is_the_rounded_float64_result() {
        let pts = points(100, 6);
        let plan = Plan::new(12, Basis::Satclip).unwrap();
        let mut f32s = vec![0.0f32; 105 * 144];
        spherical_harmonics_into(&plan, &pts, &mut f32s).unwrap();
        let f64s = spherical_harmonics(&pts, 12, Basis::Satclip).unwrap();
        assert!(f32s.iter().zip(&f64s).all(|(a, b)| *a == *b as f32));
    }

    #[test]
    fn invalid_input_writes_nothing() {
        let plan = Plan::new(3, Basis::Satclip).unwrap();
        let pts = [0.0, 0.0, 0.0, 95.0];
        let mut out = vec![7.0f64; 18];
        assert!(matches!(
            spherical_harmonics_into(&plan, &pts[..], &mut out),
            Err(Error::OutOfRange { row: 1, .. })
        ));
        assert!(out.iter().all(|&v| v == 7.0));
        let mut short = vec![0.0f64; 17];
        assert_eq!(
            spherical_harmonics_into(&plan, &pts[..2], &mut short),
            Err(Error::OutputSize {
                expected: (1, 9),
                found: 17
            })
        );
    }

    #[test]
    fn high_degree_workspaces_are_not_kept() {
        let pts = points(50, 7);
        spherical_harmonics(&pts, 600, Basis::Satclip).unwrap();
        // 600^2 features x 64 B = 23 MB of scratch per thread if it were kept.
        assert!(
            cached_workspace_bytes_total()
                <= (crate::parallel::num_threads() + 1) * WORKSPACE_CACHE_BYTES
        );
        assert!(cached_workspace_bytes() == 0);
    }
}
