"""Exceptions raised by satclip.

Every error satclip raises on bad input derives from :class:`SatclipError` and from the
built-in type a Python user would expect (``ValueError`` or ``TypeError``), so both
``except satclip.errors.CoordinateError`` and ``except ValueError`` work.
The Rust core raises these same classes (it imports them from this module).
"""

from __future__ import annotations


class SatclipError(Exception):
    """Base class of satclip's errors."""


class CoordinateError(SatclipError, ValueError):
    """A coordinate is non-finite or out of range.

    Attributes ``row`` (0-based index of the first bad row) and ``column`` (``"lon"`` or
    ``"lat"``) say where, when known.
    """

    row: int | None = None
    column: str | None = None


class CRSError(CoordinateError):
    """Coordinates whose reference system is missing or unusable: ``x``/``y`` values that are not
    longitude/latitude degrees and come with no CRS (the message says how to give one), a CRS
    that cannot be read, or a point that cannot be transformed to longitude/latitude."""


class ShapeError(SatclipError, ValueError):
    """An array has the wrong shape or memory layout."""


class DTypeError(SatclipError, TypeError):
    """An array has a dtype satclip cannot use."""


class DegreeError(SatclipError, ValueError):
    """The number of Legendre degrees ``L`` is not a usable integer."""


class InternalError(SatclipError, RuntimeError):
    """A bug inside satclip (a panic in the Rust core, caught before it could cross into Python).

    Never expected; please report it with the message.
    """


class DeviceError(SatclipError, ValueError):
    """The requested device cannot be used here (e.g. ``"cuda"`` without CUDA)."""


class CheckpointError(SatclipError, ValueError):
    """A checkpoint is missing, truncated, unsafe, or does not describe a SatCLIP model."""


class ModelConfigError(SatclipError, ValueError):
    """A model configuration (image encoder architecture, input size, ...) cannot be built."""


class ImageError(SatclipError, ValueError):
    """An image cannot be embedded: unreadable or not a GeoTIFF, non-finite pixels, or values
    that are not Sentinel-2 reflectances."""


class ProbeError(SatclipError, ValueError):
    """A probe cannot run: a target that is missing (the row is named) or of the wrong kind for
    the task, or a cross-validation fold whose training part cannot be fitted (the fold is named)."""


class EncoderError(CheckpointError):
    """A location encoder cannot be used: an unknown encoder name (the message lists the valid
    ones), or an encoder whose output is not one ``(N, D)`` row of numbers per point."""


class MissingExtraError(SatclipError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class OutputExistsError(SatclipError, FileExistsError):
    """An output file or directory exists and replacing it was not asked for (``overwrite=True``
    in the Python API, ``--overwrite`` on the command line). Nothing was written over it."""


__all__ = [
    "CRSError",
    "CheckpointError",
    "CoordinateError",
    "DTypeError",
    "DegreeError",
    "DeviceError",
    "EncoderError",
    "ImageError",
    "InternalError",
    "MissingExtraError",
    "ModelConfigError",
    "OutputExistsError",
    "ProbeError",
    "SatclipError",
    "ShapeError",
]


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (its type's name when it has none), for quoting a
    third-party error inside one of satclip's own messages."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
