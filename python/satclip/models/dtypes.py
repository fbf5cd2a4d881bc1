"""The dtypes satclip's models run in, named as users write them."""

from __future__ import annotations

import torch

from satclip.errors import DTypeError

_ALIASES = {"float32": torch.float32, "float64": torch.float64, "double": torch.float64, "float": torch.float32}


def check_float_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` from a dtype or its name (``"float32"``,
    ``"torch.float64"``, ``"double"``), else :class:`~satclip.errors.DTypeError`."""
    if isinstance(dtype, str):
        dtype = _ALIASES.get(dtype.removeprefix("torch."), dtype)  # type: ignore[arg-type]
    if dtype not in (torch.float32, torch.float64):
        raise DTypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype  # type: ignore[return-value]


def encode_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """The dtype :func:`satclip.encode` computes in: float32/float64 anywhere (as
    :func:`check_float_dtype`), bfloat16/float16 on CUDA only (CPU GEMMs gain nothing from them)."""
    reduced = {"bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16}
    if isinstance(dtype, str):
        dtype = reduced.get(dtype.removeprefix("torch."), dtype)  # type: ignore[arg-type]
    if dtype in (torch.bfloat16, torch.float16):
        if device.type != "cuda":
            raise DTypeError(f"dtype {dtype} is for CUDA encoding; on CPU use torch.float32 or torch.float64")
        return dtype  # type: ignore[return-value]
    return check_float_dtype(dtype)


__all__ = ["check_float_dtype", "encode_dtype"]
