"""Reading and writing SatCLIP checkpoints, both halves: the file formats and their checks.

Two file formats are read:

* the released PyTorch Lightning checkpoints (``.ckpt``, also any other suffix torch can load):
  a pickle with a ``state_dict`` (location weights under ``model.location.nnet.*``, the image
  encoder under ``model.visual.*``, ``model.logit_scale``) and ``hyper_parameters``. They are
  unpickled with ``torch.load(weights_only=True)``, so a file that would need arbitrary code to
  unpickle is refused instead of run;
* satclip's own ``.safetensors`` files written by :func:`save` (and by ``save_pretrained``, as
  ``model.safetensors`` next to a ``config.json``): the location weights (``nnet.*``), optionally
  the image encoder (``visual.*``) and ``logit_scale``, and small JSON configs in the file's
  metadata. Loading them involves no pickle at all.

Every file is checked the same way whichever half is read: the zip CRCs of a ``.ckpt`` (once per
file version and process), a Hub file against the digest the Hub cache names it by
(:mod:`satclip.io.hub`), tensor shapes against the architecture, storage sizes, finiteness, a
bound on the parameter count, a model folder's ``config.json`` against its weights, and a
released model's file against what the registry says it is (L, image encoder). A CUDA device
that is not there is refused before anything is downloaded.

Which file a model name means (short names, released Hub repositories, ``hf://`` files, paths,
``save_pretrained`` folders and repositories) is :mod:`satclip.models.registry`'s job; its public
names are re-exported here as before.

dtype: :func:`load` returns float64 weights by default - the released checkpoints store
float64 and the original code runs the location encoder in float64, so a loaded model is
bit-for-bit the released one. :func:`satclip.encode` makes its own float32 copy when asked
for float32 output. :func:`load_image_encoder` returns float32 (as released).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from satclip.errors import CheckpointError, DeviceError, OutputExistsError, SatclipError, first_line
from satclip.harmonics.values import MAX_DEGREES
from satclip.io.hub import PRETRAINED_CONFIG, PRETRAINED_WEIGHTS, download, resolved_commit
from satclip.models.dtypes import check_float_dtype
from satclip.models.image import S2_CHANNELS, VIT_PATCH, ImageEncoder, ImageEncoderConfig
from satclip.models.location import LocationEncoder, SirenNet, SphericalHarmonics, build_location_encoder

# Re-exported: these were defined here before the registry had its own module.
from satclip.models.registry import (
    MODELS,
    ModelSource,
    PathLike,
    ReleasedModel,
    parse_source,
    released_model,
    resolve,
    source_path,
)

if TYPE_CHECKING:
    from satclip.models.satclip import SatCLIP

#: The architecture's hyper-parameters as the released checkpoints (and satclip's safetensors
#: metadata) name them; ``legendre_polys`` is the file format's name for ``L``.
CONFIG_KEYS = ("legendre_polys", "embed_dim", "capacity", "num_hidden_layers")

#: ``hyper_parameters["vision_layers"]`` of the released checkpoints -> satclip's encoder name.
RELEASED_VISION_LAYERS: dict[str, str] = {
    "moco_resnet18": "resnet18",
    "moco_resnet50": "resnet50",
    "moco_vit16": "vit16",
}
#: Prefixes and metadata keys of satclip's safetensors files: the location network, the image
#: encoder (timm names below ``visual.``) and the temperature of the full model.
LOCATION_PREFIX = "nnet."
SAFETENSORS_PREFIX = "visual."
LOCATION_CONFIG_KEY = "satclip_config"
SAFETENSORS_CONFIG_KEY = "satclip_image_config"
LOGIT_SCALE_KEY = "logit_scale"


@dataclass(frozen=True)
class EncoderConfig:
    """The hyper-parameters that define a location encoder's architecture.

    ``L`` is the number of Legendre degrees; the files store it under the released checkpoints'
    hyper-parameter name ``legendre_polys`` (:data:`CONFIG_KEYS`).
    """

    L: int
    embed_dim: int = 256
    capacity: int = 256
    num_hidden_layers: int = 2
    basis: str = "satclip"

    def __post_init__(self) -> None:
        for name, low, high in (
            ("L", 1, MAX_DEGREES),
            ("embed_dim", 1, 1 << 20),
            ("capacity", 1, 1 << 20),
            ("num_hidden_layers", 1, 1024),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                # Named as the file names it: a bad value almost always comes from a checkpoint.
                label = "legendre_polys (L)" if name == "L" else name
                raise CheckpointError(f"hyper-parameter {label} must be an integer in [{low}, {high}], got {value!r}")
        if self.basis not in ("satclip", "orthonormal"):
            raise CheckpointError(f'hyper-parameter basis must be "satclip" or "orthonormal", got {self.basis!r}')

    @classmethod
    def of(cls, model: LocationEncoder) -> EncoderConfig:
        """The config of a model built by :func:`~satclip.models.location.build_location_encoder`."""
        if (
            not isinstance(model, LocationEncoder)
            or not isinstance(model.posenc, SphericalHarmonics)
            or not isinstance(model.nnet, SirenNet)
        ):
            raise CheckpointError(
                f"only LocationEncoder(SphericalHarmonics, SirenNet) models can be saved, got {type(model).__name__}"
            )
        return cls(
            L=model.posenc.L,
            embed_dim=model.nnet.last_layer.dim_out,
            capacity=model.nnet.dim_hidden,
            num_hidden_layers=model.nnet.num_layers,
            basis=model.posenc.basis,
        )

    def build(self) -> LocationEncoder:
        return build_location_encoder(
            self.L,
            self.embed_dim,
            self.capacity,
            self.num_hidden_layers,
            self.basis,  # type: ignore[arg-type]
        )

    @classmethod
    def from_hyper_parameters(cls, hparams: Mapping[str, Any], basis: str = "satclip") -> EncoderConfig:
        """The config from file hyper-parameters (the :data:`CONFIG_KEYS`, all present)."""
        return cls(
            L=hparams["legendre_polys"],
            embed_dim=hparams["embed_dim"],
            capacity=hparams["capacity"],
            num_hidden_layers=hparams["num_hidden_layers"],
            basis=basis,
        )

    def to_hyper_parameters(self) -> dict[str, Any]:
        """The config under the file's key names (``satclip_config`` of :func:`save`)."""
        return {
            "legendre_polys": self.L,
            "embed_dim": self.embed_dim,
            "capacity": self.capacity,
            "num_hidden_layers": self.num_hidden_layers,
            "basis": self.basis,
        }

    @property
    def legendre_polys(self) -> int:
        """Deprecated name of :attr:`L`."""
        warnings.warn("EncoderConfig.legendre_polys is deprecated: use EncoderConfig.L", DeprecationWarning, 2)
        return self.L

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names (relative to ``nnet.``) and shapes of every tensor of the network."""
        shapes: dict[str, tuple[int, ...]] = {}
        dim_in = self.L**2
        for i in range(self.num_hidden_layers):
            shapes[f"layers.{i}.weight"] = (self.capacity, dim_in)
            shapes[f"layers.{i}.bias"] = (self.capacity,)
            dim_in = self.capacity
        shapes["last_layer.weight"] = (self.embed_dim, self.capacity)
        shapes["last_layer.bias"] = (self.embed_dim,)
        return shapes


# ----------------------------------------------------------------------------------------
# Public API


def load(
    model: PathLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float64,
    cache_dir: PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> LocationEncoder:
    """Loads a SatCLIP location encoder, in eval mode.

    Parameters
    ----------
    model:
        A short name from :data:`MODELS` (``"resnet50-l40"``), a released model's Hub
        repository (``"microsoft/SatCLIP-ResNet50-L40"``), a Hub repository or local folder
        written by ``save_pretrained`` (``"owner/my-satclip"``), a Hub file
        (``"hf://owner/repo/file.safetensors"``), or a local ``.ckpt``/``.safetensors`` path.
    device:
        Where the weights go (default: CPU).
    dtype:
        ``torch.float64`` (default, as released) or ``torch.float32``.
    cache_dir, local_files_only, revision:
        Passed to ``huggingface_hub.hf_hub_download`` for Hub models. ``local_files_only=None``
        means "only if the ``HF_HUB_OFFLINE`` environment variable is set" (read at call time).
        ``revision`` overrides the registry's pinned revision.

    Raises
    ------
    CheckpointError
        The name is unknown, the file is missing, truncated, damaged in the Hub cache, unsafe to
        unpickle, or does not describe a spherical-harmonics + SIREN location encoder (the
        message says which hyper-parameter or tensor is wrong).
    DeviceError
        ``device`` is a CUDA device and CUDA is not available (checked before any download).
    """
    return _load_location(model, device, dtype, cache_dir, local_files_only, revision, pretrained=False)


def load_image_encoder(
    model: PathLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
    cache_dir: PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> ImageEncoder:
    """Loads the image encoder of a SatCLIP checkpoint, in eval mode.

    Parameters
    ----------
    model:
        As for :func:`load`: a short name (``"resnet50-l40"``), a released model's Hub
        repository, a ``save_pretrained`` folder or repository of a full model,
        ``hf://owner/repo/file``, or a local ``.ckpt`` (released Lightning format, read with
        ``torch.load(weights_only=True)``) or ``.safetensors`` file written by
        ``satclip.save(..., image_encoder=...)``.
    device:
        Where the weights go (default: CPU).
    dtype:
        ``torch.float32`` (default; the released image weights are float32) or ``torch.float64``.
    cache_dir, local_files_only, revision:
        As for :func:`load` (Hub models only).

    Raises
    ------
    CheckpointError
        Unknown name, unreadable or unsafe file, a checkpoint without image-encoder weights
        (``model.visual.*``), an unsupported ``vision_layers``, an image encoder that is not the
        one the released model has, or a tensor that is missing, has the wrong shape or holds
        NaN/inf (the message names it).
    DeviceError
        As for :func:`load`.
    """
    dtype = check_float_dtype(dtype)
    opened = _open(model, device, cache_dir, local_files_only, revision, want=(SAFETENSORS_PREFIX,))
    encoder = _image_encoder(opened, dtype)
    _check_folder_config(opened, image=encoder.config)
    return encoder.to(device=_device(device)).eval()


def load_satclip(
    model: PathLike,
    *,
    device: torch.device | str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> SatCLIP:
    """Loads the full two-tower model (image encoder, location encoder, ``logit_scale``), in eval
    mode: the location half in float64 and the image half in float32, as released.

    ``model`` is named as for :func:`load`; the file must hold both halves (a released
    checkpoint, a ``save_pretrained`` folder or repository of a full model, or a file written by
    :func:`save` from a :class:`~satclip.models.satclip.SatCLIP`). Raises as :func:`load` and
    :func:`load_image_encoder` do, and :class:`CheckpointError` for a file without ``logit_scale``.
    """
    return _load_full(model, device, cache_dir, local_files_only, revision, pretrained=False)


def load_pretrained(
    cls: type[Any],
    model: PathLike,
    *,
    device: torch.device | str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    **kwargs: Any,
) -> Any:
    """``cls.from_pretrained(model)`` for :class:`~satclip.models.location.LocationEncoder`
    (``kwargs``: ``dtype``) and :class:`~satclip.models.satclip.SatCLIP`: as :func:`load` and
    :func:`load_satclip`, except that a folder or repository written by ``save_pretrained`` must
    have its ``config.json`` (fetched from the Hub too) and it must describe the weights."""
    if issubclass(cls, LocationEncoder):
        dtype = kwargs.pop("dtype", torch.float64)
        _no_other_arguments(cls, kwargs)
        return _load_location(model, device, dtype, cache_dir, local_files_only, revision, pretrained=True)
    from satclip.models.satclip import SatCLIP

    if issubclass(cls, SatCLIP):
        _no_other_arguments(cls, kwargs)
        return _load_full(model, device, cache_dir, local_files_only, revision, pretrained=True)
    raise CheckpointError(f"satclip reads LocationEncoder and SatCLIP models, not {cls.__name__}")


def _no_other_arguments(cls: type[Any], kwargs: Mapping[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"{cls.__name__}.from_pretrained() got unexpected arguments: {', '.join(sorted(kwargs))}")


def _load_location(
    model: PathLike,
    device: torch.device | str | None,
    dtype: torch.dtype | str,
    cache_dir: PathLike | None,
    local_files_only: bool | None,
    revision: str | None,
    *,
    pretrained: bool,
) -> LocationEncoder:
    dtype = check_float_dtype(dtype)
    opened = _open(model, device, cache_dir, local_files_only, revision, want=(LOCATION_PREFIX,), pretrained=pretrained)
    encoder = _location_encoder(opened)
    _check_folder_config(opened, location=EncoderConfig.of(encoder))
    return encoder.to(device=_device(device), dtype=dtype).eval()


def _load_full(
    model: PathLike,
    device: torch.device | str | None,
    cache_dir: PathLike | None,
    local_files_only: bool | None,
    revision: str | None,
    *,
    pretrained: bool,
) -> SatCLIP:
    from satclip.models.satclip import SatCLIP

    want = (LOCATION_PREFIX, SAFETENSORS_PREFIX, LOGIT_SCALE_KEY)
    opened = _open(model, device, cache_dir, local_files_only, revision, want=want, pretrained=pretrained)
    location = _location_encoder(opened)
    image = _image_encoder(opened, torch.float32)
    logit_scale = _logit_scale(opened)
    _check_folder_config(opened, location=EncoderConfig.of(location), image=image.config, full=True)
    full = SatCLIP(image, location, logit_scale=logit_scale)
    return full.to(device=_device(device)).eval()


def save(
    model: LocationEncoder | SatCLIP,
    path: PathLike,
    *,
    overwrite: bool = False,
    image_encoder: ImageEncoder | None = None,
) -> Path:
    """Writes ``model``'s weights and config to a ``.safetensors`` file that :func:`load` reads.

    The architecture (``legendre_polys``, ``embed_dim``, ``capacity``, ``num_hidden_layers``,
    ``basis``) is stored as JSON in the file's metadata under ``"satclip_config"``, so the
    file is self-contained and loads without pickle. Weights keep their dtype. An existing
    file is only replaced with ``overwrite=True``. ``image_encoder`` (a
    :class:`satclip.models.image.ImageEncoder`) adds the image half (tensors ``visual.*``,
    config ``"satclip_image_config"``), which :func:`load_image_encoder` reads back. A full
    :class:`~satclip.models.satclip.SatCLIP` model writes both halves and its ``logit_scale``
    (read back by :func:`load_satclip`).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"satclip saves .safetensors files; got the path {str(path)!r}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass overwrite=True to replace it")
    tensors, metadata = safetensors_entries(model, image_encoder=image_encoder)
    # publish: an interrupted save never leaves a torn file under the final name, and without
    # overwrite a file that appeared while saving is not clobbered either.
    from satclip.io.publish import publish

    return publish(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), overwrite=overwrite)


def safetensors_entries(
    model: LocationEncoder | SatCLIP, *, image_encoder: ImageEncoder | None = None
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and metadata that store ``model`` (and ``image_encoder``) in a satclip
    safetensors file (see :func:`save`)."""
    location, image, logit_scale = _halves(model, image_encoder)
    config = EncoderConfig.of(location)
    tensors = {
        name: t.detach().to("cpu").contiguous()
        for name, t in location.state_dict().items()
        if name.startswith(LOCATION_PREFIX)
    }
    metadata = {"format": "pt", LOCATION_CONFIG_KEY: json.dumps(config.to_hyper_parameters(), sort_keys=True)}
    if image is not None:
        tensors.update(
            {
                SAFETENSORS_PREFIX + name: t.detach().to("cpu").contiguous()
                for name, t in image.visual.state_dict().items()
            }
        )
        metadata[SAFETENSORS_CONFIG_KEY] = json.dumps(asdict(image.config), sort_keys=True)
    if logit_scale is not None:
        tensors[LOGIT_SCALE_KEY] = logit_scale.detach().to("cpu").reshape(()).contiguous()
    return tensors, metadata


def pretrained_config(model: LocationEncoder | SatCLIP) -> dict[str, Any]:
    """The ``config.json`` of a ``save_pretrained`` folder: which model it is and its
    architecture, under the same keys as the weights' metadata."""
    location, image, _ = _halves(model, None)
    config: dict[str, Any] = {
        "satclip_model": "SatCLIP" if image is not None else "LocationEncoder",
        "format_version": PRETRAINED_FORMAT_VERSION,
        "weights": PRETRAINED_WEIGHTS,
        "location_encoder": EncoderConfig.of(location).to_hyper_parameters(),
    }
    if image is not None:
        config["image_encoder"] = asdict(image.config)
    return config


#: Version of the ``save_pretrained`` folder layout (``config.json``'s ``format_version``).
PRETRAINED_FORMAT_VERSION = 1


def _halves(
    model: Any, image_encoder: ImageEncoder | None
) -> tuple[LocationEncoder, ImageEncoder | None, Tensor | None]:
    """(location encoder, image encoder or None, logit_scale or None) of what :func:`save` takes."""
    if _is_satclip(model):
        if image_encoder is not None:
            raise CheckpointError("a full SatCLIP model already holds its image encoder; do not pass image_encoder=")
        return model.location, model.image_encoder, model.logit_scale
    if image_encoder is not None and not isinstance(image_encoder, ImageEncoder):
        raise CheckpointError(
            "image_encoder must be a satclip ImageEncoder (from satclip.load_image_encoder), "
            f"got {type(image_encoder).__name__}"
        )
    return model, image_encoder, None


def _is_satclip(model: Any) -> bool:
    # Imported only when it can be one: models.satclip imports the image backbones' module.
    if isinstance(model, (LocationEncoder, ImageEncoder)) or not isinstance(model, torch.nn.Module):
        return False
    from satclip.models.satclip import SatCLIP

    return isinstance(model, SatCLIP)


# ----------------------------------------------------------------------------------------
# Opening a source: one path for every loader


@dataclass
class _Opened:
    """A model's file, read once, whichever halves are then built from it."""

    source: ModelSource
    path: Path
    #: "safetensors" or "ckpt"
    kind: str
    #: safetensors metadata, or the Lightning checkpoint's hyper_parameters
    header: Mapping[str, Any]
    #: tensors by name (the state_dict of a .ckpt; the requested tensors of a .safetensors)
    tensors: Mapping[str, Any]
    #: the folder's config.json, where the weights are a save_pretrained folder's
    folder_config: Path | None = None
    released: ReleasedModel | None = field(default=None)


def _device(device: torch.device | str | None) -> torch.device | None:
    return torch.device(device) if device is not None else None


def _check_device(device: torch.device | str | None) -> None:
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"device {device!r} is not a device torch knows: {first_line(err)}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        # Checked first, before any download; the same message as encode(device="cuda").
        raise DeviceError(f"device {device!r} was requested but CUDA is not available here")


def _open(
    model: PathLike,
    device: torch.device | str | None,
    cache_dir: PathLike | None,
    local_files_only: bool | None,
    revision: str | None,
    *,
    want: tuple[str, ...],
    pretrained: bool = False,
) -> _Opened:
    """Checks the device, resolves ``model`` to its file (downloading it if needed) and reads it.
    ``want``: the tensor-name prefixes a safetensors file is read for (the others stay on disk).
    ``pretrained``: a ``save_pretrained`` folder's weights need their ``config.json``."""
    _check_device(device)
    source = parse_source(model, revision=revision)
    try:
        path = source_path(source, cache_dir=cache_dir, local_files_only=local_files_only)
    except CheckpointError as err:
        if source.kind == "hub" and source.filename == PRETRAINED_WEIGHTS and released_model(source) is None:
            raise CheckpointError(
                f"{err} ({source.location} is not a released model ({', '.join(MODELS)}), so it was read as a "
                f"repository written by save_pretrained; name any other file as hf://owner/repo/file)"
            ) from err.__cause__
        raise
    required = pretrained and path.name == PRETRAINED_WEIGHTS
    folder_config = _folder_config(source, path, cache_dir, local_files_only, required=required)
    header: Mapping[str, Any]
    tensors: Mapping[str, Any]
    if _is_safetensors(path):
        header, tensors = _read_safetensors(path, want)
        kind = "safetensors"
    else:
        header, tensors = _read_lightning_checkpoint(path)
        kind = "ckpt"
    return _Opened(source, path, kind, header, tensors, folder_config, released_model(source))


def _folder_config(
    source: ModelSource, path: Path, cache_dir: PathLike | None, local_files_only: bool | None, *, required: bool
) -> Path | None:
    """The ``config.json`` next to a ``save_pretrained`` folder's weights: a local folder's (if
    present), a Hub repository's when ``required`` (fetched at the weights' commit), else the
    one already in the cache next to them."""
    if path.name != PRETRAINED_WEIGHTS:
        return None
    sibling = path.parent / PRETRAINED_CONFIG
    if source.kind == "hub" and required:
        commit = resolved_commit(path) or source.revision
        return download(
            source.location, PRETRAINED_CONFIG, revision=commit, cache_dir=cache_dir, local_files_only=local_files_only
        )
    if sibling.is_file():
        return sibling
    if required:
        raise CheckpointError(
            f"{path.parent} has no {PRETRAINED_CONFIG}: it is not a folder written by save_pretrained"
        )
    return None


# ----------------------------------------------------------------------------------------
# Building the halves from an opened file


def _location_encoder(opened: _Opened) -> LocationEncoder:
    source = str(opened.path)
    if opened.kind == "safetensors":
        config = _location_config_from_metadata(opened.header, source)
        prefix = LOCATION_PREFIX
    else:
        config = _config_from_hyper_parameters(opened.header, source=source)
        prefix_found = next((p for p in _NNET_PREFIXES if f"{p}layers.0.weight" in opened.tensors), None)
        if prefix_found is None:
            raise CheckpointError(
                f"{source} holds no location-encoder weights: none of "
                f"{', '.join(p + 'layers.0.weight' for p in _NNET_PREFIXES)} is in its state_dict"
            )
        prefix = prefix_found
    released = opened.released
    if released is not None and config.L != released.L:
        # A damaged or substituted cache entry: better to stop than to encode with the wrong model.
        raise CheckpointError(
            f"{source} says legendre_polys={config.L}, but {released.repo_id} is an "
            f"L={released.L} model; the cached file is not the released one"
        )
    return _build_from_tensors(config, opened.tensors, prefix, source=source)


def _image_encoder(opened: _Opened, dtype: torch.dtype) -> ImageEncoder:
    source = str(opened.path)
    if opened.kind == "safetensors":
        config, tensors = _image_from_safetensors(opened.header, opened.tensors, source)
    else:
        config, tensors = _image_from_lightning(opened.header, opened.tensors, source)
    released = opened.released
    if released is not None:
        expected = released.vision_encoder.lower()
        if config.architecture != expected:
            raise CheckpointError(
                f"{source} holds a {config.architecture} image encoder, but {released.repo_id} is a "
                f"{released.vision_encoder} model; the cached file is not the released one"
            )
        file_L = opened.header.get("legendre_polys") if opened.kind == "ckpt" else None
        if isinstance(file_L, int) and file_L != released.L:
            raise CheckpointError(
                f"{source} says legendre_polys={file_L}, but {released.repo_id} is an "
                f"L={released.L} model; the cached file is not the released one"
            )
    return _build_image(config, tensors, source=source, dtype=dtype)


def _logit_scale(opened: _Opened) -> float:
    source = str(opened.path)
    keys = (LOGIT_SCALE_KEY,) if opened.kind == "safetensors" else ("model.logit_scale", LOGIT_SCALE_KEY)
    value = next((opened.tensors[k] for k in keys if k in opened.tensors), None)
    if value is None:
        raise CheckpointError(
            f"{source} holds no logit_scale: it was not saved from a full SatCLIP model "
            "(satclip.load and satclip.load_image_encoder read its halves)"
        )
    if not isinstance(value, Tensor) or value.numel() != 1 or not value.is_floating_point():
        raise CheckpointError(f"{source}: logit_scale must be one floating-point number, got {value!r:.80}")
    scale = float(value.reshape(()))
    if not math.isfinite(scale):
        raise CheckpointError(f"{source}: logit_scale is {scale}")
    return scale


def _check_folder_config(
    opened: _Opened,
    *,
    location: EncoderConfig | None = None,
    image: ImageEncoderConfig | None = None,
    full: bool = False,
) -> None:
    """A ``save_pretrained`` folder's ``config.json`` must describe the weights next to it."""
    path = opened.folder_config
    if path is None:
        return
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not readable JSON: {first_line(err)}") from None
    if not isinstance(raw, dict) or raw.get("satclip_model") not in ("LocationEncoder", "SatCLIP"):
        raise CheckpointError(
            f"{path} is not a satclip model config (it needs satclip_model: LocationEncoder or SatCLIP)"
        )
    if raw.get("format_version") != PRETRAINED_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version={raw.get('format_version')!r}; this satclip reads version "
            f"{PRETRAINED_FORMAT_VERSION} (a newer satclip wrote it?)"
        )
    if full and raw["satclip_model"] != "SatCLIP":
        raise CheckpointError(f"{path} describes a {raw['satclip_model']}, not a full SatCLIP model")
    checks: list[tuple[str, dict[str, Any]]] = []
    if location is not None:
        checks.append(("location_encoder", location.to_hyper_parameters()))
    if image is not None:
        checks.append(("image_encoder", asdict(image)))
    for section, actual in checks:
        stated = raw.get(section)
        if not isinstance(stated, dict):
            raise CheckpointError(f"{path} has no {section} section, but {opened.path.name} holds one")
        for key, value in actual.items():
            if stated.get(key) != value:
                raise CheckpointError(
                    f"{path} says {section}.{key}={stated.get(key)!r}, but {opened.path.name} holds "
                    f"{key}={value!r}: the config does not describe these weights"
                )


# ----------------------------------------------------------------------------------------
# Reading


#: Where the location encoder's network lives in a Lightning checkpoint, most specific first:
#: the released files hold it under ``model.location.nnet`` and alias it as ``model.nnet``.
_NNET_PREFIXES = ("model.location.nnet.", "location.nnet.", "model.nnet.", "nnet.")
#: Where the image encoder lives in a Lightning checkpoint's state_dict, most specific first.
_VISUAL_PREFIXES = ("model.visual.", "visual.")


def _is_safetensors(path: Path) -> bool:
    """A ``.safetensors`` name, or the start of one (an 8-byte header length, then the JSON
    header): a content-addressed blob or a link to it has no suffix to go by."""
    if path.suffix.lower() == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False  # reported by the reader that opens it
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path, want: tuple[str, ...]) -> tuple[dict[str, str], dict[str, Tensor]]:
    """(metadata, the tensors whose names start with one of ``want``); no pickle involved."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys() if name.startswith(want)}
    except Exception as err:  # SafetensorError, OSError: truncated or not a safetensors file
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {first_line(err)}"
        ) from err
    return metadata, tensors


def _location_config_from_metadata(metadata: Mapping[str, str], source: str) -> EncoderConfig:
    if LOCATION_CONFIG_KEY not in metadata:
        raise CheckpointError(
            f"{source} has no {LOCATION_CONFIG_KEY} metadata: it was not written by satclip.save, "
            "so its architecture is unknown"
        )
    try:
        raw = json.loads(metadata[LOCATION_CONFIG_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{source}: {LOCATION_CONFIG_KEY} metadata is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: {LOCATION_CONFIG_KEY} metadata must be a JSON object")
    missing = [k for k in (*CONFIG_KEYS, "basis") if k not in raw]
    if missing:
        raise CheckpointError(f"{source}: {LOCATION_CONFIG_KEY} lacks {', '.join(missing)}")
    try:
        return EncoderConfig.from_hyper_parameters(raw, basis=raw["basis"])
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None


def _read_lightning_checkpoint(path: Path) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(hyper_parameters, state_dict) of a Lightning checkpoint, unpickled safely."""
    checkpoint = _torch_load_safely(path)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a SatCLIP Lightning checkpoint: it has no 'state_dict'")
    state_dict = checkpoint["state_dict"]
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, not a mapping")
    if not isinstance(hparams, Mapping):
        raise CheckpointError(f"{path} has no 'hyper_parameters', so the model's architecture is unknown")
    return hparams, state_dict


def _image_from_safetensors(
    metadata: Mapping[str, str], tensors: Mapping[str, Tensor], source: str
) -> tuple[ImageEncoderConfig, dict[str, Tensor]]:
    image = {k[len(SAFETENSORS_PREFIX) :]: v for k, v in tensors.items() if k.startswith(SAFETENSORS_PREFIX)}
    if SAFETENSORS_CONFIG_KEY not in metadata or not image:
        raise CheckpointError(
            f"{source} holds no image-encoder weights: it was saved without image_encoder= (location half only)"
        )
    try:
        raw = json.loads(metadata[SAFETENSORS_CONFIG_KEY])
        config = ImageEncoderConfig(**{k: raw[k] for k in ("architecture", "embed_dim", "in_channels", "image_size")})
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{source}: {SAFETENSORS_CONFIG_KEY} metadata is malformed: {err!r}") from None
    except SatclipError as err:  # an architecture or size the image encoder cannot have
        raise CheckpointError(f"{source}: {SAFETENSORS_CONFIG_KEY} metadata: {err}") from None
    return config, image


def _image_from_lightning(
    hparams: Mapping[str, Any], state_dict: Mapping[str, Any], source: str
) -> tuple[ImageEncoderConfig, dict[str, Any]]:
    prefix = next((p for p in _VISUAL_PREFIXES if any(k.startswith(p) for k in state_dict)), None)
    if prefix is None:
        raise CheckpointError(
            f"{source} holds no image-encoder weights (no model.visual.* tensors): it has only the location "
            "half; satclip.load reads that one"
        )
    tensors = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    architecture = _architecture_from_hparams(hparams, source=source)
    return _image_config_from_tensors(architecture, tensors, hparams, source=source), tensors


def _architecture_from_hparams(hparams: Mapping[str, Any], *, source: str) -> str:
    from satclip.models.backbones import ARCHITECTURES

    vision = hparams.get("vision_layers")
    if isinstance(vision, str) and vision in RELEASED_VISION_LAYERS:
        return RELEASED_VISION_LAYERS[vision]
    name = hparams.get("image_encoder")  # checkpoints written by satclip-train
    if isinstance(name, str) and name in ARCHITECTURES:
        return name
    if vision is None and name is None:
        raise CheckpointError(f"{source}: hyper_parameters name no image encoder (no vision_layers or image_encoder)")
    raise CheckpointError(
        f"{source}: image encoder vision_layers={vision!r} is not supported; satclip reads the released "
        f"{', '.join(RELEASED_VISION_LAYERS)} encoders (CLIP's own ResNet/ViT variants are not supported)"
    )


def _image_config_from_tensors(
    architecture: str, tensors: Mapping[str, Any], hparams: Mapping[str, Any], *, source: str
) -> ImageEncoderConfig:
    """Sizes read off the weights (so a config cannot disagree with them), checked against hparams."""
    vit = architecture.startswith("vit")
    stem, head = ("patch_embed.proj.weight", "head.weight") if vit else ("conv1.weight", "fc.weight")
    for key in (stem, head) + (("pos_embed",) if vit else ()):
        if not isinstance(tensors.get(key), Tensor):
            raise CheckpointError(f"{source}: image-encoder tensor model.visual.{key} is missing ({architecture})")
    head_w, stem_w = tensors[head], tensors[stem]
    if head_w.ndim != 2 or stem_w.ndim != 4:
        raise CheckpointError(
            f"{source}: model.visual.{head} / {stem} have shapes {tuple(head_w.shape)} / {tuple(stem_w.shape)}"
        )
    embed_dim, in_channels = int(head_w.shape[0]), int(stem_w.shape[1])
    if in_channels != S2_CHANNELS:
        raise CheckpointError(
            f"{source}: the image encoder takes {in_channels} channels; satclip feeds the {S2_CHANNELS} Sentinel-2 bands"
        )
    hp_dim = hparams.get("embed_dim")
    if isinstance(hp_dim, int) and hp_dim != embed_dim:
        raise CheckpointError(
            f"{source}: hyper_parameters say embed_dim={hp_dim}, but the image head has {embed_dim} outputs"
        )
    image_size = 224
    if vit:
        tokens = int(tensors["pos_embed"].shape[1]) - 1  # one class token
        grid = math.isqrt(max(tokens, 0))
        if grid < 1 or grid * grid != tokens:
            raise CheckpointError(f"{source}: model.visual.pos_embed has {tokens + 1} tokens, not 1 + a square grid")
        image_size = grid * VIT_PATCH
    elif isinstance(hparams.get("image_size"), int):
        image_size = hparams["image_size"]
    try:
        return ImageEncoderConfig(architecture, embed_dim, in_channels, image_size)
    except SatclipError as err:
        raise CheckpointError(f"{source}: {err}") from None


def _torch_load_safely(path: Path) -> Any:
    is_zip = _check_container(path)
    try:
        # mmap: a released file is mostly vision weights; map it instead of reading it all. It also
        # means no tensor is materialised before _build_from_tensors has checked its size.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        message = str(err)
        detail = re.search(r"GLOBAL ([\w.]+)", message)
        if detail is not None or "unsupported global" in message.lower():
            what = f" (it references {detail.group(1)})" if detail else ""
            raise CheckpointError(
                f"refusing to load {path}: unpickling it would need arbitrary code{what}. "
                "satclip only unpickles plain tensors and containers (torch.load weights_only=True); "
                "a genuine SatCLIP checkpoint needs nothing else"
            ) from err
        raise CheckpointError(f"{path} is not a checkpoint (corrupt?): {first_line(err)}") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError... for damaged files
        raise CheckpointError(
            f"{path} could not be read as a PyTorch checkpoint (truncated or corrupt?): {first_line(err)}"
        ) from err


#: How torch's legacy (pre-1.6, non-zip) files start: a pickle (protocol 2+) of a magic number.
_PICKLE_START = b"\x80"


#: Zip checkpoints whose CRC-32s this process has checked, by (device, inode, size, mtime in ns):
#: the location and image encoders of one file (``satclip locate``), or repeated loads, read a
#: released file (100s of MB) through zlib once, and a file that is rewritten is checked again.
_CRC_CHECKED: set[tuple[int, int, int, int]] = set()


def _check_container(path: Path) -> bool:
    """Whether ``path`` is a zip checkpoint, after checking every record's CRC-32 (torch.load does
    not, so flipped bytes would load as wrong weights; once per file version and process, see
    ``_CRC_CHECKED``). Raises CheckpointError naming a damaged record, or saying the file is no
    checkpoint at all."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            st = os.fstat(f.fileno())
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if version in _CRC_CHECKED:
        return True
    if not zipfile.is_zipfile(path):
        if not head:
            raise CheckpointError(f"{path} is empty (truncated or corrupt?)")
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path} is a zip archive without its end (truncated or corrupt?)")
        if not head.startswith(_PICKLE_START):
            raise CheckpointError(
                f"{path} is not a checkpoint: it is neither a PyTorch zip archive nor a pickle "
                f"(it starts with the bytes {head!r})"
            )
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise CheckpointError(f"{path} is a damaged checkpoint (truncated or corrupt zip archive): {err}") from None
    if bad is not None:
        raise CheckpointError(
            f"{path} is a damaged checkpoint: the CRC-32 of its record {bad!r} does not match its bytes "
            "(a corrupt download or disk?); download or copy it again"
        )
    _CRC_CHECKED.add(version)
    return True


def _config_from_hyper_parameters(hparams: Mapping[str, Any], *, source: str) -> EncoderConfig:
    """The architecture from a Lightning checkpoint's hyper-parameters (unknown keys ignored)."""
    le_type = hparams.get("le_type")
    if le_type != "sphericalharmonics":
        raise CheckpointError(
            f"{source}: location encoder type le_type={le_type!r} is not supported; "
            "satclip implements le_type='sphericalharmonics'"
        )
    pe_type = hparams.get("pe_type")
    if pe_type != "siren":
        raise CheckpointError(
            f"{source}: network type pe_type={pe_type!r} is not supported; satclip implements pe_type='siren'"
        )
    # "analytic" is the basis satclip computes (exactly); the original's "closed-form" variant is a
    # different basis (Condon-Shortley phase, no factor pi), so its weights would be meaningless here.
    calculation = hparams.get("harmonics_calculation", "analytic")
    if calculation != "analytic":
        raise CheckpointError(
            f"{source}: harmonics_calculation={calculation!r} is not supported; "
            "satclip computes the 'analytic' basis the released models use"
        )
    missing = [k for k in CONFIG_KEYS if k not in hparams]
    if missing:
        raise CheckpointError(f"{source}: hyper_parameters lack {', '.join(missing)}")
    try:
        return EncoderConfig.from_hyper_parameters(hparams)
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None


#: The largest location encoder satclip builds, in parameters (2 GiB of float64). The released
#: L=40 models have 0.5 M; this bounds what a crafted header can make load allocate.
MAX_PARAMETERS = 1 << 28


def _check_storage(value: Tensor, key: str, source: str, *, contiguous: bool = True) -> None:
    """Refuses tensors whose elements are not all backed by distinct bytes of the file (e.g.
    stride-0 "expanded" tensors): materialising them would allocate far more than the file holds.
    ``contiguous``: also refuse any other layout (the location weights are always contiguous)."""
    needed = value.numel() * value.element_size()
    strides_ok = all(stride >= 1 for stride, size in zip(value.stride(), value.shape, strict=True) if size > 1)
    held = value.untyped_storage().nbytes() - value.storage_offset() * value.element_size()
    if not strides_ok or held < needed or (contiguous and not value.is_contiguous()):
        raise CheckpointError(
            f"{source}: tensor {key} of shape {tuple(value.shape)} needs {needed} bytes but its storage holds "
            f"{max(held, 0)} (strides {value.stride()}): a crafted or damaged checkpoint"
        )


def _build_from_tensors(
    config: EncoderConfig, tensors: Mapping[str, Any], prefix: str, *, source: str
) -> LocationEncoder:
    """A float64 encoder with the checkpoint's weights, after checking every tensor."""
    expected = config.expected_shapes()
    parameters = sum(math.prod(shape) for shape in expected.values())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(
            f"{source}: the hyper-parameters (legendre_polys={config.L}, capacity={config.capacity}, "
            f"num_hidden_layers={config.num_hidden_layers}, embed_dim={config.embed_dim}) describe "
            f"{parameters:,} parameters; satclip builds at most {MAX_PARAMETERS:,}"
        )
    state: dict[str, Tensor] = {}
    for name, shape in expected.items():
        key = prefix + name
        if key not in tensors:
            raise CheckpointError(f"{source}: tensor {key} is missing (expected shape {tuple(shape)})")
        value = tensors[key]
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(value.shape)}, expected {shape} "
                f"(from legendre_polys={config.L}, capacity={config.capacity}, "
                f"embed_dim={config.embed_dim})"
            )
        if not value.is_floating_point():
            raise CheckpointError(f"{source}: tensor {key} has dtype {value.dtype}, expected floating point")
        _check_storage(value, key, source)
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: tensor {key} contains NaN or infinite values")
        state["nnet." + name] = value.to(torch.float64)
    extra = sorted(k for k in tensors if k.startswith(prefix) and k[len(prefix) :] not in expected)
    if extra:
        raise CheckpointError(
            f"{source}: unexpected tensor {extra[0]} (hyper_parameters say num_hidden_layers={config.num_hidden_layers})"
        )
    encoder = config.build().double()
    encoder.load_state_dict(state, strict=True)
    return encoder


def _build_image(
    config: ImageEncoderConfig, tensors: Mapping[str, Any], *, source: str, dtype: torch.dtype
) -> ImageEncoder:
    """An encoder with the checkpoint's weights, after checking every tensor against the architecture.

    The module is built on the meta device (no memory, no random initialisation: that is ~1 s for
    a ResNet50 and would be overwritten anyway) and the checked tensors are then assigned to it.
    """
    encoder = ImageEncoder(config, device="meta")
    own = encoder.visual.state_dict()
    # BatchNorm's step counter does not affect inference; tolerate files that dropped it.
    missing = sorted(k for k in own if k not in tensors and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in tensors if k not in own)
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} image-encoder tensor(s) missing for a {config.timm_name}, e.g. "
            f"model.visual.{missing[0]} (expected shape {tuple(own[missing[0]].shape)})"
        )
    if unexpected:
        raise CheckpointError(
            f"{source}: unexpected image-encoder tensor model.visual.{unexpected[0]} for a {config.timm_name} "
            f"({len(unexpected)} in all): the weights are of another architecture"
        )
    state: dict[str, Tensor] = {}
    for key, value in tensors.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: model.visual.{key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{source}: image-encoder tensor model.visual.{key} has shape {tuple(value.shape)}, "
                f"expected {tuple(own[key].shape)} for a {config.timm_name}"
            )
        if value.is_floating_point() != own[key].is_floating_point():
            raise CheckpointError(
                f"{source}: image-encoder tensor model.visual.{key} has dtype {value.dtype}, expected {own[key].dtype}"
            )
        _check_storage(value, f"model.visual.{key}", source, contiguous=False)
        if value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                raise CheckpointError(
                    f"{source}: image-encoder tensor model.visual.{key} contains NaN or infinite values"
                )
            value = value.to(dtype)
        # A copy: the checkpoint may be memory-mapped, and the caller's tensors are not ours to alias.
        state[key] = value.to(device="cpu", copy=True).contiguous()
    for key in own:
        if key not in state:  # only BatchNorm step counters can be absent (checked above)
            state[key] = torch.zeros((), dtype=torch.long)
    encoder.visual.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in encoder.state_dict().values()):  # a tensor timm adds that the file cannot hold
        raise CheckpointError(f"{source}: the {config.timm_name} has tensors a checkpoint does not store")
    return encoder


__all__ = [
    "MODELS",
    "RELEASED_VISION_LAYERS",
    "EncoderConfig",
    "ModelSource",
    "ReleasedModel",
    "load",
    "load_image_encoder",
    "load_pretrained",
    "load_satclip",
    "parse_source",
    "pretrained_config",
    "resolve",
    "safetensors_entries",
    "save",
]
