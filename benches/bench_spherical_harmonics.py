"""Spherical harmonics alone: the Rust core against torch baselines and sphericart.

Every case of one (L, dtype, N, threads) group runs in the same session, so report.py can turn the
medians into ratios (baseline / Rust) that mean the same thing on any machine.

Implementations (``impl`` in extra_info):

* ``rust_out``         satclip.spherical_harmonics(..., out=buf) into a reused buffer
* ``rust_fresh``       satclip.spherical_harmonics(...) returning a new array every call
* ``torch_vectorised`` (a) benches/sh_baselines.vectorised_torch_sh into a reused tensor
* ``torch_per_lm``     (b) per-(l, m) columns + torch.stack, original-code structure (small N, 1 thread)
* ``sphericart``       sphericart.SphericalHarmonics(l_max=L-1) into a reused buffer, xyz input
* ``sphericart_fresh`` the same through sphericart's public ``compute``, a new array every call
* ``write_floor``      ndarray.fill on an output of the same size: the memory-write floor (1 thread)
* ``fresh_floor``      numpy.empty of the output's shape + fill, every call: the floor of any fresh
                       result (1 thread)
* ``fault_floor``      numpy.empty + one store per 4 KiB page: the operating system's page zeroing
                       alone, the part of ``fresh_floor`` no kernel can avoid (1 thread)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import satclip
from benchkit import SH_FLOORS, SH_IMPLS, THREADS, Mode, sample_lonlat, set_threads, timed, usable_cpus
from conftest import get_mode
from sh_baselines import SphericartSH, check_against_satclip, lonlat_to_xyz, per_lm_torch_sh, vectorised_torch_sh

SINGLE_THREAD_ONLY = ("torch_per_lm", *SH_FLOORS)
PAGE_BYTES = 4096
DEGREES = (10, 40)
DTYPES = ("float32", "float64")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sh_case" not in metafunc.fixturenames:
        return
    mode: Mode = get_mode(metafunc.config)
    cases, ids = [], []
    for n in mode.sh_sizes:
        for threads in THREADS:
            for L in DEGREES:
                for dtype in DTYPES:
                    for impl in SH_IMPLS:
                        if impl in SINGLE_THREAD_ONLY and threads != 1:
                            continue
                        if impl == "torch_per_lm" and n not in mode.per_lm_sizes:
                            continue  # O(L^3) tiny ops: minutes per call at large N
                        cases.append((impl, L, dtype, n, threads))
                        ids.append(f"{impl}-L{L}-{dtype}-N{n}-t{threads}")
    metafunc.parametrize("sh_case", cases, ids=ids)


def _make_call(impl: str, L: int, dtype: str, n: int) -> Callable[[], Any]:
    """The zero-argument callable timed for one case; all inputs and outputs prepared here."""
    np_dtype = np.dtype(dtype)
    lonlat, _ = sample_lonlat(n, np_dtype.type)
    if impl == "rust_out":
        buf = np.empty((n, L * L), dtype=np_dtype)
        return lambda: satclip.spherical_harmonics(lonlat, L, out=buf)
    if impl == "rust_fresh":
        return lambda: satclip.spherical_harmonics(lonlat, L)
    if impl in ("torch_vectorised", "torch_per_lm"):
        check_against_satclip(impl, L, dtype) if (dtype == "float64" or L <= 10) else None
        t = torch.from_numpy(lonlat)
        if impl == "torch_per_lm":
            return lambda: per_lm_torch_sh(t, L)
        tbuf = torch.empty(n, L * L, dtype=t.dtype)
        return lambda: vectorised_torch_sh(t, L, out=tbuf)
    if impl in ("sphericart", "sphericart_fresh"):
        pytest.importorskip("sphericart", reason="sphericart (external reference) is not installed")
        calc = SphericartSH(L)
        xyz = lonlat_to_xyz(lonlat.astype(np.float64)).astype(np_dtype)
        if impl == "sphericart_fresh":
            return lambda: calc.compute(xyz)
        buf = np.empty((n, L * L), dtype=np_dtype)
        return lambda: calc.compute_into(xyz, buf)
    if impl == "write_floor":
        buf = np.empty((n, L * L), dtype=np_dtype)
        return lambda: buf.fill(1.0)
    if impl == "fresh_floor":
        return lambda: np.empty((n, L * L), dtype=np_dtype).fill(1.0)
    if impl == "fault_floor":
        per_page = PAGE_BYTES // np_dtype.itemsize

        def fault_pages() -> None:
            np.empty((n, L * L), dtype=np_dtype).reshape(-1)[::per_page] = 1.0

        return fault_pages
    raise ValueError(impl)


def bench_sh(benchmark: Any, mode: Mode, sh_case: tuple[str, int, str, int, int]) -> None:
    impl, L, dtype, n, threads = sh_case
    if threads > usable_cpus():
        pytest.skip(f"{threads} threads requested, {usable_cpus()} CPU(s) usable")
    set_threads(threads)
    benchmark.group = f"SH L={L} {dtype} N={n} threads={threads}"
    call = _make_call(impl, L, dtype, n)
    _, source = sample_lonlat(n)
    timed(
        benchmark,
        call,
        mode,
        kind="sh",
        impl=impl,
        L=L,
        dtype=dtype,
        n=n,
        threads=threads,
        simd=satclip.simd_level(),
        data=source,
    )
