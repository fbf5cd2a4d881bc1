"""Geometry on the sphere: Fibonacci lattices, [lon, lat] <-> unit vectors, great-circle distances.

NumPy only (no torch): the probes, spatial cross-validation, image geolocation and the GeoTIFF
helpers share these, and the gradient ascent of :mod:`satclip.downstream.refine` calls them on
plain arrays (its autograd runs through the model, not through these conversions).

Conventions: degrees in, degrees out; unit vectors have ``x`` towards (0, 0), ``y`` towards
(90, 0) and ``z`` towards the north pole; distances are on the sphere of the Earth's mean radius
:data:`EARTH_RADIUS_KM`.

Two Fibonacci lattices are here on purpose, because each one's exact points are public:
:func:`fibonacci_grid` is the candidate set of :func:`satclip.locate` (the lattice of the
original's notebook B02: ``2 m`` points on latitudes ``asin(2 i / (2 m + 1))``, ``i = -m .. m-1``),
and :func:`fibonacci_centres` the centres of the equal-area blocks of spatial cross-validation
(``n`` points, any ``n``, on the mid-points of ``n`` equal-area bands, symmetric about the
equator). Each is fixed: a change of either would change public results (the candidates
:func:`satclip.locate` ranks, the folds a seed gives).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Mean radius of the Earth (IUGG R1 of the WGS 84 ellipsoid), km.
EARTH_RADIUS_KM = 6371.0088
#: Surface area of that sphere, km^2.
EARTH_AREA_KM2 = 4.0 * math.pi * EARTH_RADIUS_KM**2


def fibonacci_grid(n: int = 100_000) -> np.ndarray:
    """``n`` (rounded down to even) near-uniform ``[lon, lat]`` points: a Fibonacci lattice.

    Point ``i`` (``i = -m .. m-1``, ``m = n // 2``) sits at latitude ``asin(2 i / (2 m + 1))`` -
    equal-area bands - and longitude ``360 * frac(i / phi)`` (golden ratio ``phi``), wrapped to
    [-180, 180): the lattice B02 uses for its control points.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"a grid needs an integer number of points >= 2, got {n!r}")
    m = int(n) // 2
    i = np.arange(-m, m, dtype=np.float64)
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    lat = np.degrees(np.arcsin(2.0 * i / (2 * m + 1)))
    lon = np.mod(i / phi, 1.0) * 360.0
    lon = np.where(lon >= 180.0, lon - 360.0, lon)
    return np.stack([lon, lat], axis=1)


def fibonacci_centres(n: int) -> np.ndarray:
    """``n`` nearly evenly spread unit vectors, shape ``(n, 3)``: point ``k`` at ``z = 1 - (2k + 1) / n``
    (the middle of the ``k``-th of ``n`` equal-area bands) and longitude ``k + 1/2`` golden angles."""
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / n  # equal steps in z = equal-area latitude bands
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def lonlat_to_xyz(lonlat: Any) -> np.ndarray:
    """``(N, 2)`` ``[lon, lat]`` degrees -> ``(N, 3)`` float64 unit vectors."""
    points = np.asarray(lonlat, dtype=np.float64)
    lon, lat = np.radians(points[:, 0]), np.radians(points[:, 1])
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def xyz_to_lonlat(xyz: Any) -> np.ndarray:
    """``(N, 3)`` vectors (any non-zero length) -> ``(N, 2)`` ``[lon, lat]`` degrees, always inside
    [-180, 180] x [-90, 90]."""
    v = np.asarray(xyz, dtype=np.float64)
    lon = np.clip(np.degrees(np.arctan2(v[:, 1], v[:, 0])), -180.0, 180.0)
    lat = np.clip(np.degrees(np.arctan2(v[:, 2], np.hypot(v[:, 0], v[:, 1]))), -90.0, 90.0)
    return np.stack([lon, lat], axis=1)


def great_circle_km(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Great-circle distance in km on the mean-radius sphere (haversine; NumPy arrays broadcast)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def chord_of_km(km: float) -> float:
    """The straight-line distance between two unit vectors ``km`` apart on the Earth's surface
    (monotonic in ``km`` up to half the circumference, so nearest by chord = nearest on the sphere)."""
    angle = min(float(km) / EARTH_RADIUS_KM, math.pi)
    return 2.0 * math.sin(angle / 2.0)


__all__ = [
    "EARTH_AREA_KM2",
    "EARTH_RADIUS_KM",
    "chord_of_km",
    "fibonacci_centres",
    "fibonacci_grid",
    "great_circle_km",
    "lonlat_to_xyz",
    "xyz_to_lonlat",
]
