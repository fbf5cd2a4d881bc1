#!/usr/bin/env python
"""Performance-regression gate: this tree against a reference commit, side by side, in one run.

    python benches/gate.py                      # what `make test` and CI run (~1-3 minutes once built)
    python benches/gate.py --against HEAD~3     # another reference
    python benches/gate.py --env-current SATCLIP_SIMD=baseline   # must FAIL: the portable kernel

A speed ratio between two implementations depends on the CPU's microarchitecture, so a ratio
recorded on one machine cannot judge another. The gate therefore measures nothing against a
stored number: it builds the reference commit (``benches/gate-reference``, cached under
``~/.cache/satclip/gate``), starts one timing worker on that build and one on this tree
(``benches/gate_worker.py``), and sends both the same cases in alternating order, round after
round, so both see the same machine, load and frequency. For each case the ratio
``reference time / this tree's time`` (in CPU time, median over rounds of each round's ratio of
median calls) must not fall below ``1 - margin``.
Everything runs on one thread; a case's two sides never run at the same time.

The gate also fails when this tree's core runs a lower SIMD level than the CPU supports (the
run-time dispatch must pick AVX-512/AVX2 where they exist), since both sides would then be slow
alike and the ratio would not show it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REFERENCE_FILE = HERE / "gate-reference"
CACHE = Path(os.environ.get("SATCLIP_GATE_CACHE", Path.home() / ".cache" / "satclip" / "gate"))
SIMD_RANK = {"baseline": 0, "avx2": 1, "avx512": 2}
#: Time one request should take; the number of calls per request is set from the first timing.
REQUEST_SECONDS = 0.15


class GateError(Exception):
    """The gate could not measure (no reference, build failed, a worker died)."""


def expected_simd() -> str:
    """The best level the Rust core can dispatch to on this CPU, from the kernel's CPU flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return "unknown"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "baseline"


# --------------------------------------------------------------------------- the reference build


def reference_revision() -> str:
    lines = [ln.strip() for ln in REFERENCE_FILE.read_text().splitlines()]
    return next(ln for ln in lines if ln and not ln.startswith("#"))


def resolve(rev: str) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise GateError(
            f"the reference commit {rev} is not in this clone (a shallow clone? `git fetch --unshallow`), "
            "or not a commit"
        )
    return proc.stdout.strip()


def build_reference(sha: str) -> Path:
    """The reference commit's package, built once per commit into the cache; returns its folder."""
    root = CACHE / sha
    site, done = root / "site", root / "site" / ".complete"
    if done.is_file():
        return site
    print(f"gate: building the reference {sha[:10]} (once; cached in {root})", flush=True)
    for stale in ("src", "wheel", "site"):
        shutil.rmtree(root / stale, ignore_errors=True)
    src = root / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", sha], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(src, filter="data")
    maturin = Path(sys.executable).with_name("maturin")
    env = {**os.environ, "CARGO_TARGET_DIR": str(CACHE / "cargo-target")}
    cmd = [str(maturin), "build", "--release", "--out", str(root / "wheel"), "-i", sys.executable, "-q"]
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GateError(f"building the reference failed:\n{proc.stderr[-4000:]}")
    (wheel,) = (root / "wheel").glob("satclip-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    shutil.rmtree(src)
    done.touch()
    return site


# --------------------------------------------------------------------------- timing


class Worker:
    """A gate_worker.py process; ``time(case, calls)`` returns the seconds of each call."""

    def __init__(self, label: str, env: dict[str, str]):
        self.label = label
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "gate_worker.py")],
            cwd=HERE,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise GateError(f"the {self.label} worker died (exit code {self.proc.wait()}); see its output above")
        return json.loads(line)

    def time(self, case: str, calls: int) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"case": case, "calls": calls}) + "\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def worker_env(extra_path: Path | None, assignments: list[str]) -> dict[str, str]:
    # One thread everywhere; OpenMP workers wait passively so they do not steal the other side's core.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        env[key] = value
    return env


def measure(reference: Worker, current: Worker, rounds: int) -> dict[str, tuple[float, float, float]]:
    """Per case: (reference time, this tree's time, their ratio), in CPU time.

    CPU time, because a call's wall-clock time grows while another process holds the core and
    its CPU time does not. Each round times both sides back to back (in alternating order) and
    takes the ratio of their median calls; the case's ratio is the median over rounds. Pairing
    within a round cancels slow drifts (other tenants filling the shared last-level cache can
    double a memory-bound call for a while), and the medians ignore the odd lucky or unlucky
    call: a minimum over calls was seen to pick one side's single fast outlier (2.6x)."""
    cases = [c for c in current.info["cases"] if c in reference.info["cases"]]
    calls = {}
    for case in cases:  # calls per request, so one request takes ~REQUEST_SECONDS
        one = min(reference.time(case, 1) + current.time(case, 1))
        calls[case] = max(3, min(200, round(REQUEST_SECONDS / max(one, 1e-6))))
    results = {}
    for case in cases:
        ref_times, cur_times, ratios = [], [], []
        for r in range(rounds):
            order = (reference, current) if r % 2 == 0 else (current, reference)
            got = {id(w): median(w.time(case, calls[case])) for w in order}
            ref, cur = got[id(reference)], got[id(current)]
            ref_times.append(ref)
            cur_times.append(cur)
            ratios.append(ref / cur)
        results[case] = (median(ref_times), median(cur_times), median(ratios))
    return results


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default=None, help="reference commit (default: benches/gate-reference)")
    parser.add_argument("--margin", type=float, default=0.2, help="allowed slowdown (default 0.2: fail below 0.8x)")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per case (default 9)")
    parser.add_argument(
        "--env-current",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for this tree's worker only (e.g. SATCLIP_SIMD=baseline)",
    )
    args = parser.parse_args(argv)

    failures: list[str] = []
    workers: list[Worker] = []
    try:
        sha = resolve(args.against or reference_revision())
        site = build_reference(sha)
        reference = Worker("reference", worker_env(site, []))
        workers.append(reference)
        current = Worker("current", worker_env(None, args.env_current))
        workers.append(current)
        if not Path(reference.info["satclip"]).is_relative_to(site):
            raise GateError(f"the reference worker imported {reference.info['satclip']}, not the reference build")
        if not Path(current.info["satclip"]).resolve().is_relative_to(REPO):
            raise GateError(f"the current worker imported {current.info['satclip']}, not this tree (run `make build`)")
        results = measure(reference, current, args.rounds)
    except GateError as e:
        print(f"gate: FAIL - {e}")
        return 1
    finally:
        for w in workers:
            w.close()

    supported = expected_simd()
    print(
        f"\n## Regression gate: this tree against {sha[:10]}, same machine, same run "
        f"({args.rounds} alternating rounds, one thread)\n"
    )
    print(
        f"SIMD level: CPU supports {supported}; reference core ran {reference.info['simd']}, this tree's {current.info['simd']}\n"
    )
    print("| case | reference | this tree | reference / this tree | verdict |\n|---|---|---|---|---|")
    floor = 1.0 - args.margin
    for case, (ref, cur, ratio) in results.items():
        bad = ratio < floor
        verdict = f"SLOWER (below {floor:.2f}x)" if bad else "ok"
        print(f"| {case} | {fmt(ref)} | {fmt(cur)} | {ratio:.2f}x | {verdict} |")
        if bad:
            failures.append(f"{case}: this tree takes {1 / ratio:.2f}x the reference's time")
    lowered = any(a.startswith("SATCLIP_SIMD=") for a in args.env_current) or "SATCLIP_SIMD" in os.environ
    simd = current.info["simd"]
    if not lowered and SIMD_RANK.get(simd, 0) < SIMD_RANK.get(supported, 0):
        failures.append(f"this tree's core runs '{simd}' but the CPU supports '{supported}' (dispatch not taken)")
    if not results:
        failures.append("no case was measured")
    if failures:
        print("\ngate: FAIL\n  - " + "\n  - ".join(failures))
        return 1
    print("\ngate: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
