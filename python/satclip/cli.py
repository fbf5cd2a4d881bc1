"""The ``satclip`` command line.

    satclip encode points.csv -o embeddings.parquet --model resnet50-l40
    satclip encode points.npy -o embeddings.npy
    satclip convert satclip-resnet50-l40.ckpt -o resnet50-l40.safetensors
    satclip models
    satclip embed-images patches/*.tif -o embeddings.parquet   (cli_images.py)
    satclip locate patch.tif --model resnet50-l40 --map map.png

User errors (bad input, missing files, an output that exists) print one line to stderr and
exit non-zero (2 for a refused overwrite or bad usage, 1 otherwise) without a traceback.
Outputs are written to a temporary file next to the target and renamed at the end, so an
interrupted run never leaves a half-written file, and never replaces one without --overwrite.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SatclipError, ShapeError

EXIT_ERROR = 1
EXIT_USAGE = 2

_TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
_OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}


class UsageError(Exception):
    """A command-line mistake: reported with exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UsageError as err:
        _print_error(str(err))
        return EXIT_USAGE
    except (SatclipError, ValueError, TypeError, OSError) as err:
        _print_error(str(err) or type(err).__name__)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _print_error("interrupted; nothing was written")
        return 130


def _print_error(message: str) -> None:
    print(f"satclip: error: {' '.join(message.split())}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="satclip", description="SatCLIP location embeddings.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = commands.add_parser(
        "encode",
        help="embed the points of a CSV, Parquet or .npy file",
        description="Embed [lon, lat] points (degrees) with a SatCLIP location encoder.",
    )
    enc.add_argument("input", type=Path, help="CSV or Parquet with lon/lat columns, or a .npy (N, 2) array")
    enc.add_argument("-o", "--output", type=Path, required=True, help="output .parquet or .npy file")
    enc.add_argument("--model", default="resnet50-l40", help="short name, Hub repository or checkpoint path (default: resnet50-l40)")
    enc.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    enc.add_argument("--lon-col", help="longitude column (default: lon, lng, long, longitude or x, any case)")
    enc.add_argument("--lat-col", help="latitude column (default: lat, latitude or y, any case)")
    enc.add_argument(
        "--format",
        choices=("list", "wide"),
        default="list",
        help="Parquet layout: one fixed-size list column 'embedding' (default) or columns emb_0..emb_{d-1}",
    )
    enc.add_argument("--batch-size", type=int, help="points per batch (default: sized to memory)")
    enc.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    enc.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="embedding precision (default: float32)")
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

    from .cli_images import register as register_image_commands  # embed-images, locate

    register_image_commands(commands)
    __import__("satclip.cli_downstream", fromlist=["register"]).register(commands)  # probe, map
    return parser


# ----------------------------------------------------------------------------------------
# satclip encode


def _run_encode(args: argparse.Namespace) -> int:
    in_format = _TABLE_SUFFIXES.get(args.input.suffix.lower())
    out_format = _OUTPUT_SUFFIXES.get(args.output.suffix.lower())
    if in_format is None:
        raise UsageError(f"cannot read {args.input}: the input must be .csv, .parquet or .npy")
    if out_format is None:
        raise UsageError(f"cannot write {args.output}: the output must be .parquet or .npy")
    _refuse_existing(args.output, args.overwrite)
    if not args.input.is_file():
        raise FileNotFoundError(f"no such input file: {args.input}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    if in_format == "npy" and (args.lon_col or args.lat_col):
        raise UsageError("--lon-col/--lat-col apply to CSV and Parquet input, not .npy")

    table, lonlat = _read_points(args.input, in_format, args.lon_col, args.lat_col)

    import torch

    from .encoding import encode

    embeddings = encode(
        lonlat,
        args.model,
        device=args.device,
        dtype=torch.float64 if args.dtype == "float64" else torch.float32,
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
    )
    assert isinstance(embeddings, np.ndarray)
    if out_format == "npy":
        _write_atomically(args.output, lambda tmp: np.save(tmp, embeddings, allow_pickle=False))
    else:
        if table is None:  # .npy input: the points become the lon/lat columns
            table = {"lon": lonlat[:, 0], "lat": lonlat[:, 1]}
        _write_parquet(args.output, table, embeddings, args.format)
    return 0


def _refuse_existing(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise UsageError(f"{output} already exists; pass --overwrite to replace it")
    if output.is_dir():
        raise UsageError(f"{output} is a directory")


def _read_points(path: Path, fmt: str, lon_col: str | None, lat_col: str | None) -> tuple[Any, np.ndarray]:
    """(the table to keep in the output or None, float64 (N, 2) points)."""
    if fmt == "npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:  # pickled object arrays, truncated files
            raise ShapeError(f"{path} is not a plain numeric .npy array: {err}") from None
        from .harmonics import as_lonlat_array

        return None, as_lonlat_array(array).astype(np.float64, copy=False)

    pandas = _import_optional("pandas", "reading CSV or Parquet")
    if fmt == "parquet":
        _import_optional("pyarrow", "reading Parquet")
        frame = pandas.read_parquet(path)
    else:
        try:
            frame = pandas.read_csv(path)
        except pandas.errors.EmptyDataError:
            raise ShapeError(f"{path} is empty (no header row)") from None
    from .encoding import _frame_columns

    return frame, _frame_columns(frame, lon_col, lat_col)


def _write_parquet(path: Path, table: Any, embeddings: np.ndarray, layout: str) -> None:
    pa = _import_optional("pyarrow", "writing Parquet")
    import pyarrow.parquet as pq

    if isinstance(table, dict):
        arrow = pa.table(table)
    else:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
    n, dim = embeddings.shape
    names = ["embedding"] if layout == "list" else [f"emb_{i}" for i in range(dim)]
    clash = sorted(set(names) & set(arrow.column_names))
    if clash:
        raise ShapeError(f"the input already has a column {clash[0]!r}; rename it or use the other --format")
    if layout == "list":
        values = pa.array(np.ascontiguousarray(embeddings).reshape(-1))
        arrow = arrow.append_column("embedding", pa.FixedSizeListArray.from_arrays(values, dim))
    else:
        for i, name in enumerate(names):
            arrow = arrow.append_column(name, pa.array(embeddings[:, i]))
    _write_atomically(path, lambda tmp: pq.write_table(arrow, tmp))


def _write_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    _refuse_existing(args.output, args.overwrite)
    save(load(args.model), args.output, overwrite=args.overwrite)
    print(f"wrote {args.output}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    from .checkpoint import MODELS

    rows = [("name", "Hugging Face repository", "file", "revision")]
    rows += [(name, m.repo_id, m.filename, m.revision) for name, m in MODELS.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
