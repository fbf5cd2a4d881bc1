"""Location encoders side by side: what :func:`satclip.encode` (and so the probes, ``satclip map``,
the scikit-learn transformer and the Dask/Ray adapters) accepts as ``model``.

* A SatCLIP model: a short name (``"resnet50-l40"``), a Hub repository, a checkpoint path or a
  :class:`satclip.LocationEncoder`.
* A built-in encoder, by name (:data:`BUILTIN_ENCODERS`):

  ``geoclip``
      GeoCLIP's location encoder (512-d), implemented in :mod:`satclip.models.geoclip`, with the weights
      shipped in the ``geoclip`` package (the ``geoclip`` extra; the package is not imported).
      ``geoclip:PATH`` reads the weights from a ``.pth`` file instead.
  ``sh-L10``, ``sh-L40`` (any ``sh-L<n>``)
      The real spherical harmonics with ``n`` Legendre degrees (``n^2`` features): SatCLIP's
      input without its network.
  ``wrap``
      ``[sin lon, cos lon, sin lat, cos lat]`` (angles in radians).
  ``cartesian3d``
      The unit vector ``[cos lat cos lon, cos lat sin lon, sin lat]``.
  ``lonlat``
      ``[lon, lat]`` in degrees, as given.

* Any ``torch.nn.Module`` or callable mapping an ``(N, 2)`` tensor of ``[lon, lat]`` degrees to
  ``(N, D)`` (a tensor or an array). It gets the points in the compute dtype (float32 by default)
  on the compute device; its output is checked (one row of numbers per point) and cast to that
  dtype.

Built-in encoders are built once per (name, device, dtype) and kept in :func:`satclip.encode`'s
model cache, as SatCLIP models are; the parameter-free ones compute their features from the
float64 points. A name that is none of these raises :class:`~satclip.errors.EncoderError`
listing the valid ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from satclip.errors import EncoderError

#: The built-in encoders by name (``sh-L<n>`` takes any degree ``n``; these two are the usual ones).
BUILTIN_ENCODERS: dict[str, str] = {
    "geoclip": "GeoCLIP's location encoder, 512-d (weights of the geoclip package; 'geoclip:PATH' for a file)",
    "sh-L10": "real spherical harmonics, L = 10 (100 features)",
    "sh-L40": "real spherical harmonics, L = 40 (1600 features)",
    "wrap": "[sin lon, cos lon, sin lat, cos lat]",
    "cartesian3d": "unit vector [x, y, z]",
    "lonlat": "[lon, lat] degrees",
}

_SH_NAME = re.compile(r"sh-l(\d+)", re.IGNORECASE)
#: Largest L of an ``sh-L<n>`` name (the features are n^2 columns per point).
MAX_SH_L = 100


class SHFeatures(nn.Module):
    """The real spherical harmonics of ``[lon, lat]`` degrees, ``(N, L^2)`` (computed in float64:
    the Rust core on CPU, the torch implementation elsewhere; returned in the input's dtype)."""

    takes_float64 = True

    def __init__(self, L: int) -> None:
        super().__init__()
        self.L = L

    def forward(self, lonlat: Tensor) -> Tensor:
        if lonlat.device.type == "cpu":
            from satclip.harmonics.values import spherical_harmonics

            points = np.ascontiguousarray(lonlat.detach().to(torch.float64).numpy())
            return torch.from_numpy(np.asarray(spherical_harmonics(points, self.L))).to(lonlat.dtype)
        from satclip.harmonics.torch_values import torch_spherical_harmonics

        return torch_spherical_harmonics(lonlat.to(torch.float64), self.L).to(lonlat.dtype)

    def extra_repr(self) -> str:
        return f"L={self.L}"


class Wrap(nn.Module):
    """``[sin lon, cos lon, sin lat, cos lat]`` of ``[lon, lat]`` degrees."""

    takes_float64 = True

    def forward(self, lonlat: Tensor) -> Tensor:
        rad = torch.deg2rad(lonlat.to(torch.float64))
        lon, lat = rad[:, 0], rad[:, 1]
        return torch.stack([torch.sin(lon), torch.cos(lon), torch.sin(lat), torch.cos(lat)], 1).to(lonlat.dtype)


class Cartesian3D(nn.Module):
    """The unit vector of ``[lon, lat]`` degrees: x towards (0, 0), z towards the north pole."""

    takes_float64 = True

    def forward(self, lonlat: Tensor) -> Tensor:
        rad = torch.deg2rad(lonlat.to(torch.float64))
        lon, lat = rad[:, 0], rad[:, 1]
        xyz = torch.stack([torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon), torch.sin(lat)], 1)
        return xyz.to(lonlat.dtype)


class LonLat(nn.Module):
    """``[lon, lat]`` degrees, unchanged."""

    takes_float64 = True

    def forward(self, lonlat: Tensor) -> Tensor:
        return lonlat.clone()


def builtin_key(model: Any) -> tuple[str, ...] | None:
    """The cache key of a built-in encoder name, ``None`` for anything else (no files are read;
    a ``geoclip:PATH`` key holds the file's mtime and size, so a rewritten file is read again)."""
    if not isinstance(model, str):
        return None
    text = model.strip()
    lower = text.lower()
    if lower == "geoclip":
        return ("geoclip",)
    if lower.startswith("geoclip:"):
        path = os.path.abspath(os.path.expanduser(text[len("geoclip:") :]))
        try:
            stat = os.stat(path)
        except OSError:
            return ("geoclip", path)
        return ("geoclip", path, str(stat.st_mtime_ns), str(stat.st_size))
    if lower in ("wrap", "cartesian3d", "lonlat"):
        return (lower,)
    match = _SH_NAME.fullmatch(lower)
    if match:
        L = int(match.group(1))
        if not 1 <= L <= MAX_SH_L:
            raise EncoderError(f"encoder {text!r}: the sh-L<n> degree must be 1 to {MAX_SH_L}, got {L}")
        return ("sh", str(L))
    return None


def builtin_encoder(model: str) -> nn.Module:
    """The module of a built-in encoder name (see :data:`BUILTIN_ENCODERS`)."""
    key = builtin_key(model)
    if key is None:
        raise unknown_encoder(model)
    kind = key[0]
    if kind == "geoclip":
        from satclip.models.geoclip import load_geoclip

        return load_geoclip(key[1] if len(key) > 1 else None)
    if kind == "sh":
        return SHFeatures(int(key[1]))
    return {"wrap": Wrap, "cartesian3d": Cartesian3D, "lonlat": LonLat}[kind]()


def unknown_encoder(name: str) -> EncoderError:
    from satclip.models.registry import MODELS

    return EncoderError(
        f"unknown model {name!r}: known models are the SatCLIP models {', '.join(MODELS)} and the built-in encoders "
        f"{', '.join(BUILTIN_ENCODERS)} (sh-L<n> for any degree); or pass a checkpoint path, "
        "or a torch.nn.Module / callable mapping (N, 2) [lon, lat] to (N, D)"
    )


def is_unknown_name(model: Any) -> bool:
    """A string that names no encoder: not built in, not a released model or Hub name, not a path."""
    if not isinstance(model, str) or builtin_key(model) is not None:
        return False
    from satclip.io.hub import parse_hub_file
    from satclip.models.registry import MODELS

    text = model.strip()
    if text.lower() in MODELS or "/" in text or os.sep in text or parse_hub_file(text) is not None:
        return False
    return not os.path.splitext(text)[1] and not os.path.exists(text)


def label(model: Any) -> str:
    """A short name of ``model`` for tables and titles."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    name = getattr(model, "__name__", None)
    return str(name) if name else type(model).__name__


def call_encoder(fn: Callable[[Tensor], Any], lonlat: Tensor, name: str) -> Tensor:
    """``fn(lonlat)`` checked: an ``(N, D)`` tensor or array of real numbers, as a tensor."""
    try:
        result = fn(lonlat)
    except EncoderError:
        raise
    except Exception as err:
        raise EncoderError(
            f"encoder {name} failed on a ({lonlat.shape[0]}, 2) [lon, lat] {lonlat.dtype} input: "
            f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        ) from err
    if not isinstance(result, Tensor):
        try:
            result = torch.as_tensor(np.asarray(result))
        except (TypeError, ValueError, RuntimeError) as err:
            raise EncoderError(
                f"encoder {name} must return an (N, D) tensor or array, got {type(result).__name__}"
            ) from err
    n = lonlat.shape[0]
    if result.ndim != 2 or result.shape[0] != n:
        raise EncoderError(
            f"encoder {name} must map (N, 2) [lon, lat] to (N, D); for N = {n} it returned shape {tuple(result.shape)}"
        )
    if not (result.dtype.is_floating_point or result.dtype in (torch.int8, torch.int16, torch.int32, torch.int64)):
        raise EncoderError(f"encoder {name} returned {result.dtype} values; embeddings must be real numbers")
    return result


__all__ = [
    "BUILTIN_ENCODERS",
    "Cartesian3D",
    "LonLat",
    "SHFeatures",
    "Wrap",
    "builtin_encoder",
    "label",
]
