"""Errors raised by the training pipeline, before any training starts.

They derive from :class:`satclip.errors.SatclipError` and ``ValueError`` like every satclip
input error, so ``except ValueError`` catches them too.
"""

from __future__ import annotations

from satclip.errors import SatclipError


class DatasetError(SatclipError, ValueError):
    """The dataset directory, its ``index.csv`` or its images cannot be used for training."""


class TrainingConfigError(SatclipError, ValueError):
    """A training option (encoder name, L, sizes, weights file...) is invalid."""


__all__ = ["DatasetError", "TrainingConfigError"]
