"""Differentiable spherical harmonics: a ``torch.autograd.Function`` with the analytic Jacobian.

:class:`satclip.models.location.SphericalHarmonics` dispatches here when its input requires grad (and grad
mode is on), so ``LocationEncoder(lonlat.requires_grad_())`` gives d(embedding)/d(lon, lat);
otherwise it keeps its value-only path, which computes no Jacobian at all.

* CPU: values and Jacobian from the Rust core in one pass
  (:func:`satclip.spherical_harmonics_with_gradient`);
* other devices (CUDA): :func:`satclip.harmonics.torch_gradients.torch_spherical_harmonics_with_gradient`.

The forward pass keeps the (N, L*L, 2) Jacobian for the backward pass (2x the features' memory);
the backward pass is one contraction ``grad_lonlat[n, j] = sum_k grad_features[n, k] J[n, k, j]``.
Gradients are **per degree** (the inputs are degrees). Second derivatives are not implemented
(backward is ``once_differentiable``: asking for them raises instead of returning zeros).

At the poles the longitude derivative of every feature is exactly 0 and the latitude derivative
is finite (the derivative along the meridian of the given longitude); see
:mod:`satclip.harmonics.gradients`. Finite-difference checks must stay inside [-90, 90]: a step across a
pole leaves the domain and is rejected with a CoordinateError.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from satclip.harmonics.gradients import spherical_harmonics_with_gradient
from satclip.harmonics.torch_gradients import torch_spherical_harmonics_with_gradient
from satclip.harmonics.values import Basis, check_degrees
from satclip.points.tensors import lonlat_tensor_for_sh


def values_and_jacobian(lonlat: Tensor, L: int, basis: Basis = "satclip") -> tuple[Tensor, Tensor]:
    """``(features (N, L*L), jacobian (N, L*L, 2))`` of a (N, 2) [lon, lat] degree tensor.

    No autograd involved (the input is read detached). float32 and float64 inputs keep their
    dtype, other real dtypes become float64; the result is on the input's device. Coordinates are
    validated (CoordinateError names the first bad row).
    """
    L = check_degrees(L)
    lonlat = lonlat_tensor_for_sh(lonlat)
    if lonlat.device.type == "cpu":
        values, jac = spherical_harmonics_with_gradient(lonlat.contiguous().numpy(), L, basis=basis)
        return torch.from_numpy(values), torch.from_numpy(jac)
    return torch_spherical_harmonics_with_gradient(lonlat, L, basis)


class SphericalHarmonicsFunction(torch.autograd.Function):
    """features = SH(lonlat); backward contracts the incoming gradient with the analytic Jacobian."""

    @staticmethod
    def forward(ctx: Any, lonlat: Tensor, L: int, basis: Basis) -> Tensor:  # type: ignore[override]
        values, jac = values_and_jacobian(lonlat, L, basis)
        ctx.save_for_backward(jac)
        ctx.input_dtype = lonlat.dtype
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_values: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (jac,) = ctx.saved_tensors
        grad = torch.einsum("nk,nkj->nj", grad_values.to(jac.dtype), jac)
        return grad.to(ctx.input_dtype), None, None


def spherical_harmonics_autograd(lonlat: Tensor, L: int, basis: Basis = "satclip") -> Tensor:
    """Differentiable SH features (N, L*L) of ``lonlat`` (N, 2) degrees; gradients per degree."""
    return SphericalHarmonicsFunction.apply(lonlat, L, basis)
