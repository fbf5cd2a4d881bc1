"""Test modules that need an optional extra: when its packages are missing, the module is
replaced by one item that names the extra to install. Skipped on a developer's machine, failed in
CI (``CI`` set: CI installs every extra, so a missing one is a broken set-up, not a reason to test
less). Shared by the test suite and the benchmark suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    from importlib.util import find_spec

    missing = []
    for name in modules:
        try:
            if find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:  # a parent package is missing
            missing.append(name)
    return missing


class _MissingExtra(pytest.Item):
    def __init__(self, *, message: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        import os

        if os.environ.get("CI"):
            pytest.fail(self.message + "; CI installs every extra", pytrace=False)
        pytest.skip(self.message)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


class _ModuleNeedingExtra(pytest.File):
    message = ""

    def collect(self) -> Any:
        yield _MissingExtra.from_parent(self, name="needs-extra", message=self.message)


def collector_for_missing_extra(module_path: Path, parent: Any, needs: dict[str, tuple[str, tuple[str, ...]]]) -> Any:
    """For a ``pytest_pycollect_makemodule`` hook: ``None`` (collect as usual) unless ``needs``
    names an extra for this module whose packages are missing; then one item that says which extra
    to install - skipped on a developer's machine, failed in CI (which installs every extra)."""
    need = needs.get(module_path.name)
    if need is None:
        return None
    extra, modules = need
    missing = missing_modules(modules)
    if not missing:
        return None
    collector = _ModuleNeedingExtra.from_parent(parent, path=module_path)
    install = f"pip install -e '.[{extra}]'" if " " not in extra else "install it"
    collector.message = f"{module_path.name} needs the {extra!r} extra ({install}): {', '.join(missing)} not installed"
    return collector
