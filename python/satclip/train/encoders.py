"""Training the image encoders (built by :mod:`satclip.models.backbones`): initialising them
from SSL4EO-S12 MoCo (or any) backbone weights, freezing all but the head, and running them with
or without autograd.

Pretrained weights are only ever used when asked for: ``pretrained_weights`` is a local file or
an explicit Hub file ``hf://owner/repo/path``; nothing is downloaded otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from satclip.errors import ModelConfigError
from satclip.models.backbones import (
    check_architecture,
    classifier_head,
    classifier_prefix,
)
from satclip.train.errors import TrainingConfigError

#: Prefixes training frameworks put in front of backbone weights (DDP, MoCo, torchgeo trainers).
_WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "encoder_q.")


def check_encoder_name(name: str) -> str:
    """``name`` if satclip builds that image encoder; a training option error otherwise."""
    try:
        return check_architecture(name)
    except ModelConfigError as err:
        raise TrainingConfigError(str(err)) from None


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


__all__ = ["check_encoder_name", "freeze_all_but_head", "load_backbone_weights", "read_backbone_state_dict"]
