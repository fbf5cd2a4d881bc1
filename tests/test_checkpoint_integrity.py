"""Damaged, crafted and junk checkpoint files, the Hub cache's content addressing, and the Hub path without network."""

from __future__ import annotations

import hashlib
import os
import socket
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import CheckpointFactory, fill_hub_cache, released_hyper_parameters
from satclip.errors import CheckpointError
from satclip.io import hub
from satclip.io.checkpoint import MAX_PARAMETERS, MODELS, load, save


def _largest_record_data_offset(path: Path) -> tuple[str, int, int]:
    """(name, offset of its first data byte, size) of the biggest record of a stored zip."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    return info.filename, info.header_offset + 30 + name_len + extra_len, info.compress_size


def test_flipped_bytes_are_found_by_the_zip_crcs(make_checkpoint: CheckpointFactory, tmp_path: Path) -> None:
    path = make_checkpoint(10)
    name, start, size = _largest_record_data_offset(path)
    data = bytearray(path.read_bytes())
    middle = start + size // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(bytes(data))
    # Control: torch.load itself does not notice; the weights are just wrong.
    assert torch.load(damaged, weights_only=True)["state_dict"] is not None
    with pytest.raises(CheckpointError, match="CRC-32") as info:
        load(damaged)
    assert repr(name) in str(info.value)


def test_crcs_are_checked_once_per_file_version(
    make_checkpoint: CheckpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_checkpoint(10)
    calls = []
    real_testzip = zipfile.ZipFile.testzip

    def counting_testzip(self: zipfile.ZipFile) -> str | None:
        calls.append(self.filename)
        return real_testzip(self)

    monkeypatch.setattr(zipfile.ZipFile, "testzip", counting_testzip)
    first = load(path)
    second = load(path)
    assert len(calls) == 1
    lonlat = torch.tensor([[10.0, 50.0], [-120.0, -33.0]], dtype=torch.float64)
    torch.testing.assert_close(first(lonlat), second(lonlat), rtol=0, atol=0)
    # The same file damaged afterwards, in place and keeping its size: checked again, and caught.
    _, start, size = _largest_record_data_offset(path)
    data = bytearray(path.read_bytes())
    data[start + size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(CheckpointError, match="CRC-32"):
        load(path)
    assert len(calls) == 2


def _crafted(tmp_path: Path, legendre_polys: int, capacity: int) -> Path:
    """An expanded (stride-0) tensor per weight: tiny on disk, enormous once materialised."""
    hparams = {**released_hyper_parameters(legendre_polys), "capacity": capacity}
    dim_in = legendre_polys**2
    one = torch.zeros(1, dtype=torch.float64)
    shapes = {
        "layers.0.weight": (capacity, dim_in),
        "layers.0.bias": (capacity,),
        "layers.1.weight": (capacity, capacity),
        "layers.1.bias": (capacity,),
        "last_layer.weight": (256, capacity),
        "last_layer.bias": (256,),
    }
    state = {f"model.location.nnet.{k}": one.expand(*shape) for k, shape in shapes.items()}
    path = tmp_path / f"crafted-{legendre_polys}-{capacity}.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)
    assert path.stat().st_size < 64 * 1024
    return path


def test_stride_zero_tensors_are_refused_before_anything_is_materialised(tmp_path: Path) -> None:
    # 256 x 1000**2 float64 = 2 GB if materialised (and again for the model); refused from the storage size.
    with pytest.raises(CheckpointError, match="storage holds 8") as info:
        load(_crafted(tmp_path, 1000, 256))
    assert "layers.0.weight" in str(info.value)


def test_hyper_parameters_describing_a_huge_model_are_refused(tmp_path: Path) -> None:
    # 40000 x 1000**2 parameters = 298 GiB: refused from the hyper-parameters alone.
    with pytest.raises(CheckpointError, match=f"at most {MAX_PARAMETERS:,}"):
        load(_crafted(tmp_path, 1000, 40000))


@pytest.mark.parametrize("content", [b"\x13\x37" * 5000, b"hello, not a checkpoint\n"])
def test_random_bytes_are_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a checkpoint") as info:
        load(path)
    assert "arbitrary code" not in str(info.value)


# ----------------------------------------------------------------------------------------
# The Hub: content-addressed cache, pinned revision, failing fast without network


def test_vit16_l40_is_pinned_to_torchgeos_commit() -> None:
    assert MODELS["vit16-l40"].revision == "0ef2acc0b91d3c8cfdf4a0cc03207095989287ab"


def _flip_middle_byte(path: Path) -> None:
    """Damages a file in place, keeping its size (the cache's blob, through its link)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_cached_file_is_checked_against_the_caches_content_address(
    tmp_path: Path, make_checkpoint: CheckpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet50-l40"]
    source = make_checkpoint(40, seed=11)
    cached = fill_hub_cache(cache, entry.repo_id, entry.filename, source)
    blob = cached.resolve()
    assert blob.name == hashlib.sha256(source.read_bytes()).hexdigest()  # the layout huggingface_hub writes
    before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    assert load("resnet50-l40", cache_dir=cache).posenc.L == 40
    # Nothing of satclip's is written into the shared cache.
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == before
    assert [p.name for p in cache.iterdir()] == ["models--microsoft--SatCLIP-ResNet50-L40"]

    # The same bytes under another name than their digest (a replaced or damaged blob).
    _flip_middle_byte(blob)
    with pytest.raises(CheckpointError, match="is damaged in the local cache") as info:
        load("resnet50-l40", cache_dir=cache)
    message = str(info.value)
    assert entry.filename in message and entry.repo_id in message and blob.name in message
    assert hashlib.sha256(blob.read_bytes()).hexdigest() in message


def test_damaged_safetensors_blob_is_refused_though_its_format_has_no_checksum(
    tmp_path: Path, released_l10: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = save(load(released_l10[0]), tmp_path / "model.safetensors")
    cache = tmp_path / "hf-cache"
    cached = fill_hub_cache(cache, "someone/my-satclip", "model.safetensors", weights)
    reference = load(weights)
    points = torch.tensor([[8.55, 47.37], [-122.4, 37.8]], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(load("someone/my-satclip", cache_dir=cache)(points), reference(points))
    # A flipped bit in a weight (the last bytes are tensor data): safetensors itself loads it without
    # complaint, as a slightly different model.
    data = bytearray(cached.resolve().read_bytes())
    data[-3] ^= 0x01
    cached.resolve().write_bytes(bytes(data))
    damaged = load(cached.resolve()).state_dict()
    assert any(not torch.equal(damaged[k], v) for k, v in reference.state_dict().items())
    with pytest.raises(CheckpointError, match="model.safetensors of the Hub repository someone/my-satclip is damaged"):
        load("someone/my-satclip", cache_dir=cache)
    with pytest.raises(CheckpointError, match="is damaged"):
        load("hf://someone/my-satclip/model.safetensors", cache_dir=cache)


def test_cache_of_plain_copies_loads_with_the_files_own_checks(
    tmp_path: Path, make_checkpoint: CheckpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the cache holds copies (no links to content-addressed blobs) there is no digest to
    check against; the file's own checks (zip CRCs, the released L) still apply."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet50-l40"]
    cached = fill_hub_cache(cache, entry.repo_id, entry.filename, make_checkpoint(40, seed=11), linked=False)
    assert not cached.is_symlink() and hub.content_address(cached) is None
    assert load("resnet50-l40", cache_dir=cache).posenc.L == 40
    _, start, size = _largest_record_data_offset(cached)
    data = bytearray(cached.read_bytes())
    data[start + size // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC-32"):
        load("resnet50-l40", cache_dir=cache)


def test_a_file_is_hashed_once_per_version(
    tmp_path: Path, make_checkpoint: CheckpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet18-l10"]
    fill_hub_cache(cache, entry.repo_id, entry.filename, make_checkpoint(10, seed=2))
    opened: list[str] = []
    real_open = open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(str(file)).parent.name == "blobs":
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    load("resnet18-l10", cache_dir=cache)
    load("resnet18-l10", cache_dir=cache)
    assert len(opened) == 1


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The probe's connection times out; hf_hub_download may only be asked for the cache."""
    timeouts: list[float] = []

    def create_connection(address: Any, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        timeouts.append(timeout if timeout is not None else float("inf"))
        raise TimeoutError("timed out")

    import huggingface_hub

    real = huggingface_hub.hf_hub_download

    def hf_hub_download(*args: Any, **kwargs: Any) -> Any:
        assert kwargs.get("local_files_only"), "went to the network after the probe failed"
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    return timeouts


def test_no_hub_access_fails_at_once_with_advice(tmp_path: Path, no_network: list[float]) -> None:
    with pytest.raises(CheckpointError, match="no Hub access") as info:
        load("resnet18-l10", cache_dir=tmp_path / "empty-cache")
    assert "HF_HUB_OFFLINE=1" in str(info.value) and "pass a checkpoint path" in str(info.value)
    assert len(no_network) == 1 and no_network[0] <= 3  # one short attempt, no retry loop


def test_no_hub_access_uses_a_cached_file(
    tmp_path: Path, make_checkpoint: CheckpointFactory, no_network: list[float]
) -> None:
    cache = tmp_path / "hf-cache"
    entry = MODELS["resnet50-l10"]
    fill_hub_cache(cache, entry.repo_id, entry.filename, make_checkpoint(10, seed=3))
    assert load("resnet50-l10", cache_dir=cache).posenc.L == 10
    assert len(no_network) == 1


def test_offline_setting_skips_the_probe(
    tmp_path: Path, no_network: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline"):
        load("resnet18-l10", cache_dir=tmp_path / "empty-cache")
    assert no_network == []


def test_training_weights_use_the_same_fail_fast_download(no_network: list[float]) -> None:
    from satclip.train.encoders import resolve_weights_file
    from satclip.train.errors import TrainingConfigError

    with pytest.raises(TrainingConfigError, match="no Hub access"):
        resolve_weights_file("hf://someone/not-cached-anywhere-4711/weights.pt")
    assert len(no_network) == 1
