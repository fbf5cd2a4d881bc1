//! The pyo3 binding, `satclip._core`. Deliberately thin: it checks the array types and
//! layout Python hands over, releases the GIL, calls `harmonics`, and turns `Error` into
//! the exception classes defined in `satclip/errors.py`. Friendlier input handling
//! (lists, integer dtypes, torch tensors) lives in the Python package.

use numpy::{Element, PyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;

mod args;
mod gradient;

use crate::error::{Column, Error};
use crate::harmonics::{compute_validated, Basis, Destination, Plan, Threads};
use crate::kernel::simd::SimdLevel;
use crate::kernel::values::LANES;
use crate::parallel;
use crate::python::args::{
    borrow_output, check_pairs, check_shape, copy_input, dispatch_float, lonlat_dtype_error,
    not_float_array, output_slice, Float,
};
use crate::real::Real;

pyo3::import_exception!(satclip.errors, CoordinateError);
pyo3::import_exception!(satclip.errors, DegreeError);
pyo3::import_exception!(satclip.errors, ShapeError);
pyo3::import_exception!(satclip.errors, DTypeError);
pyo3::import_exception!(satclip.errors, InternalError);

pub(crate) fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::Degrees { .. } => DegreeError::new_err(msg),
        Error::NotPairs { .. } | Error::OutputSize { .. } => ShapeError::new_err(msg),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(msg),
        Error::NonFinite { row, column, .. } | Error::OutOfRange { row, column, .. } => {
            let e = CoordinateError::new_err(msg);
            // Let callers find the row programmatically as well as in the message.
            let value = e.value(py);
            let _ = value.setattr("row", row);
            let _ = value.setattr(
                "column",
                match column {
                    Column::Longitude => "lon",
                    Column::Latitude => "lat",
                },
            );
            e
        }
    }
}

pub(crate) fn plan_for(py: Python<'_>, degrees: i64, basis: &str) -> PyResult<Plan> {
    let basis = Basis::parse(basis).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "unknown basis {basis:?}; expected \"satclip\" or \"orthonormal\""
        ))
    })?;
    // A negative L is reported like zero: "must be between 1 and MAX".
    let degrees = usize::try_from(degrees).unwrap_or(0);
    Plan::new(degrees, basis).map_err(|e| to_pyerr(py, e))
}

/// Runs `f` with the GIL released, turning a panic (a bug: none is expected) into a Python
/// exception instead of letting it cross the FFI as `pyo3_runtime.PanicException`.
pub(crate) fn detach_catching<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    match py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))) {
        Ok(result) => result.map_err(|e| to_pyerr(py, e)),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(InternalError::new_err(format!(
                "internal error in satclip's Rust core (please report it): {what}"
            )))
        }
    }
}

/// Output bytes per batch between two checks for Ctrl-C (`Python::check_signals`): a fraction
/// of a second of work on any machine, and large enough (hundreds of 512 KiB tasks) that the
/// barrier between batches costs nothing measurable.
const SIGNAL_CHECK_BYTES: usize = 256 << 20;

/// Computes into `out` (already checked for dtype and shape), with the GIL released between checks for
/// signals.
fn run<I: Float, O: Float>(
    py: Python<'_>,
    plan: &Plan,
    lonlat: &Bound<'_, PyArray2<I>>,
    out: &Bound<'_, PyArray2<O>>,
    destination: Destination,
    threads: Threads,
) -> PyResult<()> {
    let input = copy_input(lonlat, "lonlat")?;
    let mut guard = borrow_output(out, "`out`")?;
    let output = output_slice(&mut guard, "`out`")?;
    let nf = plan.num_features();
    let result = compute_in_batches(py, plan, &input, output, nf, destination, threads);
    // The release waits for every pool thread: without the GIL, like the computation.
    let released = detach_catching(py, || {
        crate::harmonics::release_large_workspaces(nf, threads);
        Ok(())
    });
    result.and(released)
}

fn compute_in_batches<I: Real, O: Real>(
    py: Python<'_>,
    plan: &Plan,
    input: &[I],
    output: &mut [O],
    nf: usize,
    destination: Destination,
    threads: Threads,
) -> PyResult<()> {
    // Validate everything first, so that nothing is written when a row is bad.
    detach_catching(py, || crate::coords::validate(input))?;
    let row_bytes = (nf * std::mem::size_of::<O>()).max(1);
    let rows = (SIGNAL_CHECK_BYTES / row_bytes).max(LANES).div_ceil(LANES) * LANES;
    for (pts, o) in input.chunks(2 * rows).zip(output.chunks_mut(rows * nf)) {
        detach_catching(py, || compute_validated(plan, pts, o, destination, threads))?;
        // Lets Ctrl-C (KeyboardInterrupt) and other signal handlers run during long calls.
        py.check_signals()?;
    }
    Ok(())
}

/// A new uninitialised (n, nf) array allocated by NumPy, or MemoryError: rust-numpy's
/// constructors panic when NumPy cannot allocate, so this goes through `numpy.empty`.
fn new_output<'py, O: Element>(
    py: Python<'py>,
    n: usize,
    nf: usize,
    dtype: &str,
) -> PyResult<Bound<'py, PyArray2<O>>> {
    let too_big = || {
        PyMemoryError::new_err(format!(
            "the output ({n} x {nf} {dtype}) would not fit in memory"
        ))
    };
    let bytes = n
        .checked_mul(nf)
        .and_then(|e| e.checked_mul(std::mem::size_of::<O>()))
        .ok_or_else(too_big)?;
    if bytes > isize::MAX as usize {
        return Err(too_big());
    }
    let arr = py
        .import("numpy")?
        .getattr("empty")?
        .call1(((n, nf), dtype))?;
    Ok(arr.cast_into::<PyArray2<O>>()?)
}

/// spherical_harmonics(lonlat, L, basis="satclip", out=None, parallel=True)
///
/// Low-level entry point; see `satclip.spherical_harmonics` for the documented API.
/// `parallel=False` computes on the calling thread only (`harmonics::Threads::Caller`).
#[pyfunction]
#[pyo3(signature = (lonlat, L, basis = "satclip", out = None, parallel = true))]
// `L` as in the Python API and the SatCLIP paper (the number of Legendre degrees).
#[allow(non_snake_case)]
fn spherical_harmonics<'py>(
    py: Python<'py>,
    lonlat: &Bound<'py, PyAny>,
    L: i64,
    basis: &str,
    out: Option<&Bound<'py, PyAny>>,
    parallel: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let plan = plan_for(py, L, basis)?;
    let threads = if parallel {
        Threads::Pool
    } else {
        Threads::Caller
    };
    let nf = plan.num_features();
    let lonlat_error = || lonlat_dtype_error("satclip.spherical_harmonics");
    match out {
        Some(out) => {
            dispatch_float!(out, PyArray2, |o: O| {
                dispatch_float!(lonlat, PyArray2, |a: I| {
                    let n = check_pairs(a.shape())?;
                    check_shape("`out`", o.shape(), &[n, nf])?;
                    run(py, &plan, a, o, Destination::Reused, threads)
                }, else lonlat_error())
            }, else not_float_array("`out`", 2))?;
            Ok(out.clone())
        }
        // Output dtype follows the input's. The array is allocated by NumPy (uninitialised:
        // every element is written by the kernel, and the first touch happens in the worker
        // threads) and returned as is - no copy. On error it is simply dropped.
        None => dispatch_float!(lonlat, PyArray2, |a: T| {
            let n = check_pairs(a.shape())?;
            let o = new_output::<T>(py, n, nf, T::NUMPY_NAME)?;
            run(py, &plan, a, &o, Destination::Fresh, threads)?;
            Ok(o.into_any())
        }, else lonlat_error()),
    }
}

/// check_lonlat_row(row, lon, lat)
///
/// Raises the `CoordinateError` the core raises for row `row` holding (`lon`, `lat`) if either
/// value is invalid (with the same message, `.row` and `.column`); returns None otherwise. For
/// callers that located a bad row themselves (`satclip.coords`, for tensors on a GPU), so the
/// core stays the one owner of what a bad coordinate is and how it is reported.
#[pyfunction]
fn check_lonlat_row(py: Python<'_>, row: usize, lon: f64, lat: f64) -> PyResult<()> {
    crate::coords::check_row(row, lon, lat).map_err(|e| to_pyerr(py, e))
}

/// The instruction set the kernel runs with: "avx512", "avx2" or "baseline".
#[pyfunction]
fn simd_level() -> &'static str {
    SimdLevel::active().name()
}

/// Number of worker threads.
#[pyfunction]
fn get_num_threads(py: Python<'_>) -> PyResult<usize> {
    detach_catching(py, || Ok(parallel::num_threads()))
}

/// Resizes the worker pool; 0 restores the default (RAYON_NUM_THREADS, else OMP_NUM_THREADS,
/// else one per CPU).
#[pyfunction]
fn set_num_threads(py: Python<'_>, threads: usize) -> PyResult<()> {
    // Starting threads can fail (rayon then panics): reported, not unwound through Python.
    detach_catching(py, || {
        parallel::set_num_threads(threads);
        Ok(())
    })
}

/// Bytes of per-thread workspace cached now (all worker threads plus the calling one).
#[pyfunction]
fn cached_workspace_bytes(py: Python<'_>) -> PyResult<usize> {
    detach_catching(py, || Ok(crate::harmonics::cached_workspace_bytes_total()))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(spherical_harmonics, m)?)?;
    m.add_function(wrap_pyfunction!(check_lonlat_row, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(cached_workspace_bytes, m)?)?;
    gradient::register(m)?;
    m.add("MAX_DEGREES", crate::error::MAX_DEGREES)?;
    Ok(())
}
