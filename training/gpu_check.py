"""Short GPU throughput check of the training pipeline (run on a CUDA machine; ~3-4 min on an H200).

    python training/gpu_check.py            # ResNet18-L10 and ResNet50-L40, bf16-mixed
    python training/gpu_check.py --quick    # fewer steps
    python training/gpu_check.py --encode   # only satclip.encode / SH throughput per precision mode (~1 min)

For each config it trains on synthetic S2-100K-format data in two modes:

- ``tiff``: the real pipeline - LZW GeoTIFFs decoded in the data-loading workers;
- ``memory``: the same pipeline with the decoded patches cached in RAM (crop, flip, jitter and
  SH features still computed per batch in the workers), i.e. what the GPU can do when the
  GeoTIFF decoding is taken out of the way;

and prints images/s, peak GPU memory, and the share of step time spent waiting for the next
batch (measured between the end of one step, after a CUDA synchronisation, and the start of
the next: data-loader fetch + host-to-device copy + the on-GPU blur). It also times the SH
features of one batch on the CPU (Rust core, one thread, as in a worker) and on the GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"


def write_patch(args: tuple[Path, int]) -> None:
    """A 256 x 256 x 12 uint16 patch: smooth field + noise, so LZW compresses it about as much as
    real Sentinel-2 patches (~1.6x), and decoding costs about as much."""
    import tifffile

    path, seed = args
    rng = np.random.default_rng(seed)
    coarse = rng.integers(200, 4000, (12, 16, 16)).astype(np.float32)
    field = np.kron(coarse, np.ones((16, 16), np.float32))
    image = (field + rng.normal(0, 60, field.shape)).clip(0, 65535).astype(np.uint16).transpose(1, 2, 0)
    tifffile.imwrite(path, image, compression="lzw", predictor=True, photometric="minisblack", planarconfig="contig")


def make_dataset(root: Path, n: int, rows: int) -> Path:
    """``n`` GeoTIFFs listed ``rows`` times in all in index.csv (each file at several locations),
    so that an epoch is long enough for the loaders to stream across it as on S2-100K."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "index.csv", "w") as f:
        f.write("lat,lon,url,fn\n")
        for i in range(rows):
            f.write(f"{rng.uniform(-60, 70):.6f},{rng.uniform(-180, 180):.6f},synthetic,patch_{i % n}.tif\n")
    with Pool(os.cpu_count()) as pool:
        pool.map(write_patch, [(root / "images" / f"patch_{i}.tif", i) for i in range(n)], chunksize=16)
    return root


class StepTimer:
    """Lightning callback: per step, compute time and the wait for the next batch."""

    def __init__(self, warmup: int):
        from lightning.pytorch.callbacks import Callback

        timer = self

        class _Callback(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                now = time.perf_counter()
                if timer.last_end is not None and trainer.global_step >= timer.warmup:
                    timer.wait += now - timer.last_end
                    timer.images += batch["image"].shape[0]
                    timer.steps += 1
                timer.start = now

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                now = time.perf_counter()
                if timer.last_end is not None and trainer.global_step > timer.warmup:
                    timer.compute += now - timer.start
                timer.last_end = now

        self.callback = _Callback()
        self.warmup, self.last_end, self.start = warmup, None, 0.0
        self.wait = self.compute = 0.0
        self.images = self.steps = 0


def run(
    config: str,
    data_dir: Path,
    mode: str,
    steps: int,
    warmup: int,
    batch_size: int,
    workers: int,
    prefetch: int,
    accelerator: str,
) -> dict[str, float]:
    from satclip.train.cli import build_cli
    from satclip.train.datamodule import S2Dataset

    args = [
        "--config",
        str(CONFIGS / f"{config}.yaml"),
        "--data.data_dir",
        str(data_dir),
        "--data.batch_size",
        str(batch_size),
        "--data.num_workers",
        str(workers),
        "--data.prefetch_factor",
        str(prefetch),
        "--data.val_fraction",
        "0",
        "--trainer.max_steps",
        str(steps + warmup),
        "--trainer.accumulate_grad_batches",
        "1",
        "--trainer.accelerator",
        accelerator,
        "--trainer.devices",
        "1",
        "--trainer.precision",
        "bf16-mixed" if accelerator == "gpu" else "32-true",
        "--trainer.benchmark",
        "true",
        "--trainer.logger",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.callbacks",
        "null",
        "--trainer.default_root_dir",
        str(data_dir.parent / "runs"),
        "--model.freeze_backbone",
        "true",  # the released recipe (frozen SSL4EO backbone)
    ]
    cli = build_cli(args, run=False)
    timer = StepTimer(warmup)
    cli.trainer.callbacks.append(timer.callback)
    datamodule = cli.datamodule
    datamodule.setup("fit")
    if mode == "memory":
        dataset = datamodule.train_dataset
        cache = [dataset.load_image(i) for i in range(min(256, len(dataset)))]

        class CachedDataset(S2Dataset):
            def load_image(self, index: int) -> np.ndarray:
                return cache[index % len(cache)]

        datamodule.train_dataset = CachedDataset(dataset.entries, dataset.crop_size, True, dataset.jitter_degrees)
    if accelerator == "gpu":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=datamodule)
    total = time.perf_counter() - t0
    busy = timer.wait + timer.compute
    return {
        "images_per_s": timer.images / busy if busy else float("nan"),
        "step_ms": 1e3 * busy / max(timer.steps, 1),
        "wait_share": timer.wait / busy if busy else float("nan"),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if accelerator == "gpu" else float("nan"),
        "wall_s": total,
    }


def time_sh(L: int, batch: int) -> tuple[float, float]:
    import satclip
    from satclip.harmonics.torch_values import torch_spherical_harmonics

    points = np.random.default_rng(0).uniform([-180, -90], [180, 90], (batch, 2))
    satclip.set_num_threads(1)
    out = np.empty((batch, L * L), np.float32)
    t0 = time.perf_counter()
    for _ in range(50):
        satclip.spherical_harmonics(points, L, out=out)
    cpu_ms = (time.perf_counter() - t0) / 50 * 1e3
    if not torch.cuda.is_available():
        return cpu_ms, float("nan")
    gpu_points = torch.from_numpy(points).cuda()
    for _ in range(5):
        torch_spherical_harmonics(gpu_points, L, "satclip")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(50):
        torch_spherical_harmonics(gpu_points, L, "satclip")
    torch.cuda.synchronize()
    return cpu_ms, (time.perf_counter() - t0) / 50 * 1e3


def encode_check(n: int = 2_000_000) -> None:
    """M points/s of the Triton SH, the torch SH and satclip.encode per precision mode on the GPU,
    with the original code path (per-(l, m) SH columns + float64 SIREN) timed in the same run."""
    sys.path.insert(0, str(REPO / "benches"))
    import satclip
    from satclip.harmonics import triton_kernel as triton_harmonics
    from satclip.harmonics.torch_values import torch_spherical_harmonics
    from satclip.models.location import build_location_encoder
    from sh_baselines import per_lm_torch_sh

    def rate(fn, points: int, repeats: int = 5) -> float:
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return points / float(np.median(times)) / 1e6

    rng = np.random.default_rng(0)
    host = np.stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))], axis=1)
    pts = torch.from_numpy(host).cuda()
    pts32 = pts.float()
    print(f"\nENCODE (N={n}, M points/s, device-resident input and output unless noted)")
    for L in (10, 40):
        torch.manual_seed(L)
        model = build_location_encoder(L).eval().cuda()
        row = {}
        if triton_harmonics.available(pts):
            row["triton SH f32"] = rate(lambda: triton_harmonics.spherical_harmonics(pts, L), n)
        row["torch SH f32"] = rate(lambda: torch_spherical_harmonics(pts32, L), n)
        for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            row[f"encode {str(dtype)[6:]}"] = rate(lambda: satclip.encode(pts, model, dtype=dtype), n)
        row["encode f32 host->host"] = rate(lambda: satclip.encode(host, model, device="cuda"), n, 3)
        small = min(n, 100_000)  # the original path is slow and memory-hungry: a subset, rate per point
        net64 = build_location_encoder(L).eval().cuda().double().nnet
        net64.load_state_dict(model.nnet.state_dict())
        with torch.inference_mode():
            row["original f64"] = rate(lambda: net64(per_lm_torch_sh(pts[:small], L)), small, 3)
        print(f"  L={L}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["resnet18-l10", "resnet50-l40"])
    parser.add_argument("--modes", nargs="+", default=["memory", "tiff"], choices=["memory", "tiff"])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--images", type=int, default=2048, help="synthetic GeoTIFFs to write")
    parser.add_argument("--quick", action="store_true", help="fewer steps (about half the time)")
    parser.add_argument("--steps", type=int, nargs=2, metavar=("MEMORY", "TIFF"), help="timed steps per mode")
    parser.add_argument("--cpu-dry-run", action="store_true", help="exercise the script on a CPU (no figures)")
    parser.add_argument("--encode", action="store_true", help="only the encode / SH throughput check (~1 min)")
    opts = parser.parse_args()
    if opts.encode:
        if not torch.cuda.is_available():
            sys.exit("gpu_check: no CUDA device")
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        encode_check()
        return
    accelerator = "cpu" if opts.cpu_dry_run else "gpu"
    if accelerator == "gpu" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (use --cpu-dry-run to test the script itself)")
    # Every worker keeps prefetch batches of uint16 crops (~0.9 GB per 512 images) in shared
    # memory; a container's /dev/shm can be much smaller than its RAM, so size to what is there.
    shm = shutil.disk_usage("/dev/shm").free / 2**30 if os.path.exists("/dev/shm") else 0.0
    batch_gib = opts.batch_size * 13 * 256 * 256 * 2 / 2**30
    workers, prefetch = max(1, min((os.cpu_count() or 2) - 2, 14)), 2
    if shm < 1.5 * workers * prefetch * batch_gib:
        prefetch = 1
        workers = max(1, min(workers, int(shm / (1.5 * batch_gib))))
    device = torch.cuda.get_device_name() if accelerator == "gpu" else "CPU (dry run)"
    print(
        f"device: {device}, torch {torch.__version__}, CPUs {os.cpu_count()}, "
        f"/dev/shm free {shm:.0f} GiB -> {workers} workers x prefetch {prefetch}",
        flush=True,
    )

    steps = {"memory": 60 if opts.quick else 150, "tiff": 15 if opts.quick else 40}
    if opts.steps:
        steps = dict(zip(("memory", "tiff"), opts.steps, strict=False))
    warmup = 10 if accelerator == "gpu" else 1
    tmp = Path(tempfile.mkdtemp(prefix="satclip-gpu-check-"))
    try:
        t0 = time.perf_counter()
        data_dir = make_dataset(tmp / "data", opts.images, rows=max(opts.images, 32 * opts.batch_size))
        print(f"wrote {opts.images} synthetic GeoTIFFs in {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        for config in opts.configs:
            for mode in opts.modes:
                r = run(config, data_dir, mode, steps[mode], warmup, opts.batch_size, workers, prefetch, accelerator)
                rows.append((config, mode, r))
                print(
                    f"  {config:14s} {mode:6s} {r['images_per_s']:8.0f} img/s  step {r['step_ms']:7.1f} ms  "
                    f"waiting for data {100 * r['wait_share']:5.1f}%  peak {r['peak_gib']:5.1f} GiB  "
                    f"({r['wall_s']:.0f} s)",
                    flush=True,
                )
        sh_rows = [(L, *time_sh(L, opts.batch_size)) for L in (10, 40)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nSUMMARY (bf16-mixed, frozen backbone, batch {opts.batch_size}, {workers} workers)")
    print(f"{'config':14s} {'data':6s} {'img/s':>8s} {'step ms':>8s} {'wait %':>7s} {'peak GiB':>9s}")
    for config, mode, r in rows:
        print(
            f"{config:14s} {mode:6s} {r['images_per_s']:8.0f} {r['step_ms']:8.1f} "
            f"{100 * r['wait_share']:7.1f} {r['peak_gib']:9.1f}"
        )
    for L, cpu_ms, gpu_ms in sh_rows:
        print(
            f"SH features for {opts.batch_size} points, L={L}: Rust 1 CPU thread {cpu_ms:.3f} ms (in a worker), "
            f"torch on GPU {gpu_ms:.3f} ms (would be on the training stream)"
        )


if __name__ == "__main__":
    main()
    if "--encode" not in sys.argv and torch.cuda.is_available():
        encode_check()
