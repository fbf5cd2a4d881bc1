"""Publishing output files atomically, without ever replacing a file by accident.

Every file satclip writes (``satclip.save``, every ``satclip`` command's output) goes through
:func:`publish`: the content is written to a hidden temporary file next to the target and only
then given the target's name. So

* an interrupted write (an exception, Ctrl-C, SIGTERM under :func:`signals_as_exceptions`)
  never leaves a half-written file under the final name, and removes its temporary file;
* without ``overwrite`` the name is taken with ``os.link``, which fails if the name exists *at
  that moment* - a file that appeared while satclip was working is never clobbered (checking
  at the start and renaming at the end would replace it);
* with ``overwrite`` the finished file replaces the old one in one ``os.replace``;
* a directory output (a Zarr store) is published with ``os.rename``, which fails on an existing
  non-empty directory or file (only an *empty* directory created meanwhile would be taken over).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputExistsError


class Terminated(BaseException):
    """SIGTERM arrived: raised like KeyboardInterrupt so that cleanup code runs."""


def check_destination(path: Path, overwrite: bool, *, hint: str = "pass --overwrite to replace it") -> None:
    """Fails early (before any work) if ``path`` cannot be published: taken, a directory, or its
    directory is missing or not writable. :func:`publish` checks the name again at the end."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; {hint}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"the output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"the output directory {parent} is not writable")


def temporary_name(path: Path) -> Path:
    """A hidden, unique sibling of ``path`` (same directory, so publishing is a link/rename)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def publish(path: Path | str, write: Callable[[Path], Any], *, overwrite: bool = False) -> Path:
    """Runs ``write(tmp)`` and gives the finished ``tmp`` the name ``path`` (see the module doc).

    Raises :class:`OutputExistsError` if ``path`` exists when the file is finished and
    ``overwrite`` is false; the temporary file is removed on every failure.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        if tmp.is_dir():
            _rename_directory(tmp, path, overwrite)
        elif overwrite:
            os.replace(tmp, path)
        else:
            _link_no_replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return path


def _rename_directory(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite and path.is_dir():
        shutil.rmtree(path)
    elif overwrite:
        path.unlink(missing_ok=True)
    try:
        os.rename(tmp, path)
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise
        raise OutputExistsError(
            f"{path} was created by something else while satclip was writing it; it was not replaced"
        ) from None


def _link_no_replace(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise OutputExistsError(
            f"{path} was created by something else while satclip was writing it; it was not replaced"
        ) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    # A file system without hard links: reserve the name exclusively, then move the file over
    # the (empty, ours) placeholder.
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        raise OutputExistsError(
            f"{path} was created by something else while satclip was writing it; it was not replaced"
        ) from None
    os.close(fd)
    os.replace(tmp, path)


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Terminated`, so ``finally`` blocks
    - the removal of temporary files - run as they do for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["OutputExistsError", "Terminated", "check_destination", "publish", "signals_as_exceptions", "temporary_name"]
