#!/usr/bin/env python
"""Benchmark report: run the pytest-benchmark suite and print its medians as tables of ratios.

    python benches/report.py --quick              # small N, few rounds (~1-2 minutes)
    python benches/report.py                      # default suite (N up to 1e5)
    python benches/report.py --full               # adds N = 1e6
    python benches/report.py --save-results benches/results/NAME.json   # keep the figures

Absolute times mean little across machines, so the tables state ratios of two medians measured
in the same run, e.g. ``torch_vectorised / rust_out`` ("the Rust core is 12x faster than the torch
baseline") for one (L, dtype, N, threads) case. Those ratios depend on the CPU's
microarchitecture, so they are reported, never compared with figures from another machine;
regressions are caught by ``benches/gate.py``, which times this tree against a reference commit
side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import SH_FLOORS, SH_IMPLS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass
class Ratio:
    kind: str  # vs_torch, vs_sphericart, vs_per_lm, fresh_over_out, over_floor, fresh_over_fresh_floor, ...
    case: str  # e.g. "L=40 float64 N=10000 t=1"
    value: float
    threads: int | None = None
    higher_is_better: bool = True

    @property
    def key(self) -> str:
        return f"{self.kind} | {self.case}"


# --------------------------------------------------------------------------- suite -> ratios


def run_suite(mode: str, json_path: Path, verbose: bool, extra: list[str]) -> int:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE),
        "--benchmark-only",
        f"--bench-mode={mode}",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=min,median,rounds",
        "-p",
        "no:cacheprovider",
        "-q",
        *extra,
    ]
    print("$", " ".join(cmd), flush=True)
    # OpenMP workers (torch's, sphericart's) spin-wait after each parallel region by default,
    # stealing the core the next single-thread measurement runs on; passive waiting removes
    # that source of noise without changing what is measured.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=not verbose, text=True, env=env)
    if proc.returncode != 0 and not verbose:
        # Show why (failed assertion, crash); the timing tables are not needed for that.
        print((proc.stdout or "")[-6000:], (proc.stderr or "")[-3000:], sep="\n")
    return proc.returncode


def load_stats(json_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = json.loads(json_path.read_text())
    return data.get("machine_info", {}), data.get("benchmarks", [])


def save_compact(json_path: Path, dest: Path) -> None:
    """pytest-benchmark's JSON without the per-round timings: small enough to commit."""
    data = json.loads(json_path.read_text())
    for b in data.get("benchmarks", []):
        b.get("stats", {}).pop("data", None)
        b.pop("options", None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(data, indent=1) + "\n")


def compute_ratios(benchmarks: list[dict[str, Any]]) -> tuple[list[Ratio], dict[tuple, float]]:
    """Ratios from one run. Returns them with the medians they came from, keyed by case."""
    sh: dict[tuple, dict[str, float]] = defaultdict(dict)  # (L, dtype, n, threads) -> impl -> median
    encode: dict[tuple, dict[str, float]] = defaultdict(dict)  # (L, n, threads) -> variant -> median
    paired: dict[tuple, tuple[float, float]] = {}  # (L, n, threads, device) -> (encode, bare) medians
    medians: dict[tuple, float] = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        median = float(b["stats"]["median"])
        if info.get("kind") == "sh":
            case = (info["L"], info["dtype"], info["n"], info["threads"])
            sh[case][info["impl"]] = median
            medians[("sh", info["impl"], *case)] = median
        elif info.get("kind") == "encode":
            case = (info["L"], info["n"], info["threads"], info.get("device", "cpu"))
            # Variants timed on a subset of the points (the original-style path) scale linearly.
            median *= info["n"] / info.get("n_timed", info["n"])
            encode[case][info["variant"]] = median
            medians[("encode", info["variant"], *case)] = median
        elif info.get("kind") == "encode_paired":
            case = (info["L"], info["n"], info["threads"], info.get("device", "cpu"))
            paired[case] = (median, float(info["bare_median_s"]))

    ratios: list[Ratio] = []
    for (L, dtype, n, threads), m in sorted(sh.items()):
        label = f"L={L} {dtype} N={n} t={threads}"
        rust = m.get("rust_out")
        if not rust:
            continue
        for impl, kind in (
            ("torch_vectorised", "vs_torch"),
            ("sphericart", "vs_sphericart"),
            ("torch_per_lm", "vs_per_lm"),
        ):
            if impl in m:
                ratios.append(Ratio(kind, label, m[impl] / rust, threads))
        if "rust_fresh" in m:
            ratios.append(Ratio("fresh_over_out", label, m["rust_fresh"] / rust, threads, higher_is_better=False))
        if "write_floor" in m:
            ratios.append(Ratio("over_floor", label, rust / m["write_floor"], threads, higher_is_better=False))
        # A fresh result against sphericart's fresh result and against
        # NumPy's fresh-array floor, which is measured on one thread (goal <= 1.2 at N >= 1e5).
        fresh = m.get("rust_fresh")
        if fresh and "sphericart_fresh" in m:
            ratios.append(Ratio("fresh_vs_sphericart_fresh", label, m["sphericart_fresh"] / fresh, threads))
        fresh_floor = sh.get((L, dtype, n, 1), {}).get("fresh_floor")
        if fresh and fresh_floor:
            ratios.append(Ratio("fresh_over_fresh_floor", label, fresh / fresh_floor, threads, higher_is_better=False))
    for (L, dtype, n, threads), m in sorted(sh.items()):
        if threads == 1 and "rust_out" in m and "rust_out" in sh.get((L, dtype, n, 2), {}):
            two = sh[(L, dtype, n, 2)]["rust_out"]
            ratios.append(Ratio("threads_2_over_1", f"L={L} {dtype} N={n}", m["rust_out"] / two, None))
    for (L, n, threads, device), m in sorted(encode.items()):
        label = f"L={L} N={n} t={threads} {device}"
        ours = m.get("satclip")
        if not ours:
            continue
        for variant, kind in (("original_style", "encode_vs_original"), ("torch_sh_siren", "encode_vs_torch_sh")):
            if variant in m:
                ratios.append(Ratio(kind, label, m[variant] / ours, threads))
        if "sh_only" in m:
            ratios.append(Ratio("encode_sh_share", label, m["sh_only"] / ours, threads, higher_is_better=False))
        # encode over the bare float32 SIREN on precomputed features, and float32 over float64.
        if "bare_nnet" in m:
            ratios.append(Ratio("encode_vs_bare_nnet", label, m["bare_nnet"] / ours, threads))
        if "satclip_f64" in m:
            ratios.append(Ratio("encode_f32_vs_f64", label, m["satclip_f64"] / ours, threads))
    # The same ratio from interleaved pairs (bench_encode_against_bare): the one to trust on a
    # machine whose load moves between benchmarks.
    for (L, n, threads, device), (ours, bare) in sorted(paired.items()):
        ratios.append(Ratio("encode_vs_bare_paired", f"L={L} N={n} t={threads} {device}", bare / ours, threads))
    return ratios, medians


# --------------------------------------------------------------------------- reporting


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def sh_markdown(medians: dict[tuple, float]) -> str:
    """One row per SH case: medians per implementation and the ratios to the Rust core."""
    cases = sorted({k[2:] for k in medians if k[0] == "sh"})
    if not cases:
        return ""
    cols = SH_IMPLS
    lines = [
        "| L | dtype | N | threads | Rust out= | Rust fresh | torch (a) vectorised | torch (b) per-(l,m) | sphericart "
        "| sphericart fresh | write floor | fresh floor | page-zeroing floor | (a)/Rust | (b)/Rust | sphericart/Rust "
        "| fresh/out= | Rust/floor | sphericart fresh/Rust fresh | Rust fresh/fresh floor |",
        "|" + "---|" * 20,
    ]
    for L, dtype, n, threads in cases:
        m = {c: medians.get(("sh", c, L, dtype, n, threads)) for c in cols}
        # The floors are measured on one thread; every thread count is compared with them.
        for floor in SH_FLOORS:
            m[floor] = medians.get(("sh", floor, L, dtype, n, 1))
        rust = m["rust_out"]

        def r(num: float | None, den: float | None) -> str:
            return f"{num / den:.2f}x" if num and den else "-"

        cells = [fmt_time(m[c]) if m[c] else "-" for c in cols]
        lines.append(
            f"| {L} | {dtype} | {n:,} | {threads} | "
            + " | ".join(cells)
            + f" | {r(m['torch_vectorised'], rust)} | {r(m['torch_per_lm'], rust)} | {r(m['sphericart'], rust)}"
            + f" | {r(m['rust_fresh'], rust)} | {r(rust, m['write_floor'])}"
            + f" | {r(m['sphericart_fresh'], m['rust_fresh'])} | {r(m['rust_fresh'], m['fresh_floor'])} |"
        )
    return "\n".join(lines)


def other_markdown(benchmarks: list[dict[str, Any]]) -> str:
    """Zero-copy checks and data-pipeline throughput (not gated here: the memory checks assert
    in the suite itself, and batches/s is an absolute figure)."""
    out: list[str] = []
    mem = [b for b in benchmarks if b.get("extra_info", {}).get("kind") == "memory"]
    if mem:
        out += [
            "| memory check | N x L*L (float32) | threads | peak resident growth / output size | median time |",
            "|---|---|---|---|---|",
        ]
        for b in mem:
            i = b["extra_info"]
            out.append(
                f"| {i['case']} | {i['n']:,} x {i['L'] ** 2} | {i['threads']} | {i['peak_rss_ratio']:.3f} "
                f"| {fmt_time(b['stats']['median'])} |"
            )
    data = [b for b in benchmarks if b.get("extra_info", {}).get("kind") == "data"]
    if data:
        out += ["", "| data pipeline | workers | batch | batches/s | data |", "|---|---|---|---|---|"]
        for b in data:
            i = b["extra_info"]
            out.append(
                f"| S2DataModule train loader, L={i['L']} | {i['workers']} | {i['batch_size']} "
                f"| {i['batches_per_round'] / b['stats']['median']:.2f} | {i['data']} |"
            )
    return "\n".join(out)


def encode_markdown(medians: dict[tuple, float]) -> str:
    cases = sorted({k[2:] for k in medians if k[0] == "encode"})
    if not cases:
        return ""
    cols = ["satclip", "torch_sh_siren", "original_style", "sh_only"]
    lines = [
        "| L | N | threads | device | satclip encode | torch SH + SIREN | original style (per-(l,m) SH + f64 SIREN)* "
        "| SH alone | torch-SH/satclip | original/satclip | SH share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for L, n, threads, device in cases:
        m = {c: medians.get(("encode", c, L, n, threads, device)) for c in cols}
        ours = m["satclip"]

        def r(num: float | None, den: float | None, pct: bool = False) -> str:
            if not (num and den):
                return "-"
            return f"{100 * num / den:.1f}%" if pct else f"{num / den:.2f}x"

        cells = [fmt_time(m[c]) if m[c] else "-" for c in cols]
        lines.append(
            f"| {L} | {n:,} | {threads} | {device} | "
            + " | ".join(cells)
            + f" | {r(m['torch_sh_siren'], ours)} | {r(m['original_style'], ours)} | {r(m['sh_only'], ours, True)} |"
        )
    lines.append("\n\\* timed on one batch of points and scaled linearly to N")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small N, few rounds")
    size.add_argument("--full", action="store_true", help="adds N = 1e6 (slow)")
    parser.add_argument("--json", type=Path, default=None, help="where to keep pytest-benchmark's JSON")
    parser.add_argument("--from-json", type=Path, default=None, help="skip running: tabulate an existing JSON")
    parser.add_argument(
        "--save-results",
        type=Path,
        default=None,
        help="also write a compact copy of the results (stats without per-round data) here",
    )
    parser.add_argument("--verbose", action="store_true", help="show pytest's output")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full" if args.full else "default"

    rc = 0
    json_path = args.from_json
    if json_path is None:
        json_path = args.json or REPO / ".benchmarks" / f"report-{mode}.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.unlink(missing_ok=True)
        rc = run_suite(mode, json_path, args.verbose, args.pytest_args)
        if not json_path.is_file():
            print(f"report: the suite produced no results (pytest exit code {rc})")
            return 1
    if args.save_results:
        save_compact(json_path, args.save_results)
    machine, benchmarks = load_stats(json_path)
    ratios, medians = compute_ratios(benchmarks)
    print(
        f"\n## Benchmarks ({mode}): {machine.get('cpu_model', '?')}, {machine.get('usable_cpus', '?')} CPUs; "
        f"kernel dispatched {machine.get('satclip_simd', '?')}\n"
    )
    for table in (sh_markdown(medians), encode_markdown(medians), other_markdown(benchmarks)):
        if table:
            print(table + "\n")
    print("| ratio | case | value |\n|---|---|---|")
    for r in sorted(ratios, key=lambda r: r.key):
        print(f"| {r.kind} | {r.case} | {r.value:.2f}x |")
    if rc != 0:
        print(f"\nreport: the benchmark suite failed (pytest exit code {rc}); see its output above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
