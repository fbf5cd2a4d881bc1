"""Longitudes in [-180, 360]: a longitude in (180, 360], the 0..360 convention of gridded data
such as ERA5 or CMIP, gives exactly the bits of ``lon - 360`` (exact in float64 and float32) for
the values and for the gradients, on the NumPy path (the Rust core) and on every other path
(torch and Triton SH, autograd, encode of every input kind, encode_grid, xarray, the CLI, GeoCLIP,
probes); everything outside [-180, 360] (and NaN, inf, |lat| > 90) is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import satclip
from conftest import released_checkpoint_dict, require, run_cli
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


# ----------------------------------------------------------------------------------------
# Every other Python path: torch tensors, the torch and Triton SH, encode (arrays, tensors,
# lists, DataFrames, xarray, the CLI), encode_grid, GeoCLIP, probes. Each gives a longitude in
# (180, 360] exactly what it gives ``lon - 360``.

EDGES = np.array([0.0, 180.0, 180.0000001, 270.0, 359.999, 360.0])


def _tensor_twins(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    points = _grid(EDGES, np_dtype)
    return torch.from_numpy(points), torch.from_numpy(_twin(points))


def _same_tensor_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return _same_bits(a.detach().cpu().numpy(), b.detach().cpu().numpy())


def test_float32_twins_are_the_float32_subtraction_not_the_rounded_decimal() -> None:
    # What holds for float32: 359.999f - 360 is exact, so a float32 0..360 input gives the bits of
    # that float32 twin; it is not float32(-0.001), which lies on a finer grid near 0.
    lon = np.float32(359.999)
    assert np.float64(lon) - 360 == np.float64(lon - np.float32(360))  # exact in float32
    assert lon - np.float32(360) != np.float32(-0.001)
    points = np.array([[lon, 10.0]], np.float32)
    assert _same_bits(satclip.spherical_harmonics(points, 10), satclip.spherical_harmonics(_twin(points), 10))
    assert not _same_bits(
        satclip.spherical_harmonics(points, 10), satclip.spherical_harmonics(np.array([[-0.001, 10.0]], np.float32), 10)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_sh_values_and_gradients_match_their_twins(dtype: torch.dtype) -> None:
    from satclip.harmonics.torch_gradients import torch_spherical_harmonics_with_gradient
    from satclip.harmonics.torch_values import torch_spherical_harmonics

    points, twin = _tensor_twins(dtype)
    assert _same_tensor_bits(torch_spherical_harmonics(points, 12), torch_spherical_harmonics(twin, 12))
    for a, b in zip(
        torch_spherical_harmonics_with_gradient(points, 12),
        torch_spherical_harmonics_with_gradient(twin, 12),
        strict=True,
    ):
        assert a.dtype == dtype and _same_tensor_bits(a, b)
    # And they are the right features: within rounding of the Rust core's.
    ref = satclip.spherical_harmonics(twin.numpy().astype(np.float64), 12)
    np.testing.assert_allclose(torch_spherical_harmonics(points.double(), 12).numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_sh_module_and_its_autograd_gradients_match_their_twins(dtype: torch.dtype) -> None:
    from satclip.models.location import SphericalHarmonics

    module = SphericalHarmonics(10)
    points, twin = _tensor_twins(dtype)
    assert _same_tensor_bits(module(points), module(twin))
    grads = []
    for x in (points.clone().requires_grad_(), twin.clone().requires_grad_()):
        module(x).square().sum().backward()
        grads.append(x.grad)
    assert grads[0] is not None and _same_tensor_bits(grads[0], grads[1])


def test_tensor_check_accepts_0_to_360_and_refuses_outside() -> None:
    from satclip.points.tensors import check_lonlat_tensor

    check_lonlat_tensor(torch.tensor([[0.0, 0.0], [180.0, 90.0], [359.999, -90.0], [360.0, 45.0], [-180.0, 0.0]]))
    for lon, lat, column in [
        (360.0000001, 0.0, "lon"),
        (-180.0000001, 0.0, "lon"),
        (10.0, 90.0000001, "lat"),
        (10.0, -91.0, "lat"),
        (np.nan, 0.0, "lon"),
        (0.0, np.nan, "lat"),
    ]:
        t = torch.tensor([[1.0, 1.0], [lon, lat]], dtype=torch.float64)
        with pytest.raises(CoordinateError) as from_tensor:
            check_lonlat_tensor(t)
        with pytest.raises(CoordinateError) as from_numpy:
            satclip.spherical_harmonics(t.numpy(), 3)
        assert str(from_tensor.value) == str(from_numpy.value)  # one definition, the core's
        assert (from_tensor.value.row, from_tensor.value.column) == (1, column)
        if column == "lon" and np.isfinite(lon):
            assert "[-180, 360]" in str(from_tensor.value)


_TRITON_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    import numpy as np, torch
    from satclip.harmonics import triton_kernel
    lon = np.array([0.0, 180.0, 180.0000001, 270.0, 359.999, 360.0])
    lat = np.array([-90.0, -33.3, 0.0, 45.5, 90.0])
    grid = np.stack(np.meshgrid(lon, lat, indexing="ij"), -1).reshape(-1, 2)
    for dtype in (torch.float64, torch.float32):
        points = torch.from_numpy(grid).to(dtype)
        twin = points.clone()
        twin[twin[:, 0] > 180, 0] -= 360
        a, b = (triton_kernel.spherical_harmonics(p, 10) for p in (points, twin))
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)), dtype
    print("ok")
    """
)


def test_the_triton_kernel_matches_its_twins_in_the_interpreter() -> None:
    require("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


# -- encode and friends ------------------------------------------------------------------


@pytest.fixture(scope="module")
def l10(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("lon360") / "l10.ckpt"
    torch.save(released_checkpoint_dict(10, seed=11), path)
    return str(path)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_encode_gives_every_input_kind_the_bits_of_its_twin(l10: str, dtype: str) -> None:
    pd = require("pandas")
    points = _grid(EDGES, np.float64)
    want = satclip.encode(_twin(points), l10, dtype=dtype, device="cpu")
    inputs = {
        "numpy": points,
        "list": points.tolist(),
        "tensor": torch.from_numpy(points.copy()),
        "float32 array": points.astype(np.float32),
        "DataFrame": pd.DataFrame({"lat": points[:, 1], "longitude": points[:, 0]}),
        "x/y DataFrame": pd.DataFrame({"x": points[:, 0], "y": points[:, 1]}),
    }
    for name, value in inputs.items():
        before = value.clone() if isinstance(value, torch.Tensor) else None
        got = np.asarray(satclip.encode(value, l10, dtype=dtype, device="cpu"))
        if name == "float32 array":  # its twin is the float32 one (see the float32 test above)
            twin32 = _twin(points.astype(np.float32))
            assert _same_bits(got, satclip.encode(twin32, l10, dtype=dtype, device="cpu")), name
            continue
        assert _same_bits(got, want), name
        if before is not None:
            assert torch.equal(value, before)  # the caller's tensor is not modified


@pytest.mark.parametrize(
    "bad", [(360.0000001, 0.0), (-180.0000001, 0.0), (10.0, 90.5), (10.0, -90.0000001), (np.nan, 1.0)]
)
def test_encode_refuses_outside_the_ranges_on_every_input_kind(l10: str, bad: tuple[float, float]) -> None:
    pd = require("pandas")
    points = np.array([[359.0, 0.0], bad])
    cases = [
        points,
        torch.from_numpy(points.copy()),
        points.tolist(),
        pd.DataFrame({"lon": points[:, 0], "lat": points[:, 1]}),
    ]
    for value in cases:
        with pytest.raises(CoordinateError, match=r"row 1") as info:
            satclip.encode(value, l10, device="cpu")
        assert info.value.row == 1
        if np.isfinite(bad[0]) and not -180 <= bad[0] <= 360:
            assert "outside [-180, 360]" in str(info.value)


def test_encode_grid_0_to_360_equals_minus_180_to_180_cell_for_cell(l10: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from satclip.embed import grid

    def no_fallback(*args: object, **kwargs: object) -> None:
        raise AssertionError("the grid went point-wise, not through the separable path")

    monkeypatch.setattr(grid, "_pointwise", no_fallback)
    east = np.arange(0.0, 360.0, 0.25)  # ERA5's 0 .. 359.75
    west = np.arange(-180.0, 180.0, 0.25)
    lat = np.array([90.0, 60.25, 0.0, -0.25, -89.75, -90.0])
    for dtype in ("float32", "float64"):
        a = satclip.encode_grid(east, lat, l10, dtype=dtype, device="cpu")
        b = satclip.encode_grid(west, lat, l10, dtype=dtype, device="cpu")
        # Cell (i, j) of the 0..360 grid is the meridian east[j], which the -180..180 grid holds
        # at column (j + 720) mod 1440.
        assert _same_bits(a, np.roll(b, -720, axis=1)), dtype
        # And the separable path agrees with point-wise encode of the same points.
        pw = satclip.encode(
            np.column_stack([np.tile(east[::97], lat.size), np.repeat(lat, east[::97].size)]), l10, dtype="float64"
        )
        np.testing.assert_allclose(a[:, ::97].reshape(-1, a.shape[-1]), pw, rtol=0, atol=2e-5 * np.abs(pw).max())


def test_encode_grid_refuses_longitudes_outside(l10: str) -> None:
    for lon, where in [([0.0, 360.0000001], 1), ([-180.0000001, 0.0], 0), ([0.0, np.nan], 1)]:
        with pytest.raises(CoordinateError, match=rf"lon\[{where}\] is .*\[-180, 360\] degrees") as info:
            satclip.encode_grid(lon, [0.0], l10)
        assert (info.value.row, info.value.column) == (where, "lon")
    with pytest.raises(CoordinateError, match=r"lat\[0\] is 90.5: latitudes .*\[-90, 90\]"):
        satclip.encode_grid([0.0], [90.5], l10)
    assert satclip.encode_grid([360.0, 180.0], [90.0, -90.0], l10).shape == (2, 2, 256)


def test_an_xarray_grid_stored_as_0_to_360_encodes_like_its_twin(l10: str) -> None:
    xr = require("xarray")
    east = np.arange(0.0, 360.0, 1.5)
    lat = np.array([80.0, 10.0, -45.0])
    era5 = xr.DataArray(
        np.zeros((lat.size, east.size)), coords={"latitude": lat, "longitude": east}, dims=("latitude", "longitude")
    )
    got = satclip.encode(era5, l10, device="cpu")
    np.testing.assert_array_equal(got["longitude"], east)  # the input's coordinates, unchanged
    west = np.where(east > 180, east - 360, east)
    want = satclip.encode_grid(west, lat, l10, device="cpu")
    assert _same_bits(got.to_numpy(), want)
    bad = era5.assign_coords(longitude=np.r_[east[:-1], 360.0000001])
    with pytest.raises(
        CoordinateError, match=r"'longitude' at grid position \(latitude=0, longitude=239\) is 360.0000001"
    ) as info:
        satclip.encode(bad, l10, device="cpu")
    assert "[-180, 360]" in str(info.value)


def test_the_cli_encodes_a_0_to_360_csv_like_its_twin_and_refuses_outside(
    l10: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    points = _grid(EDGES, np.float64)
    for name, values in (("east", points), ("west", _twin(points))):
        csv = tmp_path / f"{name}.csv"
        csv.write_text("lon,lat\n" + "".join(f"{float(lon)!r},{float(lat)!r}\n" for lon, lat in values))
        code, _, err = run_cli(capsys, "encode", str(csv), "-o", str(tmp_path / f"{name}.npy"), "--model", l10)
        assert code == 0, err
    assert _same_bits(np.load(tmp_path / "east.npy"), np.load(tmp_path / "west.npy"))
    for lon in (360.0000001, -180.0000001):
        csv = tmp_path / "bad.csv"
        csv.write_text(f"lon,lat\n10,0\n20,0\n{lon!r},5\n")
        out = tmp_path / "bad.npy"
        code, _, err = run_cli(capsys, "encode", str(csv), "-o", str(out), "--model", l10)
        assert code != 0 and "row 2" in err and "outside [-180, 360]" in err, err
        assert not out.exists()


def test_geoclip_takes_0_to_360_as_its_twin() -> None:
    from satclip.models.geoclip import GeoCLIPLocationEncoder

    gen = torch.Generator().manual_seed(0)
    state = {"LocEnc0.capsule.0.b": torch.randn(256, 2, generator=gen)}
    for layer, (rows, cols) in {
        "capsule.1": (1024, 512),
        "capsule.3": (1024, 1024),
        "capsule.5": (1024, 1024),
        "head.0": (512, 1024),
    }.items():
        state[f"LocEnc0.{layer}.weight"] = torch.randn(rows, cols, generator=gen) / cols**0.5
        state[f"LocEnc0.{layer}.bias"] = torch.randn(rows, generator=gen) * 0.1
    model = GeoCLIPLocationEncoder(state)
    for dtype in (torch.float64, torch.float32):
        points, twin = _tensor_twins(dtype)
        assert _same_tensor_bits(model(points), model(twin))
        # Without the wrap the Equal Earth x of 270 deg would lie off the map (|x| > the width of
        # the projection of +-180 deg): check that the features really see the wrapped longitude.
        x_feat = model.features(points)
        assert _same_tensor_bits(x_feat, model.features(twin))


def test_probes_use_the_points_validator() -> None:
    from satclip.downstream.probes import _check_lonlat

    points = _grid(EDGES, np.float64)
    assert _same_bits(_check_lonlat(points), _twin(points))
    for bad, column in [((360.0000001, 0.0), "lon"), ((0.0, 91.0), "lat"), ((np.nan, 0.0), "lon")]:
        arr = np.array([[0.0, 0.0], bad])
        with pytest.raises(CoordinateError) as info:
            _check_lonlat(arr)
        with pytest.raises(CoordinateError) as core:
            satclip.spherical_harmonics(arr, 3)
        assert str(info.value) == str(core.value) and (info.value.row, info.value.column) == (1, column)
