//! The SIMD machinery: block kernels that evaluate the basis for `LANES` points at a time (one
//! point per lane), compiled once per instruction set and picked at run time.
//!
//! * `values`    - the block kernel of the values (and its per-thread workspace);
//! * `gradient`  - the block kernel of values with their lon/lat derivatives;
//! * `block`     - what both kernels are built from: the lane layout, the per-instruction-set
//!   operations, the angles of a block of points, the transposes into output rows;
//! * `trig`      - sine and cosine in degrees, branch-free so that they vectorise;
//! * `transpose` - 8 x 8 tile transposes (portable, AVX2, AVX-512);
//! * `stream`    - streaming (non-temporal) stores for outputs far larger than the cache;
//! * `simd`      - which instruction set runs, chosen once per process.
//!
//! The entry points that validate input and drive these kernels on the thread pool are the
//! top-level `harmonics` and `gradient` modules.

pub(crate) mod block;
pub(crate) mod gradient;
pub(crate) mod simd;
pub(crate) mod stream;
pub(crate) mod transpose;
pub(crate) mod trig;
pub(crate) mod values;

#[cfg(test)]
mod levels_test;
