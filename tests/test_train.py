"""Training pipeline: end-to-end CPU runs of the tiny config on generated GeoTIFFs, plus the parts
(augmentations, loss under data parallelism, optimizer groups, bad configurations)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile  # the `train` extra, part of `test`: a missing one is an error, never a silent skip
import torch

import satclip
from satclip.io.geotiff import read_s2_image
from satclip.train import augment
from satclip.train.cli import build_cli, main
from satclip.train.datamodule import S2DataModule, SkippedImageWarning
from satclip.train.loss import clip_loss
from satclip.train.module import SatCLIPModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"
TINY = str(CONFIGS / "tiny.yaml")


def write_patch(path: Path, size: int, seed: int) -> None:
    """A 12-band uint16 patch stored as S2-100K stores them: pixel-interleaved, LZW."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 3000, (size, size, 12)) + 400 * (seed % 8)
    tifffile.imwrite(path, image.astype(np.uint16), compression="lzw", photometric="minisblack", planarconfig="contig")


def make_dataset(root: Path, n: int, size: int = 40, extra_rows: list[tuple[str, float, float]] = ()) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(123)
    rows = []
    for i in range(n):
        write_patch(root / "images" / f"patch_{i}.tif", size, seed=i)
        rows.append((f"patch_{i}.tif", float(rng.uniform(-170, 170)), float(rng.uniform(-80, 80))))
    rows.extend(extra_rows)
    with open(root / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lat", "lon", "url", "fn"])
        for name, lon, lat in rows:
            writer.writerow([lat, lon, f"https://example.invalid/{name}", name])
    return root


def tiny_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        TINY,
        "--data.data_dir",
        str(data_dir),
        "--data.min_file_bytes",
        "1000",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(out),
        *extra,
    ]


def metrics(out: Path) -> list[dict[str, str]]:
    (path,) = out.glob("lightning_logs/version_*/metrics.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


STEPS = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """The tiny config overfitting one fixed batch (no augmentation) for a few steps on the CPU."""
    tmp = tmp_path_factory.mktemp("train")
    data = make_dataset(tmp / "data", 10)
    out = tmp / "out"
    # 10 images, 2 held out: the 8 training images form one full batch, the same every step.
    args = tiny_args(data, out, "--trainer.max_steps", str(STEPS), "--data.augment", "false")
    untrained = build_cli(args[1:], run=False)  # same seed: the initial weights of the run below
    cli = build_cli(args)
    return cli, untrained, data, out


def fixed_batch_loss(cli) -> float:
    """Loss of the model in eval mode (no dropout) on the training batch, deterministic."""
    datamodule = cli.datamodule
    datamodule.setup("fit")
    (batch,) = list(datamodule.train_dataloader())
    batch = datamodule.on_after_batch_transfer(datamodule.on_before_batch_transfer(batch, 0), 0)
    module = cli.model.eval()
    with torch.no_grad():
        image_features, location_features = module.model(batch["image"], batch["point"], batch["sh"])
        return float(clip_loss(image_features, location_features, module.model.logit_scale))


def test_tiny_training_loss_decreases_and_validation_is_logged(trained) -> None:
    cli, untrained, _, out = trained
    rows = metrics(out)
    train = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    val = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert len(train) == STEPS
    assert len(val) == STEPS  # one epoch per step here, validated every epoch
    assert all(math.isfinite(v) for v in train + val)
    # The logged training losses are noisy (the SIREN's dropout); compare without it.
    before, after = fixed_batch_loss(untrained), fixed_batch_loss(cli)
    assert after < before - 0.3, (before, after)


def test_checkpoint_loads_with_satclip_load_and_matches_in_memory_model(trained) -> None:
    cli, _, _, out = trained
    ckpt = next(out.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    loaded = satclip.load(ckpt)
    in_memory = cli.model.location_encoder.eval()
    assert next(in_memory.parameters()).dtype == torch.float64  # the default location dtype
    points = torch.tensor([[8.55, 47.37], [-122.4, 37.8], [0.0, 90.0], [179.9, -89.9]], dtype=torch.float64)
    with torch.no_grad():
        expected = in_memory(points)
        got = loaded(points)
    assert got.shape == (4, 16)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # Different points give different embeddings: the model is not degenerate.
    assert float((got[0] - got[1]).abs().max()) > 1e-3


def test_float32_encode_of_a_trained_checkpoint_is_within_2e5_of_a_float64_reference(trained) -> None:
    # The precision policy (issue 9) on weights that training moved, not only on initial ones:
    # float32 encode vs the original SIREN forward in float64 on exact float64 features.
    from references.original import original_siren_forward

    _, _, _, out = trained
    ckpt = next(out.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    model = satclip.load(ckpt)
    rng = np.random.default_rng(12)
    points = np.stack([rng.uniform(-180, 180, 4000), np.degrees(np.arcsin(rng.uniform(-1, 1, 4000)))], 1)
    points = np.concatenate([points, [[0.0, 90.0], [0.0, -90.0], [180.0, 0.0], [-180.0, 0.0]]])
    features = torch.from_numpy(satclip.spherical_harmonics(points, model.posenc.L))
    ref = original_siren_forward(features, model.state_dict()).numpy()
    got = satclip.encode(points, ckpt, dtype=torch.float32, device="cpu")
    rel = np.abs(got - ref).max(axis=1) / np.abs(ref).max(axis=1)
    assert rel.max() <= 2e-5
    assert rel.max() > 0  # float32 really ran: float64 throughout would match to ~1e-15


def test_training_resumes_from_checkpoint(trained, tmp_path: Path) -> None:
    _, _, data, out = trained
    ckpt = next(out.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    before = torch.load(ckpt, weights_only=True)
    assert before["global_step"] == STEPS
    resumed_out = tmp_path / "resumed"
    cli = build_cli(
        tiny_args(
            data,
            resumed_out,
            "--trainer.max_steps",
            str(STEPS + 2),
            "--data.augment",
            "false",
            "--ckpt_path",
            str(ckpt),
        )
    )
    assert cli.trainer.global_step == STEPS + 2
    after = torch.load(next(resumed_out.glob("lightning_logs/version_*/checkpoints/last.ckpt")), weights_only=True)
    assert after["global_step"] == STEPS + 2 and after["epoch"] > before["epoch"]
    # It continued from the checkpoint's weights, not from a fresh initialisation: two more
    # small steps move the first SIREN layer only a little.
    key = "model.location.nnet.layers.0.weight"
    change = (after["state_dict"][key] - before["state_dict"][key]).abs().max()
    assert 0 < float(change) < 0.01


def test_float32_location_encoder_checkpoint_loads(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 6, size=32)
    out = tmp_path / "out"
    cli = build_cli(
        tiny_args(
            data, out, "--trainer.max_steps", "2", "--model.location_dtype", "float32", "--data.val_fraction", "0"
        )
    )
    in_memory = cli.model.location_encoder.eval()
    assert next(in_memory.parameters()).dtype == torch.float32
    ckpt = next(out.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    points = torch.tensor([[8.55, 47.37], [-60.0, -10.0]], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(satclip.load(ckpt, dtype=torch.float32)(points), in_memory(points), rtol=0, atol=0)


def test_missing_undersized_and_corrupt_files_are_skipped_and_counted(tmp_path: Path) -> None:
    extra = [("gone.tif", 10.0, 10.0), ("tiny.tif", 20.0, 20.0), ("garbage.tif", 30.0, 30.0), ("small.tif", 40.0, 40.0)]
    data = make_dataset(tmp_path / "data", 8, extra_rows=extra)
    (data / "images" / "tiny.tif").write_bytes(b"II*\x00" + bytes(100))  # under min_file_bytes
    (data / "images" / "garbage.tif").write_bytes(os.urandom(5000))  # large enough, not a TIFF
    write_patch(data / "images" / "small.tif", 20, seed=99)  # a valid TIFF smaller than the 32-px crop
    assert (data / "images" / "small.tif").stat().st_size > 1000
    with pytest.warns(SkippedImageWarning) as caught:
        cli = build_cli(
            tiny_args(
                data,
                tmp_path / "out",
                "--trainer.max_epochs",
                "2",
                "--trainer.max_steps",
                "-1",
                "--data.val_fraction",
                "0",
                "--data.batch_size",
                "4",
                "--data.num_workers",
                "2",
                "--data.worker_timeout",
                "60",
            )
        )
    skips = cli.datamodule.skips
    assert skips.missing == ["gone.tif"] and skips.undersized == ["tiny.tif"]
    assert set(skips.unreadable) == {"garbage.tif", "small.tif"}
    assert "smaller than the 32-pixel crop" in skips.unreadable["small.tif"]
    messages = [str(w.message) for w in caught]
    assert any("skipped 4 of 12 images" in m for m in messages), messages  # the end-of-run count
    # 12 rows - 2 dropped up front = 10 samples: 2 full batches of 4 per epoch (the 2 unreadable
    # files are dropped from their batches), 2 epochs.
    assert cli.trainer.global_step == 2 * 2


@pytest.mark.parametrize(
    "change, message",
    [
        (["--model.image_encoder", "resnet34"], "unknown image encoder 'resnet34'"),
        (["--model.legendre_polys", "0"], "L must be between 1"),
        (["--data.data_dir", "/nonexistent/s2"], "does not exist"),
        (["--model.location_dtype", "float16"], "location_dtype"),
        (["--trainer.precision", "bf16-true"], "bf16-mixed"),
    ],
)
def test_bad_configs_fail_before_training(tmp_path: Path, capsys, change: list[str], message: str) -> None:
    data = make_dataset(tmp_path / "data", 4, size=32)
    out = tmp_path / "out"
    args = tiny_args(data, out, *change)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(out.glob("**/*.ckpt"))


@pytest.mark.parametrize(
    "index_text, message",
    [
        ("lat,lon,url,fn\n", "lists no images"),
        ("lat,lon,url\n1,2,x\n", "lacks column(s) fn"),
        ("lat,lon,url,fn\n95,2,x,a.tif\n", "line 2"),
    ],
)
def test_bad_index_fails_before_training(tmp_path: Path, capsys, index_text: str, message: str) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "index.csv").write_text(index_text)
    with pytest.raises(SystemExit):
        main(tiny_args(tmp_path / "data", tmp_path / "out"))
    assert message in capsys.readouterr().err


def test_index_longitudes_in_0_to_360_are_the_same_meridians(tmp_path: Path) -> None:
    from satclip.errors import SatclipError
    from satclip.train.s2data import read_index

    (tmp_path / "images").mkdir()
    (tmp_path / "index.csv").write_text("lat,lon,fn\n10,200,a.tif\n-5,360,b.tif\n0,-180,c.tif\n")
    assert [(e.lon, e.lat) for e in read_index(tmp_path)] == [(-160.0, 10.0), (0.0, -5.0), (-180.0, 0.0)]
    (tmp_path / "index.csv").write_text("lat,lon,fn\n10,360.5,a.tif\n")
    with pytest.raises(SatclipError, match=r"line 2: .*lon in \[-180, 360\]"):
        read_index(tmp_path)


class _Points(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2000

    def __getitem__(self, i: int) -> dict:
        return {
            "image": torch.zeros(1, 1, 1, dtype=torch.uint16),
            "point": torch.tensor([i % 360 - 180.0, 0.0], dtype=torch.float64),
        }


def test_loader_workers_compute_sh_after_the_parent_used_the_thread_pool() -> None:
    """A forked worker inherits the Rust pool's handle but not its threads: without a fresh pool
    per worker, SH for a batch big enough to use the pool (> 256 points) would wait forever."""
    from satclip.train.datamodule import S2Collate, init_worker

    satclip.spherical_harmonics(np.zeros((20000, 2)), 10)  # starts the pool in this process
    loader = torch.utils.data.DataLoader(
        _Points(),
        batch_size=1000,
        num_workers=1,
        collate_fn=S2Collate(10),
        worker_init_fn=init_worker,
        timeout=30,
        multiprocessing_context="fork",
    )
    batches = list(loader)
    expected = satclip.spherical_harmonics(np.stack([b["point"].numpy() for b in batches]).reshape(-1, 2), 10)
    np.testing.assert_allclose(torch.cat([b["sh"] for b in batches]).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_no_usable_image_fails_with_the_count(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 0, extra_rows=[("a.tif", 0.0, 0.0), ("b.tif", 1.0, 1.0)])
    module = S2DataModule(str(data), batch_size=2, num_workers=0)
    with pytest.warns(SkippedImageWarning), pytest.raises(satclip.errors.SatclipError, match="2 missing"):
        module.setup("fit")


RELEASED = sorted(satclip.MODELS)


@pytest.mark.parametrize("name", RELEASED)
def test_released_configs_match_the_released_models(name: str) -> None:
    # The reference is satclip's registry of the published checkpoints (image encoder, L, and the
    # SIREN width where a public record gives it), not constants repeated here.
    import yaml

    released = satclip.MODELS[name]
    model = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]
    assert model["image_encoder"] == released.vision_encoder.lower()
    assert model["legendre_polys"] == released.L
    if released.capacity is not None:
        assert model["capacity"] == released.capacity
    # The ViT-S/16 is built for timm's 224-pixel input; the ResNets take the full 256-pixel patch.
    assert model["image_size"] == (224 if model["image_encoder"] == "vit16" else 256)


@pytest.mark.parametrize("name", ["resnet18-l40", "vit16-l10"])
def test_released_configs_build(tmp_path: Path, name: str) -> None:
    data = make_dataset(tmp_path / "data", 2, size=32)
    cli = build_cli(["--config", str(CONFIGS / f"{name}.yaml"), "--data.data_dir", str(data)], run=False)
    hp = cli.model.hparams
    assert cli.datamodule.legendre_polys == hp.legendre_polys and cli.datamodule.crop_size == hp.image_size
    assert cli.trainer.max_epochs == 500 and cli.trainer.accumulate_grad_batches == 16
    images = torch.rand(2, 13, hp.image_size, hp.image_size)
    with torch.no_grad():
        assert cli.model.model.eval().encode_image(images).shape == (2, 256)


# ---------------------------------------------------------------------------------- parts


def test_read_s2_image_inserts_zero_band_at_position_10(tmp_path: Path) -> None:
    bands = np.stack([np.full((16, 16), 100 * (b + 1), np.uint16) for b in range(12)], axis=-1)
    # pixel-interleaved, as S2-100K stores patches (without planarconfig tifffile would write 16 pages)
    tifffile.imwrite(tmp_path / "p.tif", bands, compression="lzw", photometric="minisblack", planarconfig="contig")
    image = read_s2_image(tmp_path / "p.tif")
    assert image.shape == (13, 16, 16) and image.dtype == np.uint16
    assert [int(image[c, 0, 0]) for c in range(13)] == [
        100,
        200,
        300,
        400,
        500,
        600,
        700,
        800,
        900,
        1000,
        0,
        1100,
        1200,
    ]
    tifffile.imwrite(tmp_path / "rgb.tif", bands[..., :3], photometric="rgb")
    with pytest.raises(ValueError, match="12 bands"):
        read_s2_image(tmp_path / "rgb.tif")


def test_gaussian_blur_keeps_constants_and_matches_a_direct_3x3_convolution() -> None:
    torch.manual_seed(0)
    flat = torch.full((3, 13, 8, 8), 0.25)
    torch.testing.assert_close(augment.random_gaussian_blur(flat), flat)
    images = torch.rand(2, 13, 8, 8, dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    blurred = augment.random_gaussian_blur(images, generator=generator)
    sigma = 0.1 + 1.9 * torch.rand(2, generator=torch.Generator().manual_seed(5))
    for i in range(2):
        k1 = augment.gaussian_kernel_3(sigma[i : i + 1].double())[0]
        kernel = torch.outer(k1, k1).expand(13, 1, 3, 3)
        padded = torch.nn.functional.pad(images[i : i + 1], (1, 1, 1, 1), mode="reflect")
        direct = torch.nn.functional.conv2d(padded, kernel, groups=13)
        torch.testing.assert_close(blurred[i : i + 1], direct)


def test_crop_flip_and_jitter() -> None:
    rng = np.random.default_rng(0)
    image = np.arange(2 * 6 * 6, dtype=np.uint16).reshape(2, 6, 6)
    crops = [augment.random_crop_and_flip(image, 4, rng) for _ in range(50)]
    assert all(c.shape == (2, 4, 4) and c.flags.c_contiguous for c in crops)
    assert len({c.tobytes() for c in crops}) > 10  # positions and flips vary
    np.testing.assert_array_equal(augment.center_crop(image, 4), image[:, 1:5, 1:5])
    lon, lat = augment.jitter_location(179.999, 89.999, 0.01, np.random.default_rng(1))
    assert -180 <= lon <= 180 and -90 <= lat <= 90
    points = [augment.jitter_location(10.0, 20.0, 0.01, rng) for _ in range(200)]
    offsets = np.array(points) - [10.0, 20.0]
    assert np.abs(offsets).max() <= 0.01 and (offsets < 0).any() and (offsets > 0).any()


def test_clip_loss_is_symmetric_cross_entropy() -> None:
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    loc = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    scale = torch.tensor(math.log(1 / 0.07))
    logits = img @ loc.T / 0.07
    labels = torch.arange(5)
    expected = (
        torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)
    ) / 2
    torch.testing.assert_close(clip_loss(img, loc, scale), expected)
    # Perfectly aligned pairs at a high temperature scale give a loss near zero.
    assert float(clip_loss(img, img, torch.tensor(math.log(100.0)))) < float(expected)


DDP_WORKER = """
import os, sys, torch, torch.distributed as dist
from satclip.train.loss import clip_loss

rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
for case, sizes in enumerate(([3, 3], [2, 4])):
    g = torch.Generator().manual_seed(0)
    n = sum(sizes)
    img = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=1)
    loc = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=1)
    start = sum(sizes[:rank])
    mine_img = img[start : start + sizes[rank]].clone().requires_grad_()
    mine_loc = loc[start : start + sizes[rank]].clone().requires_grad_()
    clip_loss(mine_img, mine_loc, torch.tensor(2.0, dtype=torch.float64)).backward()
    torch.save((img, loc, mine_img.grad, mine_loc.grad), f"{out}/case{case}-rank{rank}.pt")
dist.barrier()
# Leave without tearing gloo down: its destructors at interpreter exit occasionally abort
# ("terminate called without an active exception"), after the results are written.
os._exit(0)
"""


def test_clip_loss_under_data_parallelism_gives_the_global_batch_gradient(tmp_path: Path) -> None:
    """Two gloo ranks: after DDP's gradient averaging, every feature gets the gradient of the
    mean of the ranks' losses - for equal batches exactly the single-device global-batch loss."""
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path / "store"), str(tmp_path)])
        for rank in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for case, sizes in enumerate(([3, 3], [2, 4])):
        results = [torch.load(tmp_path / f"case{case}-rank{r}.pt") for r in range(2)]
        img, loc = results[0][0].clone().requires_grad_(), results[0][1].clone().requires_grad_()
        ddp_img = torch.cat([r[2] for r in results]) / 2  # DDP averages gradients over the 2 ranks
        ddp_loc = torch.cat([r[3] for r in results]) / 2
        scale = torch.tensor(2.0, dtype=torch.float64).exp()
        labels = torch.arange(sum(sizes))
        per_image = torch.nn.functional.cross_entropy(scale * img @ loc.T, labels, reduction="none")
        per_location = torch.nn.functional.cross_entropy(scale * loc @ img.T, labels, reduction="none")
        rank_losses = torch.stack([chunk.mean() for chunk in ((per_image + per_location) / 2).split(sizes)])
        rank_losses.mean().backward()
        torch.testing.assert_close(ddp_img, img.grad)
        torch.testing.assert_close(ddp_loc, loc.grad)
        if sizes[0] == sizes[1]:
            img.grad = loc.grad = None
            clip_loss(img, loc, torch.tensor(2.0, dtype=torch.float64)).backward()
            torch.testing.assert_close(ddp_img, img.grad)


def test_optimizer_excludes_biases_norms_and_logit_scale_from_weight_decay() -> None:
    module = SatCLIPModule(image_encoder="resnet18", embed_dim=8, image_size=32, legendre_polys=3, capacity=16)
    decay, no_decay = module.configure_optimizers().param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    named = dict(module.model.named_parameters())
    assert id(named["logit_scale"]) in ids(no_decay)
    assert id(named["visual.bn1.weight"]) in ids(no_decay) and id(named["visual.fc.bias"]) in ids(no_decay)
    assert id(named["visual.conv1.weight"]) in ids(decay) and id(named["location.nnet.layers.0.weight"]) in ids(decay)
    assert len(ids(decay) | ids(no_decay)) == len(named)
    assert math.isclose(named["logit_scale"].item(), math.log(1 / 0.07), rel_tol=1e-6)


def test_frozen_backbone_trains_only_the_head_and_keeps_batchnorm_statistics(tmp_path: Path) -> None:
    donor = SatCLIPModule(image_encoder="resnet18", embed_dim=8, image_size=32, legendre_polys=3, capacity=16)
    weights = tmp_path / "moco.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in donor.model.visual.state_dict().items()}}, weights)
    module = SatCLIPModule(
        image_encoder="resnet18",
        embed_dim=8,
        image_size=32,
        legendre_polys=3,
        capacity=16,
        pretrained_weights=str(weights),
    )
    visual = module.model.visual
    torch.testing.assert_close(visual.conv1.weight, donor.model.visual.conv1.weight)
    trainable = {n for n, p in visual.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert not visual.bn1.training and visual.fc.training  # from construction on
    module.eval().train()
    assert not visual.bn1.training and visual.fc.training and module.model.location.training
    running_mean = visual.bn1.running_mean.clone()
    images = torch.rand(4, 13, 32, 32)
    points = torch.tensor([[0.0, 0.0], [10.0, 10.0], [20.0, -20.0], [-30.0, 40.0]], dtype=torch.float64)
    image_features, location_features = module.model(images, points)
    clip_loss(image_features, location_features, module.model.logit_scale).backward()
    torch.testing.assert_close(visual.bn1.running_mean, running_mean)
    assert visual.conv1.weight.grad is None and visual.fc.weight.grad is not None
    assert module.model.location.nnet.layers[0].weight.grad is not None


def test_a_batch_of_only_unreadable_files_skips_the_step() -> None:
    module = SatCLIPModule(image_encoder="resnet18", embed_dim=8, image_size=32, legendre_polys=3, capacity=16)
    empty = {"image": torch.empty(0), "point": torch.empty(0, 2, dtype=torch.float64), "sh": torch.empty(0, 9)}
    with pytest.warns(UserWarning, match="every image of its batch was unreadable"):
        assert module.training_step(empty, 0) is None


def test_pretrained_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, weights)
    with pytest.raises(satclip.errors.SatclipError, match="missing.*other shapes"):
        SatCLIPModule(
            image_encoder="resnet18", embed_dim=8, image_size=32, legendre_polys=3, pretrained_weights=str(weights)
        )
    with pytest.raises(satclip.errors.SatclipError, match="no such file"):
        SatCLIPModule(
            image_encoder="resnet18", embed_dim=8, image_size=32, legendre_polys=3, pretrained_weights="nope.pth"
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_training_on_cuda_with_bf16_mixed_keeps_the_location_encoder_float64(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 10)
    out = tmp_path / "out"
    args = tiny_args(data, out, "--trainer.max_steps", "4", "--trainer.precision", "bf16-mixed")
    args[args.index("--trainer.accelerator") + 1] = "gpu"
    cli = build_cli(args)
    assert next(cli.model.location_encoder.parameters()).dtype == torch.float64
    ckpt = next(out.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    points = torch.tensor([[8.55, 47.37]], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(satclip.load(ckpt)(points), cli.model.location_encoder.cpu().eval()(points))
