"""Image backbones: timm ResNet18 / ResNet50 / ViT-S/16 over the 13 Sentinel-2 bands with an
``embed_dim`` linear head.

The encoder *is* the timm model (its head is timm's classifier, resized to ``embed_dim``), so
parameter names are timm's - the names the released checkpoints use under ``model.visual``.
Inference (:class:`satclip.models.image.ImageEncoder`) and training (``satclip.train``) build
their encoders here; initialising them from pretrained weights is training's business.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from satclip.errors import ModelConfigError

#: Short name -> timm architecture. The ViT's patch size is 16; its input size is a parameter.
ARCHITECTURES: dict[str, str] = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "vit16": "vit_small_patch16_224",
}


def check_architecture(name: str) -> str:
    """``name`` if satclip builds that image encoder, else :class:`~satclip.errors.ModelConfigError`."""
    if name not in ARCHITECTURES:
        raise ModelConfigError(f"unknown image encoder {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return name


def create_image_encoder(name: str, embed_dim: int, in_channels: int, image_size: int) -> nn.Module:
    """A randomly initialised timm model mapping (B, in_channels, S, S) images to (B, embed_dim)."""
    import timm

    check_architecture(name)
    kwargs: dict[str, Any] = {"in_chans": in_channels, "num_classes": embed_dim, "pretrained": False}
    if name.startswith("vit"):
        if image_size % 16:
            raise ModelConfigError(f"ViT-S/16 needs an image size divisible by 16, got {image_size}")
        kwargs["img_size"] = image_size
    return timm.create_model(ARCHITECTURES[name], **kwargs)


def classifier_head(encoder: nn.Module) -> nn.Module:
    """The timm model's classification head (``fc`` for ResNets, ``head`` for ViTs)."""
    # Every timm model defines get_classifier; nn.Module's __getattr__ types it as a Tensor.
    head: nn.Module = encoder.get_classifier()  # type: ignore[operator]
    return head


def classifier_prefix(encoder: nn.Module) -> str:
    """Name prefix of the head's parameters (``fc.`` for ResNets, ``head.`` for ViTs)."""
    head = classifier_head(encoder)
    for name, module in encoder.named_modules():
        if module is head:
            return name + "."
    raise ModelConfigError(f"cannot find the classifier of {type(encoder).__name__}")


__all__ = ["ARCHITECTURES", "check_architecture", "classifier_head", "classifier_prefix", "create_image_encoder"]
