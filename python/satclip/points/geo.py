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
* **xarray DataArray / Dataset** with longitude/latitude coordinates (the names of
  :mod:`satclip.points.columns`, any case, or marked by ``standard_name`` / degree ``units``):
  1-D coordinates on different dimensions are a grid (every combination), 2-D coordinates on the
  same dimensions a curvilinear grid; longitudes in [-180, 360] (a 0..360 grid is fine), latitudes
  in either order. Without lon/lat, ``x``/``y`` coordinates (or ``standard_name``
  ``projection_x/y_coordinate``), 1-D or 2-D, placed by the object's CRS: ``.rio.crs``
  (rioxarray, when installed) or a CF ``grid_mapping`` variable (``crs_wkt``/``spatial_ref``, or
  its CF parameters). A geographic CRS in degrees means x/y are degrees; a projected one is
  transformed to lon/lat with pyproj (``always_xy``) cell by cell. Without a CRS, x/y are degrees
  only when they fit ([-180, 360] x [-90, 90]), else a :class:`~satclip.errors.CRSError` asks for
  one. The result is a DataArray over the spatial dimensions plus ``embedding``, carrying the
  input's spatial coordinates and attributes. Other dimensions (time, band) are dropped: the
  embedding depends only on the location. A lon x lat product (1-D degree axes) goes through
  the separable grid path (:func:`satclip.encode_grid`); anything else point-wise.
* **H3 cell ids** (hex strings; a list, NumPy array or pandas Series of them): each cell's centre.
  Integer ids are ambiguous with coordinates, so pass them through :func:`h3_to_lonlat` first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from satclip.errors import CoordinateError, CRSError, DTypeError, SatclipError, ShapeError
from satclip.points.arrays import LAT_RANGE, LON_RANGE
from satclip.points.columns import LAT_DEGREE_NAMES, LON_DEGREE_NAMES, LON_NAMES, check_fits_degrees

Wrap = Callable[[Any], Any]

_HOW_TO_GIVE_XARRAY_A_CRS = (
    "give the object its CRS: obj.rio.write_crs('EPSG:32632') (rioxarray), or a CF grid_mapping variable "
    "(with crs_wkt) named by the data variable's grid_mapping attribute"
)

#: The planar coordinate names (the non-degree names of :mod:`satclip.points.columns`).
_X_NAMES = tuple(n for n in LON_NAMES if n not in LON_DEGREE_NAMES)
_Y_NAMES = ("y",)


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
    lon = _find_coord(coords, LON_DEGREE_NAMES, "longitude", ("degrees_east", "degree_east", "degrees_e"))
    lat = _find_coord(coords, LAT_DEGREE_NAMES, "latitude", ("degrees_north", "degree_north", "degrees_n"))
    planar = False
    if lon is None and lat is None:
        lon = _find_coord(coords, _X_NAMES, "projection_x_coordinate", ())
        lat = _find_coord(coords, _Y_NAMES, "projection_y_coordinate", ())
        planar = True
    if lon is None or lat is None:
        raise ShapeError(
            f"the xarray input needs longitude and latitude coordinates (lon/longitude and lat/latitude, or "
            f"standard_name/units marking them), or x/y coordinates with a CRS; it has {[str(k) for k in coords]}"
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
    transformed = False
    if planar:
        crs = xarray_crs(obj)
        if crs is not None and not _is_degrees(crs):
            x, y = crs_to_lonlat(lonlat[:, 0], lonlat[:, 1], crs, where=lambda row: _position(dims, shape, row))
            lonlat = np.column_stack([x, y])
            transformed = True
        elif crs is None:
            check_fits_degrees(lonlat, (lon, lat), what="the xarray coordinates", how=_HOW_TO_GIVE_XARRAY_A_CRS)
    _check_grid_degrees(lonlat, (lon, lat), dims, shape)
    keep = {k: v for k, v in coords.items() if set(v.dims) <= set(dims)}
    attrs = dict(obj.attrs)

    def wrap(embeddings: Any) -> Any:
        values = np.asarray(embeddings)
        # The embedding size from the array itself: -1 cannot be inferred for an empty grid.
        values = values.reshape(*shape, values.shape[-1])
        out = xr.DataArray(values, dims=(*dims, "embedding"), coords=keep, attrs=attrs, name="embedding")
        return out.assign_coords(embedding=np.arange(values.shape[-1]))

    if product and not transformed:  # a lon x lat product of degree axes: the separable grid path
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


def _position(dims: tuple[Any, ...], shape: tuple[int, ...], row: int) -> str:
    return (
        "grid position ("
        + ", ".join(f"{dim}={i}" for dim, i in zip(dims, np.unravel_index(row, shape), strict=True))
        + ")"
    )


def _check_grid_degrees(
    lonlat: np.ndarray, names: tuple[Any, Any], dims: tuple[Any, ...], shape: tuple[int, ...]
) -> None:
    """Refuses a bad coordinate naming the xarray coordinate and the grid position, not the row of
    the flattened grid (which the core's message would give)."""
    for axis, (column, name, (lo, hi)) in enumerate(((0, names[0], LON_RANGE), (1, names[1], LAT_RANGE))):
        values = lonlat[:, column]
        bad = ~((values >= lo) & (values <= hi))  # NaN fails both
        if not bad.any():
            continue
        row = int(np.argmax(bad))
        value = float(values[row])
        what = "longitude" if axis == 0 else "latitude"
        err = CoordinateError(
            f"xarray coordinate {str(name)!r} at {_position(dims, shape, row)} is {value!r}: {what}s must be "
            f"finite numbers in [{lo:g}, {hi:g}] degrees"
        )
        err.row, err.column = row, "lon" if axis == 0 else "lat"
        raise err


# ----------------------------------------------------------------------------------------
# Coordinate reference systems


def parse_crs(crs: Any) -> Any:
    pyproj = _need("pyproj", "coordinates with a CRS")
    if isinstance(crs, pyproj.CRS):
        return crs
    try:
        return pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as err:
        raise CRSError(f"cannot read the CRS {crs!r}: {err}") from None


def _is_degrees(crs: Any) -> bool:
    """A geographic CRS whose axes are degrees from Greenwich: its x/y are lon/lat as they are
    (a datum other than WGS84 moves points by metres, far below what the embeddings resolve)."""
    crs = parse_crs(crs)
    if not crs.is_geographic:
        return False
    units = {axis.unit_name for axis in crs.axis_info}
    meridian = crs.prime_meridian
    return units <= {"degree"} and (meridian is None or meridian.longitude == 0)


def crs_to_lonlat(
    x: np.ndarray, y: np.ndarray, crs: Any, *, first_row: int = 0, where: Callable[[int], str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``y`` in ``crs`` as longitude/latitude degrees: as they are for a geographic CRS in
    degrees (:func:`_is_degrees`), else transformed to EPSG:4326 with pyproj (``always_xy``).
    Non-finite input stays non-finite (the coordinate checks name it); a finite point that does not
    transform raises :class:`~satclip.errors.CRSError` naming the row (or ``where(row)``)."""
    crs = parse_crs(crs)
    if _is_degrees(crs):
        return x, y
    if not (crs.is_projected or crs.is_geographic):
        raise CRSError(
            f"x/y in the CRS {crs.name!r} cannot be turned into longitude/latitude (it is neither projected nor geographic)"
        )
    pyproj = _need("pyproj", "coordinates with a CRS")
    transformer = pyproj.Transformer.from_crs(crs, pyproj.CRS.from_epsg(4326), always_xy=True)
    lon, lat = transformer.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    failed = np.isfinite(x) & np.isfinite(y) & ~(np.isfinite(lon) & np.isfinite(lat))
    if failed.any():
        row = int(np.argmax(failed))
        place = where(row) if where is not None else f"row {first_row + row}"
        err = CRSError(
            f"{place}: ({float(x[row])!r}, {float(y[row])!r}) cannot be transformed from {crs.name} to lon/lat"
        )
        err.row = first_row + row
        raise err
    return lon, lat


def xarray_crs(obj: Any) -> Any:
    """The CRS of an xarray object (a ``pyproj.CRS``), or None: ``.rio.crs`` when rioxarray is
    installed and finds one, else the CF ``grid_mapping`` variable named by the data variable(s)."""
    xr = sys.modules["xarray"]
    try:
        import rioxarray  # noqa: F401  (registers the .rio accessor)
    except ImportError:
        pass
    else:
        try:
            crs = obj.rio.crs
        except Exception:  # rioxarray's own errors (e.g. data variables with different CRSs)
            crs = None
        if crs is not None:
            return parse_crs(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    variables = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    names = set()
    for var in variables:
        mapping = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
        if mapping:
            names.add(str(mapping).split(":")[0].strip())  # CF's extended form "name: x y"
    if not names:
        return None
    if len(names) > 1:
        raise CRSError(
            f"the data variables name different grid_mapping variables {sorted(names)}; encode one at a time"
        )
    name = names.pop()
    holder = obj.coords.get(name)
    if holder is None and isinstance(obj, xr.Dataset):
        holder = obj.variables.get(name)
    if holder is None:
        raise CRSError(
            f"grid_mapping names the variable {name!r}, which the xarray object does not have; {_HOW_TO_GIVE_XARRAY_A_CRS}"
        )
    attrs = holder.attrs
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    pyproj = _need("pyproj", "coordinates with a CRS")
    try:
        return pyproj.CRS.from_wkt(wkt) if wkt else pyproj.CRS.from_cf(attrs)
    except pyproj.exceptions.CRSError as err:
        raise CRSError(f"cannot read the CRS of the grid_mapping variable {name!r}: {err}") from None


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


__all__ = ["GridWrap", "convert", "crs_to_lonlat", "h3_to_lonlat", "xarray_crs"]
