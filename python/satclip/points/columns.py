"""Longitude/latitude in tabular input: which DataFrame columns hold them, found by name.

One rule for every entry point (``satclip.encode``, ``satclip.spherical_harmonics``, the CLI,
the Dask/Ray/sklearn adapters, probes, xarray coordinates): columns are taken by name, never by
position, so a frame with ``lat, lon`` columns cannot give silently swapped coordinates. The
names are listed once, here. NumPy only: the plain SH path imports this without torch.

``lon``/``lng``/``long``/``longitude`` and ``lat``/``latitude`` say "degrees" outright. ``x``/``y``
are also what projected data is called (metres), so they are taken as degrees only when

* a CRS says so: a GeoDataFrame's ``.crs`` or ``frame.attrs["crs"]`` (anything pyproj reads:
  ``"EPSG:4326"``, ``4326``, WKT, a ``pyproj.CRS``). A geographic CRS in degrees on Greenwich
  means degrees; any other CRS (UTM, a national grid, ...) is transformed to lon/lat with pyproj
  (``always_xy``, the ``geo`` extra); or
* there is no CRS and every finite value fits degrees: ``x`` in [-180, 360] and ``y`` in
  [-90, 90], exactly the range satclip accepts for lon/lat. Projected coordinates almost never
  fit (UTM eastings are 1.6e5..8.4e5 m, northings up to 1e7 m); a table that does not fit gets a
  :class:`~satclip.errors.CRSError` that asks for the CRS instead of a range error on row 0.

A column the caller names explicitly (``lon=``/``lat=``, ``--lon-col``/``--lat-col``) is taken
as degrees unless a CRS is attached.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from satclip.errors import CRSError, DTypeError, ShapeError

#: Names that say "degrees" outright (compared case-insensitively).
LON_DEGREE_NAMES = ("lon", "lng", "long", "longitude")
LAT_DEGREE_NAMES = ("lat", "latitude")
#: Every name recognised for the longitude / latitude column (any case): the degree names, then
#: ``x``/``y``, used only when no degree name is present (a frame with lon/lat and projected x/y
#: columns means its lon/lat) and then subject to the CRS rule of the module doc.
LON_NAMES = (*LON_DEGREE_NAMES, "x")
LAT_NAMES = (*LAT_DEGREE_NAMES, "y")
_DEGREE_NAMES = {*LON_DEGREE_NAMES, *LAT_DEGREE_NAMES}
#: What to do instead, for the entry points that let a column be named.
_OR_NAME_IT = ", or name it where the column can be named (lon=/lat= in satclip.dask and satclip.ray, --lon-col/--lat-col on the command line)"
#: How to say which CRS x/y columns are in.
HOW_TO_GIVE_A_CRS = (
    "say which CRS they are in: frame.attrs['crs'] = 'EPSG:32632' (any CRS pyproj reads), or pass a "
    "GeoDataFrame (geopandas.points_from_xy(frame.x, frame.y, crs=...)); for `satclip encode`, --crs "
    "EPSG:32632, or write the file as GeoParquet with its CRS"
)


def is_degree_name(name: Any) -> bool:
    """Whether a column or coordinate name says longitude/latitude degrees outright."""
    return str(name).strip().lower() in _DEGREE_NAMES


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
        matches = [c for name in names if is_degree_name(name) for c in by_lower.get(name, [])]
        if not matches:
            matches = [c for name in names if not is_degree_name(name) for c in by_lower.get(name, [])]
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
    float64 (N, 2) array of degrees (missing values become NaN, which the coordinate checks then
    name); ``x``/``y`` columns follow the CRS rule of the module doc (:func:`planar_to_degrees`)."""
    lon_name, lat_name = find_lonlat_columns(list(frame.columns), lon, lat)
    columns = []
    for name in (lon_name, lat_name):
        column = frame[name]
        kind = getattr(column.dtype, "kind", "O")
        if kind not in "iufb":
            raise DTypeError(f"column {name!r} must hold numbers (degrees), got dtype {column.dtype}")
        columns.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
    points = np.stack(columns, axis=1)
    return planar_to_degrees(points, (lon_name, lat_name), frame_crs(frame), named=lon is not None or lat is not None)


def frame_crs(frame: Any) -> Any:
    """The CRS attached to a DataFrame: a GeoDataFrame's ``.crs``, else ``frame.attrs["crs"]``, else None."""
    if type(frame).__module__.split(".")[0] == "geopandas":
        crs = getattr(frame, "crs", None)
        if crs is not None:
            return crs
    attrs = getattr(frame, "attrs", None)
    return attrs.get("crs") if isinstance(attrs, dict) else None


def is_planar(names: tuple[Any, Any]) -> bool:
    """Whether (lon, lat) columns so named need the CRS rule (a name is not a degree name)."""
    return not (is_degree_name(names[0]) and is_degree_name(names[1]))


def planar_to_degrees(
    points: np.ndarray, names: tuple[Any, Any], crs: Any = None, *, named: bool = False, first_row: int = 0
) -> np.ndarray:
    """``points`` (N, 2) from columns ``names`` as lon/lat degrees, by the rule of the module doc:
    degree-named columns as they are; otherwise with a CRS transformed to lon/lat (or kept, for a
    geographic CRS in degrees), without one kept when every finite value fits degrees or the caller
    ``named`` the columns, else :class:`~satclip.errors.CRSError`. ``first_row``: the row number of
    ``points[0]`` in the caller's table, for messages."""
    if not is_planar(names):
        return points
    if crs is not None:
        from satclip.points.geo import crs_to_lonlat  # lazy: pyproj

        lon, lat = crs_to_lonlat(points[:, 0], points[:, 1], crs, first_row=first_row)
        return np.stack([lon, lat], axis=1)
    if not named:
        check_fits_degrees(points, names, first_row=first_row)
    return points


def check_fits_degrees(
    points: np.ndarray,
    names: tuple[Any, Any],
    *,
    first_row: int = 0,
    what: str = "columns",
    how: str = HOW_TO_GIVE_A_CRS,
) -> None:
    """Raises :class:`~satclip.errors.CRSError` unless every finite x is in [-180, 360] and every
    finite y in [-90, 90] (non-finite values are left to the coordinate checks, which name them)."""
    from satclip.points.arrays import LAT_RANGE, LON_RANGE

    x, y = points[:, 0], points[:, 1]
    x_out = np.isfinite(x) & ((x < LON_RANGE[0]) | (x > LON_RANGE[1]))
    outside = x_out | (np.isfinite(y) & ((y < LAT_RANGE[0]) | (y > LAT_RANGE[1])))
    if not outside.any():
        return
    row = int(np.argmax(outside))
    err = CRSError(
        f"{what} {str(names[0])!r}/{str(names[1])!r} are not longitude/latitude degrees (row {first_row + row}: "
        f"{float(x[row])!r}, {float(y[row])!r}; degrees have x in [-180, 360] and y in [-90, 90]) and no CRS says "
        f"what they are; if they are projected coordinates, {how}"
    )
    err.row, err.column = first_row + row, "lon" if x_out[row] else "lat"
    raise err


__all__ = [
    "LAT_DEGREE_NAMES",
    "LAT_NAMES",
    "LON_DEGREE_NAMES",
    "LON_NAMES",
    "check_fits_degrees",
    "find_lonlat_columns",
    "frame_crs",
    "frame_lonlat",
    "is_dataframe",
    "is_degree_name",
    "is_planar",
    "planar_to_degrees",
]
