"""What the encode-like entry points accept: points from any supported input kind, and the
device to compute on (shared by :func:`satclip.encode`, :func:`satclip.encode_images` and
:func:`satclip.locate`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from satclip.errors import CoordinateError, DeviceError, DTypeError
from satclip.points.arrays import as_lonlat_array
from satclip.points.columns import frame_lonlat, is_dataframe
from satclip.points.tensors import check_lonlat_tensor, with_wrapped_longitudes


def as_points(lonlat: Any) -> tuple[Tensor, torch.device]:
    """Validated float64 (N, 2) points as a tensor (CPU unless the input was a CUDA tensor), and
    the device they came from. Takes what :func:`satclip.encode` documents (NumPy arrays, torch
    tensors, lists of pairs, pandas DataFrames); a bad row in a DataFrame is named by its index
    label too.

    Longitudes may be in [-180, 360]; the points come back with every longitude in [-180, 180]
    (one in (180, 360] as ``lon - 360``, exact), so every encoder sees one meridian one way and a
    0..360 grid gives the bits of its -180..180 twin. The caller's data is never modified."""
    if isinstance(lonlat, Tensor):
        check_lonlat_tensor(lonlat)
        return _wrapped(lonlat.detach().to(torch.float64).contiguous()), lonlat.device
    index = None
    if is_dataframe(lonlat):
        index = lonlat.index
        array = frame_lonlat(lonlat)
    else:
        if isinstance(lonlat, (str, bytes)):
            raise DTypeError(f"lonlat must be numbers, got a {type(lonlat).__name__}")
        array = as_lonlat_array(lonlat).astype(np.float64, copy=False)
    points = torch.from_numpy(np.ascontiguousarray(array))
    try:
        check_lonlat_tensor(points)
    except CoordinateError as err:
        if index is not None and err.row is not None and index[err.row] != err.row:
            new = CoordinateError(f"{err} (DataFrame index label {index[err.row]!r})")
            new.row, new.column = err.row, err.column
            raise new from None
        raise
    return _wrapped(points), torch.device("cpu")


def _wrapped(points: Tensor) -> Tensor:
    """``points`` with longitudes in [-180, 180]; ``points`` itself when none is above 180."""
    if points.shape[0] == 0 or not bool((points[:, 0] > 180).any()):
        return points
    return with_wrapped_longitudes(points)


def pick_device(device: torch.device | str | None, input_device: torch.device) -> torch.device:
    """The device to compute on: ``device`` checked, or by default the input's CUDA device, else
    CUDA when available, else the CPU. A bare ``"cuda"`` becomes the current CUDA device."""
    if device is None:
        if input_device.type == "cuda":
            return input_device
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"not a device: {device!r}; satclip encodes on 'cpu' or 'cuda' (e.g. 'cuda:1')") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was requested but CUDA is not available here")
    if chosen.type not in ("cpu", "cuda"):
        raise DeviceError(f"satclip encodes on 'cpu' or 'cuda', got {device!r}")
    if chosen.type == "cuda" and chosen.index is None:
        # "cuda" and "cuda:0" must compare equal to a tensor's device (cuda:0) later on.
        chosen = torch.device("cuda", torch.cuda.current_device())
    return chosen
