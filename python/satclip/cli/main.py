"""The ``satclip`` command line.

    satclip encode points.csv -o embeddings.parquet --model resnet50-l40
    satclip encode points.npy -o embeddings.npy
    satclip convert satclip-resnet50-l40.ckpt -o resnet50-l40.safetensors
    satclip models
    satclip embed-images patches/*.tif -o embeddings.parquet   (cli/images.py)
    satclip locate patch.tif --model resnet50-l40 --map map.png

User errors (bad input, missing files, an output that exists) print one line to stderr and
exit non-zero without a traceback: 2 for a usage error (a bad option or value, an unsupported
output format, an output that exists, two options naming one file), 1 otherwise, 130 for Ctrl-C
and 143 for SIGTERM. Every command checks its outputs and options (:func:`check_outputs`, the
argparse types below) before it loads a model or reads input, so a mistake costs no work.
Outputs are streamed batch by batch (memory bounded by the batch, see io/tables.py) into a
temporary file next to the target and published at the end (io/publish.py): an interrupted run
(Ctrl-C, SIGTERM, an error) never leaves a half-written file, and a file is never replaced
without --overwrite, even one created while satclip was working. A directory or glob of parts
is encoded part by part into an output directory; a rerun skips the parts already written.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satclip import __version__
from satclip.errors import CoordinateError, SatclipError, ShapeError
from satclip.io.publish import (
    OutputExistsError,
    Terminated,
    check_destination,
    publish,
    raise_if_signalled,
    signals_as_exceptions,
)
from satclip.io.tables import (
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


class _Parser(argparse.ArgumentParser):
    """argparse's errors as :class:`UsageError`: one line, like every other satclip error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args: argparse.Namespace | None = None
    try:
        with signals_as_exceptions():  # SIGTERM cleans up temporary files as Ctrl-C does
            args = parser.parse_args(argv)
            code = int(args.run(args) or 0)
            raise_if_signalled()  # a signal whose exception a finaliser swallowed
            return code
    except (UsageError, OutputExistsError) as err:
        _print_error(str(err))
        return EXIT_USAGE
    except (SatclipError, ValueError, TypeError, OSError) as err:
        _print_error(str(err) or type(err).__name__)
        return EXIT_ERROR
    except MemoryError:
        _print_error("out of memory; use a smaller input, --batch-size, --resolution or --region")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _print_error(f"interrupted; {_unfinished(args)}")
        return 130
    except Terminated:
        _print_error(f"terminated; {_unfinished(args)}")
        return 143


def _unfinished(args: argparse.Namespace | None) -> str:
    if getattr(args, "resumable", False):
        return "the unfinished part was removed (finished parts are kept; rerun to resume)"
    return "no output was written (an unfinished file is removed)"


def _print_error(message: str) -> None:
    print(f"satclip: error: {' '.join(message.split())}", file=sys.stderr)


# ----------------------------------------------------------------------------------------
# Checks shared by every command, run before any model is loaded or input read


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (not nan, inf or 0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


@dataclass(frozen=True)
class Output:
    """One output a command will write: the option that names it, the path, the suffixes it may
    have (lower case) and whether it is written as a directory (a Zarr store)."""

    option: str
    path: Path | None
    suffixes: tuple[str, ...]
    directory: bool = False


def check_outputs(outputs: Iterable[Output], *, overwrite: bool, inputs: Iterable[Path | str] = ()) -> None:
    """Fails (before any work) if an output cannot be written: two options naming the same file,
    an unsupported extension, an output that is also an input, an output that exists
    (without ``overwrite``) or is a directory, or a missing or read-only output directory.
    :func:`satclip.io.publish.publish` checks the name once more when the file is finished."""
    wanted = [o for o in outputs if o.path is not None]
    seen: dict[str, Output] = {}
    for out in wanted:
        assert out.path is not None
        key = _file_key(out.path)
        if key in seen:
            raise UsageError(f"{seen[key].option} and {out.option} both name {out.path}; give each output its own file")
        seen[key] = out
    for out in wanted:
        assert out.path is not None
        suffix = out.path.suffix.lower()
        if suffix not in out.suffixes:
            got = f"extension {out.path.suffix!r}" if out.path.suffix else "no extension"
            raise UsageError(f"{out.option} {out.path}: {got}; the output must be {_one_of(out.suffixes)}")
    sources = {_file_key(Path(p)): Path(p) for p in inputs}
    for out in wanted:
        assert out.path is not None
        if _file_key(out.path) in sources:
            raise UsageError(f"{out.option} {out.path} is also an input; write the output to another file")
        if out.directory and out.path.is_dir():
            if not overwrite:
                raise UsageError(f"{out.option}: {out.path} already exists; pass --overwrite to replace it")
            continue
        try:
            check_destination(out.path, overwrite)
        except (OutputExistsError, IsADirectoryError) as err:
            raise UsageError(f"{out.option}: {err}") from None
        except OSError as err:
            raise type(err)(f"{out.option} {out.path}: {err}") from None


def _file_key(path: Path) -> str:
    # The same file under two spellings (./x, a symlink, ../dir/x) is one key.
    return os.path.normcase(os.path.realpath(path))


def _one_of(suffixes: Sequence[str]) -> str:
    return ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="satclip", description="SatCLIP location embeddings.")
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
    enc.add_argument("--batch-size", type=positive_int, help="points per batch (default: sized to memory)")
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

    from satclip.cli.downstream import register as register_downstream_commands  # probe, map
    from satclip.cli.images import register as register_image_commands  # embed-images, locate

    register_image_commands(commands)
    register_downstream_commands(commands)
    return parser


# ----------------------------------------------------------------------------------------
# satclip encode


def _run_encode(args: argparse.Namespace) -> int:
    parts = _input_parts(args.input)
    if parts is not None:
        return _run_encode_parts(args, parts)
    in_format = _TABLE_SUFFIXES.get(args.input.suffix.lower())
    if in_format is None:
        raise UsageError(
            f"cannot read {args.input}: the input must be .csv, .parquet or .npy (or a directory or glob of parts)"
        )
    check_outputs([Output("-o", args.output, tuple(_OUTPUT_SUFFIXES))], overwrite=args.overwrite, inputs=[args.input])
    if not args.input.is_file():
        raise FileNotFoundError(f"no such input file: {args.input}")
    if in_format == "npy" and (args.lon_col or args.lat_col):
        raise UsageError("--lon-col/--lat-col apply to CSV and Parquet input, not .npy")
    model = _load_model(args.model)
    reader = PointReader(args.input, in_format, args.lon_col, args.lat_col, args.batch_size or DEFAULT_BATCH_ROWS)
    with _progress(reader.num_rows, args.quiet) as bar:
        _encode_file(args, model, reader, args.output, out_format=_OUTPUT_SUFFIXES[args.output.suffix.lower()], bar=bar)
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
    if not os.access(out_dir if out_dir.is_dir() else out_dir.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"the output directory {out_dir} is not writable")
    targets: dict[Path, Path] = {}
    for part in parts:
        target = out_dir / f"{part.stem}.parquet"
        if target in targets:
            raise UsageError(f"{targets[target]} and {part} would both be written to {target}")
        targets[target] = part
    out_dir.mkdir(exist_ok=True)
    args.resumable = True  # an interrupted run keeps its finished parts
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
    from satclip.io.checkpoint import load

    return load(name)


def _encode_file(
    args: argparse.Namespace, model: Any, reader: PointReader, output: Path, out_format: str, bar: Any
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


def _import_optional(module: str, purpose: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise SatclipError(f"{purpose} needs {module}: pip install {module}") from None


# ----------------------------------------------------------------------------------------
# satclip convert / models


def _run_convert(args: argparse.Namespace) -> int:
    from satclip.io.checkpoint import load, save

    source = Path(args.model)
    check_outputs(
        [Output("-o", args.output, (".safetensors",))],
        overwrite=args.overwrite,
        inputs=[source] if source.is_file() else [],
    )
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


if __name__ == "__main__":
    sys.exit(main())
