"""satclip-train under Lightning DDP: 2 processes, gloo backend, on the CPU.

Runs the real command (``python -m satclip.train.cli fit ... --trainer.strategy ddp
--trainer.devices 2``), which is what a multi-GPU run does with ``--trainer.accelerator gpu``
(NCCL instead of gloo). A callback in the child processes records, per rank, the points of
every training batch and the final location-encoder weights, so the test can check that the
distributed sampler gave the ranks disjoint shares of each epoch, that DDP kept the replicas
identical, and that rank 0's checkpoint holds those weights and loads with satclip.load.

Uses the 20 real S2-100K sample patches when /work/shared/data/s2-100k-sample exists, else
generated GeoTIFFs of the same layout.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

import satclip
from conftest import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "configs" / "tiny.yaml"
REAL_SAMPLE = (shared_data_dir() or Path("/nonexistent")) / "s2-100k-sample"
STEPS = 3

RECORDER = '''
import torch
import lightning.pytorch as pl


class RecordRank(pl.Callback):
    """Saves, per rank, the points of each training batch and the final location weights."""

    def __init__(self, out_dir: str):
        self.out_dir, self.batches, self.losses = out_dir, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((trainer.current_epoch, batch["point"].detach().cpu().clone()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, pl_module):
        dist = torch.distributed
        torch.save(
            {
                "world_size": trainer.world_size,
                "backend": dist.get_backend() if dist.is_initialized() else None,
                "batches": self.batches,
                "losses": self.losses,
                "location": {k: v.detach().cpu().clone() for k, v in pl_module.model.location.state_dict().items()},
            },
            f"{self.out_dir}/rank{trainer.global_rank}.pt",
        )
'''


def _data_dir(tmp_path: Path) -> Path:
    if (REAL_SAMPLE / "index.csv").is_file() and (REAL_SAMPLE / "images").is_dir():
        return REAL_SAMPLE
    from test_train import make_dataset

    return make_dataset(tmp_path / "data", 20)


def test_ddp_on_two_cpu_processes_splits_the_data_and_checkpoints_on_rank_0(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "ddp_recorder.py").write_text(RECORDER)
    # Lists replace lists in a second config: keep tiny.yaml's checkpoint callback as well.
    extra = tmp_path / "ddp.yaml"
    extra.write_text(
        textwrap.dedent(f"""
        trainer:
          callbacks:
            - class_path: lightning.pytorch.callbacks.ModelCheckpoint
              init_args:
                save_last: link
            - class_path: ddp_recorder.RecordRank
              init_args:
                out_dir: {tmp_path}
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO / "python"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # two ranks on a 2-core runner
    command = [
        sys.executable,
        "-m",
        "satclip.train.cli",
        "fit",
        "--config",
        str(TINY),
        "--config",
        str(extra),
        "--data.data_dir",
        str(data),
        "--data.min_file_bytes",
        "1000",
        "--data.coordinate_jitter",
        "0",
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.num_nodes",
        "1",
        "--trainer.max_steps",
        str(STEPS),
        "--trainer.default_root_dir",
        str(out),
    ]
    run = subprocess.run(command, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["backend"] for r in ranks] == ["gloo", "gloo"]

    # The distributed sampler: in every epoch the ranks drew disjoint samples that together
    # cover the training split (16 of the 20 images: one batch of 8 per rank and epoch).
    n_train = 16
    for r in ranks:
        assert len(r["batches"]) == STEPS
    for step in range(STEPS):
        (epoch0, points0), (epoch1, points1) = ranks[0]["batches"][step], ranks[1]["batches"][step]
        assert epoch0 == epoch1 == step
        seen0 = {tuple(p) for p in points0.tolist()}
        seen1 = {tuple(p) for p in points1.tolist()}
        assert len(seen0) == len(seen1) == n_train // 2
        assert not seen0 & seen1, f"epoch {step}: both ranks trained on {seen0 & seen1}"
    # Shuffled per epoch (the sampler is seeded with the epoch).
    assert {tuple(p) for p in ranks[0]["batches"][0][1].tolist()} != {
        tuple(p) for p in ranks[0]["batches"][1][1].tolist()
    }

    # DDP averaged the gradients: both replicas ended with the same weights.
    for name, tensor in ranks[0]["location"].items():
        torch.testing.assert_close(ranks[1]["location"][name], tensor, rtol=0, atol=0, msg=name)

    # train_loss is logged with sync_dist: the logged value is the mean of the ranks' losses.
    (metrics_csv,) = out.glob("lightning_logs/version_*/metrics.csv")
    with open(metrics_csv) as f:
        logged = [float(row["train_loss"]) for row in csv.DictReader(f) if row["train_loss"]]
    per_rank = [r["losses"] for r in ranks]
    assert per_rank[0] != per_rank[1]  # different samples, different losses
    np.testing.assert_allclose(logged, np.mean(per_rank, axis=0), rtol=1e-6)

    # Rank 0 wrote the checkpoint (one run directory); it holds the final weights.
    (ckpt,) = out.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    assert len(list(out.glob("lightning_logs/version_*"))) == 1
    loaded = satclip.load(ckpt)
    points = torch.tensor([[8.55, 47.37], [-122.4, 37.8], [0.0, -89.0]], dtype=torch.float64)
    reference = satclip.load(ckpt)
    reference.load_state_dict(ranks[0]["location"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(points), reference.eval()(points), rtol=0, atol=0)
    assert torch.load(ckpt, weights_only=True)["global_step"] == STEPS


def test_ranks_draw_different_augmentations_from_the_same_seed(tmp_path: Path) -> None:
    """Every rank seeds torch alike; the rank is mixed into the per-sample generator so that two
    ranks do not crop and flip in lockstep (rank 0 keeps the single-device stream)."""
    from satclip.train.datamodule import S2Dataset
    from satclip.train.s2data import read_index
    from test_train import make_dataset

    data = make_dataset(tmp_path / "data", 1, size=64)
    entries = read_index(data)
    crops = {}
    for rank in (0, 1):
        dataset = S2Dataset(entries, crop_size=16, train=True, rank=rank)
        torch.manual_seed(0)
        crops[rank] = [dataset[0]["image"] for _ in range(8)]
    assert any(not torch.equal(a, b) for a, b in zip(crops[0], crops[1], strict=False))
