"""Error of every precision mode of ``satclip.encode`` against an independent float64 reference.

    .venv/bin/python benches/precision_modes.py [--points 100000] [--checkpoint FILE ...]

The reference is the original SIREN forward written out in float64 (tests/references/original.py)
on the exact float64 spherical harmonics (the Rust core, checked against mpmath in the tests);
satclip's encode is run in each mode (CPU float32; on CUDA also float32, bfloat16, float16) and
compared point by point: the max relative error (max |got - ref| over the embedding / max |ref|,
worst point) and the min cosine similarity, over uniform points on the sphere plus the poles and
both sides of the antimeridian.

Without ``--checkpoint`` it measures released-layout checkpoints (L = 10 and 40, capacity 256,
embed 256) whose SIREN weights are drawn with the original initialisation (the released weights
cannot be downloaded everywhere). ``--checkpoint`` measures any file ``satclip.load`` reads, e.g.
one written by ``satclip-train``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import satclip  # noqa: E402
from conftest import released_checkpoint_dict  # noqa: E402
from references.original import original_siren_forward  # noqa: E402


def sphere_points(n: int, seed: int = 0) -> np.ndarray:
    """``n`` uniform points on the sphere, then the poles and points on and next to +-180."""
    rng = np.random.default_rng(seed)
    uniform = np.stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))], 1)
    edges = np.array([[0, 90], [0, -90], [180, 0], [-180, 0], [180, 45], [-180, -45], [179.999999, 0], [37, 89.9999]])
    return np.concatenate([uniform, edges.astype(np.float64)])


def modes() -> list[tuple[str, torch.dtype]]:
    found = [("cpu", torch.float32)]
    if torch.cuda.is_available():
        found += [("cuda", torch.float32), ("cuda", torch.bfloat16), ("cuda", torch.float16)]
    return found


def measure(path: Path, points: np.ndarray) -> list[tuple[str, str, float, float]]:
    reference_model = satclip.load(path, dtype=torch.float64)
    L = reference_model.posenc.L
    weights = reference_model.state_dict()
    features = torch.from_numpy(satclip.spherical_harmonics(points, L))
    ref = original_siren_forward(features, weights).numpy()
    rows = []
    for device, dtype in modes():
        got = np.asarray(satclip.encode(points, path, device=device, dtype=dtype), dtype=np.float64)
        rel = np.abs(got - ref).max(axis=1) / np.abs(ref).max(axis=1)
        cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        rows.append((f"L={L}", f"{device} {str(dtype).removeprefix('torch.')}", float(rel.max()), float(cos.min())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--checkpoint", type=Path, action="append", default=[])
    args = parser.parse_args()
    points = sphere_points(args.points)
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(args.checkpoint)
        if not paths:
            for L in (10, 40):
                paths.append(Path(tmp) / f"released-layout-l{L}.ckpt")
                torch.save(released_checkpoint_dict(L, seed=L), paths[-1])
        print(f"{len(points)} points; reference: original SIREN forward in float64 on exact float64 SH\n")
        print("| checkpoint | L | mode | max relative error | min cosine |")
        print("|---|---|---|---:|---:|")
        for path in paths:
            for L, mode, rel, cos in measure(path, points):
                print(f"| {path.name} | {L} | {mode} | {rel:.2e} | 1 - {1 - cos:.1e} |")


if __name__ == "__main__":
    main()
