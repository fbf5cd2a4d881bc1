"""Spatial cross-validation for scikit-learn: :class:`SphericalBlockKFold` (the ``eval`` extra).

    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import Ridge
    >>> from satclip.sklearn import SatCLIPEmbedding, SphericalBlockKFold
    >>> pipe = make_pipeline(SatCLIPEmbedding("resnet50-l40"), Ridge())               # doctest: +SKIP
    >>> cv = SphericalBlockKFold(5, n_blocks=100, buffer_km=500, random_state=0)      # doctest: +SKIP
    >>> GridSearchCV(pipe, {"ridge__alpha": [0.1, 1, 10]}, cv=cv).fit(lonlat, y)      # doctest: +SKIP

The folds are those of ``satclip.downstream.probes.probe(cv="spatial")``: the sphere is cut into
equal-area blocks (the Voronoi cells of a Fibonacci lattice, :func:`~satclip.downstream.probes.spatial_blocks`)
and whole blocks are dealt to the folds (:func:`~satclip.downstream.probes.assign_folds`), so a
test fold never shares a block with its training set. ``buffer_km`` also drops, from each fold's
training set, every point within that great-circle distance of one of the fold's test points:
neighbours just across a block edge no longer leak into training.

Where the coordinates come from: ``split(X)`` reads them from ``X`` itself - an ``(N, 2)``
``[lon, lat]`` array or a DataFrame whose lon/lat columns are found by name (the rule of
:mod:`satclip.points.columns`; ``lon=``/``lat=`` name them). That is what a pipeline starting with
:class:`satclip.sklearn.SatCLIPEmbedding` is fitted on, and scikit-learn hands each search and
each nested split the same rows as ``X``, so the folds always follow the rows. Only when ``X``
holds other features (precomputed embeddings) are the coordinates given as ``lonlat=``: then
they must be row-aligned with that ``X`` (checked by length), which a nested search on subsets
of ``X`` cannot keep - use a DataFrame with lon/lat columns there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from satclip.errors import MissingExtraError, ProbeError, ShapeError

try:
    from sklearn.model_selection import BaseCrossValidator
except ImportError as err:  # pragma: no cover - depends on the environment
    raise MissingExtraError("SphericalBlockKFold needs scikit-learn: pip install 'satclip[eval]'") from err

from satclip.downstream.probes import DEFAULT_BLOCKS, assign_folds
from satclip.points.arrays import valid_points
from satclip.points.columns import frame_lonlat, is_dataframe
from satclip.points.sphere import EARTH_AREA_KM2, chord_of_km, great_circle_km, lonlat_to_xyz


class SphericalBlockKFold(BaseCrossValidator):
    """K-fold cross-validation over equal-area blocks of the sphere, with an optional buffer.

    Parameters
    ----------
    n_splits:
        Number of folds, >= 2.
    n_blocks:
        Number of equal-area blocks (default 100: cells of ~5.1 million km^2, ~2,300 km across).
    block_km:
        Instead of ``n_blocks``: the side, in km, of a square with a block's area; ``n_blocks`` is
        then ``round(Earth's area / block_km^2)`` (at least 2).
    buffer_km:
        Drop, from each fold's training set, the points within this great-circle distance (km) of
        any of its test points. ``None`` or 0: no buffer.
    random_state:
        Seed of the order in which blocks are dealt to folds (each block goes to the fold with the
        fewest points so far): an int gives the same folds every time (and the folds of
        ``probe(cv="spatial", seed=...)``), ``None`` fresh ones per :meth:`split`.
    lonlat:
        ``(N, 2)`` ``[lon, lat]`` degrees of the rows of ``X``, for an ``X`` that is not coordinates.
    lon, lat:
        Column names when ``X`` is a DataFrame (default: found by name).

    Every point is in exactly one test fold; a block is never split between folds.
    """

    def __init__(
        self,
        n_splits: int = 5,
        *,
        n_blocks: int | None = None,
        block_km: float | None = None,
        buffer_km: float | None = None,
        random_state: Any = None,
        lonlat: Any = None,
        lon: Any = None,
        lat: Any = None,
    ) -> None:
        self.n_splits = n_splits
        self.n_blocks = n_blocks
        self.block_km = block_km
        self.buffer_km = buffer_km
        self.random_state = random_state
        self.lonlat = lonlat
        self.lon = lon
        self.lat = lat

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds, ``n_splits``."""
        return _check_n_splits(self.n_splits)

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(train, test)`` row indices per fold; ``y`` and ``groups`` are not used."""
        points = self.coordinates(X)
        buffer_km = _check_buffer(self.buffer_km)
        test_fold, _ = self._assign(points)
        yield from buffered_splits(points, test_fold, buffer_km)

    def assign(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(test_fold, block)`` per row of ``X``: the fold in which it is held out and its block."""
        return self._assign(self.coordinates(X))

    def _assign(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_splits = _check_n_splits(self.n_splits)
        return assign_folds(points, n_splits, cv="spatial", n_blocks=self.blocks(), seed=self._rng())

    def blocks(self) -> int:
        """The number of equal-area blocks (from ``n_blocks`` or ``block_km``)."""
        if self.block_km is None:
            return DEFAULT_BLOCKS if self.n_blocks is None else self.n_blocks
        if self.n_blocks is not None:
            raise ProbeError("give n_blocks or block_km, not both")
        km = self.block_km
        if isinstance(km, bool) or not isinstance(km, (int, float, np.integer, np.floating)) or not km > 0:
            raise ProbeError(f"block_km must be a positive number of km, got {km!r}")
        if not math.isfinite(km):
            raise ProbeError(f"block_km must be finite, got {km!r}")
        return max(2, round(EARTH_AREA_KM2 / float(km) ** 2))

    def coordinates(self, X: Any) -> np.ndarray:
        """The ``(N, 2)`` float64 ``[lon, lat]`` of the rows of ``X`` (see the class notes), checked."""
        if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
            raise ShapeError("sparse X cannot hold coordinates: give an (N, 2) [lon, lat] array, or lonlat=")
        if self.lonlat is not None:
            points = _as_points(self.lonlat, "lonlat")
            if X is not None:
                n = len(X)
                if n != len(points):
                    raise ShapeError(
                        f"lonlat= has {len(points)} rows but X has {n}: the coordinates must be those of "
                        "X's rows (in a nested search, give X as a DataFrame with lon/lat columns instead)"
                    )
            return points
        if is_dataframe(X):
            return _as_points(frame_lonlat(X, self.lon, self.lat), "X")
        if self.lon is not None or self.lat is not None:
            raise ShapeError("lon=/lat= name DataFrame columns, but X is not a DataFrame")
        shape = np.shape(X)
        if len(shape) == 2 and shape[1] != 2:
            raise ShapeError(
                f"X has shape {shape}: SphericalBlockKFold reads the coordinates from X, so X must be "
                "(N, 2) [lon, lat] degrees or a DataFrame with lon/lat columns; for other features "
                "give the coordinates as lonlat="
            )
        return _as_points(X, "X")

    def _rng(self) -> np.random.Generator:
        state = self.random_state
        if isinstance(state, np.random.Generator):
            return state
        if isinstance(state, np.random.RandomState):  # scikit-learn's kind: draws a seed from it
            return np.random.default_rng(int(state.randint(0, 2**31 - 1)))
        if state is not None and (isinstance(state, bool) or not isinstance(state, (int, np.integer)) or state < 0):
            raise ProbeError(f"random_state must be None, a non-negative int or a NumPy Generator, got {state!r}")
        return np.random.default_rng(None if state is None else int(state))


def buffered_splits(
    points: np.ndarray, test_fold: np.ndarray, buffer_km: float = 0.0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` indices for each fold ``0 .. max(test_fold)``: the test rows are the fold's,
    the training rows all others, less those within ``buffer_km`` (great-circle) of a test row."""
    xyz = lonlat_to_xyz(points) if buffer_km > 0 else None
    for k in range(int(test_fold.max()) + 1):
        test = test_fold == k
        train = ~test
        if xyz is not None and test.any():
            train &= ~_near(points, xyz, test, train, buffer_km)
            if not train.any():
                raise ProbeError(
                    f"fold {k}: every training point lies within buffer_km={buffer_km:g} km of one of the "
                    f"fold's {int(test.sum())} test points; use a smaller buffer_km or more, smaller blocks"
                )
        yield np.flatnonzero(train), np.flatnonzero(test)


def _near(points: np.ndarray, xyz: np.ndarray, test: np.ndarray, train: np.ndarray, buffer_km: float) -> np.ndarray:
    """Mask of the ``train`` rows within ``buffer_km`` of a ``test`` row. The nearest test point by
    chord is the nearest on the sphere; its haversine distance decides."""
    from sklearn.neighbors import KDTree

    test_rows, train_rows = np.flatnonzero(test), np.flatnonzero(train)
    near = np.zeros(len(points), dtype=bool)
    if len(train_rows) == 0:
        return near
    dist, idx = KDTree(xyz[test_rows]).query(xyz[train_rows], k=1)
    # A generous chord bound picks the candidates; the haversine distance to the nearest decides.
    cand = dist[:, 0] <= chord_of_km(buffer_km) * (1 + 1e-9) + 1e-12
    rows, nearest = train_rows[cand], test_rows[idx[cand, 0]]
    km = great_circle_km(points[rows, 0], points[rows, 1], points[nearest, 0], points[nearest, 1])
    near[rows[km <= buffer_km]] = True
    return near


def _as_points(value: Any, what: str) -> np.ndarray:
    """``value`` as checked float64 (N, 2) degrees; a bad coordinate is a CoordinateError naming its row."""
    try:
        points = valid_points(value)
    except ShapeError as err:
        raise ShapeError(f"{what}: {err}") from None
    if len(points) == 0:
        raise ShapeError(f"{what} has no rows; cross-validation needs points")
    return points


def _check_n_splits(n_splits: Any) -> int:
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ProbeError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    return int(n_splits)


def _check_buffer(buffer_km: Any) -> float:
    """``buffer_km`` as a float >= 0 (``None`` is 0), else a ProbeError."""
    if buffer_km is None:
        return 0.0
    if isinstance(buffer_km, bool) or not isinstance(buffer_km, (int, float, np.integer, np.floating)):
        raise ProbeError(f"buffer_km must be a number of km >= 0, got {buffer_km!r}")
    if not (math.isfinite(buffer_km) and buffer_km >= 0):
        raise ProbeError(f"buffer_km must be a finite number of km >= 0, got {buffer_km!r}")
    return float(buffer_km)


__all__ = ["SphericalBlockKFold", "buffered_splits"]
