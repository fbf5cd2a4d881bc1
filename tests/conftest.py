"""Shared fixtures: checkpoints in the layout of the released SatCLIP files, built here.

A released file is a PyTorch Lightning checkpoint (a pickled dict) with
``state_dict`` - float64 location weights under ``model.location.nnet.*`` aliased under
``model.nnet.*``, vision weights under ``model.visual.*``, ``model.logit_scale`` - and
``hyper_parameters``, which hold the architecture and many keys that mean nothing to a
location encoder. The fixtures reproduce that structure at small scale (a few fake vision
tensors), with SIREN weights drawn like the original initialisation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from original_reference import released_init_state_dict  # noqa: E402


def released_hyper_parameters(legendre_polys: int = 10, **overrides: Any) -> dict[str, Any]:
    hp: dict[str, Any] = {
        "embed_dim": 256,
        "image_resolution": 224,
        "vision_layers": "moco_resnet50",
        "vision_width": 768,
        "vision_patch_size": 32,
        "in_channels": 13,
        "le_type": "sphericalharmonics",
        "pe_type": "siren",
        "frequency_num": 16,
        "max_radius": 360,
        "min_radius": 1,
        "legendre_polys": legendre_polys,
        "harmonics_calculation": "analytic",
        "sh_embedding_dims": 32,
        "learning_rate": 0.0001,
        "weight_decay": 0.01,
        "num_hidden_layers": 2,
        "capacity": 256,
        # Stale keys from the training runs, present in the released files.
        "eval_downstream": True,
        "air_temp_data_path": "/data/air_temp/air_temp.csv",
        "election_data_path": "/data/election/election.csv",
    }
    hp.update(overrides)
    return hp


def released_checkpoint_dict(
    legendre_polys: int = 10,
    *,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    embed_dim: int = 256,
    capacity: int = 256,
    num_hidden_layers: int = 2,
) -> dict[str, Any]:
    """A dict shaped like a released checkpoint; location weights as the original initialises them."""
    location = released_init_state_dict(legendre_polys, embed_dim, capacity, num_hidden_layers, seed=seed, prefix="")
    gen = torch.Generator().manual_seed(seed + 1)
    state_dict: dict[str, torch.Tensor] = {
        "model.logit_scale": torch.tensor(2.6592, dtype=torch.float64),
        "model.visual.conv1.weight": torch.randn(8, 13, 3, 3, generator=gen),
        "model.visual.bn1.weight": torch.ones(8),
        "model.visual.bn1.running_mean": torch.zeros(8),
        "model.visual.bn1.num_batches_tracked": torch.tensor(1234),
        "model.visual.fc.weight": torch.randn(embed_dim, 8, generator=gen),
    }
    for name, tensor in location.items():
        state_dict[f"model.location.nnet.{name}"] = tensor
        state_dict[f"model.nnet.{name}"] = tensor  # the alias the released files carry
    return {
        "epoch": 499,
        "global_step": 123456,
        "pytorch-lightning_version": "2.0.2",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 500}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {"best_model_score": torch.tensor(1.5)}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hparams if hparams is not None else released_hyper_parameters(legendre_polys),
    }


def location_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The location weights of a checkpoint dict, keyed ``nnet.*``."""
    prefix = "model.location."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


CheckpointFactory = Callable[..., Path]


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> CheckpointFactory:
    """Writes a released-layout checkpoint (optionally edited) with torch.save and returns its path."""
    counter = iter(range(10**6))

    def make(
        legendre_polys: int = 10,
        *,
        seed: int = 0,
        edit: Callable[[dict[str, Any]], None] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Path:
        checkpoint = released_checkpoint_dict(legendre_polys, seed=seed, **kwargs)
        if edit is not None:
            edit(checkpoint)
        path = tmp_path / (name or f"satclip-test-l{legendre_polys}-{next(counter)}.ckpt")
        torch.save(checkpoint, path)
        return path

    return make


@pytest.fixture(scope="session")
def released_l10(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One L = 10 checkpoint shared by the session: (path, the dict that was saved)."""
    checkpoint = released_checkpoint_dict(10, seed=7)
    path = tmp_path_factory.mktemp("released") / "satclip-resnet50-l10.ckpt"
    torch.save(checkpoint, path)
    return path, checkpoint
