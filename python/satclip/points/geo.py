"""Geo-native inputs to :func:`satclip.encode`: GeoPandas, xarray and H3 cell ids (the ``geo`` extra).

:func:`convert` turns such an input into ``[lon, lat]`` degrees plus a function that shapes the
embeddings like the input; anything else gives ``None`` and :func:`satclip.encode` carries on as
before. Nothing here imports GeoPandas, pyproj, xarray or h3 until an input of that kind arrives:
an object is recognised by the module its type comes from.

* **GeoDataFrame / GeoSeries**: any CRS; points are transformed to EPSG:4326 with pyproj
  (``always_xy``, so the order is always lon, lat). A non-point geometry is represented by
  shapely's ``representative_point()`` computed in the input's CRS: a point guaranteed to lie in
  the polygon (on the line), unlike the centroid, which can fall outside a concave shape. A
  missing, empty or invalid geometry is an error naming the row; so is a frame without a CRS.
  The result is a NumPy array, row ``i`` for row ``i``.
* **xarray DataArray / Dataset** with longitude/latitude coordinates (named ``lon``/``longitude``/
  ``lng``/``long`` and ``lat``/``latitude``, any case, or marked ``standard_name`` / degree
  ``units``): 1-D coordinates on different dimensions are a grid (every combination), 2-D
  coordinates on the same dimensions a curvilinear grid. The result is a DataArray over those
  spatial dimensions plus ``embedding``, carrying the input's spatial coordinates and attributes.
  Other dimensions (time, band) are dropped: the embedding depends only on the location.
* **H3 cell ids** (hex strings; a list, NumPy array or pandas Series of them): each cell's centre.
  Integer ids are ambiguous with coordinates, so pass them through :func:`h3_to_lonlat` first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from satclip.errors import CoordinateError, DTypeError, SatclipError, ShapeError

Wrap = Callable[[Any], Any]

_LON_NAMES = ("lon", "longitude", "lng", "long")
_LAT_NAMES = ("lat", "latitude")


def convert(obj: Any) -> tuple[np.ndarray, Wrap] | None:
    """``(points, wrap)`` for a geo-native input (``wrap(embeddings)`` shapes the result), else ``None``."""
    top = type(obj).__module__.split(".")[0]
    if top == "geopandas":
        return _from_geopandas(obj), _identity
    if top == "xarray":
        return _from_xarray(obj)
    if _looks_like_h3(obj):
        return h3_to_lonlat(obj), _identity
    return None


def _identity(x: Any) -> Any:
    return x


def _need(module: str, what: str) -> Any:
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError:
        raise SatclipError(f"{what} needs {module}: pip install 'satclip[geo]'") from None


# ----------------------------------------------------------------------------------------
# GeoPandas


def _from_geopandas(obj: Any) -> np.ndarray:
    geopandas = sys.modules["geopandas"]
    if isinstance(obj, geopandas.GeoDataFrame):
        if obj._geometry_column_name not in obj.columns:
            raise ShapeError("the GeoDataFrame has no active geometry column; call set_geometry first")
        series = obj.geometry
    elif isinstance(obj, geopandas.GeoSeries):
        series = obj
    else:
        raise DTypeError(f"cannot encode a {type(obj).__name__}; pass a GeoDataFrame or GeoSeries")
    if series.crs is None:
        raise SatclipError(
            "the GeoDataFrame/GeoSeries has no CRS, so its coordinates cannot be placed on the globe; "
            "set it first, e.g. gdf.set_crs('EPSG:4326') for lon/lat degrees"
        )
    geoms = series.array
    missing = series.isna().to_numpy() | series.is_empty.to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise SatclipError(f"row {row} (index {series.index[row]!r}) has a missing or empty geometry")
    invalid = ~series.is_valid.to_numpy()
    if invalid.any():
        row = int(np.argmax(invalid))
        explain = _need("shapely", "GeoPandas input").is_valid_reason(geoms[row])
        raise SatclipError(f"row {row} (index {series.index[row]!r}) has an invalid geometry: {explain}")
    # A point's representative point is the point itself, so one call covers every geometry type.
    points = series.representative_point()
    x, y = points.x.to_numpy(dtype=np.float64), points.y.to_numpy(dtype=np.float64)
    pyproj = _need("pyproj", "GeoPandas input")
    crs = pyproj.CRS.from_user_input(series.crs)
    wgs84 = pyproj.CRS.from_epsg(4326)
    if not crs.equals(wgs84, ignore_axis_order=True):
        transformer = pyproj.Transformer.from_crs(crs, wgs84, always_xy=True)
        x, y = transformer.transform(x, y)
    lonlat = np.column_stack([x, y])
    bad = ~np.isfinite(lonlat).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise CoordinateError(
            f"row {row} (index {series.index[row]!r}) cannot be transformed from {crs.name} to lon/lat"
        )
    return lonlat


# ----------------------------------------------------------------------------------------
# xarray


def _find_coord(coords: Any, names: tuple[str, ...], standard: str, units: tuple[str, ...]) -> Any:
    by_name = [k for k in coords if str(k).lower() in names]
    marked = [
        k
        for k in coords
        if coords[k].attrs.get("standard_name") == standard or str(coords[k].attrs.get("units", "")).lower() in units
    ]
    found = list(dict.fromkeys(by_name or marked))
    if not found:
        return None
    if len(found) > 1:
        raise ShapeError(f"ambiguous {standard} coordinates {found}; keep only one")
    return found[0]


def _from_xarray(obj: Any) -> tuple[np.ndarray, Wrap]:
    xr = _need("xarray", "xarray input")
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise DTypeError(f"cannot encode a {type(obj).__name__}; pass an xarray DataArray or Dataset")
    coords = obj.coords
    lon = _find_coord(coords, _LON_NAMES, "longitude", ("degrees_east", "degree_east", "degrees_e"))
    lat = _find_coord(coords, _LAT_NAMES, "latitude", ("degrees_north", "degree_north", "degrees_n"))
    if lon is None or lat is None:
        raise ShapeError(
            f"the xarray input needs longitude and latitude coordinates (lon/longitude and lat/latitude, or "
            f"standard_name/units marking them); it has {[str(k) for k in coords]}"
        )
    lon_c, lat_c = coords[lon], coords[lat]
    product = lon_c.ndim == 1 and lat_c.ndim == 1 and lon_c.dims != lat_c.dims
    if product:
        order = [d for d in _dims_in_order(obj) if d in (lon_c.dims[0], lat_c.dims[0])]
        grid_lon, grid_lat = xr.broadcast(lon_c, lat_c)
        grid_lon, grid_lat = grid_lon.transpose(*order), grid_lat.transpose(*order)
    elif lon_c.dims == lat_c.dims and lon_c.ndim in (1, 2):  # curvilinear (2-D) or a list of points (1-D)
        grid_lon, grid_lat = lon_c, lat_c
    else:
        raise ShapeError(
            f"longitude {lon!r} has dims {lon_c.dims} and latitude {lat!r} has dims {lat_c.dims}: use 1-D "
            "coordinates on two dimensions (a grid) or coordinates with the same dimensions (curvilinear)"
        )
    dims = tuple(grid_lon.dims)
    shape = grid_lon.shape
    lonlat = np.column_stack([_coord_degrees(grid_lon, lon).ravel(), _coord_degrees(grid_lat, lat).ravel()])
    _check_grid_degrees(lonlat, (lon, lat), dims, shape)
    keep = {k: v for k, v in coords.items() if set(v.dims) <= set(dims)}
    attrs = dict(obj.attrs)

    def wrap(embeddings: Any) -> Any:
        values = np.asarray(embeddings)
        # The embedding size from the array itself: -1 cannot be inferred for an empty grid.
        values = values.reshape(*shape, values.shape[-1])
        out = xr.DataArray(values, dims=(*dims, "embedding"), coords=keep, attrs=attrs, name="embedding")
        return out.assign_coords(embedding=np.arange(values.shape[-1]))

    if product:
        lat_first = order[0] == lat_c.dims[0]
        return lonlat, GridWrap(wrap, _coord_degrees(lon_c, lon), _coord_degrees(lat_c, lat), lat_first)
    return lonlat, wrap


class GridWrap:
    """The ``wrap`` of an xarray grid with 1-D lon and lat coordinates, which also carries the
    two axes, so that :func:`satclip.encode` can take the separable grid path
    (:func:`satclip.embed.grid.encode_grid`). ``lat_first``: the input's dims are (lat, lon)."""

    def __init__(self, wrap: Wrap, lon: np.ndarray, lat: np.ndarray, lat_first: bool):
        self.wrap, self.lon, self.lat, self.lat_first = wrap, lon, lat, lat_first

    def __call__(self, embeddings: Any) -> Any:
        return self.wrap(embeddings)


def _coord_degrees(coord: Any, name: Any) -> np.ndarray:
    values = np.asarray(coord.values)
    if values.dtype.kind not in "iuf":
        raise DTypeError(f"xarray coordinate {str(name)!r} must hold numbers (degrees), got dtype {values.dtype}")
    return values.astype(np.float64)


def _check_grid_degrees(
    lonlat: np.ndarray, names: tuple[Any, Any], dims: tuple[Any, ...], shape: tuple[int, ...]
) -> None:
    """Refuses a bad coordinate naming the xarray coordinate and the grid position, not the row of
    the flattened grid (which the core's message would give)."""
    for axis, (column, name, limit) in enumerate(((0, names[0], 180.0), (1, names[1], 90.0))):
        values = lonlat[:, column]
        bad = ~(np.isfinite(values) & (np.abs(values) <= limit))
        if not bad.any():
            continue
        row = int(np.argmax(bad))
        position = ", ".join(f"{dim}={i}" for dim, i in zip(dims, np.unravel_index(row, shape), strict=True))
        value = float(values[row])
        what = "longitude" if axis == 0 else "latitude"
        message = f"xarray coordinate {str(name)!r} at grid position ({position}) is {value!r}: {what}s must be "
        if not np.isfinite(value):
            message += f"finite numbers in [-{limit:g}, {limit:g}] degrees"
        elif axis == 0 and 180 < value <= 360:
            message += (
                "in [-180, 180] degrees, and this grid looks like 0..360 (as ERA5 stores it); convert it with "
                f"obj.assign_coords({name}=(obj[{str(name)!r}] + 180) % 360 - 180).sortby({str(name)!r})"
            )
        else:
            message += f"in [-{limit:g}, {limit:g}] degrees"
        err = CoordinateError(message)
        err.row, err.column = row, "lon" if axis == 0 else "lat"
        raise err


def _dims_in_order(obj: Any) -> list[Any]:
    return list(obj.dims)


# ----------------------------------------------------------------------------------------
# H3


def _looks_like_h3(obj: Any) -> bool:
    """A flat sequence of strings, possibly with missing entries (None/NaN), which
    :func:`h3_to_lonlat` then names by row."""
    if isinstance(obj, (list, tuple)):
        return (
            len(obj) > 0
            and any(isinstance(v, str) for v in obj)
            and all(isinstance(v, str) or _is_missing(v) for v in obj)
        )
    if isinstance(obj, np.ndarray):
        return (
            obj.ndim == 1
            and obj.size > 0
            and (obj.dtype.kind == "U" or (obj.dtype.kind == "O" and isinstance(obj[0], str)))
        )
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(obj, (pandas.Series, pandas.Index)):
        return (
            len(obj) > 0
            and obj.dtype.kind in "OUT"
            and isinstance(obj.iloc[0] if hasattr(obj, "iloc") else obj[0], str)
        )
    return False


def h3_to_lonlat(cells: Any) -> np.ndarray:
    """``[lon, lat]`` of the centres of H3 cells (hex strings or 64-bit integer ids), ``(N, 2)``."""
    h3 = _need("h3", "H3 input")
    values = list(cells.tolist() if hasattr(cells, "tolist") else cells)
    out = np.empty((len(values), 2), dtype=np.float64)
    for i, cell in enumerate(values):
        if _is_missing(cell):
            raise CoordinateError(f"row {i}: the H3 cell id is missing ({cell!r}); drop or fill that row")
        if isinstance(cell, (bool, np.bool_)):
            text = None
        elif isinstance(cell, (int, np.integer)):
            # H3 ids are unsigned 64-bit integers; h3 would overflow on anything else.
            text = h3.int_to_str(int(cell)) if 0 <= int(cell) < 1 << 64 else None
        else:
            text = cell
        if not isinstance(text, str) or not h3.is_valid_cell(text):
            raise CoordinateError(f"row {i}: {cell!r} is not a valid H3 cell id")
        lat, lon = h3.cell_to_latlng(text)
        out[i] = lon, lat
    return out


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


__all__ = ["GridWrap", "convert", "h3_to_lonlat"]
