"""``satclip.encode_grid``: embeddings of a lon x lat product grid through the separable path.

On a product grid the spherical harmonics factor, and so does the first SIREN layer, which is
most of the work at L = 40. With ``theta = lat + 90``, ``phi = lon + 180`` (docs/explanations/harmonics.md,
"Definition") a feature is ``Y_lm = Q_l|m|(theta) T_m(phi)``, where
``Q_l|m| = c_lm P_l^|m|(cos theta)`` and ``T_m`` is ``cos(m phi)`` (m > 0), ``sin(|m| phi)``
(m < 0) or 1 (m = 0). The first layer ``z_j = b_j + sum_lm W_j,lm Y_lm`` is then

    z_j = b_j + sum_m T_m(phi) A_jm(theta),    A_jm(theta) = sum_l W_j,lm Q_l|m|(theta),

so a grid row (one latitude) costs ``hidden * L^2`` multiply-adds once for ``A`` and each of its
cells ``hidden * (2L - 1)`` instead of ``hidden * L^2``; the cells of a row go through the first
layer as one GEMM ``T (cells x (2L-1)) @ A (2L-1 x hidden)``. The other layers are the model's
own (:meth:`~satclip.models.location.Siren.forward_into`), as in :func:`satclip.encode`.

* ``Q`` is the Rust core's own float64 feature at ``phi = 0`` (``cos(m 0) = 1``; the sine columns
  share ``Q_l|m|`` with the cosine columns), so both bases come out right with no second
  definition of the normalisation. ``A`` is computed in float64 from the network's weights (one
  batched GEMM per block of :data:`ROW_BLOCK` latitudes, padded to a fixed shape) and rounded
  once to the compute dtype; ``T`` is float64 ``cos``/``sin`` rounded once.
* Cells go through in segments of a fixed number of longitudes (the last segment of a row is
  moved back to end at the row's end, overlapping the one before; a row narrower than a segment
  is padded), so every GEMM has the same shape whatever the grid. Row blocks are shared out to
  one worker per torch thread, each running single-threaded GEMMs (as :func:`satclip.encode`
  does), so the bits do not depend on the thread count or on how the rows are split.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from satclip.embed.locations import ModelLike, runner_for
from satclip.embed.runners import AUTO_PROGRESS_WORK, SirenRunner
from satclip.errors import CoordinateError, DTypeError, ShapeError
from satclip.harmonics.values import spherical_harmonics
from satclip.models.dtypes import check_float_dtype
from satclip.models.location import Sine, Siren
from satclip.points.inputs import pick_device
from satclip.runtime.workers import share_out

#: Latitudes whose ``A`` is computed together (one batched GEMM of a fixed shape; a grid's last
#: block is padded). Also the unit of work a thread takes.
ROW_BLOCK = 16
#: Longitudes per first-layer GEMM on CPU (hidden activations of 240 x 256 float32 = 240 KiB
#: stay in L2; 240 divides the widths of global grids at 0.25, 0.1, 0.05 ... degrees, so their
#: rows need no overlapping last segment) and on CUDA (where rows of a block are batched too).
SEGMENT_CPU = 240
SEGMENT_CUDA = 4096


def encode_grid(
    lon: Any,
    lat: Any,
    model: ModelLike = "resnet50-l40",
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
    progress: bool | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Embeddings of every ``(lon[j], lat[i])``, shape ``(len(lat), len(lon), embed_dim)`` (NumPy).

    The same embeddings as ``satclip.encode`` of the grid's points, computed through the
    separable form of the spherical harmonics and the first layer (see :mod:`satclip.embed.grid`):
    about 4x faster at L = 40 on CPU (figures in docs/benchmarks.md, "Embedding grids").

    Parameters
    ----------
    lon, lat:
        1-D sequences of degrees, lon in [-180, 360] and lat in [-90, 90], in any order and with
        any spacing (the grid is their outer product; poles and both ends of the antimeridian
        are fine). A longitude in (180, 360] is the meridian ``lon - 360``: a grid stored as
        0..360 (ERA5, CMIP) gives, cell for cell, the bits of the same grid written as -180..180.
    model, device:
        As for :func:`satclip.encode`. A model whose network is not the plain spherical
        harmonics + SIREN, and grids too narrow for the separable path to pay (fewer
        longitudes than a fraction of a segment), are encoded point-wise with
        :func:`satclip.encode`.
    dtype:
        ``torch.float32`` (default) or ``torch.float64``. float64 equals point-wise float64
        encode to ~1e-13 relative. float32 agrees with point-wise float32 encode within the
        bound encode states against float64 (2e-5 relative; measured ~1e-6, docs/explanations/precision.md).
    progress:
        tqdm progress bar on stderr (``None``: only for long jobs on a terminal).
    out:
        Optional C-contiguous array of the result's shape and dtype to write into.

    Notes
    -----
    Deterministic: the bits of a cell depend on its lon, lat, the model, dtype and device only,
    not on the thread count, on how the rows are split (``encode_grid`` over a slice of ``lat``
    gives the same rows) nor on the grid's other cells (same fixed-shape, single-threaded GEMMs
    as :func:`satclip.encode`; grids narrow enough to be encoded point-wise follow encode's
    guarantee instead).
    """
    lon_a, lat_a = _axis(lon, "lon", (-180.0, 360.0)), _axis(lat, "lat", (-90.0, 90.0))
    # 0..360 -> [-180, 180), exact; 180 too, so that the antimeridian column of a 0..360 grid has
    # the bits of a -180..180 grid's -180 column (the Rust core gives 180 and -180 the same bits).
    lon_a = np.where(lon_a >= 180.0, lon_a - 360.0, lon_a)
    dtype = check_float_dtype(dtype)
    compute_device = pick_device(device, torch.device("cpu"))
    runner = runner_for(model, compute_device, dtype)
    shape = (lat_a.size, lon_a.size, runner.embed_dim)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    if out is None:
        out = np.empty(shape, dtype=np_dtype)
    elif not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np_dtype:
        raise ShapeError(
            f"out must be a {np.dtype(np_dtype)} NumPy array of shape {shape}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    elif not out.flags.c_contiguous or not out.flags.writeable:
        raise ShapeError("out must be a writeable C-contiguous array")
    if out.size == 0:
        return out
    if progress is None:
        progress = out.shape[0] * out.shape[1] * runner.L**2 >= AUTO_PROGRESS_WORK and _stderr_is_terminal()
    from tqdm.auto import tqdm

    with tqdm(
        total=lat_a.size * lon_a.size,
        unit="pt",
        unit_scale=True,
        desc="satclip encode_grid",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        if isinstance(runner, SirenRunner) and _separable_pays(runner, lon_a.size):
            _grid_encoder(runner).run(lon_a, lat_a, out, bar.update)
        else:
            _pointwise(lon_a, lat_a, model, compute_device, dtype, out, bar.update)
    return out


def encode_wrapped_grid(
    wrap: Any,
    points: np.ndarray,
    model: ModelLike,
    *,
    device: torch.device | str | None,
    dtype: torch.dtype | str,
    progress: bool | None,
) -> Any:
    """:func:`satclip.encode` of an xarray grid with 1-D lon and lat coordinates (a
    :class:`~satclip.points.geo.GridWrap`): through :func:`encode_grid`, shaped like the input.
    Reduced-precision dtypes (CUDA) go point-wise through :func:`satclip.encode`."""
    from satclip.embed.locations import encode

    try:
        check_float_dtype(dtype)
    except DTypeError:
        return wrap(encode(points, model, device=device, dtype=dtype, progress=progress))
    emb = encode_grid(wrap.lon, wrap.lat, model, device=device, dtype=dtype, progress=progress)
    return wrap(emb if wrap.lat_first else emb.transpose(1, 0, 2))


def _stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _axis(values: Any, name: str, limits: tuple[float, float]) -> np.ndarray:
    """A 1-D float64 coordinate vector, or a satclip error naming the problem."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values)
    except ValueError as why:
        raise ShapeError(f"{name} must be a 1-D sequence of degrees ({why})") from None
    if arr.dtype.kind not in "iuf":
        raise DTypeError(f"{name} must hold real numbers (degrees), got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ShapeError(
            f"{name} must be 1-D (the grid is the outer product of 1-D lon and lat), got shape {arr.shape}; "
            "for scattered points or 2-D coordinates use satclip.encode"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = ~((arr >= limits[0]) & (arr <= limits[1]))  # NaN fails both
    if bad.any():
        i = int(np.argmax(bad))
        what = "longitude" if name == "lon" else "latitude"
        err = CoordinateError(
            f"{name}[{i}] is {float(arr[i])!r}: {what}s must be finite numbers in [{limits[0]:g}, {limits[1]:g}] degrees"
        )
        err.row, err.column = i, name
        raise err
    return arr


def _separable_pays(runner: SirenRunner, n_lon: int) -> bool:
    """Whether the separable path (segments padded to a fixed width) costs less than point-wise."""
    segment = SEGMENT_CPU if runner.device.type == "cpu" else SEGMENT_CUDA
    hidden, L = runner.hidden, runner.L
    rest = sum(layer.dim_in * layer.dim_out for layer in _rest_layers(runner.nnet))
    separable = max(n_lon, segment) * (hidden * (2 * L - 1) + rest)
    pointwise = n_lon * (hidden * L * L + rest + 4 * L * L)  # + the SH themselves
    return separable <= pointwise


def _rest_layers(nnet: Any) -> list[Siren]:
    return [*list(nnet.layers)[1:], nnet.last_layer]


def _pointwise(
    lon: np.ndarray,
    lat: np.ndarray,
    model: ModelLike,
    device: torch.device,
    dtype: torch.dtype,
    out: np.ndarray,
    progress: Callable[[int], object],
) -> None:
    """The fallback: :func:`satclip.encode` of the grid's points, a band of rows at a time."""
    from satclip.embed.locations import encode

    rows = max(1, (1 << 18) // lon.size)
    for start in range(0, lat.size, rows):
        stop = min(start + rows, lat.size)
        grid_lon, grid_lat = np.meshgrid(lon, lat[start:stop])
        points = np.column_stack([grid_lon.ravel(), grid_lat.ravel()])
        emb = encode(points, model, device=device, dtype=dtype, progress=False)
        out[start:stop] = np.asarray(emb).reshape(stop - start, lon.size, -1)
        progress(points.shape[0])


_ENCODERS: weakref.WeakKeyDictionary[SirenRunner, _GridEncoder] = weakref.WeakKeyDictionary()
_ENCODERS_LOCK = threading.Lock()


def _grid_encoder(runner: SirenRunner) -> _GridEncoder:
    """The grid state of a cached runner (its padded first-layer weights), made once."""
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(runner)
        if encoder is None:
            encoder = _ENCODERS[runner] = _GridEncoder(runner)
        return encoder


class _GridEncoder:
    """The separable first layer of a :class:`~satclip.embed.runners.SirenRunner`'s network plus its
    schedule (see the module doc)."""

    def __init__(self, runner: SirenRunner):
        self.runner, self.device, self.dtype = runner, runner.device, runner.dtype
        L, nnet = runner.L, runner.nnet
        self.L, self.K = L, 2 * L - 1
        first = nnet.layers[0]
        assert isinstance(first, Siren) and first.bias is not None
        self.first, self.rest, self.bias = first, _rest_layers(nnet), first.bias
        self.hidden, self.embed_dim = runner.hidden, runner.embed_dim
        self.segment = SEGMENT_CPU if self.device.type == "cpu" else SEGMENT_CUDA
        # Padded per-order weights: wpad[m + L-1, l, j] = W[j, l*l + l + m] for l >= |m|, else 0;
        # qidx picks Q_l|m| (column l*l + l + |m| of the features at phi = 0) in the same layout,
        # pointing at an appended zero column where l < |m|.
        w = first.weight.detach().to(torch.float64).cpu().numpy()
        wpad = np.zeros((self.K, L, self.hidden))
        qidx = np.full((self.K, L), L * L, dtype=np.int64)
        for m in range(-(L - 1), L):
            ls = np.arange(abs(m), L)
            wpad[m + L - 1, ls] = w[:, ls * ls + ls + m].T
            qidx[m + L - 1, ls] = ls * ls + ls + abs(m)
        self.wpad = torch.from_numpy(wpad).to(self.device)
        self.qidx = qidx
        self.orders = np.arange(-(L - 1), L)

    # -- the two factors -------------------------------------------------------------------

    def legendre_part(self, lat: np.ndarray) -> Tensor:
        """``A`` of up to :data:`ROW_BLOCK` latitudes: ``(ROW_BLOCK, 2L-1, hidden)`` in the compute
        dtype (rows beyond ``len(lat)`` are padding)."""
        lonlat = np.zeros((ROW_BLOCK, 2))
        lonlat[:, 0] = -180.0  # phi = 0: the features are Q_l|m| (m >= 0) and 0 (m < 0)
        lonlat[: lat.size, 1] = lat
        q = spherical_harmonics(lonlat, self.L, basis=self.runner.basis)
        q = np.concatenate([q, np.zeros((ROW_BLOCK, 1))], axis=1)
        qpad = np.ascontiguousarray(np.moveaxis(q[:, self.qidx], 0, 1))  # (K, ROW_BLOCK, L)
        a = torch.bmm(torch.from_numpy(qpad).to(self.device), self.wpad)  # (K, ROW_BLOCK, hidden), float64
        return a.transpose(0, 1).to(self.dtype).contiguous()

    def trig_part(self, lon: np.ndarray) -> Tensor:
        """``T``: ``(max(len(lon), segment), 2L-1)`` in the compute dtype (rows past ``len(lon)`` zero)."""
        phi = np.deg2rad(lon + 180.0)
        angles = phi[:, None] * np.abs(self.orders)[None, :]
        t = np.where(self.orders > 0, np.cos(angles), np.where(self.orders < 0, np.sin(angles), 1.0))
        if lon.size < self.segment:
            t = np.concatenate([t, np.zeros((self.segment - lon.size, self.K))])
        return torch.from_numpy(np.ascontiguousarray(t)).to(device=self.device, dtype=self.dtype)

    # -- the schedule ----------------------------------------------------------------------

    def segments(self, n_lon: int) -> list[int]:
        """Start columns of the fixed-width segments covering a row."""
        c = self.segment
        if n_lon <= c:
            return [0]
        starts = list(range(0, n_lon - c + 1, c))
        if starts[-1] + c < n_lon:
            starts.append(n_lon - c)  # overlaps the one before: same shape, same bits
        return starts

    def run(self, lon: np.ndarray, lat: np.ndarray, out: np.ndarray, progress: Callable[[int], object]) -> None:
        t = self.trig_part(lon)
        blocks = range(0, lat.size, ROW_BLOCK)
        cpu = self.device.type == "cpu"
        workers = min(torch.get_num_threads(), len(blocks)) if cpu else 1

        def work(starts: Iterator[int], count: Callable[[int], object], worker: int) -> None:
            self._work(lon, lat, t, out, starts, count)

        share_out(work, blocks, workers, progress, cpu=cpu)

    def _work(
        self,
        lon: np.ndarray,
        lat: np.ndarray,
        t: Tensor,
        out: np.ndarray,
        blocks: Iterator[int],
        progress: Callable[[int], object],
    ) -> None:
        """One worker: the row blocks starting at ``blocks`` into ``out``."""
        n_lon, c = lon.size, self.segment
        segments = self.segments(n_lon)
        rows = 1 if self.device.type == "cpu" else ROW_BLOCK  # rows per first-layer GEMM
        cells = rows * c

        def empty(cols: int) -> Tensor:
            return torch.empty(cells, cols, dtype=self.dtype, device=self.device)

        hidden, hidden2, emb = empty(self.hidden), empty(self.hidden), empty(self.embed_dim)
        out_t = torch.from_numpy(out)
        direct = rows == 1 and out_t.dtype == self.dtype
        with torch.inference_mode():
            for r0 in blocks:
                r1 = min(r0 + ROW_BLOCK, lat.size)
                a = self.legendre_part(lat[r0:r1])
                for g0 in range(0, r1 - r0, rows):
                    g = min(rows, r1 - r0 - g0)
                    for s in segments:
                        width = min(c, n_lon - s)
                        if direct and width == c:  # a row's segment is contiguous in out: no copy
                            self._cells(t[s : s + c], a[g0 : g0 + 1], hidden, hidden2, out_t[r0 + g0, s : s + c])
                            continue
                        self._cells(t[s : s + c], a[g0 : g0 + rows], hidden, hidden2, emb)
                        block = emb.view(rows, c, self.embed_dim)[:g, :width]
                        out_t[r0 + g0 : r0 + g0 + g, s : s + width].copy_(block)
                progress((r1 - r0) * n_lon)

    def _cells(self, t: Tensor, a: Tensor, hidden: Tensor, hidden2: Tensor, emb: Tensor) -> None:
        """The network on ``rows x segment`` cells: the separable first layer, then the model's own layers."""
        if a.shape[0] == 1:
            torch.addmm(self.bias, t, a[0], out=hidden)
        else:
            z = hidden.view(a.shape[0], t.shape[0], self.hidden)
            torch.baddbmm(self.bias, t.expand(a.shape[0], -1, -1), a, out=z)
        activation = self.first.activation
        assert isinstance(activation, Sine)  # a plain SIREN (checked when the runner was made)
        activation.forward_(hidden)
        x, spare = hidden, hidden2
        for layer in self.rest[:-1]:
            x = layer.forward_into(x, spare)
            spare = hidden if x is hidden2 else hidden2
        self.rest[-1].forward_into(x, emb)


__all__ = ["encode_grid"]
