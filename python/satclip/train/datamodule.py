"""The ``LightningDataModule`` for S2-100K-layout data: split, loaders, skipped-file report.

Batches are dicts: ``image`` (B, 13, S, S) float32 reflectance (DN / 10000) on the training
device, ``point`` (B, 2) float64 [lon, lat] degrees and, when ``legendre_polys`` is set,
``sh`` (B, L*L) spherical-harmonics features of ``point``.

Where the work happens, and why:

- workers: GeoTIFF decoding (~17 ms per patch on one core: by far the largest cost of the
  pipeline), crop/flip on uint16 pixels, coordinate jitter, and the SH features of the whole
  batch with the Rust core (0.5 ms for 512 points at L = 40 on one core, i.e. free next to
  decoding; 3 MB of float32 per batch to ship). Computing them on the GPU instead would put
  ~L small kernel launches per step into the training stream for no gain.
- training device (``on_after_batch_transfer``): uint16 -> float, / 10000, and the random 3x3
  Gaussian blur, batched (it costs ~8 ms per patch on a CPU core, microseconds on a GPU).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from satclip.harmonics import values as harmonics
from satclip.io.geotiff import read_s2_image
from satclip.train.augment import center_crop, jitter_location, random_crop_and_flip, random_gaussian_blur
from satclip.train.errors import DatasetError, TrainingConfigError
from satclip.train.s2data import (
    DEFAULT_MIN_FILE_BYTES,
    IndexEntry,
    SkipReport,
    drop_unusable_files,
    read_index,
)

#: S2 L2A digital numbers are reflectance x 10000.
REFLECTANCE_SCALE = 10_000.0


class SkippedImageWarning(UserWarning):
    """An image listed in ``index.csv`` is missing, undersized or unreadable and is left out."""


class S2Dataset(Dataset):
    """Samples ``{"image": (13, S, S) uint16, "point": (2,) float64 [lon, lat]}``.

    A file that cannot be decoded gives ``{"skipped": (file name, reason)}`` instead of raising,
    so that one bad file among 100k does not end a multi-day run; the collate function drops it
    and the data module reports it.
    """

    def __init__(
        self, entries: list[IndexEntry], crop_size: int, train: bool, jitter_degrees: float = 0.0, rank: int = 0
    ):
        self.entries, self.crop_size, self.train, self.jitter_degrees = entries, crop_size, train, jitter_degrees
        # Under DDP every rank seeds torch alike (and so its loader workers), so the rank is
        # mixed into each sample's generator: otherwise ranks would draw the same crops.
        self.rank = rank

    def __len__(self) -> int:
        return len(self.entries)

    def load_image(self, index: int) -> np.ndarray:
        """The (13, H, W) uint16 pixels of sample ``index`` (a seam for cached or synthetic data)."""
        return read_s2_image(self.entries[index].path, min_size=self.crop_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        try:
            image = self.load_image(index)
        except Exception as exc:
            return {"skipped": (entry.path.name, f"{type(exc).__name__}: {exc}")}
        lon, lat = entry.lon, entry.lat
        if self.train:
            # Seeded from torch's RNG, which the DataLoader seeds per worker from the run's
            # seed: runs are reproducible and workers draw different crops.
            seed = int(torch.randint(0, 2**62, ()))
            rng = np.random.default_rng(seed if self.rank == 0 else [seed, self.rank])
            image = random_crop_and_flip(image, self.crop_size, rng)
            lon, lat = jitter_location(lon, lat, self.jitter_degrees, rng)
        else:
            image = center_crop(image, self.crop_size)
        return {"image": torch.from_numpy(image), "point": torch.tensor([lon, lat], dtype=torch.float64)}


class S2Collate:
    """Stacks samples, drops skipped ones (keeping their names), adds SH features for the batch."""

    def __init__(self, legendre_polys: int | None, sh_dtype: torch.dtype = torch.float32):
        self.legendre_polys, self.sh_dtype = legendre_polys, sh_dtype

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [s for s in samples if "skipped" not in s]
        skipped = [s["skipped"] for s in samples if "skipped" in s]
        if kept:
            batch: dict[str, Any] = {
                "image": torch.stack([s["image"] for s in kept]),
                "point": torch.stack([s["point"] for s in kept]),
            }
        else:
            batch = {"image": torch.empty(0, dtype=torch.uint16), "point": torch.empty(0, 2, dtype=torch.float64)}
        if self.legendre_polys is not None:
            L = self.legendre_polys
            sh = torch.empty(batch["point"].shape[0], L * L, dtype=self.sh_dtype)
            if sh.shape[0]:
                harmonics.spherical_harmonics(batch["point"].numpy(), L, out=sh.numpy())
            batch["sh"] = sh
        batch["skipped"] = skipped
        return batch


def init_worker(worker_id: int) -> None:
    """Gives each data-loading worker a single-threaded SH pool.

    Workers already parallelise across batches; one SH thread each keeps workers x threads
    within the CPU count. (A forked worker would otherwise rebuild a full-size pool: the core
    notices the fork, since the parent's threads do not exist in the child.)
    """
    harmonics.set_num_threads(1)


class S2DataModule(pl.LightningDataModule):
    """S2-100K-layout data (``index.csv`` + ``images/``), split by a seeded permutation.

    Args:
        data_dir: folder holding ``index.csv`` (columns lat, lon, fn) and ``images/``.
        batch_size: samples per batch and per device (the contrastive loss sees all devices' batches).
        num_workers: data-loading processes (0 = load in the training process).
        crop_size: side of the square crop the encoder sees (random for training, central for validation).
        val_fraction: share of ``index.csv`` rows held out for validation.
        split_seed: seed of the train/validation permutation (independent of the training seed).
        augment: random crops, flips and blur for training batches (off: central crops, no blur).
        coordinate_jitter: moves training locations by up to this many degrees (0 = off; 0.01 deg ~ 1 km).
        legendre_polys: when set, workers add the batch's SH features of this degree as ``sh``
            (``satclip-train`` links it to the model's).
        min_file_bytes: smaller files are skipped (S2-100K patches of mostly no-data are tiny).
        pin_memory: page-locked batches for faster, asynchronous host-to-GPU copies (default: when CUDA is available).
        prefetch_factor: batches each worker prepares ahead.
        worker_timeout: seconds to wait for a worker's batch before failing with an error (a
            stuck worker - e.g. a hung network file system - ends the run instead of hanging it).
    """

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 512,
        num_workers: int = 8,
        crop_size: int = 256,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        augment: bool = True,
        coordinate_jitter: float = 0.0,
        legendre_polys: int | None = None,
        min_file_bytes: int = DEFAULT_MIN_FILE_BYTES,
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        worker_timeout: float = 600.0,
    ):
        super().__init__()
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("crop_size", crop_size, 1),
            ("num_workers", num_workers, 0),
            ("prefetch_factor", prefetch_factor, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TrainingConfigError(f"data.{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise TrainingConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if not 0.0 <= coordinate_jitter <= 1.0:
            raise TrainingConfigError(f"data.coordinate_jitter must be in [0, 1] degrees, got {coordinate_jitter}")
        if not worker_timeout > 0:
            raise TrainingConfigError(f"data.worker_timeout must be > 0 seconds, got {worker_timeout}")
        if legendre_polys is not None:
            harmonics.check_degrees(legendre_polys)
        self.save_hyperparameters()
        self.data_dir = os.fspath(data_dir)
        # Read now, so that a wrong path or an empty index fails when the command line is
        # parsed - before a trainer, GPUs or workers are started.
        self.entries = read_index(self.data_dir)
        self.batch_size, self.num_workers, self.crop_size = batch_size, num_workers, crop_size
        self.val_fraction, self.split_seed, self.augment = val_fraction, split_seed, augment
        self.coordinate_jitter, self.legendre_polys = coordinate_jitter, legendre_polys
        self.min_file_bytes, self.prefetch_factor = min_file_bytes, prefetch_factor
        self.worker_timeout = worker_timeout
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.skips = SkipReport()
        self.train_dataset: S2Dataset | None = None
        self.val_dataset: S2Dataset | None = None

    def setup(self, stage: str) -> None:
        if self.train_dataset is not None:
            return
        # Split rows of index.csv (not the surviving files), so a missing file never moves
        # other images between training and validation.
        order = np.random.default_rng(self.split_seed).permutation(len(self.entries))
        n_val = int(len(self.entries) * self.val_fraction)
        val_rows = [self.entries[i] for i in order[:n_val]]
        train_rows = [self.entries[i] for i in order[n_val:]]
        train = drop_unusable_files(train_rows, self.min_file_bytes, self.skips)
        val = drop_unusable_files(val_rows, self.min_file_bytes, self.skips)
        if self.skips.total:
            warnings.warn(self.skips.summary(len(self.entries)), SkippedImageWarning, stacklevel=2)
        if not train:
            raise DatasetError(
                f"none of the {len(train_rows)} training images listed in {self.data_dir}/index.csv "
                f"is usable ({self.skips.summary(len(self.entries))})"
            )
        jitter = self.coordinate_jitter if self.augment else 0.0
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.train_dataset = S2Dataset(train, self.crop_size, train=self.augment, jitter_degrees=jitter, rank=rank)
        self.val_dataset = S2Dataset(val, self.crop_size, train=False)

    def _loader(self, dataset: S2Dataset, shuffle: bool) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            # Equal-sized training batches keep the number of negatives constant; a run on
            # fewer images than one batch still trains, on one partial batch per epoch.
            drop_last=shuffle and len(dataset) >= self.batch_size,
            num_workers=workers,
            collate_fn=S2Collate(self.legendre_polys),
            worker_init_fn=init_worker if workers else None,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=self.prefetch_factor if workers else None,
            timeout=self.worker_timeout if workers else 0,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_dataset is not None, "setup() first"
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        assert self.val_dataset is not None, "setup() first"
        if len(self.val_dataset) == 0:
            return []  # no validation (val_fraction too small for this many images)
        return self._loader(self.val_dataset, shuffle=False)

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        # Runs in the training process, so files skipped in any worker are counted here.
        for name, why in batch.pop("skipped", []):
            if name not in self.skips.unreadable:
                self.skips.unreadable[name] = why
                warnings.warn(f"skipping unreadable image {name}: {why}", SkippedImageWarning, stacklevel=2)
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        image = batch["image"].to(torch.float32) / REFLECTANCE_SCALE
        trainer = self.trainer
        if self.augment and trainer is not None and trainer.training and image.shape[0]:
            image = random_gaussian_blur(image)
        batch["image"] = image
        return batch

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.skips.total:
            warnings.warn(self.skips.summary(len(self.entries)), SkippedImageWarning, stacklevel=2)
