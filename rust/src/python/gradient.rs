//! The pyo3 binding of `gradient`: `satclip._core.spherical_harmonics_with_gradient`.
//!
//! Kept apart from `python/mod.rs` so each entry point reads on its own; both check their
//! arguments with `python::args`. The caller (the Python package, `satclip/gradients.py`)
//! allocates both outputs; this checks their dtypes, shapes and layout, borrows everything
//! through rust-numpy's borrow checker (so an output that overlaps the input or the other
//! output is refused instead of aliased), releases the GIL and runs the kernel.

use numpy::{PyArray2, PyArray3, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::gradient::compute_with_gradient;
use crate::harmonics::Destination;
use crate::plan::Plan;
use crate::python::args::{
    borrow_output, check_pairs, check_shape, copy_input, dispatch_float, lonlat_dtype_error,
    not_float_array, output_slice, Float,
};
use crate::python::{detach_catching, plan_for, DTypeError};

fn compute<I: Float, O: Float>(
    py: Python<'_>,
    plan: &Plan,
    lonlat: &Bound<'_, PyArray2<I>>,
    values: &Bound<'_, PyArray2<O>>,
    gradients: &Bound<'_, PyArray3<O>>,
    destination: Destination,
) -> PyResult<()> {
    let (n, nf) = (check_pairs(lonlat.shape())?, plan.num_features());
    check_shape("`values`", values.shape(), &[n, nf])?;
    check_shape("`gradients`", gradients.shape(), &[n, nf, 2])?;
    // Copied while the GIL is held (see `python::args::copy_input`): what is validated is what
    // is computed, whatever other threads do meanwhile.
    let input: Vec<I> = copy_input(lonlat, "lonlat")?;
    let mut vals = borrow_output(values, "`values`")?;
    let mut grads = borrow_output(gradients, "`gradients`")?;
    let vals = output_slice(&mut vals, "`values`")?;
    let grads = output_slice(&mut grads, "`gradients`")?;
    detach_catching(py, || {
        compute_with_gradient(plan, &input, vals, grads, destination)
    })
}

/// spherical_harmonics_with_gradient(lonlat, L, basis, values, gradients, fresh=False)
///
/// Low-level entry point; see `satclip.spherical_harmonics_with_gradient` for the documented
/// API. Writes values (N, L*L) and per-degree gradients (N, L*L, 2) into the given arrays;
/// `fresh=True` says the caller has just allocated them (they are then written with ordinary
/// stores, see `harmonics::Destination`).
#[pyfunction]
#[pyo3(signature = (lonlat, L, basis, values, gradients, fresh = false))]
// `L` as in the Python API (see `python::spherical_harmonics`).
#[allow(non_snake_case)]
fn spherical_harmonics_with_gradient<'py>(
    py: Python<'py>,
    lonlat: &Bound<'py, PyAny>,
    L: i64,
    basis: &str,
    values: &Bound<'py, PyAny>,
    gradients: &Bound<'py, PyAny>,
    fresh: bool,
) -> PyResult<()> {
    let plan = plan_for(py, L, basis)?;
    let destination = if fresh {
        Destination::Fresh
    } else {
        Destination::Reused
    };
    dispatch_float!(values, PyArray2, |v: O| {
        let g = gradients.cast::<PyArray3<O>>().map_err(|_| {
            DTypeError::new_err("`gradients` must be a 3-D array of the same dtype as `values`")
        })?;
        dispatch_float!(lonlat, PyArray2, |a: I| compute(py, &plan, a, v, g, destination),
            else lonlat_dtype_error("satclip.spherical_harmonics_with_gradient"))
    }, else not_float_array("`values`", 2))
}

/// Adds this module's functions to `satclip._core`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(spherical_harmonics_with_gradient, m)?)
}
