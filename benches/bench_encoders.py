"""GeoCLIP's location encoder: ``satclip.encode(lonlat, "geoclip")`` against the geoclip package's
own ``LocationEncoder`` module, on CPU, float32, same threads, same points, same run.

Variants (``variant`` in extra_info):

* ``satclip``  ``satclip.encode(lonlat, "geoclip", device="cpu")`` (model built once, cached)
* ``package``  ``geoclip.model.location_encoder.LocationEncoder()(latlon)`` under ``inference_mode``
  (the package takes ``[lat, lon]`` float32; the swap is done beforehand, untimed)

``bench_geoclip_ratio`` times both alternately (best of several rounds each, so a busy machine
slows both alike) and records ``package / satclip`` as ``speedup`` (> 1: satclip is faster); it
fails below 1. Run: ``pytest benches/bench_encoders.py --benchmark-only`` (needs the ``geoclip``
extra).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import satclip

N = 4096


def _points(n: int = N) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))])


def _calls() -> dict[str, Callable[[], Any]]:
    pytest.importorskip("geoclip", reason="needs the geoclip extra: pip install 'satclip[geoclip]'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from geoclip.model.location_encoder import LocationEncoder

        package = LocationEncoder().eval()
    points = _points()
    latlon = torch.from_numpy(points[:, ::-1].copy()).float()
    satclip.encode(points[:1], "geoclip", device="cpu")  # build and cache the model (untimed)

    def run_package() -> Any:
        with torch.inference_mode():
            return package(latlon)

    return {"satclip": lambda: satclip.encode(points, "geoclip", device="cpu"), "package": run_package}


@pytest.mark.parametrize("variant", ["satclip", "package"])
def bench_geoclip(benchmark: Any, variant: str) -> None:
    call = _calls()[variant]
    call()  # warm-up
    benchmark.extra_info.update(variant=variant, n=N, threads=torch.get_num_threads(), dtype="float32")
    benchmark.pedantic(call, rounds=3, iterations=1)


def bench_geoclip_ratio(benchmark: Any) -> None:
    calls = _calls()
    best = {name: float("inf") for name in calls}
    for _ in range(3):  # alternate, so load on the machine hits both
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    ratio = best["package"] / best["satclip"]
    benchmark.extra_info.update(
        variant="ratio", n=N, threads=torch.get_num_threads(), speedup=ratio, **{f"{k}_s": v for k, v in best.items()}
    )
    print(
        f"\ngeoclip encode, {N} points, {torch.get_num_threads()} threads: package {best['package']:.3f} s, "
        f"satclip {best['satclip']:.3f} s, speedup {ratio:.2f}x"
    )
    benchmark.pedantic(calls["satclip"], rounds=1, iterations=1)
    assert ratio >= 1.0, f"satclip's GeoCLIP is slower than the package's module: {ratio:.2f}x"
