"""The documentation site builds with ``mkdocs build --strict`` (no broken link or anchor, no
docstring griffe cannot parse), and its generated references are complete: the API page shows
``satclip.encode`` with every parameter of its real signature, the CLI page every sub-command
of the real parser."""

from __future__ import annotations

import html
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import satclip
from conftest import require

REPO = Path(__file__).resolve().parent.parent


def docs_hooks() -> ModuleType:
    """docs/hooks.py, the module that renders the CLI and benchmark pages at build time."""
    spec = importlib.util.spec_from_file_location("satclip_docs_hooks", REPO / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The 'docs' extra (part of 'test').
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        require(module)
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-10000:]}"
    return out


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


def section(page: str, anchor: str) -> str:
    """The HTML of the object documented under ``id=anchor``, up to the next object's heading."""
    start = page.find(f'id="{anchor}"')
    assert start >= 0, f"no element with id {anchor!r}"
    heading = 'class="doc doc-heading"'
    own = page.find(heading, start)  # the object's own heading, then the next object's
    end = page.find(heading, own + len(heading)) if own >= 0 else -1
    return page[start : end if end > 0 else len(page)]


def test_api_page_lists_every_parameter_of_encode(site: Path) -> None:
    params = list(inspect.signature(satclip.encode).parameters)
    assert {"lonlat", "model", "device", "dtype", "batch_size"} <= set(params)
    doc = section((site / "reference" / "api" / "index.html").read_text(), "satclip.encode")
    for name in params:
        # in the signature and as a row of the parameter table
        assert re.search(rf"<code>\s*{name}\s*</code>", doc), f"parameter {name!r} of satclip.encode is not documented"
    assert "SatCLIP location embeddings" in text_of(doc)


def test_cli_page_shows_every_subcommand(site: Path) -> None:
    hooks = docs_hooks()
    commands = hooks.cli_commands()
    assert {"encode", "convert", "models", "embed-images", "locate", "probe", "map"} <= set(commands)
    page = (site / "reference" / "cli" / "index.html").read_text()
    text = text_of(page)
    assert "usage: satclip [-h] [--version] COMMAND" in text
    for name, (_, parser) in commands.items():
        assert f'id="satclip-{name}"' in page, f"no section for 'satclip {name}'"
        assert f"usage: satclip {name}" in text, f"no --help text for 'satclip {name}'"
        for action in parser._actions:  # every option of the command is on the page
            for flag in action.option_strings:
                assert flag in text, f"'satclip {name}' option {flag} missing from the CLI page"


def test_benchmark_page_is_rendered_from_the_committed_results(site: Path) -> None:
    hooks = docs_hooks()
    results = hooks.benchmark_results()
    raw = (site / "benchmarks" / "index.html").read_text()
    assert hooks.BENCH_MARKER not in raw
    page = text_of(raw)
    for path in results:
        assert path.name in page
        assert f"--save-results benches/results/{path.name}" in page
    if results:
        assert "Rust out=" in page and "sphericart/Rust" in page
