"""The SatCLIP spherical-harmonics basis in pure PyTorch, for tensors on any device.

CPU tensors go to the Rust core (see :mod:`satclip.nn`); this implementation serves CUDA
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

from .harmonics import Basis, check_degrees


@lru_cache(maxsize=32)
def _tables(L: int, basis: Basis) -> dict[str, torch.Tensor]:
    """Recurrence coefficients and the output gather index, in float64 on the CPU."""
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
    # Output column l*l + l + m takes Pbar_l^|m| times trig column (m + L - 1) of
    # [sqrt2 sin(|m| phi) for m = -(L-1)..-1, zonal scale, sqrt2 cos(m phi) for m = 1..L-1].
    ls, ms = [], []
    for l in range(L):
        for m in range(-l, l + 1):
            ls.append(l)
            ms.append(m)
    l_idx = torch.tensor(ls)
    m_idx = torch.tensor(ms)
    zonal = math.pi if basis == "satclip" else 1.0
    return {
        "A": A,
        "B": B,
        "D": D,
        "flat_p": l_idx * L + m_idx.abs(),
        "trig_col": m_idx + (L - 1),
        "zonal": torch.tensor(zonal, dtype=torch.float64),
    }


def torch_spherical_harmonics(lonlat: torch.Tensor, L: int, basis: Basis = "satclip") -> torch.Tensor:
    """SH features of ``lonlat`` (N, 2) [lon, lat] degrees -> (N, L*L), same device and dtype.

    The input is assumed validated (finite, in range); computation runs in the input's dtype.
    """
    L = check_degrees(L)
    dtype, device = lonlat.dtype, lonlat.device
    t = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in _tables(L, basis).items()}
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    # theta = lat + 90 deg: x = cos(theta) = -sin(lat), s = sin(theta) = cos(lat).
    lat_r = torch.deg2rad(lat)
    x = -torch.sin(lat_r)
    s = torch.cos(lat_r).abs()
    # phi = lon + 180 deg; m * phi for m = 1..L-1 directly (no error build-up).
    phi = torch.deg2rad(lon) + math.pi
    n = lonlat.shape[0]

    ms = torch.arange(L, device=device, dtype=dtype)
    diag = t["D"] * torch.pow(s[:, None], ms)  # (N, L): Pbar_m^m
    P = torch.empty(n, L, L, device=device, dtype=dtype)  # P[:, l, m]
    prev2 = torch.zeros(n, L, device=device, dtype=dtype)
    prev = torch.zeros(n, L, device=device, dtype=dtype)
    prev[:, 0] = diag[:, 0]
    P[:, 0] = prev
    xc = x[:, None]
    for l in range(1, L):
        cur = t["A"][l] * xc * prev - t["B"][l] * prev2
        cur[:, l] = diag[:, l]
        P[:, l] = cur
        prev2, prev = prev, cur

    mphi = phi[:, None] * ms[1:]
    sqrt2 = math.sqrt(2.0)
    trig = torch.cat(
        [
            sqrt2 * torch.sin(mphi).flip(1),
            t["zonal"].expand(n, 1),
            sqrt2 * torch.cos(mphi),
        ],
        dim=1,
    )  # (N, 2L-1)
    return P.reshape(n, L * L)[:, t["flat_p"]] * trig[:, t["trig_col"]]
