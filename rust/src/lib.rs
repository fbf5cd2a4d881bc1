//! satclip-core: the spherical-harmonics positional encoding of SatCLIP, computed exactly with
//! stable recurrences, vectorised across points and parallel over threads.
//!
//! Where things are:
//! * `plan`      - the basis definition and its precomputed recurrence coefficients;
//! * `kernel`    - the SIMD block kernel that evaluates it;
//! * `harmonics` - the entry point: validate, split into tasks, run on the pool;
//! * `gradient`  - values together with their lon/lat derivatives (own kernel and entry point);
//! * `python`    - the pyo3 binding (`satclip._core`), compiled with the `python` feature.

pub mod coords;
pub mod error;
pub mod gradient;
pub mod harmonics;
mod kernel;
pub mod parallel;
pub mod plan;
pub mod real;
pub mod simd;
mod stream;
mod transpose;
mod trig;

#[cfg(test)]
mod simd_levels_test;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_gradient;

pub use error::{Error, Result};
pub use gradient::{spherical_harmonics_with_gradient, spherical_harmonics_with_gradient_into};
pub use harmonics::{spherical_harmonics, spherical_harmonics_into, Basis, Plan};
