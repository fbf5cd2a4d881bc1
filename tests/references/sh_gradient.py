"""An independent high-precision reference for the derivatives of the SatCLIP SH basis.

Central finite differences, in mpmath at L + 50 digits, of the explicit Rodrigues sums of
``references.sh`` (nothing of satclip's recurrences is used). The sums lose up to ~0.6 L digits
to cancellation and the step of 1e-15 degrees another 15 to the difference, leaving > 25 digits;
the truncation error (~h^2 times the third derivative) is below 1e-29. So the quotient *is* the
derivative to double precision. The formula is evaluated as written, so at a pole (lat = +-90)
the quotient straddles the pole and gives the derivative of the analytic continuation - what
the chart derivative there means.
"""

from __future__ import annotations

from functools import cache
from math import factorial

import mpmath
import numpy as np

from references.sh import _legendre_coefficients


@cache
def _terms(l: int, m: int, basis: str, dps: int) -> tuple[mpmath.mpf, tuple[tuple[mpmath.mpf, int], ...]]:
    """The (l, m) feature's constant factor and its polynomial's (coefficient, power) pairs."""
    with mpmath.workdps(dps):
        norm = mpmath.sqrt(mpmath.mpf(2 * l + 1) / (4 * mpmath.pi) * mpmath.mpf(factorial(l - m)) / factorial(l + m))
        scale = (mpmath.pi if basis == "satclip" else 1) if m == 0 else mpmath.sqrt(2)
        factor = scale * norm / mpmath.mpf(2) ** l
        return factor, tuple((mpmath.mpf(c), p) for c, p in _legendre_coefficients(l, m))


def _features(lon: mpmath.mpf, lat: mpmath.mpf, L: int, basis: str) -> list[mpmath.mpf]:
    """The L*L features at an mpmath point (degrees), in column order."""
    dps = mpmath.mp.dps
    phi = (lon + 180) * mpmath.pi / 180
    theta = (lat + 90) * mpmath.pi / 180
    x, s = mpmath.cos(theta), mpmath.sin(theta)
    xp = [mpmath.mpf(1)]
    sp = [mpmath.mpf(1)]
    for _ in range(L):
        xp.append(xp[-1] * x)
        sp.append(sp[-1] * s)
    cos_m = [mpmath.cos(m * phi) for m in range(L)]
    sin_m = [mpmath.sin(m * phi) for m in range(L)]
    out: list[mpmath.mpf] = [mpmath.mpf(0)] * (L * L)
    for l in range(L):
        for m in range(l + 1):
            factor, terms = _terms(l, m, basis, dps)
            v = factor * sp[m] * mpmath.fsum(c * xp[p] for c, p in terms)
            if m == 0:
                out[l * l + l] = v
            else:
                out[l * l + l + m] = v * cos_m[m]
                out[l * l + l - m] = v * sin_m[m]
    return out


def reference_gradients(lonlat: np.ndarray, L: int, basis: str = "satclip") -> np.ndarray:
    """(N, L*L, 2) float64: d/dlon and d/dlat (per degree) of every feature at every point."""
    pts = np.asarray(lonlat, dtype=np.float64)
    out = np.empty((len(pts), L * L, 2))
    with mpmath.workdps(L + 50):
        h = mpmath.mpf(10) ** -15
        for row, (lon, lat) in enumerate(pts):
            lon_m, lat_m = mpmath.mpf(float(lon)), mpmath.mpf(float(lat))
            for c, (dlon, dlat) in enumerate(((h, 0), (0, h))):
                plus = _features(lon_m + dlon, lat_m + dlat, L, basis)
                minus = _features(lon_m - dlon, lat_m - dlat, L, basis)
                out[row, :, c] = [float((p - q) / (2 * h)) for p, q in zip(plus, minus, strict=False)]
    return out
