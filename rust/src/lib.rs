//! satclip-core: the spherical-harmonics positional encoding of SatCLIP, computed exactly with
//! stable recurrences, vectorised across points and parallel over threads.
//!
//! Where things are:
//! * `plan`      - the basis definition and its precomputed recurrence coefficients;
//! * `kernel`    - the SIMD block kernel that evaluates it (`block`: pieces shared with `gradient`);
//! * `harmonics` - the entry point: validate, split into tasks, run on the pool;
//! * `gradient`  - values together with their lon/lat derivatives (own kernel and entry point);
//! * `python`    - the pyo3 binding (`satclip._core`), compiled with the `python` feature;
//!   `python_args` holds the argument checks every entry point shares.

// Everything but the re-exports below is internal (kept private so that nothing outside the
// crate can depend on, or misuse, the kernels' invariants).
#![cfg_attr(not(feature = "python"), allow(dead_code))]

mod block;
mod coords;
mod error;
mod gradient;
mod harmonics;
mod kernel;
mod parallel;
mod plan;
mod real;
mod simd;
mod stream;
mod transpose;
mod trig;

#[cfg(test)]
mod simd_levels_test;
#[cfg(test)]
mod test_points;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_args;
#[cfg(feature = "python")]
mod python_gradient;

pub use error::{Column, Error, Result, MAX_DEGREES};
pub use gradient::{spherical_harmonics_with_gradient, spherical_harmonics_with_gradient_into};
pub use harmonics::{spherical_harmonics, spherical_harmonics_into, Basis, Plan};
pub use real::Real;
