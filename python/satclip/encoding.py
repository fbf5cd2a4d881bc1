"""``satclip.encode`` (defined here): location embeddings for many points, fast, with bounded memory.

Design choices (documented in :func:`encode`):

* Return type follows the input: NumPy in -> NumPy out; torch in -> torch out on the input's
  device; lists/tuples and pandas DataFrames -> NumPy (row i is row i of the input).
* The model is loaded once per (source, device, dtype) and kept in a small cache.
* float32 output computes the spherical harmonics and the first SIREN layer in float64 and
  the rest in float32. The first layer multiplies its pre-activation by w0 = 30 before the
  sine, so float32 rounding there would be amplified 30-fold; in float64 it is not, and
  float32 embeddings stay within ~1e-6 (relative) of the float64 ones whatever the weights.
* Points stream through in batches; beyond the output only per-batch buffers are held.
"""

from __future__ import annotations

import copy
import numbers
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import ModelSource, _check_dtype, load, parse_source
from .coords import check_lonlat_tensor
from .errors import CheckpointError, CoordinateError, DTypeError, ShapeError
from .harmonics import as_lonlat_array, spherical_harmonics
from .nn import LocationEncoder, Sine, SirenNet, SphericalHarmonics
from .torch_harmonics import torch_spherical_harmonics

ModelLike = Union[str, "os.PathLike[str]", LocationEncoder]

#: Working memory per batch, beyond the output (bytes). CPU batches are kept cache-friendly;
#: GPU batches are large to keep the device busy, but bounded by its free memory too.
CPU_BATCH_BYTES = 256 << 20
CUDA_BATCH_BYTES = 8 << 30

#: Column names recognised in pandas DataFrames (compared case-insensitively).
LON_NAMES = ("lon", "lng", "long", "longitude", "x")
LAT_NAMES = ("lat", "latitude", "y")

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
        :mod:`satclip.geo_inputs`.
    model:
        A short name (``"resnet50-l40"``, see :data:`satclip.MODELS`), a Hub repository, a
        local ``.ckpt``/``.safetensors`` path, or a :class:`~satclip.nn.LocationEncoder`.
        Names are loaded once and cached per (model, device, dtype).
    device:
        Where to compute; default CUDA when available (or the input tensor's CUDA device),
        else CPU.
    dtype:
        ``torch.float32`` (default) or ``torch.float64``. float32 still computes the spherical
        harmonics and the first layer in float64 (see the module notes).
    batch_size:
        Points per batch; default sized so one batch needs ~256 MiB on CPU, and on CUDA up to
        8 GiB or a quarter of the free device memory, whichever is less.
    progress:
        Show a tqdm progress bar on stderr. ``None``: only for long jobs when stderr is a terminal.

    Returns
    -------
    NumPy array for NumPy, list and pandas input; a tensor on the input's device for torch
    input. Embeddings are computed in inference mode (no dropout, no autograd graph).
    """
    from . import geo_inputs  # GeoPandas, xarray, H3 ids: converted to [lon, lat]; the heavy imports stay lazy

    converted = geo_inputs.convert(lonlat)
    if converted is not None:
        points_in, shape_like_input = converted
        return shape_like_input(encode(points_in, model, device=device, dtype=dtype, batch_size=batch_size, progress=progress))
    dtype = _check_dtype(dtype)
    points, input_device = _as_points(lonlat)
    compute_device = _pick_device(device, input_device)
    runner = _runner_for(model, compute_device, dtype)
    n = points.shape[0]

    output_device = input_device if isinstance(lonlat, Tensor) else torch.device("cpu")
    if isinstance(lonlat, Tensor):
        out_t = torch.empty(n, runner.embed_dim, dtype=dtype, device=output_device)
        result: np.ndarray | Tensor = out_t
    else:
        result = np.empty((n, runner.embed_dim), dtype=np.float32 if dtype == torch.float32 else np.float64)
        out_t = torch.from_numpy(result)
    if n == 0:
        return result

    if batch_size is None:
        batch_size = runner.auto_batch_size()
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = min(int(batch_size), n)
    if progress is None:
        progress = n * runner.L**2 >= _AUTO_PROGRESS_WORK and sys.stderr is not None and sys.stderr.isatty()

    from tqdm.auto import tqdm

    with torch.inference_mode(), tqdm(
        total=n, unit="pt", unit_scale=True, desc="satclip encode", disable=not progress, file=sys.stderr
    ) as bar:
        buffers = runner.buffers(batch_size)
        direct = output_device == compute_device
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = points[start:stop]
            if direct:
                runner.run(batch, buffers, out=out_t[start:stop])
            else:
                out_t[start:stop].copy_(runner.run(batch, buffers, out=None))
            bar.update(stop - start)
    return result


def clear_model_cache() -> None:
    """Forgets the models :func:`encode` has loaded."""
    with _CACHE_LOCK:
        _CACHE.clear()


# ----------------------------------------------------------------------------------------
# Input


def _as_points(lonlat: Any) -> tuple[Tensor, torch.device]:
    """Validated float64 (N, 2) points as a tensor (CPU unless the input was a CUDA tensor)."""
    if isinstance(lonlat, Tensor):
        check_lonlat_tensor(lonlat)
        return lonlat.detach().to(torch.float64).contiguous(), lonlat.device
    index = None
    if _is_dataframe(lonlat):
        index = lonlat.index
        array = _frame_columns(lonlat)
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
    return points, torch.device("cpu")


def _is_dataframe(obj: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def find_lonlat_columns(columns: Sequence[Any], lon: Any = None, lat: Any = None) -> tuple[Any, Any]:
    """The (longitude, latitude) column names among ``columns``: ``lon``/``lat`` when given
    (checked to exist), else found by the common names (case-insensitive)."""
    by_lower: dict[str, list[Any]] = {}
    for c in columns:
        by_lower.setdefault(str(c).strip().lower(), []).append(c)
    found = []
    for axis, given, names in (("longitude", lon, LON_NAMES), ("latitude", lat, LAT_NAMES)):
        if given is not None:
            if given not in columns:
                raise ShapeError(f"no {axis} column {given!r}; the columns are {[str(c) for c in columns]}")
            found.append(given)
            continue
        matches = [c for name in names for c in by_lower.get(name, [])]
        if not matches:
            raise ShapeError(
                f"no {axis} column: looked for {', '.join(names)} (any case) among the columns "
                f"{[str(c) for c in columns]}; name the column explicitly"
            )
        if len(matches) > 1:
            raise ShapeError(f"ambiguous {axis} columns {[str(c) for c in matches]}; name the column explicitly")
        found.append(matches[0])
    if found[0] == found[1]:
        raise ShapeError(f"the same column {found[0]!r} cannot be both longitude and latitude")
    return found[0], found[1]


def _frame_columns(frame: Any, lon: Any = None, lat: Any = None) -> np.ndarray:
    lon, lat = find_lonlat_columns(list(frame.columns), lon, lat)
    columns = []
    for name in (lon, lat):
        column = frame[name]
        kind = getattr(column.dtype, "kind", "O")
        if kind not in "iufb":
            raise DTypeError(f"column {name!r} must hold numbers (degrees), got dtype {column.dtype}")
        columns.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.stack(columns, axis=1)


# ----------------------------------------------------------------------------------------
# Device and model


def _pick_device(device: torch.device | str | None, input_device: torch.device) -> torch.device:
    if device is None:
        if input_device.type == "cuda":
            return input_device
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"not a device: {device!r} ({err})") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available here")
    if chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"satclip encodes on 'cpu' or 'cuda', got {device!r}")
    if chosen.type == "cuda" and chosen.index is None:
        # "cuda" and "cuda:0" must compare equal to a tensor's device (cuda:0) later on.
        chosen = torch.device("cuda", torch.cuda.current_device())
    return chosen


_CACHE: OrderedDict[tuple[ModelSource, str, torch.dtype], _SirenRunner | _ModuleRunner] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def _runner_for(model: ModelLike, device: torch.device, dtype: torch.dtype) -> _SirenRunner | _ModuleRunner:
    if isinstance(model, nn.Module):
        # A model the user holds may change between calls, so it is not cached.
        return _make_runner(model, device, dtype)
    source = parse_source(model)
    key = (source, str(device), dtype)
    if source.kind == "file":
        stat = os.stat(source.location)
        key = (ModelSource("file", source.location, str(stat.st_mtime_ns), str(stat.st_size)), str(device), dtype)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    runner = _make_runner(load(model), device, dtype)
    with _CACHE_LOCK:
        _CACHE[key] = runner
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
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
    """Inference for the SH + SIREN encoder with preallocated buffers, writing into the output.

    Evaluates exactly ``nnet(posenc(x))``: ``sin(w0 * (x W^T + b))`` per hidden layer, then
    ``x W^T + b``. The features and the first layer are float64 (see the module notes).
    """

    def __init__(self, model: LocationEncoder, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self.L, self.basis = model.posenc.L, model.posenc.basis
        self.embed_dim = model.nnet.last_layer.dim_out
        self.hidden = model.nnet.dim_hidden
        layers = [*model.nnet.layers, model.nnet.last_layer]
        self.weights: list[tuple[Tensor, Tensor, float]] = []
        for i, layer in enumerate(layers):
            layer_dtype = torch.float64 if i == 0 else dtype
            w0 = float(layer.activation.w0) if isinstance(layer.activation, Sine) else 1.0
            self.weights.append(
                (
                    # Transposed once here so that every batch is a plain addmm.
                    layer.weight.detach().to(device=device, dtype=layer_dtype).t(),
                    layer.bias.detach().to(device=device, dtype=layer_dtype),
                    w0,
                )
            )

    def bytes_per_point(self) -> int:
        # The features (N, L*L) float64, plus on CUDA the torch SH's per-degree temporaries
        # (O(N L), but allow one more (N, L*L) for the allocator's slack).
        features = 8 * self.L**2 * (2 if self.device.type == "cuda" else 1)
        itemsize = 4 if self.dtype == torch.float32 else 8
        return 16 + features + 8 * self.hidden + 2 * itemsize * self.hidden + itemsize * self.embed_dim

    def auto_batch_size(self) -> int:
        budget = CPU_BATCH_BYTES
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = min(CUDA_BATCH_BYTES, free // 4)
        return max(256, budget // self.bytes_per_point())

    def buffers(self, batch_size: int) -> dict[str, Tensor]:
        def empty(cols: int, dtype: torch.dtype) -> Tensor:
            return torch.empty(batch_size, cols, dtype=dtype, device=self.device)

        buffers = {"first": empty(self.hidden, torch.float64), "out": empty(self.embed_dim, self.dtype)}
        if self.device.type == "cpu":
            buffers["features"] = empty(self.L**2, torch.float64)
        buffers["hidden"] = empty(self.hidden, self.dtype)
        buffers["hidden2"] = empty(self.hidden, self.dtype)
        return buffers

    def run(self, lonlat: Tensor, buffers: dict[str, Tensor], out: Tensor | None) -> Tensor:
        n = lonlat.shape[0]
        if self.device.type == "cpu":
            features = buffers["features"][:n]
            # The Rust core writes straight into the buffer's memory (a NumPy view of it).
            spherical_harmonics(lonlat.cpu().numpy(), self.L, basis=self.basis, out=features.numpy())
        else:
            features = torch_spherical_harmonics(lonlat.to(self.device, non_blocking=True), self.L, self.basis)

        weight, bias, w0 = self.weights[0]
        x = torch.addmm(bias, features, weight, out=buffers["first"][:n])
        _sine_(x, w0)
        if self.dtype != torch.float64:
            x = buffers["hidden"][:n].copy_(x)
        spare = buffers["hidden2"][:n] if x.data_ptr() == buffers["hidden"].data_ptr() else buffers["hidden"][:n]
        for weight, bias, w0 in self.weights[1:-1]:
            y = torch.addmm(bias, x, weight, out=spare)
            _sine_(y, w0)
            x, spare = y, x
        weight, bias, _ = self.weights[-1]
        target = out if out is not None else buffers["out"][:n]
        return torch.addmm(bias, x, weight, out=target)


def _sine_(x: Tensor, w0: float) -> None:
    if w0 != 1.0:  # sin(1 * z) is sin(z) exactly; skip the pass over memory
        x.mul_(w0)
    x.sin_()


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

    def buffers(self, batch_size: int) -> dict[str, Tensor]:
        return {}

    def run(self, lonlat: Tensor, buffers: dict[str, Tensor], out: Tensor | None) -> Tensor:
        result = self.model(lonlat.to(self.device)).to(self.dtype)
        if out is None:
            return result
        return out.copy_(result)


__all__ = ["encode", "clear_model_cache", "find_lonlat_columns", "LON_NAMES", "LAT_NAMES"]
