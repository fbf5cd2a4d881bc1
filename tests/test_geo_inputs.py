"""Geo-native inputs to satclip.encode: GeoPandas (any CRS), xarray grids, H3 cell ids."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

import satclip
from conftest import require
from satclip.errors import CoordinateError, CRSError, SatclipError, ShapeError

PTS = np.array([[8.55, 47.37], [-122.42, 37.77], [151.21, -33.87], [-0.13, 51.51], [139.69, 35.69]])


def same(a, b) -> None:
    """Equal up to float64 rounding (BLAS may group sums differently for different batch sizes)."""
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def enc(x, released_l6):
    return satclip.encode(x, released_l6, device="cpu", dtype="float64")


def test_geodataframe_in_a_projected_crs_equals_the_lonlat_array(released_l6) -> None:
    expected = enc(PTS, released_l6)
    gdf = gpd.GeoDataFrame({"name": list("abcde")}, geometry=gpd.points_from_xy(PTS[:, 0], PTS[:, 1]), crs="EPSG:4326")
    same(enc(gdf, released_l6), expected)
    # Web Mercator and a lat/lon-ordered CRS: pyproj (always_xy) undoes both; coordinates agree to ~1e-9 deg.
    for crs in ("EPSG:3857", "EPSG:3035", "EPSG:4258"):
        projected = gdf.to_crs(crs)
        assert not np.allclose(projected.geometry.x, PTS[:, 0]) or crs == "EPSG:4258"
        np.testing.assert_allclose(enc(projected, released_l6), expected, atol=1e-6)
        np.testing.assert_allclose(enc(projected.geometry, released_l6), expected, atol=1e-6)  # GeoSeries


def test_non_point_geometries_use_their_representative_point(released_l6) -> None:
    # A C-shaped polygon: its centroid lies outside it, the representative point inside.
    c_shape = shapely.Polygon([(0, 0), (10, 0), (10, 2), (2, 2), (2, 8), (10, 8), (10, 10), (0, 10)])
    line = shapely.LineString([(20, 5), (30, 5)])
    gs = gpd.GeoSeries([c_shape, line], crs="EPSG:4326")
    rep = np.array([[p.x, p.y] for p in (c_shape.representative_point(), line.representative_point())])
    assert c_shape.contains(shapely.Point(rep[0])) and not c_shape.contains(c_shape.centroid)
    same(enc(gs, released_l6), enc(rep, released_l6))


def test_geopandas_errors_name_the_row(released_l6) -> None:
    no_crs = gpd.GeoDataFrame(geometry=gpd.points_from_xy([1.0], [2.0]))
    with pytest.raises(SatclipError, match="no CRS"):
        enc(no_crs, released_l6)
    empty = gpd.GeoSeries([shapely.Point(1, 2), shapely.Point()], index=["ok", "bad"], crs="EPSG:4326")
    with pytest.raises(SatclipError, match="row 1 \\(index 'bad'\\) has a missing or empty"):
        enc(empty, released_l6)
    missing = gpd.GeoSeries([shapely.Point(1, 2), None], crs="EPSG:4326")
    with pytest.raises(SatclipError, match="row 1"):
        enc(missing, released_l6)
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    with pytest.raises(SatclipError, match=r"row 0 .*invalid geometry: Self-intersection"):
        enc(gpd.GeoSeries([bowtie], crs="EPSG:4326"), released_l6)
    # The swapped-column guard still applies: lat/lon typed into a lon/lat CRS.
    swapped = gpd.GeoSeries(gpd.points_from_xy([47.37, 37.77], [8.55, -122.42]), crs="EPSG:4326")
    with pytest.raises(CoordinateError, match="row 1"):
        enc(swapped, released_l6)


def test_xarray_1d_grid_keeps_coords_and_attrs(released_l6) -> None:
    xr = require("xarray")
    lat = np.array([40.0, 45.0, 50.0])
    lon = np.array([-5.0, 0.0, 5.0, 10.0])
    da = xr.DataArray(
        np.zeros((2, 3, 4)),
        dims=("time", "latitude", "longitude"),
        coords={"time": [0, 1], "latitude": lat, "longitude": lon, "zone": ("latitude", ["s", "m", "n"])},
        attrs={"title": "test grid", "source": "unit test"},
    )
    out = enc(da, released_l6)
    assert isinstance(out, xr.DataArray)
    assert out.dims == ("latitude", "longitude", "embedding") and out.shape == (3, 4, 256)
    assert out.attrs == da.attrs
    np.testing.assert_array_equal(out["latitude"], lat)
    np.testing.assert_array_equal(out["zone"], ["s", "m", "n"])
    assert "time" not in out.coords
    same(out.sel(latitude=45.0, longitude=5.0).values, enc(np.array([[5.0, 45.0]]), released_l6)[0])
    grid = np.array([[x, y] for y in lat for x in lon])
    same(out.values.reshape(-1, 256), enc(grid, released_l6))
    # A Dataset with the dims the other way round.
    ds = xr.Dataset({"t2m": (("lon", "lat"), np.zeros((4, 3)))}, coords={"lon": lon, "lat": lat}, attrs={"a": 1})
    out2 = enc(ds, released_l6)
    assert out2.dims == ("lon", "lat", "embedding") and out2.attrs == {"a": 1}
    np.testing.assert_array_equal(out2.transpose("lat", "lon", "embedding").values, out.values)


def test_xarray_curvilinear_grid_and_errors(released_l6) -> None:
    xr = require("xarray")
    y, x = np.meshgrid(np.arange(3), np.arange(2), indexing="ij")
    lon2d = 10.0 + x * 2.0 + y * 0.5  # a rotated grid: lon varies along both dims
    lat2d = 50.0 + y * 1.0 - x * 0.3
    da = xr.DataArray(
        np.ones((3, 2)),
        dims=("y", "x"),
        coords={"lon": (("y", "x"), lon2d), "lat": (("y", "x"), lat2d), "x": [100, 200]},
        attrs={"k": "v"},
    )
    out = enc(da, released_l6)
    assert out.dims == ("y", "x", "embedding") and out.attrs == {"k": "v"}
    np.testing.assert_array_equal(out["lon"].values, lon2d)
    np.testing.assert_array_equal(out["x"].values, [100, 200])
    same(out.values.reshape(-1, 256), enc(np.column_stack([lon2d.ravel(), lat2d.ravel()]), released_l6))
    with pytest.raises(ShapeError, match="longitude and latitude coordinates"):
        enc(xr.DataArray(np.zeros(3), dims=("station",)), released_l6)
    swapped = xr.DataArray(
        np.zeros((2, 2)), dims=("a", "b"), coords={"lon": ("a", [10.0, 20.0]), "lat": ("b", [100.0, 120.0])}
    )
    with pytest.raises(CoordinateError, match="latitude"):
        enc(swapped, released_l6)


def test_h3_cells_embed_at_their_centres(released_l6) -> None:
    h3 = require("h3")
    cells = [h3.latlng_to_cell(lat, lon, 7) for lon, lat in PTS]
    centres = np.array([h3.cell_to_latlng(c)[::-1] for c in cells])
    assert np.abs(centres - PTS).max() < 0.05  # resolution-7 cells are ~1.2 km across
    same(enc(cells, released_l6), enc(centres, released_l6))
    same(enc(np.array(cells), released_l6), enc(centres, released_l6))
    from satclip.points.geo import h3_to_lonlat

    np.testing.assert_array_equal(h3_to_lonlat([h3.str_to_int(c) for c in cells]), centres)
    with pytest.raises(CoordinateError, match="row 1: 'nonsense' is not a valid H3 cell"):
        enc([cells[0], "nonsense"], released_l6)


# ----------------------------------------------------------------------------------------
# Projected xarray grids: x/y placed by the object's CRS


def _utm_axes() -> tuple[np.ndarray, np.ndarray]:
    x = 500_000.0 + 1_000.0 * np.arange(5) + 500.0  # cell centres, metres
    y = 5_200_000.0 - 1_000.0 * np.arange(4) - 500.0  # descending, as rasters store it
    return x, y


def _pyproj_lonlat(x2d: np.ndarray, y2d: np.ndarray, epsg: int) -> np.ndarray:
    pyproj = require("pyproj")
    lon, lat = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(x2d.ravel(), y2d.ravel())
    return np.column_stack([lon, lat])


def test_a_utm_grid_with_a_rio_crs_is_transformed_cell_by_cell(released_l6) -> None:
    xr = require("xarray")
    require("rioxarray")
    from satclip.points import geo

    x, y = _utm_axes()
    da = xr.DataArray(np.zeros((2, y.size, x.size)), dims=("band", "y", "x"), coords={"x": x, "y": y})
    da = da.rio.write_crs("EPSG:32632")
    points, wrap = geo.convert(da)
    assert not isinstance(wrap, geo.GridWrap)  # not a lon x lat product: point-wise
    xx, yy = np.meshgrid(x, y)
    expected = _pyproj_lonlat(xx, yy, 32632)
    np.testing.assert_array_equal(points, expected)
    assert 8.9 < points[:, 0].min() and points[:, 1].max() < 47  # near 9 E, 46.9 N
    out = enc(da, released_l6)
    assert out.dims == ("y", "x", "embedding") and out.shape == (y.size, x.size, 256)
    np.testing.assert_array_equal(out["y"], y)
    same(out.values.reshape(-1, 256), enc(expected, released_l6))


def test_a_cf_grid_mapping_dataset_without_rioxarray(released_l6, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    xr = require("xarray")
    pyproj = require("pyproj")
    monkeypatch.setitem(sys.modules, "rioxarray", None)  # the CF attributes alone must do
    x, y = _utm_axes()
    crs = pyproj.CRS.from_epsg(32633)
    ds = xr.Dataset(
        {"t2m": (("y", "x"), np.zeros((y.size, x.size)), {"grid_mapping": "transverse_mercator"})},
        coords={"x": x, "y": y, "transverse_mercator": ((), 0, {"crs_wkt": crs.to_wkt()})},
    )
    out = enc(ds, released_l6)
    xx, yy = np.meshgrid(x, y)
    same(out.values.reshape(-1, 256), enc(_pyproj_lonlat(xx, yy, 32633), released_l6))
    # The CF parameters alone (no WKT) work too.
    ds_cf = ds.assign_coords(transverse_mercator=((), 0, crs.to_cf()))
    del ds_cf["transverse_mercator"].attrs["crs_wkt"]
    same(enc(ds_cf, released_l6).values, out.values)
    # A grid_mapping naming a variable that is not there is a CRSError.
    with pytest.raises(CRSError, match="grid_mapping names the variable 'nowhere'"):
        enc(ds.drop_vars("transverse_mercator").assign(t2m=ds.t2m.assign_attrs(grid_mapping="nowhere")), released_l6)


def test_a_geographic_crs_means_degrees_and_takes_the_grid_path(released_l6) -> None:
    xr = require("xarray")
    require("rioxarray")
    from satclip.points import geo

    lon = np.array([0.5, 90.5, 200.5, 359.5])  # 0..360, through the separable path
    lat = np.array([60.0, 0.0, -60.0])  # descending
    da = xr.DataArray(np.zeros((lat.size, lon.size)), dims=("y", "x"), coords={"x": lon, "y": lat})
    da = da.rio.write_crs("EPSG:4326")
    _, wrap = geo.convert(da)
    assert isinstance(wrap, geo.GridWrap)
    out = enc(da, released_l6)
    xx, yy = np.meshgrid(lon, lat)
    same(out.values.reshape(-1, 256), enc(np.column_stack([xx.ravel(), yy.ravel()]), released_l6))


def test_x_y_without_a_crs_are_degrees_only_when_they_fit(released_l6) -> None:
    xr = require("xarray")
    x, y = _utm_axes()
    projected = xr.DataArray(np.zeros((y.size, x.size)), dims=("y", "x"), coords={"x": x, "y": y})
    with pytest.raises(CRSError, match=r"not longitude/latitude degrees.*rio\.write_crs") as info:
        enc(projected, released_l6)
    assert isinstance(info.value, CoordinateError)
    fits = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"), coords={"x": [10.0, 20.0, 300.0], "y": [5.0, -5.0]})
    xx, yy = np.meshgrid([10.0, 20.0, 300.0], [5.0, -5.0])
    same(enc(fits, released_l6).values.reshape(-1, 256), enc(np.column_stack([xx.ravel(), yy.ravel()]), released_l6))


def test_2d_projected_and_2d_lonlat_coordinates(released_l6) -> None:
    xr = require("xarray")
    require("rioxarray")
    x, y = _utm_axes()
    xx, yy = np.meshgrid(x, y)
    xx = xx + 0.3 * (yy - yy.mean())  # a sheared (curvilinear) grid: 2-D x/y
    da = xr.DataArray(
        np.zeros(xx.shape), dims=("row", "col"), coords={"x": (("row", "col"), xx), "y": (("row", "col"), yy)}
    )
    da = da.rio.write_crs("EPSG:32632")
    expected = _pyproj_lonlat(xx, yy, 32632)
    out = enc(da, released_l6)
    assert out.dims == ("row", "col", "embedding")
    same(out.values.reshape(-1, 256), enc(expected, released_l6))
    # The same cells given as 2-D lon/lat coordinates beside the projected x/y: lon/lat win.
    lon2d, lat2d = expected[:, 0].reshape(xx.shape), expected[:, 1].reshape(xx.shape)
    both = da.assign_coords(lon=(("row", "col"), lon2d), lat=(("row", "col"), lat2d))
    same(enc(both, released_l6).values, out.values)
