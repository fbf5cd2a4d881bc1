"""satclip.points.sphere: distances against mpmath and pyproj, conversions, lattice properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

import satclip
from conftest import require
from satclip.points import sphere
from satclip.points.sphere import (
    EARTH_AREA_KM2,
    EARTH_RADIUS_KM,
    chord_of_km,
    fibonacci_centres,
    fibonacci_grid,
    great_circle_km,
    lonlat_to_xyz,
    xyz_to_lonlat,
)


def _pairs(n: int, seed: int = 0) -> np.ndarray:
    """(n, 4) lon1, lat1, lon2, lat2 - uniform on the sphere, plus the awkward cases."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-180, 180, (n, 2))
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, (n, 2))))
    out = np.column_stack([lon[:, 0], lat[:, 0], lon[:, 1], lat[:, 1]])
    special = [
        [179.9, 10.0, -179.9, 10.0],  # across the antimeridian
        [0.0, 90.0, 123.0, 89.0],  # from the pole (its longitude means nothing)
        [10.0, 20.0, 10.0, 20.0],  # the same point
        [10.0, 20.0, 10.000001, 20.0],  # ~10 cm apart
        [0.0, 0.0, 179.0, 0.5],  # nearly antipodal
        [-75.0, -60.0, 45.0, 88.0],
    ]
    return np.vstack([out, special])


def test_great_circle_km_matches_mpmath_haversine() -> None:
    mp = require("mpmath")
    mp.mp.dps = 40
    pairs = _pairs(300)
    got = great_circle_km(pairs[:, 0], pairs[:, 1], pairs[:, 2], pairs[:, 3])
    for (lon1, lat1, lon2, lat2), value in zip(pairs, got, strict=True):
        p1, p2 = mp.radians(mp.mpf(lat1)), mp.radians(mp.mpf(lat2))
        dlon = mp.radians(mp.mpf(lon2) - mp.mpf(lon1))
        h = mp.sin((p2 - p1) / 2) ** 2 + mp.cos(p1) * mp.cos(p2) * mp.sin(dlon / 2) ** 2
        exact = 2 * mp.mpf(EARTH_RADIUS_KM) * mp.asin(mp.sqrt(h))
        # float64 haversine: ~1e-15 relative, worse only for nearly antipodal points (asin near 1)
        assert float(value) == pytest.approx(float(exact), rel=1e-12, abs=1e-6)


def test_great_circle_km_matches_pyproj_geodesic_on_the_sphere() -> None:
    pyproj = require("pyproj")
    geod = pyproj.Geod(a=EARTH_RADIUS_KM * 1000.0, f=0.0)  # Karney's geodesics, on a sphere
    pairs = _pairs(500, seed=1)
    _, _, metres = geod.inv(pairs[:, 0], pairs[:, 1], pairs[:, 2], pairs[:, 3])
    got = great_circle_km(pairs[:, 0], pairs[:, 1], pairs[:, 2], pairs[:, 3])
    np.testing.assert_allclose(got, np.asarray(metres) / 1000.0, rtol=1e-9, atol=1e-6)


def test_great_circle_km_known_values_and_broadcasting() -> None:
    quarter = math.pi * EARTH_RADIUS_KM / 2
    assert great_circle_km(0, 0, 0, 90) == pytest.approx(quarter, rel=1e-14)
    assert great_circle_km(0, 0, 180, 0) == pytest.approx(2 * quarter, rel=1e-14)
    assert great_circle_km(-179.5, 0, 179.5, 0) == pytest.approx(math.radians(1) * EARTH_RADIUS_KM, rel=1e-9)
    row = great_circle_km(0.0, 0.0, np.array([0.0, 90.0, -90.0]), np.zeros(3))
    np.testing.assert_allclose(row, [0.0, quarter, quarter], rtol=1e-14)
    assert EARTH_AREA_KM2 == pytest.approx(510.0656e6, rel=1e-6)


def test_unit_vectors_and_back() -> None:
    pts = _pairs(400, seed=2)[:, :2]
    xyz = lonlat_to_xyz(pts)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(
        lonlat_to_xyz([[0, 0], [90, 0], [0, 90], [180, -90], [-90, 45]]),
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1], [0, -math.sqrt(0.5), math.sqrt(0.5)]],
        atol=1e-15,
    )
    back = xyz_to_lonlat(xyz)
    away_from_poles = np.abs(pts[:, 1]) < 89.999
    np.testing.assert_allclose(back[away_from_poles], pts[away_from_poles], atol=1e-11)
    np.testing.assert_allclose(back[:, 1], pts[:, 1], atol=1e-11)
    # Length does not matter; results stay in range, the poles are lat +-90.
    np.testing.assert_allclose(xyz_to_lonlat(3.5 * xyz), back, atol=1e-12)
    poles = xyz_to_lonlat([[0, 0, 2.0], [0, 0, -1e-3], [-1.0, -0.0, 0.0]])
    assert poles[0, 1] == 90.0 and poles[1, 1] == -90.0 and abs(poles[2, 0]) == 180.0
    # Dot products of unit vectors give the same distances (an independent formula).
    a, b = lonlat_to_xyz(pts[:200]), lonlat_to_xyz(pts[200:400])
    angle = np.arccos(np.clip(np.sum(a * b, axis=1), -1, 1))
    hav = great_circle_km(pts[:200, 0], pts[:200, 1], pts[200:400, 0], pts[200:400, 1])
    well_conditioned = (angle > 0.05) & (angle < math.pi - 0.05)
    np.testing.assert_allclose(hav[well_conditioned], EARTH_RADIUS_KM * angle[well_conditioned], rtol=1e-12)


def test_chord_of_km_is_the_straight_line_between_unit_vectors() -> None:
    pairs = _pairs(100, seed=3)
    km = great_circle_km(pairs[:, 0], pairs[:, 1], pairs[:, 2], pairs[:, 3])
    chord = np.linalg.norm(lonlat_to_xyz(pairs[:, :2]) - lonlat_to_xyz(pairs[:, 2:]), axis=1)
    np.testing.assert_allclose([chord_of_km(d) for d in km], chord, atol=1e-12)
    assert chord_of_km(0.0) == 0.0 and chord_of_km(1e9) == 2.0  # at most the diameter


def _nn_km(xyz: np.ndarray) -> np.ndarray:
    dots = xyz @ xyz.T
    np.fill_diagonal(dots, -2.0)
    return EARTH_RADIUS_KM * np.arccos(np.clip(dots.max(axis=1), -1, 1))


@pytest.mark.parametrize("lattice", ["grid", "centres"])
def test_lattices_are_near_uniform(lattice: str) -> None:
    n = 2000
    xyz = lonlat_to_xyz(fibonacci_grid(n)) if lattice == "grid" else fibonacci_centres(n)
    assert xyz.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=1), 1.0, rtol=1e-15)
    spacing = math.sqrt(EARTH_AREA_KM2 / n)
    nn = _nn_km(xyz) / spacing
    # Random points: nearest neighbours ~100x closer than this at the minimum; a lattice keeps them apart.
    assert nn.min() > 0.8 and nn.max() < 1.05, (nn.min(), nn.max())
    # Equal-area bands: sorted z (sin of latitude) in equal steps.
    z = np.sort(xyz[:, 2])
    step = np.diff(z)
    np.testing.assert_allclose(step, step.mean(), rtol=1e-9)
    assert step.mean() == pytest.approx(2 / n if lattice == "centres" else 2 / (n + 1), rel=1e-12)


def test_centre_cells_have_equal_area() -> None:
    # Uniform points on the sphere (normal vectors, normalised): each Voronoi cell of the 100
    # centres should catch 1/100 of them (Poisson spread 1.6 % at 4000 per cell).
    rng = np.random.default_rng(0)
    u = rng.normal(size=(400_000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    c = fibonacci_centres(100)
    counts = np.bincount(np.argmax(u @ c.T, axis=1), minlength=100)
    share = counts / counts.mean()
    assert share.std() < 0.04 and share.min() > 0.9 and share.max() < 1.1
    # Symmetric about the equator.
    np.testing.assert_allclose(np.sort(c[:, 2]), -np.sort(c[:, 2])[::-1], atol=1e-15)


def test_fibonacci_grid_matches_its_formula_in_mpmath() -> None:
    mp = require("mpmath")
    mp.mp.dps = 30
    g = fibonacci_grid(11)  # rounded down to 10
    assert g.shape == (10, 2)
    phi = (1 + mp.sqrt(5)) / 2
    for row, i in zip(g, range(-5, 5), strict=True):
        lat = mp.degrees(mp.asin(mp.mpf(2 * i) / 11))
        lon = mp.frac(mp.mpf(i) / phi) * 360
        lon = lon - 360 if lon >= 180 else lon
        assert row[0] == pytest.approx(float(lon), abs=1e-12) and row[1] == pytest.approx(float(lat), abs=1e-12)
    with pytest.raises(ValueError):
        fibonacci_grid(1)


def test_one_home_for_each_public_name() -> None:
    from satclip.downstream import locate, probes
    from satclip.io import georef

    assert satclip.fibonacci_grid is sphere.fibonacci_grid is locate.fibonacci_grid
    assert georef.great_circle_km is sphere.great_circle_km and georef.EARTH_RADIUS_KM == EARTH_RADIUS_KM
    assert probes.fibonacci_centres is sphere.fibonacci_centres and probes.unit_vectors is sphere.lonlat_to_xyz
