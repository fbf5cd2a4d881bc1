//! The pyo3 binding, `satclip._core`. Deliberately thin: it checks the array types and
//! layout Python hands over, releases the GIL, calls `harmonics`, and turns `Error` into
//! the exception classes defined in `satclip/errors.py`. Friendlier input handling
//! (lists, integer dtypes, torch tensors) lives in the Python package.

use numpy::{Element, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::error::{Column, Error};
use crate::harmonics::{spherical_harmonics_into, Basis, Plan};
use crate::parallel;
use crate::real::Real;
use crate::simd::SimdLevel;

pyo3::import_exception!(satclip.errors, CoordinateError);
pyo3::import_exception!(satclip.errors, DegreeError);
pyo3::import_exception!(satclip.errors, ShapeError);
pyo3::import_exception!(satclip.errors, DTypeError);

pub(crate) fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::Degrees { .. } => DegreeError::new_err(msg),
        Error::NotPairs { .. } | Error::OutputSize { .. } => ShapeError::new_err(msg),
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

/// Borrows a C-contiguous 2-D array of `T` as a slice, or says why it can't.
fn c_slice<'a, T: Element>(arr: &'a Bound<'_, PyArray2<T>>, what: &str) -> PyResult<&'a [T]> {
    if !arr.is_c_contiguous() {
        return Err(ShapeError::new_err(format!("{what} must be C-contiguous")));
    }
    // SAFETY: the array is contiguous; we only read it while Python holds a reference,
    // and satclip never hands it to code that could resize it.
    unsafe { arr.as_slice() }.map_err(|e| ShapeError::new_err(format!("{what}: {e}")))
}

/// Computes into `out` (already checked for shape), with the GIL released.
fn run<I: Real + Element, O: Real + Element>(
    py: Python<'_>,
    plan: &Plan,
    lonlat: &Bound<'_, PyArray2<I>>,
    out: &Bound<'_, PyArray2<O>>,
) -> PyResult<()> {
    let input = c_slice(lonlat, "lonlat")?;
    if !out.is_c_contiguous() {
        return Err(ShapeError::new_err("`out` must be C-contiguous"));
    }
    let mut guard = out
        .try_readwrite()
        .map_err(|e| ShapeError::new_err(format!("`out` is not writeable: {e}")))?;
    let output = guard
        .as_slice_mut()
        .map_err(|e| ShapeError::new_err(format!("`out`: {e}")))?;
    py.detach(|| spherical_harmonics_into(plan, input, output))
        .map_err(|e| to_pyerr(py, e))
}

fn check_out_shape(out_shape: &[usize], n: usize, nf: usize) -> PyResult<()> {
    if out_shape != [n, nf] {
        return Err(ShapeError::new_err(format!(
            "`out` must have shape ({n}, {nf}), got {out_shape:?}"
        )));
    }
    Ok(())
}

fn with_input<'py, O: Real + Element>(
    py: Python<'py>,
    plan: &Plan,
    lonlat: &Bound<'py, PyAny>,
    out: &Bound<'py, PyArray2<O>>,
) -> PyResult<()> {
    if let Ok(a) = lonlat.cast::<PyArray2<f64>>() {
        check_pairs(a.shape())?;
        check_out_shape(out.shape(), a.shape()[0], plan.num_features())?;
        run(py, plan, a, out)
    } else if let Ok(a) = lonlat.cast::<PyArray2<f32>>() {
        check_pairs(a.shape())?;
        check_out_shape(out.shape(), a.shape()[0], plan.num_features())?;
        run(py, plan, a, out)
    } else {
        Err(DTypeError::new_err(
            "lonlat must be a 2-D float32 or float64 NumPy array (satclip.spherical_harmonics converts other inputs)",
        ))
    }
}

fn check_pairs(shape: &[usize]) -> PyResult<()> {
    if shape.len() != 2 || shape[1] != 2 {
        return Err(ShapeError::new_err(format!(
            "lonlat must have shape (N, 2) with columns [lon, lat], got {shape:?}"
        )));
    }
    Ok(())
}

/// spherical_harmonics(lonlat, degrees, basis="satclip", out=None)
///
/// Low-level entry point; see `satclip.spherical_harmonics` for the documented API.
#[pyfunction]
#[pyo3(signature = (lonlat, degrees, basis = "satclip", out = None))]
fn spherical_harmonics<'py>(
    py: Python<'py>,
    lonlat: &Bound<'py, PyAny>,
    degrees: i64,
    basis: &str,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let plan = plan_for(py, degrees, basis)?;
    match out {
        Some(out) => {
            if let Ok(o) = out.cast::<PyArray2<f64>>() {
                with_input(py, &plan, lonlat, o)?;
            } else if let Ok(o) = out.cast::<PyArray2<f32>>() {
                with_input(py, &plan, lonlat, o)?;
            } else {
                return Err(DTypeError::new_err(
                    "`out` must be a 2-D float32 or float64 NumPy array",
                ));
            }
            Ok(out.clone())
        }
        None => {
            // Output dtype follows the input's. The array is allocated by NumPy (uninitialised:
            // every element is written by the kernel, and the first touch happens in the
            // worker threads) and returned as is - no copy.
            if let Ok(a) = lonlat.cast::<PyArray2<f64>>() {
                check_pairs(a.shape())?;
                // SAFETY: fully written by `run` before Python can see it.
                let o =
                    unsafe { PyArray2::<f64>::new(py, [a.shape()[0], plan.num_features()], false) };
                run(py, &plan, a, &o)?;
                Ok(o.into_any())
            } else if let Ok(a) = lonlat.cast::<PyArray2<f32>>() {
                check_pairs(a.shape())?;
                // SAFETY: as above.
                let o =
                    unsafe { PyArray2::<f32>::new(py, [a.shape()[0], plan.num_features()], false) };
                run(py, &plan, a, &o)?;
                Ok(o.into_any())
            } else {
                Err(DTypeError::new_err(
                    "lonlat must be a 2-D float32 or float64 NumPy array",
                ))
            }
        }
    }
}

/// The instruction set the kernel runs with: "avx512", "avx2" or "baseline".
#[pyfunction]
fn simd_level() -> &'static str {
    SimdLevel::active().name()
}

/// Number of worker threads.
#[pyfunction]
fn get_num_threads() -> usize {
    parallel::num_threads()
}

/// Resizes the worker pool; 0 restores the default (one per CPU, or RAYON_NUM_THREADS).
#[pyfunction]
fn set_num_threads(threads: usize) {
    parallel::set_num_threads(threads)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(spherical_harmonics, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    crate::python_gradient::register(m)?;
    m.add("MAX_DEGREES", crate::error::MAX_DEGREES)?;
    Ok(())
}
