"""The image half: loading the released image encoders and satclip.encode_images.

References are built here independently of satclip's code path: timm.create_model with the
checkpoint's model.visual.* weights (strict load), and the original's inference preprocessing
written out in NumPy (float32 / 10000, zero B10 at index 10, centre crop for the ViT).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch

import satclip
from conftest import RELEASED_VISION_TIMM, released_checkpoint_dict, require, shared_data_dir, write_s2_geotiff
from satclip.errors import CheckpointError, DTypeError, ImageError, ShapeError

VISIONS = list(RELEASED_VISION_TIMM)
EXAMPLE_S2 = (shared_data_dir() or Path("/nonexistent")) / "example-s2"


def reference_model(checkpoint: dict[str, Any], vision: str) -> torch.nn.Module:
    model = timm.create_model(RELEASED_VISION_TIMM[vision], in_chans=13, num_classes=256, pretrained=False)
    prefix = "model.visual."
    model.load_state_dict({k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    return model.eval()


def reference_preprocess(dn: np.ndarray, crop: int | None) -> torch.Tensor:
    """The original's inference preprocessing of (B, 12, H, W) digital numbers."""
    x = dn.astype(np.float32) / 10000.0
    x = np.concatenate([x[:, :10], np.zeros_like(x[:, :1]), x[:, 10:]], axis=1)
    if crop is not None:
        h, w = x.shape[-2:]
        top, left = (h - crop) // 2, (w - crop) // 2
        x = x[:, :, top : top + crop, left : left + crop]
    return torch.from_numpy(np.ascontiguousarray(x))


def s2_digital_numbers(b: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Plausible L2A digital numbers (0 .. ~12000, a few bright pixels)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.gamma(2.0, 900.0, size=(b, 12, h, w)), 0, 20000).astype(np.uint16)


def _size(vision: str) -> tuple[int, int]:
    # The ViT gets S2-100K-sized patches, one side odd so the crop offsets differ (16, 13);
    # the ResNets a small non-square size (they take any).
    return (256, 250) if vision == "moco_vit16" else (72, 88)


@pytest.mark.parametrize("vision", VISIONS)
def test_encode_images_equals_timm_reference(released_with_visual, vision):
    path, checkpoint = released_with_visual(vision)
    h, w = _size(vision)
    dn = s2_digital_numbers(3, h, w, seed=1)
    got = satclip.encode_images(dn, path, device="cpu", batch_size=2)
    with torch.no_grad():
        expected = reference_model(checkpoint, vision)(
            reference_preprocess(dn, 224 if "vit" in vision else None)
        ).numpy()
    assert got.shape == (3, 256) and got.dtype == np.float32
    # Random BN statistics make these embeddings large (|e| up to ~100 for the ResNet50); float32
    # convolutions of another batch size round differently, so compare on the embeddings' scale.
    scale = np.abs(expected).max()
    assert scale > 1e-2  # the reference is not degenerate
    assert np.abs(got - expected).max() <= 1e-5 * max(scale, 1.0)


def test_loaded_encoder_reports_architecture(released_with_visual):
    path, _ = released_with_visual("moco_vit16")
    enc = satclip.load_image_encoder(path)
    assert enc.config.architecture == "vit16" and enc.config.image_size == 224 and enc.input_size == 224
    assert not enc.training
    path, _ = released_with_visual("moco_resnet18")
    enc = satclip.load_image_encoder(path, dtype="float64")
    assert enc.config.architecture == "resnet18" and enc.input_size is None
    assert next(enc.parameters()).dtype == torch.float64


def test_units_bands_and_input_kinds_agree(released_with_visual):
    path, _ = released_with_visual("moco_resnet18")
    dn = s2_digital_numbers(4, 40, 40, seed=2)
    base = satclip.encode_images(dn, path, device="cpu")
    # Already-scaled reflectances (float32 / 10000 as the original computes it) give the same.
    refl = dn.astype(np.float32) / 10000.0
    assert np.array_equal(satclip.encode_images(refl, path, device="cpu"), base)
    # DN as floats (> 6.5535, so unambiguously DN) are divided like integers.
    assert np.array_equal(satclip.encode_images(dn.astype(np.float32), path, device="cpu"), base)
    # 13 bands with a zero B10 at index 10 are the 12-band input.
    b13 = np.concatenate([dn[:, :10], np.zeros_like(dn[:, :1]), dn[:, 10:]], axis=1)
    assert np.array_equal(satclip.encode_images(b13, path, device="cpu"), base)
    # One image without a batch axis; a tensor in gives a tensor out; batching changes nothing.
    assert np.allclose(satclip.encode_images(dn[1], path, device="cpu"), base[1:2], atol=1e-6)
    out = satclip.encode_images(torch.from_numpy(dn.astype(np.int32)), path, device="cpu", batch_size=1)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 256)
    assert np.allclose(out.numpy(), base, atol=1e-6)
    f64 = satclip.encode_images(dn, path, device="cpu", dtype=torch.float64)
    assert f64.dtype == np.float64 and np.allclose(f64, base, atol=1e-4)
    # An explicit unit overrides the guess: "dn" divides even small floats.
    small = np.full((1, 12, 16, 16), 5.0, dtype=np.float32)
    assert not np.allclose(
        satclip.encode_images(small, path, device="cpu", units="dn"),
        satclip.encode_images(small, path, device="cpu"),
    )


def test_vit_centre_crop_is_the_documented_window(released_with_visual):
    path, _ = released_with_visual("moco_vit16")
    dn = s2_digital_numbers(1, 240, 230, seed=3)
    top, left = (240 - 224) // 2, (230 - 224) // 2
    window = dn[:, :, top : top + 224, left : left + 224]
    assert np.allclose(
        satclip.encode_images(dn, path, device="cpu"), satclip.encode_images(window, path, device="cpu"), atol=1e-6
    )
    shifted = dn[:, :, top + 1 : top + 225, left : left + 224]
    assert not np.allclose(
        satclip.encode_images(dn, path, device="cpu"), satclip.encode_images(shifted, path, device="cpu"), atol=1e-4
    )


def test_geotiff_paths_equal_arrays(released_with_visual, tmp_path):
    path, _ = released_with_visual("moco_resnet18")
    dn = s2_digital_numbers(3, 48, 48, seed=4)
    files = [write_s2_geotiff(tmp_path / f"p{i}.tif", dn[i]) for i in range(3)]
    # a differently sized file in the middle runs as its own forward pass
    odd = write_s2_geotiff(tmp_path / "odd.tif", s2_digital_numbers(1, 32, 40, seed=5)[0])
    got = satclip.encode_images([files[0], odd, files[1], files[2]], path, device="cpu", batch_size=3)
    arrays = satclip.encode_images(dn, path, device="cpu")
    assert np.allclose(got[[0, 2, 3]], arrays, atol=1e-6)
    assert np.allclose(
        got[1], satclip.encode_images(s2_digital_numbers(1, 32, 40, seed=5), path, device="cpu")[0], atol=1e-6
    )


@pytest.mark.parametrize("height, width", [(12, 64), (12, 12), (64, 12)])
@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_band_axis_comes_from_the_tiff_layout_not_the_shape(released_with_visual, tmp_path, height, width, planar):
    # 12 pixels high (or wide) with 12 bands: the shape alone cannot say which axis holds the bands.
    import tifffile

    path, _ = released_with_visual("moco_resnet18")
    dn = s2_digital_numbers(1, height, width, seed=height + width)
    tif = tmp_path / f"p-{planar}.tif"
    if planar == "contig":  # pixel-interleaved (height, width, bands), as S2-100K stores patches
        tifffile.imwrite(tif, np.moveaxis(dn[0], 0, -1), photometric="minisblack", planarconfig="contig")
    else:
        tifffile.imwrite(tif, dn[0], photometric="minisblack", planarconfig="separate")
    np.testing.assert_array_equal(satclip.io.geotiff.read_image(tif)[[*range(10), *range(11, 13)]], dn[0])
    np.testing.assert_allclose(
        satclip.encode_images(tif, path, device="cpu"), satclip.encode_images(dn, path, device="cpu"), atol=1e-6
    )


@pytest.mark.skipif(not EXAMPLE_S2.is_dir(), reason="shared S2-100K example patches not present")
def test_real_patches_read_as_rasterio_reads_them(released_with_visual):
    rasterio = require("rasterio")
    path, checkpoint = released_with_visual("moco_resnet50")
    files = sorted(EXAMPLE_S2.glob("*.tif"))
    got = satclip.encode_images(files, path, device="cpu")
    with rasterio.open(files[0]) as f:  # the original notebook's reader
        dn = f.read()[None]
    with torch.no_grad():
        expected = reference_model(checkpoint, "moco_resnet50")(reference_preprocess(dn, None)).numpy()
    assert np.abs(got[0] - expected[0]).max() <= 1e-5 * max(np.abs(expected).max(), 1.0)


def test_round_trip_through_safetensors(released_with_visual, tmp_path):
    path, _ = released_with_visual("moco_vit16")
    enc = satclip.load_image_encoder(path)
    loc = satclip.load(path)
    out = satclip.save(loc, tmp_path / "both.safetensors", image_encoder=enc)
    dn = s2_digital_numbers(2, 224, 224, seed=6)
    assert np.array_equal(satclip.encode_images(dn, out, device="cpu"), satclip.encode_images(dn, path, device="cpu"))
    # the location half still loads from the combined file, unchanged
    pts = torch.tensor([[8.5, 47.4], [-70.0, -30.0]], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(satclip.load(out)(pts), loc(pts))
    location_only = satclip.save(loc, tmp_path / "loc.safetensors")
    with pytest.raises(CheckpointError, match="no image-encoder weights"):
        satclip.load_image_encoder(location_only)


def test_inference_path_needs_no_lightning_and_no_download(released_with_visual):
    path, _ = released_with_visual("moco_resnet18")
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('lightning', 'pytorch_lightning'): raise ImportError('lightning imported: ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "import huggingface_hub, timm.models._builder as b\n"
        "def no_net(*a, **k): raise RuntimeError('network access attempted')\n"
        "huggingface_hub.hf_hub_download = no_net; b.load_pretrained = no_net\n"
        "import numpy as np, satclip\n"
        f"e = satclip.encode_images(np.ones((1, 12, 32, 32), np.uint16), {str(path)!r}, device='cpu')\n"
        "assert e.shape == (1, 256)\n"
        "assert not any(m.split('.')[0] == 'lightning' for m in sys.modules)\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr


# ---------------------------------------------------------------------------------------- errors


@pytest.fixture
def r18(released_with_visual) -> Path:
    return released_with_visual("moco_resnet18")[0]


def test_wrong_band_count(r18):
    with pytest.raises(ShapeError, match="12 Sentinel-2 bands.*got shape \\(2, 11, 32, 32\\)"):
        satclip.encode_images(np.zeros((2, 11, 32, 32), np.uint16), r18)
    with pytest.raises(ShapeError, match="channels-last"):
        satclip.encode_images(np.zeros((2, 32, 32, 12), np.uint16), r18)
    with pytest.raises(ShapeError, match="shape"):
        satclip.encode_images(np.zeros((12, 32), np.uint16), r18)


def test_non_finite_values_name_image_and_band(r18):
    x = np.full((3, 12, 16, 16), 0.1, np.float32)
    x[2, 5, 3, 4] = np.nan
    with pytest.raises(ImageError, match="image 2, band 5 holds NaN or infinite"):
        satclip.encode_images(x, r18)
    x[2, 5, 3, 4] = np.inf
    with pytest.raises(ImageError, match="image 2, band 5"):
        satclip.encode_images(torch.from_numpy(x), r18)


def test_bad_values_and_dtypes(r18):
    neg = np.zeros((2, 12, 8, 8), np.int16)
    neg[1, 3, 0, 0] = -5
    with pytest.raises(ImageError, match="image 1, band 3: negative digital number -5"):
        satclip.encode_images(neg, r18)
    with pytest.raises(DTypeError, match="units='reflectance' but the images are integers"):
        satclip.encode_images(np.zeros((1, 12, 8, 8), np.uint16), r18, units="reflectance")
    with pytest.raises(DTypeError, match="real numbers"):
        satclip.encode_images(np.zeros((1, 12, 8, 8), bool), r18)
    with pytest.raises(ValueError, match="units must be one of"):
        satclip.encode_images(np.zeros((1, 12, 8, 8), np.uint16), r18, units="percent")


def test_vit_refuses_images_smaller_than_its_input(released_with_visual):
    path, _ = released_with_visual("moco_vit16")
    with pytest.raises(ShapeError, match="at least 224 x 224 pixels.*got 200 x 256"):
        satclip.encode_images(np.zeros((1, 12, 200, 256), np.uint16), path)


def test_files_that_are_not_geotiffs(r18, tmp_path):
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="notes.tif: not a Sentinel-2 GeoTIFF"):
        satclip.encode_images([text], r18)
    with pytest.raises(ImageError, match="no such image file"):
        satclip.encode_images([tmp_path / "missing.tif"], r18)
    import tifffile

    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ImageError, match="rgb.tif.*12 uint16 bands"):
        satclip.encode_images(str(rgb), r18)


def test_checkpoints_without_usable_visual_weights(make_checkpoint, released_with_visual, tmp_path):
    def drop_visual(ck):
        for k in [k for k in ck["state_dict"] if k.startswith("model.visual.")]:
            del ck["state_dict"][k]

    with pytest.raises(CheckpointError, match="holds no image-encoder weights"):
        satclip.load_image_encoder(make_checkpoint(edit=drop_visual))
    with pytest.raises(CheckpointError, match="vision_layers=4 is not supported"):
        satclip.load_image_encoder(make_checkpoint(edit=lambda ck: ck["hyper_parameters"].update(vision_layers=4)))
    # The fake few-tensor visual weights of the location-only fixture: a named missing tensor.
    with pytest.raises(
        CheckpointError,
        match=r"tensor\(s\) missing for a resnet50, e.g. model.visual.bn1.bias \(expected shape \(64,\)\)",
    ):
        satclip.load_image_encoder(make_checkpoint())
    _, checkpoint = released_with_visual("moco_resnet18")

    def edited(edit):
        ck = {**checkpoint, "state_dict": dict(checkpoint["state_dict"])}
        edit(ck["state_dict"])
        p = tmp_path / f"edited-{len(list(tmp_path.iterdir()))}.ckpt"
        torch.save(ck, p)
        return p

    with pytest.raises(CheckpointError, match="layer2.0.conv1.weight has shape"):
        satclip.load_image_encoder(
            edited(lambda sd: sd.update({"model.visual.layer2.0.conv1.weight": torch.zeros(3, 3)}))
        )
    bad = checkpoint["state_dict"]["model.visual.layer3.1.bn2.weight"].clone()
    bad[0] = float("nan")
    with pytest.raises(CheckpointError, match="layer3.1.bn2.weight contains NaN"):
        satclip.load_image_encoder(edited(lambda sd: sd.update({"model.visual.layer3.1.bn2.weight": bad})))
    with pytest.raises(CheckpointError, match="unexpected image-encoder tensor model.visual.extra"):
        satclip.load_image_encoder(edited(lambda sd: sd.update({"model.visual.extra.weight": torch.zeros(1)})))
    # Wrong architecture for the weights: ResNet18 tensors named moco_resnet50.
    ck = {**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"], "vision_layers": "moco_resnet50"}}
    torch.save(ck, tmp_path / "mislabelled.ckpt")
    with pytest.raises(CheckpointError, match="resnet50"):
        satclip.load_image_encoder(tmp_path / "mislabelled.ckpt")


def test_location_model_is_not_an_image_model(r18):
    with pytest.raises(satclip.errors.SatclipError, match="no image half"):
        satclip.encode_images(np.zeros((1, 12, 8, 8), np.uint16), satclip.load(r18))


def test_fixture_builds_every_released_architecture():
    # The fixture itself: complete timm state dicts (a strict load), randomised norms.
    for vision in VISIONS:
        ck = released_checkpoint_dict(10, vision=vision)
        assert ck["hyper_parameters"]["vision_layers"] == vision
        model = reference_model(ck, vision)
        norm_gains = [v for k, v in model.state_dict().items() if k.endswith(".weight") and v.ndim == 1]
        assert norm_gains and all(not torch.all(g == 1) for g in norm_gains)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(released_with_visual):
    path, _ = released_with_visual("moco_resnet50")
    dn = s2_digital_numbers(4, 64, 64, seed=8)
    cpu = satclip.encode_images(dn, path, device="cpu")
    gpu = satclip.encode_images(torch.from_numpy(dn.astype(np.int32)).cuda(), path)
    assert gpu.device.type == "cuda"
    assert np.abs(gpu.cpu().numpy() - cpu).max() <= 1e-4


def test_array_layouts_do_not_change_embeddings(r18):
    dn = s2_digital_numbers(3, 24, 24, seed=9)
    base = satclip.encode_images(dn, r18, device="cpu")
    readonly = dn.copy()
    readonly.setflags(write=False)
    assert np.array_equal(satclip.encode_images(readonly, r18, device="cpu"), base)
    assert np.array_equal(satclip.encode_images(dn[::-1], r18, device="cpu")[::-1], base)  # negative strides
    assert np.array_equal(satclip.encode_images(dn.astype(">u2"), r18, device="cpu"), base)  # big-endian
    assert np.array_equal(satclip.encode_images(dn.astype(np.uint32), r18, device="cpu"), base)
    assert readonly.flags.writeable is False and np.array_equal(readonly, dn)  # input untouched


@pytest.mark.parametrize("arch", ["resnet18", "vit16"])
def test_checkpoints_written_by_satclip_train_load(tmp_path, arch):
    """satclip-train's layout: hyper_parameters["image_encoder"], the ViT's input size from its grid."""
    require("lightning")
    from satclip.train.module import SatCLIPModule

    torch.manual_seed(0)
    module = SatCLIPModule(image_encoder=arch, embed_dim=8, image_size=32, legendre_polys=3, capacity=16).eval()
    path = tmp_path / "trained.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    enc = satclip.load_image_encoder(path)
    assert enc.config.architecture == arch and enc.config.embed_dim == 8 and enc.config.image_size == 32
    dn = s2_digital_numbers(2, 40, 40, seed=10)
    crop = 32 if arch == "vit16" else None
    with torch.no_grad():
        expected = module.model.visual(reference_preprocess(dn, crop)).numpy()
    assert np.abs(satclip.encode_images(dn, path, device="cpu") - expected).max() <= 1e-5 * max(
        np.abs(expected).max(), 1.0
    )


def test_plain_import_loads_no_image_stack():
    code = (
        "import sys, satclip, satclip.cli.main\n"
        "heavy = [m for m in ('timm', 'matplotlib', 'xarray', 'tifffile', 'lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(satclip.encode_images) and callable(satclip.locate)\n"  # lazily reachable
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr
