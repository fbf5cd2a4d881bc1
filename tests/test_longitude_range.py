"""Longitudes in [-180, 360] on the NumPy path (the Rust core): a longitude in (180, 360], the
0..360 convention of gridded data such as ERA5 or CMIP, gives exactly the bits of ``lon - 360``
(exact in float64 and float32) for the values and for the gradients; everything outside
[-180, 360] (and NaN, inf, |lat| > 90) is refused as before."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import satclip
from satclip.errors import CoordinateError

LATS = (-90.0, -45.5, -0.0, 0.0, 33.3, 89.999, 90.0)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    width = {4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    return a.dtype == b.dtype and a.shape == b.shape and bool((a.view(width) == b.view(width)).all())


def _grid(lons: np.ndarray, dtype: type) -> np.ndarray:
    lon, lat = np.meshgrid(np.asarray(lons, dtype), np.asarray(LATS, dtype), indexing="ij")
    return np.ascontiguousarray(np.stack([lon.ravel(), lat.ravel()], axis=1))


def _twin(points: np.ndarray) -> np.ndarray:
    """The same points with every longitude in (180, 360] written as ``lon - 360`` (exact)."""
    twin = points.copy()
    lon = twin[:, 0]
    lon[lon > 180] -= points.dtype.type(360)
    return twin


def _values(points: np.ndarray, L: int) -> tuple[np.ndarray, ...]:
    return (satclip.spherical_harmonics(points, L),)


def _with_gradient(points: np.ndarray, L: int) -> tuple[np.ndarray, ...]:
    return tuple(satclip.spherical_harmonics_with_gradient(points, L))


COMPUTE = {"values": _values, "with_gradient": _with_gradient}


@pytest.mark.parametrize("compute", list(COMPUTE), ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("L", [3, 10, 40])
def test_longitudes_above_180_give_the_bits_of_lon_minus_360(compute: str, dtype: type, L: int) -> None:
    points = _grid(np.array([0.0, 180.0, 180.0000001, 200.0, 270.0, 315.0, 359.999, 360.0]), dtype)
    got, want = COMPUTE[compute](points, L), COMPUTE[compute](_twin(points), L)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == dtype and np.isfinite(a).all()
        assert _same_bits(a, b)


@pytest.mark.parametrize("compute", list(COMPUTE), ids=str)
def test_the_antimeridian_and_360_name_the_same_meridians_as_minus_180_and_0(compute: str) -> None:
    same = [(180.0, -180.0), (360.0, 0.0)]
    a = _grid(np.array([x for x, _ in same]), np.float64)
    b = _grid(np.array([y for _, y in same]), np.float64)
    for x, y in zip(COMPUTE[compute](a, 10), COMPUTE[compute](b, 10), strict=True):
        assert _same_bits(x, y)


@pytest.mark.parametrize("compute", list(COMPUTE), ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_0_to_360_grid_matches_its_minus_180_to_180_twin(compute: str, dtype: type) -> None:
    # A quarter-degree grid as ERA5 stores it (0 .. 359.75): many points, so the work is split
    # over threads and large outputs may take the streaming stores.
    lon = np.arange(0.0, 360.0, 0.25)
    points = np.stack([np.tile(lon, 3), np.repeat([-60.0, 0.25, 89.75], lon.size)], axis=1).astype(dtype)
    for a, b in zip(COMPUTE[compute](points, 20), COMPUTE[compute](_twin(points), 20), strict=True):
        assert _same_bits(a, b)


def test_out_buffers_take_the_same_path() -> None:
    points = _grid(np.array([190.0, 359.999, 360.0]), np.float64)
    out = np.full((len(points), 100), np.nan)
    satclip.spherical_harmonics(points, 10, out=out)
    assert _same_bits(out, satclip.spherical_harmonics(_twin(points), 10))


BAD_LONGITUDES = [360.0000001, -180.0000001, 360.5, -181.0, 720.0, 1e20, np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("compute", list(COMPUTE.values()), ids=list(COMPUTE))
@pytest.mark.parametrize("lon", BAD_LONGITUDES, ids=repr)
def test_longitudes_outside_minus_180_to_360_are_refused(compute: Callable[..., object], lon: float) -> None:
    points = np.array([[10.0, 0.0], [359.0, 5.0], [lon, 5.0], [400.0, 5.0]])
    with pytest.raises(CoordinateError) as info:
        compute(points, 5)
    assert (info.value.row, info.value.column) == (2, "lon")
    message = str(info.value)
    assert message.startswith("row 2: longitude")
    if np.isfinite(lon):
        assert "outside [-180, 360]" in message and "swapped" not in message
    else:
        assert "must be finite" in message


@pytest.mark.parametrize("compute", list(COMPUTE.values()), ids=list(COMPUTE))
def test_float32_just_above_360_is_refused(compute: Callable[..., object]) -> None:
    points = np.array([[0.0, 0.0], [360.0001, 0.0]], dtype=np.float32)
    assert points[1, 0] > 360
    with pytest.raises(CoordinateError, match=r"row 1: longitude .* is outside \[-180, 360\]"):
        compute(points, 5)


@pytest.mark.parametrize("compute", list(COMPUTE.values()), ids=list(COMPUTE))
def test_swapped_columns_are_still_caught_by_the_latitude(compute: Callable[..., object]) -> None:
    # [lat, lon] typed the wrong way round: the longitude -122.42 lands in the latitude column.
    swapped = np.array([[47.37, 8.55], [37.77, -122.42]])
    with pytest.raises(CoordinateError, match=r"row 1: latitude -122.42 is outside \[-90, 90\].*swapped") as info:
        compute(swapped, 5)
    assert info.value.column == "lat"
