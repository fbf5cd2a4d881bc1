"""How far satclip's embeddings are from the original SatCLIP code's, at L = 10 and L = 40.

    .venv/bin/python benches/compare_original.py [--points 20000] [--L 40] [--seed 0]

Builds a checkpoint in the released layout (SIREN weights drawn with the original
initialisation: the released weights cannot be downloaded here), embeds the same points with
satclip (float64) and with an independent re-implementation of the original code path
(sympy-generated expanded polynomials evaluated in torch float64, float64 SIREN;
tests/references/original.py), and prints Markdown tables: cosine similarity per point and
absolute differences by latitude band, and the original's feature error by degree.

Generating the degree-39 sympy expressions takes a minute or so; they are cached as JSON under
--cache-dir (default: a directory in the system temp dir, never the repository).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import satclip  # noqa: E402
from conftest import released_checkpoint_dict  # noqa: E402
from references.original import degree_sources, original_features, original_siren_forward  # noqa: E402

BANDS = [(0, 30), (30, 50), (50, 60), (60, 70), (70, 80), (80, 90)]


def sphere_points(n: int, seed: int) -> np.ndarray:
    """Uniform on the sphere, plus the poles and a ring close to each."""
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    extra_lat = np.array([90, -90, 89.99, -89.99, 89.9, -89.9])
    extra = np.stack([rng.uniform(-180, 180, extra_lat.size), extra_lat], 1)
    return np.concatenate([np.stack([lon, lat], 1), extra])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def embedding_table(points: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> list[str]:
    abs_lat = np.abs(points[:, 1])
    cos = cosine(ours, theirs)
    diff = np.abs(ours - theirs)
    rows = [
        "| abs(lat) band (deg) | points | min cosine | median cosine | max abs diff | mean abs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for low, high in BANDS:
        sel = (abs_lat >= low) & ((abs_lat < high) if high < 90 else (abs_lat <= high))
        if not sel.any():
            continue
        rows.append(
            f"| {low}-{high} | {sel.sum()} | {cos[sel].min():.6f} | {np.median(cos[sel]):.8f} "
            f"| {diff[sel].max():.2e} | {diff[sel].mean():.2e} |"
        )
    rows.append(
        f"| **all** | {len(points)} | {cos.min():.6f} | {np.median(cos):.8f} | {diff.max():.2e} | {diff.mean():.2e} |"
    )
    return rows


def feature_table(ours: np.ndarray, theirs: np.ndarray, L: int) -> list[str]:
    rows = ["| degrees l | max abs feature error of the original |", "|---|---:|"]
    groups = [(0, 10), (10, 20), (20, 25), (25, 30), (30, 35), (35, L)]
    for low, high in groups:
        if low >= L:
            break
        high = min(high, L)
        cols = slice(low * low, high * high)
        rows.append(f"| {low}-{high - 1} | {np.abs(ours[:, cols] - theirs[:, cols]).max():.2e} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--L", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "satclip-original-ylm")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    points = sphere_points(args.points, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for L in args.L:
            started = time.perf_counter()
            for l in range(L):
                degree_sources(l, args.cache_dir)
            generated = time.perf_counter() - started

            checkpoint = released_checkpoint_dict(L, seed=args.seed)
            path = Path(tmp) / f"released-layout-l{L}.ckpt"
            torch.save(checkpoint, path)
            weights = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.location.nnet.")}

            ours = satclip.encode(points, path, dtype=torch.float64, device="cpu")
            exact_features = satclip.spherical_harmonics(points, L)
            their_features = original_features(torch.from_numpy(points), L, args.cache_dir)
            theirs = original_siren_forward(their_features, weights, prefix="model.location.nnet.").numpy()

            print(f"\n### L = {L}: satclip vs the original code path ({len(points)} points, float64)\n")
            print(f"(sympy expressions ready in {generated:.1f} s; cache: {args.cache_dir})")
            print(f"embedding spread (std of all entries): {ours.std():.3f}; max |entry|: {np.abs(ours).max():.3f}\n")
            print("\n".join(embedding_table(points, ours, theirs)))
            print()
            print("\n".join(feature_table(exact_features, their_features.numpy(), L)))


if __name__ == "__main__":
    main()
