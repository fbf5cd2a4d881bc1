"""The package's layering, read from the source: which subpackage may import which.

Every ``import``/``from ... import`` statement in python/satclip counts, including those inside
functions (a lazy import is still a dependency). The rules:

* nothing outside ``satclip.train`` imports ``satclip.train`` or Lightning (inference never needs
  training);
* the lower rooms never import the higher ones: ``harmonics``, ``points`` and ``runtime`` are the
  ground floor; ``models`` builds on them and imports neither Lightning nor the CLI nor anything
  that uses models; ``io`` reads and writes models; ``embed`` runs them; ``downstream`` and the
  integrations use embeddings; only the CLI and training sit on top.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "satclip"

#: room -> rooms it must never import (any module below them). Rooms are subpackages, or the
#: top-level integration modules.
FORBIDDEN: dict[str, set[str]] = {
    "harmonics": {"models", "io", "embed", "downstream", "cli", "train", "sklearn", "dask", "ray"},
    "points": {"models", "io", "embed", "downstream", "cli", "train", "sklearn", "dask", "ray"},
    "runtime": {"harmonics", "points", "models", "io", "embed", "downstream", "cli", "train"},
    "models": {"embed", "downstream", "cli", "train", "sklearn", "dask", "ray"},
    "io": {"embed", "downstream", "cli", "train", "sklearn", "dask", "ray"},
    "embed": {"downstream", "cli", "train", "sklearn", "dask", "ray"},
    "downstream": {"cli", "train", "sklearn", "dask", "ray"},
    "sklearn": {"cli", "train"},
    "dask": {"cli", "train"},
    "ray": {"cli", "train"},
    "cli": {"train"},
}
#: Third-party packages only training may import.
TRAINING_ONLY = ("lightning", "pytorch_lightning", "jsonargparse")


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``; relative imports are refused
    (the package uses absolute imports, so that this check sees every edge)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, "." * node.level + (node.module or "")))
                continue
            assert node.module is not None
            found.append((node.lineno, node.module))
            if node.module == "satclip":  # from satclip import models  ->  satclip.models
                found.extend((node.lineno, f"satclip.{alias.name}") for alias in node.names)
    return found


def room_of(module: str) -> str | None:
    """The room of a satclip module name (``satclip.models.image`` -> ``models``)."""
    parts = module.split(".")
    if parts[0] != "satclip" or len(parts) < 2:
        return None
    return parts[1]


def violations(room: str, source: str, where: str) -> list[str]:
    """Every import in ``source`` (a module of ``room``) that the layer rules forbid."""
    problems = []
    for line, module in imported_modules(source):
        if module.startswith("."):
            problems.append(f"{where}:{line}: relative import {module!r}; use the absolute name")
            continue
        if room != "train" and module.split(".")[0] in TRAINING_ONLY:
            problems.append(f"{where}:{line}: imports {module} (training only)")
        target = room_of(module)
        if target is not None and target in FORBIDDEN.get(room, set()):
            problems.append(f"{where}:{line}: {room} imports {module}")
    return problems


def package_modules() -> list[tuple[str, Path]]:
    """(room, path) of every module in the package."""
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        room = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        modules.append((room, path))
    return modules


def test_every_room_is_known() -> None:
    """A new subpackage must be placed in the layer rules, not slip past them."""
    rooms = {room for room, _ in package_modules()}
    unplaced = rooms - set(FORBIDDEN) - {"train", "__init__", "errors", "_lazy"}
    assert not unplaced, f"add these rooms to FORBIDDEN in {__file__}: {sorted(unplaced)}"


def test_the_package_keeps_its_layers() -> None:
    problems = []
    for room, path in package_modules():
        problems += violations(room, path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("room", "source"),
    [
        ("models", "import lightning.pytorch as pl"),
        ("embed", "def f():\n    from satclip.train.module import SatCLIPModule"),
        ("models", "from satclip.cli.main import main"),
        ("harmonics", "from satclip import models"),
        ("downstream", "from .probes import probe"),
        ("io", "import satclip.embed.locations"),
    ],
)
def test_a_forbidden_import_is_caught(room: str, source: str) -> None:
    assert violations(room, textwrap.dedent(source), "example.py")


@pytest.mark.parametrize(
    ("room", "source"),
    [
        ("train", "import lightning.pytorch as pl\nfrom satclip.models.satclip import SatCLIP"),
        ("cli", "from satclip.downstream.probes import probe"),
        ("embed", "from satclip.models.location import LocationEncoder"),
    ],
)
def test_an_allowed_import_passes(room: str, source: str) -> None:
    assert not violations(room, source, "example.py")


def test_the_lazy_names_and_their_typing_imports_agree() -> None:
    """``satclip/__init__.py`` resolves public names lazily from ``_LAZY`` and imports the same
    names under ``TYPE_CHECKING`` for type checkers and the API docs: the two lists must match."""
    import satclip

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                typed.update({alias.name: stmt.module for alias in stmt.names})
    assert typed == satclip._LAZY
