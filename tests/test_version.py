"""The version is set once, in rust/Cargo.toml, and every place that reports it agrees."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import satclip
from satclip.cli.main import main

CARGO_TOML = Path(__file__).resolve().parents[1] / "rust" / "Cargo.toml"


def cargo_version() -> str:
    # The [package] table's `version = "..."` line (tomllib is 3.11+, the project supports 3.10).
    section = None
    for line in CARGO_TOML.read_text().splitlines():
        if line.startswith("["):
            section = line.strip()
        elif section == "[package]" and (match := re.match(r'version\s*=\s*"([^"]+)"', line)):
            return match.group(1)
    raise AssertionError(f"no [package] version in {CARGO_TOML}")


def test_module_metadata_and_cargo_agree() -> None:
    assert satclip.__version__ == version("satclip") == cargo_version()


def test_cli_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.split() == ["satclip", cargo_version()]


def test_console_script_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "satclip.cli.main", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["satclip", satclip.__version__]
