"""Which model a name means: the registry of released SatCLIP models and source resolution.

Models are named by a short name from :data:`MODELS` (``"resnet50-l40"``), the Hub repository
of a released model (``"microsoft/SatCLIP-ResNet50-L40"``), an explicit Hub file
(``"hf://owner/repo/path/in/repo.safetensors"``), a local path, or a folder or other Hub repository
written by ``save_pretrained`` (its ``model.safetensors``). :func:`parse_source` turns a
name into a :class:`ModelSource` without touching the network; :func:`resolve` gives the local
file, fetching Hub files through :mod:`satclip.io.hub` (its cache, ``HF_HUB_OFFLINE`` and
``cache_dir`` apply; only the one checkpoint file is downloaded).

The file formats themselves are :mod:`satclip.io.checkpoint`'s job. This module needs no torch.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from satclip.errors import CheckpointError
from satclip.io.hub import PRETRAINED_WEIGHTS, download, parse_hub_file

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ReleasedModel:
    """A pretrained SatCLIP model published by Microsoft on the Hugging Face Hub."""

    repo_id: str
    filename: str
    #: The revision downloaded: a commit where one is publicly pinned (ViT16-L40, torchgeo's pin),
    #: else "main". Either way the cached file is checked against the digest the Hub cache names
    #: it by on every load (satclip.io.hub). ``revision=`` overrides it.
    revision: str
    vision_encoder: str
    #: The number of Legendre degrees of the location encoder's spherical harmonics.
    L: int
    #: Hidden width of the location encoder's SIREN where public evidence records it (torchgeo's
    #: weights metadata: 512 for ViT16-L40), else None. Loading never relies on it - it reads
    #: the checkpoint's own hyper-parameters - but training configs are checked against it.
    capacity: int | None = None

    @property
    def legendre_polys(self) -> int:
        """Deprecated name of :attr:`L`."""
        warnings.warn("ReleasedModel.legendre_polys is deprecated: use ReleasedModel.L", DeprecationWarning, 2)
        return self.L


#: Released capacities with a public record (see ``ReleasedModel.capacity``).
_KNOWN_CAPACITY = {("ViT16", 40): 512}


#: Commits pinned where a public record exists: torchgeo pins ViT16-L40 to this commit.
_PINNED_REVISION = {("ViT16", 40): "0ef2acc0b91d3c8cfdf4a0cc03207095989287ab"}


def _released(vision: str, vision_file: str, L: int) -> ReleasedModel:
    return ReleasedModel(
        repo_id=f"microsoft/SatCLIP-{vision}-L{L}",
        filename=f"satclip-{vision_file}-l{L}.ckpt",
        revision=_PINNED_REVISION.get((vision, L), "main"),
        vision_encoder=vision,
        L=L,
        capacity=_KNOWN_CAPACITY.get((vision, L)),
    )


#: The six released models by short name.
MODELS: dict[str, ReleasedModel] = {
    f"{short}-l{L}": _released(vision, short, L)
    for vision, short in (("ResNet18", "resnet18"), ("ResNet50", "resnet50"), ("ViT16", "vit16"))
    for L in (10, 40)
}

_RELEASED_BY_REPO = {m.repo_id.lower(): m for m in MODELS.values()}
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from; hashable, so it can key caches without touching the network."""

    kind: str  # "file" or "hub"
    location: str  # absolute path, or Hub repo id
    filename: str = ""
    revision: str = ""


def released_model(source: ModelSource) -> ReleasedModel | None:
    """The released model whose very file ``source`` names, if any (so its bytes can be checked)."""
    if source.kind != "hub":
        return None
    released = _RELEASED_BY_REPO.get(source.location.lower())
    return released if released is not None and released.filename == source.filename else None


def parse_source(model: PathLike, *, revision: str | None = None) -> ModelSource:
    """Interprets a model name without downloading anything (see :func:`satclip.load`)."""
    if not isinstance(model, (str, os.PathLike)):
        raise CheckpointError(
            f"a model is named by a string or path (or passed as a loaded LocationEncoder), got {type(model).__name__}"
        )
    text = os.fspath(model)
    if not isinstance(text, str):
        raise CheckpointError(f"model paths must be text, got {text!r}")
    if isinstance(model, str):
        released = MODELS.get(text.lower()) or _RELEASED_BY_REPO.get(text.lower())
        if released is not None:
            return ModelSource("hub", released.repo_id, released.filename, revision or released.revision)
        hub_file = parse_hub_file(text)
        if hub_file is not None:
            return ModelSource("hub", *hub_file, revision or "main")
    path = Path(text).expanduser()
    if path.is_file():
        return ModelSource("file", str(path.resolve()))
    if path.is_dir() and (path / PRETRAINED_WEIGHTS).is_file():  # a folder written by save_pretrained
        return ModelSource("file", str((path / PRETRAINED_WEIGHTS).resolve()))
    if path.exists():
        raise CheckpointError(
            f"{text!r} is not a file (expected a .ckpt or .safetensors checkpoint, or a folder "
            f"written by save_pretrained, which holds {PRETRAINED_WEIGHTS})"
        )
    if isinstance(model, str) and _REPO_ID.fullmatch(text):
        # Any other Hub repository: one written by save_pretrained (hf://owner/repo/file names other files).
        return ModelSource("hub", text, PRETRAINED_WEIGHTS, revision or "main")
    if isinstance(model, str) and not Path(text).suffix and os.sep not in text:
        raise CheckpointError(f"unknown model {text!r}: known models are {', '.join(MODELS)} (or pass a file path)")
    raise CheckpointError(f"no such checkpoint file: {text!r}")


def cache_key(model: PathLike) -> ModelSource:
    """:func:`parse_source` of ``model``, with a file source's mtime and size in it: the key of the
    caches of loaded models, which so load a rewritten file again."""
    source = parse_source(model)
    if source.kind == "file":
        stat = os.stat(source.location)
        source = ModelSource("file", source.location, str(stat.st_mtime_ns), str(stat.st_size))
    return source


def source_path(
    source: ModelSource, *, cache_dir: PathLike | None = None, local_files_only: bool | None = None
) -> Path:
    """The local file of a parsed source: the path itself, or the Hub file (downloaded if needed)."""
    if source.kind == "file":
        return Path(source.location)
    return download(
        source.location,
        source.filename,
        revision=source.revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )


def resolve(
    model: PathLike,
    *,
    cache_dir: PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> Path:
    """The local file behind a model name (downloading it from the Hub if needed)."""
    return source_path(parse_source(model, revision=revision), cache_dir=cache_dir, local_files_only=local_files_only)


__all__ = [
    "MODELS",
    "ModelSource",
    "PathLike",
    "ReleasedModel",
    "cache_key",
    "parse_source",
    "released_model",
    "resolve",
    "source_path",
]
