"""Image -> location retrieval: where on Earth does a Sentinel-2 image come from?

SatCLIP maps images and locations into one space; an image's most likely locations are those
whose location embedding has the highest cosine similarity with its image embedding (the
original's notebook B02). :func:`locate` ranks a set of candidate locations - by default a
near-uniform global Fibonacci lattice of 100 000 points (~70 km apart) - and
:func:`similarity_map` evaluates the similarity on a regular lon/lat grid for plotting
(:func:`satclip.downstream.plots.plot_similarity_map`).

Candidate location embeddings are computed once per (location weights, candidate set) and kept
in memory (a few sets; 100 000 x 256 float32 is 100 MB), and optionally on disk
(``cache_dir=``, one ``.npy`` per set). The key is a SHA-256 of the location encoder's weights
and of the candidate coordinates, so a changed model or candidate set never reuses stale ones.

Cosine similarities are computed in float64 from the float32 embeddings, in chunks of candidates,
so ranking is that of an exact cosine over the same embeddings and memory stays bounded.

Refinement: ``refine=True`` moves every guess uphill by gradient ascent of the cosine similarity
on the sphere (:func:`satclip.downstream.refine.refine_locations`, analytic SH derivatives), starting from
the ranked grid points, and re-ranks; the refined score is never below the grid point's. Any
callable ``refine(result, *, location_encoder, device)`` returning a :class:`LocateResult` can
take its place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Union

import numpy as np
import torch
from torch import Tensor

from satclip.errors import SatclipError, ShapeError
from satclip.models.image import ImageEncoder
from satclip.models.location import LocationEncoder
from satclip.models.registry import PathLike
from satclip.models.satclip import SatCLIP
from satclip.points.sphere import fibonacci_grid
from satclip.runtime.caches import LRUCache

#: A model name/path (both halves come from it), or the two halves as (image, location) encoders.
SatCLIPLike = Union[PathLike, SatCLIP, "tuple[ImageEncoder, LocationEncoder]"]

DEFAULT_GRID_POINTS = 100_000
_CANDIDATE_CHUNK = 32_768
#: Grids for maps up to this many cells keep their location embeddings cached (~300 MB).
_MAP_CACHE_LIMIT = 300_000


@dataclass
class LocateResult:
    """The ``top_k`` best candidate locations per image, best first.

    Attributes
    ----------
    lonlat: (B, k, 2) float64 ``[lon, lat]`` degrees of the guesses.
    scores: (B, k) float64 cosine similarities (in [-1, 1]).
    indices: (B, k) int64 rows of ``candidates``.
    image_embeddings: (B, D) float32, unnormalised.
    candidates: (M, 2) the candidate set that was ranked.
    """

    lonlat: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    image_embeddings: np.ndarray
    candidates: np.ndarray

    def to_frame(self) -> Any:
        """A long pandas DataFrame: one row per (image, rank) with lon, lat, score."""
        import pandas as pd

        b, k = self.scores.shape
        return pd.DataFrame(
            {
                "image": np.repeat(np.arange(b), k),
                "rank": np.tile(np.arange(1, k + 1), b),
                "lon": self.lonlat[..., 0].ravel(),
                "lat": self.lonlat[..., 1].ravel(),
                "score": self.scores.ravel(),
            }
        )


class Refiner(Protocol):
    """The ``refine=`` hook of :func:`locate`."""

    def __call__(
        self, result: LocateResult, *, location_encoder: LocationEncoder, device: torch.device
    ) -> LocateResult: ...


class SimilarityMap(NamedTuple):
    """Cosine similarity on a regular grid: ``values[i, j]`` at (``lon[j]``, ``lat[i]``), cell centres."""

    values: np.ndarray
    lon: np.ndarray
    lat: np.ndarray


def locate(
    images: Any,
    model: SatCLIPLike = "resnet50-l40",
    candidates: Any = None,
    top_k: int = 5,
    *,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    units: str = "auto",
    cache_dir: PathLike | None = None,
    refine: Refiner | bool | None = None,
) -> LocateResult:
    """The ``top_k`` candidate locations most similar to each image (see the module notes).

    Parameters
    ----------
    images:
        As for :func:`satclip.encode_images` (arrays, tensors or GeoTIFF paths).
    model:
        A model name or path holding both halves (a released ``.ckpt``, or a ``.safetensors``
        saved with ``image_encoder=``), a :class:`satclip.SatCLIP` model, or a tuple
        ``(image_encoder, location_encoder)``.
    candidates:
        ``(M, 2)`` ``[lon, lat]`` degrees; default :func:`fibonacci_grid` (100 000 points).
    top_k:
        Guesses per image (at most M).
    cache_dir:
        Also keep candidate embeddings on disk there (created if needed).
    refine:
        ``True``: refine each guess by gradient ascent (see the module notes); or a
        :class:`Refiner` applied to the ranked result.
    """
    image_encoder, location_encoder = _halves(model)
    grid = fibonacci_grid(DEFAULT_GRID_POINTS) if candidates is None else _as_lonlat(candidates)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= grid.shape[0]:
        raise ValueError(f"top_k must be an integer in [1, {grid.shape[0]}] (the number of candidates), got {top_k!r}")
    from satclip.embed.images import encode_images

    image_emb = encode_images(
        images, image_encoder, device=device, batch_size=batch_size, progress=progress, units=units
    )
    image_emb = np.asarray(image_emb.cpu() if isinstance(image_emb, Tensor) else image_emb, dtype=np.float32)
    cand_emb = candidate_embeddings(location_encoder, grid, device=device, cache_dir=cache_dir)
    scores, indices = top_k_cosine(image_emb, cand_emb, int(top_k))
    result = LocateResult(grid[indices], scores, indices, image_emb, grid)
    if refine is True:
        refine = refine_by_gradient_ascent
    if refine is not None and refine is not False:
        from satclip.points.inputs import pick_device

        result = refine(result, location_encoder=location_encoder, device=pick_device(device, torch.device("cpu")))
    return result


def refine_by_gradient_ascent(
    result: LocateResult, *, location_encoder: LocationEncoder, device: torch.device
) -> LocateResult:
    """The :class:`Refiner` behind ``locate(refine=True)``: each of the ``k`` guesses of an image
    climbs the similarity to that image; the refined guesses are then re-ranked per image.
    ``indices`` keep naming the candidate each refined guess started from."""
    from satclip.downstream.refine import refine_locations

    b, k = result.scores.shape
    targets = np.repeat(result.image_embeddings, k, axis=0)
    refined = refine_locations(targets, location_encoder, result.lonlat.reshape(b * k, 2))
    scores = refined.score.reshape(b, k)
    order = np.argsort(-scores, axis=1, kind="stable")
    pick = np.take_along_axis
    return LocateResult(
        lonlat=pick(refined.lonlat.reshape(b, k, 2), order[..., None], axis=1),
        scores=pick(scores, order, axis=1),
        indices=pick(result.indices, order, axis=1),
        image_embeddings=result.image_embeddings,
        candidates=result.candidates,
    )


def similarity_map(
    image: Any,
    model: SatCLIPLike = "resnet50-l40",
    resolution: float = 1.0,
    *,
    xarray: bool | None = None,
    device: torch.device | str | None = None,
    units: str = "auto",
    cache_dir: PathLike | None = None,
) -> Any:
    """Cosine similarity between one image and every cell centre of a ``resolution``-degree grid.

    Returns an ``xarray.DataArray`` (dims ``lat``, ``lon``) when xarray is installed and
    ``xarray`` is not ``False``, else a :class:`SimilarityMap` of NumPy arrays. Latitudes run
    from south to north, cell centres at ``-90 + resolution / 2`` ...
    """
    if not isinstance(resolution, (int, float)) or isinstance(resolution, bool) or not 0.01 <= resolution <= 90:
        raise ValueError(f"resolution must be a number of degrees in [0.01, 90], got {resolution!r}")
    image_encoder, location_encoder = _halves(model)
    from satclip.embed.images import encode_images

    emb = encode_images(image, image_encoder, device=device, units=units)
    emb = np.asarray(emb.cpu() if isinstance(emb, Tensor) else emb, dtype=np.float32)
    if emb.shape[0] != 1:
        raise ShapeError(f"similarity_map takes one image, got {emb.shape[0]}")
    lon = np.arange(-180.0 + resolution / 2, 180.0, resolution)
    lat = np.arange(-90.0 + resolution / 2, 90.0, resolution)
    lon, lat = lon[lon < 180.0], lat[lat < 90.0]
    cells = np.stack(np.meshgrid(lon, lat), axis=-1).reshape(-1, 2)
    if cells.shape[0] <= _MAP_CACHE_LIMIT:
        cand = candidate_embeddings(location_encoder, cells, device=device, cache_dir=cache_dir)
        values = cosine(emb, cand)[0]
    else:  # too many cells to keep: encode and compare chunk by chunk
        from satclip.embed.locations import encode

        values = np.empty(cells.shape[0])
        for start in range(0, cells.shape[0], 262_144):
            chunk = cells[start : start + 262_144]
            values[start : start + chunk.shape[0]] = cosine(
                emb, np.asarray(encode(chunk, location_encoder, device=device))
            )[0]
    values = values.reshape(lat.size, lon.size)
    if xarray is not False:
        try:
            import xarray as xr
        except ImportError:
            if xarray:
                raise SatclipError("similarity_map(xarray=True) needs xarray: pip install xarray") from None
        else:
            return xr.DataArray(
                values,
                coords={"lat": lat, "lon": lon},
                dims=("lat", "lon"),
                name="similarity",
                attrs={"long_name": "SatCLIP image-location cosine similarity", "resolution_deg": resolution},
            )
    return SimilarityMap(values, lon, lat)


def candidate_embeddings(
    location_encoder: LocationEncoder,
    candidates: np.ndarray,
    *,
    device: torch.device | str | None = None,
    cache_dir: PathLike | None = None,
) -> np.ndarray:
    """float32 location embeddings of ``candidates``, cached per (weights, candidates)."""
    key = (fingerprint(location_encoder), _array_digest(candidates))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    path = Path(cache_dir) / f"satclip-candidates-{key[0][:16]}-{key[1][:16]}.npy" if cache_dir is not None else None
    emb: np.ndarray | None = None
    if path is not None and path.is_file():
        loaded = np.load(path, allow_pickle=False)
        if loaded.dtype == np.float32 and loaded.ndim == 2 and loaded.shape[0] == candidates.shape[0]:
            emb = loaded
    if emb is None:
        from satclip.embed.locations import encode

        emb = np.asarray(encode(candidates, location_encoder, device=device), dtype=np.float32)
        if path is not None:
            from satclip.io.publish import publish

            path.parent.mkdir(parents=True, exist_ok=True)
            computed = emb
            # Replaced in one step: a reader in another process never sees a half-written file.
            publish(path, lambda tmp: np.save(tmp, computed), overwrite=True)
    _CACHE.put(key, emb)
    return emb


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) cosine similarities of the rows of ``a`` and ``b``, in float64."""
    a64 = a.astype(np.float64)
    a64 /= np.maximum(np.linalg.norm(a64, axis=1, keepdims=True), 1e-300)
    out = np.empty((a.shape[0], b.shape[0]))
    for start in range(0, b.shape[0], _CANDIDATE_CHUNK):
        chunk = b[start : start + _CANDIDATE_CHUNK].astype(np.float64)
        chunk /= np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-300)
        out[:, start : start + chunk.shape[0]] = a64 @ chunk.T
    return out


def top_k_cosine(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and indices of the ``k`` keys most cosine-similar to each query, best first.

    Runs over chunks of keys (and of queries), so memory is O(chunk) whatever the sizes.
    """
    scores = np.empty((queries.shape[0], k))
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    for q0 in range(0, queries.shape[0], 64):
        sims = cosine(queries[q0 : q0 + 64], keys)
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        indices[q0 : q0 + best.shape[0]] = best
        scores[q0 : q0 + best.shape[0]] = np.take_along_axis(sims, best, axis=1)
    return scores, indices


def fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's weights (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------


_CACHE: LRUCache[tuple[str, str], np.ndarray] = LRUCache(4)
_LOCATION: LRUCache[Any, LocationEncoder] = LRUCache(4)


def _halves(model: SatCLIPLike) -> tuple[Any, LocationEncoder]:
    """(image model for encode_images, location encoder). A name stays a name for the image half,
    so that encode_images' per-(model, device, dtype) cache serves it; the location encoder is
    loaded once per file version."""
    if isinstance(model, SatCLIP):
        return model.image_encoder, model.location
    if isinstance(model, tuple):
        if len(model) != 2 or not isinstance(model[0], ImageEncoder) or not isinstance(model[1], LocationEncoder):
            raise SatclipError("model as a tuple must be (ImageEncoder, LocationEncoder)")
        return model
    if isinstance(model, torch.nn.Module):
        raise SatclipError(
            "locate needs both halves: a model name/path, a satclip.SatCLIP model, or (image_encoder, "
            f"location_encoder); got a {type(model).__name__}"
        )
    from satclip.io.checkpoint import load
    from satclip.models.registry import cache_key

    source = cache_key(model)
    location = _LOCATION.get(source)
    if location is None:
        location = load(model)
        _LOCATION.put(source, location)
    return model, location


def _as_lonlat(candidates: Any) -> np.ndarray:
    from satclip.points.inputs import as_points

    points, _ = as_points(candidates)  # validates shape, finiteness and ranges like encode
    return points.cpu().numpy().astype(np.float64, copy=False)


def _array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a, dtype=np.float64)
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()


__all__ = [
    "DEFAULT_GRID_POINTS",
    "LocateResult",
    "Refiner",
    "SimilarityMap",
    "candidate_embeddings",
    "cosine",
    "fibonacci_grid",
    "fingerprint",
    "locate",
    "similarity_map",
    "top_k_cosine",
]
