"""The image half of a SatCLIP checkpoint: loading (and saving) its Sentinel-2 image encoder.

A released checkpoint holds, next to the location encoder, a timm image encoder under
``state_dict["model.visual.*"]`` (timm's own parameter names), named by
``hyper_parameters["vision_layers"]``:

=================  ===========================  ===========================
``vision_layers``   timm architecture            satclip name
=================  ===========================  ===========================
``moco_resnet18``   ``resnet18``                 ``resnet18``
``moco_resnet50``   ``resnet50``                 ``resnet50``
``moco_vit16``      ``vit_small_patch16_224``    ``vit16``
=================  ===========================  ===========================

all with 13 input channels (Sentinel-2 L2A with a zero B10 band) and a 256-d linear head.
Checkpoints written by ``satclip-train`` use the same layout and name the encoder with
``hyper_parameters["image_encoder"]`` (``resnet18`` / ``resnet50`` / ``vit16``).

The architecture is built by :func:`satclip.models.backbones.create_image_encoder` (the one
training uses; it imports timm only, not Lightning) with ``pretrained=False``: nothing is
downloaded - the original code fetched the SSL4EO-S12 backbone weights just to build the model,
only to overwrite them with the checkpoint's. The sizes come from the weights themselves (head
width, input channels, and for the ViT the position-embedding grid, which fixes its input size:
224 pixels for the released ViT-S/16), and every tensor is checked before it is used.

Files are read the way :func:`satclip.load` reads them (same names, same sources, same
``torch.load(weights_only=True)``); :func:`satclip.save` with ``image_encoder=`` writes both halves
into one ``.safetensors`` file that :func:`load_image_encoder` and :func:`satclip.load` both read.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from satclip.embed.dtypes import check_float_dtype
from satclip.errors import CheckpointError, SatclipError
from satclip.io import checkpoint as _ckpt
from satclip.models.registry import PathLike, resolve

#: ``hyper_parameters["vision_layers"]`` of the released checkpoints -> satclip's encoder name.
RELEASED_VISION_LAYERS: dict[str, str] = {
    "moco_resnet18": "resnet18",
    "moco_resnet50": "resnet50",
    "moco_vit16": "vit16",
}
#: Sentinel-2 channels the encoders take (B01..B12 with B10, which is zero in the training data).
S2_CHANNELS = 13
#: Where the image encoder lives in a Lightning checkpoint's state_dict, most specific first.
_VISUAL_PREFIXES = ("model.visual.", "visual.")
#: Prefix of the image tensors in satclip's safetensors files, and the metadata key of their config.
SAFETENSORS_PREFIX = "visual."
SAFETENSORS_CONFIG_KEY = "satclip_image_config"
_VIT_PATCH = 16


@dataclass(frozen=True)
class ImageEncoderConfig:
    """What defines an image encoder: architecture and sizes.

    ``image_size`` is the input size the ViT's position embeddings were trained for (its
    images must be exactly this size; :func:`satclip.encode_images` centre-crops to it). The
    ResNets pool globally and take any size; for them it is informational.
    """

    architecture: str  # "resnet18", "resnet50" or "vit16"
    embed_dim: int = 256
    in_channels: int = S2_CHANNELS
    image_size: int = 224

    def __post_init__(self) -> None:
        from satclip.models.backbones import ARCHITECTURES

        if self.architecture not in ARCHITECTURES:
            raise CheckpointError(
                f"unknown image encoder {self.architecture!r}; satclip builds {', '.join(ARCHITECTURES)}"
            )
        for name in ("embed_dim", "in_channels", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 16:
                raise CheckpointError(f"image encoder {name} must be a positive integer, got {value!r}")
        if self.is_vit and self.image_size % _VIT_PATCH:
            raise CheckpointError(f"ViT-S/16 input size must be a multiple of 16, got {self.image_size}")

    @property
    def is_vit(self) -> bool:
        return self.architecture.startswith("vit")

    @property
    def timm_name(self) -> str:
        from satclip.models.backbones import ARCHITECTURES

        return ARCHITECTURES[self.architecture]


class ImageEncoder(nn.Module):
    """A SatCLIP image encoder: (B, 13, H, W) preprocessed reflectances -> (B, embed_dim).

    ``visual`` is the timm model itself, so ``state_dict()`` keys are ``visual.<timm name>``.
    ``forward`` takes images that are already preprocessed (divided by 10 000, 13 bands, and for
    the ViT exactly ``config.image_size`` pixels); :func:`satclip.encode_images` does that.
    """

    def __init__(
        self,
        config: ImageEncoderConfig,
        *,
        device: torch.device | str | None = None,
        visual: nn.Module | None = None,
    ):
        super().__init__()
        try:
            import timm  # noqa: F401
        except ImportError:
            raise SatclipError("the image encoders need timm: pip install 'satclip[images]'") from None
        from satclip.models.backbones import create_image_encoder

        self.config = config
        if visual is not None:  # an existing backbone (the two-tower model's): shared, not copied
            self.visual = visual
            return
        with torch.device(device) if device is not None else contextlib.nullcontext():
            self.visual = create_image_encoder(
                config.architecture, config.embed_dim, config.in_channels, config.image_size
            )

    @property
    def input_size(self) -> int | None:
        """The exact input size the encoder needs (the ViT's), or ``None`` for any size (ResNets)."""
        return self.config.image_size if self.config.is_vit else None

    def forward(self, images: Tensor) -> Tensor:
        return self.visual(images)


# ----------------------------------------------------------------------------------------
# Public API


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
        As for :func:`satclip.load`: a short name (``"resnet50-l40"``), a released model's Hub
        repository, ``hf://owner/repo/file``, or a local ``.ckpt`` (released Lightning format,
        read with ``torch.load(weights_only=True)``) or ``.safetensors`` file written by
        ``satclip.save(..., image_encoder=...)``.
    device:
        Where the weights go (default: CPU).
    dtype:
        ``torch.float32`` (default; the released image weights are float32) or ``torch.float64``.
    cache_dir, local_files_only, revision:
        As for :func:`satclip.load` (Hub models only).

    Raises
    ------
    CheckpointError
        Unknown name, unreadable or unsafe file, a checkpoint without image-encoder weights
        (``model.visual.*``), an unsupported ``vision_layers``, or a tensor that is missing, has
        the wrong shape or holds NaN/inf (the message names it).
    """
    dtype = check_float_dtype(dtype)
    path = resolve(model, cache_dir=cache_dir, local_files_only=local_files_only, revision=revision)
    if path.suffix.lower() == ".safetensors":
        config, tensors = _read_safetensors(path)
    else:
        config, tensors = _read_lightning(path)
    encoder = _build(config, tensors, source=str(path), dtype=dtype)
    return encoder.to(device=torch.device(device) if device is not None else None).eval()


def safetensors_entries(encoder: ImageEncoder) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors (``visual.*``) and metadata that store ``encoder`` in a satclip safetensors file."""
    if not isinstance(encoder, ImageEncoder):
        raise CheckpointError(
            f"image_encoder must be a satclip ImageEncoder (from satclip.load_image_encoder), got {type(encoder).__name__}"
        )
    tensors = {
        SAFETENSORS_PREFIX + name: t.detach().to("cpu").contiguous() for name, t in encoder.visual.state_dict().items()
    }
    return tensors, {SAFETENSORS_CONFIG_KEY: json.dumps(asdict(encoder.config), sort_keys=True)}


# ----------------------------------------------------------------------------------------
# Reading


def _read_lightning(path: Path) -> tuple[ImageEncoderConfig, dict[str, Tensor]]:
    checkpoint = _ckpt._torch_load_safely(path)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise CheckpointError(f"{path} is not a SatCLIP Lightning checkpoint: it has no 'state_dict'")
    state_dict = checkpoint["state_dict"]
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        raise CheckpointError(f"{path} has no 'hyper_parameters', so its image encoder's architecture is unknown")
    prefix = next((p for p in _VISUAL_PREFIXES if any(k.startswith(p) for k in state_dict)), None)
    if prefix is None:
        raise CheckpointError(
            f"{path} holds no image-encoder weights (no model.visual.* tensors): it has only the location "
            "half; satclip.load reads that one"
        )
    tensors = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    architecture = _architecture_from_hparams(hparams, source=str(path))
    return _config_from_tensors(architecture, tensors, hparams, source=str(path)), tensors


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


def _config_from_tensors(
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
        image_size = grid * _VIT_PATCH
    elif isinstance(hparams.get("image_size"), int):
        image_size = hparams["image_size"]
    return ImageEncoderConfig(architecture, embed_dim, in_channels, image_size)


def _read_safetensors(path: Path) -> tuple[ImageEncoderConfig, dict[str, Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {
                name[len(SAFETENSORS_PREFIX) :]: f.get_tensor(name)
                for name in f.keys()
                if name.startswith(SAFETENSORS_PREFIX)
            }
    except Exception as err:  # SafetensorError, OSError: truncated or not a safetensors file
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from err
    if SAFETENSORS_CONFIG_KEY not in metadata or not tensors:
        raise CheckpointError(
            f"{path} holds no image-encoder weights: it was saved without image_encoder= (location half only)"
        )
    try:
        raw = json.loads(metadata[SAFETENSORS_CONFIG_KEY])
        config = ImageEncoderConfig(**{k: raw[k] for k in ("architecture", "embed_dim", "in_channels", "image_size")})
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: {SAFETENSORS_CONFIG_KEY} metadata is malformed: {err!r}") from None
    return config, tensors


def _build(config: ImageEncoderConfig, tensors: Mapping[str, Any], *, source: str, dtype: torch.dtype) -> ImageEncoder:
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
    "RELEASED_VISION_LAYERS",
    "ImageEncoder",
    "ImageEncoderConfig",
    "load_image_encoder",
    "safetensors_entries",
]
