"""Runners: one model executed over ``(N, 2)`` ``[lon, lat]`` points on CPU worker threads or a GPU.

:func:`satclip.encode` and :func:`satclip.encode_grid` drive every kind of model through the one
interface :class:`Runner`; :func:`make_runner` picks the runner for a SatCLIP model. The three
runners:

* :class:`SirenRunner`   a SatCLIP encoder whose network is the plain SIREN: the fused,
                         chunked, multi-threaded pipeline (the fast path).
* :class:`ModuleRunner`  a SatCLIP encoder with any other network: the module itself is called.
* :class:`EncoderRunner` any other location encoder (built-in, ``nn.Module`` or callable).

:func:`run_via_pinned` streams host data through a CUDA runner with the copies overlapped.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from satclip.errors import CheckpointError, EncoderError
from satclip.harmonics import triton_kernel as triton_harmonics
from satclip.harmonics.torch_values import torch_spherical_harmonics
from satclip.harmonics.values import spherical_harmonics
from satclip.models.location import LocationEncoder, Sine, SirenNet, SphericalHarmonics
from satclip.runtime.workers import share_out

#: Per-worker scratch tensors of a runner, made by :meth:`Runner.buffers` (one dict per worker).
Buffers = list[dict[str, Tensor]]

#: Progress bars are shown automatically (stderr is a terminal) when N * L^2 exceeds this:
#: about two seconds of work on a laptop CPU.
AUTO_PROGRESS_WORK = 100_000_000

#: Working memory per batch of a :class:`ModuleRunner`, beyond the output (bytes).
CPU_BATCH_BYTES = 256 << 20


class Runner(abc.ABC):
    """What :func:`satclip.encode` needs from a model: embeddings of a batch of points.

    Attributes every runner sets in its constructor:

    * ``device``, ``dtype``: where and in which dtype it computes (results come back in ``dtype``
      on ``device``).
    * ``embed_dim``: columns of an embedding.
    * ``L``: the work per point as the degree of a SatCLIP model's harmonics (the automatic
      progress bar appears for ``N * L**2 >= AUTO_PROGRESS_WORK``).

    A caller asks for :meth:`buffers` once per batch size and passes them to every :meth:`run`
    of that job; a runner may be shared by threads only with separate buffers.
    """

    #: True when :meth:`run` splits its input into chunks itself and shares them out to CPU
    #: workers, so a CPU job is best passed whole (``batch_size`` then does not matter).
    chunked: ClassVar[bool] = False

    device: torch.device
    dtype: torch.dtype
    embed_dim: int
    L: int

    @abc.abstractmethod
    def auto_batch_size(self) -> int:
        """Points per :meth:`run` when the user gives no ``batch_size``."""

    def align_batch_size(self, batch_size: int) -> int:
        """``batch_size`` rounded to what the runner needs (by default: as it is)."""
        return batch_size

    def buffers(self, batch_size: int) -> Buffers:
        """Scratch tensors for runs of up to ``batch_size`` points (by default: none, one worker)."""
        return [{}]

    @abc.abstractmethod
    def run(
        self,
        lonlat: Tensor,
        buffers: Buffers,
        out: Tensor | None,
        progress: Callable[[int], object] | None = None,
    ) -> Tensor:
        """Embeddings of ``lonlat`` (``(n, 2)`` float64 degrees, any device).

        Written into ``out`` (``(n, embed_dim)``, ``dtype`` on ``device``) and returned when it is
        given; otherwise a new tensor. ``progress(points)``, when given, is called on the calling
        thread as points finish, ``n`` in all.
        """


def make_runner(model: nn.Module, device: torch.device, dtype: torch.dtype) -> SirenRunner | ModuleRunner:
    """The runner for a SatCLIP :class:`~satclip.models.location.LocationEncoder` (plain SIREN or
    not); anything else is a :class:`~satclip.errors.CheckpointError`. Other location encoders
    get an :class:`EncoderRunner`."""
    if isinstance(model, LocationEncoder) and is_plain_siren(model):
        return SirenRunner(model, device, dtype)
    if isinstance(model, LocationEncoder) and isinstance(model.posenc, SphericalHarmonics):
        return ModuleRunner(model, device, dtype)
    raise CheckpointError(
        f"encode needs a model name, a checkpoint path or a satclip LocationEncoder, got {type(model).__name__}"
    )


def is_plain_siren(model: LocationEncoder) -> bool:
    """Whether the network is exactly SH + :class:`~satclip.models.location.SirenNet` with sine
    layers and biases (what :class:`SirenNet.forward_into` computes)."""
    nnet = model.nnet
    return (
        isinstance(model.posenc, SphericalHarmonics)
        and type(nnet) is SirenNet
        and all(type(layer.activation) is Sine and layer.bias is not None for layer in nnet.layers)
        and type(nnet.last_layer.activation) is nn.Identity
        and nnet.last_layer.bias is not None
    )


class SirenRunner(Runner):
    """Inference for the SH + SIREN encoder: a fused, chunked pipeline writing into the output.

    The network is the model's own :class:`~satclip.models.location.SirenNet` (cast once to the compute
    dtype), run through :meth:`SirenNet.forward_into`, which equals ``nnet(x)`` bit for bit: there
    is one definition of the SIREN math. What this class adds is the schedule:

    * Points go through in fixed chunks of :attr:`chunk` rows at absolute offsets (multiples of
      the chunk) and the last chunk is padded to full size, so every GEMM has the same shape
      and an embedding does not depend on ``batch_size`` or on how the input was split.
    * On CPU a chunk's features (float32 for float32 output) are written by the Rust core into
      one reused buffer and consumed by the first GEMM right away; hidden activations live in
      two reused buffers; the last layer writes into the caller's array. A chunk is at least
      :attr:`MIN_CHUNK_ROWS` rows, more where ~1 MiB of features allows (low L).
    * Threads (CPU): one worker per torch thread (``torch.get_num_threads()``), each taking a
      contiguous run of whole chunks and doing all of a chunk's work itself - SH on its own
      thread (``parallel=False``: the Rust core's pool is not used), then single-threaded GEMMs
      - with its own buffers. Measured on a 2-core machine this beats the alternatives: running
      the Rust core and torch one after the other with all cores each (a chunk's GEMM is too
      small to split well, and every layer pays an OpenMP barrier, which collapses when the
      machine is busy), splitting the cores between SH and GEMM (the SH are ~10% of the work),
      and handing each chunk's SH to the Rust pool (7-8% slower at L = 40: half of the features
      are then written into the other core's cache, and the pool's threads compete with the
      other worker for the cores). While the workers run, torch's intra-op threads are
      set to 1 (see :func:`satclip.runtime.workers.one_torch_thread`). A single-threaded GEMM of a fixed shape gives
      the same bits whichever worker runs it, so results do not depend on the thread count.
    """

    chunked = True

    #: Target size of one chunk's features, bytes: L2-sized so the first GEMM reads them from cache.
    CHUNK_FEATURE_BYTES = 1 << 20
    #: Rows of the smallest chunk. Each GEMM call has a fixed cost (BLAS packs the layer's
    #: weights again, plus the per-call dispatch), which 256-row chunks do not amortise at high
    #: L although their features fit in L2. Measured on a 2-core Ice Lake VM (L = 40, float32,
    #: thread CPU time): SH + network in a loop cost ~25% less per point at 1024 rows than at
    #: 256 (2048 and 4096 no better); in interleaved A/B runs of encode 0-13% less CPU time,
    #: the two-thread wall time within noise. The embeddings had the same bits at 256, 1024 and
    #: 4096 rows there (every chunk's GEMM shape stays fixed whatever the chunk).
    MIN_CHUNK_ROWS = 1024

    def __init__(self, model: LocationEncoder, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self.L, self.basis = model.posenc.L, model.posenc.basis
        self.nnet: SirenNet = _network_in(model.nnet, device, dtype)
        self.embed_dim = self.nnet.last_layer.dim_out
        self.hidden = self.nnet.dim_hidden
        # Features are computed in float32 or float64 (reduced-precision modes on CUDA round
        # float32 features when they enter the first GEMM).
        self.feature_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        if device.type == "cpu":
            rows = self.CHUNK_FEATURE_BYTES // (self.L**2 * _itemsize(self.feature_dtype))
            self.chunk = int(min(4096, max(self.MIN_CHUNK_ROWS, rows)) // 64 * 64)
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

    def buffers(self, batch_size: int) -> Buffers:
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
            # The Rust core evaluates in float64 and rounds once into the float32 buffer, on
            # this worker's thread: the first GEMM reads the features next from this core's cache.
            spherical_harmonics(lonlat.numpy(), self.L, basis=self.basis, out=features.numpy(), parallel=False)
            return features
        if self.feature_dtype == torch.float32 and triton_harmonics.available(lonlat):
            triton_harmonics.spherical_harmonics(lonlat, self.L, basis=self.basis, out=features)
        else:
            features.copy_(torch_spherical_harmonics(lonlat.to(torch.float64), self.L, self.basis))
        return features if self.dtype in (torch.float32, torch.float64) else features.to(self.dtype)

    def run(
        self,
        lonlat: Tensor,
        buffers: Buffers,
        out: Tensor | None,
        progress: Callable[[int], object] | None = None,
    ) -> Tensor:
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


def _network_in(nnet: SirenNet, device: torch.device, dtype: torch.dtype) -> SirenNet:
    """``nnet`` with its weights in ``dtype`` on ``device``: the module itself when they already
    are (the runner only reads them, through :meth:`SirenNet.forward_into`, which ignores the
    training mode), else a converted copy, so the caller's model is never changed. Copying costs
    ~2 ms at L = 40, which a loop of small encode calls would pay every call."""
    if _placed(nnet, device, dtype):
        return nnet
    return copy.deepcopy(nnet).to(device=device, dtype=dtype).eval()


def _placed(module: nn.Module, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether every parameter and buffer of ``module`` is on ``device``, the floating ones in ``dtype``."""
    tensors = [*module.parameters(), *module.buffers()]
    return all(t.device == device and (t.dtype == dtype or not t.is_floating_point()) for t in tensors)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class ModuleRunner(Runner):
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

    def run(
        self,
        lonlat: Tensor,
        buffers: Buffers,
        out: Tensor | None,
        progress: Callable[[int], object] | None = None,
    ) -> Tensor:
        result = self.model(lonlat.to(self.device)).to(self.dtype)
        if out is not None:
            result = out.copy_(result)
        if progress is not None:
            progress(lonlat.shape[0])
        return result


class EncoderRunner(Runner):
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
            if not _placed(encoder, device, dtype):
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

    def run(
        self,
        lonlat: Tensor,
        buffers: Buffers,
        out: Tensor | None,
        progress: Callable[[int], object] | None = None,
    ) -> Tensor:
        points = lonlat.to(device=self.device, dtype=self.input_dtype)
        result = self._call(self.encoder, points, self.name)
        result = result.to(device=self.device, dtype=self.dtype)
        if out is not None:
            if out.shape != result.shape:
                raise EncoderError(
                    f"encoder {self.name} returned {result.shape[1]} columns here but {out.shape[1]} before; "
                    "an encoder must give every point the same number of features"
                )
            result = out.copy_(result)
        if progress is not None:
            progress(lonlat.shape[0])
        return result


def run_via_pinned(
    runner: Runner,
    points: Tensor,
    buffers: Buffers,
    out: Tensor,
    batch: int,
    progress: Callable[[int], object],
) -> None:
    """Host ``points`` through a CUDA runner into host ``out``, the copies overlapped with compute.

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
            progress(stop - start)
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


__all__ = [
    "AUTO_PROGRESS_WORK",
    "Buffers",
    "EncoderRunner",
    "ModuleRunner",
    "Runner",
    "SirenRunner",
    "is_plain_siren",
    "make_runner",
    "run_via_pinned",
]
