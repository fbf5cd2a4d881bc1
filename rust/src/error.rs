//! The ways an encoding request can be wrong. Each variant names what is wrong and, for
//! coordinates, the offending row, so the Python layer can raise a precise exception.

use std::fmt;

/// Largest supported number of Legendre degrees. The recurrences are stable far beyond it;
/// the cap only keeps a typo (say `L = 40000`) from asking for terabytes of output.
pub const MAX_DEGREES: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// `L` is zero or above [`MAX_DEGREES`].
    Degrees { degrees: usize },
    /// The coordinate buffer does not hold whole (lon, lat) pairs.
    NotPairs { len: usize },
    /// A coordinate is NaN or infinite.
    NonFinite {
        row: usize,
        column: Column,
        value: f64,
    },
    /// A coordinate lies outside its valid range.
    OutOfRange {
        row: usize,
        column: Column,
        value: f64,
    },
    /// The caller's output buffer has the wrong number of elements.
    OutputSize {
        expected: (usize, usize),
        found: usize,
    },
    /// A working buffer (per-thread workspace or input copy) could not be allocated.
    OutOfMemory { bytes: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Longitude,
    Latitude,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::Longitude => "longitude",
            Column::Latitude => "latitude",
        }
    }

    /// The valid closed range, in degrees. Longitude takes [-180, 180] and also (180, 360], the
    /// convention of grids stored as 0..360 (ERA5, CMIP); a value there names the meridian
    /// `lon - 360`. Swapped [lat, lon] columns are still caught, by the latitude range.
    pub(crate) fn range(self) -> (f64, f64) {
        match self {
            Column::Longitude => (-180.0, 360.0),
            Column::Latitude => (-90.0, 90.0),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Degrees { degrees } => write!(
                f,
                "L (the number of Legendre degrees) must be between 1 and {MAX_DEGREES}, got {degrees}"
            ),
            Error::NotPairs { len } => write!(
                f,
                "coordinates must be (lon, lat) pairs, got a buffer of {len} values"
            ),
            Error::NonFinite { row, column, value } => write!(
                f,
                "row {row}: {} is {value:?}; coordinates must be finite numbers in degrees",
                column.name()
            ),
            Error::OutOfRange { row, column, value } => {
                let (lo, hi) = column.range();
                write!(
                    f,
                    "row {row}: {} {value:?} is outside [{lo}, {hi}]; satclip takes [lon, lat] in degrees \
                     (column 0 longitude, column 1 latitude)",
                    column.name()
                )?;
                // Every latitude is a valid longitude, so only the latitude column can show a swap.
                match column {
                    Column::Latitude => write!(f, " - are the columns swapped?"),
                    Column::Longitude => Ok(()),
                }
            }
            Error::OutputSize { expected, found } => write!(
                f,
                "`out` must have shape ({}, {}) ({} elements), got {found} elements",
                expected.0,
                expected.1,
                expected.0 * expected.1
            ),
            Error::OutOfMemory { bytes } => write!(
                f,
                "could not allocate {bytes} bytes of working memory for the spherical harmonics"
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
