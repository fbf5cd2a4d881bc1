"""``satclip.encode_images``: SatCLIP embeddings of Sentinel-2 images.

Input and preprocessing, as the original SatCLIP does it at inference (notebook B02):

* Images are Sentinel-2 L2A reflectances, bands first: ``(B, 12, H, W)`` - B01..B12 without
  B10, the S2-100K layout - or ``(B, 13, H, W)`` with B10 at index 10 (used as given; the released
  models saw a zero B10, so pass zeros there, or 12 bands, to match them). A single ``(C, H, W)``
  image is one image.
* Values are divided by 10 000 (digital numbers to reflectance), computed in float32 like the
  original (``float32 / 10000.0``); then a zero B10 band is inserted at index 10 when 12 bands
  were given. There is no other normalisation.
* Units (``units="auto"``): integer arrays (uint16 GeoTIFF pixels) are digital numbers (DN).
  Float arrays are DN when their largest value exceeds 6.5535 (= 65535 / 10000, the largest
  reflectance a uint16 product can hold, so such values cannot be reflectances), and
  already-scaled reflectances otherwise. A float image of DN that is almost black (every value
  <= 6.55) would be misread: pass ``units="dn"`` or ``units="reflectance"`` to say which.
* Paths name GeoTIFF patches (12 uint16 bands, as in S2-100K), read with the training data
  reader (:func:`satclip.io.geotiff.read_image`, tifffile; no GDAL needed).
* The ViT-S/16 encoder was built for 224 x 224 inputs (its position embeddings are a 14 x 14
  grid), while S2-100K patches are 256 x 256: larger images are **centre-cropped** to 224 x 224
  (offset ``(H - 224) // 2``, ``(W - 224) // 2``), which keeps the model exactly the trained one
  (interpolating position embeddings would change it). Smaller images are refused. The ResNets
  pool globally and take every size as it is.

Embeddings are ``visual(preprocessed)`` - unnormalised, as the original's ``model.visual``.
On CUDA, TF32 is switched off for the call so that float32 results are float32-exact.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from satclip.errors import DTypeError, ImageError, SatclipError, ShapeError
from satclip.io.checkpoint import load_image_encoder
from satclip.io.geotiff import CHANNELS, FILE_BANDS, ZERO_BAND_INDEX, read_image
from satclip.models.image import ImageEncoder
from satclip.models.registry import ModelSource, PathLike, cache_key
from satclip.runtime.caches import LRUCache

ImageModelLike = PathLike | ImageEncoder

#: Digital numbers per unit reflectance (Sentinel-2 L2A quantification value).
QUANTIFICATION = 10_000.0
#: The largest reflectance a uint16 product can hold; larger float values must be DN.
MAX_REFLECTANCE = 65535 / QUANTIFICATION
UNITS = ("auto", "dn", "reflectance")

#: Images per batch by default: a ResNet50 forward at 256 px needs ~40 MB per image on CPU.
CPU_BATCH = 16
CUDA_BATCH = 64
_AUTO_PROGRESS_IMAGES = 64


def encode_images(
    images: Any,
    model: ImageModelLike = "resnet50-l40",
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
    batch_size: int | None = None,
    progress: bool | None = None,
    units: str = "auto",
) -> np.ndarray | Tensor:
    """SatCLIP image embeddings, shape ``(B, embed_dim)`` (256 for the released models).

    Parameters
    ----------
    images:
        A NumPy array or torch tensor ``(B, 12, H, W)`` / ``(B, 13, H, W)`` (or one ``(C, H, W)``
        image) of Sentinel-2 L2A values, or a path / sequence of paths to GeoTIFF patches.
        See the module notes for bands, units and image sizes.
    model:
        A short name (``"resnet50-l40"``), Hub repository, local ``.ckpt``/``.safetensors`` (as
        for :func:`satclip.load`), or an :class:`~satclip.models.image.ImageEncoder`. Names are
        loaded once and cached per (model, device, dtype).
    device:
        Where to compute; default CUDA when available (or the input tensor's CUDA device), else CPU.
    dtype:
        ``torch.float32`` (default) or ``torch.float64``.
    batch_size:
        Images per forward pass (default 16 on CPU, 64 on CUDA). Only one batch is converted to
        floating point at a time, and files are read one batch at a time.
    progress:
        A tqdm progress bar on stderr; ``None``: for 64 images or more when stderr is a terminal.
    units:
        ``"auto"`` (default), ``"dn"`` (digital numbers, divided by 10 000) or ``"reflectance"``
        (already divided).

    Returns
    -------
    NumPy array for array and path input; a tensor on the input's device for tensor input.

    Raises
    ------
    ShapeError
        Not 12 or 13 bands (the message says when the array looks channels-last), not 4-D, or
        an image smaller than the ViT's 224 x 224 input.
    ImageError
        NaN/inf or negative digital numbers (naming the image and band), a file that is missing
        or not a 12-band uint16 GeoTIFF.
    DTypeError
        A non-numeric array, or integer values with ``units="reflectance"``.
    CheckpointError
        The model cannot be loaded or has no image encoder.
    """
    from satclip.models.dtypes import check_float_dtype

    dtype = check_float_dtype(dtype)
    if units not in UNITS:
        raise ValueError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
    source = _as_source(images, units)
    from satclip.points.inputs import pick_device

    compute_device = pick_device(device, source.device)
    encoder = _encoder_for(model, compute_device, dtype)
    n = len(source)
    embed_dim = encoder.config.embed_dim
    out: Tensor
    if isinstance(images, Tensor):
        out = torch.empty(n, embed_dim, dtype=dtype, device=source.device)
        result: np.ndarray | Tensor = out
    else:
        result = np.empty((n, embed_dim), dtype=np.float32 if dtype == torch.float32 else np.float64)
        out = torch.from_numpy(result)
    if n == 0:
        return result
    if batch_size is None:
        batch_size = CUDA_BATCH if compute_device.type == "cuda" else CPU_BATCH
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if progress is None:
        progress = n >= _AUTO_PROGRESS_IMAGES and sys.stderr is not None and sys.stderr.isatty()

    from tqdm.auto import tqdm

    with (
        torch.inference_mode(),
        _exact_float32(compute_device),
        tqdm(total=n, unit="img", desc="satclip encode-images", disable=not progress, file=sys.stderr) as bar,
    ):
        for start in range(0, n, int(batch_size)):
            stop = min(start + int(batch_size), n)
            # Files may differ in size; each run of equally sized images is one forward pass.
            for offset, batch in source.batches(start, stop, compute_device, dtype, encoder.input_size):
                out[start + offset : start + offset + batch.shape[0]].copy_(encoder(batch))
            bar.update(stop - start)
    return result


def preprocess(
    batch: Tensor, *, units: str, dtype: torch.dtype = torch.float32, input_size: int | None = None
) -> Tensor:
    """Raw ``(b, 12|13, H, W)`` values -> the ``(b, 13, h, w)`` model input (see the module notes).

    ``units`` is ``"dn"`` or ``"reflectance"`` (already decided); ``input_size`` centre-crops to
    that square (the ViT's input) and refuses smaller images. The division runs in float32
    (float64 for float64 input), as the original computes it; the result is then cast to ``dtype``.
    Written into one preallocated output (crop first, bands copied around the zero B10, divided
    in place), so a batch costs one conversion pass and one division pass.
    """
    height, width = batch.shape[-2:]
    if input_size is not None:
        if height < input_size or width < input_size:
            raise ShapeError(
                f"the ViT-S/16 image encoder needs images of at least {input_size} x {input_size} pixels "
                f"(larger ones are centre-cropped to that), got {height} x {width}"
            )
        top, left = (height - input_size) // 2, (width - input_size) // 2
        # Cropping commutes with the per-pixel steps below, and leaves less to convert.
        batch = batch[:, :, top : top + input_size, left : left + input_size]
    work = torch.float64 if batch.dtype == torch.float64 else torch.float32
    b, c, h, w = batch.shape
    x = torch.empty((b, CHANNELS, h, w), dtype=work, device=batch.device)
    if c == FILE_BANDS:
        x[:, :ZERO_BAND_INDEX].copy_(batch[:, :ZERO_BAND_INDEX])
        x[:, ZERO_BAND_INDEX].zero_()
        x[:, ZERO_BAND_INDEX + 1 :].copy_(batch[:, ZERO_BAND_INDEX:])
    else:
        x.copy_(batch)
    if units == "dn":
        x.div_(QUANTIFICATION)  # float32 division, as the original's float32 / 10000.0
    return x if work == dtype else x.to(dtype)


# ----------------------------------------------------------------------------------------
# Input


class _ArraySource:
    """An in-memory (B, C, H, W) array or tensor, converted to float one batch at a time."""

    def __init__(self, data: np.ndarray | Tensor, units: str):
        self.data = data
        self.units = units
        self.device = data.device if isinstance(data, Tensor) else torch.device("cpu")

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def batches(
        self, start: int, stop: int, device: torch.device, dtype: torch.dtype, input_size: int | None
    ) -> Iterator[tuple[int, Tensor]]:
        chunk = self.data[start:stop]
        if isinstance(chunk, np.ndarray):
            if chunk.dtype.kind == "u" and (
                chunk.dtype.itemsize > 2 or (device.type != "cpu" and chunk.dtype.itemsize > 1)
            ):
                # torch's uint32/uint64 support is partial, and CUDA's uint16 kernels too
                chunk = chunk.astype(np.int32 if chunk.dtype.itemsize == 2 else np.int64)
            elif not chunk.dtype.isnative:
                chunk = chunk.astype(chunk.dtype.newbyteorder("="))
            if any(stride < 0 for stride in chunk.strides):
                chunk = np.ascontiguousarray(chunk)  # torch views cannot have negative strides
            with warnings.catch_warnings():  # read-only input (a memmap): preprocess never writes to it
                warnings.simplefilter("ignore", UserWarning)
                chunk = torch.from_numpy(chunk)  # a view; preprocess converts once, into its output
        yield 0, preprocess(chunk.to(device), units=self.units, dtype=dtype, input_size=input_size)


class _FileSource:
    """GeoTIFF paths, read one batch at a time."""

    device = torch.device("cpu")

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def batches(
        self, start: int, stop: int, device: torch.device, dtype: torch.dtype, input_size: int | None
    ) -> Iterator[tuple[int, Tensor]]:
        arrays = [read_image(p) for p in self.paths[start:stop]]
        run_start = 0
        for i in range(1, len(arrays) + 1):
            if i == len(arrays) or arrays[i].shape != arrays[run_start].shape:
                stack_np = np.stack(arrays[run_start:i])
                if device.type != "cpu":
                    stack_np = stack_np.astype(np.int32)  # CUDA's uint16 kernels are partial
                stack = torch.from_numpy(stack_np)
                try:
                    yield run_start, preprocess(stack.to(device), units="dn", dtype=dtype, input_size=input_size)
                except ShapeError as err:
                    raise ShapeError(f"{self.paths[start + run_start]}: {err}") from None
                run_start = i


def _as_source(images: Any, units: str) -> _ArraySource | _FileSource:
    if isinstance(images, (str, os.PathLike)):
        return _FileSource([os.fspath(images)])
    if isinstance(images, Sequence) and not isinstance(images, (bytes, bytearray)):
        if len(images) > 0 and all(isinstance(p, (str, os.PathLike)) for p in images):
            return _FileSource([os.fspath(p) for p in images])
        if len(images) == 0:
            return _ArraySource(np.zeros((0, CHANNELS, 1, 1), dtype=np.float32), "reflectance")
        raise DTypeError(
            "images must be an array or tensor (B, 12|13, H, W) or a sequence of GeoTIFF paths; "
            f"got a sequence of {type(images[0]).__name__}"
        )
    if isinstance(images, Tensor):
        data: np.ndarray | Tensor = images.detach()
    elif isinstance(images, np.ndarray):
        data = images
    else:
        raise DTypeError(
            f"images must be a NumPy array, a torch tensor, or GeoTIFF path(s), got {type(images).__name__}"
        )
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4:
        raise ShapeError(f"images must have shape (B, 12|13, H, W) or (C, H, W), got {tuple(data.shape)}")
    bands = int(data.shape[1])
    if bands not in (FILE_BANDS, CHANNELS):
        hint = ""
        if int(data.shape[-1]) in (FILE_BANDS, CHANNELS):
            hint = " - it looks channels-last (B, H, W, C); transpose it to (B, C, H, W)"
        raise ShapeError(
            f"images must have 12 Sentinel-2 bands (B01..B12 without B10) or 13 (with B10) on axis 1, "
            f"got shape {tuple(data.shape)}{hint}"
        )
    if int(data.shape[2]) == 0 or int(data.shape[3]) == 0:
        raise ShapeError(f"images have no pixels: shape {tuple(data.shape)}")
    return _ArraySource(data, _decide_units(data, units))


def _decide_units(data: np.ndarray | Tensor, units: str) -> str:
    """Checks the values (finite, non-negative DN) and settles ``"auto"`` (see the module notes).

    Runs over chunks of images, so that the temporary masks stay small for large inputs.
    """
    if isinstance(data, Tensor):
        if data.dtype == torch.bool or data.is_complex():
            raise DTypeError(f"images must hold real numbers, got dtype {data.dtype}")
        kind = "f" if data.is_floating_point() else ("u" if data.dtype in _UNSIGNED else "i")
    else:
        kind = data.dtype.kind
        if kind not in "uif":
            raise DTypeError(f"images must hold real numbers, got dtype {data.dtype}")
    if kind in "ui" and units == "reflectance":
        raise DTypeError(
            f"units='reflectance' but the images are integers ({data.dtype}); integers are digital numbers"
        )
    largest = -np.inf
    for start in range(0, int(data.shape[0]), _CHECK_CHUNK):
        chunk = data[start : start + _CHECK_CHUNK]
        if kind == "i":
            negative = chunk < 0
            if bool(negative.any()):
                b, c = _first_where(negative)
                raise ImageError(
                    f"image {start + b}, band {c}: negative digital number {int(chunk[b, c].min())}; "
                    "Sentinel-2 digital numbers are >= 0"
                )
        elif kind == "f":
            finite = torch.isfinite(chunk) if isinstance(chunk, Tensor) else np.isfinite(chunk)
            if not bool(finite.all()):
                b, c = _first_where(~finite)
                raise ImageError(
                    f"image {start + b}, band {c} holds NaN or infinite values; fill or mask them before encoding"
                )
            largest = max(largest, float(chunk.max()))
    if kind in "ui":
        return "dn"
    if units != "auto":
        return units
    return "dn" if largest > MAX_REFLECTANCE else "reflectance"


_UNSIGNED = tuple(getattr(torch, name) for name in ("uint8", "uint16", "uint32", "uint64") if hasattr(torch, name))
_CHECK_CHUNK = 64


def _first_where(mask: np.ndarray | Tensor) -> tuple[int, int]:
    """(image, band) of the first True of a (b, c, H, W) mask."""
    per_band = mask.reshape(mask.shape[0], mask.shape[1], -1).any(-1)
    index = torch.nonzero(per_band)[0] if isinstance(per_band, Tensor) else np.argwhere(per_band)[0]
    return int(index[0]), int(index[1])


# ----------------------------------------------------------------------------------------
# Model


#: A ResNet50 is ~100 MB: keep few.
_CACHE: LRUCache[tuple[ModelSource, str, torch.dtype], ImageEncoder] = LRUCache(3)


def _encoder_for(model: ImageModelLike, device: torch.device, dtype: torch.dtype) -> ImageEncoder:
    if isinstance(model, ImageEncoder):
        # The user's own module: used as it is if it already lives there, else a copy is moved.
        first = next(model.parameters())
        if first.device == device and first.dtype == dtype:
            return model.eval() if model.training else model
        import copy

        return copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    if isinstance(model, torch.nn.Module):
        raise SatclipError(
            f"model must be a name, a path or a satclip ImageEncoder, got a {type(model).__name__} "
            "(a LocationEncoder has no image half)"
        )
    key = (cache_key(model), str(device), dtype)
    encoder = _CACHE.get(key)
    if encoder is None:
        encoder = load_image_encoder(model, device=device, dtype=dtype)
        _CACHE.put(key, encoder)
    return encoder


@contextlib.contextmanager
def _exact_float32(device: torch.device) -> Iterator[None]:
    """TF32 off on CUDA for the call: TF32 convolutions/matmuls keep only ~10 mantissa bits."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


__all__ = ["MAX_REFLECTANCE", "UNITS", "encode_images", "preprocess", "read_image"]
