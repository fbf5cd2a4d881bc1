"""satclip.encode: the numeric contract with the original code, inputs, dtypes, devices, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import satclip
import satclip.embed.locations as encode_module
from conftest import CheckpointFactory, location_state_dict
from references.original import original_embeddings, original_features, original_siren_forward
from references.sh import reference_features
from satclip.embed.locations import encode
from satclip.embed.runners import make_runner
from satclip.errors import CheckpointError, CoordinateError, DTypeError, ShapeError
from satclip.io.checkpoint import load

#: Within this many degrees of a pole the original's sin(theta) = sqrt(1 - cos(theta)^2)
#: loses digits (measured: its features are off by up to 2e-8 at 1e-6 deg, 1.2e-10 at 1e-4 deg).
POLE_BAND_DEG = 1e-3


def special_points() -> np.ndarray:
    """Poles (exact), antimeridian both sides, signed zeros, equator, and ordinary places."""
    return np.array(
        [
            [0.0, 90.0],
            [0.0, -90.0],
            [137.5, 90.0],
            [-45.0, -90.0],
            [180.0, 0.0],
            [-180.0, 0.0],
            [180.0, 89.0],
            [-180.0, -89.0],
            [0.0, 0.0],
            [-0.0, -0.0],
            [8.55, 47.37],
            [-122.42, 37.77],
            [151.21, -33.87],
            [-70.0, POLE_BAND_DEG - 90.0],
            [10.0, 90.0 - POLE_BAND_DEG],
        ]
    )


def random_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform on the sphere
    return np.stack([rng.uniform(-180, 180, n), lat], axis=1)


pytestmark = pytest.mark.usefixtures("fresh_model_cache")


@pytest.fixture
def ckpt_l10(released_l10: tuple[Path, dict[str, Any]]) -> Path:
    return released_l10[0]


# ----------------------------------------------------------------------------------------
# Numeric contract with the original code path


def test_float64_matches_the_original_to_1e10(released_l10: tuple[Path, dict[str, Any]]) -> None:
    path, checkpoint = released_l10
    points = np.concatenate([special_points(), random_points(500)])
    from_pole = 90 - np.abs(points[:, 1])
    assert np.all((from_pole == 0) | (from_pole >= POLE_BAND_DEG))  # exact poles, or outside the band
    ours = encode(points, path, dtype=torch.float64, device="cpu")
    original = original_embeddings(torch.from_numpy(points), checkpoint["state_dict"], 10).numpy()
    assert ours.shape == (len(points), 256) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, original, rtol=0, atol=1e-10)
    # The exact poles are exact in both: equal to high-precision features through the same net.
    poles = special_points()[:4]
    exact = original_siren_forward(torch.from_numpy(reference_features(poles, 10)), location_state_dict(checkpoint))
    np.testing.assert_allclose(ours[:4], exact.numpy(), rtol=0, atol=1e-13)


def test_near_the_poles_satclip_is_the_one_that_is_right(released_l10: tuple[Path, dict[str, Any]]) -> None:
    path, checkpoint = released_l10
    offsets = np.array([1e-9, 1e-8, 1e-7, 1e-6, 3e-6, 1e-5])
    points = np.concatenate(
        [
            np.stack([np.full_like(offsets, 10.0), 90 - offsets], 1),
            np.stack([np.full_like(offsets, -70.0), offsets - 90], 1),
        ]
    )
    exact_features = reference_features(points, 10)  # mpmath, sin(theta) computed directly
    original = original_features(torch.from_numpy(points), 10).numpy()
    ours_features = satclip.spherical_harmonics(points, 10)
    np.testing.assert_allclose(ours_features, exact_features, rtol=0, atol=1e-13)
    # The original is measurably off in this band (that is what the exception is for) ...
    assert np.abs(original - exact_features).max() > 1e-8

    weights = location_state_dict(checkpoint)
    exact = original_siren_forward(torch.from_numpy(exact_features), weights).numpy()
    ours = encode(points, path, dtype=torch.float64, device="cpu")
    # ... and satclip's embeddings follow the exact features, not the original's.
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-12)
    original_emb = original_siren_forward(torch.from_numpy(original), weights).numpy()
    assert np.abs(original_emb - exact).max() > 1e-9


@pytest.mark.parametrize("L", [10, 40])
def test_float32_agrees_with_float64_to_1e5_relative(make_checkpoint: CheckpointFactory, L: int) -> None:
    path = make_checkpoint(L, seed=L)
    points = np.concatenate([special_points(), random_points(2000, seed=L)])
    e64 = encode(points, path, dtype=torch.float64, device="cpu")
    e32 = encode(points, path, dtype=torch.float32, device="cpu")
    assert e32.dtype == np.float32
    # Relative to each embedding's own scale: max |e32 - e64| / max |e64| per point.
    relative = np.abs(e32.astype(np.float64) - e64).max(axis=1) / np.abs(e64).max(axis=1)
    assert relative.max() <= 1e-5
    # float32 is a real rounding, not float64 in disguise.
    assert np.abs(e32.astype(np.float64) - e64).max() > 0


def test_encode_matches_the_module_forward(ckpt_l10: Path) -> None:
    points = random_points(300, seed=4)
    model = load(ckpt_l10)
    with torch.no_grad():
        expected = model(torch.from_numpy(points)).numpy()
    got = encode(points, ckpt_l10, dtype=torch.float64, device="cpu", batch_size=64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------------------
# Inputs and outputs


def test_input_kinds_give_the_same_embeddings(ckpt_l10: Path) -> None:
    points = random_points(40, seed=1)
    reference = encode(points, ckpt_l10)
    assert isinstance(reference, np.ndarray) and reference.shape == (40, 256) and reference.dtype == np.float32

    from_list = encode(points.tolist(), ckpt_l10)
    assert isinstance(from_list, np.ndarray)
    np.testing.assert_array_equal(from_list, reference)

    tensor = torch.from_numpy(points)
    from_tensor = encode(tensor, ckpt_l10)
    assert isinstance(from_tensor, torch.Tensor) and from_tensor.device == tensor.device
    assert from_tensor.dtype == torch.float32
    np.testing.assert_array_equal(from_tensor.numpy(), reference)

    frame = pd.DataFrame({"name": [f"p{i}" for i in range(40)], "Latitude": points[:, 1], "LONGITUDE": points[:, 0]})
    from_frame = encode(frame, ckpt_l10)
    assert isinstance(from_frame, np.ndarray)
    np.testing.assert_array_equal(from_frame, reference)

    short = pd.DataFrame({"lng": points[:, 0], "lat": points[:, 1]}, index=range(100, 140))
    np.testing.assert_array_equal(encode(short, ckpt_l10), reference)


def test_integer_input(ckpt_l10: Path) -> None:
    ints = np.array([[8, 47], [-122, 37]])
    np.testing.assert_array_equal(encode(ints, ckpt_l10), encode(ints.astype(np.float64), ckpt_l10))
    np.testing.assert_array_equal(
        encode(torch.from_numpy(ints), ckpt_l10).numpy(), encode(ints.astype(float), ckpt_l10)
    )


def test_empty_input(ckpt_l10: Path) -> None:
    empty = encode(np.zeros((0, 2)), ckpt_l10)
    assert empty.shape == (0, 256) and empty.dtype == np.float32
    assert encode(torch.zeros(0, 2), ckpt_l10, dtype=torch.float64).shape == (0, 256)


def test_batches_do_not_change_the_result(ckpt_l10: Path) -> None:
    points = random_points(103, seed=2)
    whole = encode(points, ckpt_l10, dtype=torch.float64)
    for batch_size in (1, 7, 64, 1000):
        np.testing.assert_allclose(
            encode(points, ckpt_l10, dtype=torch.float64, batch_size=batch_size), whole, rtol=0, atol=1e-13
        )


_CPU_ENCODE_THEN_COUNT_POOL_THREADS = """
import os, sys, numpy as np, torch, satclip
torch.set_num_threads(2)
points = np.random.default_rng(0).uniform(-80, 80, (5000, 2))
satclip.encode(points, model=sys.argv[1], device="cpu", dtype=torch.float32)
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(sum(name.startswith("satclip-") for name in names))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to list threads")
def test_cpu_workers_compute_their_own_harmonics(ckpt_l10: Path) -> None:
    # Each CPU worker computes its chunk's features itself, so its GEMM reads them from its own
    # core's cache: satclip's Rust thread pool (threads named satclip-N) is never started.
    run = subprocess.run(
        [sys.executable, "-c", _CPU_ENCODE_THEN_COUNT_POOL_THREADS, str(ckpt_l10)],
        env={**os.environ, "RAYON_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "0", "encode handed its harmonics to the Rust pool"


def test_loaded_model_is_accepted_and_left_untouched(ckpt_l10: Path) -> None:
    points = random_points(20, seed=3)
    model = load(ckpt_l10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # encode is inference: no dropout even for a model in training mode
    np.testing.assert_array_equal(encode(points, model), encode(points, ckpt_l10))
    # In the model's own dtype the runner reads its weights in place instead of copying them.
    np.testing.assert_array_equal(
        encode(points, model, dtype=torch.float64), encode(points, ckpt_l10, dtype=torch.float64)
    )
    assert make_runner(model, torch.device("cpu"), torch.float64).nnet is model.nnet
    assert make_runner(model, torch.device("cpu"), torch.float32).nnet is not model.nnet
    assert model.training
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == torch.float64 and torch.equal(tensor, before[name])


def test_satclip_encode_is_the_function_after_importing_the_module(ckpt_l10: Path) -> None:
    # Importing the implementing module must not shadow the package-level function.
    assert satclip.encode is encode
    assert np.array_equal(satclip.encode([[1.0, 2.0]], ckpt_l10), encode([[1.0, 2.0]], ckpt_l10))


# ----------------------------------------------------------------------------------------
# Model cache


def test_models_are_loaded_once_per_source_device_and_dtype(
    make_checkpoint: CheckpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_checkpoint(seed=9)
    calls: list[Any] = []
    real_load = encode_module.load

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(encode_module, "load", counting_load)
    points = random_points(5)
    first = encode(points, path)
    encode(points, str(path))
    assert len(calls) == 1
    encode(points, path, dtype=torch.float64)
    assert len(calls) == 2
    # A checkpoint replaced on disk is reloaded, not served stale from the cache.
    replacement = make_checkpoint(seed=10)
    replacement.replace(path)
    second = encode(points, path)
    assert len(calls) == 3
    assert not np.array_equal(first, second)


# ----------------------------------------------------------------------------------------
# Errors


def test_bad_coordinates_name_the_row(ckpt_l10: Path) -> None:
    points = random_points(10)
    points[6, 1] = np.nan
    with pytest.raises(CoordinateError, match="row 6") as info:
        encode(points, ckpt_l10)
    assert info.value.row == 6

    swapped = random_points(10)[:, ::-1].copy()
    swapped[:, 0] = 100.0  # latitude 100: out of range, probably [lat, lon] order
    with pytest.raises(CoordinateError, match="row 0.*swapped"):
        encode(swapped, ckpt_l10)

    tensor = torch.from_numpy(random_points(10))
    tensor[9, 0] = float("inf")
    with pytest.raises(CoordinateError, match="row 9"):
        encode(tensor, ckpt_l10)


def test_bad_row_beyond_the_first_batch_is_caught_before_any_work(ckpt_l10: Path) -> None:
    points = random_points(100)
    points[97, 0] = 400.0
    with pytest.raises(CoordinateError, match="row 97"):
        encode(points, ckpt_l10, batch_size=8)


def test_dataframe_errors(ckpt_l10: Path) -> None:
    frame = pd.DataFrame({"lon": [1.0, 2.0, np.nan], "lat": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    with pytest.raises(CoordinateError, match="row 2.*label 'c'"):
        encode(frame, ckpt_l10)
    with pytest.raises(ShapeError, match="no latitude column"):
        encode(pd.DataFrame({"lon": [1.0], "height": [2.0]}), ckpt_l10)
    with pytest.raises(ShapeError, match="ambiguous longitude"):
        encode(pd.DataFrame({"lon": [1.0], "longitude": [1.0], "lat": [2.0]}), ckpt_l10)
    with pytest.raises(DTypeError, match="column 'lat'"):
        encode(pd.DataFrame({"lon": [1.0], "lat": ["north"]}), ckpt_l10)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.zeros((4, 3)), ShapeError, r"\(N, 2\)"),
        (np.array([8.5, 47.4]), ShapeError, r"\[\[lon, lat\]\]"),
        (np.zeros((2, 2), dtype=complex), DTypeError, "complex"),
        ([["a", "b"]], DTypeError, "real numbers"),
        ("8.5,47.4", DTypeError, "str"),
        (torch.zeros(3, 2, dtype=torch.complex64), DTypeError, "complex"),
    ],
)
def test_bad_inputs(ckpt_l10: Path, bad: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        encode(bad, ckpt_l10)


def test_bad_arguments(ckpt_l10: Path) -> None:
    points = random_points(3)
    with pytest.raises(DTypeError):
        encode(points, ckpt_l10, dtype=torch.float16)
    with pytest.raises(ValueError, match="batch_size"):
        encode(points, ckpt_l10, batch_size=0)
    with pytest.raises(ValueError, match="device"):
        encode(points, ckpt_l10, device="tpu")
    with pytest.raises(CheckpointError, match="known models"):
        encode(points, "resnet99-l10")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        encode(points, ckpt_l10.with_name("missing.ckpt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda(ckpt_l10: Path) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        encode(random_points(3), ckpt_l10, device="cuda")


# ----------------------------------------------------------------------------------------
# Progress bar


def test_progress_bar(ckpt_l10: Path, capsys: pytest.CaptureFixture[str]) -> None:
    encode(random_points(50), ckpt_l10, progress=True, batch_size=10)
    assert "100%" in capsys.readouterr().err
    encode(random_points(50), ckpt_l10, progress=False)
    encode(random_points(50), ckpt_l10)  # auto: a small job and no terminal
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------------------
# CUDA


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_matches_cpu(ckpt_l10: Path) -> None:
    points = np.concatenate([special_points(), random_points(1000)])
    cpu = encode(points, ckpt_l10, dtype=torch.float64, device="cpu")
    gpu = encode(points, ckpt_l10, dtype=torch.float64, device="cuda")
    assert isinstance(gpu, np.ndarray)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-10)
    gpu32 = encode(points, ckpt_l10, device="cuda")
    relative = np.abs(gpu32 - cpu).max(axis=1) / np.abs(cpu).max(axis=1)
    assert relative.max() <= 1e-5


@needs_cuda
def test_cuda_tensor_in_cuda_tensor_out(ckpt_l10: Path) -> None:
    points = torch.from_numpy(random_points(100)).cuda()
    out = encode(points, ckpt_l10)
    assert out.is_cuda and out.dtype == torch.float32
    cpu_in = encode(points.cpu(), ckpt_l10, device="cuda")  # computed on the GPU, returned on the CPU
    assert not cpu_in.is_cuda
    torch.testing.assert_close(out.cpu(), cpu_in, rtol=0, atol=1e-6)


def test_encoders_with_a_modified_network_run_through_the_module(ckpt_l10: Path) -> None:
    model = load(ckpt_l10)
    model.nnet.last_layer.activation = torch.nn.Tanh()  # no longer the plain SIREN
    points = random_points(30, seed=8)
    with torch.no_grad():
        expected = model(torch.from_numpy(points)).numpy()
    got = encode(points, model, dtype=torch.float64, device="cpu", batch_size=8)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14)
    assert np.abs(got).max() <= 1  # the tanh really was applied


def test_modules_that_are_not_location_encoders_are_refused(ckpt_l10: Path) -> None:
    # Any module mapping (N, 2) to (N, D) is an encoder (tests/test_encoders.py); others are refused.
    with pytest.raises(CheckpointError, match="Linear"):
        encode(random_points(3), torch.nn.Linear(3, 4))


@pytest.mark.parametrize("kind", ["siren", "module", "encoder"])
def test_every_runner_keeps_the_one_interface(ckpt_l10: Path, kind: str) -> None:
    """Each runner is a Runner whose run() writes into out, returns it and reports every point once."""
    from satclip.embed.runners import EncoderRunner, ModuleRunner, Runner, SirenRunner, make_runner

    model = load(ckpt_l10)
    cpu, f64 = torch.device("cpu"), torch.float64
    if kind == "module":
        model.nnet.last_layer.activation = torch.nn.Tanh()
    runner: Runner = EncoderRunner(lambda p: p * 2.0, cpu, f64) if kind == "encoder" else make_runner(model, cpu, f64)
    assert isinstance(runner, {"siren": SirenRunner, "module": ModuleRunner, "encoder": EncoderRunner}[kind])
    points = torch.from_numpy(random_points(3 * 2560 + 11, seed=12))  # several L = 10 chunks and a tail
    with torch.no_grad():
        expected = points * 2.0 if kind == "encoder" else model(points)
    n = points.shape[0]
    size = runner.align_batch_size(n)
    assert size >= n
    out = torch.full((n, runner.embed_dim), float("nan"), dtype=f64)
    counted: list[int] = []
    with torch.inference_mode():
        got = runner.run(points, runner.buffers(size), out=out, progress=counted.append)
    assert got.data_ptr() == out.data_ptr()
    assert sum(counted) == n
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=0, atol=1e-13)
    with torch.inference_mode():
        fresh = runner.run(points[:5], runner.buffers(5), out=None)  # no out, no progress: a new tensor
    np.testing.assert_allclose(fresh.numpy(), out[:5].numpy(), rtol=0, atol=1e-13)  # module: BLAS shape-dependent
