"""``satclip.encode`` (defined here): location embeddings for many points, fast, with bounded memory.

Design choices (documented in :func:`encode`):

* Return type follows the input: NumPy in -> NumPy out; torch in -> torch out on the input's
  device; lists/tuples and pandas DataFrames -> NumPy (row i is row i of the input).
* The model is loaded once per (source, device, dtype) and kept in a small cache.
* float32 output is float32 end to end after the features, which are exact SH rounded once
  to float32. The first layer's w0 = 30 amplifies that rounding, but measured the embeddings
  stay within ~1e-6 relative of float64 (bound tested: 2e-5), while a float64 first GEMM over
  L*L features cost more than the whole rest of the network. float64 is float64 throughout.
* Points stream through in fixed-size chunks (see
  :class:`~satclip.embed.runners.SirenRunner`); beyond the output only per-chunk buffers are
  held, and results do not depend on ``batch_size``.
* The runners (:mod:`satclip.embed.runners`) execute a model; the dtype policy is
  :func:`satclip.models.dtypes.encode_dtype`.
"""

from __future__ import annotations

import numbers
import os
import sys
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from satclip.embed.runners import AUTO_PROGRESS_WORK, EncoderRunner, Runner, make_runner, run_via_pinned
from satclip.io.checkpoint import load
from satclip.models.dtypes import encode_dtype
from satclip.models.location import LocationEncoder
from satclip.models.registry import ModelSource, cache_key
from satclip.points.columns import LAT_NAMES, LON_NAMES, find_lonlat_columns
from satclip.points.inputs import as_points, pick_device
from satclip.runtime.caches import LRUCache

ModelLike = Union[str, "os.PathLike[str]", LocationEncoder]


def encode(
    lonlat: Any,
    model: ModelLike = "resnet50-l40",
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> np.ndarray | Tensor:
    """SatCLIP location embeddings of ``lonlat``, shape ``(N, embed_dim)`` (256 for released models).

    Parameters
    ----------
    lonlat:
        Points as ``[lon, lat]`` in degrees: a NumPy array or torch tensor of shape (N, 2), a
        list of pairs, or a pandas DataFrame with longitude/latitude columns (named ``lon``,
        ``lng``, ``long``, ``longitude`` or ``x`` / ``lat``, ``latitude`` or ``y``, any case).
        With the ``geo`` extra also a GeoDataFrame/GeoSeries (any CRS), an xarray DataArray or
        Dataset with lon/lat coordinates (returns a DataArray) or H3 cell ids; see
        :mod:`satclip.points.geo`.
    model:
        A short name (``"resnet50-l40"``, see :data:`satclip.MODELS`), a Hub repository, a
        local ``.ckpt``/``.safetensors`` path, or a :class:`~satclip.models.location.LocationEncoder`.
        Names are loaded once and cached per (model, device, dtype). Also other location
        encoders (:mod:`satclip.models.encoders`): the built-ins ``"geoclip"``, ``"sh-L10"``,
        ``"sh-L40"``, ``"wrap"``, ``"cartesian3d"``, ``"lonlat"``, and any ``torch.nn.Module`` or
        callable mapping ``(N, 2)`` ``[lon, lat]`` degrees to ``(N, D)``.
    device:
        Where to compute; default CUDA when available (or the input tensor's CUDA device),
        else CPU.
    dtype:
        ``torch.float32`` (default): the spherical harmonics are evaluated exactly (float64) and
        rounded once to float32, then the network runs in float32 (within 2e-5 relative of
        float64; measured figures in docs/explanations/precision.md). ``torch.float64``: float64 throughout, the
        bit-faithful path to the original. On CUDA also ``torch.bfloat16`` / ``torch.float16``
        (float32 features, GEMMs in reduced precision; NumPy results are then float32).
    batch_size:
        Points per batch on CUDA (each batch's lon/lat in and embeddings out are the host <->
        device transfers; default 16 chunks of 65,536 points). On CPU a SatCLIP model's points go
        through in fixed-size chunks shared out to one worker per torch thread
        (``torch.get_num_threads()``), and ``batch_size`` only paces other models. Results never
        depend on it.
    progress:
        Show a tqdm progress bar on stderr. ``None``: only for long jobs when stderr is a terminal.

    Returns
    -------
    NumPy array for NumPy, list and pandas input; a tensor on the input's device for torch
    input. Embeddings are computed in inference mode (no dropout, no autograd graph).
    """
    from satclip.points import (
        geo as geo_inputs,  # GeoPandas, xarray, H3 ids: converted to [lon, lat]; the heavy imports stay lazy
    )

    converted = geo_inputs.convert(lonlat)
    if converted is not None:
        points_in, shape_like_input = converted
        if isinstance(shape_like_input, geo_inputs.GridWrap):  # 1-D lon x lat: the separable grid path
            from satclip.embed.grid import encode_wrapped_grid

            return encode_wrapped_grid(
                shape_like_input, points_in, model, device=device, dtype=dtype, progress=progress
            )
        return shape_like_input(
            encode(points_in, model, device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        )
    points, input_device = as_points(lonlat)
    compute_device = pick_device(device, input_device)
    dtype = encode_dtype(dtype, compute_device)
    runner = runner_for(model, compute_device, dtype)
    n = points.shape[0]

    output_device = input_device if isinstance(lonlat, Tensor) else torch.device("cpu")
    if isinstance(lonlat, Tensor):
        out_t = torch.empty(n, runner.embed_dim, dtype=dtype, device=output_device)
        result: np.ndarray | Tensor = out_t
    else:
        # NumPy has no bfloat16: reduced-precision modes return float32 arrays.
        result = np.empty((n, runner.embed_dim), dtype=np.float64 if dtype == torch.float64 else np.float32)
        out_t = torch.from_numpy(result)
    if n == 0:
        return result

    if batch_size is None:
        batch_size = runner.auto_batch_size()
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = min(runner.align_batch_size(int(batch_size)), n)
    if progress is None:
        progress = n * runner.L**2 >= AUTO_PROGRESS_WORK and sys.stderr is not None and sys.stderr.isatty()

    from tqdm.auto import tqdm

    with (
        torch.inference_mode(),
        tqdm(total=n, unit="pt", unit_scale=True, desc="satclip encode", disable=not progress, file=sys.stderr) as bar,
    ):
        direct = output_device == compute_device and out_t.dtype == dtype
        if direct and compute_device.type == "cpu" and runner.chunked:
            # One call for everything: the workers share out the chunks of the whole input, so
            # batch_size does not matter here (memory is per chunk; progress moves per chunk).
            runner.run(points, runner.buffers(n), out=out_t, progress=bar.update)
            return result
        buffers = runner.buffers(batch_size)
        if compute_device.type == "cuda" and output_device.type == "cpu":
            run_via_pinned(runner, points, buffers, out_t, batch_size, bar.update)
            return result
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = points[start:stop]
            if direct:
                runner.run(batch, buffers, out=out_t[start:stop], progress=bar.update)
            else:
                out_t[start:stop].copy_(runner.run(batch, buffers, out=None))
                bar.update(stop - start)
    return result


# ----------------------------------------------------------------------------------------
# Model cache


_CACHE: LRUCache[tuple[ModelSource, str, torch.dtype], Runner] = LRUCache(8)


def runner_for(model: ModelLike, device: torch.device, dtype: torch.dtype) -> Runner:
    """The :class:`~satclip.embed.runners.Runner` of ``model`` on ``device`` in ``dtype``: named
    models (short names, Hub repositories, checkpoint paths, built-in encoders) come from the
    model cache, loaded on first use; objects the user holds get a fresh runner each call."""
    from satclip.models import encoders  # built-in encoders and any (N, 2) -> (N, D) module or callable

    # Models the user holds may change between calls, so they are not cached.
    if isinstance(model, LocationEncoder):
        return make_runner(model, device, dtype)
    if callable(model) and not isinstance(model, (str, os.PathLike)):  # any other module or callable
        return EncoderRunner(model, device, dtype)
    if encoders.is_unknown_name(model):
        raise encoders.unknown_encoder(str(model))
    builtin = encoders.builtin_key(model)
    if builtin is not None:
        builtin_key = (("encoder", *builtin), str(device), dtype)
        cached = _CACHE.get(builtin_key)  # type: ignore[arg-type]
        if cached is None:
            cached = EncoderRunner(encoders.builtin_encoder(str(model)), device, dtype, owned=True)
            _CACHE.put(builtin_key, cached)  # type: ignore[arg-type]
        return cached
    key = (cache_key(model), str(device), dtype)
    runner = _CACHE.get(key)
    if runner is None:
        runner = make_runner(load(model), device, dtype)
        _CACHE.put(key, runner)
    return runner


__all__ = ["LAT_NAMES", "LON_NAMES", "encode", "find_lonlat_columns", "runner_for"]
