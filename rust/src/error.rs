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

    /// The largest valid magnitude, in degrees.
    pub(crate) fn bound(self) -> f64 {
        match self {
            Column::Longitude => 180.0,
            Column::Latitude => 90.0,
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
                let b = column.bound();
                write!(
                    f,
                    "row {row}: {} {value:?} is outside [-{b}, {b}]; satclip takes [lon, lat] in degrees \
                     (column 0 longitude, column 1 latitude) - are the columns swapped?",
                    column.name()
                )
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
