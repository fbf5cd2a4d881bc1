"""Longitude/latitude in tabular input: which DataFrame columns hold them, found by name.

One rule for every entry point (``satclip.encode``, ``satclip.spherical_harmonics``, the CLI,
the Dask/Ray/sklearn adapters, probes): columns are taken by name, never by position, so a
frame with ``lat, lon`` columns cannot give silently swapped coordinates. NumPy only: the
plain SH path imports this without torch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from satclip.errors import DTypeError, ShapeError

#: Column names recognised in pandas DataFrames (compared case-insensitively).
LON_NAMES = ("lon", "lng", "long", "longitude", "x")
LAT_NAMES = ("lat", "latitude", "y")
#: Names that say "degrees" outright; ``x``/``y`` are only used when none of these is present
#: (a frame with lon/lat and projected x/y columns means its lon/lat).
_DEGREE_NAMES = {"lon", "lng", "long", "longitude", "lat", "latitude"}
#: What to do instead, for the entry points that let a column be named.
_OR_NAME_IT = ", or name it where the column can be named (lon=/lat= in satclip.dask and satclip.ray, --lon-col/--lat-col on the command line)"


def is_dataframe(obj: Any) -> bool:
    """True for a pandas DataFrame, without importing pandas when the caller never did."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def find_lonlat_columns(columns: Sequence[Any], lon: Any = None, lat: Any = None) -> tuple[Any, Any]:
    """The (longitude, latitude) column names among ``columns``: ``lon``/``lat`` when given
    (checked to exist), else found by the common names (case-insensitive); ``x``/``y`` only when
    no lon/lat-like name is present."""
    by_lower: dict[str, list[Any]] = {}
    for c in columns:
        by_lower.setdefault(str(c).strip().lower(), []).append(c)
    found = []
    for axis, given, names in (("longitude", lon, LON_NAMES), ("latitude", lat, LAT_NAMES)):
        if given is not None:
            if given not in columns:
                raise ShapeError(f"no {axis} column {given!r}; the columns are {[str(c) for c in columns]}")
            found.append(given)
            continue
        matches = [c for name in names if name in _DEGREE_NAMES for c in by_lower.get(name, [])]
        if not matches:
            matches = [c for name in names if name not in _DEGREE_NAMES for c in by_lower.get(name, [])]
        if not matches:
            raise ShapeError(
                f"no {axis} column: looked for {', '.join(names)} (any case) among the columns "
                f"{[str(c) for c in columns]}; rename the {axis} column to {names[0]!r}{_OR_NAME_IT}"
            )
        if len(matches) > 1:
            names_found = [str(c) for c in matches]
            raise ShapeError(
                f"ambiguous {axis} columns {names_found}: keep only one "
                f"(e.g. frame.drop(columns={names_found[1:]!r})){_OR_NAME_IT}"
            )
        found.append(matches[0])
    if found[0] == found[1]:
        raise ShapeError(f"the same column {found[0]!r} cannot be both longitude and latitude")
    return found[0], found[1]


def frame_lonlat(frame: Any, lon: Any = None, lat: Any = None) -> np.ndarray:
    """The DataFrame's (longitude, latitude) columns, found by :func:`find_lonlat_columns`, as a
    float64 (N, 2) array (missing values become NaN, which the coordinate checks then name)."""
    lon, lat = find_lonlat_columns(list(frame.columns), lon, lat)
    columns = []
    for name in (lon, lat):
        column = frame[name]
        kind = getattr(column.dtype, "kind", "O")
        if kind not in "iufb":
            raise DTypeError(f"column {name!r} must hold numbers (degrees), got dtype {column.dtype}")
        columns.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.stack(columns, axis=1)


__all__ = ["LAT_NAMES", "LON_NAMES", "find_lonlat_columns", "frame_lonlat", "is_dataframe"]
