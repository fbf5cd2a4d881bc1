//! The two floating-point types satclip reads and writes. All arithmetic is done in f64;
//! f32 is only a storage format, so float32 output keeps float64 accuracy until the last rounding.
//!
//! (Computing in f32 was tried: near the poles, rounding x = cos(theta) to f32 moves the phase
//! of P_l by about l * 3e-8 / sin(theta), an error of 1.5e-4 at L = 40 one degree from a pole.)

pub trait Real: Copy + Send + Sync + 'static {
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
