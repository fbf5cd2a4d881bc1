"""Geo-locate Sentinel-2 patches with SatCLIP (the original's notebook B02, as a script).

    python examples/locate_images.py [TIF ...] [--model NAME_OR_PATH] [--top-k 5] [--map map.png]

For each GeoTIFF patch (12 uint16 L2A bands, S2-100K layout) it embeds the image with the
checkpoint's image encoder, ranks 100,000 near-uniform candidate locations (Fibonacci lattice) by
cosine similarity with their location embeddings, and prints the best guesses with their
great-circle distance to the patch centre (read from the GeoTIFF's georeference).

Paths: give them as arguments. Without any, it uses the three S2-100K example patches in
``../shared/data/example-s2`` (next to this repository, outside it; ``$SATCLIP_SHARED_DATA``
names another ``data`` folder) when that folder exists, and says so; it reads nothing else
outside the repository.

Model: default ``resnet50-l40`` (both halves from ``microsoft/SatCLIP-ResNet50-L40``, fetched once
into the Hugging Face cache). Without network access or a cached copy it says so and runs the
pipeline on randomly initialised encoders of the released architecture: the output then shows
that everything runs, and its distances mean nothing (a random guess is ~10,000 km off on average).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

import satclip
from satclip.errors import CheckpointError
from satclip.io.georef import great_circle_km, image_center

#: ../shared/data/example-s2 next to the repository ($SATCLIP_SHARED_DATA overrides ../shared/data).
EXAMPLES = (
    Path(os.environ.get("SATCLIP_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    / "example-s2"
)


def stand_in_model() -> tuple[satclip.ImageEncoder, satclip.LocationEncoder]:
    """Random encoders of the released ResNet50-L40 architecture (seeded: same numbers every run)."""
    from satclip.models.image import ImageEncoderConfig
    from satclip.models.location import build_location_encoder

    torch.manual_seed(0)
    return satclip.ImageEncoder(ImageEncoderConfig("resnet50")).eval(), build_location_encoder(40).eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tifs", nargs="*", type=Path, help=f"GeoTIFF patches (default: {EXAMPLES}/*.tif)")
    parser.add_argument("--model", default="resnet50-l40", help="short name, Hub repository or checkpoint path")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument(
        "--map", type=Path, help="draw the first patch's similarity map to this file (needs matplotlib)"
    )
    args = parser.parse_args()

    tifs = args.tifs
    if not tifs:
        if not EXAMPLES.is_dir():
            parser.error(f"no TIF given, and the example patches ({EXAMPLES}) are not there")
        tifs = sorted(EXAMPLES.glob("*.tif"))
        print(f"no TIF given: using the {len(tifs)} example patches in {EXAMPLES} (outside this repository)")

    try:
        model: object = (satclip.load_image_encoder(args.model), satclip.load(args.model))
        used = f"checkpoint {args.model}"
    except CheckpointError as err:
        print(f"could not load {args.model} ({err}).", file=sys.stderr)
        print(
            "Using RANDOMLY INITIALISED encoders of the ResNet50-L40 architecture instead: the guesses below "
            "show the pipeline runs; their distances mean nothing.",
            file=sys.stderr,
        )
        model, used = stand_in_model(), "random stand-in weights (no released checkpoint available)"

    t0 = time.perf_counter()
    result = satclip.locate(tifs, model, top_k=args.top_k)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    print(
        f"model: {used}; {len(tifs)} images ranked against {result.candidates.shape[0]:,} candidates in {elapsed:.1f} s"
    )
    for i, tif in enumerate(tifs):
        truth = image_center(tif)
        print(f"\n{tif.name}: true centre " + (f"lon {truth.lon:.3f}, lat {truth.lat:.3f}" if truth else "unknown"))
        for rank, ((lon, lat), score) in enumerate(zip(result.lonlat[i], result.scores[i], strict=False), 1):
            dist = f"{float(great_circle_km(truth.lon, truth.lat, lon, lat)):8.0f} km" if truth else ""
            print(f"  {rank}. lon {lon:8.3f}, lat {lat:7.3f}   cosine {score:.4f}   {dist}")

    if args.map is not None:
        if args.map.exists():
            parser.error(f"{args.map} exists; remove it or choose another name")
        smap = satclip.similarity_map(tifs[0], model, resolution=1.0)  # type: ignore[arg-type]
        truth = image_center(tifs[0])
        fig = satclip.plot_similarity_map(
            smap,
            true_location=(truth.lon, truth.lat) if truth else None,
            guesses=result.lonlat[0],
            title=f"{tifs[0].name}: {used}",
        )
        fig.savefig(args.map, dpi=120)
        print(f"\nwrote {args.map}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
