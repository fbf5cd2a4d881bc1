"""Embedding grids: ``satclip.encode_grid`` (the separable path) against point-wise ``satclip.encode``
on the same cells, and the peak memory of a global Zarr product.

* ``bench_grid_vs_pointwise``: a global grid of cell centres (0.25 deg, 1440 x 720, in default/full
  mode; 1 deg, 360 x 180, in quick mode), float32, L = 10 and 40, 1 and 2 threads. Both
  variants are timed in the same run, interleaved (best of ``rounds`` each), so the ratio is
  measured on one machine state; it lands in ``extra_info["speedup"]``. Goal: >= 3x at L = 40,
  not slower at L = 10; asserted with a margin for a busy machine (2.0x and 0.85x).
* ``bench_zarr_product_peak_rss``: ``satclip map --export`` of a global grid (0.1 deg in full
  mode, 0.5 deg otherwise) at L = 10 in a fresh process; its peak resident set beyond an import
  baseline (torch, satclip, the model) must stay within a few bands (chunks) of embeddings,
  whatever the product's size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import satclip
from benchkit import Mode, set_threads

if not callable(getattr(satclip, "encode_grid", None)):
    pytest.skip("satclip.encode_grid is not available", allow_module_level=True)

MiB = 1 << 20


def _axes(resolution: float) -> tuple[np.ndarray, np.ndarray]:
    lon = -180 + (np.arange(round(360 / resolution)) + 0.5) * resolution
    lat = 90 - (np.arange(round(180 / resolution)) + 0.5) * resolution
    return lon, lat


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("L", [10, 40])
def bench_grid_vs_pointwise(benchmark: Any, mode: Mode, L: int, threads: int) -> None:
    from satclip.nn import build_location_encoder

    resolution = 1.0 if mode.name == "quick" else 0.25
    lon, lat = _axes(resolution)
    grid_lon, grid_lat = np.meshgrid(lon, lat)
    points = np.column_stack([grid_lon.ravel(), grid_lat.ravel()])
    torch.manual_seed(0)
    model = build_location_encoder(L).eval()
    set_threads(threads)
    grid_out = np.empty((lat.size, lon.size, 256), dtype=np.float32)

    def grid() -> object:
        return satclip.encode_grid(lon, lat, model, device="cpu", out=grid_out)

    def pointwise() -> object:
        return satclip.encode(points, model, device="cpu")

    grid(), pointwise()  # warm-up: page faults, lazy set-up
    rounds = 3 if mode.name == "quick" else 2
    best = {"grid": np.inf, "pointwise": np.inf}
    for _ in range(rounds):
        for name, fn in (("grid", grid), ("pointwise", pointwise)):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    speedup = best["pointwise"] / best["grid"]
    ref = np.asarray(pointwise()).reshape(grid_out.shape)
    rel = float((np.abs(grid_out - ref).max(axis=-1) / np.abs(ref).max(axis=-1)).max())
    benchmark.extra_info.update(
        L=L,
        threads=threads,
        cells=int(points.shape[0]),
        resolution_deg=resolution,
        grid_s=best["grid"],
        pointwise_s=best["pointwise"],
        speedup=speedup,
        float32_rel_vs_pointwise=rel,
        mode=mode.name,
    )
    benchmark.pedantic(grid, rounds=1, iterations=1)
    print(
        f"\nL={L} threads={threads} {lon.size}x{lat.size}: grid {best['grid']:.2f} s, "
        f"point-wise {best['pointwise']:.2f} s, speed-up {speedup:.2f}x, float32 rel diff {rel:.2e}"
    )
    assert rel <= 2e-5
    assert speedup >= (2.0 if L == 40 else 0.85)


_EXPORT = """
import sys, torch
from pathlib import Path
from satclip import embedding_map
from satclip.nn import build_location_encoder
torch.manual_seed(0)
model = build_location_encoder(10).eval()
if sys.argv[2] != "baseline":
    grid = embedding_map.make_grid(float(sys.argv[2]))
    embedding_map.export_grid(model, grid, Path(sys.argv[1]), device="cpu")
else:
    import satclip
    satclip.encode_grid([0.0, 1.0], [0.0], model, device="cpu")
"""


def _peak_rss(*argv: str) -> int:
    proc = subprocess.Popen([sys.executable, "-c", _EXPORT, *argv])
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss * 1024  # KiB on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss semantics: Linux only")
def bench_zarr_product_peak_rss(benchmark: Any, mode: Mode, tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    from satclip.embedding_map import BAND_POINTS

    resolution = 0.1 if mode.name == "full" else 0.5
    baseline = _peak_rss(str(tmp_path / "none.zarr"), "baseline")
    start = time.perf_counter()
    peak = _peak_rss(str(tmp_path / "world.zarr"), str(resolution))
    seconds = time.perf_counter() - start
    band_bytes = BAND_POINTS * 256 * 4  # one chunk of float32 embeddings
    product = round(360 / resolution) * round(180 / resolution) * 256 * 4
    working = peak - baseline
    benchmark.extra_info.update(
        resolution_deg=resolution,
        product_bytes=product,
        band_bytes=band_bytes,
        baseline_rss=baseline,
        peak_rss=peak,
        working_bytes=working,
        seconds=seconds,
        mode=mode.name,
    )
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(
        f"\nglobal {resolution} deg Zarr product ({product / MiB:.0f} MiB): peak RSS {peak / MiB:.0f} MiB, "
        f"{working / MiB:.0f} MiB beyond the import baseline, band {band_bytes / MiB:.0f} MiB, {seconds:.1f} s"
    )
    assert working <= 6 * band_bytes + 64 * MiB
