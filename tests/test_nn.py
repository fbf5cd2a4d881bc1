"""The PyTorch modules: the SH encoding on both code paths, SIREN, LocationEncoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import satclip
from references.sh import EDGE_POINTS, reference_features
from satclip.errors import CoordinateError, DTypeError, ShapeError
from satclip.harmonics.torch_values import torch_spherical_harmonics
from satclip.models.location import LocationEncoder, SirenNet, SphericalHarmonics, build_location_encoder


@pytest.mark.parametrize("L", [1, 3, 10, 40])
@pytest.mark.parametrize("basis", ["satclip", "orthonormal"])
def test_torch_recurrence_matches_high_precision_reference(L: int, basis: str) -> None:
    # This is the code path CUDA tensors take; the recurrence runs the same on the CPU.
    points = torch.from_numpy(EDGE_POINTS)
    got = torch_spherical_harmonics(points, L, basis).numpy()
    assert np.abs(got - reference_features(EDGE_POINTS, L, basis=basis)).max() <= 1e-12


def test_torch_recurrence_float32_is_finite_and_close() -> None:
    points = torch.from_numpy(EDGE_POINTS).float()
    got = torch_spherical_harmonics(points, 40)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    want = reference_features(points.double().numpy(), 40)
    assert np.abs(got.double().numpy() - want).max() <= 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_module_on_cpu_uses_the_rust_core(dtype: torch.dtype) -> None:
    points = torch.from_numpy(EDGE_POINTS).to(dtype)
    y = SphericalHarmonics(10)(points)
    assert y.dtype == dtype and y.shape == (len(EDGE_POINTS), 100)
    np.testing.assert_array_equal(y.numpy(), satclip.spherical_harmonics(points.numpy(), 10))


def test_module_converts_other_dtypes_and_is_differentiable_only_when_asked() -> None:
    ints = torch.tensor([[8, 47], [0, 0]])
    assert SphericalHarmonics(4)(ints).dtype == torch.float64
    pts = torch.tensor([[8.5, 47.3]], dtype=torch.float64, requires_grad=True)
    # Issue 15: the features carry d/d(lon, lat) (tests/test_gradients.py checks the values) ...
    assert SphericalHarmonics(4)(pts).requires_grad
    # ... but only in grad mode and for inputs that require grad.
    with torch.no_grad():
        assert not SphericalHarmonics(4)(pts).requires_grad
    assert not SphericalHarmonics(4)(pts.detach()).requires_grad


def test_module_errors_name_the_row() -> None:
    enc = SphericalHarmonics(4)
    with pytest.raises(CoordinateError, match="row 1: latitude 95.0 is outside.*swapped") as info:
        enc(torch.tensor([[0.0, 0.0], [10.0, 95.0]]))
    assert (info.value.row, info.value.column) == (1, "lat")
    with pytest.raises(CoordinateError, match="row 0: longitude is NaN"):
        enc(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ShapeError):
        enc(torch.zeros(3))
    with pytest.raises(DTypeError):
        enc(torch.zeros(2, 2, dtype=torch.complex64))


def test_siren_initialisation_bounds() -> None:
    torch.manual_seed(0)
    net = SirenNet(dim_in=100, dim_hidden=64, dim_out=32, num_layers=3)
    first, second = net.layers[0], net.layers[1]
    assert first.weight.abs().max() <= 1 / 100
    assert first.weight.abs().max() > 0.9 / 100  # the whole range is used
    bound = math.sqrt(6 / 64) / 1.0
    assert second.weight.abs().max() <= bound and second.weight.abs().max() > 0.9 * bound
    assert net.last_layer.weight.shape == (32, 64)


def test_siren_forward_is_the_documented_formula() -> None:
    torch.manual_seed(1)
    net = SirenNet(dim_in=5, dim_hidden=7, dim_out=3, num_layers=2).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    h = torch.sin(30.0 * (x @ net.layers[0].weight.T + net.layers[0].bias))
    h = torch.sin(1.0 * (h @ net.layers[1].weight.T + net.layers[1].bias))
    want = h @ net.last_layer.weight.T + net.last_layer.bias
    torch.testing.assert_close(net(x), want, rtol=0, atol=1e-14)


def test_dropout_only_in_training_mode() -> None:
    torch.manual_seed(2)
    net = SirenNet(dim_in=16, dim_hidden=256, dim_out=8, num_layers=2).double()
    x = torch.randn(64, 16, dtype=torch.float64)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    assert not torch.allclose(net(x), net(x))


def test_location_encoder_parameter_names_match_the_released_layout() -> None:
    enc = build_location_encoder(10)
    assert list(enc.state_dict()) == [
        "nnet.layers.0.weight",
        "nnet.layers.0.bias",
        "nnet.layers.1.weight",
        "nnet.layers.1.bias",
        "nnet.last_layer.weight",
        "nnet.last_layer.bias",
    ]
    assert enc.state_dict()["nnet.layers.0.weight"].shape == (256, 100)
    assert isinstance(enc, LocationEncoder) and enc.embed_dim == 256


def test_location_encoder_runs_in_the_network_dtype() -> None:
    enc = build_location_encoder(10).double().eval()
    out = enc(torch.tensor([[8.55, 47.37]], dtype=torch.float32))
    assert out.dtype == torch.float64 and out.shape == (1, 256)
