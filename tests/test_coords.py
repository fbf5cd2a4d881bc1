"""Coordinate value errors: the torch path (satclip.points.tensors, used for tensors off the CPU) and
the NumPy path (the Rust core) report a bad row identically, because the core writes both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import satclip
from satclip import _core
from satclip.errors import CoordinateError
from satclip.points.tensors import check_lonlat_tensor

BAD_PAIRS = [
    (np.nan, 0.0),
    (0.0, np.nan),
    (np.inf, 0.0),
    (-np.inf, 0.0),
    (0.0, np.inf),
    (0.0, -np.inf),
    (360.5, 0.0),
    (360.0000001, 0.0),  # just above 360: refused in float64 (float32 rounds it to 360, which is fine)
    (-180.0000001, 0.0),
    (-200.0, 10.0),
    (1e20, 0.0),  # Python writes 1e+20, Rust 1e20: a hand-copied message drifted like this
    (0.0, 90.0001),  # just outside, also after rounding to float32
    (0.0, -91.0),
    (33.3, 123.456),
    (np.nan, 95.0),  # both bad: longitude is reported first
    (500.0, np.inf),
]


def _raised(call: object) -> CoordinateError:
    with pytest.raises(CoordinateError) as info:
        call()  # type: ignore[operator]
    return info.value


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pair", BAD_PAIRS, ids=repr)
@pytest.mark.parametrize("row", [0, 5, 2049])
def test_tensor_and_numpy_paths_raise_the_same_error(pair: tuple[float, float], row: int, dtype: type) -> None:
    arr: np.ndarray = np.zeros((row + 3, 2), dtype)
    arr[row] = pair
    if dtype is np.float32 and arr[row, 0] in (360.0, -180.0):
        # float32 rounds a longitude 1e-7 outside onto the edge of the range, which is valid.
        check_lonlat_tensor(torch.from_numpy(arr[: row + 1]), values=True)
        assert np.isfinite(satclip.spherical_harmonics(arr[: row + 1], 3)).all()
        return
    arr[row + 1] = (0.0, 1000.0)  # a later bad row must not be the one reported
    from_numpy = _raised(lambda: satclip.spherical_harmonics(arr, 3))
    from_tensor = _raised(lambda: check_lonlat_tensor(torch.from_numpy(arr), values=True))
    assert type(from_tensor) is type(from_numpy)
    assert str(from_tensor) == str(from_numpy)
    assert (from_tensor.row, from_tensor.column) == (from_numpy.row, from_numpy.column)
    assert from_numpy.row == row
    assert from_numpy.column == ("lat" if np.isfinite(pair[0]) and -180 <= pair[0] <= 360 else "lon")


def test_integer_tensors_report_like_their_float64_array() -> None:
    points = torch.tensor([[0, 0], [10, 0], [0, -95]], dtype=torch.int32)
    from_tensor = _raised(lambda: check_lonlat_tensor(points, values=True))
    from_numpy = _raised(lambda: satclip.spherical_harmonics(points.numpy().astype(np.float64), 3))
    assert (str(from_tensor), from_tensor.row) == (str(from_numpy), from_numpy.row)


def test_the_closed_ranges_pass_both_checks() -> None:
    edges = np.array([[-180.0, -90.0], [180.0, 90.0], [-0.0, 0.0], [360.0, -90.0], [359.999, 90.0], [180.0000001, 0.0]])
    for row, (lon, lat) in enumerate(edges):
        _core.check_lonlat_row(row, lon, lat)  # raises if the core disagrees
    check_lonlat_tensor(torch.from_numpy(edges), values=True)
    assert np.isfinite(satclip.spherical_harmonics(edges, 3)).all()
