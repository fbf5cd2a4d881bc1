//! Validation of (lon, lat) input. Runs before any work so an error names the first bad row.

use crate::error::{Column, Error, Result};
use crate::real::Real;

/// Checks that `lonlat` holds whole (lon, lat) pairs, all finite, with |lon| <= 180 and
/// |lat| <= 90. Returns the first offending row.
pub fn validate<I: Real>(lonlat: &[I]) -> Result<()> {
    if !lonlat.len().is_multiple_of(2) {
        return Err(Error::NotPairs { len: lonlat.len() });
    }
    // Fast path: one branch-free pass that vectorises; the slow scan below only runs when
    // something is wrong, to find which row.
    const BLOCK: usize = 1024;
    for (b, block) in lonlat.chunks(BLOCK).enumerate() {
        let mut ok = true;
        for pair in block.chunks_exact(2) {
            let (lon, lat) = (pair[0].to_f64(), pair[1].to_f64());
            // NaN fails both comparisons, so it is caught here too.
            ok &= lon.abs() <= 180.0 && lat.abs() <= 90.0;
        }
        if !ok {
            return Err(first_error(block, b * BLOCK / 2));
        }
    }
    Ok(())
}

fn first_error<I: Real>(block: &[I], first_row: usize) -> Error {
    for (i, pair) in block.chunks_exact(2).enumerate() {
        if let Err(e) = check_row(first_row + i, pair[0].to_f64(), pair[1].to_f64()) {
            return e;
        }
    }
    unreachable!("first_error called on a block that validates")
}

/// The error for row `row` holding (`lon`, `lat`), if either is invalid (longitude first).
/// The one definition of what a bad coordinate is and how it is reported: `validate` uses
/// it for the row it found, and the Python package (through `satclip._core.check_lonlat_row`)
/// for a row it found on a GPU, so both speak with the same words.
pub fn check_row(row: usize, lon: f64, lat: f64) -> Result<()> {
    for (column, value) in [(Column::Longitude, lon), (Column::Latitude, lat)] {
        if !value.is_finite() {
            return Err(Error::NonFinite { row, column, value });
        }
        if value.abs() > column.bound() {
            return Err(Error::OutOfRange { row, column, value });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_closed_ranges() {
        let ok = [-180.0, -90.0, 180.0, 90.0, -0.0, -0.0, 0.0, 0.0];
        assert_eq!(validate(&ok[..]), Ok(()));
    }

    #[test]
    fn names_the_first_bad_row() {
        let mut v = vec![0.0f64; 2 * 5000];
        v[2 * 3001 + 1] = 91.0;
        v[2 * 4000] = f64::NAN;
        assert_eq!(
            validate(&v[..]),
            Err(Error::OutOfRange {
                row: 3001,
                column: Column::Latitude,
                value: 91.0
            })
        );
    }

    #[test]
    fn reports_non_finite_values() {
        let v = [0.0f32, 0.0, f32::INFINITY, 1.0];
        match validate(&v[..]) {
            Err(Error::NonFinite {
                row: 1,
                column: Column::Longitude,
                value,
            }) => {
                assert!(value.is_infinite())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn check_row_reports_what_validate_reports() {
        for (lon, lat) in [
            (f64::NAN, 0.0),
            (0.0, f64::NEG_INFINITY),
            (180.5, 0.0),
            (-1e20, 95.0),
            (0.0, -90.25),
            (f64::INFINITY, 100.0),
        ] {
            let mut v = vec![0.0f64; 2 * 1500];
            v[2 * 1234] = lon;
            v[2 * 1234 + 1] = lat;
            let want = validate(&v[..]).unwrap_err();
            assert_eq!(
                check_row(1234, lon, lat).unwrap_err().to_string(),
                want.to_string()
            );
        }
        assert_eq!(check_row(7, -180.0, 90.0), Ok(()));
    }

    #[test]
    fn rejects_odd_lengths() {
        assert_eq!(
            validate(&[1.0f64, 2.0, 3.0][..]),
            Err(Error::NotPairs { len: 3 })
        );
    }
}
