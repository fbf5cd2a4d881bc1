"""Shared plumbing for the benchmark suite: run modes, sample data, thread control, timing.

Kept out of conftest.py so that bench modules and report.py can import it like any module.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mode:
    """How much the suite measures. "quick" is what CI runs; "full" adds N = 1e6."""

    name: str
    sh_sizes: tuple[int, ...]  # N for the SH comparison
    per_lm_sizes: tuple[int, ...]  # N for the slow per-(l, m) torch code
    encode_sizes: tuple[int, ...]  # N for end-to-end encode
    memory_n: int  # N for the zero-copy / peak-memory checks (L = 40)
    budget_s: float  # target time spent on one benchmark's timed rounds
    min_rounds: int
    max_rounds: int

    def few_rounds(self, **changes: Any) -> Mode:
        """This mode with 3-20 rounds, for benchmarks whose single call already takes long."""
        return dataclasses.replace(self, min_rounds=3, max_rounds=20, **changes)


MODES: dict[str, Mode] = {
    # Small N keeps CI at ~1-2 minutes; N = 10,000 is still far above the per-call overheads of
    # both the Rust core (~microseconds) and the torch baseline's ~8 L ops per chunk, so the
    # ratios it yields are stable (see docs/benchmarks.md).
    "quick": Mode("quick", (10_000,), (), (), 200_000, 0.4, 5, 200),
    "default": Mode("default", (10_000, 100_000), (10_000,), (100_000,), 1_000_000, 1.5, 5, 200),
    "full": Mode("full", (10_000, 100_000, 1_000_000), (10_000,), (100_000, 1_000_000), 1_000_000, 3.0, 5, 200),
}

THREADS: tuple[int, ...] = (1, 2)

#: The spherical-harmonics implementations `bench_spherical_harmonics.py` times, in the order
#: report.py's table shows them (see that module's docstring for what each one is).
SH_IMPLS: tuple[str, ...] = (
    "rust_out",
    "rust_fresh",
    "torch_vectorised",
    "torch_per_lm",
    "sphericart",
    "sphericart_fresh",
    "write_floor",
    "fresh_floor",
    "fault_floor",
)
#: The floors among them: what NumPy does, timed on one thread and compared with every thread count.
SH_FLOORS: tuple[str, ...] = ("write_floor", "fresh_floor", "fault_floor")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def data_dir() -> Path | None:
    """The shared sample data (not in the repository): $SATCLIP_BENCH_DATA, ./shared/data, /work/shared/data."""
    for cand in (os.environ.get("SATCLIP_BENCH_DATA"), REPO / "shared" / "data", "/work/shared/data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


@lru_cache(maxsize=1)
def _station_coords() -> np.ndarray | None:
    """Real station coordinates (Lon, Lat) when the sample data is present."""
    root = data_dir()
    path = root / "air-temperature-stations.csv" if root else None
    if path is None or not path.is_file():
        return None
    import csv

    with open(path, newline="") as f:
        rows = [(float(r["Lon"]), float(r["Lat"])) for r in csv.DictReader(f)]
    return np.asarray(rows, dtype=np.float64) if rows else None


@lru_cache(maxsize=16)
def _lonlat(n: int) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(20240601 + n)
    stations = _station_coords()
    if stations is not None:
        # Real locations, resampled to n with a small jitter so that no two points are equal.
        pts = stations[rng.integers(0, len(stations), n)].copy()
        pts[:, 0] = np.clip(pts[:, 0] + rng.normal(0, 0.05, n), -180, 180)
        pts[:, 1] = np.clip(pts[:, 1] + rng.normal(0, 0.05, n), -90, 90)
        return pts, "air-temperature stations, resampled"
    # Uniform on the sphere: lat = asin(U(-1, 1)).
    lon = rng.uniform(-180, 180, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return np.column_stack([lon, lat]), "synthetic, uniform on the sphere"


def sample_lonlat(n: int, dtype: type = np.float64) -> tuple[np.ndarray, str]:
    """(N, 2) [lon, lat] degrees in ``dtype`` and a description of where they come from."""
    pts, source = _lonlat(n)
    return np.ascontiguousarray(pts.astype(dtype)), source


def set_threads(n: int) -> None:
    """One thread count for every library timed: satclip (rayon), torch, sphericart (OpenMP)."""
    import torch

    import satclip
    from sh_baselines import set_sphericart_threads

    satclip.set_num_threads(n)
    torch.set_num_threads(n)
    set_sphericart_threads(n)


def timed(benchmark: Any, fn: Callable[[], Any], mode: Mode, **info: Any) -> Any:
    """Times ``fn`` with pytest-benchmark, choosing the number of rounds from one trial call.

    Each round is a single call (so "fresh array" really allocates every time). The trial call
    also serves as warm-up (page faults of first use, lazy initialisation). ``info`` lands in the
    JSON's ``extra_info``, which is what report.py reads.
    """
    t0 = time.perf_counter()
    fn()
    trial = max(time.perf_counter() - t0, 1e-6)
    rounds = int(min(mode.max_rounds, max(mode.min_rounds, mode.budget_s / trial)))
    benchmark.extra_info.update(info)
    benchmark.extra_info["mode"] = mode.name
    # The trial call already warmed up; a second warm-up only pays off for short calls.
    warmup = 1 if trial < 1.0 else 0
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup)
