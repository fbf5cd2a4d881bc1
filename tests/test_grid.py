"""satclip.encode_grid (the separable path for lon x lat product grids) against point-wise encode,
against a brute-force float64 NumPy evaluation with independent (mpmath) spherical harmonics, and
its promises: same bits at any thread count and row split, typed errors, the fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import satclip
from conftest import CheckpointFactory, location_state_dict, released_checkpoint_dict, require
from references.sh import reference_features
from satclip.embed.grid import SEGMENT_CPU, encode_grid
from satclip.errors import CoordinateError, DTypeError, ShapeError

#: The float32 bound encode states against float64 (tests/test_precision.py).
F32_BOUND = 2e-5


def _relative(got: np.ndarray, ref: np.ndarray) -> float:
    """max over cells of max |got - ref| / max |ref| (each embedding at its own scale)."""
    got, ref = got.reshape(-1, got.shape[-1]).astype(np.float64), ref.reshape(-1, ref.shape[-1])
    return float((np.abs(got - ref).max(axis=1) / np.abs(ref).max(axis=1)).max())


def _pointwise(lon: np.ndarray, lat: np.ndarray, model: object, dtype: str) -> np.ndarray:
    grid_lon, grid_lat = np.meshgrid(lon, lat)
    points = np.column_stack([grid_lon.ravel(), grid_lat.ravel()])
    emb = satclip.encode(points, model, dtype=dtype, device="cpu")
    return np.asarray(emb).reshape(lat.size, lon.size, -1)


def _awkward_axes(n_lon: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Irregular longitudes across the antimeridian (both ends, signed zero) and irregular,
    descending latitudes with both poles and points within 1e-9 deg of them."""
    rng = np.random.default_rng(seed)
    lon = np.concatenate([[180.0, -180.0, -0.0, 179.999], rng.uniform(-180, 180, n_lon - 4)])
    lat = np.array([90.0, 90 - 1e-9, 61.3, 45.0, 12.7, 0.0, -0.0, -33.3, -89.1, -90 + 1e-9, -90.0])
    return lon, lat


@pytest.mark.parametrize("L", [10, 40])
def test_grid_equals_pointwise_encode(make_checkpoint: CheckpointFactory, L: int) -> None:
    path = make_checkpoint(L, seed=3)
    # Wider than a segment (an overlapping last segment) and narrower (a padded one).
    for n_lon in (SEGMENT_CPU + 37, 70):
        lon, lat = _awkward_axes(n_lon, seed=L + n_lon)
        ref64 = _pointwise(lon, lat, path, "float64")
        got64 = encode_grid(lon, lat, path, dtype="float64", device="cpu")
        assert got64.shape == (lat.size, lon.size, 256) and got64.dtype == np.float64
        assert _relative(got64, ref64) <= 1e-10
        got32 = encode_grid(lon, lat, path, dtype="float32", device="cpu")
        assert got32.dtype == np.float32
        assert _relative(got32, ref64) <= F32_BOUND
        assert _relative(got32, _pointwise(lon, lat, path, "float32")) <= F32_BOUND
        assert _relative(got32, ref64) > 0  # float32 really ran


def test_factorisation_against_brute_force_with_independent_harmonics(make_checkpoint: CheckpointFactory) -> None:
    """A tiny grid computed cell by cell in float64 NumPy from the checkpoint's weights, with the
    features from an mpmath evaluation of the explicit Rodrigues sums (tests/references/sh.py)."""
    L = 12
    path = make_checkpoint(L, seed=8)
    weights = {
        k: v.to(torch.float64).numpy() for k, v in location_state_dict(released_checkpoint_dict(L, seed=8)).items()
    }
    lon = np.array([-180.0, -71.25, 3.5, 180.0])
    lat = np.array([90.0, 17.0, -45.5, -90.0])
    grid_lon, grid_lat = np.meshgrid(lon, lat)
    x = reference_features(np.column_stack([grid_lon.ravel(), grid_lat.ravel()]), L)
    i = 0
    while f"nnet.layers.{i}.weight" in weights:
        w0 = 30.0 if i == 0 else 1.0
        x = np.sin(w0 * (x @ weights[f"nnet.layers.{i}.weight"].T + weights[f"nnet.layers.{i}.bias"]))
        i += 1
    ref = (x @ weights["nnet.last_layer.weight"].T + weights["nnet.last_layer.bias"]).reshape(4, 4, -1)
    # A grid this narrow goes point-wise by default; the separable path is forced here.
    from satclip.embed.grid import _grid_encoder
    from satclip.embed.locations import runner_for

    runner = runner_for(path, torch.device("cpu"), torch.float64)
    out = np.empty((4, 4, runner.embed_dim))
    _grid_encoder(runner).run(lon, lat, out, lambda n: None)  # type: ignore[arg-type]
    assert _relative(out, ref) <= 1e-10
    np.testing.assert_allclose(encode_grid(lon, lat, path, dtype="float64", device="cpu"), ref, rtol=0, atol=1e-10)


def test_same_bits_at_any_thread_count_and_row_split(make_checkpoint: CheckpointFactory) -> None:
    path = make_checkpoint(40, seed=4)
    lon = np.linspace(-180, 180, 2 * SEGMENT_CPU + 11)
    lat = np.linspace(90, -90, 41)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = encode_grid(lon, lat, path, device="cpu")
        torch.set_num_threads(1)
        one = encode_grid(lon, lat, path, device="cpu")
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    # Rows split anyhow (not at block boundaries), and another grid sharing some cells.
    for rows in (slice(0, 7), slice(7, 30), slice(30, 41), slice(3, 40, 3)):
        np.testing.assert_array_equal(encode_grid(lon, lat[rows], path, device="cpu"), one[rows])
    np.testing.assert_array_equal(encode_grid(lon[5:], lat[::-1], path, device="cpu"), one[::-1, 5:])


def test_xarray_grid_takes_the_grid_path_in_either_dim_order(make_checkpoint: CheckpointFactory) -> None:
    xr = require("xarray")
    path = make_checkpoint(10, seed=2)
    lon, lat = np.linspace(-179.5, 179.5, 300), np.linspace(80, -80, 9)
    expected = encode_grid(lon, lat, path, device="cpu")
    for dims in (("lat", "lon"), ("lon", "lat")):
        shape = tuple({"lat": lat.size, "lon": lon.size}[d] for d in dims)
        da = xr.DataArray(np.zeros((2, *shape)), dims=("time", *dims), coords={"lat": lat, "lon": lon})
        got = satclip.encode(da, path, device="cpu")
        assert got.dims == (*dims, "embedding")
        np.testing.assert_array_equal(got.transpose("lat", "lon", "embedding").to_numpy(), expected)


def test_other_networks_and_narrow_grids_go_pointwise(make_checkpoint: CheckpointFactory) -> None:
    path = make_checkpoint(10, seed=6)
    lon, lat = np.array([-10.0, 20.0, 33.0]), np.array([5.0, -5.0])
    np.testing.assert_array_equal(encode_grid(lon, lat, path, device="cpu"), _pointwise(lon, lat, path, "float32"))
    model = satclip.load(path)
    model.nnet.layers[1].activation = torch.nn.Tanh()  # no longer the plain SIREN
    lon = np.linspace(-180, 180, 400)
    got = encode_grid(lon, lat, model, device="cpu", dtype="float64")
    with torch.inference_mode():
        grid_lon, grid_lat = np.meshgrid(lon, lat)
        ref = model.double()(torch.from_numpy(np.column_stack([grid_lon.ravel(), grid_lat.ravel()]))).numpy()
    np.testing.assert_allclose(got, ref.reshape(got.shape), rtol=0, atol=1e-12)


def test_out_and_empty_grids(make_checkpoint: CheckpointFactory) -> None:
    path = make_checkpoint(10, seed=1)
    lon, lat = np.linspace(-180, 180, 250), np.array([1.0, 2.0])
    out = np.full((2, 250, 256), np.nan, dtype=np.float32)
    assert encode_grid(lon, lat, path, device="cpu", out=out) is out
    np.testing.assert_array_equal(out, encode_grid(lon, lat, path, device="cpu"))
    assert encode_grid(lon, [], path, device="cpu").shape == (0, 250, 256)
    with pytest.raises(ShapeError, match="out must be"):
        encode_grid(lon, lat, path, device="cpu", out=np.empty((2, 250, 256)))


@pytest.mark.parametrize(
    "lon, lat, error, message",
    [
        (np.zeros((2, 2)), [0.0], ShapeError, "lon must be 1-D"),
        ([0.0], 5.0, ShapeError, "lat must be 1-D"),
        ([0.0, np.nan], [0.0], CoordinateError, r"lon\[1\] is nan"),
        ([0.0], [0.0, 91.0], CoordinateError, r"lat\[1\] is 91.0: latitudes must be finite numbers in \[-90, 90\]"),
        ([360.5], [0.0], CoordinateError, r"lon\[0\] is 360.5: longitudes must be finite numbers in \[-180, 360\]"),
        (["a"], [0.0], DTypeError, "lon must hold real numbers"),
    ],
)
def test_bad_axes_raise_typed_errors(
    make_checkpoint: CheckpointFactory, lon: object, lat: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        encode_grid(lon, lat, Path("never-loaded.ckpt"), device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype, bound", [("float64", 1e-10), ("float32", F32_BOUND)])
def test_cuda_grid_equals_cpu_pointwise(make_checkpoint: CheckpointFactory, dtype: str, bound: float) -> None:
    path = make_checkpoint(40, seed=9)
    lon, lat = _awkward_axes(5000, seed=1)
    got = encode_grid(lon, lat, path, device="cuda", dtype=dtype)
    assert _relative(got, _pointwise(lon, lat, path, "float64")) <= bound
    np.testing.assert_array_equal(encode_grid(lon, lat[3:], path, device="cuda", dtype=dtype), got[3:])
