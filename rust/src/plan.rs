//! Everything about the spherical-harmonics basis that depends on `L` but not on the
//! points: recurrence coefficients and normalisation, precomputed once in f64.
//!
//! The basis (column `l*l + l + m`, l = 0..L-1, m = -l..l), with `P_l^m` the associated
//! Legendre function *without* the Condon-Shortley phase and
//! `N_lm = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!)`:
//!
//! * m > 0: `sqrt(2) N_lm P_l^m(cos theta) cos(m phi)`
//! * m < 0: `sqrt(2) N_l|m| P_l^|m|(cos theta) sin(|m| phi)`
//! * m = 0: `c0 N_l0 P_l(cos theta)` with `c0 = pi` for [`Basis::Satclip`] (the factor the
//!   released checkpoints were trained with) and `c0 = 1` for [`Basis::Orthonormal`].
//!
//! `phi = lon + 180 deg`, `theta = lat + 90 deg`, as in the original SatCLIP code.
//!
//! `N_lm P_l^m` is never formed from factorials: it is carried by the fully normalised
//! recurrences below, whose values stay O(sqrt(l)) at every degree, so nothing overflows
//! or loses precision even at L in the hundreds.

use crate::error::{Error, Result, MAX_DEGREES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The basis of the released SatCLIP checkpoints (zonal terms scaled by pi).
    Satclip,
    /// Standard real orthonormal spherical harmonics.
    Orthonormal,
}

impl Basis {
    pub fn parse(name: &str) -> Option<Basis> {
        match name {
            "satclip" => Some(Basis::Satclip),
            "orthonormal" => Some(Basis::Orthonormal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) degrees: usize,
    /// `Pbar_0^0 = 1 / sqrt(4 pi)`.
    pub(crate) p00: f64,
    /// `sqrt((2m+1) / (2m))`: `Pbar_m^m = diag[m] * sin(theta) * Pbar_{m-1}^{m-1}`.
    pub(crate) diag: Vec<f64>,
    /// `sqrt(2m+3)`: `Pbar_{m+1}^m = offdiag[m] * x * Pbar_m^m`.
    pub(crate) offdiag: Vec<f64>,
    /// For l >= m+2, in loop order (m outer, l inner):
    /// `Pbar_l^m = a * (x * Pbar_{l-1}^m - b * Pbar_{l-2}^m)`.
    pub(crate) a: Vec<f64>,
    pub(crate) b: Vec<f64>,
    /// Factor applied to the m = 0 column of each degree.
    pub(crate) zonal_scale: f64,
}

impl Plan {
    pub fn new(degrees: usize, basis: Basis) -> Result<Plan> {
        if degrees == 0 || degrees > MAX_DEGREES {
            return Err(Error::Degrees { degrees });
        }
        let mut diag = vec![0.0; degrees];
        let mut offdiag = vec![0.0; degrees];
        let mut a = Vec::new();
        let mut b = Vec::new();
        for m in 0..degrees {
            let mf = m as f64;
            if m > 0 {
                diag[m] = ((2.0 * mf + 1.0) / (2.0 * mf)).sqrt();
            }
            offdiag[m] = (2.0 * mf + 3.0).sqrt();
            for l in m + 2..degrees {
                let (lf, m2) = (l as f64, mf * mf);
                a.push(((4.0 * lf * lf - 1.0) / (lf * lf - m2)).sqrt());
                let lp = lf - 1.0;
                b.push(((lp * lp - m2) / (4.0 * lp * lp - 1.0)).sqrt());
            }
        }
        Ok(Plan {
            degrees,
            p00: 0.5 / std::f64::consts::PI.sqrt(),
            diag,
            offdiag,
            a,
            b,
            zonal_scale: match basis {
                Basis::Satclip => std::f64::consts::PI,
                Basis::Orthonormal => 1.0,
            },
        })
    }

    /// Number of Legendre degrees `L`.
    pub fn degrees(&self) -> usize {
        self.degrees
    }

    /// Number of output features per point, `L * L`.
    pub fn num_features(&self) -> usize {
        self.degrees * self.degrees
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_and_absurd_degrees() {
        assert_eq!(
            Plan::new(0, Basis::Satclip).unwrap_err(),
            Error::Degrees { degrees: 0 }
        );
        assert!(Plan::new(MAX_DEGREES + 1, Basis::Satclip).is_err());
        assert!(Plan::new(MAX_DEGREES, Basis::Satclip).is_ok());
    }

    #[test]
    fn coefficient_tables_have_one_entry_per_recurrence_step() {
        let plan = Plan::new(7, Basis::Orthonormal).unwrap();
        // pairs (l, m) with l >= m + 2 and l < 7
        let steps: usize = (0..7).map(|m: usize| 7usize.saturating_sub(m + 2)).sum();
        assert_eq!(plan.a.len(), steps);
        assert_eq!(plan.b.len(), steps);
    }
}
