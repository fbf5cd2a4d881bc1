//! satclip-core: the spherical-harmonics positional encoding of SatCLIP, computed exactly with
//! stable recurrences, vectorised across points and parallel over threads.
//!
//! Where things are:
//! * `plan`      - the basis definition and its precomputed recurrence coefficients;
//! * `coords`    - what a valid (lon, lat) is, and the error that names the first bad row;
//! * `error`, `real` - the error type; the two float types read and written;
//! * `harmonics` - the entry point: validate, split into tasks, run on the pool (`parallel`);
//! * `gradient`  - the same for values together with their lon/lat derivatives;
//! * `kernel/`   - the SIMD machinery both entry points run: the block kernels (`values`,
//!   `gradient`) and what they are built from (`block`, `trig`, `transpose`, `stream`), and the
//!   run-time choice of instruction set (`simd`);
//! * `python/`   - the pyo3 binding (`satclip._core`), compiled with the `python` feature;
//!   `python/args.rs` holds the argument checks every entry point shares.

// Everything but the re-exports below is internal (kept private so that nothing outside the
// crate can depend on, or misuse, the kernels' invariants).
#![cfg_attr(not(feature = "python"), allow(dead_code))]

mod coords;
mod error;
mod gradient;
mod harmonics;
mod kernel;
mod parallel;
mod plan;
mod real;

#[cfg(test)]
mod test_points;

#[cfg(feature = "python")]
mod python;

pub use error::{Column, Error, Result, MAX_DEGREES};
pub use gradient::{spherical_harmonics_with_gradient, spherical_harmonics_with_gradient_into};
pub use harmonics::{spherical_harmonics, spherical_harmonics_into, Basis, Plan};
pub use real::Real;
