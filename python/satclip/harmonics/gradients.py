"""Spherical harmonics together with their derivatives in longitude and latitude — the NumPy API.

The derivatives are analytic (differentiated recurrences in the Rust core, ``rust/src/kernel/gradient.rs``),
not finite differences, and are computed in the same pass as the values.

Units: **per degree**, because the inputs are degrees. Multiply by ``180 / pi`` for per-radian.

At the poles the (lon, lat) chart is singular: every feature is independent of longitude there,
so ``d/dlon`` is exactly 0, while ``d/dlat`` is the finite derivative of the formula (at
``lat = 90`` the derivative of ``Y(lon, lat)`` in ``lat`` is the rate of change when moving
along the meridian ``lon``, which depends on ``lon``). A gradient in (lon, lat) is therefore not
a gradient on the sphere near the poles; :mod:`satclip.downstream.refine` optimises on the sphere instead.
"""

from __future__ import annotations

import numpy as np

from satclip import _core
from satclip.errors import DTypeError
from satclip.harmonics.values import Basis, check_degrees
from satclip.points.arrays import as_lonlat_array


def spherical_harmonics_with_gradient(
    lonlat: object,
    L: int,
    *,
    basis: Basis = "satclip",
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """SH features and their derivatives with respect to ``[lon, lat]``.

    Parameters
    ----------
    lonlat:
        ``(N, 2)`` ``[lon, lat]`` degrees, as :func:`satclip.spherical_harmonics` takes them.
    L:
        Number of Legendre degrees (``L*L`` features, ordered as in
        :func:`satclip.spherical_harmonics`).
    basis:
        ``"satclip"`` (default) or ``"orthonormal"``, as in :func:`satclip.spherical_harmonics`.
    out:
        Optional ``(values, gradients)`` to write into and return: C-contiguous, writeable
        arrays of one dtype (float32 or float64), shapes ``(N, L*L)`` and ``(N, L*L, 2)``, not
        overlapping. Reusing them in a loop avoids the page-clearing cost of fresh arrays.

    Returns
    -------
    values:
        ``(N, L*L)``, identical (bit for bit) to ``satclip.spherical_harmonics(lonlat, L)``.
    gradients:
        ``(N, L*L, 2)``: ``gradients[i, k, 0] = dY_k/dlon`` and ``gradients[i, k, 1] = dY_k/dlat``
        at point ``i``, **per degree**. The last axis matches the columns of ``lonlat``, so
        ``gradients[i]`` is the Jacobian of row ``i``'s features with respect to row ``i``.

    Both are float32 for float32 input and float64 otherwise (computed in float64 either way).

    Notes
    -----
    At a pole ``d/dlon`` is exactly zero for every feature and ``d/dlat`` is finite (see the
    module docstring for what it means there). Costs about 3x the values alone (it writes 3x
    the bytes) — see ``benches/bench_gradients.py``.
    """
    L = check_degrees(L)
    arr = as_lonlat_array(lonlat)
    if basis not in ("satclip", "orthonormal"):
        raise ValueError(f'basis must be "satclip" or "orthonormal", got {basis!r}')
    if out is None:
        n, dtype = arr.shape[0], arr.dtype
        values = np.empty((n, L * L), dtype=dtype)
        gradients = np.empty((n, L * L, 2), dtype=dtype)
    else:
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, np.ndarray) for o in out)):
            raise DTypeError("out must be a tuple (values, gradients) of two NumPy arrays")
        values, gradients = out
        if values.dtype != gradients.dtype or values.dtype not in (np.float32, np.float64):
            raise DTypeError(
                f"out arrays must both be float32 or both float64, got {values.dtype} and {gradients.dtype}"
            )
    # The core checks shapes, layout, writeability and overlap (rust/src/python/gradient.rs).
    _core.spherical_harmonics_with_gradient(arr, L, basis, values, gradients, fresh=out is None)
    return values, gradients
