"""The downstream subcommands of the ``satclip`` command line: probes and embedding maps.

    satclip probe stations.csv --target meanT --model resnet50-l40 --model vit16-l40 --cv spatial
    satclip probe stations.csv --target meanT --models resnet50-l40,geoclip,wrap,sh-L10 --plot chart.png
    satclip map --model resnet50-l40 -o map.png --resolution 0.5 [--region lon0,lat0,lon1,lat1]
    satclip map --model resnet50-l40 --resolution 0.1 --export grid.zarr   (or grid.nc, grid.tif)

``probe`` prints one table row per feature set: each ``--model``'s embeddings and the
raw-coordinate baselines (``lonlat`` degrees, ``xyz`` unit vectors, ``sh`` the spherical harmonics
alone), all scored on the same folds. ``map`` draws the embeddings' first three principal
components as RGB and/or exports the full embedding grid, streaming bands of rows.

:func:`register` adds the subcommands to ``satclip``'s parser (``cli/main.py``), like
``cli/images.py``. Both check every output and option (``cli.common.check_outputs``) before a
model is loaded or the input table read; ``map --export`` checks the free disk space before
loading the model too (for a checkpoint file whose embedding size only the file knows, again
right after loading it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from satclip.cli.common import (
    Output,
    UsageError,
    add_device_option,
    add_lonlat_options,
    add_model_option,
    add_overwrite_option,
    add_quiet_option,
    check_outputs,
    positive_float,
    positive_int,
    publish_output,
    show_progress,
)
from satclip.errors import SatclipError

BASELINES = ("lonlat", "xyz", "sh")
IMAGE_SUFFIXES = (".png", ".pdf", ".svg")
#: The largest --size: matplotlib draws into an RGBA buffer (4 bytes per pixel) and keeps a few
#: resampled copies of the image at that size; Agg itself refuses 2**16 pixels per side.
MAX_IMAGE_SIDE = 1 << 15
MAX_IMAGE_PIXELS = 1 << 24


def folds_type(text: str) -> int:
    """argparse type of --folds: cross-validation needs at least two folds."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {text!r}")
    return value


def register(commands: Any) -> None:
    """Adds ``probe`` and ``map`` to the ``satclip`` sub-command parsers."""
    pr = commands.add_parser(
        "probe",
        help="score models' embeddings (and raw-coordinate baselines) as predictors of a target",
        description="Cross-validated probe: embed the points of a CSV/Parquet file, fit a head on k-1 "
        "folds, score on the held-out fold; one row per model and baseline, on the same folds.",
    )
    pr.add_argument("input", type=Path, help="CSV or Parquet with lon/lat columns and the target column")
    pr.add_argument("--target", required=True, help="target column")
    pr.add_argument("--model", action="append", default=[], help="model to probe (repeat to compare several)")
    pr.add_argument("--task", choices=("regression", "classification"), default="regression")
    pr.add_argument("--head", choices=("ridge", "logistic", "knn", "mlp"), default="ridge")
    pr.add_argument("--cv", choices=("random", "spatial"), default="random", help="fold kind (default: random)")
    pr.add_argument("--folds", type=folds_type, default=5, help="cross-validation folds, >= 2 (default: 5)")
    pr.add_argument(
        "--blocks", type=positive_int, default=100, help="equal-area spatial blocks on the sphere (default: 100)"
    )
    pr.add_argument(
        "--buffer-km",
        type=positive_float,
        help="leave out of each fold's training set the points within this many km of its test points",
    )
    pr.add_argument(
        "--models",
        help="comma-separated encoders to compare on the same folds: SatCLIP models, checkpoints and the "
        "built-in encoders geoclip, sh-L10, sh-L40, wrap, cartesian3d, lonlat",
    )
    pr.add_argument(
        "--baselines",
        help="comma-separated subset of lonlat,xyz,sh, or 'none' (default: all three, none with --models)",
    )
    pr.add_argument("--plot", type=Path, help="bar chart of the scores (.png, .pdf or .svg)")
    pr.add_argument("--sh-degree", type=positive_int, default=10, help="L of the sh baseline (default: 10)")
    pr.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    add_lonlat_options(
        pr, lon_help="longitude column (default: found by name)", lat_help="latitude column (default: found by name)"
    )
    add_device_option(pr)
    add_overwrite_option(pr, "replace the --plot file if it exists")
    pr.set_defaults(run=run_probe)

    mp = commands.add_parser(
        "map",
        help="draw embeddings as a PCA-RGB world map and/or export the embedding grid",
        description="Embed a regular lon/lat grid; draw its first three principal components as RGB "
        "(-o) and/or write every embedding to Zarr, NetCDF or a multi-band GeoTIFF (--export).",
    )
    add_model_option(mp)
    mp.add_argument("-o", "--output", type=Path, help="image file (.png, .pdf, .svg)")
    mp.add_argument("--export", type=Path, help="full embedding grid: .zarr, .nc or .tif")
    mp.add_argument("--resolution", type=positive_float, default=0.5, help="grid spacing in degrees (default: 0.5)")
    mp.add_argument("--region", help="lon0,lat0,lon1,lat1 in degrees (default: the whole globe)")
    mp.add_argument("--size", default="1600x800", help="image size in pixels, WIDTHxHEIGHT (default: 1600x800)")
    mp.add_argument("--title", help="image title (default: the model)")
    add_device_option(mp)
    add_overwrite_option(mp, "replace existing outputs")
    add_quiet_option(mp)
    mp.set_defaults(run=run_map)


# ----------------------------------------------------------------------------------------
# satclip probe


def run_probe(args: argparse.Namespace) -> int:
    import numpy as np

    from satclip.downstream.probes import baseline_features, compare
    from satclip.points.columns import find_lonlat_columns

    models = list(args.model) + [m.strip() for m in (args.models or "").split(",") if m.strip()]
    if args.baselines is None:
        args.baselines = "none" if args.models else ",".join(BASELINES)
    baselines = (
        [] if args.baselines.strip().lower() == "none" else [b.strip() for b in args.baselines.split(",") if b.strip()]
    )
    check_outputs([Output("--plot", args.plot, IMAGE_SUFFIXES)], overwrite=args.overwrite, inputs=[args.input])
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise UsageError(f"unknown baseline(s) {', '.join(unknown)}: use {', '.join(BASELINES)} or none")
    if not models and not baselines:
        raise UsageError("nothing to probe: give --model/--models and/or --baselines")
    frame = _read_table(args.input)
    if args.target not in frame.columns:
        raise ValueError(
            f"no target column {args.target!r} in {args.input}; the columns are {[str(c) for c in frame.columns]}"
        )
    lon, lat = find_lonlat_columns(list(frame.columns), args.lon_col, args.lat_col)
    lonlat = frame[[lon, lat]].to_numpy(dtype=np.float64, na_value=np.nan)
    y = frame[args.target].to_numpy()

    # Every encoder embeds the points once and is probed on the same folds.
    encoders: dict[str, Any] = {}  # unique keys; a model given twice gets two rows of its own name
    shown: list[str] = []
    for i, model in enumerate(models):
        encoders[f"{i}:{model}"] = model
        shown.append(model)
    for kind in baselines:
        feats = baseline_features(lonlat, kind, L=args.sh_degree)
        label = f"baseline: {kind}" + (f" (L={args.sh_degree}, {feats.shape[1]} features)" if kind == "sh" else "")
        encoders[label] = feats
        shown.append(label)
    common = dict(task=args.task, head=args.head, cv=args.cv, folds=args.folds, n_blocks=args.blocks, seed=args.seed)
    common["buffer_km"] = args.buffer_km
    result = compare(lonlat, y, encoders, device=args.device, **common)  # type: ignore[arg-type]
    rows = [
        (label, result.results[key], result.encode_seconds[key] + result.fit_seconds[key])
        for label, key in zip(shown, encoders, strict=True)
    ]
    print(format_table(rows, args, n=len(y)))
    if args.plot is not None:
        names = {
            key: label if shown.count(label) == 1 else f"{label} #{i + 1}"
            for i, (label, key) in enumerate(zip(shown, encoders, strict=True))
        }
        result = result.renamed(names)
        title = f"{args.task} of {args.target!r}: {args.head} probe, {args.folds}-fold {args.cv} CV"
        publish_output(args.plot, lambda tmp: result.plot(tmp, title=title), args.overwrite)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def format_table(rows: list[tuple[str, Any, float]], args: argparse.Namespace, n: int) -> str:
    """A plain-text table: one row per feature set, mean +- std over folds of each score, and the
    seconds its embedding and probe fits took."""
    import numpy as np

    keys = list(rows[0][1].mean)
    header = f"{args.task} of {args.target!r}: {args.head} head, {args.folds}-fold {args.cv} CV, {n} points"
    if args.cv == "spatial":
        header += f", {args.blocks} equal-area blocks"
    width = 12
    width = max(width, *(len(label) for label, *_ in rows))
    lines = [header, f"{'features':<{width}}  " + "  ".join(f"{k:>16}" for k in keys) + f"  {'time s':>8}"]
    for label, res, seconds in rows:
        cells = []
        for k in keys:
            values = np.array([f[k] for f in res.folds])
            cells.append(f"{values.mean():>9.4f} ± {values.std():<5.3f}")
        lines.append(f"{label:<{width}}  " + "  ".join(cells) + f"  {seconds:>8.2f}")
    return "\n".join(lines)


def _read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UsageError(f"cannot read {path}: the input must be a .csv or .parquet file")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a .csv or .parquet file")
    if not path.exists():
        raise FileNotFoundError(f"no such input file: {path}")
    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except (ValueError, OSError) as err:  # pandas' and pyarrow's parse errors
        raise ValueError(f"cannot read {path}: {err}") from None
    if len(frame) == 0:
        raise ValueError(f"{path} has no rows")
    return frame


# ----------------------------------------------------------------------------------------
# satclip map


def run_map(args: argparse.Namespace) -> int:
    from satclip.downstream.embedding_map import (
        EXPORT_SUFFIXES,
        check_map_grid,
        export_grid,
        format_bytes,
        make_grid,
        pca_rgb,
    )

    if args.output is None and args.export is None:
        raise UsageError("give -o IMAGE and/or --export GRID")
    check_outputs(
        [
            Output("-o", args.output, IMAGE_SUFFIXES),
            Output(
                "--export",
                args.export,
                EXPORT_SUFFIXES,
                directory=args.export is not None and args.export.suffix.lower() == ".zarr",
            ),
        ],
        overwrite=args.overwrite,
    )
    w, h = _image_size(args.size)
    region = None
    if args.region is not None:
        try:
            region = tuple(float(v) for v in args.region.split(","))
        except ValueError:
            region = ()
        if len(region) != 4:
            raise UsageError(f"--region must be four numbers lon0,lat0,lon1,lat1 (degrees), got {args.region!r}")
    try:
        grid = make_grid(args.resolution, region)
        if args.output is not None:
            check_map_grid(grid)
    except SatclipError as err:  # the region or resolution: a usage error
        raise UsageError(str(err)) from None
    progress = show_progress(args.quiet)

    from satclip.models.encoders import builtin_key, is_unknown_name, unknown_encoder

    if is_unknown_name(args.model):
        raise unknown_encoder(args.model)  # lists the SatCLIP models and the built-in encoders
    builtin = builtin_key(args.model) is not None
    if args.export is not None:
        # Before the model is loaded: from the built-in encoder's output or the released models' size.
        dim = _builtin_dim(args.model) if builtin else _released_dim(args.model)
        if dim is not None:
            _check_export_space(args.export, grid, dim, format_bytes)

    from satclip.io.checkpoint import load

    # Once, not once per band (a built-in encoder is built once and kept in encode's cache).
    model: Any = args.model if builtin else load(args.model)
    if args.export is not None and not builtin:
        _check_export_space(args.export, grid, model.nnet.last_layer.dim_out, format_bytes)
    if args.output is not None:
        from satclip.downstream.plots import plot_embedding_map

        rgb = pca_rgb(model, grid, device=args.device, progress=progress)
        fig = plot_embedding_map(
            rgb,
            grid.lon,
            grid.lat,
            size_px=(w, h),
            title=args.title or f"{'' if builtin else 'SatCLIP '}{args.model}: PCA of embeddings",
        )
        del rgb
        fmt = args.output.suffix.lstrip(".").lower()
        publish_output(args.output, lambda tmp: fig.savefig(tmp, dpi=100, format=fmt), args.overwrite)
        print(f"wrote {args.output} ({w}x{h} px, grid {grid.width}x{grid.height})", file=sys.stderr)
    if args.export is not None:
        export_grid(
            model,
            grid,
            args.export,
            device=args.device,
            progress=progress,
            model_name=args.model,
            overwrite=args.overwrite,
        )
        print(
            f"wrote {args.export} (grid {grid.width}x{grid.height}, {grid.width * grid.height} points)", file=sys.stderr
        )
    return 0


#: The embedding size of every released SatCLIP model (``embed_dim`` in their hyper-parameters).
_RELEASED_EMBED_DIM = 256


def _builtin_dim(name: str) -> int:
    from satclip.embed.locations import encode

    return int(encode([[0.0, 0.0]], name, device="cpu").shape[1])


def _released_dim(name: str) -> int | None:
    """The embedding size of a released model named by its short name or Hub repository, known
    without downloading it; None for anything else (a checkpoint file says it once loaded)."""
    from satclip.models.registry import MODELS

    if name in MODELS or any(name == m.repo_id for m in MODELS.values()):
        return _RELEASED_EMBED_DIM
    return None


def _check_export_space(export: Path, grid: Any, dim: int, format_bytes: Any) -> None:
    """Refuses an export larger than the free space where it goes."""
    import shutil

    size = grid.width * grid.height * dim * 4
    # A GeoTIFF is copied into the COG layout from a compressed scratch file beside it, and
    # float embeddings compress little: both must fit at once.
    cog = export.suffix.lower() in (".tif", ".tiff")
    need = 2 * size if cog else size
    twice = ", twice over while the COG is built from its scratch file" if cog else ""
    free = shutil.disk_usage(export.parent if str(export.parent) else ".").free
    if need > free:
        raise OSError(
            f"--export {export}: {grid.width} x {grid.height} cells x {dim} float32 embeddings take "
            f"{format_bytes(size)} (uncompressed{twice}), but only {format_bytes(free)} is free there; "
            "use a coarser --resolution or a smaller --region"
        )


def _image_size(text: str) -> tuple[int, int]:
    """--size WIDTHxHEIGHT, each side 16 to MAX_IMAGE_SIDE pixels and at most MAX_IMAGE_PIXELS in all."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must be WIDTHxHEIGHT pixels, e.g. 1600x800, got {text!r}") from None
    if not (16 <= w <= MAX_IMAGE_SIDE and 16 <= h <= MAX_IMAGE_SIDE) or w * h > MAX_IMAGE_PIXELS:
        raise UsageError(
            f"--size {text}: each side must be 16 to {MAX_IMAGE_SIDE} pixels and the image at most "
            f"{MAX_IMAGE_PIXELS:,} pixels (drawing it takes several bytes per pixel)"
        )
    return w, h


__all__ = ["register", "run_map", "run_probe"]
