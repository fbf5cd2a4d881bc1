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
import queue
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from satclip.errors import OutputExistsError


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
        raise_if_signalled()  # a signal whose exception a finaliser swallowed still stops the run
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


#: The signal that :func:`signals_as_exceptions` turned into an exception, once one has arrived.
_received_signal: int | None = None
#: How many :func:`signals_deferred` blocks are running (their signals wait until the last ends).
_deferring = 0


def raise_if_signalled() -> None:
    """Raises :class:`Terminated` (or KeyboardInterrupt) again if a signal arrived under
    :func:`signals_as_exceptions` whose exception was swallowed (see there)."""
    if _received_signal == signal.SIGTERM:
        raise Terminated(f"terminated by signal {_received_signal}")
    if _received_signal == signal.SIGINT:
        raise KeyboardInterrupt


@contextmanager
def signals_deferred() -> Iterator[None]:
    """A block a signal must not interrupt halfway: under :func:`signals_as_exceptions`, SIGTERM or
    Ctrl-C arriving inside it is raised when it ends. For third-party constructors whose half-built
    objects break in their finalisers (h5netcdf's ``File`` reports an AttributeError as "Exception
    ignored" when interrupted before it set its state)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        raise_if_signalled()


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Terminated`, so ``finally`` blocks
    - the removal of temporary files - run as they do for Ctrl-C.

    Python runs a signal handler in whatever code the main thread is executing, and an exception
    raised inside a finaliser or weakref callback (``__del__``, a ``WeakValueDictionary``'s
    cleanup, a collected generator) is printed as "Exception ignored" and dropped, so the run
    would go on. Such a dropped Terminated or KeyboardInterrupt is therefore sent again from
    another thread (it lands once the finaliser has returned), and :func:`publish` refuses to
    publish once a signal has arrived (:func:`raise_if_signalled`)."""
    global _received_signal
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    _received_signal = None
    resend: queue.SimpleQueue[int | None] = queue.SimpleQueue()  # signals to deliver again
    in_hook = False

    def _resender() -> None:
        # Another thread, so that the signal lands after the finaliser that swallowed it returned.
        while (signum := resend.get()) is not None:
            signal.pthread_kill(main_thread, signum)

    def _handle(signum: int, frame: Any) -> None:
        global _received_signal
        _received_signal = signum
        if _deferring:  # raised when the signals_deferred block ends
            return
        if in_hook:  # an exception raised in the hook below would be dropped as well
            resend.put(signum)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(f"terminated by signal {signum}")

    def _unraisable(info: Any) -> None:
        nonlocal in_hook
        in_hook = True
        try:
            if info.exc_type is not None and issubclass(info.exc_type, (Terminated, KeyboardInterrupt)):
                resend.put(signal.SIGTERM if issubclass(info.exc_type, Terminated) else signal.SIGINT)
            else:
                previous_hook(info)
        finally:
            in_hook = False

    resender = threading.Thread(target=_resender, name="satclip-signals", daemon=True)
    resender.start()
    previous_hook = sys.unraisablehook
    previous = signal.signal(signal.SIGTERM, _handle)
    previous_int = signal.getsignal(signal.SIGINT)
    own_int = previous_int is signal.default_int_handler  # keep a handler the caller installed
    if own_int:
        signal.signal(signal.SIGINT, _handle)
    sys.unraisablehook = _unraisable
    try:
        yield
        raise_if_signalled()
    finally:
        # A signal sent again but not yet delivered must not reach the previous handlers (by
        # default SIGTERM would kill the process before its error is reported).
        signal.signal(signal.SIGTERM, _absorb)
        if own_int:
            signal.signal(signal.SIGINT, _absorb)
        resend.put(None)
        resender.join()
        signal.signal(signal.SIGTERM, previous)
        if own_int:
            signal.signal(signal.SIGINT, previous_int)
        sys.unraisablehook = previous_hook
        _received_signal = None


def _absorb(signum: int, frame: Any) -> None:
    pass


__all__ = [
    "OutputExistsError",
    "Terminated",
    "check_destination",
    "publish",
    "raise_if_signalled",
    "signals_as_exceptions",
    "signals_deferred",
    "temporary_name",
]
