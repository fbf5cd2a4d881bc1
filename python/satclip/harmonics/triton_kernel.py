"""The SatCLIP spherical-harmonics features as one fused Triton kernel (CUDA; CPU under the interpreter).

:func:`spherical_harmonics` turns (N, 2) [lon, lat] degrees into the (N, L*L) float32 features
in one pass over the points: each program takes a block of points, evaluates one sin/cos per
angle, keeps the normalised associated-Legendre recurrence for every order m in registers and
writes every feature once. Same basis, ordering and normalisation as the Rust core
(``rust/src/plan.rs``) and :func:`satclip.harmonics.torch_values.torch_spherical_harmonics`:

    Pbar_m^m = D[m] sin(theta)^m,   Pbar_l^m = A[l, m] x Pbar_{l-1}^m - B[l, m] Pbar_{l-2}^m,
    column l*l + l + m = sqrt(2) Pbar_l^m cos(m phi),  l*l + l - m = sqrt(2) Pbar_l^m sin(m phi),
    column l*l + l     = Pbar_l^0 * (pi for the "satclip" basis, 1 for "orthonormal"),

with theta = lat + 90 deg and phi = lon + 180 deg, a longitude in (180, 360] taken as lon - 360
(exact, as in the Rust core, so a 0..360 point gives its -180..180 twin's bits). cos(m phi), sin(m phi) come from rotating by
phi once per order. Arithmetic is float64 in registers (the tables A, B are the torch recurrence's
float64 ones); only the stores are float32. The kernel is bound by its N*L*L float32 writes on
data-centre GPUs (H100/H200 float64 at half the float32 rate); on consumer GPUs, whose float64
runs at 1/64 rate, it is compute bound but still one pass with no temporaries.

Triton is imported lazily: ``import satclip`` never imports it, and where it is missing
:func:`available` is False and callers use the torch recurrence. For tests without a GPU, set
``TRITON_INTERPRET=1`` *before* Triton is first imported; CPU tensors then run in the interpreter.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

import torch

from satclip.harmonics.torch_values import recurrence_tables
from satclip.harmonics.values import Basis, check_degrees

#: Points per program: 128 keeps the ~6 live float64 registers per point per order well below spills.
BLOCK_POINTS = 128


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@lru_cache(maxsize=1)
def _triton() -> Any:
    try:
        import triton
        import triton.language
    except Exception:  # ImportError, or a broken install (no compiler, no driver)
        return None
    return triton


def available(tensor: torch.Tensor | None = None) -> bool:
    """Whether :func:`spherical_harmonics` can run on ``tensor``'s device (any device if None)."""
    if _triton() is None:
        return False
    if tensor is None:
        return torch.cuda.is_available() or interpreting()
    return tensor.device.type == "cuda" or (tensor.device.type == "cpu" and interpreting())


@lru_cache(maxsize=1)
def _kernel() -> Any:
    triton = _triton()
    tl = triton.language

    @triton.jit
    def sh_kernel(lonlat_ptr, out_ptr, a_ptr, b_ptr, ratio_ptr, n, d0, zonal, L: tl.constexpr, BLOCK: tl.constexpr):  # type: ignore[name-defined]
        rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = rows < n
        # Evaluated in float64 registers and rounded once per stored feature. Measured: a float32
        # recurrence errs by ~3e-5 relative at L = 40 near the poles (its rounding errors grow
        # like l^2 there, even with compensated x and coefficients), over the 1e-5 budget.
        lon = tl.load(lonlat_ptr + 2 * rows, mask=mask, other=0.0).to(tl.float64)
        lat = tl.load(lonlat_ptr + 2 * rows + 1, mask=mask, other=0.0).to(tl.float64)
        lon = tl.where(lon > 180.0, lon - 360.0, lon)  # 0..360 -> -180..180, exact
        lat_r = lat * 0.017453292519943295
        x = -tl.sin(lat_r)  # cos(theta)
        s = tl.abs(tl.cos(lat_r))  # sin(theta) >= 0
        phi = lon * 0.017453292519943295 + 3.141592653589793
        cos1 = tl.cos(phi)
        sin1 = tl.sin(phi)
        row_base = out_ptr + rows * (L * L)
        pmm = tl.zeros([BLOCK], dtype=tl.float64) + d0  # Pbar_m^m
        cos_m = tl.zeros([BLOCK], dtype=tl.float64) + 1.0  # cos(m phi), rotated in float64
        sin_m = tl.zeros([BLOCK], dtype=tl.float64)  # sin(m phi)
        for m in range(0, L):
            is_zonal = m == 0
            c_factor = tl.where(is_zonal, zonal, 1.4142135623730951 * cos_m)
            s_factor = 1.4142135623730951 * sin_m
            # l = m: the diagonal term.
            centre = m * m + m
            tl.store(row_base + centre + m, (pmm * c_factor).to(tl.float32), mask=mask)
            tl.store(row_base + centre - m, (pmm * s_factor).to(tl.float32), mask=mask & (m > 0))
            prev2 = tl.zeros([BLOCK], dtype=tl.float64)
            prev = pmm
            for l in range(m + 1, L):
                p = tl.load(a_ptr + l * L + m) * x * prev - tl.load(b_ptr + l * L + m) * prev2
                centre = l * l + l
                tl.store(row_base + centre + m, (p * c_factor).to(tl.float32), mask=mask)
                tl.store(row_base + centre - m, (p * s_factor).to(tl.float32), mask=mask & (m > 0))
                prev2 = prev
                prev = p
            pmm = pmm * s * tl.load(ratio_ptr + m)
            next_cos = cos_m * cos1 - sin_m * sin1
            sin_m = sin_m * cos1 + cos_m * sin1
            cos_m = next_cos

    return sh_kernel


@lru_cache(maxsize=64)
def _device_tables(L: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    A, B, _ = recurrence_tables(L)
    # ratio[m] = D[m+1] / D[m] = sqrt((2m+3)/(2m+2)): one multiply per order for the diagonal.
    ratio = torch.tensor([math.sqrt((2 * m + 3) / (2 * m + 2)) for m in range(L)], dtype=torch.float64)

    return A.to(device), B.to(device), ratio.to(device)


def spherical_harmonics(
    lonlat: torch.Tensor, L: int, basis: Basis = "satclip", *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """SH features (N, L*L) float32 of ``lonlat`` (N, 2) [lon, lat] degrees, on ``lonlat``'s device.

    ``lonlat`` may be float32 or float64 and is assumed validated (finite, lon in [-180, 360],
    lat in [-90, 90]; see :func:`satclip.points.tensors.check_lonlat_tensor`). ``out``: an optional
    C-contiguous float32 (N, L*L) tensor on the same device to write into. Raises
    ``RuntimeError`` when Triton cannot run on the tensor's device (see :func:`available`).
    """
    L = check_degrees(L)
    if basis not in ("satclip", "orthonormal"):
        raise ValueError(f'basis must be "satclip" or "orthonormal", got {basis!r}')
    if lonlat.ndim != 2 or lonlat.shape[1] != 2:
        raise ValueError(f"lonlat must have shape (N, 2), got {tuple(lonlat.shape)}")
    if not available(lonlat):
        raise RuntimeError(
            f"the Triton SH kernel cannot run on a {lonlat.device.type} tensor here "
            "(needs Triton and CUDA, or TRITON_INTERPRET=1 for CPU tensors)"
        )
    if lonlat.dtype not in (torch.float32, torch.float64):
        lonlat = lonlat.to(torch.float64)
    lonlat = lonlat.contiguous()
    n = lonlat.shape[0]
    if out is None:
        out = torch.empty(n, L * L, dtype=torch.float32, device=lonlat.device)
    elif (
        out.shape != (n, L * L) or out.dtype != torch.float32 or not out.is_contiguous() or out.device != lonlat.device
    ):
        raise ValueError(f"out must be a contiguous float32 ({n}, {L * L}) tensor on {lonlat.device}")
    if n == 0:
        return out
    a, b, ratio = _device_tables(L, lonlat.device)
    d0 = 0.5 / math.sqrt(math.pi)
    zonal = math.pi if basis == "satclip" else 1.0
    grid = (-(-n // BLOCK_POINTS),)
    _kernel()[grid](lonlat, out, a, b, ratio, n, d0, zonal, L=L, BLOCK=BLOCK_POINTS)
    return out


__all__ = ["BLOCK_POINTS", "available", "interpreting", "spherical_harmonics"]
