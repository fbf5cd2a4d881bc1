"""Submodules imported on first attribute access, so ``import satclip`` stays light (no torch)
while ``satclip.models.location.LocationEncoder`` still works after a plain ``import satclip``."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec
from types import ModuleType


def submodules(package: str) -> Callable[[str], ModuleType]:
    """A module-level ``__getattr__`` for ``package`` that imports ``package.<name>`` on first use;
    names that are not submodules raise :class:`AttributeError` as usual."""

    def __getattr__(name: str) -> ModuleType:
        if not name.startswith("_") and find_spec(f"{package}.{name}") is not None:
            return import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
