"""Validation of (lon, lat) tensors, with errors that name the first bad row.

Longitudes are accepted in [-180, 360] (see :mod:`satclip.points.arrays`); :func:`wrap_longitudes`
is the torch twin of :func:`satclip.points.arrays.wrap_longitudes` (``lon - 360`` above 180, exact).
NumPy input is validated by the Rust core; this covers torch tensors on any device (for CUDA
the check costs one reduction and one host sync per batch). Only finding the bad row happens
here: its error (message, ``.row``, ``.column``) comes from the core, so the two never drift.
"""

from __future__ import annotations

import torch

from satclip.errors import DTypeError, ShapeError
from satclip.points.arrays import LAT_RANGE, LON_RANGE, raise_for_row


def as_dense_real_tensor(lonlat: torch.Tensor) -> torch.Tensor:
    """``lonlat`` as a dense (strided) tensor of float32/float64 (or an integer dtype), keeping
    its autograd history: sparse tensors are densified, float16/bfloat16 become float32 (which
    holds them exactly); meta tensors, which hold no values, raise
    :class:`~satclip.errors.DTypeError`."""
    if lonlat.device.type == "meta":
        raise DTypeError("lonlat is a meta tensor: it has a shape but no values to encode")
    if lonlat.layout != torch.strided:
        lonlat = lonlat.to_dense()
    if lonlat.dtype in (torch.float16, torch.bfloat16):
        lonlat = lonlat.to(torch.float32)
    return lonlat


def lonlat_tensor_for_sh(lonlat: torch.Tensor) -> torch.Tensor:
    """``lonlat`` checked, detached and as float32/float64 (other real dtypes become float64),
    ready for the SH paths. Values are checked here only off the CPU: on CPU the Rust core
    checks them itself, with the same messages."""
    check_lonlat_tensor(lonlat, values=lonlat.device.type != "cpu")
    lonlat = lonlat.detach()
    if lonlat.dtype not in (torch.float32, torch.float64):
        lonlat = lonlat.to(torch.float64)
    return lonlat


def check_lonlat_tensor(lonlat: torch.Tensor, *, values: bool = True) -> None:
    """Raises a satclip error unless ``lonlat`` is a real (N, 2) tensor of valid [lon, lat] degrees.

    ``values=False`` checks only dtype and shape, for tensors about to go to the Rust core,
    which checks the values itself (with the same messages).
    """
    if lonlat.is_complex() or not (lonlat.is_floating_point() or lonlat.dtype in _INTEGER_DTYPES):
        raise DTypeError(f"lonlat must hold real numbers (degrees), got dtype {lonlat.dtype}")
    if lonlat.ndim != 2 or lonlat.shape[1] != 2:
        raise ShapeError(f"lonlat must have shape (N, 2) with columns [lon, lat], got {tuple(lonlat.shape)}")
    if not values or lonlat.shape[0] == 0:
        return
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    # NaN fails every comparison, so it is caught here too.
    good = (lon >= LON_RANGE[0]) & (lon <= LON_RANGE[1]) & (lat >= LAT_RANGE[0]) & (lat <= LAT_RANGE[1])
    if bool(good.all()):
        return
    row = int(torch.nonzero(~good)[0, 0])
    # The Rust core owns what a bad coordinate is and how it is reported: it raises the error
    # it would raise for this row of a NumPy array (same message, .row and .column).
    lon_v, lat_v = lonlat[row].tolist()  # one transfer from the device
    raise_for_row(row, lon_v, lat_v)


def wrap_longitudes(lonlat: torch.Tensor) -> torch.Tensor:
    """The longitudes of validated (N, 2) ``lonlat`` with those in (180, 360] written as
    ``lon - 360`` (exact in float32 and float64), as a new (N,) tensor in ``lonlat``'s dtype."""
    lon = lonlat[:, 0]
    return torch.where(lon > 180, lon - 360, lon)


def with_wrapped_longitudes(lonlat: torch.Tensor) -> torch.Tensor:
    """Validated ``lonlat`` with its longitudes in [-180, 180] (:func:`wrap_longitudes`): a new
    tensor, so the caller's is never modified."""
    return torch.stack([wrap_longitudes(lonlat), lonlat[:, 1]], dim=1)


_INTEGER_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}
