"""Gradient-based use of the location encoder: refine locations to match target embeddings,
and the Jacobian of the embedding with respect to the coordinates.

:func:`refine_locations` finds, for each target embedding (e.g. an image embedding from the
SatCLIP vision encoder), a nearby location whose location embedding has a higher cosine
similarity with it, by ascent on the sphere from a starting point (e.g. the best point of a
grid search). Steps are great-circle moves of the unit 3-vector, so they cross the antimeridian
and the poles like any other place; the (lon, lat) chart is only used to evaluate the model.

:func:`location_jacobian` gives d(embedding)/d(lon, lat), per degree, for sensitivity maps.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from satclip.errors import ShapeError
from satclip.harmonics.autograd import values_and_jacobian
from satclip.models.location import LocationEncoder
from satclip.points.sphere import lonlat_to_xyz, xyz_to_lonlat

_DEG = math.pi / 180
#: Below this cos(lat) (about 6e-5 degrees from a pole) the east direction of the (lon, lat)
#: chart is undefined; the gradient there is taken from two meridians through the pole instead.
_POLE_COS = 1e-6


class RefinedLocations(NamedTuple):
    """Result of :func:`refine_locations` (NumPy arrays, one row per target)."""

    #: (K, 2) refined [lon, lat] degrees, lon in [-180, 180], lat in [-90, 90].
    lonlat: np.ndarray
    #: (K,) cosine similarity of the refined location's embedding with the target.
    score: np.ndarray
    #: (K,) the same at the starting location; ``score >= initial_score`` always.
    initial_score: np.ndarray
    #: (K,) accepted ascent steps per target.
    accepted_steps: np.ndarray


def _as_model(model: LocationEncoder | str) -> LocationEncoder:
    if isinstance(model, LocationEncoder):
        return model
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a satclip LocationEncoder or a model name/path, got {type(model).__name__}")
    from satclip.io.checkpoint import load

    return load(model)


def _as_matrix(x: object, cols: int | None, what: str) -> Tensor:
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2 or (cols is not None and t.shape[1] != cols):
        want = f"(K, {cols})" if cols is not None else "(K, D)"
        raise ShapeError(f"{what} must have shape {want}, got {tuple(t.shape)}")
    return t.to(device="cpu", dtype=torch.float64)


def _lonlat_to_xyz(lonlat: Tensor) -> Tensor:
    return torch.from_numpy(lonlat_to_xyz(lonlat.numpy()))


def _xyz_to_lonlat(v: Tensor) -> Tensor:
    """Unit vectors -> [lon, lat] degrees, always inside [-180, 180] x [-90, 90]."""
    return torch.from_numpy(xyz_to_lonlat(v.numpy()))


def _north(lonlat: Tensor) -> Tensor:
    """Unit vector of increasing latitude at each point (defined at the poles too: along lon)."""
    lon, lat = lonlat[:, 0] * _DEG, lonlat[:, 1] * _DEG
    return torch.stack([-torch.sin(lat) * torch.cos(lon), -torch.sin(lat) * torch.sin(lon), torch.cos(lat)], dim=1)


def _east(lonlat: Tensor) -> Tensor:
    lon = lonlat[:, 0] * _DEG
    return torch.stack([-torch.sin(lon), torch.cos(lon), torch.zeros_like(lon)], dim=1)


def _similarity_and_gradient(
    model: LocationEncoder, lonlat: Tensor, targets: Tensor, param: Tensor
) -> tuple[Tensor, Tensor]:
    """Cosine similarity (K,) at ``lonlat`` and its gradient on the sphere (K, 3) per radian.

    Away from the poles the gradient is ``d/dlat * north + d/dlon / cos(lat) * east``. Within
    ``_POLE_COS`` of a pole the east direction is undefined (and d/dlon is 0); there the tangent
    plane is spanned by the meridians lon = 0 and lon = 90 *at the pole*, along which d/dlat
    gives the two directional derivatives.
    """
    near_pole = torch.cos(lonlat[:, 1] * _DEG) < _POLE_COS
    poles = torch.nonzero(near_pole).flatten()
    pole_lat = torch.where(lonlat[poles, 1] > 0, 90.0, -90.0).to(lonlat.dtype)
    extra = torch.cat(
        [
            torch.stack([torch.zeros_like(pole_lat), pole_lat], 1),
            torch.stack([torch.full_like(pole_lat, 90.0), pole_lat], 1),
        ]
    )
    pts = torch.cat([lonlat, extra]).to(param.device).requires_grad_(True)
    tgt = torch.cat([targets, targets[poles], targets[poles]]).to(device=param.device, dtype=param.dtype)
    with torch.enable_grad():
        emb = model(pts)
        sim = F.cosine_similarity(emb, tgt, dim=1)
        (g,) = torch.autograd.grad(sim.sum(), pts)
    sim, g = sim.detach().to("cpu", torch.float64), g.to("cpu", torch.float64) / _DEG  # per radian
    k, kp = lonlat.shape[0], poles.numel()
    score, g_pts = sim[:k], g[:k]
    cos_lat = torch.cos(lonlat[:, 1] * _DEG).clamp_min(_POLE_COS)
    grad = g_pts[:, 1:2] * _north(lonlat) + (g_pts[:, 0:1] / cos_lat[:, None]) * _east(lonlat)
    if kp:
        g0, g90 = g[k : k + kp, 1:2], g[k + kp :, 1:2]
        grad[poles] = g0 * _north(extra[:kp]) + g90 * _north(extra[kp:])
    # Keep it in the tangent plane at the actual point (it differs from the pole's by < 1e-6).
    v = _lonlat_to_xyz(lonlat)
    grad = grad - (grad * v).sum(1, keepdim=True) * v
    return score, grad


def refine_locations(
    target_embeddings: object,
    model: LocationEncoder | str,
    initial_lonlat: object,
    *,
    steps: int = 40,
    lr: float = 1.0,
    min_step: float = 1e-7,
) -> RefinedLocations:
    """Moves each starting location towards a higher cosine similarity with its target embedding.

    Parameters
    ----------
    target_embeddings:
        ``(K, D)`` array or tensor, e.g. image embeddings from the matching SatCLIP vision encoder
        (``D`` = the location encoder's output size). Row ``i`` is matched by location ``i``; to
        refine several candidates per image, repeat its row.
    model:
        A :class:`~satclip.models.location.LocationEncoder` or anything :func:`satclip.load` accepts. It is
        evaluated in eval mode (dropout off) and its parameters are not changed (no ``.grad``).
    initial_lonlat:
        ``(K, 2)`` starting ``[lon, lat]`` in degrees (e.g. the best grid points).
    steps:
        Number of ascent steps (one model evaluation with gradient each).
    lr:
        Initial step length, in **degrees of great-circle arc**. Each target adapts its own step:
        a step that raises the similarity is taken and the next one is 1.5x longer; one that
        does not is not taken and the step is halved. So the result is never worse than the
        start, and ``lr`` only needs the right order of magnitude (about a grid spacing).
    min_step:
        Stop early once every target's step is below this many degrees.

    Returns
    -------
    RefinedLocations
        ``lonlat`` (K, 2), always valid (lon in [-180, 180], lat in [-90, 90]); ``score`` (K,)
        its cosine similarity, ``>= initial_score`` (the start's) for every row; ``accepted_steps``.

    Notes
    -----
    The ascent direction is the gradient of the similarity on the sphere (the analytic SH
    Jacobian through the network, :mod:`satclip.harmonics.autograd`), and each step moves the unit
    3-vector along a great circle, so the antimeridian and the poles are ordinary points. It is a
    local method: it finds the nearest local maximum, not necessarily the global one.
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive step length in degrees, got {lr!r}")
    model = _as_model(model)
    targets = _as_matrix(target_embeddings, None, "target_embeddings")
    lonlat = _as_matrix(initial_lonlat, 2, "initial_lonlat")
    if targets.shape[0] != lonlat.shape[0]:
        raise ShapeError(
            f"target_embeddings has {targets.shape[0]} rows but initial_lonlat has {lonlat.shape[0]}; "
            "give one start per target (repeat a target's row to refine several candidates)"
        )
    if targets.shape[1] != model.embed_dim:
        raise ShapeError(f"target_embeddings has {targets.shape[1]} columns, the model embeds to {model.embed_dim}")
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        score, grad = _similarity_and_gradient(model, lonlat, targets, param)
        initial = score.clone()
        v = _lonlat_to_xyz(lonlat)
        step = torch.full((lonlat.shape[0],), lr * _DEG, dtype=torch.float64)
        accepted = torch.zeros(lonlat.shape[0], dtype=torch.int64)
        for _ in range(steps):
            norm = grad.norm(dim=1, keepdim=True)
            active = (norm[:, 0] > 0) & (step > min_step * _DEG)
            if not bool(active.any()):
                break
            u = grad / norm.clamp_min(torch.finfo(torch.float64).tiny)
            cand_v = torch.cos(step)[:, None] * v + torch.sin(step)[:, None] * u
            cand_v = cand_v / cand_v.norm(dim=1, keepdim=True)
            cand = _xyz_to_lonlat(cand_v)
            cand_score, cand_grad = _similarity_and_gradient(model, cand, targets, param)
            better = active & (cand_score > score)
            keep = better[:, None]
            lonlat = torch.where(keep, cand, lonlat)
            v = torch.where(keep, _lonlat_to_xyz(cand), v)
            grad = torch.where(keep, cand_grad, grad)
            score = torch.where(better, cand_score, score)
            accepted += better.to(torch.int64)
            step = torch.where(better, (step * 1.5).clamp_max(30 * _DEG), torch.where(active, step * 0.5, step))
    finally:
        model.train(was_training)
    return RefinedLocations(lonlat.numpy(), score.numpy(), initial.numpy(), accepted.numpy())


def location_jacobian(lonlat: object, model: LocationEncoder | str) -> np.ndarray:
    """d(embedding)/d(lon, lat) of a location encoder, per degree: shape ``(N, D, 2)``.

    ``J[i, d, 0]`` is the derivative of embedding component ``d`` at point ``i`` with respect to
    its longitude, ``J[i, d, 1]`` with respect to its latitude (both per degree). Computed with
    the analytic SH Jacobian and two forward-mode passes through the network (one per
    coordinate), in the model's dtype; the model is evaluated in eval mode. At a pole the
    longitude column is 0 (see :mod:`satclip.harmonics.gradients`).
    """
    model = _as_model(model)
    pts = _as_matrix(lonlat, 2, "lonlat")
    param = next(model.parameters())
    features, jac = values_and_jacobian(pts, model.posenc.L, model.posenc.basis)
    features, jac = features.to(param.device, param.dtype), jac.to(param.device, param.dtype)
    was_training = model.training
    model.eval()
    out = []
    try:
        import torch.autograd.forward_ad as fwad

        with torch.no_grad(), fwad.dual_level(), warnings.catch_warnings():
            # torch's first forward-AD use scripts its own decompositions and warns that
            # torch.jit.script is deprecated: torch-internal, nothing the caller can act on.
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
            for j in range(2):
                emb = model.nnet(fwad.make_dual(features, jac[:, :, j].contiguous()))
                out.append(fwad.unpack_dual(emb).tangent)
    finally:
        model.train(was_training)
    return torch.stack(out, dim=2).to("cpu").numpy()
