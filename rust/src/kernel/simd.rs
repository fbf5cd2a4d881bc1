//! Which instruction set the kernel runs with, chosen once per process at run time.
//!
//! Wheels are compiled for generic x86-64 (SSE2). Without run-time dispatch the kernel would
//! never use the AVX2/AVX-512 units of the machine it lands on. The environment variable
//! `SATCLIP_SIMD=baseline|avx2|avx512` can lower (never raise) the level, which the benchmark
//! gate uses to prove that a slowed build is caught.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Whatever the compile target allows (SSE2 on a generic x86-64 wheel).
    Baseline,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512 F/DQ/VL.
    Avx512,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    fn parse(name: &str) -> Option<SimdLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "baseline" | "none" | "scalar" => Some(SimdLevel::Baseline),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" => Some(SimdLevel::Avx512),
            _ => None,
        }
    }

    /// The best level this CPU supports.
    pub fn supported() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("fma")
            {
                return SimdLevel::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    }

    /// The level in use: the CPU's best, lowered by `SATCLIP_SIMD` if set. Decided once.
    pub fn active() -> SimdLevel {
        static ACTIVE: OnceLock<SimdLevel> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let best = SimdLevel::supported();
            match std::env::var("SATCLIP_SIMD")
                .ok()
                .as_deref()
                .and_then(SimdLevel::parse)
            {
                Some(asked) => asked.min(best),
                None => best,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_documented_names() {
        assert_eq!(SimdLevel::parse("AVX512"), Some(SimdLevel::Avx512));
        assert_eq!(SimdLevel::parse("baseline"), Some(SimdLevel::Baseline));
        assert_eq!(SimdLevel::parse("sse9"), None);
    }

    #[test]
    fn active_never_exceeds_supported() {
        assert!(SimdLevel::active() <= SimdLevel::supported());
    }
}
