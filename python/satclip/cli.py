"""The ``satclip`` command line.

    satclip encode points.csv -o embeddings.parquet --model resnet50-l40
    satclip encode points.npy -o embeddings.npy
    satclip convert satclip-resnet50-l40.ckpt -o resnet50-l40.safetensors
    satclip models
    satclip embed-images patches/*.tif -o embeddings.parquet   (cli_images.py)
    satclip locate patch.tif --model resnet50-l40 --map map.png

User errors (bad input, missing files, an output that exists) print one line to stderr and
exit non-zero (2 for a refused overwrite or bad usage, 1 otherwise) without a traceback.
Outputs are streamed batch by batch (memory bounded by the batch, see streaming.py) into a
temporary file next to the target and published at the end (publish.py): an interrupted run
(Ctrl-C, SIGTERM, an error) never leaves a half-written file, and a file is never replaced
without --overwrite, even one created while satclip was working. A directory or glob of parts
is encoded part by part into an output directory; a rerun skips the parts already written.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import CoordinateError, SatclipError, ShapeError
from .publish import OutputExistsError, Terminated, check_destination, publish, signals_as_exceptions
from .streaming import (
    DEFAULT_BATCH_ROWS,
    NpyEmbeddingWriter,
    ParquetEmbeddingWriter,
    PointReader,
    count_csv_rows,
    output_metadata,
    shift_row,
)

EXIT_ERROR = 1
EXIT_USAGE = 2

_TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
_OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
_PART_SUFFIXES = {".csv", ".parquet", ".pq"}


class UsageError(Exception):
    """A command-line mistake: reported with exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with signals_as_exceptions():  # SIGTERM cleans up temporary files as Ctrl-C does
            return int(args.run(args) or 0)
    except (UsageError, OutputExistsError) as err:
        _print_error(str(err))
        return EXIT_USAGE
    except (SatclipError, ValueError, TypeError, OSError) as err:
        _print_error(str(err) or type(err).__name__)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _print_error("interrupted; the unfinished output was removed (finished parts are kept; rerun to resume)")
        return 130
    except Terminated:
        _print_error("terminated; the unfinished output was removed (finished parts are kept; rerun to resume)")
        return 143


def _print_error(message: str) -> None:
    print(f"satclip: error: {' '.join(message.split())}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="satclip", description="SatCLIP location embeddings.")
    parser.add_argument("--version", action="version", version=f"satclip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = commands.add_parser(
        "encode",
        help="embed the points of a CSV, Parquet or .npy file",
        description="Embed [lon, lat] points (degrees) with a SatCLIP location encoder.",
    )
    enc.add_argument(
        "input",
        type=Path,
        help="CSV or Parquet/GeoParquet with lon/lat columns, a .npy (N, 2) array, "
        "or a directory or glob (quoted) of .parquet/.csv parts",
    )
    enc.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output .parquet or .npy file; for partitioned input a directory (one .parquet per part, finished parts skipped)",
    )
    enc.add_argument(
        "--model", default="resnet50-l40", help="short name, Hub repository or checkpoint path (default: resnet50-l40)"
    )
    enc.add_argument("--overwrite", action="store_true", help="replace OUTPUT (or existing parts) if it exists")
    enc.add_argument("--lon-col", help="longitude column (default: lon, lng, long, longitude or x, any case)")
    enc.add_argument("--lat-col", help="latitude column (default: lat, latitude or y, any case)")
    enc.add_argument(
        "--layout",
        "--format",
        dest="layout",
        choices=("list", "wide"),
        default="list",
        help="Parquet layout: one fixed-size list column 'embedding' (default) or columns emb_0..emb_{d-1}",
    )
    enc.add_argument("--batch-size", type=int, help="points per batch (default: sized to memory)")
    enc.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    enc.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="embedding precision (default: float32)"
    )
    enc.add_argument("--quiet", action="store_true", help="no progress bar")
    enc.set_defaults(run=_run_encode)

    conv = commands.add_parser(
        "convert",
        help="write a checkpoint's location encoder as .safetensors (loads without pickle)",
    )
    conv.add_argument("model", help="short name, Hub repository or checkpoint path")
    conv.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors file")
    conv.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    conv.set_defaults(run=_run_convert)

    models = commands.add_parser("models", help="list the released models")
    models.set_defaults(run=_run_models)

    from .cli_downstream import register as register_downstream_commands  # probe, map
    from .cli_images import register as register_image_commands  # embed-images, locate

    register_image_commands(commands)
    register_downstream_commands(commands)
    return parser


# ----------------------------------------------------------------------------------------
# satclip encode


def _run_encode(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    parts = _input_parts(args.input)
    if parts is not None:
        return _run_encode_parts(args, parts)
    in_format = _TABLE_SUFFIXES.get(args.input.suffix.lower())
    out_format = _OUTPUT_SUFFIXES.get(args.output.suffix.lower())
    if in_format is None:
        raise UsageError(
            f"cannot read {args.input}: the input must be .csv, .parquet or .npy (or a directory or glob of parts)"
        )
    if out_format is None:
        raise UsageError(f"cannot write {args.output}: the output must be .parquet or .npy")
    _check_destination(args.output, args.overwrite)
    if not args.input.is_file():
        raise FileNotFoundError(f"no such input file: {args.input}")
    if in_format == "npy" and (args.lon_col or args.lat_col):
        raise UsageError("--lon-col/--lat-col apply to CSV and Parquet input, not .npy")
    model = _load_model(args.model)
    reader = PointReader(args.input, in_format, args.lon_col, args.lat_col, args.batch_size or DEFAULT_BATCH_ROWS)
    with _progress(reader.num_rows, args.quiet) as bar:
        _encode_file(args, model, reader, args.output, out_format, bar)
    return 0


def _input_parts(source: Path) -> list[Path] | None:
    """The parts of a partitioned input (a directory or a glob), or None for a single file."""
    text = str(source)
    if source.is_dir():
        parts = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in _PART_SUFFIXES)
        where = f"the directory {source}"
    elif not source.exists() and glob.has_magic(text):
        parts = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        where = f"the pattern {text!r}"
    else:
        return None
    if not parts:
        raise FileNotFoundError(f"{where} matches no .parquet, .pq or .csv files")
    odd = [p for p in parts if p.suffix.lower() not in _PART_SUFFIXES]
    if odd:
        raise UsageError(f"partitioned input must be .parquet or .csv files, got {odd[0]}")
    return parts


def _run_encode_parts(args: argparse.Namespace, parts: list[Path]) -> int:
    """One output part per input part in the output directory; finished parts are skipped."""
    out_dir: Path = args.output
    if out_dir.suffix.lower() in _OUTPUT_SUFFIXES and not out_dir.is_dir():
        raise UsageError(f"a partitioned input needs an output directory, got the file name {out_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a directory")
    if not out_dir.parent.is_dir():
        raise FileNotFoundError(f"the output directory's parent {out_dir.parent} does not exist")
    targets: dict[Path, Path] = {}
    for part in parts:
        target = out_dir / f"{part.stem}.parquet"
        if target in targets:
            raise UsageError(f"{targets[target]} and {part} would both be written to {target}")
        targets[target] = part
    out_dir.mkdir(exist_ok=True)
    pending = [(part, target) for target, part in targets.items() if args.overwrite or not target.exists()]
    skipped = len(parts) - len(pending)
    if not pending:
        print(f"all {len(parts)} parts are already in {out_dir}; nothing to do (--overwrite redoes them)")
        return 0
    model = _load_model(args.model)
    batch_rows = args.batch_size or DEFAULT_BATCH_ROWS
    readers = []
    for part, target in pending:
        fmt = _TABLE_SUFFIXES[part.suffix.lower()]
        readers.append((PointReader(part, fmt, args.lon_col, args.lat_col, batch_rows), target))
    counts = [reader.num_rows for reader, _ in readers]
    total = None if None in counts else sum(c for c in counts if c is not None)
    with _progress(total, args.quiet) as bar:
        for reader, target in readers:
            _encode_file(args, model, reader, target, "parquet", bar)
    done = f"; {skipped} already done, skipped" if skipped else ""
    print(f"wrote {len(pending)} parts to {out_dir}{done}")
    return 0


def _load_model(name: str) -> Any:
    # Loaded once and passed to every batch's encode call (a path string would be re-checked per call).
    from .checkpoint import load

    return load(name)


def _encode_file(
    args: argparse.Namespace, model: Any, reader: PointReader, output: Path, out_format: str, bar: Any
) -> None:
    """Streams ``reader`` through the model into ``output``, published atomically at the end."""
    import torch

    from .encoding import encode

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    np_dtype = np.float64 if args.dtype == "float64" else np.float32
    dim = model.nnet.last_layer.dim_out
    meta = output_metadata(str(args.model), model.posenc.L, dim, args.dtype, args.layout)

    def write(tmp: Path) -> None:
        if out_format == "npy":
            rows = reader.num_rows if reader.num_rows is not None else count_csv_rows(reader.path, reader.lon)
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

    publish(output, write, overwrite=args.overwrite)


def _progress(total: int | None, quiet: bool) -> Any:
    from tqdm.auto import tqdm

    show = not quiet and sys.stderr is not None and sys.stderr.isatty()
    return tqdm(total=total, unit="pt", unit_scale=True, desc="satclip encode", disable=not show, file=sys.stderr)


def _check_destination(output: Path, overwrite: bool) -> None:
    try:
        check_destination(output, overwrite)
    except (OutputExistsError, IsADirectoryError) as err:
        raise UsageError(str(err)) from None


def _import_optional(module: str, purpose: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise SatclipError(f"{purpose} needs {module}: pip install {module}") from None


# ----------------------------------------------------------------------------------------
# satclip convert / models


def _run_convert(args: argparse.Namespace) -> int:
    from .checkpoint import load, save

    if args.output.suffix.lower() != ".safetensors":
        raise UsageError(f"the output must be a .safetensors file, got {args.output}")
    _check_destination(args.output, args.overwrite)
    save(load(args.model), args.output, overwrite=args.overwrite)
    print(f"wrote {args.output}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    from .registry import MODELS

    rows = [("name", "Hugging Face repository", "file", "revision")]
    rows += [(name, m.repo_id, m.filename, m.revision) for name, m in MODELS.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
