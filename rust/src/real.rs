//! The two floating-point types satclip reads and writes. All arithmetic is done in f64;
//! f32 is only a storage format, so float32 output keeps float64 accuracy until the last rounding.
//!
//! (Computing in f32 was tried: near the poles, rounding x = cos(theta) to f32 moves the phase
//! of P_l by about l * 3e-8 / sin(theta), an error of 1.5e-4 at L = 40 one degree from a pole.)

/// Sealed: the kernels reinterpret f64 staging storage as `[Self]`, which is sound only for
/// types no larger and no more aligned than f64 whose every bit pattern is valid (f32, f64).
/// The private supertrait keeps code outside this crate from implementing `Real` for anything
/// else:
///
/// ```compile_fail
/// #[derive(Clone, Copy)]
/// struct Wide([f64; 8]);
/// impl satclip_core::Real for Wide {
///     fn to_f64(self) -> f64 { self.0[0] }
///     fn from_f64(x: f64) -> Self { Wide([x; 8]) }
/// }
/// ```
///
/// while the two real implementations stay usable from outside:
///
/// ```
/// let y = satclip_core::spherical_harmonics(&[0.0f32, 0.0], 2, satclip_core::Basis::Satclip).unwrap();
/// assert_eq!(y.len(), 4);
/// ```
pub trait Real: sealed::Sealed + Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

impl Real for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
}

impl Real for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl Sealed for f32 {}
}

// The staging reinterpretation in `kernel/values.rs` / `kernel/gradient.rs` relies on this; checked at compile time.
const _: () = {
    assert!(std::mem::size_of::<f32>() <= std::mem::size_of::<f64>());
    assert!(std::mem::align_of::<f32>() <= std::mem::align_of::<f64>());
};
