"""satclip.load / satclip.save: released-layout checkpoints, safetensors, the Hub cache, errors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import satclip
from conftest import CheckpointFactory, fill_hub_cache, location_state_dict, released_checkpoint_dict
from satclip.errors import CheckpointError, DTypeError
from satclip.io.checkpoint import MODELS, load, save
from satclip.models.location import LocationEncoder

POINTS = torch.tensor(
    [[8.55, 47.37], [-122.4, 37.8], [0.0, 90.0], [0.0, -90.0], [180.0, 0.0], [-180.0, -33.9], [151.2, -33.9]],
    dtype=torch.float64,
)


def embed(model: LocationEncoder) -> torch.Tensor:
    with torch.no_grad():
        return model(POINTS)


# ----------------------------------------------------------------------------------------
# Registry


def test_registry_names_the_six_released_models() -> None:
    assert len(MODELS) == 6
    for vision, short in (("ResNet18", "resnet18"), ("ResNet50", "resnet50"), ("ViT16", "vit16")):
        for L in (10, 40):
            entry = MODELS[f"{short}-l{L}"]
            assert entry.repo_id == f"microsoft/SatCLIP-{vision}-L{L}"
            assert entry.filename == f"satclip-{short}-l{L}.ckpt"
            assert entry.L == L
            assert entry.revision
    assert satclip.MODELS is MODELS


# ----------------------------------------------------------------------------------------
# Loading the released layout


def test_load_released_layout(released_l10: tuple[Path, dict[str, Any]]) -> None:
    path, checkpoint = released_l10
    model = load(path)
    assert isinstance(model, LocationEncoder)
    assert not model.training
    assert model.posenc.L == 10 and model.embed_dim == 256
    expected = location_state_dict(checkpoint)
    got = model.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == torch.float64
        assert torch.equal(got[name], tensor), name


def test_location_weights_win_over_the_alias(make_checkpoint: CheckpointFactory) -> None:
    def spoil_alias(ck: dict[str, Any]) -> None:
        for k in list(ck["state_dict"]):
            if k.startswith("model.nnet."):
                ck["state_dict"][k] = torch.zeros_like(ck["state_dict"][k])

    model = load(make_checkpoint(edit=spoil_alias))
    weight = model.state_dict()["nnet.layers.0.weight"]
    assert weight.abs().sum() > 0


def test_alias_alone_is_enough(make_checkpoint: CheckpointFactory) -> None:
    def drop_location(ck: dict[str, Any]) -> None:
        for k in list(ck["state_dict"]):
            if k.startswith("model.location."):
                del ck["state_dict"][k]

    path = make_checkpoint(edit=drop_location, seed=3)
    reference = released_checkpoint_dict(10, seed=3)
    model = load(path)
    assert torch.equal(
        model.state_dict()["nnet.last_layer.bias"], reference["state_dict"]["model.nnet.last_layer.bias"]
    )


def test_load_dtype_and_device(released_l10: tuple[Path, dict[str, Any]]) -> None:
    path, _ = released_l10
    m32 = load(path, dtype=torch.float32, device="cpu")
    m64 = load(path, dtype="float64")
    assert all(p.dtype == torch.float32 for p in m32.parameters())
    assert all(p.dtype == torch.float64 for p in m64.parameters())
    torch.testing.assert_close(embed(m32).double(), embed(m64), rtol=0, atol=1e-4)
    with pytest.raises(DTypeError, match="float32 or torch.float64"):
        load(path, dtype=torch.float16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_load_to_cuda(released_l10: tuple[Path, dict[str, Any]]) -> None:
    path, _ = released_l10
    model = load(path, device="cuda")
    assert all(p.is_cuda for p in model.parameters())
    with torch.no_grad():
        on_gpu = model(POINTS.cuda()).cpu()
    torch.testing.assert_close(on_gpu, embed(load(path)), rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------
# safetensors round trip


def test_round_trip_through_safetensors(released_l10: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = released_l10
    original = load(path)
    out = save(original, tmp_path / "model.safetensors")
    reloaded = load(out)
    assert torch.equal(embed(reloaded), embed(original))
    for name, tensor in original.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor)


def test_safetensors_round_trip_keeps_architecture(make_checkpoint: CheckpointFactory, tmp_path: Path) -> None:
    path = make_checkpoint(
        4,
        embed_dim=16,
        capacity=32,
        num_hidden_layers=3,
        hparams=None,
        seed=5,
        edit=_set_hparams(legendre_polys=4, embed_dim=16, capacity=32, num_hidden_layers=3),
    )
    model = load(path)
    reloaded = load(save(model, tmp_path / "small.safetensors"))
    assert reloaded.posenc.L == 4 and reloaded.embed_dim == 16
    assert reloaded.nnet.num_layers == 3 and reloaded.nnet.dim_hidden == 32
    assert torch.equal(embed(reloaded), embed(model))


def test_safetensors_load_uses_no_pickle(
    released_l10: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = released_l10
    out = save(load(path), tmp_path / "model.safetensors")

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pickle used while loading safetensors")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert load(out).posenc.L == 10


def test_save_never_overwrites_without_asking(released_l10: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = released_l10
    model = load(path)
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(model, target)
    assert target.read_bytes() == b"precious"
    save(model, target, overwrite=True)
    assert load(target).posenc.L == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp file left


def test_save_rejects_other_suffixes(released_l10: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=".safetensors"):
        save(load(released_l10[0]), tmp_path / "model.ckpt")
    assert not (tmp_path / "model.ckpt").exists()


# ----------------------------------------------------------------------------------------
# Error paths


def _set_hparams(**values: Any):
    def edit(ck: dict[str, Any]) -> None:
        ck["hyper_parameters"].update(values)

    return edit


def _drop_hparam(key: str):
    def edit(ck: dict[str, Any]) -> None:
        del ck["hyper_parameters"][key]

    return edit


def _drop_tensor(name: str):
    def edit(ck: dict[str, Any]) -> None:
        for prefix in ("model.location.nnet.", "model.nnet."):
            del ck["state_dict"][prefix + name]

    return edit


def _replace_tensor(name: str, value: torch.Tensor):
    def edit(ck: dict[str, Any]) -> None:
        for prefix in ("model.location.nnet.", "model.nnet."):
            ck["state_dict"][prefix + name] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_hparams(le_type="grid"), "le_type='grid'"),
        (_set_hparams(pe_type="mlp"), "pe_type='mlp'"),
        (_set_hparams(harmonics_calculation="closed-form"), "harmonics_calculation='closed-form'"),
        (_drop_hparam("capacity"), "lack capacity"),
        (_set_hparams(legendre_polys=0), "legendre_polys"),
        (_set_hparams(num_hidden_layers="two"), "num_hidden_layers"),
        (_drop_tensor("layers.1.bias"), r"model\.location\.nnet\.layers\.1\.bias is missing"),
        (
            _replace_tensor("layers.0.weight", torch.zeros(256, 99, dtype=torch.float64)),
            r"layers\.0\.weight has shape \(256, 99\), expected \(256, 100\)",
        ),
        (
            _replace_tensor("last_layer.bias", torch.zeros(128, dtype=torch.float64)),
            r"last_layer\.bias has shape \(128,\)",
        ),
        (_replace_tensor("layers.1.bias", torch.full((256,), float("nan"), dtype=torch.float64)), "NaN"),
        (_replace_tensor("layers.1.bias", torch.zeros(256, dtype=torch.int64)), "floating point"),
        (
            _replace_tensor("layers.2.weight", torch.zeros(256, 256, dtype=torch.float64)),
            r"unexpected tensor .*layers\.2\.weight",
        ),
        (lambda ck: ck.pop("hyper_parameters"), "no 'hyper_parameters'"),
        (lambda ck: ck.pop("state_dict"), "no 'state_dict'"),
        (lambda ck: ck["state_dict"].clear(), "no location-encoder weights"),
    ],
)
def test_bad_checkpoint_contents_are_named(make_checkpoint: CheckpointFactory, edit: Any, message: str) -> None:
    path = make_checkpoint(edit=edit)
    with pytest.raises(CheckpointError, match=message):
        load(path)


def test_truncated_checkpoint(released_l10: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    data = released_l10[0].read_bytes()
    for size in (0, 100, len(data) // 2, len(data) - 10):
        broken = tmp_path / f"cut{size}.ckpt"
        broken.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load(broken)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("this is not a checkpoint\n" * 20)
    with pytest.raises(CheckpointError, match=str(path.name)):
        load(path)


def test_truncated_safetensors(released_l10: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    good = save(load(released_l10[0]), tmp_path / "good.safetensors")
    data = good.read_bytes()
    for size in (0, 7, 200, len(data) - 1):
        broken = tmp_path / f"cut{size}.safetensors"
        broken.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="safetensors"):
            load(broken)


def test_foreign_safetensors_without_config(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"nnet.layers.0.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointError, match="satclip_config"):
        load(path)


def test_missing_paths_and_unknown_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # "someone/some-model" is looked up in the (empty) cache only
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load(tmp_path / "absent.ckpt")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load(str(tmp_path / "absent.safetensors"))
    with pytest.raises(CheckpointError, match="not a file"):
        load(tmp_path)
    with pytest.raises(CheckpointError, match="known models are resnet18-l10"):
        load("resnet51-l40")
    with pytest.raises(CheckpointError, match="hf://owner/repo/file") as info:
        load("someone/some-model", cache_dir=tmp_path / "empty-cache")
    assert "model.safetensors" in str(info.value) and "save_pretrained" in str(info.value)
    with pytest.raises(CheckpointError, match="string or path"):
        load(42)  # type: ignore[arg-type]


class _Payload:
    """Unpickling this calls os.system: a stand-in for a malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    checkpoint = released_checkpoint_dict(10)
    checkpoint["hyper_parameters"]["trojan"] = _Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(checkpoint, path)

    with pytest.raises(CheckpointError, match="arbitrary code") as info:
        load(path)
    assert "system" in str(info.value)  # names what it refused
    assert not marker.exists()

    # Control: the payload is live - a plain unpickling of a copy does run it.
    control_marker = tmp_path / "control-ran"
    checkpoint["hyper_parameters"]["trojan"] = _Payload(control_marker)
    torch.save(checkpoint, tmp_path / "control.ckpt")
    torch.load(tmp_path / "control.ckpt", weights_only=False)
    assert control_marker.exists()


# ----------------------------------------------------------------------------------------
# The Hub path, offline, from a pre-filled cache


@pytest.fixture
def hub_cache(tmp_path: Path, make_checkpoint: CheckpointFactory) -> Path:
    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet50-l40"]
    fill_hub_cache(cache, entry.repo_id, entry.filename, make_checkpoint(40, seed=11))
    return cache


def test_hub_offline_from_cache(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = location_state_dict(released_checkpoint_dict(40, seed=11))
    for name in ("resnet50-l40", "microsoft/SatCLIP-ResNet50-L40"):
        model = load(name, cache_dir=hub_cache)
        assert model.posenc.L == 40
        assert torch.equal(model.state_dict()["nnet.layers.0.weight"], expected["nnet.layers.0.weight"])
    with pytest.raises(CheckpointError, match="offline"):
        load("resnet18-l40", cache_dir=hub_cache)


def test_hub_local_files_only_without_env(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert load("resnet50-l40", cache_dir=hub_cache, local_files_only=True).posenc.L == 40
    with pytest.raises(CheckpointError, match="SatCLIP-ViT16-L10"):
        load("vit16-l10", cache_dir=hub_cache, local_files_only=True)


def test_hub_cache_with_wrong_model_is_refused(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet50-l40"]
    fill_hub_cache(cache, entry.repo_id, entry.filename, make_checkpoint(10))
    with pytest.raises(CheckpointError, match="L=40 model"):
        load("resnet50-l40", cache_dir=cache, local_files_only=True)


def test_hub_offline_in_a_fresh_process(hub_cache: Path) -> None:
    """HF_HUB_OFFLINE set before anything is imported, as a user would set it."""
    script = textwrap.dedent(
        f"""
        import satclip
        model = satclip.load("resnet50-l40", cache_dir={str(hub_cache)!r})
        print(model.posenc.L, model.embed_dim)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["40", "256"]


def test_hub_file_urls(
    tmp_path: Path, released_l10: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    converted = save(load(released_l10[0]), tmp_path / "model.safetensors")
    cache = tmp_path / "hf-cache"
    fill_hub_cache(cache, "someone/my-satclip", "weights/model.safetensors", converted)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load("hf://someone/my-satclip/weights/model.safetensors", cache_dir=cache)
    assert torch.equal(embed(model), embed(load(released_l10[0])))
    with pytest.raises(CheckpointError, match="hf://owner/repo/path/to/file"):
        load("hf://someone", cache_dir=cache)


def test_legendre_polys_names_L_only_in_the_file_format(tmp_path: Path) -> None:
    """The public API says L; the files keep the released hyper-parameter key, and the 0.1
    keyword/attribute still works with a DeprecationWarning."""
    import json

    import numpy as np
    from safetensors import safe_open

    from satclip.downstream.probes import baseline_features
    from satclip.io.checkpoint import EncoderConfig
    from satclip.models.location import SphericalHarmonics

    path = save(EncoderConfig(L=3, embed_dim=8, capacity=16).build(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        stored = json.loads(f.metadata()["satclip_config"])
    assert stored == {"legendre_polys": 3, "embed_dim": 8, "capacity": 16, "num_hidden_layers": 2, "basis": "satclip"}
    assert load(path).posenc.L == 3
    assert MODELS["vit16-l40"].L == 40 and MODELS["resnet18-l10"].L == 10

    with pytest.warns(DeprecationWarning, match="L="):
        assert SphericalHarmonics(legendre_polys=5).L == 5
    with pytest.warns(DeprecationWarning, match="ReleasedModel.L"):
        assert MODELS["resnet50-l40"].legendre_polys == 40
    with pytest.warns(DeprecationWarning, match="EncoderConfig.L"):
        assert EncoderConfig(L=7).legendre_polys == 7
    pts = np.array([[8.55, 47.37], [0.0, -90.0], [-180.0, 12.5]])
    with pytest.warns(DeprecationWarning, match="baseline_features"):
        old = baseline_features(pts, "sh", legendre_polys=4)
    np.testing.assert_array_equal(old, satclip.spherical_harmonics(pts, 4))
