"""NumPy arrays and sequences of [lon, lat] pairs as the (N, 2) float arrays the Rust core reads.

The values themselves (ranges, NaN, inf) are checked by the core, which names the first bad row;
this module checks what the core cannot see: the container, its dtype and its shape.

Longitudes are accepted in [-180, 360]: [-180, 180] and the 0..360 convention of gridded data
(ERA5, CMIP). :func:`wrap_longitudes` takes a longitude in (180, 360] to ``lon - 360``, the
same meridian in [-180, 180]; the subtraction is exact in float64 and float32 (Sterbenz: ``lon``
and 360 are within a factor of two), which is what the Rust core does where a longitude becomes
an angle, so every path gives a 0..360 point the bits of its -180..180 twin.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import numpy as np

from satclip import _core
from satclip.errors import CoordinateError, DTypeError, InternalError, ShapeError
from satclip.points.columns import frame_lonlat, is_dataframe

#: The accepted longitudes (degrees): [-180, 180] and 0..360 (a longitude in (180, 360] is the
#: meridian ``lon - 360``). Latitudes: [-90, 90].
LON_RANGE = (-180.0, 360.0)
LAT_RANGE = (-90.0, 90.0)


def bad_lonlat_rows(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows whose (lon, lat) is non-finite or out of range (NaN is bad)."""
    return ~((lon >= LON_RANGE[0]) & (lon <= LON_RANGE[1]) & (lat >= LAT_RANGE[0]) & (lat <= LAT_RANGE[1]))


def raise_for_row(row: int, lon: float, lat: float) -> NoReturn:
    """Raises the :class:`~satclip.errors.CoordinateError` the Rust core raises for this row (the
    core owns what a bad coordinate is and its message, ``.row`` and ``.column``)."""
    _core.check_lonlat_row(row, float(lon), float(lat))
    raise InternalError(f"row {row} of lonlat failed the range check but passed the core's")  # unreachable


def wrap_longitudes(points: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) with every longitude in (180, 360] written as ``lon - 360`` (exact), the
    other values untouched; ``points`` itself when no longitude is above 180 (never modified)."""
    above = points[:, 0] > 180
    if not above.any():
        return points
    out = points.copy()
    out[above, 0] -= out.dtype.type(360)
    return out


def valid_points(lonlat: object) -> np.ndarray:
    """``lonlat`` (anything :func:`as_lonlat_array` takes) as validated float64 (N, 2) degrees,
    longitudes in [-180, 180] (0..360 input wrapped, :func:`wrap_longitudes`). The NumPy
    counterpart of :func:`satclip.points.inputs.as_points`, for code that needs no torch."""
    points = np.ascontiguousarray(as_lonlat_array(lonlat), dtype=np.float64)
    lon, lat = points[:, 0], points[:, 1]
    bad = bad_lonlat_rows(lon, lat)
    if bad.any():
        row = int(np.argmax(bad))
        raise_for_row(row, lon[row], lat[row])
    return wrap_longitudes(points)


def _parses_as_float(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _object_pairs(arr: np.ndarray) -> np.ndarray:
    """An object (N, 2) array (lists of pairs holding None, or numbers of mixed types) as float64;
    a missing or non-numeric entry is named by row and column."""
    out = np.empty(arr.shape, dtype=np.float64)
    for (row, column), value in np.ndenumerate(arr):
        axis = "longitude" if column == 0 else "latitude"
        if value is None or type(value).__name__ in ("NAType", "NaTType"):
            err = CoordinateError(f"row {row}: {axis} is missing ({value!r}); drop or fill that row")
            err.row, err.column = row, "lon" if column == 0 else "lat"
            raise err
        if isinstance(value, (str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise DTypeError(
                f"row {row}: the {axis} {value!r} is a {type(value).__name__}, not a number; "
                "lonlat must hold real numbers (degrees)"
            )
        out[row, column] = value
    return out


def as_lonlat_array(lonlat: object) -> np.ndarray:
    """Returns ``lonlat`` as an aligned C-contiguous float32/float64 array of shape (N, 2).

    float32 and float64 are kept; integers and booleans become float64; float16 becomes float32.
    Anything else (complex, object, strings) raises :class:`~satclip.errors.DTypeError`.
    A pandas DataFrame gives its longitude/latitude columns found by name, exactly as
    :func:`satclip.encode` finds them (never by position). Torch tensors are accepted on any
    device, with or without ``requires_grad``, in any real dtype (bfloat16 becomes float32) and
    sparse; masked arrays are refused (their mask would be ignored).
    """
    if is_dataframe(lonlat):
        return np.ascontiguousarray(frame_lonlat(lonlat))
    if isinstance(lonlat, np.ma.MaskedArray):
        raise DTypeError(
            "lonlat is a masked array; satclip would ignore its mask. Drop the masked rows "
            "(a[~np.ma.getmaskarray(a).any(axis=1)]) or fill them (a.filled(...)) first"
        )
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(lonlat, torch.Tensor):
        lonlat = _tensor_to_numpy(torch, lonlat)
    try:
        arr = np.asarray(lonlat)
    except ValueError as err:
        # NumPy refuses ragged nested sequences ("inhomogeneous shape").
        raise ShapeError(
            f"lonlat must be (N, 2) [lon, lat] pairs; NumPy could not make an array of it ({err})"
        ) from None
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32 if arr.dtype.itemsize < 4 else np.float64)
    elif kind in "iub":
        arr = arr.astype(np.float64)
    elif kind == "O" and arr.ndim == 2 and arr.shape[1] == 2:
        arr = _object_pairs(arr)
    elif kind in "US" and arr.ndim == 2 and arr.shape[1] == 2 and arr.size:
        # Pairs with a string in them (NumPy made every entry a string): name the first entry
        # that is no number, or else the first entry.
        row, column = next((i for i, v in np.ndenumerate(arr) if not _parses_as_float(v)), (0, 0))
        axis = "longitude" if column == 0 else "latitude"
        raise DTypeError(
            f"row {row}: the {axis} {arr[row, column].item()!r} is a str, not a number; "
            "lonlat must hold real numbers (degrees)"
        )
    else:
        raise DTypeError(f"lonlat must hold real numbers (degrees), got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        hint = ""
        if arr.ndim == 1 and arr.shape[0] == 2:
            hint = " (a single point must be passed as [[lon, lat]])"
        raise ShapeError(f"lonlat must have shape (N, 2) with columns [lon, lat], got {arr.shape}{hint}")
    # Unaligned or byte-swapped data is copied like any other layout the core cannot read.
    return np.require(arr, dtype=arr.dtype.newbyteorder("="), requirements=["C_CONTIGUOUS", "ALIGNED"])


def _tensor_to_numpy(torch: object, t: object) -> np.ndarray:
    """A CPU NumPy array with ``t``'s values, or a satclip error saying why there is none."""
    from satclip.points.tensors import as_dense_real_tensor  # lazy: imports torch

    t = as_dense_real_tensor(t).detach()  # type: ignore[arg-type]  # a torch.Tensor (caller checked)
    return t.cpu().numpy()
