"""Training input pipeline: batches/s of the S2 data module (decode, crop/flip, SH in workers).

Runs on the shared S2-100K sample layout (``index.csv`` + ``images/``, 20 real patches) when
present, else on synthetic patches of the same format (256 x 256 x 12 uint16, LZW) written to a
temporary folder. Skipped when the ``[train]`` extra or the data module is missing.

One round is one pass over the training loader; ``batches_per_round`` in extra_info turns the
median into batches/s (report.py prints it). GeoTIFF decoding dominates, so this measures the
image pipeline more than satclip's SH.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchkit import Mode, data_dir, set_threads, timed, usable_cpus
from satclip.train import datamodule

BATCH = 8  # the sample has 20 patches: 2 full batches per pass (drop_last)
L = 40
SYNTHETIC_PATCHES = 24


def _synthetic_layout(root: Path) -> Path:
    import tifffile

    rng = np.random.default_rng(7)
    (root / "images").mkdir(parents=True)
    with open(root / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lat", "lon", "url", "fn"])
        for i in range(SYNTHETIC_PATCHES):
            # Smooth-ish reflectances, so LZW compresses them roughly as it does real patches.
            base = rng.integers(500, 3000, size=(1, 1, 12))
            noise = rng.integers(0, 200, size=(256, 256, 12))
            patch = (base + noise).astype(np.uint16)
            name = f"patch_{i}.tif"
            tifffile.imwrite(
                root / "images" / name, patch, compression="lzw", photometric="minisblack", planarconfig="contig"
            )
            writer.writerow([rng.uniform(-60, 70), rng.uniform(-180, 180), "", name])
    return root


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    shared = data_dir()
    sample = shared / "s2-100k-sample" if shared else None
    if sample is not None and (sample / "index.csv").is_file():
        return sample, "S2-100K sample (20 real patches)"
    return _synthetic_layout(tmp_path_factory.mktemp("s2")), f"synthetic ({SYNTHETIC_PATCHES} patches)"


@pytest.mark.parametrize("workers", [0, 2])
def bench_train_loader(benchmark: Any, mode: Mode, layout: tuple[Path, str], workers: int) -> None:
    if workers > usable_cpus():
        pytest.skip(f"{workers} workers requested, {usable_cpus()} CPU(s) usable")
    root, source = layout
    set_threads(1)
    dm = datamodule.S2DataModule(
        data_dir=str(root),
        batch_size=BATCH,
        num_workers=workers,
        crop_size=256,
        val_fraction=0.0,
        legendre_polys=L,
        pin_memory=False,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    n_batches = len(loader)

    def one_pass() -> int:
        count = 0
        for batch in loader:
            assert batch["sh"].shape == (batch["point"].shape[0], L * L)
            count += 1
        return count

    benchmark.group = "training data pipeline"
    timed(
        benchmark,
        one_pass,
        mode.few_rounds(),
        kind="data",
        workers=workers,
        batch_size=BATCH,
        batches_per_round=n_batches,
        L=L,
        data=source,
    )
