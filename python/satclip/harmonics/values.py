"""Spherical-harmonics positional encoding of (lon, lat) points — the NumPy API.

The numbers are computed by the Rust core (``satclip._core``, source in ``rust/src``);
this module turns whatever the user passes into the arrays the core takes, and documents
the basis.
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings
from typing import Literal

import numpy as np

from satclip import _core
from satclip.errors import DegreeError, DTypeError
from satclip.points.arrays import as_lonlat_array

Basis = Literal["satclip", "orthonormal"]

#: Largest ``L`` accepted. The recurrences are exact far beyond it; the cap only turns a typo
#: into an error instead of an attempt to allocate terabytes.
MAX_DEGREES: int = _core.MAX_DEGREES


def check_degrees(L: object) -> int:
    """Validates the number of Legendre degrees and returns it as an int."""
    if isinstance(L, bool) or not isinstance(L, numbers.Integral):
        raise DegreeError(f"L must be an integer number of Legendre degrees, got {L!r}")
    L = int(L)
    if not 1 <= L <= MAX_DEGREES:
        raise DegreeError(f"L must be between 1 and {MAX_DEGREES}, got {L}")
    return L


def renamed_legendre_polys(L: object, legendre_polys: object | None, where: str) -> object:
    """``L``, or the value of the ``legendre_polys=`` keyword that ``where`` took in 0.1.

    The public API names the number of Legendre degrees ``L`` everywhere; ``legendre_polys``
    stays only the key of the released checkpoints' hyper-parameters.
    """
    if legendre_polys is None:
        return L
    warnings.warn(
        f"{where}(legendre_polys=...) is deprecated: the number of Legendre degrees is L=...",
        DeprecationWarning,
        stacklevel=3,
    )
    return legendre_polys


def spherical_harmonics(
    lonlat: object,
    L: int,
    *,
    basis: Basis = "satclip",
    out: np.ndarray | None = None,
    parallel: bool = True,
) -> np.ndarray:
    """Real spherical harmonics of points on the sphere, shape ``(N, L*L)``.

    Parameters
    ----------
    lonlat:
        ``(N, 2)`` array-like of ``[lon, lat]`` in degrees: ``lon`` in [-180, 360] (a longitude
        above 180 is the meridian ``lon - 360``, exactly), ``lat`` in [-90, 90].
    L:
        Number of Legendre degrees; columns are ordered ``l = 0..L-1`` and, inside each
        ``l``, ``m = -l..l`` (column ``l*l + l + m``).
    basis:
        ``"satclip"`` (default) is the basis the released SatCLIP checkpoints were trained
        with: real SH without Condon-Shortley phase, ``sqrt(2)``-scaled for ``m != 0``, with
        the ``m = 0`` columns multiplied by ``pi`` (as in the original code).
        ``"orthonormal"`` is the standard real orthonormal basis (no factor ``pi``).
    out:
        Optional C-contiguous float32/float64 array of shape ``(N, L*L)`` to write into
        (e.g. ``torch_tensor.numpy()``); returned. Without it a new array is returned whose
        dtype follows the input's (float32 in, float32 out; otherwise float64).
    parallel:
        ``True`` (default) shares large inputs out to satclip's thread pool (see
        :func:`set_num_threads`). ``False`` computes on the calling thread only: for callers
        that run one worker thread per core themselves and read the output next on the same
        core (as :func:`satclip.encode` does). The values are the same bits either way.

    Notes
    -----
    Angles are ``phi = lon + 180`` and ``theta = lat + 90`` degrees, as in SatCLIP. The
    values come from normalised recurrences evaluated in float64 (float32 output is rounded
    at the end), accurate to ~1e-15 at any degree.
    """
    L = check_degrees(L)
    arr = as_lonlat_array(lonlat)
    _follow_torch_worker_threads()
    if basis not in ("satclip", "orthonormal"):
        raise ValueError(f'basis must be "satclip" or "orthonormal", got {basis!r}')
    if not isinstance(parallel, (bool, np.bool_)):
        raise TypeError(f"parallel must be True or False, got {parallel!r}")
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise DTypeError(
                f"out must be a NumPy array (use tensor.numpy() for a CPU torch tensor), got {type(out).__name__}"
            )
        if out.dtype not in (np.float32, np.float64):
            raise DTypeError(f"out must be float32 or float64, got {out.dtype}")
    # The core checks out's shape, layout, writeability and overlap (rust/src/python/args.rs).
    return _core.spherical_harmonics(arr, L, basis, out, bool(parallel))


def simd_level() -> str:
    """The instruction set the Rust kernel uses on this CPU: ``"avx512"``, ``"avx2"`` or ``"baseline"``.

    Chosen at run time; ``SATCLIP_SIMD=baseline`` (set before import) forces the portable path.
    """
    return _core.simd_level()


def set_num_threads(n: int) -> None:
    """Sets the number of threads the Rust core computes with (0 = the default: RAYON_NUM_THREADS,
    else OMP_NUM_THREADS, else one per CPU). Overrides the DataLoader-worker rule below for the
    process it is called in."""
    global _explicit_threads_pid
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"number of threads must be a non-negative integer, got {n!r}")
    _core.set_num_threads(int(n))
    _explicit_threads_pid = os.getpid()


def get_num_threads() -> int:
    """The number of threads the Rust core computes with."""
    return _core.get_num_threads()


# Process ids for which the pool size was settled: set explicitly (set_num_threads), or checked
# against torch's DataLoader-worker setting. Compared with os.getpid() so a forked worker (which
# inherits these values) checks again.
_explicit_threads_pid: int | None = None
_checked_worker_pid: int | None = None


def _follow_torch_worker_threads() -> None:
    """Inside a torch DataLoader worker, sizes the pool like torch's (``torch.get_num_threads()``,
    which the DataLoader sets to 1 per worker) instead of the parent's, so that N workers do not
    run N x CPUs threads. Checked once per process; costs a getpid() per call."""
    global _checked_worker_pid
    pid = os.getpid()
    if _checked_worker_pid == pid:
        return
    _checked_worker_pid = pid
    if _explicit_threads_pid == pid:
        return
    torch = sys.modules.get("torch")
    if torch is None:
        return
    data = getattr(getattr(torch, "utils", None), "data", None)
    if data is None or data.get_worker_info() is None:
        return
    _core.set_num_threads(max(1, torch.get_num_threads()))
