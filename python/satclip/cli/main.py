"""The ``satclip`` command line.

    satclip encode points.csv -o embeddings.parquet --model resnet50-l40
    satclip encode points.npy -o embeddings.npy
    satclip encode s3://bucket/points/ -o s3://bucket/embeddings/   (any fsspec URL; the cloud extra)
    satclip convert satclip-resnet50-l40.ckpt -o resnet50-l40.safetensors
    satclip models
    satclip embed-images patches/*.tif -o embeddings.parquet   (cli/images.py)
    satclip locate patch.tif --model resnet50-l40 --map map.png

User errors (bad input, missing files, an output that exists) print one line to stderr and
exit non-zero without a traceback: 2 for a usage error (a bad option or value, an unsupported
output format, an output that exists, two options naming one file), 1 otherwise, 130 for Ctrl-C
and 143 for SIGTERM (cli/common.py owns this convention and the options every command shares).
Every command checks its outputs and options (:func:`check_outputs`, the argparse types) before
it loads a model or reads input, so a mistake costs no work.
Outputs are streamed batch by batch (memory bounded by the batch, see io/tables.py) into a
temporary file next to the target and published at the end (io/publish.py; an object-store
output is uploaded to its key once complete): an interrupted run (Ctrl-C, SIGTERM, an error)
never leaves a half-written file, and a file is never replaced without --overwrite, even one
created while satclip was working. A directory (searched recursively: hive-partitioned folders
keep their layout in the output) or a glob of parts is encoded part by part into an output
directory; a rerun skips the parts already written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from satclip import __version__
from satclip.cli.common import (
    EXIT_ERROR,
    EXIT_USAGE,
    Output,
    Parser,
    UsageError,
    add_batch_size_option,
    add_device_option,
    add_dtype_option,
    add_lonlat_options,
    add_model_option,
    add_overwrite_option,
    add_quiet_option,
    check_outputs,
    check_url_destination,
    file_key,
    positive_float,
    positive_int,
    progress,
    run_command,
)
from satclip.errors import CoordinateError, ShapeError
from satclip.io.publish import publish
from satclip.io.tables import (
    DEFAULT_BATCH_ROWS,
    NpyEmbeddingWriter,
    ParquetEmbeddingWriter,
    Part,
    PointReader,
    Source,
    count_csv_rows,
    find_parts,
    is_url,
    output_metadata,
    publish_to_url,
    shift_row,
    url_filesystem,
)
from satclip.points.columns import LAT_NAMES, LON_NAMES

_TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
_OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_parser(), argv)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="satclip", description="SatCLIP location embeddings.")
    parser.add_argument("--version", action="version", version=f"satclip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = commands.add_parser(
        "encode",
        help="embed the points of a CSV, Parquet or .npy file",
        description="Embed [lon, lat] points (degrees) with a SatCLIP location encoder. Inputs and "
        "outputs may be local paths or fsspec URLs (s3://, gs://, https:// to read, memory://).",
    )
    enc.add_argument(
        "input",
        help="CSV or Parquet with lon/lat columns, GeoParquet (lon/lat columns or its geometry), a .npy "
        "(N, 2) array, or a directory (searched recursively, e.g. hive-partitioned) or glob (quoted) "
        "of .parquet/.csv parts",
    )
    enc.add_argument(
        "-o",
        "--output",
        required=True,
        help="output .parquet or .npy file; for partitioned input a directory (one .parquet per part, "
        "finished parts skipped)",
    )
    add_model_option(enc)
    add_overwrite_option(enc, "replace OUTPUT (or existing parts) if it exists")
    add_lonlat_options(
        enc,
        lon_help=f"longitude column (default: {', '.join(LON_NAMES)}, any case)",
        lat_help=f"latitude column (default: {', '.join(LAT_NAMES)}, any case)",
    )
    enc.add_argument(
        "--crs",
        help="CRS of the coordinate columns when they are not lon/lat degrees (e.g. EPSG:32632 for UTM "
        "x/y in metres; anything pyproj reads); they are transformed to lon/lat. Without it, x/y columns "
        "are taken as degrees only when every value fits degrees",
    )
    enc.add_argument(
        "--layout",
        "--format",
        dest="layout",
        choices=("list", "wide"),
        default="list",
        help="Parquet layout: one fixed-size list column 'embedding' (default) or columns emb_0..emb_{d-1}",
    )
    add_batch_size_option(enc, "points per batch (default: sized to memory)")
    add_device_option(enc)
    add_dtype_option(enc)
    add_quiet_option(enc)
    enc.set_defaults(run=_run_encode)

    conv = commands.add_parser(
        "convert",
        help="write a checkpoint's location encoder as .safetensors (loads without pickle)",
    )
    conv.add_argument("model", help="short name, Hub repository or checkpoint path")
    conv.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors file")
    add_overwrite_option(conv, "replace OUTPUT if it exists")
    conv.set_defaults(run=_run_convert)

    models = commands.add_parser("models", help="list the released models")
    models.set_defaults(run=_run_models)

    from satclip.cli.downstream import register as register_downstream_commands  # probe, map
    from satclip.cli.images import register as register_image_commands  # embed-images, locate

    register_image_commands(commands)
    register_downstream_commands(commands)
    return parser


# ----------------------------------------------------------------------------------------
# satclip encode


def _run_encode(args: argparse.Namespace) -> int:
    parts = find_parts(args.input)
    if parts is not None:
        return _run_encode_parts(args, parts)
    source = Source.of(args.input)
    in_format = _TABLE_SUFFIXES.get(source.suffix)
    if in_format is None:
        raise UsageError(
            f"cannot read {args.input}: the input must be .csv, .parquet or .npy (or a directory or glob of parts)"
        )
    if in_format == "npy" and (args.lon_col or args.lat_col or args.crs):
        raise UsageError("--lon-col/--lat-col/--crs apply to CSV and Parquet input, not .npy")
    check_outputs([Output("-o", args.output, tuple(_OUTPUT_SUFFIXES))], overwrite=args.overwrite, inputs=[args.input])
    if not source.is_file():
        raise FileNotFoundError(f"no such input file: {args.input}")
    # The header or footer is read before the model is loaded: a wrong column costs no download.
    reader = PointReader(
        source, in_format, args.lon_col, args.lat_col, args.batch_size or DEFAULT_BATCH_ROWS, crs=args.crs
    )
    model = _load_model(args.model)
    out_format = _OUTPUT_SUFFIXES[Path(args.output.split("://", 1)[-1]).suffix.lower()]
    with progress(reader.num_rows, args.quiet, desc="satclip encode", unit="pt") as bar:
        _encode_file(args, model, reader, args.output, out_format=out_format, bar=bar)
    return 0


def _run_encode_parts(args: argparse.Namespace, parts: list[Part]) -> int:
    """One output part per input part in the output directory; finished parts are skipped."""
    out = args.output.rstrip("/") if is_url(args.output) else args.output
    # An output folder inside the input folder: its parts are outputs, not inputs (on a rerun).
    if file_key(out) == file_key(args.input):
        raise UsageError(f"-o {args.output} is the input directory: its parts would replace an input part")
    inside = file_key(out).rstrip("/") + "/"
    parts = [part for part in parts if not file_key(part.source.name or part.source.path).startswith(inside)]
    if not parts:
        raise FileNotFoundError(f"{args.input} has no parts outside the output directory {args.output}")
    exists, join = _output_directory(out)
    targets: dict[str, Part] = {}
    for part in parts:
        target = join(part.output)
        if target in targets:
            raise UsageError(f"{targets[target].source} and {part.source} would both be written to {target}")
        targets[target] = part
    inputs = {file_key(part.source.name or part.source.path) for part in parts}
    clash = [t for t in targets if file_key(t) in inputs]
    if clash:
        raise UsageError(f"-o {args.output}: the output part {clash[0]} would replace an input part")
    args.resumable = True  # an interrupted run keeps its finished parts
    pending = [(part, target) for target, part in targets.items() if args.overwrite or not exists(target)]
    skipped = len(parts) - len(pending)
    if not pending:
        print(f"all {len(parts)} parts are already in {args.output}; nothing to do (--overwrite redoes them)")
        return 0
    batch_rows = args.batch_size or DEFAULT_BATCH_ROWS
    readers = []
    for part, target in pending:
        fmt = _TABLE_SUFFIXES[part.source.suffix]
        readers.append((PointReader(part.source, fmt, args.lon_col, args.lat_col, batch_rows, crs=args.crs), target))
    model = _load_model(args.model)
    counts = [reader.num_rows for reader, _ in readers]
    total = None if None in counts else sum(c for c in counts if c is not None)
    with progress(total, args.quiet, desc="satclip encode", unit="pt") as bar:
        for reader, target in readers:
            if not is_url(target):
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            _encode_file(args, model, reader, target, "parquet", bar)
    done = f"; {skipped} already done, skipped" if skipped else ""
    print(f"wrote {len(pending)} parts to {args.output}{done}")
    return 0


def _output_directory(out: str) -> tuple[Any, Any]:
    """Checks the output directory of a partitioned input (before any work) and creates it if it
    is local; returns ``exists(target)`` and ``join(relative name)`` for its parts."""
    if Path(out.split("://", 1)[-1]).suffix.lower() in _OUTPUT_SUFFIXES:
        fs, path = url_filesystem(out) if is_url(out) else (None, out)
        if not (Path(path).is_dir() if fs is None else fs.isdir(path)):
            raise UsageError(f"a partitioned input needs an output directory, got the file name {out}")
    if is_url(out):
        fs, path = url_filesystem(out)
        if fs.isfile(path):
            raise UsageError(f"{out} exists and is not a directory")
        check_url_destination("-o", f"{out}/part", overwrite=False)  # the scheme and the bucket
        protocol = out.split("://", 1)[0]

        def exists_url(target: str) -> bool:
            return bool(fs.exists(url_filesystem(target)[1]))

        return exists_url, lambda name: f"{protocol}://{path.rstrip('/')}/{name}"
    import os

    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    if not directory.parent.is_dir():
        raise FileNotFoundError(f"the output directory's parent {directory.parent} does not exist")
    if not os.access(directory if directory.is_dir() else directory.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"the output directory {directory} is not writable")
    directory.mkdir(exist_ok=True)
    return (lambda target: Path(target).exists()), (lambda name: str(directory / name))


def _load_model(name: str) -> Any:
    # Loaded once and passed to every batch's encode call (a path string would be re-checked per call).
    from satclip.io.checkpoint import load

    return load(name)


def _encode_file(
    args: argparse.Namespace, model: Any, reader: PointReader, output: str, out_format: str, bar: Any
) -> None:
    """Streams ``reader`` through the model into ``output``, published atomically at the end."""
    import torch

    from satclip.embed.locations import encode

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    np_dtype = np.float64 if args.dtype == "float64" else np.float32
    dim = model.nnet.last_layer.dim_out
    meta = output_metadata(str(args.model), model.posenc.L, dim, args.dtype, args.layout)

    def write(tmp: Path) -> None:
        if out_format == "npy":
            if reader.num_rows is not None:
                rows = reader.num_rows
            else:
                rows = count_csv_rows(reader.source, reader.lon)
            if rows == 0:
                raise ShapeError(f"{reader.path} has no rows (nothing to encode)")
            writer: Any = NpyEmbeddingWriter(tmp, rows, dim, np_dtype)
        else:
            writer = None
        try:
            for batch in reader.batches():
                try:
                    embeddings = encode(
                        batch.lonlat, model, device=args.device, dtype=dtype, batch_size=args.batch_size, progress=False
                    )
                except CoordinateError as err:
                    raise shift_row(err, batch.first_row, reader.path) from None
                assert isinstance(embeddings, np.ndarray)
                if writer is None:
                    writer = ParquetEmbeddingWriter(tmp, reader.schema, dim, np_dtype, args.layout, meta)
                writer.write(batch.table, batch.lonlat, embeddings)
                bar.update(len(embeddings))
        finally:
            if writer is not None:
                writer.close()

    if is_url(output):
        publish_to_url(output, write, overwrite=args.overwrite)
    else:
        publish(output, write, overwrite=args.overwrite)


# ----------------------------------------------------------------------------------------
# satclip convert / models


def _run_convert(args: argparse.Namespace) -> int:
    source = Path(args.model)
    check_outputs(
        [Output("-o", args.output, (".safetensors",))],
        overwrite=args.overwrite,
        inputs=[source] if source.is_file() else [],
    )
    from satclip.io.checkpoint import load, save

    save(load(args.model), args.output, overwrite=args.overwrite)
    print(f"wrote {args.output}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    from satclip.models.registry import MODELS

    rows = [("name", "Hugging Face repository", "file", "revision")]
    rows += [(name, m.repo_id, m.filename, m.revision) for name, m in MODELS.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


# The names other modules and older code import from here.
__all__ = [
    "EXIT_ERROR",
    "EXIT_USAGE",
    "Output",
    "UsageError",
    "check_outputs",
    "main",
    "positive_float",
    "positive_int",
]


if __name__ == "__main__":
    sys.exit(main())
