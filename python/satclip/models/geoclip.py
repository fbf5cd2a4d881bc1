"""GeoCLIP's location encoder (Vivanco Cepeda et al., NeurIPS 2023), implemented here.

    >>> import satclip
    >>> emb = satclip.encode(lonlat, "geoclip")          # doctest: +SKIP  (N, 512), weights of the geoclip package
    >>> model = satclip.models.geoclip.load_geoclip("location_encoder_weights.pth")   # doctest: +SKIP

The network: ``[lat, lon]`` degrees -> Equal Earth projection (scaled to about [-1, 1]) -> three
capsules, one per random-Fourier-feature scale (sigma 2^0, 2^4, 2^8; each ``cos``/``sin`` of 256
projections, 512 features -> 1024 -> 1024 -> 1024 with ReLU -> 512) -> the sum of the capsules.
9.45 M parameters, 27 tensors (the ``b`` projection of each capsule and 4 linear layers).

Weights: the ``geoclip`` package (MIT, the ``geoclip`` extra) ships them in its wheel as
``geoclip/model/weights/location_encoder_weights.pth``, a plain state dict. They are read from the
installed package's files (found through its distribution metadata, or its import spec) with
``torch.load(weights_only=True)``; the package itself is never imported, so nothing of it runs.
A file path can be given instead (:func:`load_geoclip`).

Faithfulness and speed: the projection and the Fourier features repeat the package's float32
operations one for one (the sigma = 256 capsule turns an ulp of its input into a visible change of
its features, so they are not "improved"); the linear layers run in cache-sized chunks of rows
into reused buffers (one chunk worker per torch thread), ReLU in place, the three heads as one GEMM
over the concatenated hidden states (the sum of the capsules falls out of it), and the released
weights' subnormal values set to zero in the GEMM copies (see :meth:`GeoCLIPLocationEncoder._prepare`).
Measured: within 7.4e-7 of the package's own module, and faster than it
(``benches/bench_encoders.py``; figures in the docs, docs/benchmarks.md "Other location encoders").

Input order: like every satclip encoder this module takes ``[lon, lat]``; GeoCLIP's own takes
``[lat, lon]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from satclip.errors import CheckpointError, MissingExtraError
from satclip.runtime.workers import share_out

PathLike = Union[str, "os.PathLike[str]"]

#: The weights file inside the geoclip package.
PACKAGE_WEIGHTS = "geoclip/model/weights/location_encoder_weights.pth"

#: Equal Earth projection constants, as GeoCLIP uses them.
A1, A2, A3, A4 = 1.340264, -0.081106, 0.000893, 0.003796
SF = 66.50336

CAPSULE_LAYERS = ("capsule.1", "capsule.3", "capsule.5", "head.0")
CAPSULE_SHAPES = {
    "capsule.0.b": (256, 2),
    "capsule.1": (1024, 512),
    "capsule.3": (1024, 1024),
    "capsule.5": (1024, 1024),
}
CAPSULE_SHAPES["head.0"] = (512, 1024)


def installed_weights() -> Path:
    """The location encoder weights inside the installed ``geoclip`` package (never imported)."""
    from importlib import metadata
    from importlib.util import find_spec

    try:
        dist = metadata.distribution("geoclip")
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or ():
            if str(file).replace("\\", "/").endswith(PACKAGE_WEIGHTS):
                path = Path(str(dist.locate_file(file)))
                if path.is_file():
                    return path
    spec = find_spec("geoclip")  # a top-level name: locates the package without running it
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / PACKAGE_WEIGHTS.removeprefix("geoclip/")
        if path.is_file():
            return path
    raise MissingExtraError(
        "the 'geoclip' encoder reads GeoCLIP's weights from the geoclip package, which is not installed: "
        "pip install 'satclip[geoclip]' (or give the weights file: 'geoclip:PATH' or load_geoclip(PATH))"
    )


def load_geoclip(weights: PathLike | None = None) -> GeoCLIPLocationEncoder:
    """GeoCLIP's location encoder with the weights of ``weights`` (a ``.pth`` state dict), by default
    those of the installed ``geoclip`` package."""
    path = installed_weights() if weights is None else Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"no such GeoCLIP weights file: {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch's own errors: the file is not a state dict
        raise CheckpointError(f"cannot read GeoCLIP weights from {str(path)!r}: {type(err).__name__}: {err}") from None
    return GeoCLIPLocationEncoder(state, source=str(path))


def _check_state(state: Any) -> int:
    """The number of capsules of a GeoCLIP location-encoder state dict (checked key by key)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"GeoCLIP weights must be a state dict, got {type(state).__name__}")
    n = 0
    while f"LocEnc{n}.capsule.0.b" in state:
        n += 1
    if n == 0:
        raise CheckpointError("not GeoCLIP location encoder weights: no 'LocEnc0.capsule.0.b' tensor")
    for i in range(n):
        for name, shape in CAPSULE_SHAPES.items():
            keys = [f"LocEnc{i}.{name}"] if name.endswith(".b") else [f"LocEnc{i}.{name}.weight"]
            for key in keys:
                value = state.get(key)
                if not isinstance(value, Tensor) or tuple(value.shape) != shape:
                    got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                    raise CheckpointError(f"GeoCLIP weights: {key!r} must be a tensor of shape {shape}, got {got}")
            if not name.endswith(".b"):
                bias = state.get(f"LocEnc{i}.{name}.bias")
                if not isinstance(bias, Tensor) or tuple(bias.shape) != (shape[0],):
                    raise CheckpointError(f"GeoCLIP weights: 'LocEnc{i}.{name}.bias' must have shape ({shape[0]},)")
    return n


def equal_earth_projection(latlon: Tensor) -> Tensor:
    """GeoCLIP's Equal Earth projection of ``[lat, lon]`` degrees, scaled by ``SF / 180``: the same
    operations in the same order as the geoclip package, so float32 results agree bit for bit."""
    latitude = latlon[:, 0]
    longitude = latlon[:, 1]
    latitude_rad = torch.deg2rad(latitude)
    longitude_rad = torch.deg2rad(longitude)
    sqrt3 = torch.sqrt(torch.tensor(3.0, dtype=latlon.dtype, device=latlon.device))
    sin_theta = (sqrt3 / 2) * torch.sin(latitude_rad)
    theta = torch.asin(sin_theta)
    denominator = 3 * (9 * A4 * theta**8 + 7 * A3 * theta**6 + 3 * A2 * theta**2 + A1)
    x = (2 * sqrt3 * longitude_rad * torch.cos(theta)) / denominator
    y = A4 * theta**9 + A3 * theta**7 + A2 * theta**3 + A1 * theta
    return (torch.stack((x, y), dim=1) * SF) / 180


class GeoCLIPLocationEncoder(nn.Module):
    """GeoCLIP's location encoder: ``(N, 2)`` ``[lon, lat]`` degrees -> ``(N, 512)``.

    ``state`` is the package's state dict (``LocEnc{i}.capsule.0.b``, ``LocEnc{i}.capsule.{1,3,5}``,
    ``LocEnc{i}.head.0``). :meth:`state_dict` gives it back in the same layout.
    """

    #: Rows per chunk: a chunk's 1024-wide hidden states stay in the CPU caches.
    CHUNK = 1024

    embed_dim = 512

    b: Tensor  # (capsules, 256, 2) random Fourier projections
    w_head: Tensor  # (512, capsules * 1024)
    b_heads: Tensor  # (capsules, 512)

    def __init__(self, state: dict[str, Tensor], *, source: str | None = None) -> None:
        super().__init__()
        n = _check_state(state)
        self.source = source
        self.capsules = n
        self.register_buffer("b", torch.stack([state[f"LocEnc{i}.capsule.0.b"] for i in range(n)]).float())
        for j, layer in enumerate(CAPSULE_LAYERS[:3]):
            self.register_buffer(f"w{j}", torch.stack([state[f"LocEnc{i}.{layer}.weight"] for i in range(n)]).float())
            self.register_buffer(f"b{j}", torch.stack([state[f"LocEnc{i}.{layer}.bias"] for i in range(n)]).float())
        # The heads side by side: (512, n * 1024), one GEMM sums the capsules.
        self.register_buffer("w_head", torch.cat([state[f"LocEnc{i}.head.0.weight"] for i in range(n)], 1).float())
        self.register_buffer("b_heads", torch.stack([state[f"LocEnc{i}.head.0.bias"] for i in range(n)]).float())
        self._prepare()

    def _prepare(self) -> None:
        """Transposed, contiguous copies of the weights for the GEMMs (and the heads' summed bias).

        Subnormal weights are set to zero in these copies: GeoCLIP's released weights hold 45,792
        of them (all below 1.2e-38 in magnitude), and a CPU GEMM that meets subnormal operands runs
        up to ~80x slower on x86. Their products are below 1e-37, far under an ulp of any output."""
        self._wt = [_flush_subnormals(getattr(self, f"w{j}").transpose(1, 2).contiguous()) for j in range(3)]
        self._head_t = _flush_subnormals(self.w_head.t().contiguous())
        bias = self.b_heads[0].clone()
        for i in range(1, self.capsules):  # summed in the package's order: capsule 0, then 1, ...
            bias = bias + self.b_heads[i]
        self._head_bias = bias

    def _apply(self, fn: Any, recurse: bool = True) -> GeoCLIPLocationEncoder:  # .to(), .double(), .cuda()
        super()._apply(fn, recurse)
        self._prepare()
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The weights in the geoclip package's layout (27 tensors for 3 capsules)."""
        out: dict[str, Tensor] = {}
        for i in range(self.capsules):
            out[f"LocEnc{i}.capsule.0.b"] = self.b[i].clone()
            for j, layer in enumerate(CAPSULE_LAYERS[:3]):
                out[f"LocEnc{i}.{layer}.weight"] = getattr(self, f"w{j}")[i].clone()
                out[f"LocEnc{i}.{layer}.bias"] = getattr(self, f"b{j}")[i].clone()
            out[f"LocEnc{i}.head.0.weight"] = self.w_head[:, i * 1024 : (i + 1) * 1024].clone()
            out[f"LocEnc{i}.head.0.bias"] = self.b_heads[i].clone()
        return out

    def features(self, lonlat: Tensor) -> Tensor:
        """The random Fourier features of ``[lon, lat]``: ``(capsules, N, 512)`` (``cos`` then ``sin``).

        A longitude in (180, 360] is taken as ``lon - 360`` (exact, in the input's dtype, before
        the float32 projection): the projection is linear in the longitude, so 0..360 input would
        otherwise land off the map the weights were trained on."""
        from satclip.points.tensors import with_wrapped_longitudes

        x = equal_earth_projection(with_wrapped_longitudes(lonlat).flip(1).to(self.b.dtype))
        out = []
        for i in range(self.capsules):
            vp = 2 * np.pi * x @ self.b[i].T  # (N, 256): the package's expression, one capsule at a time
            out.append(torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1))
        return torch.stack(out)

    def forward(self, lonlat: Tensor) -> Tensor:
        """Embeddings of ``lonlat`` (inference only: the layers write into buffers, no autograd).

        On CPU the chunks are shared out to one worker per torch thread, each running its GEMMs
        on one thread (as :func:`satclip.encode` does for SatCLIP models): no OpenMP barrier per
        layer, which matters most on a busy machine."""
        if lonlat.ndim != 2 or lonlat.shape[1] != 2:
            raise ValueError(f"GeoCLIP's location encoder takes (N, 2) [lon, lat], got shape {tuple(lonlat.shape)}")
        n = lonlat.shape[0]
        out = torch.empty(n, self.embed_dim, dtype=self.b.dtype, device=self.b.device)
        if n == 0:
            return out
        lonlat = lonlat.to(self.b.device)
        c = min(self.CHUNK, n)
        starts = list(range(0, n, c))
        cpu = out.device.type == "cpu"
        workers = min(torch.get_num_threads(), len(starts)) if cpu else 1

        def work(chunk_starts: Iterator[int], count: Callable[[int], object], worker: int) -> None:
            with torch.inference_mode():  # thread-local: each worker enters it
                self._run_chunks(lonlat, chunk_starts, c, out)

        share_out(work, starts, workers, cpu=cpu)
        return out

    def _run_chunks(self, lonlat: Tensor, starts: Any, c: int, out: Tensor) -> None:
        k, n = self.capsules, lonlat.shape[0]
        hidden = [torch.empty(c, k * 1024, dtype=out.dtype, device=out.device) for _ in range(2)]
        for start in starts:
            stop = min(start + c, n)
            rows = stop - start
            h_in: list[Tensor] = list(self.features(lonlat[start:stop]))
            for j in range(3):
                h_out = hidden[j % 2][:rows]
                bias = getattr(self, f"b{j}")
                for i in range(k):
                    torch.addmm(bias[i], h_in[i], self._wt[j][i], out=h_out[:, i * 1024 : (i + 1) * 1024])
                torch.relu_(h_out)
                h_in = [h_out[:, i * 1024 : (i + 1) * 1024] for i in range(k)]
            torch.addmm(self._head_bias, hidden[0][:rows], self._head_t, out=out[start:stop])

    def extra_repr(self) -> str:
        params = sum(t.numel() for t in self.state_dict().values())
        return f"capsules={self.capsules}, parameters={params / 1e6:.2f} M, source={self.source!r}"


def _flush_subnormals(weights: Tensor) -> Tensor:
    tiny = torch.finfo(weights.dtype).tiny
    return weights.masked_fill(weights.abs() < tiny, 0.0)


__all__ = ["GeoCLIPLocationEncoder", "equal_earth_projection", "installed_weights", "load_geoclip"]
