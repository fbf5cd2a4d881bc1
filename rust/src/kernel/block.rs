//! The pieces both block kernels (`values.rs` for values, `gradient.rs` for values with
//! derivatives) are built from: the lane layout, the per-instruction-set operations, the angles
//! of a block of points, and the transposes that turn a feature-major block into row-major
//! output rows.
//!
//! Everything here is `#[inline(always)]`: it is compiled into each kernel's target-feature
//! functions, once per instruction set.

use super::stream;
use super::transpose::{self, Tile};
use super::trig::sincos_deg;
use crate::coords::wrap_lon;
use crate::real::Real;

/// Points per block: one per SIMD lane (8 f64 = one AVX-512 vector, two AVX2 vectors).
pub(crate) const LANES: usize = 8;
pub(crate) type Lanes = [f64; LANES];

/// The instruction-set-specific operations. Everything else is plain Rust that LLVM vectorises
/// for whatever target features the calling function enables.
pub(crate) trait Isa {
    fn transpose(tile: &Tile) -> Tile;
    /// `tile` rounded to f32 and transposed into `rows` rows `stride` apart (see
    /// `transpose::store_f32_portable`, whose safety contract this has).
    unsafe fn store_f32(tile: &Tile, out: *mut f32, stride: usize, rows: usize);
    fn copy_streaming<O: Copy>(src: &[O], dst: &mut [O]);
}

pub(crate) struct Portable;
impl Isa for Portable {
    #[inline(always)]
    fn transpose(tile: &Tile) -> Tile {
        transpose::transpose_portable(tile)
    }
    #[inline(always)]
    unsafe fn store_f32(tile: &Tile, out: *mut f32, stride: usize, rows: usize) {
        transpose::store_f32_portable(tile, out, stride, rows)
    }
    #[inline(always)]
    fn copy_streaming<O: Copy>(src: &[O], dst: &mut [O]) {
        stream::copy_streaming_sse2(src, dst)
    }
}

/// Defines `$avx512` and `$avx2`: the generic kernel `$generic::<I, O, Isa>` compiled with the
/// AVX-512 and the AVX2 + FMA target features. They are `unsafe` to call: only when the CPU has
/// those features (`SimdLevel::Avx512` / `SimdLevel::Avx2` is active).
macro_rules! target_feature_kernels {
    ($avx512:ident, $avx2:ident => $generic:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
        unsafe fn $avx512<I: Real, O: Real>($($arg: $ty),*) {
            $generic::<I, O, Avx512>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2<I: Real, O: Real>($($arg: $ty),*) {
            $generic::<I, O, Avx2>($($arg),*)
        }
    };
}
pub(crate) use target_feature_kernels;

/// Used only inside the kernels' `#[target_feature(enable = "avx2,fma")]` functions, which run
/// only when `SimdLevel::Avx2` (or a higher level) is active.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;
#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    #[inline(always)]
    fn transpose(tile: &Tile) -> Tile {
        // SAFETY: only reached from the kernels' AVX2 functions, which run on AVX2 CPUs.
        unsafe { transpose::transpose_avx2(tile) }
    }
    #[inline(always)]
    unsafe fn store_f32(tile: &Tile, out: *mut f32, stride: usize, rows: usize) {
        // SAFETY: as above; the caller keeps the writes inside the output.
        transpose::store_f32_avx2(tile, out, stride, rows)
    }
    #[inline(always)]
    fn copy_streaming<O: Copy>(src: &[O], dst: &mut [O]) {
        stream::copy_streaming_sse2(src, dst)
    }
}

/// Used only inside the kernels' AVX-512 functions, which run only when `SimdLevel::Avx512` is
/// active.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;
#[cfg(target_arch = "x86_64")]
impl Isa for Avx512 {
    #[inline(always)]
    fn transpose(tile: &Tile) -> Tile {
        // SAFETY: only reached from the kernels' AVX-512 functions, which run on AVX-512 CPUs.
        unsafe { transpose::transpose_avx512(tile) }
    }
    #[inline(always)]
    unsafe fn store_f32(tile: &Tile, out: *mut f32, stride: usize, rows: usize) {
        // SAFETY: as above; the caller keeps the writes inside the output.
        transpose::store_f32_avx512(tile, out, stride, rows)
    }
    #[inline(always)]
    fn copy_streaming<O: Copy>(src: &[O], dst: &mut [O]) {
        // SAFETY: as above.
        unsafe { stream::copy_streaming_avx512(src, dst) }
    }
}

/// Up to `LANES` interleaved (lon, lat) pairs as two lane arrays; missing lanes are (0, 0),
/// a valid point whose rows the caller drops.
#[inline(always)]
pub(crate) fn unpack<I: Real>(pts: &[I]) -> (Lanes, Lanes) {
    let mut lon = [0.0; LANES];
    let mut lat = [0.0; LANES];
    for i in 0..(pts.len() / 2).min(LANES) {
        lon[i] = pts[2 * i].to_f64();
        lat[i] = pts[2 * i + 1].to_f64();
    }
    (lon, lat)
}

/// The trigonometry of a block, from one sincos per angle: with `theta = lat + 90` and
/// `phi = lon + 180`, `x = cos theta = -sin(lat)`, `s = sin theta = cos(lat) >= 0`,
/// `cos phi = -cos(lon)`, `sin phi = -sin(lon)`.
///
/// This is where a coordinate becomes an angle, for every kernel: a longitude in (180, 360] is
/// taken as the same meridian in [-180, 180] here (`coords::wrap_lon`, exact), so it gives the
/// bits of `lon - 360` for values and derivatives alike, and `sincos_deg` keeps its exact range
/// reduction on |x| <= 180.
pub(crate) struct Angles {
    pub x: Lanes,
    pub s: Lanes,
    pub cos_phi: Lanes,
    pub sin_phi: Lanes,
}

#[inline(always)]
pub(crate) fn angles(lon: &Lanes, lat: &Lanes) -> Angles {
    let mut a = Angles {
        x: [0.0; LANES],
        s: [0.0; LANES],
        cos_phi: [0.0; LANES],
        sin_phi: [0.0; LANES],
    };
    for i in 0..LANES {
        let (sl, cl) = sincos_deg(lat[i]);
        a.x[i] = -sl;
        a.s[i] = cl.abs();
        let (so, co) = sincos_deg(wrap_lon(lon[i]));
        a.cos_phi[i] = -co;
        a.sin_phi[i] = -so;
    }
    a
}

/// Column of `(l, m = 0)` in a row of features; `(l, +-m)` sit at this column `+- m`.
#[inline(always)]
pub(crate) fn zonal_column(l: usize) -> usize {
    l * l + l
}

/// Copies `scratch[k][lane]` into row-major `out[lane * nk + k]` for the first `rows` lanes,
/// one 8 x 8 tile at a time, so that reads and writes are whole vectors.
#[inline(always)]
pub(crate) fn transpose_into<O: Real, X: Isa>(scratch: &[Lanes], out: &mut [O], rows: usize) {
    let nk = scratch.len();
    assert!(rows <= LANES && out.len() == rows * nk);
    if let Some(out) = as_f32(out) {
        return transpose_into_f32::<X>(scratch, out, rows);
    }
    let tiles = nk / LANES;
    for t in 0..tiles {
        let k0 = t * LANES;
        let tile: &Tile = scratch[k0..k0 + LANES].try_into().unwrap();
        let cols = X::transpose(tile);
        for (i, col) in cols.iter().enumerate().take(rows) {
            let dst: &mut [O; LANES] = (&mut out[i * nk + k0..i * nk + k0 + LANES])
                .try_into()
                .unwrap();
            for j in 0..LANES {
                dst[j] = O::from_f64(col[j]);
            }
        }
    }
    for k in tiles * LANES..nk {
        for i in 0..rows {
            out[i * nk + k] = O::from_f64(scratch[k][i]);
        }
    }
}

/// [`transpose_into`] for f32 output: whole tiles rounded and transposed by `X::store_f32`.
#[inline(always)]
fn transpose_into_f32<X: Isa>(scratch: &[Lanes], out: &mut [f32], rows: usize) {
    let nk = scratch.len();
    let tiles = nk / LANES;
    for t in 0..tiles {
        let k0 = t * LANES;
        let tile: &Tile = scratch[k0..k0 + LANES].try_into().unwrap();
        // SAFETY: row i < rows <= LANES is written at out[i * nk + k0 .. + LANES], inside the
        // rows * nk values of `out` (asserted by the caller) because k0 + LANES <= nk.
        unsafe { X::store_f32(tile, out.as_mut_ptr().add(k0), nk, rows) };
    }
    for k in tiles * LANES..nk {
        for i in 0..rows {
            out[i * nk + k] = scratch[k][i] as f32;
        }
    }
}

/// `out` as `&mut [f32]` when `O` is f32 (decided at compile time: the types are constants).
#[inline(always)]
fn as_f32<O: Real>(out: &mut [O]) -> Option<&mut [f32]> {
    if std::any::TypeId::of::<O>() != std::any::TypeId::of::<f32>() {
        return None;
    }
    // SAFETY: O is f32 (checked above), so this is the same slice with its own type.
    Some(unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, out.len()) })
}

/// One [`Lanes`] vector aligned to a cache line (64 bytes, an AVX-512 register). The kernels'
/// feature-major blocks are built from these: a block of unaligned vectors makes most of the
/// recurrences' stores and the transposes' loads split across two cache lines (measured at
/// L = 40 float32 on Ice Lake: 13% of the kernel's time).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct AlignedLanes(pub Lanes);

/// The first `len` vectors of `block` (grown with zeros as needed) as plain [`Lanes`].
#[inline(always)]
pub(crate) fn lanes_of(block: &mut Vec<AlignedLanes>, len: usize) -> &mut [Lanes] {
    block.resize(len, AlignedLanes([0.0; LANES]));
    // SAFETY: AlignedLanes is a repr(C) wrapper of one Lanes (the same size, 64, and a
    // stricter alignment), so `len` of them are `len` valid Lanes.
    unsafe { std::slice::from_raw_parts_mut(block.as_mut_ptr() as *mut Lanes, len) }
}

/// `staging` (f64 storage, so aligned for either output type) resized to `len` values of `O`
/// and viewed as such: the row-major copy of a block that streaming stores write out.
#[inline(always)]
pub(crate) fn staging_as<O: Real>(staging: &mut Vec<f64>, len: usize) -> &mut [O] {
    staging.resize(len, 0.0);
    // SAFETY: `staging` holds `len` f64s, room for `len` values of O (f32 or f64: no larger
    // than f64, alignment no stricter); any bits are valid floats.
    unsafe { std::slice::from_raw_parts_mut(staging.as_mut_ptr() as *mut O, len) }
}
