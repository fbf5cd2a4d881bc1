"""The image half of SatCLIP: its Sentinel-2 image encoder as a network.

A SatCLIP image encoder is a timm ResNet18, ResNet50 or ViT-S/16 (:mod:`satclip.models.backbones`)
over 13 input channels (Sentinel-2 L2A with a zero B10 band) with a linear head (256-d in the
released models). :class:`ImageEncoderConfig` names the architecture and sizes;
:class:`ImageEncoder` builds the network - with ``pretrained=False``, so nothing is downloaded
just to build it.

Reading and writing the weights (the released ``.ckpt`` files, satclip's ``.safetensors``, the
Hub) is :mod:`satclip.io.checkpoint`'s job: :func:`satclip.load_image_encoder` there builds the
encoder from a file's weights after checking every tensor.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from satclip.errors import CheckpointError, SatclipError

#: Sentinel-2 channels the encoders take (B01..B12 with B10, which is zero in the training data).
S2_CHANNELS = 13
#: The ViT's patch size: its input size is a multiple of it.
VIT_PATCH = 16


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
        if self.is_vit and self.image_size % VIT_PATCH:
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


#: Names that lived here before reading and writing moved to :mod:`satclip.io.checkpoint`.
_MOVED = ("load_image_encoder", "RELEASED_VISION_LAYERS", "SAFETENSORS_PREFIX")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from satclip.io import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["S2_CHANNELS", "ImageEncoder", "ImageEncoderConfig"]
