"""``satclip.encode`` (defined here): location embeddings for many points, fast, with bounded memory.

Design choices (documented in :func:`encode`):

* Return type follows the input: NumPy in -> NumPy out; torch in -> torch out on the input's
  device; lists/tuples and pandas DataFrames -> NumPy (row i is row i of the input).
* The model is loaded once per (source, device, dtype) and kept in a small cache.
* float32 output is float32 end to end after the features, which are exact SH rounded once
  to float32. The first layer's w0 = 30 amplifies that rounding, but measured the embeddings
  stay within ~1e-6 relative of float64 (bound tested: 2e-5), while a float64 first GEMM over
  L*L features cost more than the whole rest of the network. float64 is float64 throughout.
* Points stream through in fixed, cache-sized chunks (see ``_SirenRunner``); beyond the output
  only per-chunk buffers are held, and results do not depend on ``batch_size``.
"""

from __future__ import annotations

import copy
import numbers
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from satclip.embed.dtypes import check_float_dtype
from satclip.errors import CheckpointError, DTypeError, EncoderError
from satclip.harmonics import triton_kernel as triton_harmonics
from satclip.harmonics.torch_values import torch_spherical_harmonics
from satclip.harmonics.values import spherical_harmonics
from satclip.io.checkpoint import load
from satclip.models.location import LocationEncoder, Sine, SirenNet, SphericalHarmonics
from satclip.models.registry import ModelSource, cache_key
from satclip.points.columns import LAT_NAMES, LON_NAMES, find_lonlat_columns
from satclip.points.inputs import as_points, pick_device
from satclip.runtime.caches import LRUCache
from satclip.runtime.workers import share_out

ModelLike = Union[str, "os.PathLike[str]", LocationEncoder]

#: Working memory per batch, beyond the output (bytes). CPU batches are kept cache-friendly;
#: GPU batches are large to keep the device busy, but bounded by its free memory too.
CPU_BATCH_BYTES = 256 << 20
CUDA_BATCH_BYTES = 8 << 30

#: Progress bars are shown automatically (stderr is a terminal) when N * L^2 exceeds this:
#: about two seconds of work on a laptop CPU.
_AUTO_PROGRESS_WORK = 100_000_000


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
        float64; measured figures in the README). ``torch.float64``: float64 throughout, the
        bit-faithful path to the original. On CUDA also ``torch.bfloat16`` / ``torch.float16``
        (float32 features, GEMMs in reduced precision; NumPy results are then float32).
    batch_size:
        Points per batch on CUDA (each batch's lon/lat in and embeddings out are the host <->
        device transfers; default 16 chunks of 65,536 points). On CPU a SatCLIP model's points go
        through in fixed cache-sized chunks shared out to one worker per torch thread
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
    dtype = _encode_dtype(dtype, compute_device)
    runner = _runner_for(model, compute_device, dtype)
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
        progress = n * runner.L**2 >= _AUTO_PROGRESS_WORK and sys.stderr is not None and sys.stderr.isatty()

    from tqdm.auto import tqdm

    with (
        torch.inference_mode(),
        tqdm(total=n, unit="pt", unit_scale=True, desc="satclip encode", disable=not progress, file=sys.stderr) as bar,
    ):
        direct = output_device == compute_device and out_t.dtype == dtype
        if direct and compute_device.type == "cpu" and isinstance(runner, _SirenRunner):
            # One call for everything: the workers share out the chunks of the whole input, so
            # batch_size does not matter here (memory is per chunk; progress moves per chunk).
            runner.run(points, runner.buffers(n), out=out_t, progress=bar.update)
            return result
        buffers = runner.buffers(batch_size)
        if compute_device.type == "cuda" and output_device.type == "cpu":
            _encode_via_pinned(runner, points, buffers, out_t, batch_size, bar)
            return result
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = points[start:stop]
            if direct:
                runner.run(batch, buffers, out=out_t[start:stop])
            else:
                out_t[start:stop].copy_(runner.run(batch, buffers, out=None))
            bar.update(stop - start)
    return result


def _encode_via_pinned(
    runner: _SirenRunner | _ModuleRunner | _EncoderRunner,
    points: Tensor,
    buffers: list[dict[str, Tensor]],
    out: Tensor,
    batch: int,
    bar: Any,
) -> None:
    """Host data through a CUDA runner with the copies overlapped with compute.

    Two pinned staging slots for lon/lat in and embeddings out: while the GPU computes batch k
    (queued asynchronously: pinned -> device copy, kernels, device -> pinned copy), the host
    copies batch k-1's finished embeddings from its slot into the result. An event per slot
    says when its device -> host copy is done, which also means its input slot is free again.
    """
    n = points.shape[0]
    slots_in = [torch.empty(batch, 2, dtype=points.dtype, pin_memory=True) for _ in range(2)]
    slots_out = [torch.empty(batch, out.shape[1], dtype=runner.dtype, pin_memory=True) for _ in range(2)]
    pending: list[tuple[torch.cuda.Event, int, int] | None] = [None, None]

    def drain(k: int) -> None:
        done = pending[k]
        if done is not None:
            event, start, stop = done
            event.synchronize()
            out[start:stop].copy_(slots_out[k][: stop - start])
            bar.update(stop - start)
            pending[k] = None

    for i, start in enumerate(range(0, n, batch)):
        k = i % 2
        stop = min(start + batch, n)
        drain(k)
        staged = slots_in[k][: stop - start]
        staged.copy_(points[start:stop])
        result = runner.run(staged.to(runner.device, non_blocking=True), buffers, out=None)
        slots_out[k][: stop - start].copy_(result, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        pending[k] = (event, start, stop)
    last = ((n - 1) // batch) % 2
    drain(1 - last)  # the older batch first, so the progress bar moves in order
    drain(last)


def _encode_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """float32/float64 anywhere; bfloat16/float16 on CUDA only (CPU GEMMs gain nothing from them)."""
    reduced = {"bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16}
    if isinstance(dtype, str):
        dtype = reduced.get(dtype.removeprefix("torch."), dtype)  # type: ignore[arg-type]
    if dtype in (torch.bfloat16, torch.float16):
        if device.type != "cuda":
            raise DTypeError(f"dtype {dtype} is for CUDA encoding; on CPU use torch.float32 or torch.float64")
        return dtype  # type: ignore[return-value]
    return check_float_dtype(dtype)


def clear_model_cache() -> None:
    """Forgets the models :func:`encode` has loaded."""
    _CACHE.clear()


# ----------------------------------------------------------------------------------------
# Model


_CACHE: LRUCache[tuple[ModelSource, str, torch.dtype], _SirenRunner | _ModuleRunner | _EncoderRunner] = LRUCache(8)


def _runner_for(
    model: ModelLike, device: torch.device, dtype: torch.dtype
) -> _SirenRunner | _ModuleRunner | _EncoderRunner:
    from satclip.models import encoders  # built-in encoders and any (N, 2) -> (N, D) module or callable

    # Models the user holds may change between calls, so they are not cached.
    if isinstance(model, LocationEncoder):
        return _make_runner(model, device, dtype)
    if callable(model) and not isinstance(model, (str, os.PathLike)):  # any other module or callable
        return _EncoderRunner(model, device, dtype)
    if encoders.is_unknown_name(model):
        raise encoders.unknown_encoder(str(model))
    builtin = encoders.builtin_key(model)
    if builtin is not None:
        builtin_key = (("encoder", *builtin), str(device), dtype)
        cached = _CACHE.get(builtin_key)  # type: ignore[arg-type]
        if cached is None:
            cached = _EncoderRunner(encoders.builtin_encoder(str(model)), device, dtype, owned=True)
            _CACHE.put(builtin_key, cached)  # type: ignore[arg-type]
        return cached
    key = (cache_key(model), str(device), dtype)
    runner = _CACHE.get(key)
    if runner is None:
        runner = _make_runner(load(model), device, dtype)
        _CACHE.put(key, runner)
    return runner


def _make_runner(model: nn.Module, device: torch.device, dtype: torch.dtype) -> _SirenRunner | _ModuleRunner:
    if isinstance(model, LocationEncoder) and _is_plain_siren(model):
        return _SirenRunner(model, device, dtype)
    if isinstance(model, LocationEncoder) and isinstance(model.posenc, SphericalHarmonics):
        return _ModuleRunner(model, device, dtype)
    raise CheckpointError(
        f"encode needs a model name, a checkpoint path or a satclip LocationEncoder, got {type(model).__name__}"
    )


def _is_plain_siren(model: LocationEncoder) -> bool:
    nnet = model.nnet
    return (
        isinstance(model.posenc, SphericalHarmonics)
        and type(nnet) is SirenNet
        and all(type(layer.activation) is Sine and layer.bias is not None for layer in nnet.layers)
        and type(nnet.last_layer.activation) is nn.Identity
        and nnet.last_layer.bias is not None
    )


class _SirenRunner:
    """Inference for the SH + SIREN encoder: a fused, cache-sized pipeline writing into the output.

    The network is the model's own :class:`~satclip.models.location.SirenNet` (cast once to the compute
    dtype), run through :meth:`SirenNet.forward_into`, which equals ``nnet(x)`` bit for bit: there
    is one definition of the SIREN math. What this class adds is the schedule:

    * Points go through in fixed chunks of :attr:`chunk` rows at absolute offsets (multiples of
      the chunk) and the last chunk is padded to full size, so every GEMM has the same shape
      and an embedding does not depend on ``batch_size`` or on how the input was split.
    * On CPU a chunk's features (float32 for float32 output) are written by the Rust core into
      one reused buffer sized to stay in the CPU caches (~1 MiB) and consumed by the first GEMM
      right away; hidden activations live in two reused buffers; the last layer writes into the
      caller's array.
    * Threads (CPU): one worker per torch thread (``torch.get_num_threads()``), each taking a
      contiguous run of whole chunks and doing all of a chunk's work itself - SH on its own
      thread, then single-threaded GEMMs - with its own buffers. Measured on a 2-core machine
      this beats both alternatives: running the Rust core and torch one after the other with
      all cores each (a chunk's GEMM is too small to split well, and every layer pays an OpenMP
      barrier, which collapses when the machine is busy) and splitting the cores between SH and
      GEMM (the SH are ~10% of the work). While the workers run, torch's intra-op threads are
      set to 1 (see :func:`satclip.runtime.workers.one_torch_thread`). A single-threaded GEMM of a fixed shape gives
      the same bits whichever worker runs it, so results do not depend on the thread count.
    """

    #: Target size of one chunk's features, bytes: L2-sized so the first GEMM reads them from cache.
    CHUNK_FEATURE_BYTES = 1 << 20

    def __init__(self, model: LocationEncoder, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self.L, self.basis = model.posenc.L, model.posenc.basis
        self.nnet: SirenNet = copy.deepcopy(model.nnet).to(device=device, dtype=dtype).eval()
        self.embed_dim = self.nnet.last_layer.dim_out
        self.hidden = self.nnet.dim_hidden
        # Features are computed in float32 or float64 (reduced-precision modes on CUDA round
        # float32 features when they enter the first GEMM).
        self.feature_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        if device.type == "cpu":
            rows = self.CHUNK_FEATURE_BYTES // (self.L**2 * _itemsize(self.feature_dtype))
            self.chunk = int(min(4096, max(256, rows)) // 64 * 64)
        else:
            self.chunk = 1 << 16  # large GEMMs keep the GPU busy; the features are on the device

    def auto_batch_size(self) -> int:
        # Batches pace the host<->device copies on CUDA (memory is per chunk); on CPU encode runs
        # the whole input in one call and the workers share out its chunks.
        if self.device.type == "cuda":
            return 16 * self.chunk
        return 64 * self.chunk

    def align_batch_size(self, batch_size: int) -> int:
        """Batches start at multiples of the chunk so every chunk sits at the same offsets."""
        return -(-batch_size // self.chunk) * self.chunk

    def buffers(self, batch_size: int) -> list[dict[str, Tensor]]:
        """One set of chunk buffers per worker (one worker on CUDA)."""
        c = self.chunk
        chunks = -(-batch_size // c)
        workers = min(torch.get_num_threads(), chunks) if self.device.type == "cpu" else 1

        def empty(cols: int, dtype: torch.dtype) -> Tensor:
            return torch.empty(c, cols, dtype=dtype, device=self.device)

        return [
            {
                "lonlat": torch.zeros(c, 2, dtype=torch.float64, device=self.device),
                "features": empty(self.L**2, self.feature_dtype),
                "hidden": empty(self.hidden, self.dtype),
                "hidden2": empty(self.hidden, self.dtype),
                "out": empty(self.embed_dim, self.dtype),
            }
            for _ in range(max(1, workers))
        ]

    def _features(self, lonlat: Tensor, buffers: dict[str, Tensor]) -> Tensor:
        features = buffers["features"]
        if self.device.type == "cpu":
            # The Rust core evaluates in float64 and rounds once into the float32 buffer.
            spherical_harmonics(lonlat.numpy(), self.L, basis=self.basis, out=features.numpy())
            return features
        if self.feature_dtype == torch.float32 and triton_harmonics.available(lonlat):
            triton_harmonics.spherical_harmonics(lonlat, self.L, basis=self.basis, out=features)
        else:
            features.copy_(torch_spherical_harmonics(lonlat.to(torch.float64), self.L, self.basis))
        return features if self.dtype in (torch.float32, torch.float64) else features.to(self.dtype)

    def run(
        self,
        lonlat: Tensor,
        buffers: list[dict[str, Tensor]],
        out: Tensor | None,
        progress: Callable[[int], object] | None = None,
    ) -> Tensor:
        """Embeddings of ``lonlat`` (into ``out`` if given); ``progress(rows)`` is called on the
        calling thread as chunks finish."""
        n, c = lonlat.shape[0], self.chunk
        if out is None:
            out = torch.empty(n, self.embed_dim, dtype=self.dtype, device=self.device)
        lonlat = lonlat.to(self.device, non_blocking=True)
        workers = min(len(buffers), -(-n // c))

        def work(starts: Iterator[int], count: Callable[[int], object], worker: int) -> None:
            self._run_chunks(lonlat, starts, buffers[worker], out, count)

        share_out(work, range(0, n, c), workers, progress, cpu=self.device.type == "cpu")
        return out

    def _run_chunks(
        self,
        lonlat: Tensor,
        starts: Iterator[int],
        buffers: dict[str, Tensor],
        out: Tensor,
        progress: Callable[[int], object],
    ) -> None:
        """The chunks of ``lonlat`` beginning at ``starts`` (multiples of the chunk) into ``out``."""
        c, n = self.chunk, lonlat.shape[0]
        hidden = (buffers["hidden"], buffers["hidden2"])
        with torch.inference_mode():  # thread-local: workers must enter it themselves
            for start in starts:
                stop = min(start + c, n)
                if stop - start == c:
                    chunk_in, chunk_out = lonlat[start:stop], out[start:stop]
                else:  # the tail: padded to a full chunk (zeros are valid points) so shapes stay fixed
                    chunk_in = buffers["lonlat"]
                    chunk_in[: stop - start].copy_(lonlat[start:stop])
                    chunk_in[stop - start :].zero_()
                    chunk_out = buffers["out"]
                features = self._features(chunk_in, buffers)
                self.nnet.forward_into(features, hidden, chunk_out)
                if chunk_out is buffers["out"]:
                    out[start:stop].copy_(chunk_out[: stop - start])
                progress(stop - start)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class _ModuleRunner:
    """Fallback for encoders whose network is not the plain SIREN: call the module itself."""

    def __init__(self, model: LocationEncoder, device: torch.device, dtype: torch.dtype):
        self.model = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        self.device, self.dtype = device, dtype
        self.L = model.posenc.L
        with torch.inference_mode():
            probe = self.model(torch.zeros(1, 2, dtype=torch.float64, device=device))
        self.embed_dim = int(probe.shape[1])

    def auto_batch_size(self) -> int:
        return max(256, CPU_BATCH_BYTES // (8 * (self.L**2 + 4 * 1024)))

    def align_batch_size(self, batch_size: int) -> int:
        return batch_size

    def buffers(self, batch_size: int) -> list[dict[str, Tensor]]:
        return [{}]

    def run(self, lonlat: Tensor, buffers: list[dict[str, Tensor]], out: Tensor | None) -> Tensor:
        result = self.model(lonlat.to(self.device)).to(self.dtype)
        if out is None:
            return result
        return out.copy_(result)


class _EncoderRunner:
    """Any location encoder that is not a SatCLIP model: a built-in (:mod:`satclip.models.encoders`), a
    ``torch.nn.Module`` or a callable mapping ``(N, 2)`` ``[lon, lat]`` degrees to ``(N, D)``.

    A module is moved to the device and dtype (on a copy, unless it is there already or ``owned``);
    built-ins marked ``takes_float64`` get the float64 points, others the points in the compute
    dtype. Every output is checked for its shape (:class:`~satclip.errors.EncoderError`)."""

    def __init__(self, encoder: Any, device: torch.device, dtype: torch.dtype, *, owned: bool = False):
        from satclip.models.encoders import call_encoder, label

        self.device, self.dtype = device, dtype
        self.name = label(encoder)
        self._call = call_encoder
        if isinstance(encoder, nn.Module):
            tensors = [*encoder.parameters(), *encoder.buffers()]
            placed = all(t.device == device and (t.dtype == dtype or not t.is_floating_point()) for t in tensors)
            if not placed:
                encoder = (encoder if owned else copy.deepcopy(encoder)).to(device=device, dtype=dtype)
            encoder.eval()
        self.encoder = encoder
        self.input_dtype = torch.float64 if getattr(encoder, "takes_float64", False) else dtype
        #: Work per point for the automatic progress bar (as L^2 of a SatCLIP model).
        self.L = 100 if hasattr(encoder, "capsules") else 32
        with torch.inference_mode():
            probe = self.run(torch.zeros(1, 2, dtype=torch.float64, device=device), [{}], out=None)
        self.embed_dim = int(probe.shape[1])

    def auto_batch_size(self) -> int:
        return 1 << 16

    def align_batch_size(self, batch_size: int) -> int:
        return batch_size

    def buffers(self, batch_size: int) -> list[dict[str, Tensor]]:
        return [{}]

    def run(self, lonlat: Tensor, buffers: list[dict[str, Tensor]], out: Tensor | None) -> Tensor:
        points = lonlat.to(device=self.device, dtype=self.input_dtype)
        result = self._call(self.encoder, points, self.name)
        result = result.to(device=self.device, dtype=self.dtype)
        if out is None:
            return result
        if out.shape != result.shape:
            raise EncoderError(
                f"encoder {self.name} returned {result.shape[1]} columns here but {out.shape[1]} before; "
                "an encoder must give every point the same number of features"
            )
        return out.copy_(result)


__all__ = ["LAT_NAMES", "LON_NAMES", "clear_model_cache", "encode", "find_lonlat_columns"]
