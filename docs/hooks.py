"""MkDocs hooks: the pages that must not go stale are generated at build time.

* ``<!-- satclip:cli -->`` becomes the ``--help`` text of the ``satclip`` command and of each of its
  sub-commands, rendered from the argparse parser the command itself runs.
* ``<!-- satclip:benchmarks -->`` becomes the tables of every committed benchmark result
  (``benches/results/*.json``, pytest-benchmark's format), tabulated by ``benches/report.py``,
  the same code that prints them after a benchmark run.

Registered in ``mkdocs.yml`` under ``hooks:``. The functions below are also used by
``tests/test_docs.py`` to know what the pages must contain.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benches" / "results"
CLI_MARKER = "<!-- satclip:cli -->"
BENCH_MARKER = "<!-- satclip:benchmarks -->"
#: The module and function behind the ``satclip`` console script when pyproject.toml cannot be read.
DEFAULT_ENTRY_POINT = "satclip.cli.main:main"
HELP_COLUMNS = "82"


# --------------------------------------------------------------------------- CLI reference


def _entry_point() -> str:
    """``module:function`` of the ``satclip`` script, as pyproject.toml declares it."""
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        return DEFAULT_ENTRY_POINT
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    return str(project.get("project", {}).get("scripts", {}).get("satclip", DEFAULT_ENTRY_POINT))


def cli_parser() -> argparse.ArgumentParser:
    """The parser ``satclip`` parses its arguments with (built by the module that defines ``main``)."""
    module = importlib.import_module(_entry_point().split(":")[0])
    build = getattr(module, "build_parser", None) or module._parser
    parser = build()
    assert isinstance(parser, argparse.ArgumentParser), f"{module.__name__} built {parser!r}, not a parser"
    return parser


def cli_commands(parser: argparse.ArgumentParser | None = None) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Sub-command name -> (one-line help, its parser), in the order ``satclip --help`` lists them."""
    parser = parser or cli_parser()
    commands: dict[str, tuple[str, argparse.ArgumentParser]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                commands[name] = (helps.get(name, ""), sub)
    return commands


@contextmanager
def _help_width() -> Any:
    # argparse wraps help at the terminal's width; a fixed width keeps the page the same everywhere.
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def cli_markdown() -> str:
    parser = cli_parser()
    commands = cli_commands(parser)
    with _help_width():
        out = [
            "| command | what it does |",
            "|---|---|",
            *(f"| [`satclip {name}`](#satclip-{name}) | {text} |" for name, (text, _) in commands.items()),
            "",
            "## `satclip`",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
        ]
        for name, (_, sub) in commands.items():
            out += ["", f"## `satclip {name}` {{#satclip-{name}}}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(out)


# --------------------------------------------------------------------------- benchmarks


def _report() -> Any:
    """benches/report.py as a module (it imports its neighbour benchkit.py, so benches/ goes on the path)."""
    benches = str(REPO / "benches")
    if benches not in sys.path:
        sys.path.insert(0, benches)
    return importlib.import_module("report")


def benchmark_results() -> list[Path]:
    return sorted(RESULTS.glob("*.json"))


def _command(path: Path, mode: str) -> str:
    flag = {"quick": " --quick", "full": " --full"}.get(mode, "")
    return f"python benches/report.py{flag} --save-results {path.relative_to(REPO).as_posix()}"


def _machine_line(data: dict[str, Any]) -> str:
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {})
    model = m.get("cpu_model") or cpu.get("brand_raw", "?")
    if "family" in cpu and "model" in cpu:  # what tells e.g. one EPYC generation from another
        model += f" (x86 family {cpu['family']}, model {cpu['model']})"
    parts = [
        f"**CPU** {model}",
        f"{m.get('usable_cpus', cpu.get('count', '?'))} usable cores",
        f"SH kernel `{m.get('satclip_simd', '?')}`",
        f"{m.get('system', '?')} {m.get('release', '')}".strip(),
        f"Python {m.get('python_version', '?')}",
        f"torch {m.get('torch_version', '?')}",
        f"NumPy {m.get('numpy_version', '?')}",
    ]
    if m.get("sphericart_version"):
        parts.append(f"sphericart {m['sphericart_version']}")
    parts.append(f"satclip {m.get('satclip_version', '?')}")
    return "; ".join(parts)


def _when(data: dict[str, Any]) -> str:
    text = data.get("datetime", "")
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return text or "?"


def benchmarks_markdown() -> str:
    report = _report()
    paths = benchmark_results()
    if not paths:
        return "No benchmark results are committed (`benches/results/` is empty)."
    out: list[str] = []
    for path in paths:
        data = json.loads(path.read_text())
        machine, benchmarks = report.load_stats(path)
        mode = machine.get("bench_mode", "default")
        ratios, medians = report.compute_ratios(benchmarks)
        commit = data.get("commit_info", {}).get("id", "")
        out += [
            f"### `{path.name}`",
            "",
            f"{_machine_line(data)}.",
            "",
            f"Suite mode `{mode}`, {len(benchmarks)} benchmarks, run {_when(data)}"
            + (f" at commit `{commit[:12]}`" if commit else "")
            + f"; produced by `{_command(path, mode)}`. Times are medians; ratios > 1 mean satclip is faster"
            " unless the column says otherwise.",
            "",
        ]
        sections = (
            ("Spherical harmonics alone", report.sh_markdown(medians)),
            ("End-to-end `satclip.encode`", report.encode_markdown(medians)),
            ("Zero-copy checks and training input pipeline", report.other_markdown(benchmarks)),
        )
        for title, table in sections:
            if table:
                out += [f"#### {title} ({path.stem})", "", table, ""]
        if ratios:
            out += [f"#### Every ratio ({path.stem})", "", "| ratio | case | value |", "|---|---|---|"]
            out += [f"| {r.kind} | {r.case} | {r.value:.2f}x |" for r in sorted(ratios, key=lambda r: r.key)]
            out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- MkDocs events


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, benchmarks_markdown())
    return markdown


def on_config(config: Any) -> Any:
    # A rebuild under `mkdocs serve` picks up new results and changed parsers.
    watch = config.get("watch")
    if isinstance(watch, list):
        for extra in (str(RESULTS), str(REPO / "python" / "satclip" / "cli")):
            if extra not in watch and Path(extra).exists():
                watch.append(extra)
    return config
