"""pytest configuration of the benchmark suite: run mode option, machine info, fixtures."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import pytest

from benchkit import MODES, Mode, usable_cpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from extras import collector_for_missing_extra

#: Benchmark modules that need an optional extra, with the modules that extra brings.
NEEDS_EXTRA: dict[str, tuple[str, tuple[str, ...]]] = {
    "bench_data.py": ("train", ("lightning", "tifffile")),
    "bench_images.py": ("images", ("timm",)),
    "bench_scaleout.py": ("dask", ("dask.dataframe", "distributed", "pandas")),
}


def pytest_pycollect_makemodule(module_path: Path, parent: Any) -> Any:
    return collector_for_missing_extra(module_path, parent, NEEDS_EXTRA)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-mode",
        choices=sorted(MODES),
        default=os.environ.get("SATCLIP_BENCH_MODE", "default"),
        help="quick: small N (report.py --quick); default: N up to 1e5; full: adds N = 1e6",
    )


def get_mode(config: pytest.Config) -> Mode:
    return MODES[config.getoption("--bench-mode")]


@pytest.fixture(scope="session")
def mode(pytestconfig: pytest.Config) -> Mode:
    return get_mode(pytestconfig)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Records what the ratios depend on next to them in the JSON."""
    import numpy
    import torch

    import satclip

    machine_info["cpu_model"] = _cpu_model()
    machine_info["usable_cpus"] = usable_cpus()
    machine_info["satclip_simd"] = satclip.simd_level()
    machine_info["satclip_version"] = satclip.__version__
    machine_info["torch_version"] = torch.__version__
    machine_info["numpy_version"] = numpy.__version__
    machine_info["bench_mode"] = get_mode(config).name
    try:
        from importlib.metadata import version

        import sphericart  # noqa: F401

        machine_info["sphericart_version"] = version("sphericart")
    except Exception:  # not installed: the sphericart cases skip
        machine_info["sphericart_version"] = None
