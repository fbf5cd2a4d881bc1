"""The image subcommands of the ``satclip`` command line.

    satclip embed-images patches/*.tif -o embeddings.parquet --model resnet50-l40
    satclip locate patch_8845.tif --model resnet50-l40 --top-k 5 --map map.png

``embed-images`` writes one Parquet row per file: ``path`` and ``embedding`` (a fixed-size list
of float32). A directory argument stands for the ``.tif``/``.tiff`` files in it (sorted by name,
not recursive), as a directory of parts does for ``satclip encode``. ``locate`` prints the best guesses per file and, when the GeoTIFF's georeference
gives the patch centre, the great-circle distance of each guess to it. Outputs are never
overwritten without ``--overwrite`` and are written to a temporary file that is renamed at the end.

:func:`register` adds the subcommands to ``satclip``'s parser (``cli/main.py``); each sets
``args.run``, which ``cli.common.run_command`` calls and whose errors it reports. Outputs and
options are checked (``cli.common.check_outputs``) before the model is loaded or an image read;
usage mistakes (an existing output, ``--map`` with several files) exit with status 2, like a bad
option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from satclip.cli.common import (
    Output,
    UsageError,
    add_batch_size_option,
    add_device_option,
    add_model_option,
    add_overwrite_option,
    check_outputs,
    positive_float,
    positive_int,
    publish_output,
)

_IMAGE_SUFFIXES = (".tif", ".tiff")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")
#: The similarity map's grid spacing range (``satclip.similarity_map`` refuses others).
_MAP_RESOLUTION = (0.01, 90.0)


def register(commands: Any) -> None:
    """Adds ``embed-images`` and ``locate`` to the ``satclip`` sub-command parsers."""
    emb = commands.add_parser(
        "embed-images",
        help="embed Sentinel-2 GeoTIFF patches with a SatCLIP image encoder",
        description="Embed Sentinel-2 L2A GeoTIFF patches (12 uint16 bands, S2-100K layout) with the "
        "image encoder of a SatCLIP checkpoint; one Parquet row (path, embedding) per file.",
    )
    emb.add_argument("tifs", nargs="+", type=Path, metavar="TIF", help="GeoTIFF patches, or directories of them")
    emb.add_argument("-o", "--output", type=Path, required=True, help="output .parquet file")
    _common(emb)
    add_overwrite_option(emb, "replace OUTPUT if it exists")
    emb.set_defaults(run=run_embed_images)

    loc = commands.add_parser(
        "locate",
        help="guess where Sentinel-2 patches were taken",
        description="Rank candidate locations (a 100,000-point global Fibonacci lattice) by cosine "
        "similarity of their SatCLIP location embeddings with each patch's image embedding.",
    )
    loc.add_argument("tifs", nargs="+", type=Path, metavar="TIF", help="GeoTIFF patches, or directories of them")
    _common(loc)
    loc.add_argument("--top-k", type=positive_int, default=5, help="guesses per image (default: 5)")
    loc.add_argument("--map", type=Path, help="also draw the similarity map of the (single) TIF to this .png/.pdf/.svg")
    loc.add_argument(
        "--resolution", type=positive_float, default=1.0, help="map grid spacing in degrees, 0.01 to 90 (default: 1)"
    )
    loc.add_argument("--cache-dir", type=Path, help="keep the candidates' location embeddings on disk here")
    add_overwrite_option(loc, "replace the --map file if it exists")
    loc.set_defaults(run=run_locate)


def _common(parser: argparse.ArgumentParser) -> None:
    add_model_option(parser)
    add_batch_size_option(parser, "images per batch (default: 16 on CPU, 64 on CUDA)")
    add_device_option(parser)


def run_embed_images(args: argparse.Namespace) -> int:
    check_outputs([Output("-o", args.output, (".parquet", ".pq"))], overwrite=args.overwrite, inputs=args.tifs)
    paths = [str(p) for p in image_paths(args.tifs)]

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from satclip.embed.images import encode_images

    emb = encode_images(paths, args.model, device=args.device, batch_size=args.batch_size)
    values = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1))
    table = pa.table({"path": pa.array(paths), "embedding": pa.FixedSizeListArray.from_arrays(values, emb.shape[1])})
    publish_output(args.output, lambda tmp: pq.write_table(table, tmp), args.overwrite)
    print(f"wrote {len(paths)} embeddings of dimension {emb.shape[1]} to {args.output}", file=sys.stderr)
    return 0


def image_paths(arguments: list[Path]) -> list[Path]:
    """The image files the TIF arguments name: files as given, directories as their
    ``.tif``/``.tiff`` files (sorted by name); a missing file or an image-less directory fails."""
    paths: list[Path] = []
    for arg in arguments:
        if arg.is_dir():
            found = sorted(p for p in arg.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{arg} is a directory with no .tif or .tiff files in it")
            paths += found
        elif arg.is_file():
            paths.append(arg)
        else:
            raise FileNotFoundError(f"no such image file: {arg}")
    return paths


def run_locate(args: argparse.Namespace) -> int:
    from satclip.downstream.locate import DEFAULT_GRID_POINTS

    if args.top_k > DEFAULT_GRID_POINTS:
        raise UsageError(
            f"argument --top-k: at most {DEFAULT_GRID_POINTS} (the number of candidates), got {args.top_k}"
        )
    if args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        raise UsageError(f"--cache-dir {args.cache_dir} is not a directory")
    if args.map is not None:
        low, high = _MAP_RESOLUTION
        if not low <= args.resolution <= high:
            raise UsageError(
                f"argument --resolution: the map's grid spacing must be {low:g} to {high:g} degrees, got {args.resolution:g}"
            )
    check_outputs([Output("--map", args.map, _PLOT_SUFFIXES)], overwrite=args.overwrite, inputs=args.tifs)
    tifs = image_paths(args.tifs)
    if args.map is not None and len(tifs) != 1:
        raise UsageError(f"--map draws one image: give a single TIF, not {len(tifs)}")

    from satclip.downstream.locate import locate, similarity_map
    from satclip.io.georef import great_circle_km, image_center

    paths = [str(p) for p in tifs]
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
        from satclip.downstream.plots import plot_similarity_map

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
        fmt = args.map.suffix.lstrip(".").lower()
        publish_output(args.map, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt), args.overwrite)
        print(f"wrote {args.map}", file=sys.stderr)
    return 0


def _center_or_none(image_center: Any, path: str) -> Any:
    try:
        return image_center(path)
    except Exception as e:  # the pixels were read already; a bad georeference only loses the distance
        print(f"satclip: warning: {path}: no distance to the true centre ({e})", file=sys.stderr)
        return None


__all__ = ["image_paths", "register", "run_embed_images", "run_locate"]
