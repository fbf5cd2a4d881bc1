"""SH values and their lon/lat derivatives in pure PyTorch, for tensors on any device.

CPU tensors use the Rust core (:func:`satclip.spherical_harmonics_with_gradient`); this serves
CUDA and other devices, and doubles as an independent second method in the tests: the Rust
kernel differentiates each recurrence step, while this uses the identity between neighbouring
orders (fully normalised, no Condon-Shortley phase, ``d theta = d lat``)

    dPbar_l^m/dtheta = 1/2 sqrt((l+m)(l-m+1)) Pbar_l^(m-1) - 1/2 sqrt((l-m)(l+m+1)) Pbar_l^(m+1)   (m >= 1)
    dPbar_l^0/dtheta = -sqrt(l(l+1)) Pbar_l^1

which needs no division by sin(theta) and so is exact at the poles. Vectorised across points and
orders m: for each degree l one (N, L) update for the values and one for the derivatives.
Gradients are per degree, laid out ``(N, L*L, 2)`` as in the NumPy API.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from satclip.harmonics.torch_values import recurrence_tables
from satclip.harmonics.values import Basis, check_degrees
from satclip.points.tensors import wrap_longitudes


@lru_cache(maxsize=32)
def _tables(L: int) -> tuple[torch.Tensor, ...]:
    """float64 CPU tables: the values' recurrence A, B (L x L) and diagonal D (L), shared with
    :mod:`satclip.harmonics.torch_values`, plus the derivative identity's U, W (L x L)."""
    A, B, D = recurrence_tables(L)
    U = torch.zeros(L, L, dtype=torch.float64)  # coefficient of Pbar_l^(m-1)
    W = torch.zeros(L, L, dtype=torch.float64)  # coefficient of Pbar_l^(m+1)
    for l in range(L):
        W[l, 0] = -math.sqrt(l * (l + 1))
        for m in range(1, l + 1):
            U[l, m] = 0.5 * math.sqrt((l + m) * (l - m + 1))
            W[l, m] = -0.5 * math.sqrt((l - m) * (l + m + 1))
    return A, B, D, U, W


def torch_spherical_harmonics_with_gradient(
    lonlat: torch.Tensor, L: int, basis: Basis = "satclip"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values (N, L*L), gradients (N, L*L, 2))`` of validated ``lonlat`` (N, 2) degrees.

    Same device and dtype as the input (computed in that dtype); gradients per degree,
    ``[..., 0] = d/dlon``, ``[..., 1] = d/dlat``. The input is not checked here; a longitude in
    (180, 360] is taken as ``lon - 360`` (exact; the same derivatives), as the Rust core does.
    """
    L = check_degrees(L)
    dtype, device = lonlat.dtype, lonlat.device
    A, B, D, U, W = (t.to(device=device, dtype=dtype) for t in _tables(L))
    n = lonlat.shape[0]
    deg = math.pi / 180
    lon, lat = wrap_longitudes(lonlat), lonlat[:, 1]
    lat_r = torch.deg2rad(lat)
    x = -torch.sin(lat_r)[:, None]  # cos(theta), theta = lat + 90 deg
    s = torch.cos(lat_r).abs()  # sin(theta)
    ms = torch.arange(L, device=device, dtype=dtype)
    mphi = (torch.deg2rad(lon) + math.pi)[:, None] * ms
    fc = math.sqrt(2.0) * torch.cos(mphi)
    fs = math.sqrt(2.0) * torch.sin(mphi)
    fc[:, 0] = math.pi if basis == "satclip" else 1.0
    fs[:, 0] = 0.0
    diag = D * torch.pow(s[:, None], ms)  # Pbar_m^m (0^0 = 1)

    values = torch.empty(n, L * L, device=device, dtype=dtype)
    grads = torch.empty(n, L * L, 2, device=device, dtype=dtype)
    zero = torch.zeros(n, 1, device=device, dtype=dtype)
    prev2 = torch.zeros(n, L, device=device, dtype=dtype)
    prev = torch.zeros(n, L, device=device, dtype=dtype)
    for l in range(L):
        if l == 0:
            cur = torch.zeros(n, L, device=device, dtype=dtype)
        else:
            cur = A[l] * x * prev - B[l] * prev2
        cur[:, l] = diag[:, l]
        prev2, prev = prev, cur
        # d/dtheta from the neighbouring orders (entries m > l of `cur` are zero).
        below = torch.cat([zero, cur[:, :-1]], dim=1)  # Pbar_l^(m-1)
        above = torch.cat([cur[:, 1:], zero], dim=1)  # Pbar_l^(m+1)
        dcur = U[l] * below + W[l] * above
        p, dp = cur[:, : l + 1], dcur[:, : l + 1]
        centre = l * l + l
        pos = slice(centre, centre + l + 1)  # m = 0..l
        values[:, pos] = p * fc[:, : l + 1]
        grads[:, pos, 0] = -deg * ms[: l + 1] * p * fs[:, : l + 1]
        grads[:, pos, 1] = deg * dp * fc[:, : l + 1]
        if l > 0:
            neg = slice(centre - l, centre)  # m = -l..-1, i.e. |m| = l..1
            values[:, neg] = (p[:, 1:] * fs[:, 1 : l + 1]).flip(1)
            grads[:, neg, 0] = (deg * ms[1 : l + 1] * p[:, 1:] * fc[:, 1 : l + 1]).flip(1)
            grads[:, neg, 1] = (deg * dp[:, 1:] * fs[:, 1 : l + 1]).flip(1)
    return values, grads
