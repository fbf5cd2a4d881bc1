"""Shared fixtures: checkpoints in the layout of the released SatCLIP files, built here.

A released file is a PyTorch Lightning checkpoint (a pickled dict) with
``state_dict`` - float64 location weights under ``model.location.nnet.*`` aliased under
``model.nnet.*``, vision weights under ``model.visual.*``, ``model.logit_scale`` - and
``hyper_parameters``, which hold the architecture and many keys that mean nothing to a
location encoder. The fixtures reproduce that structure at small scale (a few fake vision
tensors), with SIREN weights drawn like the original initialisation.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from extras import collector_for_missing_extra
from references.original import released_init_state_dict


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


#: hyper_parameters["vision_layers"] of the released files -> the timm architecture they hold.
RELEASED_VISION_TIMM = {
    "moco_resnet18": "resnet18",
    "moco_resnet50": "resnet50",
    "moco_vit16": "vit_small_patch16_224",
}


def released_visual_state_dict(vision: str, *, seed: int = 0, embed_dim: int = 256) -> dict[str, torch.Tensor]:
    """Random weights for a released image encoder (timm names, no prefix), built with timm directly.

    Norm statistics, gains and all biases are drawn at random too: timm initialises them to the
    identity or zero (and zeroes each residual block's last BN gain), which would hide a wrongly
    loaded tensor.
    """
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(RELEASED_VISION_TIMM[vision], in_chans=13, num_classes=embed_dim, pretrained=False)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        gen = torch.Generator().manual_seed(seed + 17)
        for key, value in state.items():
            if key.endswith(("running_mean", ".bias")) or key == "cls_token":
                state[key] = 0.1 * torch.randn(value.shape, generator=gen)
            elif key.endswith("running_var"):
                state[key] = 0.5 + torch.rand(value.shape, generator=gen)
            elif key.endswith(".weight") and value.ndim == 1:  # BatchNorm / LayerNorm gains
                state[key] = 1.0 + 0.2 * torch.randn(value.shape, generator=gen)
            elif key.endswith("num_batches_tracked"):
                state[key] = torch.tensor(40000)
    return state


def released_checkpoint_dict(
    legendre_polys: int = 10,
    *,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    embed_dim: int = 256,
    capacity: int = 256,
    num_hidden_layers: int = 2,
    vision: str | None = None,
) -> dict[str, Any]:
    """A dict shaped like a released checkpoint; location weights as the original initialises them.

    ``vision`` (``moco_resnet18`` / ``moco_resnet50`` / ``moco_vit16``) adds a complete image
    encoder with random weights (:func:`released_visual_state_dict`) and names it in
    ``hyper_parameters["vision_layers"]``; without it the file carries a few fake vision tensors,
    as much as the location-only tests need.
    """
    location = released_init_state_dict(legendre_polys, embed_dim, capacity, num_hidden_layers, seed=seed, prefix="")
    gen = torch.Generator().manual_seed(seed + 1)
    state_dict: dict[str, torch.Tensor] = {"model.logit_scale": torch.tensor(2.6592, dtype=torch.float64)}
    if vision is None:
        state_dict.update(
            {
                "model.visual.conv1.weight": torch.randn(8, 13, 3, 3, generator=gen),
                "model.visual.bn1.weight": torch.ones(8),
                "model.visual.bn1.running_mean": torch.zeros(8),
                "model.visual.bn1.num_batches_tracked": torch.tensor(1234),
                "model.visual.fc.weight": torch.randn(embed_dim, 8, generator=gen),
            }
        )
    else:
        visual = released_visual_state_dict(vision, seed=seed, embed_dim=embed_dim)
        state_dict.update({f"model.visual.{k}": v for k, v in visual.items()})
        if hparams is None:
            hparams = released_hyper_parameters(legendre_polys, vision_layers=vision)
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
    return {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


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


@pytest.fixture
def ckpt(released_l10: tuple[Path, dict[str, Any]]) -> str:
    """The session's L = 10 released-layout checkpoint, as the path string the CLI takes."""
    return str(released_l10[0])


@pytest.fixture(scope="session")
def released_l6(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small (L = 6, 36 features) released-layout checkpoint shared by the session, as a path string."""
    path = tmp_path_factory.mktemp("released-l6") / "l6.ckpt"
    torch.save(released_checkpoint_dict(6), path)
    return str(path)


@pytest.fixture
def fresh_model_cache() -> None:
    """Empties satclip's model caches, so every test loads its checkpoint afresh (use with
    ``pytestmark = pytest.mark.usefixtures("fresh_model_cache")``)."""
    import satclip

    satclip.clear_caches()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``satclip *argv`` in this process: (exit code, stdout, stderr)."""
    from satclip.cli.main import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def released_with_visual(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, dict[str, Any]]]:
    """``get(vision)`` -> (path, checkpoint dict) of an L = 10 released-layout file with a full
    image encoder; each architecture is built and written once per session (ResNet50 ~95 MB)."""
    made: dict[str, tuple[Path, dict[str, Any]]] = {}
    root = tmp_path_factory.mktemp("released-visual")

    def get(vision: str) -> tuple[Path, dict[str, Any]]:
        if vision not in made:
            checkpoint = released_checkpoint_dict(10, seed=3, vision=vision)
            path = root / f"satclip-{vision.removeprefix('moco_')}-l10.ckpt"
            torch.save(checkpoint, path)
            made[vision] = (path, checkpoint)
        return made[vision]

    return get


#: The commit the fake Hub caches below claim to hold.
HUB_COMMIT = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"


def fill_hub_cache(
    cache: Path, repo_id: str, filename: str, source: Path, *, lfs: bool = True, linked: bool = True
) -> Path:
    """Copies ``source`` into ``cache`` in the layout huggingface_hub's cache uses
    (``models--owner--name/{refs/main, blobs/<digest>, snapshots/<commit>/file}``); returns the
    cached file. The snapshot file is a relative link to its blob, named by the sha256 of the
    bytes for an LFS file (``lfs=True``) or by git's blob id (sha1 of ``blob <size>\\0<bytes>``)
    for a small file kept in git; ``linked=False`` stores a plain copy instead, as the cache does
    where symbolic links are unavailable. Files can be added to a repository already there."""
    import hashlib
    import os

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    target = repo / "snapshots" / HUB_COMMIT / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    if not linked:
        shutil.copy(source, target)
        return target
    data = source.read_bytes()
    if lfs:
        digest = hashlib.sha256(data).hexdigest()
    else:
        digest = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    blob = repo / "blobs" / digest
    blob.parent.mkdir(exist_ok=True)
    shutil.copy(source, blob)
    target.symlink_to(os.path.relpath(blob, target.parent))
    return target


def write_s2_geotiff(
    path: Path, pixels: Any, *, epsg: int | None = 32632, origin: tuple[float, float] = (500_000.0, 5_000_000.0)
) -> Path:
    """Writes ``pixels`` (12, H, W) uint16 as an S2-100K-style GeoTIFF: pixel-interleaved, LZW,
    10 m pixels, one tie point at the top-left corner ``origin`` (metres) in EPSG ``epsg``
    (GeoTIFF tags written by hand here, not by the code under test). ``epsg=None``: a plain TIFF."""
    import numpy as np
    import tifffile

    data = np.ascontiguousarray(np.moveaxis(np.asarray(pixels), 0, -1))
    extratags = []
    if epsg is not None:
        geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg]  # projected, pixel-is-area, EPSG
        extratags = [
            (33550, "d", 3, (10.0, 10.0, 0.0), True),  # ModelPixelScale
            (33922, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),  # ModelTiepoint
            (34735, "H", len(geokeys), tuple(geokeys), True),  # GeoKeyDirectory
        ]
    tifffile.imwrite(
        path, data, photometric="minisblack", planarconfig="contig", compression="lzw", extratags=extratags
    )
    return path


def shared_data_dir() -> Path | None:
    """The shared sample data (never in the repository): $SATCLIP_SHARED_DATA, ../shared/data next
    to the repository, or /work/shared/data; ``None`` when absent (tests using it then skip)."""
    import os

    repo = Path(__file__).resolve().parents[1]
    for cand in (os.environ.get("SATCLIP_SHARED_DATA"), repo.parent / "shared" / "data", "/work/shared/data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


# --- optional extras -----------------------------------------------------------------------------
#: Test modules that need an optional extra, with the modules that extra brings. A module whose
#: extra is missing is replaced by one test that says which extra to install: skipped on a
#: developer's machine, failed in CI (CI installs every extra, so a missing one is a broken set-up,
#: not a reason to test less).
NEEDS_EXTRA: dict[str, tuple[str, tuple[str, ...]]] = {
    "test_cli_images.py": ("images", ("timm", "tifffile", "pyarrow")),
    "test_cli_object_store.py": ("cloud", ("fsspec", "s3fs", "moto.server", "flask", "flask_cors")),
    "test_dask.py": ("dask", ("dask.dataframe", "distributed", "pandas", "pyarrow", "cloudpickle")),
    "test_downstream_cli.py": ("eval", ("sklearn", "pandas")),
    "test_evaluate.py": ("eval", ("sklearn", "pandas")),
    "test_geo_inputs.py": ("geo", ("geopandas", "shapely", "pyproj")),
    "test_images.py": ("images", ("timm", "tifffile")),
    "test_locate.py": ("images", ("timm", "tifffile")),
    "test_ray.py": ("ray", ("ray.data", "pandas", "pyarrow")),
    "test_sklearn.py": ("eval", ("sklearn", "pandas")),
    "test_spatial_cv.py": ("eval", ("sklearn", "pandas")),
    "test_train_ddp.py": ("train", ("lightning", "timm", "tifffile", "imagecodecs")),
    "test_triton_harmonics.py": ("torch's triton", ("triton",)),
}


def pytest_pycollect_makemodule(module_path: Path, parent: Any) -> Any:
    return collector_for_missing_extra(module_path, parent, NEEDS_EXTRA)


#: The extra that brings each optional module a single test imports.
EXTRA_OF_MODULE = {
    "dask_geopandas": "test",
    "rio_cogeo": "test",
    "geopandas": "geo",
    "h3": "geo",
    "h5netcdf": "geo",
    "pyproj": "geo",
    "rasterio": "geo",
    "rioxarray": "geo",
    "shapely": "geo",
    "xarray": "geo",
    "zarr": "geo",
    "imagecodecs": "images",
    "tifffile": "images",
    "timm": "images",
    "lightning": "train",
    "matplotlib": "maps",
    "pandas": "dask",
    "pyarrow": "dask",
    "ray": "ray",
    "ray.data": "ray",
    "sklearn": "eval",
    "mpmath": "test",
    "mkdocs": "docs",
    "geoclip": "geoclip",
    "triton": "torch's triton",
    "torch": "the torch dependency",
}


def require(module: str) -> Any:
    """``module`` imported, for a test that needs an optional extra: skipped with the extra's name
    on a developer's machine without it, failed in CI (which installs every extra)."""
    import importlib
    import os

    try:
        return importlib.import_module(module)
    except ImportError as e:
        message = f"needs the {EXTRA_OF_MODULE.get(module, '?')!r} extra: {module} is not installed ({e})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI installs every extra", pytrace=False)
        pytest.skip(message)
