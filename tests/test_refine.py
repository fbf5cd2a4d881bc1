"""satclip.downstream.refine: gradient refinement of locations against target embeddings, and the Jacobian.

The model is a released-layout checkpoint built by the test (conftest), loaded with
satclip.load. Targets are the embeddings of known locations, so the right answer is known; the
starting points are the best points of a 5-degree grid search (what satclip.locate produces)
or perturbed copies of the truth. The places include both sides of the antimeridian and points
near and at the poles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import satclip
from satclip.downstream.refine import location_jacobian, refine_locations
from satclip.errors import CoordinateError, ShapeError
from satclip.models.location import LocationEncoder

TRUTH = np.array(
    [
        [8.55, 47.37],
        [179.7, 10.0],  # just east of the antimeridian ...
        [-179.8, -20.0],  # ... and just west of it
        [45.0, 89.6],
        [-120.0, -89.7],
        [-58.4, -34.6],
        [100.0, 0.0],
        [0.0, 90.0],  # the pole itself
        [151.2, -33.9],
    ]
)


def great_circle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    la, lb = np.radians(a), np.radians(b)
    cos = np.sin(la[:, 1]) * np.sin(lb[:, 1]) + np.cos(la[:, 1]) * np.cos(lb[:, 1]) * np.cos(la[:, 0] - lb[:, 0])
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LocationEncoder:
    from conftest import released_checkpoint_dict

    path: Path = tmp_path_factory.mktemp("refine") / "satclip-resnet50-l10.ckpt"
    torch.save(released_checkpoint_dict(10, seed=3), path)
    return satclip.load(path)


def embed(model: LocationEncoder, lonlat: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.as_tensor(lonlat, dtype=torch.float64))


def grid_search(model: LocationEncoder, targets: torch.Tensor, spacing: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    lon = np.arange(-180, 180, spacing) + spacing / 2
    lat = np.arange(-90, 90, spacing) + spacing / 2
    grid = np.stack(np.meshgrid(lon, lat), -1).reshape(-1, 2)
    sim = F.normalize(targets, dim=1) @ F.normalize(embed(model, grid), dim=1).T
    best = sim.argmax(1).numpy()
    return grid[best], sim.max(1).values.numpy()


def assert_valid(lonlat: np.ndarray) -> None:
    assert lonlat.shape[1] == 2 and np.all(np.isfinite(lonlat))
    assert np.all(np.abs(lonlat[:, 0]) <= 180) and np.all(np.abs(lonlat[:, 1]) <= 90)


def test_improves_on_the_best_grid_point_for_every_target(model: LocationEncoder) -> None:
    targets = embed(model, TRUTH)
    start, grid_score = grid_search(model, targets)
    result = refine_locations(targets, model, start, steps=40, lr=2.0)
    assert_valid(result.lonlat)
    np.testing.assert_allclose(result.initial_score, grid_score, rtol=0, atol=1e-12)
    assert np.all(result.score > grid_score), (result.score, grid_score)
    # The targets are embeddings of real places: refinement finds them (similarity ~1, within a
    # few thousandths of a degree), across the antimeridian and at the poles.
    assert np.all(result.score > 1 - 1e-8)
    assert np.all(great_circle_deg(result.lonlat, TRUTH) < 5e-3), great_circle_deg(result.lonlat, TRUTH)
    # The score returned is that of the coordinates returned.
    recomputed = F.cosine_similarity(embed(model, result.lonlat), targets, dim=1).numpy()
    np.testing.assert_allclose(result.score, recomputed, rtol=0, atol=1e-12)


def test_perturbed_starts_move_towards_the_truth(model: LocationEncoder) -> None:
    rng = np.random.default_rng(0)
    starts = TRUTH + rng.normal(0, 1.5, TRUTH.shape)
    # Perturbations that leave the domain are reflected back (lon wraps, lat folds at the pole).
    starts[:, 0] = (starts[:, 0] + 180) % 360 - 180
    starts[:, 1] = np.clip(starts[:, 1], -90, 90)
    targets = embed(model, TRUTH)
    result = refine_locations(targets, model, starts, steps=60, lr=1.0)
    assert_valid(result.lonlat)
    assert np.all(result.score >= result.initial_score)
    before, after = great_circle_deg(starts, TRUTH), great_circle_deg(result.lonlat, TRUTH)
    assert np.all(after < before) and np.all(after < 5e-3), (before, after)


def test_crosses_the_antimeridian_and_passes_over_a_pole(model: LocationEncoder) -> None:
    truth = np.array([[179.5, 10.0], [0.0, 89.0]])
    starts = np.array([[-179.5, 10.0], [180.0, 89.0]])  # 1 degree west across +-180; 2 degrees across the pole
    result = refine_locations(embed(model, truth), model, starts, steps=60, lr=0.5)
    assert_valid(result.lonlat)
    assert np.all(great_circle_deg(result.lonlat, truth) < 5e-3), result.lonlat


def test_starting_at_the_optimum_or_a_pole_is_never_worse(model: LocationEncoder) -> None:
    starts = np.array([[8.55, 47.37], [0.0, 90.0], [77.0, -90.0]])
    targets = embed(model, np.array([[8.55, 47.37], [30.0, 88.0], [10.0, -88.5]]))
    result = refine_locations(targets, model, starts, steps=30)
    assert_valid(result.lonlat)
    assert np.all(result.score >= result.initial_score)
    assert result.score[1] > result.initial_score[1] and result.score[2] > result.initial_score[2]  # leaves the poles
    np.testing.assert_allclose(result.lonlat[0], starts[0], atol=1e-6)
    assert result.score[0] == pytest.approx(1.0, abs=1e-12)


def test_leaves_the_model_untouched(model: LocationEncoder) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        refine_locations(embed(model, TRUTH[[0, 5]]), model, TRUTH[[0, 5]] + 0.5, steps=3)
        assert model.training  # mode restored
    finally:
        model.eval()
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_arguments_raise_clear_errors(model: LocationEncoder) -> None:
    targets = embed(model, TRUTH[:2])
    with pytest.raises(ShapeError, match="rows"):
        refine_locations(targets, model, TRUTH[:3])
    with pytest.raises(ShapeError, match="columns"):
        refine_locations(targets[:, :10], model, TRUTH[:2])
    with pytest.raises(ShapeError, match=r"\(K, 2\)"):
        refine_locations(targets, model, TRUTH[:2, :1])
    with pytest.raises(CoordinateError, match="row 1"):
        refine_locations(targets, model, np.array([[0.0, 0.0], [0.0, 95.0]]))
    with pytest.raises(ValueError, match="lr"):
        refine_locations(targets, model, TRUTH[:2], lr=0.0)


def test_location_jacobian_matches_finite_differences(model: LocationEncoder) -> None:
    pts = np.array([[8.55, 47.37], [179.9, -12.0], [-120.0, 80.0], [33.0, -89.0]])
    jac = location_jacobian(pts, model)
    assert jac.shape == (4, model.embed_dim, 2)
    h = 1e-5
    for j in range(2):
        step = np.zeros(2)
        step[j] = h
        fd = (embed(model, pts + step) - embed(model, pts - step)).numpy() / (2 * h)
        scale = np.abs(fd).max()
        np.testing.assert_allclose(jac[:, :, j], fd, rtol=0, atol=1e-6 * scale)


def test_location_jacobian_equals_reverse_mode(model: LocationEncoder) -> None:
    """Forward mode (two passes) and autograd's reverse mode (one pass per output) agree."""
    pts = torch.tensor([[8.55, 47.37], [-58.4, -34.6]], dtype=torch.float64)
    jac = location_jacobian(pts, model)
    x = pts.clone().requires_grad_()
    emb = model(x)
    for d in (0, 17, 255):
        (g,) = torch.autograd.grad(emb[:, d].sum(), x, retain_graph=True)
        np.testing.assert_allclose(jac[:, d, :], g.numpy(), rtol=1e-10, atol=1e-14)


def test_location_jacobian_longitude_column_vanishes_at_the_poles(model: LocationEncoder) -> None:
    jac = location_jacobian(np.array([[0.0, 90.0], [45.0, -90.0]]), model)
    assert np.all(jac[:, :, 0] == 0) and np.abs(jac[:, :, 1]).max() > 0
