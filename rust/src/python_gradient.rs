//! The pyo3 binding of `gradient`: `satclip._core.spherical_harmonics_with_gradient`.
//!
//! Kept apart from `python.rs` so the value path's binding is untouched. The caller (the
//! Python package, `satclip/gradients.py`) allocates both outputs; this checks their dtypes,
//! shapes and layout, borrows everything through rust-numpy's borrow checker (so an output
//! that overlaps the input or the other output is refused instead of aliased), releases the
//! GIL and runs the kernel.

use numpy::{Element, PyArray2, PyArray3, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::gradient::spherical_harmonics_with_gradient_into;
use crate::plan::Plan;
use crate::python::{
    copy_input, detach_catching, dispatch_float, lonlat_dtype_error, not_float_array, plan_for,
    DTypeError, ShapeError,
};
use crate::real::Real;

fn compute<I: Real + Element, O: Real + Element>(
    py: Python<'_>,
    plan: &Plan,
    lonlat: &Bound<'_, PyArray2<I>>,
    values: &Bound<'_, PyArray2<O>>,
    gradients: &Bound<'_, PyArray3<O>>,
) -> PyResult<()> {
    let shape = lonlat.shape();
    if shape.len() != 2 || shape[1] != 2 {
        return Err(ShapeError::new_err(format!(
            "lonlat must have shape (N, 2) with columns [lon, lat], got {shape:?}"
        )));
    }
    let (n, nf) = (shape[0], plan.num_features());
    if values.shape() != [n, nf] {
        return Err(ShapeError::new_err(format!(
            "`values` must have shape ({n}, {nf}), got {:?}",
            values.shape()
        )));
    }
    if gradients.shape() != [n, nf, 2] {
        return Err(ShapeError::new_err(format!(
            "`gradients` must have shape ({n}, {nf}, 2), got {:?}",
            gradients.shape()
        )));
    }
    let borrow = |what: &str, e: &dyn std::fmt::Display| {
        ShapeError::new_err(format!("{what} cannot be used: {e}"))
    };
    // Copied while the GIL is held (see `python::copy_input`): what is validated is what is
    // computed, whatever other threads do meanwhile.
    let input: Vec<I> = copy_input(lonlat, "lonlat")?;
    let mut vals = values
        .try_readwrite()
        .map_err(|e| borrow("`values` (read-only, or overlapping another argument)", &e))?;
    let mut grads = gradients.try_readwrite().map_err(|e| {
        borrow(
            "`gradients` (read-only, or overlapping another argument)",
            &e,
        )
    })?;
    let contiguous = |what: &str| ShapeError::new_err(format!("{what} must be C-contiguous"));
    let vals = vals.as_slice_mut().map_err(|_| contiguous("`values`"))?;
    let grads = grads
        .as_slice_mut()
        .map_err(|_| contiguous("`gradients`"))?;
    detach_catching(py, || {
        spherical_harmonics_with_gradient_into(plan, &input, vals, grads)
    })
}

/// spherical_harmonics_with_gradient(lonlat, L, basis, values, gradients)
///
/// Low-level entry point; see `satclip.spherical_harmonics_with_gradient` for the documented
/// API. Writes values (N, L*L) and per-degree gradients (N, L*L, 2) into the given arrays.
#[pyfunction]
#[pyo3(signature = (lonlat, L, basis, values, gradients))]
// `L` as in the Python API (see `python::spherical_harmonics`).
#[allow(non_snake_case)]
fn spherical_harmonics_with_gradient<'py>(
    py: Python<'py>,
    lonlat: &Bound<'py, PyAny>,
    L: i64,
    basis: &str,
    values: &Bound<'py, PyAny>,
    gradients: &Bound<'py, PyAny>,
) -> PyResult<()> {
    let plan = plan_for(py, L, basis)?;
    dispatch_float!(values, PyArray2, |v: O| {
        let g = gradients.cast::<PyArray3<O>>().map_err(|_| {
            DTypeError::new_err("`gradients` must be a 3-D array of the same dtype as `values`")
        })?;
        dispatch_float!(lonlat, PyArray2, |a: I| compute(py, &plan, a, v, g),
            else lonlat_dtype_error("satclip.spherical_harmonics_with_gradient"))
    }, else not_float_array("`values`", 2))
}

/// Adds this module's functions to `satclip._core`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(spherical_harmonics_with_gradient, m)?)
}
