"""Smoke test of a built wheel: install it into a fresh venv with no Rust toolchain reachable, then use it.

Run by ``make wheel-smoke`` (part of ``make test``) with the dev venv's Python::

    python tests/wheel_smoke.py dist/satclip-*.whl            # fast: dependencies borrowed from this venv
    python tests/wheel_smoke.py --full dist/satclip-*.whl     # pip installs every dependency (torch...)

Not collected by pytest (the name has no ``test_`` prefix): it needs a wheel that ``make wheel`` built.

The fast mode installs the wheel with ``--no-deps`` and gives the fresh venv one ``.pth`` line naming this
venv's site-packages, so torch, numpy and pandas come from here. Only the directory is added (the
``.pth`` files inside it are not run), so this venv's editable satclip stays invisible; the check asserts
that ``satclip`` and its extension module are imported from the fresh venv and not from the source tree.
The full mode (``make wheel-smoke-full``) is what a user's ``pip install`` does; it downloads or
unpacks torch with its CUDA libraries, which is why CI runs the fast one (docs/install.md).

Checks, inside the fresh venv, with ``cargo``/``rustc`` absent from PATH:
- ``satclip.__version__`` == the installed metadata == ``satclip --version`` == the wheel's file name;
- ``simd_level()`` is the best level /proc/cpuinfo offers (the wheel has a portable baseline and picks
  its kernels at run time, so it must not report less than the CPU can do, nor more);
- spherical harmonics against the addition theorem
  sum_m Y_lm(a) Y_lm(b) = (2l + 1) / (4 pi) P_l(cos gamma), gamma the angle between a and b;
- ``satclip encode`` of a tiny CSV with a released-layout checkpoint built here (tests/conftest.py),
  against the embedding this source tree's build computes for the same points.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE_TREE = HERE.parent
TOOLCHAIN = ("cargo", "rustc", "rustup")

# The part that runs inside the fresh venv. It must not import anything from this source tree.
INSIDE = r"""
import json, math, os, shutil, subprocess, sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

facts = json.loads(sys.argv[1])
for tool in ("cargo", "rustc", "rustup"):
    assert shutil.which(tool) is None, f"{tool} is reachable on PATH={os.environ['PATH']}"

import satclip
from satclip import _core

prefix = Path(sys.prefix).resolve()
for module in (satclip, _core):
    where = Path(module.__file__).resolve()
    assert where.is_relative_to(prefix), f"{module.__name__} imported from {where}, not from the fresh venv {prefix}"
    assert not where.is_relative_to(Path(facts["source_tree"])), f"{module.__name__} imported from the source tree"

# One version everywhere.
cli = subprocess.run(["satclip", "--version"], capture_output=True, text=True, check=True).stdout.split()
assert satclip.__version__ == version("satclip") == cli[-1] == facts["wheel_version"], (
    satclip.__version__, version("satclip"), cli, facts["wheel_version"])

# The run-time dispatch picks the best level the CPU has (the names follow rust/src/kernel/simd.rs).
flags = set()
for line in Path("/proc/cpuinfo").read_text().splitlines():
    if line.startswith("flags"):
        flags = set(line.split(":", 1)[1].split())
        break
if {"avx512f", "avx512dq", "avx512vl", "fma"} <= flags:
    best = "avx512"
elif {"avx2", "fma"} <= flags:
    best = "avx2"
else:
    best = "baseline"
assert satclip.simd_level() == best, f"simd_level() = {satclip.simd_level()!r}, /proc/cpuinfo offers {best!r}"

# Addition theorem, in the orthonormal real basis, at degrees high enough to use the SIMD kernel's
# recurrences in full; a few hundred point pairs so the vectorised path (not only a scalar tail) runs.
rng = np.random.default_rng(16)
n, L = 513, 40
def random_points():
    lon = rng.uniform(-180, 180, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return np.c_[lon, lat]
def unit(points):
    lon, lat = np.radians(points).T
    return np.c_[np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]
a, b = random_points(), random_points()
ya = satclip.spherical_harmonics(a, L, basis="orthonormal")
yb = satclip.spherical_harmonics(b, L, basis="orthonormal")
cos_gamma = np.clip((unit(a) * unit(b)).sum(axis=1), -1, 1)
for l in range(L):
    block = slice(l * l, (l + 1) * (l + 1))
    lhs = (ya[:, block] * yb[:, block]).sum(axis=1)
    p_l = np.polynomial.legendre.legval(cos_gamma, [0] * l + [1])
    np.testing.assert_allclose(lhs, (2 * l + 1) / (4 * math.pi) * p_l, rtol=0, atol=1e-12 * (2 * l + 1))

# The command line, end to end.
out = Path(facts["workdir"]) / "embeddings.npy"
subprocess.run(
    ["satclip", "encode", facts["csv"], "-o", str(out), "--model", facts["checkpoint"],
     "--device", "cpu", "--dtype", "float64", "--quiet"],
    check=True,
)
got, want = np.load(out), np.load(facts["reference"])
assert got.shape == want.shape, (got.shape, want.shape)
np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
print(f"wheel smoke test passed: satclip {satclip.__version__}, simd {satclip.simd_level()}, "
      f"from {Path(satclip.__file__).parent}")
"""


def toolchain_free_path(venv_bin: Path) -> str:
    """PATH for the fresh venv: its bin, then the system directories that hold no Rust toolchain."""
    dirs = [str(venv_bin)]
    for candidate in ("/usr/local/bin", "/usr/bin", "/bin"):
        if Path(candidate).is_dir() and not any((Path(candidate) / tool).exists() for tool in TOOLCHAIN):
            dirs.append(candidate)
    return os.pathsep.join(dirs)


def wheel_version(wheel: Path) -> str:
    # {name}-{version}-{python}-{abi}-{platform}.whl
    return wheel.name.split("-")[1]


def write_fixtures(workdir: Path) -> dict[str, str]:
    """A released-layout checkpoint, a tiny CSV and the embedding this source tree computes for it."""
    sys.path.insert(0, str(HERE))
    import numpy as np
    import torch

    import satclip
    from conftest import released_checkpoint_dict

    checkpoint = workdir / "released-l10.ckpt"
    torch.save(released_checkpoint_dict(10, seed=3), checkpoint)
    points = np.array([[8.55, 47.37], [-74.0, 40.7], [151.2, -33.9], [0.0, 90.0], [-180.0, -90.0], [179.9, 0.1]])
    csv = workdir / "points.csv"
    csv.write_text(
        "name,lon,lat\n" + "".join(f"p{i},{float(lon)!r},{float(lat)!r}\n" for i, (lon, lat) in enumerate(points))
    )
    reference = workdir / "reference.npy"
    np.save(reference, np.asarray(satclip.encode(points, str(checkpoint), device="cpu", dtype=torch.float64)))
    return {"checkpoint": str(checkpoint), "csv": str(csv), "reference": str(reference)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the .whl that `make wheel` built")
    parser.add_argument("--full", action="store_true", help="let pip install every dependency into the fresh venv")
    parser.add_argument("--keep", action="store_true", help="keep the fresh venv (its path is printed)")
    args = parser.parse_args()
    wheel = args.wheel.resolve()
    if not wheel.is_file():
        parser.error(f"no wheel at {wheel}; run `make wheel` first")

    workdir = Path(tempfile.mkdtemp(prefix="satclip-wheel-smoke-"))
    try:
        started = time.perf_counter()
        fresh = workdir / "venv"
        venv.EnvBuilder(with_pip=False, symlinks=True).create(fresh)
        fresh_python = fresh / "bin" / "python"
        # This venv's pip installs into the fresh one (pip --python), which saves bootstrapping pip there.
        install = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(fresh_python),
            "install",
            "-q",
            "--disable-pip-version-check",
        ]
        if args.full:
            subprocess.run([*install, str(wheel)], check=True)
        else:
            subprocess.run([*install, "--no-deps", str(wheel)], check=True)
            fresh_site = subprocess.run(
                [fresh_python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            # Appended after the fresh venv's own site-packages, so the wheel's satclip wins over anything here.
            Path(fresh_site, "borrowed-dev-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
        installed = time.perf_counter()

        facts = write_fixtures(workdir) | {
            "workdir": str(workdir),
            "source_tree": str(SOURCE_TREE),
            "wheel_version": wheel_version(wheel),
        }
        # A clean environment: nothing that would point Python at the source tree or a toolchain.
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "CARGO", "RUSTUP", "RUST", "VIRTUAL_ENV", "MATURIN", "SATCLIP_"))
        }
        env["PATH"] = toolchain_free_path(fresh / "bin")
        env["VIRTUAL_ENV"] = str(fresh)
        env["HF_HUB_OFFLINE"] = "1"
        subprocess.run([fresh_python, "-I", "-c", INSIDE, json.dumps(facts)], env=env, cwd=workdir, check=True)
        done = time.perf_counter()
        mode = "full" if args.full else "fast"
        print(f"({mode} mode: install {installed - started:.1f} s, checks {done - installed:.1f} s)")
    except subprocess.CalledProcessError as err:
        print(f"wheel smoke test FAILED: {Path(str(err.cmd[0])).name} exited with {err.returncode}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"fresh venv kept at {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
