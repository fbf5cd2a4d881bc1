"""The main job: SatCLIP embeddings for a set of locations.

    python examples/encode_locations.py [--model NAME_OR_PATH] [--csv FILE]

Loads a released SatCLIP location encoder (default ``resnet50-l40``, fetched once from the
Hugging Face Hub into its cache) and encodes a few cities, or the points of ``--csv FILE``
(any CSV with lon/lat columns, e.g. the air-temperature stations of SatCLIP's downstream
example). Without network access and without a cached copy, it says so and demonstrates the
pipeline on a randomly initialised encoder of the released architecture instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import satclip
from satclip.errors import CheckpointError

CITIES = {
    "Zurich": (8.55, 47.37),
    "Seattle": (-122.33, 47.61),
    "Sydney": (151.21, -33.87),
    "Nairobi": (36.82, -1.29),
    "Longyearbyen": (15.63, 78.22),
    "McMurdo": (166.67, -77.85),
}


def locations(path: Path | None) -> tuple[np.ndarray, str]:
    if path is None:
        return np.array(list(CITIES.values())), f"{len(CITIES)} cities"
    if not path.is_file():
        raise SystemExit(f"--csv {path}: no such file")
    import csv as csvlib

    with open(path, newline="") as f:
        rows = list(csvlib.DictReader(f))
    lon_key = next(k for k in rows[0] if k.lower() in ("lon", "longitude", "lng"))
    lat_key = next(k for k in rows[0] if k.lower() in ("lat", "latitude"))
    pts = np.array([[float(r[lon_key]), float(r[lat_key])] for r in rows])
    return pts, f"{len(pts)} locations from {path.name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50-l40", help="short name, Hub id or local checkpoint")
    parser.add_argument("--csv", type=Path, help="CSV with lon/lat columns (default: six built-in cities)")
    args = parser.parse_args()

    try:
        model = satclip.load(args.model)
        label = args.model
    except CheckpointError as err:
        from satclip.models.location import build_location_encoder

        print(f"Could not load {args.model!r}: {err}")
        print("Demonstrating on a randomly initialised L=40 encoder of the released architecture;")
        print("its embeddings are NOT meaningful. See docs/install.md 'Getting the released weights'.\n")
        import torch

        torch.manual_seed(0)  # the same stand-in weights on every run
        model = build_location_encoder(40).double().eval()
        label = "random L=40 encoder"

    pts, what = locations(args.csv)
    start = time.perf_counter()
    emb = satclip.encode(pts, model)
    seconds = time.perf_counter() - start
    print(f"model: {label}   SH core: {satclip.simd_level()}, {satclip.get_num_threads()} threads")
    print(f"encoded {what}: embeddings {emb.shape} {emb.dtype} in {seconds * 1e3:.1f} ms")
    for name, row in zip(CITIES if len(pts) == len(CITIES) else [f"row {i}" for i in range(3)], emb[:3], strict=False):
        print(f"  {name:>12}: [{', '.join(f'{v:+.4f}' for v in row[:5])}, ...]")


if __name__ == "__main__":
    main()
