//! Validation of (lon, lat) input. Runs before any work so an error names the first bad row.
//!
//! Longitudes are accepted in [-180, 360]: [-180, 180] and the 0..360 convention of gridded data
//! (ERA5, CMIP). The kernels see every longitude through [`wrap_lon`], so a value in (180, 360]
//! gives exactly the bits its twin `lon - 360` gives.

use crate::error::{Column, Error, Result};
use crate::real::Real;

/// Checks that `lonlat` holds whole (lon, lat) pairs, all finite, with -180 <= lon <= 360 and
/// |lat| <= 90. Returns the first offending row.
pub fn validate<I: Real>(lonlat: &[I]) -> Result<()> {
    if !lonlat.len().is_multiple_of(2) {
        return Err(Error::NotPairs { len: lonlat.len() });
    }
    // Fast path: one branch-free pass that vectorises; the slow scan below only runs when
    // something is wrong, to find which row.
    const BLOCK: usize = 1024;
    let lon_range = Column::Longitude.range();
    let lat_bound = Column::Latitude.range().1;
    for (b, block) in lonlat.chunks(BLOCK).enumerate() {
        let mut ok = true;
        for pair in block.chunks_exact(2) {
            let (lon, lat) = (pair[0].to_f64(), pair[1].to_f64());
            // NaN fails both comparisons, so it is caught here too.
            ok &= lon >= lon_range.0 && lon <= lon_range.1 && lat.abs() <= lat_bound;
        }
        if !ok {
            return Err(first_error(block, b * BLOCK / 2));
        }
    }
    Ok(())
}

/// The longitude in [-180, 180] of the meridian a validated longitude (in [-180, 360]) names:
/// `lon - 360` for `lon` in (180, 360], `lon` itself otherwise. The subtraction is exact
/// (Sterbenz: `lon` and 360 are within a factor of two of each other), and so it is in f32, so
/// a 0..360 grid gives the same bits as the same grid written as -180..180 (360 gives 0's).
#[inline(always)]
pub(crate) fn wrap_lon(lon: f64) -> f64 {
    if lon > 180.0 {
        lon - 360.0
    } else {
        lon
    }
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
        let (lo, hi) = column.range();
        if !(lo..=hi).contains(&value) {
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
        let ok = [
            -180.0, -90.0, 180.0, 90.0, -0.0, -0.0, 0.0, 0.0, 360.0, 90.0,
        ];
        assert_eq!(validate(&ok[..]), Ok(()));
    }

    #[test]
    fn accepts_longitudes_from_minus_180_to_360() {
        for lon in [
            0.0,
            180.0,
            359.999,
            360.0,
            180.000_000_1,
            -180.0,
            270.0,
            -0.0,
        ] {
            for lat in [-90.0, 0.0, 45.0, 90.0] {
                assert_eq!(validate(&[lon, lat][..]), Ok(()), "({lon}, {lat})");
                assert_eq!(validate(&[lon as f32, lat as f32][..]), Ok(()));
                assert_eq!(check_row(0, lon, lat), Ok(()), "({lon}, {lat})");
            }
        }
    }

    #[test]
    fn refuses_longitudes_outside_minus_180_to_360() {
        for lon in [360.000_000_1, -180.000_000_1, 540.0, -360.0, 1e20, -1e300] {
            let v = [0.0, 0.0, lon, 0.0];
            let err = validate(&v[..]).unwrap_err();
            assert_eq!(
                err,
                Error::OutOfRange {
                    row: 1,
                    column: Column::Longitude,
                    value: lon
                }
            );
            assert_eq!(check_row(1, lon, 0.0), Err(err.clone()));
            let msg = err.to_string();
            assert!(msg.contains("is outside [-180, 360]"), "{msg}");
            // A swap cannot put an out-of-range value in the longitude column.
            assert!(!msg.contains("swapped"), "{msg}");
        }
        // Just above 360 stays above it in float32 too.
        assert!(matches!(
            validate(&[360.0001f32, 0.0][..]),
            Err(Error::OutOfRange { row: 0, .. })
        ));
        for lon in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                validate(&[0.0, 0.0, lon, 0.0][..]),
                Err(Error::NonFinite {
                    row: 1,
                    column: Column::Longitude,
                    ..
                })
            ));
        }
    }

    #[test]
    fn latitude_is_still_bounded_by_90_and_hints_at_swapped_columns() {
        // [lat, lon] typed the wrong way round: the longitude (now in the latitude column) is out.
        let err = validate(&[47.37, 8.55, 37.77, -122.42][..]).unwrap_err();
        assert_eq!(
            err,
            Error::OutOfRange {
                row: 1,
                column: Column::Latitude,
                value: -122.42
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("is outside [-90, 90]"), "{msg}");
        assert!(msg.ends_with("are the columns swapped?"), "{msg}");
    }

    #[test]
    fn wrap_lon_is_exact_and_maps_360_to_zero() {
        assert_eq!(wrap_lon(360.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(wrap_lon(180.0), 180.0);
        assert_eq!(wrap_lon(-180.0), -180.0);
        assert_eq!(wrap_lon(-0.0).to_bits(), (-0.0f64).to_bits());
        for lon in [180.000_000_1, 181.0, 270.0, 359.999, 359.999_999_999_9] {
            let w = wrap_lon(lon);
            assert!((-180.0..=0.0).contains(&w), "{lon} -> {w}");
            // Exact: adding 360 back gives the input.
            assert_eq!(w + 360.0, lon);
        }
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
            (360.5, 0.0),
            (-180.5, 0.0),
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
