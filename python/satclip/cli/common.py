"""What every ``satclip`` command shares: the options that mean the same thing everywhere, the
checks of outputs and options that run before any model is loaded or input read, and the error
convention.

Errors: a user mistake prints one line, ``satclip: error: ...``, to stderr and exits without a
traceback: :data:`EXIT_USAGE` (2) for a usage error (a bad option or value, an unsupported output
format, an output that exists, two options naming one file), :data:`EXIT_ERROR` (1) for any
other error (a missing input, bad coordinates, an unreadable checkpoint), 130 for Ctrl-C and 143
for SIGTERM (:func:`run_command`).

Outputs: each command lists the files it will write as :class:`Output` and calls
:func:`check_outputs` first thing; local paths and object-store URLs (``s3://``, ``gs://``,
``memory://``, any fsspec protocol) are checked alike.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satclip.errors import SatclipError
from satclip.io.publish import (
    OutputExistsError,
    Terminated,
    check_destination,
    raise_if_signalled,
    signals_as_exceptions,
)
from satclip.io.tables import is_url, url_filesystem

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

DEFAULT_MODEL = "resnet50-l40"


class UsageError(Exception):
    """A command-line mistake: reported with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse's errors as :class:`UsageError`: one line, like every other satclip error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ----------------------------------------------------------------------------------------
# The error convention


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parses ``argv``, runs ``args.run(args)`` and turns every user error into one line on
    stderr and an exit status (see the module doc)."""
    args: argparse.Namespace | None = None
    try:
        with signals_as_exceptions():  # SIGTERM cleans up temporary files as Ctrl-C does
            args = parser.parse_args(argv)
            code = int(args.run(args) or 0)
            raise_if_signalled()  # a signal whose exception a finaliser swallowed
            return code
    except (UsageError, OutputExistsError) as err:
        print_error(str(err))
        return EXIT_USAGE
    except (SatclipError, ValueError, TypeError, OSError) as err:
        print_error(str(err) or type(err).__name__)
        return EXIT_ERROR
    except MemoryError:
        print_error("out of memory; use a smaller input, --batch-size, --resolution or --region")
        return EXIT_ERROR
    except KeyboardInterrupt:
        print_error(f"interrupted; {_unfinished(args)}")
        return EXIT_INTERRUPTED
    except Terminated:
        print_error(f"terminated; {_unfinished(args)}")
        return EXIT_TERMINATED


def _unfinished(args: argparse.Namespace | None) -> str:
    if getattr(args, "resumable", False):
        return "the unfinished part was removed (finished parts are kept; rerun to resume)"
    return "no output was written (an unfinished file is removed)"


def print_error(message: str) -> None:
    print(f"satclip: error: {' '.join(message.split())}", file=sys.stderr)


# ----------------------------------------------------------------------------------------
# Option types and the options shared by several commands


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


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"short name, Hub repository or checkpoint path (default: {DEFAULT_MODEL})",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def add_batch_size_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--batch-size", type=positive_int, help=help)


def add_dtype_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="embedding precision (default: float32)"
    )


def add_lonlat_options(parser: argparse.ArgumentParser, *, lon_help: str, lat_help: str) -> None:
    parser.add_argument("--lon-col", help=lon_help)
    parser.add_argument("--lat-col", help=lat_help)


def add_overwrite_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def show_progress(quiet: bool) -> bool:
    """A progress bar only for a terminal, and never with --quiet."""
    return not quiet and sys.stderr is not None and sys.stderr.isatty()


def progress(total: int | None, quiet: bool, *, desc: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, disable=not show_progress(quiet), file=sys.stderr)


# ----------------------------------------------------------------------------------------
# Output checks, run before any model is loaded or input read


@dataclass(frozen=True)
class Output:
    """One output a command will write: the option that names it, the path (a local path or an
    object-store URL), the suffixes it may have (lower case) and whether it is written as a
    directory (a Zarr store)."""

    option: str
    path: Path | str | None
    suffixes: tuple[str, ...]
    directory: bool = False


def check_outputs(outputs: Iterable[Output], *, overwrite: bool, inputs: Iterable[Path | str] = ()) -> None:
    """Fails (before any work) if an output cannot be written: two options naming the same file,
    an unsupported extension, an output that is also an input, an output that exists
    (without ``overwrite``) or is a directory, or a missing or read-only output directory (a
    missing bucket for a URL). The publishers check the name once more when the file is finished."""
    wanted = [
        o if o.path is None or is_url(str(o.path)) else Output(o.option, Path(o.path), o.suffixes, o.directory)
        for o in outputs
        if o.path is not None
    ]
    seen: dict[str, Output] = {}
    for out in wanted:
        assert out.path is not None
        key = file_key(out.path)
        if key in seen:
            raise UsageError(f"{seen[key].option} and {out.option} both name {out.path}; give each output its own file")
        seen[key] = out
    for out in wanted:
        assert out.path is not None
        suffix = _suffix(out.path)
        if suffix.lower() not in out.suffixes:
            got = f"extension {suffix!r}" if suffix else "no extension"
            raise UsageError(f"{out.option} {out.path}: {got}; the output must be {_one_of(out.suffixes)}")
    sources = {file_key(p) for p in inputs}
    for out in wanted:
        assert out.path is not None
        if file_key(out.path) in sources:
            raise UsageError(f"{out.option} {out.path} is also an input; write the output to another file")
        if is_url(str(out.path)):
            check_url_destination(out.option, str(out.path), overwrite)
            continue
        path = Path(out.path)
        if out.directory and path.is_dir():
            if not overwrite:
                raise UsageError(f"{out.option}: {path} already exists; pass --overwrite to replace it")
            continue
        try:
            check_destination(path, overwrite)
        except (OutputExistsError, IsADirectoryError) as err:
            raise UsageError(f"{out.option}: {err}") from None
        except OSError as err:
            raise type(err)(f"{out.option} {path}: {err}") from None


def check_url_destination(option: str, url: str, overwrite: bool) -> None:
    """The object-store counterpart of :func:`satclip.io.publish.check_destination`: the key must
    not exist (without ``overwrite``) nor be a "directory", and its bucket must exist."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        raise UsageError(f"{option} {url}: {scheme}:// URLs can be read, not written; write to s3://, gs:// or a path")
    fs, path = url_filesystem(url)
    if fs.isdir(path):
        raise UsageError(f"{option}: {url} is a directory")
    if fs.exists(path) and not overwrite:
        raise UsageError(f"{option}: {url} already exists; pass --overwrite to replace it")
    bucket = path.strip("/").split("/", 1)[0]
    if "/" in path.strip("/") and not fs.exists(bucket):
        raise FileNotFoundError(f"{option} {url}: the bucket {bucket} does not exist")


def file_key(path: Path | str) -> str:
    """One key per file: the same file under two spellings (./x, a symlink, ../dir/x) is one key;
    a URL is compared as written, without a trailing slash."""
    text = str(path)
    if is_url(text):
        return text.rstrip("/")
    return os.path.normcase(os.path.realpath(text))


def _suffix(path: Path | str) -> str:
    text = str(path).rstrip("/")
    return Path(text.split("://", 1)[-1]).suffix


def _one_of(suffixes: Sequence[str]) -> str:
    return ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]


def publish_output(path: Path, write: Callable[[Path], Any], overwrite: bool) -> None:
    """Writes a local output through the atomic, no-clobber publisher (``write(tmp)`` fills it)."""
    from satclip.io.publish import publish

    publish(path, write, overwrite=overwrite)


__all__ = [
    "DEFAULT_MODEL",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "Output",
    "Parser",
    "UsageError",
    "add_batch_size_option",
    "add_device_option",
    "add_dtype_option",
    "add_lonlat_options",
    "add_model_option",
    "add_overwrite_option",
    "add_quiet_option",
    "check_outputs",
    "check_url_destination",
    "file_key",
    "positive_float",
    "positive_int",
    "print_error",
    "progress",
    "publish_output",
    "run_command",
    "show_progress",
]
