"""SH values with lon/lat gradients: cost over values alone, and against sphericart.

All cases of one (L, dtype, N) group run in the same session (one thread each), so their
medians give same-run ratios, which the module prints when its cases are done (run pytest with ``-s``):

* ``grad_over_values``    values+gradients / values alone, both into reused buffers
  (the issue's bar: <= 3x). Two sizes per L: N = 10,000, where values and gradients (24-384 MB)
  go to memory and both calls run at the memory's write bandwidth, so the ratio sits at the
  3x of the bytes written (the gradients are twice the values' bytes); and an in-cache N
  (values + gradients 2.4 MB at L = 10, 3.8 MB at L = 40), where it is the cost of the
  arithmetic;
* ``sphericart_over_ours`` sphericart ``compute_with_gradients`` / ours, into reused buffers
  (``*_out``) and through the public allocating calls (``*_fresh``).

Implementations (``impl`` in extra_info, ``kind="sh_grad"``):

* ``values_out``             satclip.spherical_harmonics(..., out=buf)
* ``grad_out``               satclip.spherical_harmonics_with_gradient(..., out=(v, g))
* ``grad_fresh``             satclip.spherical_harmonics_with_gradient(...) (new arrays)
* ``sphericart_grad_out``    sphericart values + Cartesian gradients into reused buffers
* ``sphericart_grad_fresh``  sphericart.SphericalHarmonics.compute_with_gradients(xyz)

sphericart returns 3 Cartesian gradient components per feature (d/dx, d/dy, d/dz of its
solid-harmonic-normalised basis), satclip 2 (d/dlon, d/dlat); each is its library's way of
giving the first derivatives of L*L features, which is what is compared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import satclip
from benchkit import Mode, sample_lonlat, set_threads, timed
from conftest import get_mode
from sh_baselines import lonlat_to_xyz

IMPLS = ("values_out", "grad_out", "grad_fresh", "sphericart_grad_out", "sphericart_grad_fresh")
DEGREES = (10, 40)
DTYPES = ("float64", "float32")
#: N whose values and gradients (float64) fit in a 16 MiB last-level cache with room to spare.
IN_CACHE_N = {10: 1000, 40: 100}

#: (L, dtype, n) -> impl -> median seconds, filled as the cases run.
_MEDIANS: dict[tuple[int, str, int], dict[str, float]] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "grad_case" not in metafunc.fixturenames:
        return
    mode: Mode = get_mode(metafunc.config)
    n = mode.sh_sizes[0]  # 10,000 in every mode: far above per-call overheads
    cases = [
        (impl, L, dtype, size) for L in DEGREES for size in (IN_CACHE_N[L], n) for dtype in DTYPES for impl in IMPLS
    ]
    metafunc.parametrize("grad_case", cases, ids=[f"{i}-L{L}-{d}-N{n}" for i, L, d, n in cases])


def _make_call(impl: str, L: int, dtype: str, n: int) -> Callable[[], Any]:
    np_dtype = np.dtype(dtype)
    lonlat, _ = sample_lonlat(n, np_dtype.type)
    if impl == "values_out":
        buf = np.empty((n, L * L), dtype=np_dtype)
        return lambda: satclip.spherical_harmonics(lonlat, L, out=buf)
    if impl == "grad_out":
        out = (np.empty((n, L * L), dtype=np_dtype), np.empty((n, L * L, 2), dtype=np_dtype))
        return lambda: satclip.spherical_harmonics_with_gradient(lonlat, L, out=out)
    if impl == "grad_fresh":
        return lambda: satclip.spherical_harmonics_with_gradient(lonlat, L)
    sphericart = pytest.importorskip("sphericart", reason="sphericart (external reference) is not installed")
    calc = sphericart.SphericalHarmonics(l_max=L - 1)
    xyz = np.ascontiguousarray(lonlat_to_xyz(lonlat.astype(np.float64)).astype(np_dtype))
    if impl == "sphericart_grad_fresh":
        return lambda: calc.compute_with_gradients(xyz)
    if impl == "sphericart_grad_out":
        into = getattr(calc, "_compute_numpy", None)
        if into is None:  # a future sphericart without the array entry point
            return lambda: calc.compute_with_gradients(xyz)
        sph = np.empty((n, L * L), dtype=np_dtype)
        dsph = np.empty((n, 3, L * L), dtype=np_dtype)
        return lambda: into(xyz, sph, dsph, None)
    raise ValueError(impl)


def bench_sh_gradients(benchmark: Any, mode: Mode, grad_case: tuple[str, int, str, int]) -> None:
    impl, L, dtype, n = grad_case
    set_threads(1)
    benchmark.group = f"SH+gradients L={L} {dtype} N={n} threads=1"
    call = _make_call(impl, L, dtype, n)
    _, source = sample_lonlat(n)
    timed(benchmark, call, mode, kind="sh_grad", impl=impl, L=L, dtype=dtype, n=n, threads=1, data=source)
    if benchmark.stats is not None:
        _MEDIANS.setdefault((L, dtype, n), {})[impl] = benchmark.stats.stats.median


@pytest.fixture(scope="module", autouse=True)
def _report_ratios(request: pytest.FixtureRequest) -> Any:
    """After the module's cases: writes their same-run ratios to the terminal (informational;
    report.py tabulates them)."""
    yield
    if not _MEDIANS:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter is not None else print
    write("")
    write("SH + gradients, same-run ratios of medians (1 thread):")
    for (L, dtype, n), m in sorted(_MEDIANS.items()):
        parts = []
        if {"values_out", "grad_out"} <= m.keys():
            parts.append(f"grad/values {m['grad_out'] / m['values_out']:.2f}x")
        for kind in ("out", "fresh"):
            if {f"grad_{kind}", f"sphericart_grad_{kind}"} <= m.keys():
                parts.append(f"sphericart/ours ({kind}) {m[f'sphericart_grad_{kind}'] / m[f'grad_{kind}']:.2f}x")
        write(f"  L={L} {dtype} N={n}: " + ", ".join(parts))
