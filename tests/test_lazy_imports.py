"""The optional scale-out engines stay out of the plain path: ``import satclip`` and
``satclip.encode`` (CPU) must not import Dask, distributed, Ray or Triton (checked in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_plain_encode_imports_no_dask_distributed_or_ray(make_checkpoint) -> None:
    ckpt = make_checkpoint(4)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import satclip
        emb = satclip.encode(np.array([[8.55, 47.37], [0.0, 0.0]]), {str(ckpt)!r})
        assert emb.shape == (2, 256), emb.shape
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "ray", "dask_geopandas", "triton"))
        print("HEAVY", heavy)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "HEAVY []" in run.stdout, run.stdout


@pytest.mark.parametrize("module, engine", [("satclip.dask", "dask"), ("satclip.ray", "ray")])
def test_adapter_modules_import_their_engine_only_when_used(module: str, engine: str) -> None:
    """`import satclip.dask` inside the package must not shadow or eagerly load the real `dask`."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import satclip
        import {module} as adapter
        assert {engine!r} not in sys.modules, "imported at module level"
        try:
            import {engine}
        except ImportError:
            print("ABSENT")
        else:
            # Absolute imports: the top-level package, not satclip's adapter module. Compared by
            # module identity and package folder, not by path text: a clone may live anywhere,
            # in a folder named satclip included.
            inside = Path({engine}.__file__).resolve().is_relative_to(Path(satclip.__file__).resolve().parent)
            print("TOP", {engine}.__name__, {engine} is not adapter and not inside)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    allowed = {f"TOP {engine} True"} if os.environ.get("CI") else {"ABSENT", f"TOP {engine} True"}
    assert run.stdout.strip() in allowed, f"{run.stdout} (CI installs every extra, so {engine} must be there)"


#: The downstream extras (geo, eval, maps export): never on the plain path.
DOWNSTREAM_HEAVY = (
    "geopandas",
    "pyproj",
    "shapely",
    "h3",
    "xarray",
    "rioxarray",
    "rasterio",
    "zarr",
    "h5netcdf",
    "h5py",
    "sklearn",
    "matplotlib",
)


def test_plain_import_and_encode_import_no_geo_eval_or_plotting_stack(make_checkpoint) -> None:
    ckpt = make_checkpoint(4)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import pandas as pd
        import satclip
        satclip.encode(np.array([[8.55, 47.37]]), {str(ckpt)!r})
        satclip.encode(pd.DataFrame({{"lon": [1.0], "lat": [2.0]}}), {str(ckpt)!r})
        satclip.encode([[1.0, 2.0]], {str(ckpt)!r})
        import satclip.downstream.probes, satclip.downstream.embedding_map, satclip.points.geo, satclip.cli.downstream  # light until used
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({DOWNSTREAM_HEAVY!r}))
        print("HEAVY", heavy)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "HEAVY []" in run.stdout, run.stdout


def test_model_registry_needs_no_torch() -> None:
    """Naming a model (the registry, `satclip models`) is answered without importing torch."""
    script = textwrap.dedent("""
        import sys
        import satclip
        from satclip.models.registry import parse_source
        assert "resnet50-l40" in satclip.MODELS
        source = parse_source("microsoft/SatCLIP-ViT16-L40")
        assert source.kind == "hub" and source.filename == "satclip-vit16-l40.ckpt", source
        print("TORCH", "torch" in sys.modules)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "TORCH False" in run.stdout, run.stdout


def test_submodules_are_reachable_from_a_plain_import() -> None:
    # `satclip.models.location.build_location_encoder(...)` after `import satclip` alone, like any package whose
    # submodules are imported on first use; unknown names still raise AttributeError.
    script = textwrap.dedent("""
        import sys
        import satclip
        assert "satclip.models.location" not in sys.modules
        print(satclip.models.location.build_location_encoder(4).posenc.L, satclip.errors.CoordinateError.__name__)
        print(hasattr(satclip, "no_such_thing"))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["4", "CoordinateError", "False"], run.stdout
