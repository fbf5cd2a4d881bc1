"""save_pretrained / from_pretrained / push_to_hub: model folders, Hub repositories from a
pre-filled offline cache, the generated model card, and the upload (its Hub calls captured)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import satclip
from conftest import CheckpointFactory, fill_hub_cache, require
from satclip.errors import CheckpointError, DeviceError, OutputExistsError
from satclip.io.checkpoint import MODELS, EncoderConfig, load, load_image_encoder, save
from satclip.models.location import LocationEncoder

POINTS = torch.tensor([[8.55, 47.37], [-122.4, 37.8], [0.0, 90.0], [151.2, -33.9]], dtype=torch.float64)


def small_location_encoder(seed: int = 0) -> LocationEncoder:
    torch.manual_seed(seed)
    return EncoderConfig(L=4, embed_dim=8, capacity=16, num_hidden_layers=3).build().double().eval()


def embed(model: LocationEncoder) -> torch.Tensor:
    with torch.no_grad():
        return model(POINTS)


def small_satclip(seed: int = 0) -> Any:
    require("timm")
    from satclip.models.image import ImageEncoder, ImageEncoderConfig
    from satclip.models.satclip import SatCLIP

    torch.manual_seed(seed)
    image = ImageEncoder(ImageEncoderConfig("resnet18", embed_dim=8, image_size=32))
    # Random norm statistics: a wrongly restored BatchNorm buffer must change the outputs.
    for name, buffer in image.visual.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(0.1 * torch.randn_like(buffer))
        elif name.endswith("running_var"):
            buffer.copy_(0.5 + torch.rand_like(buffer))
    location = EncoderConfig(L=3, embed_dim=8, capacity=16).build().double()
    return SatCLIP(image, location, logit_scale=2.25).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 13, 32, 32, generator=torch.Generator().manual_seed(5))


# ----------------------------------------------------------------------------------------
# Local folders


def test_location_encoder_round_trip(tmp_path: Path) -> None:
    model = small_location_encoder()
    folder = model.save_pretrained(tmp_path / "tiny", training_data="S2-100K", metrics={"air temperature MSE": 0.25})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text()) == {
        "satclip_model": "LocationEncoder",
        "format_version": 1,
        "weights": "model.safetensors",
        "location_encoder": {
            "legendre_polys": 4,
            "embed_dim": 8,
            "capacity": 16,
            "num_hidden_layers": 3,
            "basis": "satclip",
        },
    }
    reference = embed(model)
    for reloaded in (
        LocationEncoder.from_pretrained(folder),
        LocationEncoder.from_pretrained(str(folder), dtype=torch.float64),
        satclip.load(folder),
        satclip.load(folder / "model.safetensors"),
    ):
        assert isinstance(reloaded, LocationEncoder) and not reloaded.training
        assert torch.equal(embed(reloaded), reference)
    as_float32 = LocationEncoder.from_pretrained(folder, dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in as_float32.parameters())
    # encode takes the folder as a model name too.
    out = satclip.encode(POINTS.numpy(), model=str(folder), dtype=torch.float64)
    torch.testing.assert_close(torch.as_tensor(out), reference, rtol=0, atol=1e-12)


def test_released_checkpoint_round_trip(released_l10: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    original = LocationEncoder.from_pretrained(released_l10[0])  # any name satclip.load takes
    folder = original.save_pretrained(tmp_path / "l10")
    assert torch.equal(embed(LocationEncoder.from_pretrained(folder)), embed(load(released_l10[0])))


def test_model_card(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    folder = small_location_encoder().save_pretrained(
        tmp_path / "m", training_data="S2-100K (100,000 Sentinel-2 tiles)", metrics={"biome accuracy": 0.91}
    )
    text = (folder / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.license == "mit" and card.data.library_name == "satclip"
    assert "satclip" in card.data.tags
    for expected in (
        "| Legendre degrees L | 4 |",
        "| SH features (L²) | 16 |",
        "| Hidden size (capacity) | 16 |",
        "| Hidden layers | 3 |",
        "| Embedding dimension | 8 |",
        f"| Parameters | {sum(p.numel() for p in small_location_encoder().parameters()):,} |",
        "S2-100K (100,000 Sentinel-2 tiles)",
        "| biome accuracy | 0.91 |",
        "arXiv:2311.17179",
        "Klemmer, Konstantin",
    ):
        assert expected in text, expected
    bare = small_location_encoder().save_pretrained(tmp_path / "bare", license="cc-by-4.0")
    bare_text = (bare / "README.md").read_text()
    assert ModelCard(bare_text).data.license == "cc-by-4.0"
    assert "Not recorded" in bare_text and "None recorded" in bare_text


def test_save_pretrained_never_overwrites_without_asking(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "README.md").write_text("my own notes\n")
    with pytest.raises(OutputExistsError, match="README.md"):
        small_location_encoder().save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md"]
    assert (folder / "README.md").read_text() == "my own notes\n"
    small_location_encoder(seed=1).save_pretrained(folder, overwrite=True)
    assert torch.equal(embed(LocationEncoder.from_pretrained(folder)), embed(small_location_encoder(seed=1)))
    with pytest.raises(OutputExistsError, match="model.safetensors"):
        small_location_encoder().save_pretrained(folder)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a directory"):
        small_location_encoder().save_pretrained(tmp_path / "file")


def test_config_that_does_not_describe_the_weights_is_refused(tmp_path: Path) -> None:
    folder = small_location_encoder().save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["location_encoder"]["capacity"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    for loader in (LocationEncoder.from_pretrained, satclip.load):
        with pytest.raises(CheckpointError, match=r"location_encoder\.capacity=32.*capacity=16"):
            loader(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not readable JSON"):
        LocationEncoder.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "satclip_model": "SomethingElse"}))
    with pytest.raises(CheckpointError, match="not a satclip model config"):
        LocationEncoder.from_pretrained(folder)
    (folder / "config.json").unlink()
    # The weights are self-contained: satclip.load reads them alone; from_pretrained wants the config.
    assert satclip.load(folder).posenc.L == 4
    with pytest.raises(CheckpointError, match="no config.json"):
        LocationEncoder.from_pretrained(folder)


def test_from_pretrained_takes_no_unknown_arguments(tmp_path: Path) -> None:
    folder = small_location_encoder().save_pretrained(tmp_path / "m")
    with pytest.raises(TypeError, match="strict"):
        LocationEncoder.from_pretrained(folder, strict=False)


# ----------------------------------------------------------------------------------------
# The full two-tower model


def test_full_model_round_trip(tmp_path: Path) -> None:
    from satclip.models.satclip import SatCLIP

    model = small_satclip()
    folder = model.save_pretrained(tmp_path / "full")
    config = json.loads((folder / "config.json").read_text())
    assert config["satclip_model"] == "SatCLIP"
    assert config["image_encoder"] == {"architecture": "resnet18", "embed_dim": 8, "in_channels": 13, "image_size": 32}
    reloaded = SatCLIP.from_pretrained(folder)
    assert isinstance(reloaded, SatCLIP) and not reloaded.training
    assert float(reloaded.logit_scale.detach()) == pytest.approx(2.25, abs=0)
    pts = POINTS[:3]
    with torch.no_grad():
        assert torch.equal(reloaded.logits(images(), pts), model.logits(images(), pts))
        # Each half also loads on its own from the same folder.
        assert torch.equal(embed(satclip.load(folder)), embed(model.location))
        assert torch.equal(LocationEncoder.from_pretrained(folder)(pts), model.location(pts))
        assert torch.equal(load_image_encoder(folder)(images()), model.image_encoder(images()))
    card = (folder / "README.md").read_text()
    assert "| Image encoder | `resnet18` (timm) over 13 Sentinel-2 bands |" in card
    assert "| Image size | 32 px |" in card


def test_full_model_needs_both_halves(tmp_path: Path) -> None:
    require("timm")
    from satclip.models.satclip import SatCLIP

    folder = small_location_encoder().save_pretrained(tmp_path / "location-only")
    with pytest.raises(CheckpointError, match="no image-encoder weights"):
        SatCLIP.from_pretrained(folder)
    # A file with both halves but no temperature (satclip.save with image_encoder=) is not a full model.
    full = small_satclip()
    both = save(full.location, tmp_path / "both.safetensors", image_encoder=full.image_encoder)
    with pytest.raises(CheckpointError, match="no logit_scale"):
        satclip.io.checkpoint.load_satclip(both)
    with pytest.raises(CheckpointError, match="already holds its image encoder"):
        save(full, tmp_path / "x.safetensors", image_encoder=full.image_encoder)


def test_full_model_from_a_released_checkpoint(released_with_visual: Any, tmp_path: Path) -> None:
    require("timm")
    from satclip.models.satclip import SatCLIP

    path, checkpoint = released_with_visual("moco_resnet18")
    model = SatCLIP.from_pretrained(path)
    assert float(model.logit_scale.detach()) == pytest.approx(
        float(checkpoint["state_dict"]["model.logit_scale"]), rel=1e-6
    )
    state = checkpoint["state_dict"]
    assert torch.equal(model.location.nnet.layers[0].weight, state["model.location.nnet.layers.0.weight"])
    assert torch.equal(model.visual.conv1.weight, state["model.visual.conv1.weight"])
    again = SatCLIP.from_pretrained(model.save_pretrained(tmp_path / "converted"))
    with torch.no_grad():
        x = torch.rand(2, 13, 64, 64, generator=torch.Generator().manual_seed(1))
        assert torch.equal(again.logits(x, POINTS[:2]), model.logits(x, POINTS[:2]))


# ----------------------------------------------------------------------------------------
# Hub repositories, offline from a pre-filled cache


def _cache_from_folder(cache: Path, repo_id: str, folder: Path) -> dict[str, Path]:
    """The folder's files as huggingface_hub caches them: the weights as an LFS file (blob named
    by sha256), config.json and README.md kept in git (blobs named by git blob id)."""
    return {
        name: fill_hub_cache(cache, repo_id, name, folder / name, lfs=name.endswith(".safetensors"))
        for name in ("model.safetensors", "config.json", "README.md")
    }


def test_from_pretrained_offline_from_a_prefilled_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = small_location_encoder()
    cache = tmp_path / "hf-cache"
    cached = _cache_from_folder(cache, "someone/tiny-satclip", model.save_pretrained(tmp_path / "m"))
    assert len(cached["config.json"].resolve().name) == 40  # git blob id, not sha256
    reference = embed(model)
    assert torch.equal(embed(LocationEncoder.from_pretrained("someone/tiny-satclip", cache_dir=cache)), reference)
    assert torch.equal(embed(satclip.load("someone/tiny-satclip", cache_dir=cache)), reference)
    assert torch.equal(embed(satclip.load("hf://someone/tiny-satclip/model.safetensors", cache_dir=cache)), reference)
    with pytest.raises(CheckpointError, match="offline"):
        LocationEncoder.from_pretrained("someone/not-cached", cache_dir=cache)

    # A damaged config.json blob is refused by its git blob id, naming the file.
    blob = cached["config.json"].resolve()
    blob.write_text(blob.read_text().replace('"capacity": 16', '"capacity": 17'))
    with pytest.raises(CheckpointError, match="config.json of the Hub repository someone/tiny-satclip is damaged"):
        LocationEncoder.from_pretrained("someone/tiny-satclip", cache_dir=cache)


def test_full_model_from_a_prefilled_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from satclip.models.satclip import SatCLIP

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = small_satclip()
    cache = tmp_path / "hf-cache"
    _cache_from_folder(cache, "someone/tiny-full", model.save_pretrained(tmp_path / "full"))
    reloaded = SatCLIP.from_pretrained("someone/tiny-full", cache_dir=cache)
    with torch.no_grad():
        assert torch.equal(reloaded.logits(images(), POINTS[:3]), model.logits(images(), POINTS[:3]))


def test_device_is_checked_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def no_download(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("downloaded before the device was checked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for loader in (satclip.load, load_image_encoder, LocationEncoder.from_pretrained):
        with pytest.raises(DeviceError, match="CUDA is not available"):
            loader("resnet50-l40", device="cuda", cache_dir=tmp_path / "cache")


def test_released_image_encoder_is_checked_against_the_registry(
    tmp_path: Path, released_with_visual: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A released repository's cached file holding another image encoder is refused, as one
    holding another L is by satclip.load."""
    require("timm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, _ = released_with_visual("moco_resnet18")
    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet50-l10"]
    fill_hub_cache(cache, entry.repo_id, entry.filename, path)
    with pytest.raises(CheckpointError, match="holds a resnet18 image encoder, but microsoft/SatCLIP-ResNet50-L10"):
        load_image_encoder("resnet50-l10", cache_dir=cache)
    entry18 = MODELS["resnet18-l40"]
    fill_hub_cache(cache, entry18.repo_id, entry18.filename, path)
    with pytest.raises(CheckpointError, match="legendre_polys=10, but microsoft/SatCLIP-ResNet18-L40"):
        load_image_encoder("resnet18-l40", cache_dir=cache)
    entry18l10 = MODELS["resnet18-l10"]
    fill_hub_cache(cache, entry18l10.repo_id, entry18l10.filename, path)
    assert load_image_encoder("resnet18-l10", cache_dir=cache).config.architecture == "resnet18"


# ----------------------------------------------------------------------------------------
# push_to_hub: the Hub calls captured (huggingface_hub has no local stand-in of the Hub API)


@pytest.fixture
def captured_hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from huggingface_hub import HfApi

    calls: list[dict[str, Any]] = []

    def create_repo(self: Any, repo_id: str, **kwargs: Any) -> Any:
        calls.append({"call": "create_repo", "repo_id": repo_id, **kwargs})
        from huggingface_hub import RepoUrl

        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self: Any, **kwargs: Any) -> str:
        folder = Path(kwargs["folder_path"])
        files = {p.name: p.read_bytes() for p in folder.iterdir()}  # read now: the folder is temporary
        calls.append({"call": "upload_folder", **kwargs, "files": files})
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/0123abcd"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def test_push_to_hub_uploads_the_saved_folder(captured_hub: list[dict[str, Any]], tmp_path: Path) -> None:
    model = small_location_encoder()
    result = model.push_to_hub("someone/tiny-satclip", private=True, metrics={"MSE": 1.5})
    assert result == "https://huggingface.co/someone/tiny-satclip/commit/0123abcd"
    create, upload = captured_hub
    assert create["call"] == "create_repo" and create["repo_id"] == "someone/tiny-satclip"
    assert create["private"] is True and create["exist_ok"] is True and create["repo_type"] == "model"
    assert upload["repo_id"] == "someone/tiny-satclip" and upload["repo_type"] == "model"
    files = upload["files"]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    # The exact folder save_pretrained writes (with the repository named in the card's example).
    local = model.save_pretrained(tmp_path / "m", metrics={"MSE": 1.5}, repo_id="someone/tiny-satclip")
    for name in ("config.json", "README.md"):
        assert files[name] == (local / name).read_bytes(), name
    # safetensors writes its metadata in no fixed order: compare what the weights file holds.
    from safetensors.torch import load

    uploaded, saved = load(files["model.safetensors"]), load((local / "model.safetensors").read_bytes())
    assert uploaded.keys() == saved.keys() and all(torch.equal(uploaded[k], saved[k]) for k in saved)
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for name, data in files.items():
        (pushed / name).write_bytes(data)
    assert torch.equal(embed(LocationEncoder.from_pretrained(pushed)), embed(model))
    card = files["README.md"].decode()
    assert "satclip.load('someone/tiny-satclip')" in card and "| MSE | 1.5 |" in card
    assert not Path(upload["folder_path"]).exists()  # the temporary folder is gone


def test_push_to_hub_offline_is_refused_without_contacting_the_hub(
    captured_hub: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        small_location_encoder().push_to_hub("someone/tiny-satclip")
    assert captured_hub == []


def test_push_to_hub_errors_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    def create_repo(self: Any, repo_id: str, **kwargs: Any) -> Any:
        raise PermissionError("401 Unauthorized: invalid token")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(CheckpointError, match="could not push to the Hub repository someone/x.*401"):
        small_location_encoder().push_to_hub("someone/x")


def test_full_model_push_to_hub(captured_hub: list[dict[str, Any]]) -> None:
    small_satclip().push_to_hub("someone/tiny-full")
    files = captured_hub[-1]["files"]
    assert json.loads(files["config.json"])["satclip_model"] == "SatCLIP"
    assert "SatCLIP.from_pretrained('someone/tiny-full')" in files["README.md"].decode()


def test_checkpoint_factory_hub_layout(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    """The offline caches above have huggingface_hub's own layout: its cache scan reads them."""
    from huggingface_hub import scan_cache_dir

    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet18-l10"]
    cached = fill_hub_cache(cache, entry.repo_id, entry.filename, make_checkpoint(10))
    info = scan_cache_dir(cache)
    assert info.warnings == []
    (repo,) = info.repos
    (revision,) = repo.revisions
    (file,) = revision.files
    assert repo.repo_id == entry.repo_id and file.file_name == entry.filename
    assert file.blob_path == cached.resolve()
