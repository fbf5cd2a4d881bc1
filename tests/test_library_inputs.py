"""Messages satclip.encode gives for awkward inputs through the Python API: each names the
coordinate, grid position or row, says what is wrong, and suggests something that works."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import satclip
from conftest import require
from satclip.errors import CoordinateError, CRSError, DTypeError, ShapeError


def enc(x, model):
    return satclip.encode(x, model, device="cpu", dtype="float64")


def _grid(lon, lat=(10.0, 0.0, -10.0)):
    xr = require("xarray")
    return xr.DataArray(
        np.zeros((len(lat), len(lon))),
        coords={"latitude": list(lat), "longitude": list(lon)},
        dims=("latitude", "longitude"),
    )


def test_a_0_360_xarray_grid_is_taken_as_it_is_and_bad_coordinates_are_named(released_l6) -> None:
    era5 = _grid([0.0, 120.0, 240.0, 330.0])
    got = enc(era5, released_l6)
    np.testing.assert_array_equal(got["longitude"], [0.0, 120.0, 240.0, 330.0])  # the input's coordinates
    lon, lat = np.meshgrid([0.0, 120.0, -120.0, -30.0], [10.0, 0.0, -10.0])
    expected = enc(np.column_stack([lon.ravel(), lat.ravel()]), released_l6).reshape(3, 4, -1)
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=0, atol=1e-12)

    with pytest.raises(
        CoordinateError, match=r"'longitude' at grid position \(latitude=0, longitude=2\) is 400\.0"
    ) as info:
        enc(_grid([0.0, 120.0, 400.0]), released_l6)
    assert "[-180, 360]" in str(info.value) and "row" not in str(info.value)
    with pytest.raises(CoordinateError, match=r"'latitude' at grid position \(latitude=1, longitude=0\) is nan"):
        enc(_grid([0.0, 1.0], lat=(10.0, np.nan)), released_l6)


def test_x_y_columns_are_degrees_only_when_a_crs_says_so_or_they_fit(released_l6) -> None:
    pyproj = require("pyproj")
    utm = pd.DataFrame({"x": [500_000.0, 600_000.0], "y": [5_000_000.0, 5_100_000.0]})
    with pytest.raises(
        CRSError, match=r"columns 'x'/'y' are not longitude/latitude degrees \(row 0: 500000.0.*attrs\['crs'\]"
    ):
        enc(utm, released_l6)
    # The fix the message suggests: the CRS in attrs; transformed with pyproj like an independent call.
    utm.attrs["crs"] = "EPSG:32632"
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(utm.x.to_numpy(), utm.y.to_numpy())
    np.testing.assert_array_equal(enc(utm, released_l6), enc(np.column_stack([lon, lat]), released_l6))
    # A geographic CRS means degrees (as they are); values that fit degrees need no CRS.
    deg = pd.DataFrame({"X": [350.0, -10.0], "Y": [45.0, -45.0]})
    want = enc(np.array([[350.0, 45.0], [-10.0, -45.0]]), released_l6)
    np.testing.assert_array_equal(enc(deg, released_l6), want)
    deg.attrs["crs"] = "EPSG:4326"
    np.testing.assert_array_equal(enc(deg, released_l6), want)
    # One row that does not fit is enough (named), and a NaN is left to the coordinate check.
    with pytest.raises(CRSError, match=r"row 1: 10.0, 95.0") as info:
        enc(pd.DataFrame({"x": [1.0, 10.0], "y": [2.0, 95.0]}), released_l6)
    assert (info.value.row, info.value.column) == (1, "lat")
    with pytest.raises(CoordinateError, match=r"row 1: latitude is NaN"):
        enc(pd.DataFrame({"x": [1.0, 10.0], "y": [2.0, np.nan]}), released_l6)
    # A GeoDataFrame's own CRS counts for its x/y columns too (spherical_harmonics reads columns).
    gpd = require("geopandas")
    gdf = gpd.GeoDataFrame(utm.copy(), geometry=gpd.points_from_xy(utm.x, utm.y), crs="EPSG:32632")
    gdf.attrs.clear()
    np.testing.assert_array_equal(
        satclip.spherical_harmonics(gdf, 4), satclip.spherical_harmonics(np.column_stack([lon, lat]), 4)
    )


def test_one_list_of_column_names() -> None:
    from satclip.points import columns, geo

    assert columns.LON_NAMES == ("lon", "lng", "long", "longitude", "x")
    assert columns.LAT_NAMES == ("lat", "latitude", "y")
    from satclip.embed.locations import LAT_NAMES, LON_NAMES

    assert (LON_NAMES, LAT_NAMES) == (columns.LON_NAMES, columns.LAT_NAMES)
    xr = require("xarray")
    # Every degree name works for xarray coordinates too, any case.
    for lon_name in columns.LON_DEGREE_NAMES:
        for lat_name in columns.LAT_DEGREE_NAMES:
            da = xr.DataArray(
                np.zeros((1, 2)), dims=("a", "b"), coords={lat_name.upper(): ("a", [5.0]), lon_name: ("b", [1.0, 2.0])}
            )
            points, _ = geo.convert(da)
            np.testing.assert_array_equal(points, [[1.0, 5.0], [2.0, 5.0]])


def test_empty_and_non_numeric_xarray_grids(released_l6) -> None:
    empty = enc(_grid([0.0, 1.0, 2.0, 3.0], lat=()), released_l6)
    assert empty.shape == (0, 4, enc(np.zeros((0, 2)), released_l6).shape[1])
    assert empty.dims == ("latitude", "longitude", "embedding")
    with pytest.raises(DTypeError, match="coordinate 'longitude' must hold numbers"):
        enc(_grid(["a", "b"]), released_l6)


def test_lon_lat_columns_are_preferred_over_x_y(released_l6) -> None:
    frame = pd.DataFrame({"x": [500_000.0, 1.0], "y": [5e6, 2.0], "lon": [8.5, -3.0], "lat": [47.4, 40.0]})
    np.testing.assert_array_equal(enc(frame, released_l6), enc(frame[["lon", "lat"]].to_numpy(), released_l6))
    # Two lon-like columns stay ambiguous; the message's suggestion works.
    both = pd.DataFrame({"lon": [8.5], "Longitude": [8.5], "lat": [47.4]})
    with pytest.raises(ShapeError, match=r"frame\.drop\(columns=\['Longitude'\]\)"):
        enc(both, released_l6)
    np.testing.assert_array_equal(
        enc(both.drop(columns=["Longitude"]), released_l6), enc(np.array([[8.5, 47.4]]), released_l6)
    )


@pytest.mark.parametrize("cell", [-1, 1 << 64, 1 << 70, True, 2.5])
def test_h3_integer_ids_out_of_range_are_coordinate_errors(cell) -> None:
    require("h3")
    from satclip.points.geo import h3_to_lonlat

    with pytest.raises(CoordinateError, match=r"row 0: .* is not a valid H3 cell id"):
        h3_to_lonlat([cell])


def test_missing_values_are_named_by_row(released_l6) -> None:
    h3 = require("h3")
    cell = h3.latlng_to_cell(47.4, 8.5, 5)
    for missing in (None, np.nan):
        with pytest.raises(CoordinateError, match=r"row 1: the H3 cell id is missing"):
            enc([cell, missing], released_l6)
    with pytest.raises(CoordinateError, match=r"row 1: longitude is missing \(None\)") as info:
        enc([[1.0, 2.0], [None, 3.0]], released_l6)
    assert (info.value.row, info.value.column) == (1, "lon")
    with pytest.raises(DTypeError, match=r"row 0: the latitude 'north' is a str, not a number"):
        enc([[1.0, "north"]], released_l6)
    # Pairs of mixed Python/NumPy numbers in an object array are numbers.
    mixed = np.array([[1, np.float32(2.5)], [3.0, 4]], dtype=object)
    np.testing.assert_array_equal(enc(mixed, released_l6), enc(np.array([[1.0, 2.5], [3.0, 4.0]]), released_l6))


@pytest.mark.parametrize("device", ["bogus", "tpu", "cuda:0"])
def test_encode_names_an_unusable_device_with_a_device_error(device):
    import torch

    from satclip.errors import DeviceError
    from satclip.models.location import build_location_encoder

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here: the device is usable")
    with pytest.raises(DeviceError, match=repr(device)):
        satclip.encode(np.zeros((2, 2)), build_location_encoder(4), device=device)
