"""An independent, high-precision evaluation of the SatCLIP spherical-harmonics basis.

It shares nothing with satclip's recurrences: each associated Legendre function is the
explicit finite sum obtained by differentiating Rodrigues' formula m times,

    P_l^m(x) = (1 - x^2)^(m/2) / 2^l * sum_k (-1)^k C(l, k) C(2l - 2k, l) (l-2k)! / (l-2k-m)! x^(l-2k-m)

(no Condon-Shortley phase), with integer coefficients, evaluated in mpmath at enough digits to
absorb the sum's cancellation, and normalised with exact factorials. The input floats are
converted to mpmath exactly, so the result is the exact value at the given binary point.
"""

from __future__ import annotations

from functools import cache, lru_cache
from math import comb, factorial

import mpmath
import numpy as np


@cache
def _legendre_coefficients(l: int, m: int) -> tuple[tuple[int, int], ...]:
    """(integer coefficient, power of x) pairs of d^m/dx^m [2^l P_l(x)]."""
    terms = []
    for k in range((l - m) // 2 + 1):
        power = l - 2 * k
        coef = (-1) ** k * comb(l, k) * comb(2 * l - 2 * k, l) * factorial(power) // factorial(power - m)
        terms.append((coef, power - m))
    return tuple(terms)


def reference_features(lonlat: np.ndarray, L: int, basis: str = "satclip") -> np.ndarray:
    """(N, L*L) float64 array: the basis at each point, rounded once from high precision.

    Cached per (points, L, basis): several test files evaluate the same edge points.
    """
    pts = np.ascontiguousarray(lonlat, dtype=np.float64)
    return _reference(pts.tobytes(), len(pts), L, basis).copy()


@lru_cache(maxsize=64)
def _reference(raw: bytes, n: int, L: int, basis: str) -> np.ndarray:
    lonlat = np.frombuffer(raw, dtype=np.float64).reshape(n, 2)
    digits = max(40, 2 * L + 30)
    out = np.empty((len(lonlat), L * L))
    with mpmath.workdps(digits):
        for row, (lon, lat) in enumerate(np.asarray(lonlat, dtype=np.float64)):
            phi = (mpmath.mpf(float(lon)) + 180) * mpmath.pi / 180
            theta = (mpmath.mpf(float(lat)) + 90) * mpmath.pi / 180
            x, s = mpmath.cos(theta), mpmath.sin(theta)
            for l in range(L):
                for m in range(l + 1):
                    poly = mpmath.fsum(c * x**p for c, p in _legendre_coefficients(l, m))
                    p_lm = s**m * poly / mpmath.mpf(2) ** l
                    norm = mpmath.sqrt(
                        mpmath.mpf(2 * l + 1) / (4 * mpmath.pi) * mpmath.mpf(factorial(l - m)) / factorial(l + m)
                    )
                    if m == 0:
                        zonal = mpmath.pi if basis == "satclip" else 1
                        out[row, l * l + l] = float(zonal * norm * p_lm)
                    else:
                        v = mpmath.sqrt(2) * norm * p_lm
                        out[row, l * l + l + m] = float(v * mpmath.cos(m * phi))
                        out[row, l * l + l - m] = float(v * mpmath.sin(m * phi))
    return out


#: Points that stress the implementation: both poles, points within 1e-9 degrees of them,
#: the antimeridian from both sides, signed zeros, the equator, and a few ordinary places.
EDGE_POINTS = np.array(
    [
        [0.0, 90.0],
        [0.0, -90.0],
        [123.4, 90.0],
        [-45.0, -90.0],
        [10.0, 90.0 - 1e-9],
        [-170.0, -90.0 + 1e-9],
        [180.0, 0.0],
        [-180.0, 0.0],
        [180.0, 45.5],
        [-180.0, -60.25],
        [0.0, 0.0],
        [-0.0, -0.0],
        [-0.0, 0.0],
        [37.5, 0.0],
        [8.55, 47.37],
        [-122.33, 47.61],
        [151.21, -33.87],
        [-58.38, -34.6],
        [179.999999, 89.999],
        [-179.999999, -89.999],
    ]
)
