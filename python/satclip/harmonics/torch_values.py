"""The SatCLIP spherical-harmonics basis in pure PyTorch, for tensors on any device.

CPU tensors go to the Rust core (see :mod:`satclip.models.location`); this implementation serves CUDA
(computing the features on the GPU beats shipping them over PCIe: 16 bytes per point go in
instead of 4*L*L) and is the vectorised torch baseline the benchmarks compare against.

It evaluates the same normalised recurrences as the Rust kernel, vectorised across points
*and* orders m: for each degree l one update of an (N, L) tensor holding Pbar_l^m for all m,

    Pbar_l^m = A[l, m] * x * Pbar_{l-1}^m - B[l, m] * Pbar_{l-2}^m     (m < l)
    Pbar_l^l = D[l] * sin(theta)^l                                     (diagonal)

so a forward pass is ~5 L elementwise kernels plus one gather, independent of L*L.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from satclip.harmonics.values import Basis, check_degrees
from satclip.points.tensors import wrap_longitudes
from satclip.runtime import vml

vml.initialise()  # MKL's first sin/cos in a process must not be a multi-threaded one (see satclip.runtime.vml)


@lru_cache(maxsize=32)
def recurrence_tables(L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Recurrence coefficients A, B (L x L) and diagonal factors D (L), float64 on the CPU."""
    A = torch.zeros(L, L, dtype=torch.float64)
    B = torch.zeros(L, L, dtype=torch.float64)
    for l in range(1, L):
        for m in range(l):
            if m == l - 1:
                A[l, m] = math.sqrt(2 * m + 3)
            else:
                a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
                lp = l - 1
                b = math.sqrt((lp * lp - m * m) / (4 * lp * lp - 1))
                A[l, m], B[l, m] = a, a * b
    # Diagonal: Pbar_m^m = D[m] * s^m with D[m] = 1/sqrt(4 pi) * prod_k sqrt((2k+1)/(2k)).
    D = torch.empty(L, dtype=torch.float64)
    D[0] = 0.5 / math.sqrt(math.pi)
    for m in range(1, L):
        D[m] = D[m - 1] * math.sqrt((2 * m + 1) / (2 * m))
    return A, B, D


def torch_spherical_harmonics(
    lonlat: torch.Tensor, L: int, basis: Basis = "satclip", *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """SH features of ``lonlat`` (N, 2) [lon, lat] degrees -> (N, L*L), same device and dtype.

    The input is assumed validated (finite, lon in [-180, 360], lat in [-90, 90]); a longitude in
    (180, 360] is taken as ``lon - 360`` (exact), as the Rust core does, so it gives the bits of
    that twin. Computation runs in the input's dtype.
    Working memory beyond the output is O(N * L). ``out`` (N, L*L) may be given to fill.
    """
    L = check_degrees(L)
    dtype, device = lonlat.dtype, lonlat.device
    A, B, D = (t.to(device=device, dtype=dtype) for t in recurrence_tables(L))
    n = lonlat.shape[0]
    if out is None:
        out = torch.empty(n, L * L, device=device, dtype=dtype)
    lon, lat = wrap_longitudes(lonlat), lonlat[:, 1]
    # theta = lat + 90 deg: x = cos(theta) = -sin(lat), s = sin(theta) = cos(lat).
    lat_r = torch.deg2rad(lat)
    x = -torch.sin(lat_r)[:, None]
    s = torch.cos(lat_r).abs()
    # phi = lon + 180 deg; m * phi for m = 0..L-1 directly (no error build-up).
    ms = torch.arange(L, device=device, dtype=dtype)
    mphi = (torch.deg2rad(lon) + math.pi)[:, None] * ms
    cos_m = math.sqrt(2.0) * torch.cos(mphi)
    sin_m = math.sqrt(2.0) * torch.sin(mphi)
    cos_m[:, 0] = math.pi if basis == "satclip" else 1.0  # the zonal column's factor

    diag = D * torch.pow(s[:, None], ms)  # (N, L): Pbar_m^m
    prev2 = torch.zeros(n, L, device=device, dtype=dtype)
    prev = torch.zeros(n, L, device=device, dtype=dtype)
    prev[:, 0] = diag[:, 0]
    cur = prev
    for l in range(L):
        if l > 0:
            cur = A[l] * x * prev - B[l] * prev2
            cur[:, l] = diag[:, l]
            prev2, prev = prev, cur
        centre = l * l + l
        # Columns centre - l .. centre - 1 hold m = -l .. -1 (sines, in reverse order of m).
        out[:, centre - l : centre] = (cur[:, 1 : l + 1] * sin_m[:, 1 : l + 1]).flip(1)
        out[:, centre : centre + l + 1] = cur[:, : l + 1] * cos_m[:, : l + 1]
    return out
