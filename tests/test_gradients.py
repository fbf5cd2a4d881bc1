"""Derivatives of the SH features in lon/lat: the Rust core, the torch fallback, and autograd.

References: mpmath central differences of the explicit Rodrigues sums (tests/references/sh_gradient.py),
the torch implementation (a different identity: neighbouring orders m +- 1, against the Rust
core's differentiated recurrences), closed forms at low degree, and torch.autograd.gradcheck.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import satclip
from references.sh import EDGE_POINTS
from references.sh_gradient import reference_gradients
from satclip.errors import CoordinateError, DegreeError, DTypeError, ShapeError
from satclip.harmonics.autograd import SphericalHarmonicsFunction
from satclip.harmonics.torch_gradients import torch_spherical_harmonics_with_gradient
from satclip.models.location import SphericalHarmonics, build_location_encoder

#: Places that stress the derivatives: the poles, within 1e-9 and 1e-6 degrees of them (where a
#: 1/sin(theta) formula would blow up), and both sides of the antimeridian.
NEAR_POLES = np.array(
    [
        [77.0, 90.0 - 1e-6],
        [-3.0, -90.0 + 1e-6],
        [180.0, 90.0 - 1e-9],
        [-180.0, -89.5],
        [179.9999999, 12.0],
        [-179.9999999, -12.0],
    ]
)


def random_points(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))]


# --- accuracy against the independent high-precision reference ----------------------------


#: For L = 40 (about 0.4 s of mpmath per point): the poles, 1e-9 from them, the antimeridian.
EDGE_SUBSET = EDGE_POINTS[[0, 1, 4, 5, 6, 7, 8, 9, 18, 19]]


@pytest.mark.parametrize(
    ("L", "basis", "points"),
    [
        (40, "satclip", np.r_[EDGE_SUBSET, NEAR_POLES[:2], random_points(3, seed=40)]),
        (10, "orthonormal", np.r_[EDGE_POINTS, NEAR_POLES, random_points(20, seed=10)]),
        (3, "satclip", np.r_[EDGE_POINTS, NEAR_POLES, random_points(20, seed=3)]),
    ],
    ids=["L40", "L10-orthonormal", "L3"],
)
def test_gradients_match_mpmath_finite_differences(L: int, basis: str, points: np.ndarray) -> None:
    _, got = satclip.spherical_harmonics_with_gradient(points, L, basis=basis)
    want = reference_gradients(points, L, basis)
    err = np.abs(got - want)
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() <= 1e-9, f"max error {err.max():.3g} at point {points[worst[0]]}, feature {worst[1]}"
    # The bar is 1e-9; in practice the recurrences are near machine precision.
    assert err.max() <= 1e-12 * max(1.0, float(np.abs(want).max()))


def test_low_degree_closed_forms() -> None:
    """Y_1^{+1} = sqrt(3/4pi) sin(theta) cos(phi), Y_1^0 = pi sqrt(3/4pi) cos(theta), theta = lat + 90."""
    points = np.r_[random_points(50, seed=1), EDGE_POINTS]
    _, g = satclip.spherical_harmonics_with_gradient(points, 2)
    phi, theta = np.radians(points[:, 0] + 180), np.radians(points[:, 1] + 90)
    c1, d = math.sqrt(3 / (4 * math.pi)), math.pi / 180
    np.testing.assert_allclose(g[:, 3, 0], -c1 * np.sin(theta) * np.sin(phi) * d, atol=1e-17)
    np.testing.assert_allclose(g[:, 3, 1], c1 * np.cos(theta) * np.cos(phi) * d, atol=1e-17)
    np.testing.assert_allclose(g[:, 2, 1], -math.pi * c1 * np.sin(theta) * d, atol=1e-17)
    assert np.all(g[:, 2, 0] == 0) and np.all(g[:, 0] == 0)


def test_values_are_exactly_spherical_harmonics() -> None:
    points = np.r_[EDGE_POINTS, random_points(100, seed=2)]
    for dtype in (np.float32, np.float64):
        v, g = satclip.spherical_harmonics_with_gradient(points.astype(dtype), 20)
        assert v.dtype == g.dtype == dtype and g.shape == (len(points), 400, 2)
        np.testing.assert_array_equal(v, satclip.spherical_harmonics(points.astype(dtype), 20))


def test_float32_gradients_are_the_rounded_float64_ones() -> None:
    points = random_points(200, seed=3).astype(np.float32)
    _, g32 = satclip.spherical_harmonics_with_gradient(points, 12)
    _, g64 = satclip.spherical_harmonics_with_gradient(points.astype(np.float64), 12)
    np.testing.assert_array_equal(g32, g64.astype(np.float32))


def test_longitude_derivative_vanishes_exactly_at_the_poles() -> None:
    poles = np.array([[0.0, 90.0], [123.4, 90.0], [-45.0, -90.0], [180.0, -90.0]])
    _, g = satclip.spherical_harmonics_with_gradient(poles, 40)
    assert np.all(g[:, :, 0] == 0)
    assert np.all(np.isfinite(g)) and np.abs(g[:, :, 1]).max() > 0.1  # finite, and not trivially zero


def test_large_batches_agree_with_small_ones() -> None:
    """The parallel path (many tasks) gives the same rows as single points."""
    points = random_points(3000, seed=4)
    v, g = satclip.spherical_harmonics_with_gradient(points, 10)
    for i in (0, 1234, 2999):
        v1, g1 = satclip.spherical_harmonics_with_gradient(points[i : i + 1], 10)
        np.testing.assert_array_equal(v1[0], v[i])
        np.testing.assert_array_equal(g1[0], g[i])


def test_bad_input_raises_satclip_errors() -> None:
    with pytest.raises(CoordinateError, match="row 1") as info:
        satclip.spherical_harmonics_with_gradient([[0.0, 0.0], [0.0, 91.0]], 5)
    assert (info.value.row, info.value.column) == (1, "lat")
    with pytest.raises(CoordinateError, match="NaN"):
        satclip.spherical_harmonics_with_gradient([[float("nan"), 0.0]], 5)
    with pytest.raises(DegreeError):
        satclip.spherical_harmonics_with_gradient([[0.0, 0.0]], 0)
    with pytest.raises(ShapeError):
        satclip.spherical_harmonics_with_gradient([0.0, 0.0], 5)
    with pytest.raises(DTypeError):
        satclip.spherical_harmonics_with_gradient([["a", "b"]], 5)


def test_out_buffers_are_filled_and_returned() -> None:
    points = random_points(50, seed=7)
    want_v, want_g = satclip.spherical_harmonics_with_gradient(points, 6)
    v, g = np.full((50, 36), np.nan, np.float32), np.full((50, 36, 2), np.nan, np.float32)
    got_v, got_g = satclip.spherical_harmonics_with_gradient(points, 6, out=(v, g))
    assert got_v is v and got_g is g
    np.testing.assert_array_equal(g, want_g.astype(np.float32))
    np.testing.assert_array_equal(v, want_v.astype(np.float32))
    with pytest.raises(DTypeError):
        satclip.spherical_harmonics_with_gradient(points, 6, out=(v, g.astype(np.float64)))
    with pytest.raises(ShapeError):
        satclip.spherical_harmonics_with_gradient(points, 6, out=(v, g[:, :30]))
    v.flags.writeable = False
    with pytest.raises(ShapeError, match="values"):
        satclip.spherical_harmonics_with_gradient(points, 6, out=(v, g))


@pytest.mark.parametrize("which", ["values", "gradients"])
def test_fortran_ordered_outputs_are_refused(which: str) -> None:
    """A Fortran-ordered buffer is contiguous but not in the row-major order the kernel writes:
    it was once accepted, and the values landed transposed."""
    points = random_points(4, seed=3)
    v, g = np.zeros((4, 4)), np.zeros((4, 4, 2))
    if which == "values":
        v = np.asfortranarray(v)
    else:
        g = np.asfortranarray(g)
    with pytest.raises(ShapeError, match=f"`{which}` must be C-contiguous"):
        satclip.spherical_harmonics_with_gradient(points, 2, out=(v, g))
    assert not v.any() and not g.any()  # nothing written


def test_core_refuses_overlapping_or_misshaped_outputs() -> None:
    """The low-level binding borrows through rust-numpy: aliasing outputs are an error, not UB."""
    from satclip import _core

    pts = np.zeros((4, 2))
    grads = np.zeros((4, 9, 2))
    with pytest.raises(ShapeError):
        _core.spherical_harmonics_with_gradient(pts, 3, "satclip", np.empty((4, 8)), grads)
    buf = np.empty((4, 27))
    with pytest.raises(ShapeError, match="overlapping"):
        _core.spherical_harmonics_with_gradient(pts, 3, "satclip", buf[:, :9], buf[:, 9:].reshape(4, 9, 2))
    with pytest.raises(DTypeError):
        _core.spherical_harmonics_with_gradient(pts, 3, "satclip", np.empty((4, 9)), grads.astype(np.float32))


# --- torch fallback (CUDA path) --------------------------------------------------------------


@pytest.mark.parametrize("L", [1, 2, 10, 40])
def test_torch_fallback_agrees_with_the_rust_core(L: int) -> None:
    points = np.r_[EDGE_POINTS, NEAR_POLES, random_points(200, seed=L)]
    v, g = satclip.spherical_harmonics_with_gradient(points, L)
    tv, tg = torch_spherical_harmonics_with_gradient(torch.from_numpy(points), L)
    scale = max(1.0, float(np.abs(g).max()))
    np.testing.assert_allclose(tv.numpy(), v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tg.numpy(), g, rtol=0, atol=1e-13 * scale)


# --- autograd -----------------------------------------------------------------------------

#: Away from the poles' coordinate singularity: gradcheck's finite differences step by eps in
#: lat, and a step across +-90 leaves the domain (CoordinateError).
GRADCHECK_POINTS = [[10.0, 20.0], [-179.9, -45.0], [179.9, 60.0], [0.0, 0.0], [33.3, 89.9], [-120.0, -89.9]]


@pytest.mark.parametrize("L", [3, 10, 40])
def test_gradcheck_spherical_harmonics(L: int) -> None:
    x = torch.tensor(GRADCHECK_POINTS, dtype=torch.float64, requires_grad=True)
    # The full check does one backward pass per output (9,600 at L = 40, ~100 s); fast mode
    # compares random projections u^T J v instead, which still catches any wrong entry.
    fast = L > 10
    for basis in ("satclip", "orthonormal"):
        sh = SphericalHarmonics(L, basis=basis)
        assert torch.autograd.gradcheck(sh, (x,), eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=fast)


def test_gradcheck_location_encoder() -> None:
    torch.manual_seed(0)
    model = build_location_encoder(10, embed_dim=32, capacity=64).double().eval()
    x = torch.tensor(GRADCHECK_POINTS, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_location_encoder_gradient_equals_chain_rule_by_hand() -> None:
    """d(sum of embedding)/d(lonlat) = (d sum/d features) . J, with J from the NumPy API."""
    torch.manual_seed(1)
    model = build_location_encoder(10, embed_dim=16, capacity=32).double().eval()
    pts = random_points(30, seed=5)
    x = torch.tensor(pts, requires_grad=True)
    model(x).sum().backward()
    feats, jac = satclip.spherical_harmonics_with_gradient(pts, 10)
    f = torch.tensor(feats, requires_grad=True)
    model.nnet(f).sum().backward()
    want = np.einsum("nk,nkj->nj", f.grad.numpy(), jac)
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-12, atol=1e-15)


def test_float32_input_gives_float32_gradients() -> None:
    x = torch.tensor(GRADCHECK_POINTS, dtype=torch.float32, requires_grad=True)
    out = SphericalHarmonics(10)(x)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    x64 = x.detach().double().requires_grad_()
    SphericalHarmonics(10)(x64).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x64.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_no_jacobian_without_requires_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value-only path stays as it was: no Jacobian is computed unless it is needed."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("Jacobian computed on the value-only path")

    monkeypatch.setattr(SphericalHarmonicsFunction, "forward", staticmethod(boom))
    sh = SphericalHarmonics(10)
    x = torch.tensor(GRADCHECK_POINTS, dtype=torch.float64)
    out = sh(x)
    assert not out.requires_grad
    with torch.no_grad():
        assert not sh(x.clone().requires_grad_()).requires_grad


def test_bad_coordinates_still_raise_on_the_autograd_path() -> None:
    x = torch.tensor([[0.0, 0.0], [400.0, 0.0]], dtype=torch.float64, requires_grad=True)
    with pytest.raises(CoordinateError, match="row 1"):
        SphericalHarmonics(5)(x)


def test_second_derivatives_raise_instead_of_returning_zeros() -> None:
    x = torch.tensor(GRADCHECK_POINTS, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(SphericalHarmonics(5)(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gradients_match_cpu() -> None:
    pts = torch.tensor(np.r_[GRADCHECK_POINTS, random_points(100, seed=6)])
    cpu = pts.clone().requires_grad_()
    SphericalHarmonics(40)(cpu).pow(2).sum().backward()
    gpu = pts.cuda().requires_grad_()
    SphericalHarmonics(40)(gpu).pow(2).sum().backward()
    np.testing.assert_allclose(gpu.grad.cpu().numpy(), cpu.grad.numpy(), rtol=1e-9, atol=1e-10)
    x = torch.tensor(GRADCHECK_POINTS, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(SphericalHarmonics(10), (x,), eps=1e-6, atol=1e-8, rtol=1e-6)
