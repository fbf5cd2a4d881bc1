"""``satclip.encode`` gives the same float32 bits for the same point, however it is called.

The promise (docs/explanations/determinism.md): on one machine and one torch build, a point's embedding does
not depend on how the input was split (one call, slices, ``batch_size``), on which other points
are encoded alongside, on torch's thread count, on the SIMD level of the spherical-harmonics core
(``SATCLIP_SIMD``), on running in a fresh process, or on other load on the machine. Each case
below is compared bit for bit with one reference call.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import satclip
from satclip.models.location import build_location_encoder

N_POINTS = 5_000
SIMD_LEVELS = ("avx512", "avx2", "baseline")
SIMD_RANK = {level: rank for rank, level in enumerate(reversed(SIMD_LEVELS))}


def _points() -> np.ndarray:
    rng = np.random.default_rng(20231)
    lonlat = np.column_stack([rng.uniform(-180, 180, N_POINTS), rng.uniform(-90, 90, N_POINTS)])
    lonlat[:4] = [[0.0, 90.0], [0.0, -90.0], [180.0, 0.0], [-180.0, 12.5]]  # poles, antimeridian
    return lonlat


def _model(L: int) -> torch.nn.Module:
    torch.manual_seed(L)
    return build_location_encoder(L).eval()


@pytest.fixture(scope="module", params=[10, 40], ids=["L10", "L40"])
def case(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    model, points = _model(request.param), _points()
    return model, points, satclip.encode(points, model)


@contextmanager
def _busy_machine(seconds: float = 60.0) -> Iterator[None]:
    """One short-lived busy loop per core beside the test (each ends by itself after ``seconds``)."""
    loop = f"import time\nt = time.time() + {seconds}\nwhile time.time() < t: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _assert_same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    differ = np.flatnonzero((got.view(np.uint32) != want.view(np.uint32)).any(axis=1))
    assert differ.size == 0, f"{what}: {differ.size} rows differ (first {differ[:5].tolist()})"


@pytest.mark.parametrize("rows", [1, 37, 200, 256, 1000, 4099])
def test_slices_give_the_bits_of_one_call(case, rows):
    model, points, want = case
    got = np.concatenate([satclip.encode(points[i : i + rows], model) for i in range(0, len(points), rows)])
    _assert_same_bits(got, want, f"slices of {rows} rows")


@pytest.mark.parametrize("batch_size", [1, 300, 2048])
def test_batch_size_does_not_change_the_bits(case, batch_size):
    model, points, want = case
    _assert_same_bits(satclip.encode(points, model, batch_size=batch_size), want, f"batch_size={batch_size}")


def test_a_point_among_others_has_the_bits_it_has_alone(case):
    model, points, want = case
    rng = np.random.default_rng(7)
    picked = rng.choice(len(points), 50, replace=False)
    for i in picked[:10]:
        _assert_same_bits(satclip.encode(points[i : i + 1], model), want[i : i + 1], f"point {i} alone")
    _assert_same_bits(satclip.encode(points[picked], model), want[picked], "points in another order")


@pytest.mark.parametrize("threads", [1, 2, 16])
def test_torch_thread_count_does_not_change_the_bits(case, threads):
    model, points, want = case
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        one_call = satclip.encode(points, model)
        small = np.concatenate([satclip.encode(points[i : i + 200], model) for i in range(0, len(points), 200)])
    finally:
        torch.set_num_threads(before)
    _assert_same_bits(one_call, want, f"{threads} torch threads, one call")
    _assert_same_bits(small, want, f"{threads} torch threads, slices of 200")


def test_the_bits_hold_while_the_machine_is_busy(case):
    model, points, want = case
    with _busy_machine():
        for threads in (2, 16):
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                got = satclip.encode(points, model)
                sliced = np.concatenate(
                    [satclip.encode(points[i : min(i + 37, 1000)], model) for i in range(0, 1000, 37)]
                )
            finally:
                torch.set_num_threads(before)
            _assert_same_bits(got, want, f"busy machine, {threads} threads")
            _assert_same_bits(sliced, want[:1000], f"busy machine, {threads} threads, slices of 37")


_CHILD = """
import sys, numpy as np, torch, satclip
from satclip.models.location import build_location_encoder
L, threads, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(threads)
torch.manual_seed(L)
model = build_location_encoder(L).eval()
points = np.load(out + ".in.npy")
np.save(out, satclip.encode(points, model))
print(satclip.simd_level())
"""


def _levels_here() -> list[str]:
    best = satclip.simd_level()
    return [level for level in SIMD_LEVELS if SIMD_RANK[level] <= SIMD_RANK[best]]


def test_fresh_processes_at_every_simd_level_give_the_same_bits(case, tmp_path: Path):
    """A fresh process (its first MKL calls included) with 16 torch threads, at each SIMD level
    this CPU runs, under load: the spherical harmonics agree bitwise across levels, and so do the
    embeddings. The child rebuilds the model from the same seed."""
    model, points, want = case
    L = model.posenc.L
    with _busy_machine():
        for level in _levels_here():
            out = tmp_path / f"{level}.npy"
            np.save(str(out) + ".in.npy", points)
            env = {**os.environ, "SATCLIP_SIMD": level}
            ran = subprocess.run(
                [sys.executable, "-c", _CHILD, str(L), "16", str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert ran.returncode == 0, ran.stderr[-3000:]
            assert ran.stdout.strip() == level, f"asked for {level}, the core ran {ran.stdout.strip()}"
            _assert_same_bits(np.load(out), want, f"fresh process, SATCLIP_SIMD={level}, 16 threads")


@pytest.mark.parametrize(
    "module",
    ["satclip.models.location", "satclip.harmonics.torch_values", "satclip.embed.locations", "satclip.embed.runners"],
)
def test_importing_a_torch_path_initialises_mkl_vector_math_first(module):
    """The defence against MKL's first-call race (satclip.runtime.vml) runs on import, in a fresh process,
    before any SIREN or torch SH code can run: its first VML call is then a serial one."""
    script = f"import satclip.runtime.vml as v; assert not v.initialised(); import {module}; print(v.initialised())"
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "True"
