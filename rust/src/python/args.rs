//! Checks on the arrays Python hands to the `satclip._core` bindings, shared by every entry
//! point (`python/mod.rs`, `python/gradient.rs`): the dtype dispatch, shapes, layout, and borrows
//! through rust-numpy's borrow checker. Each check and its message lives here once.

use numpy::{Element, PyArray, PyArray2, PyArrayMethods, PyReadwriteArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;

use crate::python::{DTypeError, ShapeError};
use crate::real::Real;

/// The element types the bindings accept and return, with the NumPy name of each.
pub(crate) trait Float: Real + Element {
    const NUMPY_NAME: &'static str;
}

impl Float for f32 {
    const NUMPY_NAME: &'static str = "float32";
}

impl Float for f64 {
    const NUMPY_NAME: &'static str = "float64";
}

/// The supported dtypes as error messages list them (keep in step with `dispatch_float!`).
const FLOAT_NAMES: &str = "float32 or float64";

/// Evaluates `$body` with `$arr` bound to `$obj` cast to `$array<f64>` or `$array<f32>`
/// (whichever it is) and the type alias `$t` naming that element type; any other object is
/// `Err($err)`. The one place that lists the dtypes every binding dispatches over, so adding
/// a dtype (or an entry point) touches nothing else. Nest it for input x output dtypes.
macro_rules! dispatch_float {
    ($obj:expr, $array:ident, |$arr:ident: $t:ident| $body:expr, else $err:expr) => {{
        let obj = $obj;
        if let Ok($arr) = obj.cast::<$array<f64>>() {
            #[allow(dead_code)]
            type $t = f64;
            $body
        } else if let Ok($arr) = obj.cast::<$array<f32>>() {
            #[allow(dead_code)]
            type $t = f32;
            $body
        } else {
            Err($err)
        }
    }};
}
pub(crate) use dispatch_float;

/// The error for an object of the wrong type or dtype where a `ndim`-D float array is needed.
pub(crate) fn not_float_array(what: &str, ndim: usize) -> PyErr {
    DTypeError::new_err(format!(
        "{what} must be a {ndim}-D {FLOAT_NAMES} NumPy array"
    ))
}

/// The error for `lonlat` of the wrong type or dtype, naming the public function (`entry`)
/// that converts other inputs.
pub(crate) fn lonlat_dtype_error(entry: &str) -> PyErr {
    DTypeError::new_err(format!(
        "lonlat must be a 2-D {FLOAT_NAMES} NumPy array ({entry} converts other inputs)"
    ))
}

/// The number of points N in a `lonlat` array of shape `shape`, unless it is not (N, 2).
pub(crate) fn check_pairs(shape: &[usize]) -> PyResult<usize> {
    if shape.len() != 2 || shape[1] != 2 {
        return Err(ShapeError::new_err(format!(
            "lonlat must have shape (N, 2) with columns [lon, lat], got {shape:?}"
        )));
    }
    Ok(shape[0])
}

/// Refuses an output `what` whose shape is not `want`.
pub(crate) fn check_shape(what: &str, shape: &[usize], want: &[usize]) -> PyResult<()> {
    if shape != want {
        let want: Vec<String> = want.iter().map(|d| d.to_string()).collect();
        return Err(ShapeError::new_err(format!(
            "{what} must have shape ({}), got {shape:?}",
            want.join(", ")
        )));
    }
    Ok(())
}

fn not_contiguous(what: &str) -> PyErr {
    ShapeError::new_err(format!("{what} must be C-contiguous"))
}

/// Copies the C-contiguous (N, 2) input out of NumPy while the GIL is held, through
/// rust-numpy's borrow checker (so a concurrent mutable borrow is refused, not aliased).
///
/// Why a copy: the GIL is released while computing, and another Python thread (or `out`, if it
/// overlaps the input's memory) could otherwise change the coordinates after they were
/// validated - a silent NaN or wrong row. The copy is 16 bytes per point against at least 32
/// (and typically 400+) bytes of output per point written by the kernel, and it lets `out`
/// overlap the input: the result is then computed from the values as they were at the call.
pub(crate) fn copy_input<T: Element + Copy>(
    arr: &Bound<'_, PyArray2<T>>,
    what: &str,
) -> PyResult<Vec<T>> {
    if !arr.is_c_contiguous() {
        return Err(not_contiguous(what));
    }
    let view = arr
        .try_readonly()
        .map_err(|e| ShapeError::new_err(format!("{what} cannot be read: {e}")))?;
    let src = view.as_slice().map_err(|_| not_contiguous(what))?;
    let mut copy = Vec::new();
    copy.try_reserve_exact(src.len()).map_err(|_| {
        PyMemoryError::new_err(format!(
            "could not allocate {} bytes to copy {what}",
            std::mem::size_of_val(src)
        ))
    })?;
    copy.extend_from_slice(src);
    Ok(copy)
}

/// Borrows the output `what` for writing through rust-numpy's borrow checker, so an output that
/// is read-only or overlaps another borrowed argument is refused instead of aliased. Borrow
/// every output before taking slices with [`output_slice`] (which checks the layout): an
/// overlapping view is usually also strided, and the overlap is the problem to report.
pub(crate) fn borrow_output<'py, T: Element, D: numpy::ndarray::Dimension>(
    arr: &Bound<'py, PyArray<T, D>>,
    what: &str,
) -> PyResult<PyReadwriteArray<'py, T, D>> {
    arr.try_readwrite().map_err(|e| {
        ShapeError::new_err(format!(
            "{what} cannot be written (read-only, or overlapping another argument): {e}"
        ))
    })
}

/// The elements of a borrowed output, in C order; refuses an output that is not C-contiguous.
/// (rust-numpy's `as_slice_mut` alone also accepts Fortran order, whose memory order is not
/// the row-major order the kernels write: the values would land transposed.)
pub(crate) fn output_slice<'a, T: Element, D: numpy::ndarray::Dimension>(
    guard: &'a mut PyReadwriteArray<'_, T, D>,
    what: &str,
) -> PyResult<&'a mut [T]> {
    if !guard.is_c_contiguous() {
        return Err(not_contiguous(what));
    }
    guard.as_slice_mut().map_err(|_| not_contiguous(what))
}
