"""Reference implementations the Rust core is timed against.

Everything here is benchmark-only code, written for this suite:

* :func:`vectorised_torch_sh` - (a) the fair pure-PyTorch baseline: the same normalised
  recurrences as the Rust core, vectorised across points *and* orders m, one degree l at a time,
  in cache-sized chunks of points with preallocated buffers (no gathers, no (N, L, L)
  intermediate, no fresh temporaries). It is deliberately independent of ``satclip.harmonics.torch_values`` (the
  package's CUDA path), so that a slow-down in the package cannot make the baseline look worse
  and the Rust core look better.
* :func:`per_lm_torch_sh` - (b) the structure of the original SatCLIP code: one torch expression
  per (l, m) column (here: the unnormalised associated-Legendre recurrence from P_m^m up to
  P_l^m, recomputed for every column, times a factorial normalisation and cos/sin(m phi)),
  then ``torch.stack``. It costs O(L^3) small tensor ops, which is the point of comparing with it.
* :class:`SphericartSH` - the external reference (PyPI ``sphericart``), fed Cartesian xyz.

Angles follow SatCLIP: ``phi = lon + 180`` degrees, ``theta = lat + 90`` degrees, so
``cos(theta) = -sin(lat)`` and ``sin(theta) = cos(lat) >= 0``. Both torch implementations give
the ``"satclip"`` basis (no Condon-Shortley phase, ``sqrt(2)`` for m != 0, zonal columns times
pi), which :func:`check_against_satclip` verifies before anything is timed.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

SQRT2 = math.sqrt(2.0)
#: Factor on the m = 0 columns in the "satclip" basis (see ``satclip.spherical_harmonics``).
ZONAL = math.pi


# --------------------------------------------------------------------------- (a) vectorised torch


@lru_cache(maxsize=16)
def _recurrence_tables(L: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    """Per-degree coefficient rows for the normalised recurrence, computed once per L in float64.

    For degree l >= 1 and order m < l:  Pbar_l^m = a[l][m] * x * Pbar_{l-1}^m - b[l][m] * Pbar_{l-2}^m,
    where the m = l - 1 entry degenerates to a = sqrt(2l + 1), b = 0 (Pbar_{l-2}^{l-1} is zero).
    The diagonal is Pbar_m^m = diag[m] * sin(theta)^m.
    """
    a_rows: list[torch.Tensor] = [torch.zeros(0, dtype=torch.float64)]
    b_rows: list[torch.Tensor] = [torch.zeros(0, dtype=torch.float64)]
    for l in range(1, L):
        a = torch.empty(l, dtype=torch.float64)
        b = torch.zeros(l, dtype=torch.float64)
        for m in range(l):
            if m == l - 1:
                a[m] = math.sqrt(2 * l + 1)
            else:
                a[m] = math.sqrt((4 * l * l - 1) / (l * l - m * m))
                k = l - 1
                b[m] = a[m] * math.sqrt((k * k - m * m) / (4 * k * k - 1))
        a_rows.append(a)
        b_rows.append(b)
    diag = [1.0 / math.sqrt(4.0 * math.pi)]
    for m in range(1, L):
        diag.append(diag[-1] * math.sqrt((2 * m + 1) / (2 * m)))
    return a_rows, b_rows, diag


@torch.inference_mode()
def vectorised_torch_sh(
    lonlat: torch.Tensor, L: int, out: torch.Tensor | None = None, chunk: int | None = None
) -> torch.Tensor:
    """(a) SatCLIP-basis SH of ``lonlat`` (N, 2) in degrees -> (N, L*L), in the input's dtype.

    What a careful torch user would write: points are processed in chunks whose feature-major
    (L*L, chunk) workspace stays cache-resident (~8 MB), every op runs on contiguous rows of
    length ``chunk`` with a preallocated ``out=`` (fresh big temporaries cost page faults that
    would dominate), ~8 ops per degree, and each chunk is transposed once into the (N, L*L)
    output the Rust core also returns.
    """
    dtype = lonlat.dtype
    n = lonlat.shape[0]
    if out is None:
        out = torch.empty(n, L * L, dtype=dtype)
    a_rows, b_rows, diag = _recurrence_tables(L)
    a_cols = [r.to(dtype)[:, None] for r in a_rows]
    b_cols = [r.to(dtype)[:, None] for r in b_rows]
    if chunk is None:
        chunk = max(1024, (8 << 20) // (L * L * lonlat.element_size()))
    c = max(1, min(chunk, n))
    work_t = torch.empty(L * L, c, dtype=dtype)  # feature-major chunk of the output
    p_bufs = [torch.empty(L, c, dtype=dtype) for _ in range(3)]  # Pbar_{l-2}, Pbar_{l-1}, Pbar_l rows
    sin_tmp = torch.empty(L, c, dtype=dtype)
    ms = torch.arange(1, L, dtype=dtype)[:, None]

    for start in range(0, n, c):
        stop = min(start + c, n)
        k = stop - start
        pts = lonlat[start:stop]
        lat = torch.deg2rad(pts[:, 1])
        x = -torch.sin(lat)  # cos(theta)
        s = torch.cos(lat).clamp_min_(0.0)  # sin(theta)
        phi = torch.deg2rad(pts[:, 0]).add_(math.pi)
        mphi = ms * phi  # m * phi directly: no angle-addition drift
        cos_m = torch.cos(mphi).mul_(SQRT2)
        sin_m = torch.sin(mphi).mul_(SQRT2)

        o = work_t[:, :k]
        o[0].fill_(ZONAL * diag[0])
        prev2, prev, cur = (q[:, :k] for q in p_bufs)
        prev[0].fill_(diag[0])
        s_pow = s.clone()  # s^l for the diagonal
        for l in range(1, L):
            torch.mul(prev[:l], x, out=cur[:l])
            cur[:l].mul_(a_cols[l])
            if l >= 2:
                cur[: l - 1].addcmul_(prev2[: l - 1], b_cols[l][: l - 1], value=-1.0)
            torch.mul(s_pow, diag[l], out=cur[l])
            s_pow.mul_(s)
            base = l * l + l  # row of m = 0 for this degree
            torch.mul(cur[0], ZONAL, out=o[base])
            torch.mul(cur[1 : l + 1], cos_m[:l], out=o[base + 1 : base + l + 1])
            # Negative orders are laid out m = -l..-1, i.e. |m| descending: write them reversed.
            sin_part = sin_tmp[:l, :k]
            torch.mul(cur[1 : l + 1], sin_m[:l], out=sin_part)
            o[base - l : base].copy_(sin_part.flip(0))
            prev2, prev, cur = prev, cur, prev2
        out[start:stop].copy_(o.t())
    return out


# --------------------------------------------------------------------------- (b) per-(l, m) torch


def _legendre_unnormalised(l: int, m: int, x: torch.Tensor, somx2: torch.Tensor) -> torch.Tensor:
    """P_l^m(x) without Condon-Shortley phase, m >= 0, by the classic upward recurrence in l.

    Recomputed from scratch for every (l, m), as the original code's column-by-column loop does.
    """
    pmm = torch.ones_like(x)
    double_factorial = 1.0
    for _ in range(m):
        pmm = pmm * somx2 * double_factorial
        double_factorial += 2.0
    if l == m:
        return pmm
    pm1 = x * (2 * m + 1) * pmm
    for ll in range(m + 2, l + 1):
        pm1, pmm = ((2 * ll - 1) * x * pm1 - (ll + m - 1) * pmm) / (ll - m), pm1
    return pm1


@torch.inference_mode()
def per_lm_torch_sh(lonlat: torch.Tensor, L: int) -> torch.Tensor:
    """(b) The same features, one column at a time, stacked at the end (original-code structure).

    Works in the input's dtype like the original; in float32 the unnormalised P_l^m overflow for
    large l (e.g. L = 40), which does not change the timing but means only float64 (or small L)
    is checked for agreement.
    """
    phi = torch.deg2rad(lonlat[:, 0] + 180.0)
    theta = torch.deg2rad(lonlat[:, 1] + 90.0)
    x = torch.cos(theta)
    somx2 = torch.sin(theta).abs()
    columns: list[torch.Tensor] = []
    for l in range(L):
        for m in range(-l, l + 1):
            am = abs(m)
            norm = math.sqrt((2 * l + 1) * math.factorial(l - am) / (4 * math.pi * math.factorial(l + am)))
            p = _legendre_unnormalised(l, am, x, somx2)
            if m == 0:
                columns.append(ZONAL * norm * p)
            elif m > 0:
                columns.append(SQRT2 * norm * torch.cos(m * phi) * p)
            else:
                columns.append(SQRT2 * norm * torch.sin(am * phi) * p)
    return torch.stack(columns, dim=-1)


# --------------------------------------------------------------------------- sphericart


def lonlat_to_xyz(lonlat: np.ndarray) -> np.ndarray:
    """Unit vectors for SatCLIP's angles (sphericart takes Cartesian input)."""
    phi = np.deg2rad(lonlat[:, 0] + 180.0)
    theta = np.deg2rad(lonlat[:, 1] + 90.0)
    st = np.sin(theta)
    return np.ascontiguousarray(np.stack([st * np.cos(phi), st * np.sin(phi), np.cos(theta)], axis=1))


class SphericartSH:
    """sphericart's CPU calculator for l_max = L - 1 (L*L features per point, like satclip).

    sphericart normalises and orders its columns differently; that does not matter for timing
    equal work. ``compute_into`` writes into a preallocated output through sphericart's own
    array entry point (the public ``compute`` always allocates), falling back to ``compute``
    if a future version moves it.
    """

    def __init__(self, L: int):
        import sphericart  # optional dependency: callers skip when it is missing

        self.L = L
        self.calc = sphericart.SphericalHarmonics(l_max=L - 1)

    def compute(self, xyz: np.ndarray) -> np.ndarray:
        return self.calc.compute(xyz)

    def compute_into(self, xyz: np.ndarray, out: np.ndarray) -> np.ndarray:
        into = getattr(self.calc, "_compute_numpy", None)
        if into is None:
            return self.calc.compute(xyz)
        into(xyz, out, None, None)
        return out


@lru_cache(maxsize=1)
def _sphericart_omp() -> ctypes.CDLL | None:
    """The OpenMP runtime sphericart's wheel bundles (its own libgomp, separate from torch's)."""
    try:
        import sphericart
    except ImportError:
        return None
    SphericartSH(1)  # make sure the library (and with it libgomp) is loaded
    candidates = []
    try:
        with open("/proc/self/maps") as maps:
            candidates = [ln.split()[-1] for ln in maps if "gomp" in ln and "sphericart" in ln]
    except OSError:
        pass
    if not candidates:
        libs = Path(sphericart.__file__).parent.parent / "sphericart.libs"
        candidates = [str(p) for p in libs.glob("libgomp*")]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
            return lib
        except OSError:
            continue
    return None


def set_sphericart_threads(n: int) -> bool:
    """Sets sphericart's OpenMP thread count; False if its runtime could not be found."""
    lib = _sphericart_omp()
    if lib is None:
        return False
    lib.omp_set_num_threads(n)
    return True


# --------------------------------------------------------------------------- agreement check


@lru_cache(maxsize=64)
def check_against_satclip(name: str, L: int, dtype_name: str) -> None:
    """Raises AssertionError unless implementation ``name`` reproduces satclip's features.

    Cached, so each (implementation, L, dtype) is checked once per session on a few points
    (including the poles and the date line) before it is timed.
    """
    import satclip

    rng = np.random.default_rng(12345)
    pts = np.column_stack([rng.uniform(-180, 180, 61), rng.uniform(-90, 90, 61)])
    pts = np.vstack([pts, [[0.0, 90.0], [0.0, -90.0], [180.0, 0.0], [-180.0, 45.0]]])
    expected = satclip.spherical_harmonics(pts, L)
    impls: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
        "torch_vectorised": vectorised_torch_sh,
        "torch_per_lm": per_lm_torch_sh,
    }
    got = impls[name](torch.from_numpy(pts).to(getattr(torch, dtype_name)), L).double().numpy()
    if dtype_name == "float32":
        tol = 2e-4 * max(1.0, float(np.abs(expected).max()))
    else:
        tol = 1e-9 * max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(got - expected).max())
    assert err <= tol, f"{name} (L={L}, {dtype_name}) disagrees with satclip: max |diff| = {err:.3g} > {tol:.3g}"
