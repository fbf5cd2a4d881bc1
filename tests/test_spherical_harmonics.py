"""The NumPy API of the Rust spherical-harmonics core: accuracy, identities, dtypes, errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import satclip
from conftest import require
from references.sh import EDGE_POINTS, reference_features
from satclip.errors import CoordinateError, DegreeError, DTypeError, SatclipError, ShapeError


def random_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Uniform on the sphere, so high latitudes are represented as in real data.
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return np.c_[rng.uniform(-180, 180, n), lat]


def zonal_columns(L: int) -> np.ndarray:
    return np.array([l * l + l for l in range(L)])


# --- accuracy against the independent high-precision reference ----------------------------


@pytest.mark.parametrize("L", [1, 2, 10, 40])
@pytest.mark.parametrize("basis", ["satclip", "orthonormal"])
def test_float64_matches_high_precision_reference(L: int, basis: str) -> None:
    points = np.r_[EDGE_POINTS, random_points(10, seed=L)]
    got = satclip.spherical_harmonics(points, L, basis=basis)
    want = reference_features(points, L, basis=basis)
    assert got.dtype == np.float64 and got.shape == (len(points), L * L)
    assert np.abs(got - want).max() <= 1e-12


def test_float64_is_exact_at_degree_100() -> None:
    points = np.array([[0.0, 90.0], [10.0, 90.0 - 1e-9], [-180.0, 0.0], [33.3, -71.7]])
    got = satclip.spherical_harmonics(points, 100)
    assert np.abs(got - reference_features(points, 100)).max() <= 1e-10


#: Within a degree of the poles, where computing in float32 would not be accurate enough: rounding
#: cos(theta) to float32 shifts the phase of P_l by ~l * 3e-8 / sin(theta) (1.5e-4 error at L = 40).
NEAR_POLES = np.array([[20.0, 89.9], [30.0, -89.0], [0.0, 89.99], [-75.0, -89.5]])


def test_float32_output_is_accurate_and_finite_at_L40() -> None:
    points = np.r_[EDGE_POINTS, NEAR_POLES, random_points(10)].astype(np.float32)
    got = satclip.spherical_harmonics(points, 40)
    assert got.dtype == np.float32
    assert np.isfinite(got).all()
    # The reference is evaluated at the float32 points, as given.
    want = reference_features(points.astype(np.float64), 40)
    assert np.abs(got - want).max() <= 1e-4


def test_float32_output_rounds_the_float64_result() -> None:
    points = random_points(1000).astype(np.float32)
    f32 = satclip.spherical_harmonics(points, 40)
    f64 = satclip.spherical_harmonics(points.astype(np.float64), 40)
    np.testing.assert_array_equal(f32, f64.astype(np.float32))


# --- identities that hold at every degree --------------------------------------------------


@pytest.mark.parametrize("L", [50, 200])
def test_addition_theorem_holds_without_overflow(L: int) -> None:
    # Unsoeld: sum_m Y_lm^2 = (2l + 1) / (4 pi) for the orthonormal real basis, at any point.
    points = np.r_[EDGE_POINTS, random_points(50)]
    y = satclip.spherical_harmonics(points, L, basis="orthonormal")
    assert np.isfinite(y).all()
    for l in range(L):
        block = y[:, l * l : (l + 1) * (l + 1)]
        np.testing.assert_allclose((block**2).sum(axis=1), (2 * l + 1) / (4 * math.pi), rtol=1e-11)


def test_satclip_basis_is_orthonormal_with_pi_on_zonal_columns() -> None:
    points = random_points(200)
    sat = satclip.spherical_harmonics(points, 20)
    ortho = satclip.spherical_harmonics(points, 20, basis="orthonormal")
    scale = np.ones(400)
    scale[zonal_columns(20)] = math.pi
    np.testing.assert_allclose(sat, ortho * scale, rtol=0, atol=1e-15)


def test_reflection_through_the_equator() -> None:
    # P_l^m(-x) = (-1)^(l+m) P_l^m(x): flipping the latitude multiplies column (l, m) by (-1)^(l+|m|).
    points = random_points(300)
    flipped = points * [1, -1]
    L = 30
    sign = np.array([(-1) ** (l + abs(m)) for l in range(L) for m in range(-l, l + 1)])
    np.testing.assert_allclose(
        satclip.spherical_harmonics(flipped, L), satclip.spherical_harmonics(points, L) * sign, atol=1e-13
    )


def test_orthonormality_by_quadrature() -> None:
    # Gauss-Legendre in cos(theta) x uniform in phi integrates products of degree < 2L exactly.
    L = 12
    nodes, weights = np.polynomial.legendre.leggauss(L + 1)
    n_phi = 2 * L + 1
    lon = -180 + 360 * np.arange(n_phi) / n_phi
    lat = np.degrees(np.arcsin(nodes))  # x = -sin(lat) maps the nodes onto themselves
    grid = np.array([[lo, la] for la in lat for lo in lon])
    w = np.repeat(weights, n_phi) * (2 * math.pi / n_phi)
    y = satclip.spherical_harmonics(grid, L, basis="orthonormal")
    gram = (y * w[:, None]).T @ y
    np.testing.assert_allclose(gram, np.eye(L * L), atol=1e-12)


# --- properties --------------------------------------------------------------------------

coordinates = arrays(
    np.float64,
    st.tuples(st.integers(0, 40), st.just(2)),
    elements=st.floats(-90, 90, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(points=coordinates, L=st.integers(1, 24))
def test_rows_do_not_depend_on_batch_position(points: np.ndarray, L: int) -> None:
    points = points * [2, 1]  # longitudes over [-180, 180]
    batch = satclip.spherical_harmonics(points, L)
    assert batch.shape == (len(points), L * L)
    for i in range(len(points)):
        np.testing.assert_array_equal(batch[i], satclip.spherical_harmonics(points[i : i + 1], L)[0])


@settings(max_examples=40, deadline=None)
@given(lon=st.floats(-180, 180), lat=st.floats(-90, 90), L=st.integers(1, 30))
def test_all_values_finite_and_bounded(lon: float, lat: float, L: int) -> None:
    y = satclip.spherical_harmonics(np.array([[lon, lat]]), L, basis="orthonormal")
    assert np.isfinite(y).all()
    # |Y_lm| <= sqrt((2l + 1) / (4 pi)) follows from the addition theorem.
    bound = np.repeat([math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(L)], [2 * l + 1 for l in range(L)])
    assert (np.abs(y[0]) <= bound * (1 + 1e-12)).all()


# --- the parallel and streaming paths agree with the serial one ---------------------------


def test_threads_and_large_outputs_give_identical_results() -> None:
    points = random_points(3001)  # not a multiple of the SIMD block
    many = random_points(12001)
    previous = satclip.get_num_threads()
    try:
        satclip.set_num_threads(1)
        assert satclip.get_num_threads() == 1
        one = satclip.spherical_harmonics(points, 40)
        one_many = satclip.spherical_harmonics(many, 16)
        satclip.set_num_threads(2)
        two = satclip.spherical_harmonics(points, 40)
        # 24.6 MB into memory written before, above the streaming threshold (45% of the
        # last-level cache, 16 MiB where unknown), from a kernel whose blocks are small enough
        # to stream (16 KiB at L = 16): this takes the streaming-store path.
        streamed = np.ones_like(one_many)
        satclip.spherical_harmonics(many, 16, out=streamed)
    finally:
        satclip.set_num_threads(previous)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one_many, streamed)
    # Small calls run on the calling thread, with ordinary stores.
    for start in (0, 1000, 2990):
        np.testing.assert_array_equal(
            one[start : start + 11], satclip.spherical_harmonics(points[start : start + 11], 40)
        )


_POOL_THREADS_AFTER = """
import os, sys, numpy as np, satclip
def pool_threads():
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    return sum(name.startswith("satclip-") for name in names)
x = np.load(sys.argv[1])
here = satclip.spherical_harmonics(x, 40, parallel=False)
satclip.spherical_harmonics(x[:16], 300, parallel=False)  # a workspace above the cache cap, freed after
after_caller = pool_threads()
pooled = satclip.spherical_harmonics(x, 40)
print(after_caller, pool_threads(), int(np.array_equal(here, pooled)))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc to list threads")
def test_parallel_false_computes_on_the_calling_thread_with_the_same_bits(tmp_path: Path) -> None:
    # 5000 points: far above the size the core keeps on the calling thread anyway. A fresh
    # process, so the pool has not been started by another test; it starts on first use.
    src = tmp_path / "x.npy"
    np.save(src, random_points(5000))
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    run = subprocess.run([sys.executable, "-c", _POOL_THREADS_AFTER, str(src)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    after_caller, after_pool, same = map(int, run.stdout.split())
    assert after_caller == 0, "parallel=False started satclip's thread pool"
    assert after_pool == 2, "the default call did not use the pool"
    assert same == 1, "parallel=False gave other bits than the pool"


@pytest.mark.parametrize("parallel", ["no", 0, None])
def test_parallel_must_be_a_bool(parallel: object) -> None:
    with pytest.raises(TypeError, match="parallel must be True or False"):
        satclip.spherical_harmonics(random_points(3), 4, parallel=parallel)  # type: ignore[arg-type]


def test_portable_kernel_agrees_with_the_dispatched_one() -> None:
    code = (
        "import numpy as np, satclip, sys;"
        "x = np.load(sys.argv[1]);"
        "assert satclip.simd_level() == 'baseline', satclip.simd_level();"
        "np.save(sys.argv[2], satclip.spherical_harmonics(x, 40))"
    )
    points = random_points(517)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(src, points)
        env = dict(os.environ, SATCLIP_SIMD="baseline")
        subprocess.run([sys.executable, "-c", code, src, dst], check=True, env=env)
        portable = np.load(dst)
    np.testing.assert_allclose(portable, satclip.spherical_harmonics(points, 40), rtol=0, atol=1e-14)


def best_level_this_cpu_offers() -> str:
    """The level the dispatcher should pick, read independently from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo to read the CPU's features from")
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "baseline"


LEVELS = ["baseline", "avx2", "avx512"]


def test_simd_dispatch_picks_the_best_level_the_cpu_offers() -> None:
    best = best_level_this_cpu_offers()
    asked = os.environ.get("SATCLIP_SIMD") or None
    if asked is None:
        assert satclip.simd_level() == best
    else:  # `make test` reruns the SH tests with each lower level: it may lower, never raise
        assert satclip.simd_level() == min(asked, best, key=LEVELS.index)


# --- dtypes, out=, zero copy ----------------------------------------------------------------


def test_dtype_follows_input() -> None:
    pts = [[8.55, 47.37], [0.0, 0.0]]
    assert satclip.spherical_harmonics(np.array(pts, np.float32), 3).dtype == np.float32
    assert satclip.spherical_harmonics(np.array(pts, np.float64), 3).dtype == np.float64
    ints = satclip.spherical_harmonics(np.array([[8, 47], [0, 0]], np.int32), 3)
    assert ints.dtype == np.float64
    np.testing.assert_array_equal(ints, satclip.spherical_harmonics([[8.0, 47.0], [0.0, 0.0]], 3))
    assert satclip.spherical_harmonics(pts, 3).dtype == np.float64  # lists become float64


def test_non_contiguous_input_is_handled() -> None:
    pts = random_points(50)
    wide = np.zeros((50, 4))
    wide[:, ::2] = pts
    np.testing.assert_array_equal(satclip.spherical_harmonics(wide[:, ::2], 10), satclip.spherical_harmonics(pts, 10))
    fortran = np.asfortranarray(pts)
    np.testing.assert_array_equal(satclip.spherical_harmonics(fortran, 10), satclip.spherical_harmonics(pts, 10))


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
def test_out_is_filled_in_place_and_returned(out_dtype: type) -> None:
    pts = random_points(100)
    out = np.full((100, 100), np.nan, dtype=out_dtype)
    result = satclip.spherical_harmonics(pts, 10, out=out)
    assert result is out
    np.testing.assert_array_equal(out, satclip.spherical_harmonics(pts, 10).astype(out_dtype))


def test_out_can_be_a_torch_tensor_view_without_copy() -> None:
    torch = require("torch")
    pts = random_points(64)
    t = torch.full((64, 100), float("nan"), dtype=torch.float32)
    satclip.spherical_harmonics(pts, 10, out=t.numpy())
    # The tensor itself (not a copy of it) now holds the features.
    np.testing.assert_array_equal(t, satclip.spherical_harmonics(pts, 10).astype(np.float32))


def test_empty_input_gives_empty_output() -> None:
    y = satclip.spherical_harmonics(np.empty((0, 2)), 7)
    assert y.shape == (0, 49) and y.dtype == np.float64


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.zeros(2), np.zeros((3, 3)), np.zeros((2, 2, 2)), np.zeros((4, 1))])
def test_wrong_shape_is_a_shape_error(bad: np.ndarray) -> None:
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        satclip.spherical_harmonics(bad, 3)


def test_single_point_hint() -> None:
    with pytest.raises(ShapeError, match=r"\[\[lon, lat\]\]"):
        satclip.spherical_harmonics(np.array([8.55, 47.37]), 3)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("column", [0, 1])
def test_non_finite_names_the_row(value: float, column: int) -> None:
    pts = random_points(2000)
    pts[1234, column] = value
    pts[1500, 0] = np.nan  # a later bad row must not be the one reported
    with pytest.raises(CoordinateError, match=r"row 1234: (longitude|latitude) is") as info:
        satclip.spherical_harmonics(pts, 5)
    assert info.value.row == 1234
    assert info.value.column == ("lon", "lat")[column]


def test_latitude_out_of_range_suggests_swapped_columns() -> None:
    pts = np.array([[10.0, 20.0], [47.37, 100.0]])
    with pytest.raises(CoordinateError, match=r"row 1: latitude 100.0 is outside \[-90, 90\].*swapped"):
        satclip.spherical_harmonics(pts, 5)


def test_longitude_out_of_range_is_named() -> None:
    with pytest.raises(CoordinateError, match=r"row 0: longitude 360.5 is outside \[-180, 360\]"):
        satclip.spherical_harmonics(np.array([[360.5, 0.0]]), 5)


def test_float32_input_is_validated_too() -> None:
    with pytest.raises(CoordinateError, match="row 2"):
        satclip.spherical_harmonics(np.array([[0, 0], [0, 0], [0, -90.5]], np.float32), 5)


@pytest.mark.parametrize("L", [0, -3, satclip.harmonics.values.MAX_DEGREES + 1, 10**12])
def test_bad_degree_count(L: int) -> None:
    with pytest.raises(DegreeError, match="between 1 and"):
        satclip.spherical_harmonics(np.zeros((1, 2)), L)


@pytest.mark.parametrize("L", [2.5, "10", None, True])
def test_non_integer_degree_count(L: object) -> None:
    with pytest.raises(DegreeError, match="integer"):
        satclip.spherical_harmonics(np.zeros((1, 2)), L)  # type: ignore[arg-type]


def test_numpy_integer_degree_count_is_accepted() -> None:
    assert satclip.spherical_harmonics(np.zeros((1, 2)), np.int64(4)).shape == (1, 16)


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 2), np.complex128), np.array([[object(), 1]], dtype=object), np.array([["a", "b"]])]
)
def test_unsupported_dtypes(bad: np.ndarray) -> None:
    with pytest.raises(DTypeError, match="real numbers"):
        satclip.spherical_harmonics(bad, 3)


def test_unknown_basis() -> None:
    with pytest.raises(ValueError, match="basis"):
        satclip.spherical_harmonics(np.zeros((1, 2)), 3, basis="complex")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("out", "error", "match"),
    [
        (np.zeros((5, 16)), ShapeError, r"shape \(4, 16\)"),
        (np.zeros((4, 16), np.int64), DTypeError, "float32 or float64"),
        (np.zeros((16, 4)).T, ShapeError, "C-contiguous"),
        ([[0.0] * 16] * 4, DTypeError, "NumPy array"),
    ],
)
def test_bad_out(out: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        satclip.spherical_harmonics(np.zeros((4, 2)), 4, out=out)  # type: ignore[arg-type]


def test_read_only_out() -> None:
    out = np.zeros((4, 16))
    out.flags.writeable = False
    with pytest.raises(ShapeError, match="read-only"):
        satclip.spherical_harmonics(np.zeros((4, 2)), 4, out=out)


def test_failed_validation_leaves_out_untouched() -> None:
    out = np.full((3, 9), 7.0)
    with pytest.raises(CoordinateError):
        satclip.spherical_harmonics(np.array([[0, 0], [0, 0], [0, 95]]), 3, out=out)
    assert (out == 7.0).all()


def test_low_level_binding_raises_the_same_types() -> None:
    from satclip import _core

    with pytest.raises(ShapeError):
        _core.spherical_harmonics(np.zeros((3, 3)), 3)
    with pytest.raises(DTypeError):
        _core.spherical_harmonics(np.zeros((3, 2), np.int64), 3)
    with pytest.raises(DegreeError):
        _core.spherical_harmonics(np.zeros((3, 2)), -1)
    with pytest.raises(CoordinateError):
        _core.spherical_harmonics(np.array([[400.0, 0.0]]), 3)
    with pytest.raises(ShapeError, match="C-contiguous"):
        _core.spherical_harmonics(np.zeros((3, 4))[:, ::2], 3)


def test_errors_are_catchable_as_builtin_types() -> None:
    assert issubclass(CoordinateError, ValueError) and issubclass(CoordinateError, SatclipError)
    assert issubclass(DTypeError, TypeError)
    with pytest.raises(ValueError):
        satclip.spherical_harmonics(np.array([[0.0, 91.0]]), 3)


def test_set_num_threads_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        satclip.set_num_threads(-1)


FORKED_WORKERS = """
import multiprocessing as mp, numpy as np, satclip

def work(seed):
    x = np.random.default_rng(seed).uniform(-90, 90, (5000, 2))
    return satclip.spherical_harmonics(x, 10).sum()

if __name__ == "__main__":
    satclip.spherical_harmonics(np.zeros((5000, 2)), 10)  # the parent's pool is running
    with mp.get_context("fork").Pool(2) as pool:
        forked = pool.map(work, range(4))
    assert np.allclose(forked, [work(s) for s in range(4)]), forked
"""


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_forked_children_get_a_working_pool(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A forked child inherits the pool object but not its threads; it must rebuild, not hang.
    script = tmp_path / "forked.py"
    script.write_text(FORKED_WORKERS)
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
