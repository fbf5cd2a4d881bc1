"""The image subcommands of the ``satclip`` command line.

    satclip embed-images patches/*.tif -o embeddings.parquet --model resnet50-l40
    satclip locate patch_8845.tif --model resnet50-l40 --top-k 5 --map map.png

``embed-images`` writes one Parquet row per file: ``path`` and ``embedding`` (a fixed-size list
of float32). ``locate`` prints the best guesses per file and, when the GeoTIFF's georeference
gives the patch centre, the great-circle distance of each guess to it. Outputs are never
overwritten without ``--overwrite`` and are written to a temporary file that is renamed at the end.

:func:`register` adds the subcommands to ``satclip``'s parser (``cli.py``); each sets
``args.run``, which ``cli.main`` calls and whose errors it reports. Usage mistakes (an existing
output, ``--map`` with several files) exit with status 2 through argparse, like a bad option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    """Adds ``embed-images`` and ``locate`` to the ``satclip`` sub-command parsers."""
    emb = commands.add_parser(
        "embed-images",
        help="embed Sentinel-2 GeoTIFF patches with a SatCLIP image encoder",
        description="Embed Sentinel-2 L2A GeoTIFF patches (12 uint16 bands, S2-100K layout) with the "
        "image encoder of a SatCLIP checkpoint; one Parquet row (path, embedding) per file.",
    )
    emb.add_argument("tifs", nargs="+", type=Path, metavar="TIF", help="GeoTIFF patches")
    emb.add_argument("-o", "--output", type=Path, required=True, help="output .parquet file")
    _common(emb)
    emb.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    emb.set_defaults(run=run_embed_images, usage_error=emb.error)

    loc = commands.add_parser(
        "locate",
        help="guess where Sentinel-2 patches were taken",
        description="Rank candidate locations (a 100,000-point global Fibonacci lattice) by cosine "
        "similarity of their SatCLIP location embeddings with each patch's image embedding.",
    )
    loc.add_argument("tifs", nargs="+", type=Path, metavar="TIF", help="GeoTIFF patches")
    _common(loc)
    loc.add_argument("--top-k", type=int, default=5, help="guesses per image (default: 5)")
    loc.add_argument("--map", type=Path, help="also draw the similarity map of the (single) TIF to this .png/.pdf/.svg")
    loc.add_argument("--resolution", type=float, default=1.0, help="map grid spacing in degrees (default: 1)")
    loc.add_argument("--cache-dir", type=Path, help="keep the candidates' location embeddings on disk here")
    loc.add_argument("--overwrite", action="store_true", help="replace the --map file if it exists")
    loc.set_defaults(run=run_locate, usage_error=loc.error)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="resnet50-l40", help="short name, Hub repository or checkpoint path (default: resnet50-l40)"
    )
    parser.add_argument("--batch-size", type=int, help="images per batch (default: 16 on CPU, 64 on CUDA)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def run_embed_images(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .images import encode_images

    if args.output.suffix.lower() not in (".parquet", ".pq"):
        args.usage_error(f"the output must be a .parquet file, got {args.output}")
    if args.output.exists() and not args.overwrite:
        args.usage_error(f"{args.output} exists; pass --overwrite to replace it")
    paths = [str(p) for p in args.tifs]
    emb = encode_images(paths, args.model, device=args.device, batch_size=args.batch_size)
    values = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1))
    table = pa.table({"path": pa.array(paths), "embedding": pa.FixedSizeListArray.from_arrays(values, emb.shape[1])})
    _write_atomically(args.output, lambda tmp: pq.write_table(table, tmp), args.overwrite)
    print(f"wrote {len(paths)} embeddings of dimension {emb.shape[1]} to {args.output}", file=sys.stderr)
    return 0


def run_locate(args: argparse.Namespace) -> int:
    from .geolocate import locate, similarity_map
    from .georef import great_circle_km, image_center

    if args.map is not None:
        if len(args.tifs) != 1:
            args.usage_error("--map draws one image: give a single TIF")
        if args.map.exists() and not args.overwrite:
            args.usage_error(f"{args.map} exists; pass --overwrite to replace it")
    paths = [str(p) for p in args.tifs]
    result = locate(
        paths, args.model, top_k=args.top_k, device=args.device, batch_size=args.batch_size, cache_dir=args.cache_dir
    )
    for i, path in enumerate(paths):
        truth = _center_or_none(image_center, path)
        where = f"true centre {truth.lon:.4f}, {truth.lat:.4f} (from its georeference)" if truth else "no georeference"
        print(f"{path}: {where}")
        print(f"  {'rank':>4}  {'lon':>10}  {'lat':>9}  {'cosine':>8}" + (f"  {'distance_km':>11}" if truth else ""))
        for rank, ((lon, lat), score) in enumerate(zip(result.lonlat[i], result.scores[i], strict=False), 1):
            line = f"  {rank:>4}  {lon:>10.4f}  {lat:>9.4f}  {score:>8.4f}"
            if truth:
                line += f"  {float(great_circle_km(truth.lon, truth.lat, lon, lat)):>11.1f}"
            print(line)
    if args.map is not None:
        from .maps import plot_similarity_map

        smap = similarity_map(
            paths[0], args.model, resolution=args.resolution, device=args.device, cache_dir=args.cache_dir
        )
        truth = _center_or_none(image_center, paths[0])
        fig = plot_similarity_map(
            smap,
            true_location=(truth.lon, truth.lat) if truth else None,
            guesses=result.lonlat[0],
            title=f"{Path(paths[0]).name} - {args.model}",
        )
        _write_atomically(
            args.map, lambda tmp: fig.savefig(tmp, dpi=120, format=args.map.suffix.lstrip(".") or "png"), args.overwrite
        )
        print(f"wrote {args.map}", file=sys.stderr)
    return 0


def _center_or_none(image_center: Any, path: str) -> Any:
    try:
        return image_center(path)
    except Exception:  # the pixels were read already; a bad georeference only loses the distance
        return None


def _write_atomically(path: Path, write: Any, overwrite: bool) -> None:
    from .publish import publish

    publish(path, lambda tmp: write(str(tmp)), overwrite=overwrite)


__all__ = ["register", "run_embed_images", "run_locate"]
