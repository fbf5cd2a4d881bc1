"""Image encoders: timm ResNet18 / ResNet50 / ViT-S/16 with 13 input channels and an
``embed_dim`` linear head, optionally initialised from SSL4EO-S12 MoCo weights.

The encoder *is* the timm model (its head is timm's classifier, resized to ``embed_dim``), so
parameter names are timm's - the names the released checkpoints use under ``model.visual``.

Pretrained weights are only ever used when asked for: ``pretrained_weights`` is a local file or
an explicit Hub file ``hf://owner/repo/path``; nothing is downloaded otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from satclip.train.errors import TrainingConfigError

#: Short name -> timm architecture. The ViT's patch size is 16; its input size is a parameter.
ARCHITECTURES: dict[str, str] = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "vit16": "vit_small_patch16_224",
}

#: Prefixes training frameworks put in front of backbone weights (DDP, MoCo, torchgeo trainers).
_WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "encoder_q.")


def check_encoder_name(name: str) -> str:
    if name not in ARCHITECTURES:
        raise TrainingConfigError(f"unknown image encoder {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return name


def create_image_encoder(name: str, embed_dim: int, in_channels: int, image_size: int) -> nn.Module:
    """A randomly initialised timm model mapping (B, in_channels, S, S) images to (B, embed_dim)."""
    import timm

    check_encoder_name(name)
    kwargs: dict[str, Any] = {"in_chans": in_channels, "num_classes": embed_dim, "pretrained": False}
    if name.startswith("vit"):
        if image_size % 16:
            raise TrainingConfigError(f"ViT-S/16 needs an image size divisible by 16, got {image_size}")
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
    raise TrainingConfigError(f"cannot find the classifier of {type(encoder).__name__}")


def resolve_weights_file(reference: str) -> Path:
    """The local file for ``reference``: a path, or ``hf://owner/repo/file`` downloaded on request."""
    # One hf:// syntax and one downloader (HF_HUB_OFFLINE honoured, fast failure without Hub access)
    # for satclip.load and training.
    from satclip.errors import CheckpointError
    from satclip.io.hub import download, parse_hub_file

    try:
        hub_file = parse_hub_file(reference)
        if hub_file is not None:
            return download(*hub_file)
    except CheckpointError as err:  # malformed, network, auth, missing file: cannot use these weights
        raise TrainingConfigError(f"could not get pretrained weights {reference}: {err}") from err
    path = Path(reference).expanduser()
    if not path.is_file():
        raise TrainingConfigError(
            f"pretrained weights {reference!r}: no such file (give a local file or hf://owner/repo/path/to/file)"
        )
    return path


def read_backbone_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` or torch checkpoint file, unwrapped from common containers."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise TrainingConfigError(
            f"pretrained weights {path}: cannot read the file: {type(err).__name__}: {err}"
        ) from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise TrainingConfigError(f"pretrained weights {path}: expected a mapping of names to tensors")
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_backbone_weights(encoder: nn.Module, reference: str) -> None:
    """Copies every backbone tensor from the weights file into ``encoder``; the head stays as is.

    Fails (instead of training on half-loaded weights) if a backbone tensor is missing, has
    another shape, or the file holds tensors the encoder does not have.
    """
    path = resolve_weights_file(reference)
    state = read_backbone_state_dict(path)
    head = classifier_prefix(encoder)
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    own = {k: v for k, v in encoder.state_dict().items() if not k.startswith(head)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if misshaped:
            k = misshaped[0]
            problems.append(
                f"{len(misshaped)} with other shapes (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise TrainingConfigError(
            f"pretrained weights {reference} do not fit a {type(encoder).__name__} with this configuration: "
            + "; ".join(problems)
        )
    encoder.load_state_dict(state, strict=False)


def freeze_all_but_head(encoder: nn.Module) -> None:
    """Stops gradients to everything but the head (the released models' recipe)."""
    encoder.requires_grad_(False)
    classifier_head(encoder).requires_grad_(True)


def encode_images(encoder: nn.Module, images: Tensor, backbone_frozen: bool) -> Tensor:
    """(B, C, S, S) -> (B, embed_dim). A frozen backbone runs without autograd bookkeeping,
    which saves its activations' memory and the time to record them."""
    if not backbone_frozen:
        return encoder(images)
    with torch.no_grad():
        features = encoder.forward_features(images)  # type: ignore[operator]  # timm's API
    head_out: Tensor = encoder.forward_head(features)  # type: ignore[operator]
    return head_out


__all__ = [
    "ARCHITECTURES",
    "check_encoder_name",
    "classifier_head",
    "create_image_encoder",
    "encode_images",
    "freeze_all_but_head",
    "load_backbone_weights",
]
