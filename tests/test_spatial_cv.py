"""satclip.downstream.spatial_cv.SphericalBlockKFold: folds of whole equal-area blocks, the buffer,
and its use in scikit-learn's cross_validate / GridSearchCV and in satclip's probes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import Pipeline

import satclip.sklearn
from satclip.downstream.probes import assign_folds, probe, spatial_blocks
from satclip.downstream.spatial_cv import SphericalBlockKFold, buffered_splits
from satclip.errors import CoordinateError, ProbeError, ShapeError
from satclip.models.location import build_location_encoder
from satclip.sklearn import SatCLIPEmbedding

R_KM = 6371.0088


def _points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))])


def _km_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle km between every row of a and of b: arccos of unit-vector dot products
    (not the haversine the code uses), accurate to ~1e-5 km away from 0 and pi."""

    def unit(p: np.ndarray) -> np.ndarray:
        lon, lat = np.deg2rad(p[:, 0]), np.deg2rad(p[:, 1])
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)

    return R_KM * np.arccos(np.clip(unit(a) @ unit(b).T, -1.0, 1.0))


def _small_encoder() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_location_encoder(L=4, embed_dim=12, capacity=24, num_hidden_layers=1).double()


def test_every_point_is_tested_once_and_blocks_stay_whole() -> None:
    pts = _points(3000)
    cv = SphericalBlockKFold(5, n_blocks=80, random_state=4)
    splits = list(cv.split(pts))
    assert len(splits) == cv.get_n_splits() == 5
    tests = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(pts)))  # each point in exactly one test fold
    block = spatial_blocks(pts, 80)
    for train, test in splits:
        assert len(np.intersect1d(train, test)) == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(pts)))  # no buffer
        assert not set(block[test]) & set(block[train])  # no block on both sides
    # The folds are those of assign_folds with the same seed (and so of probe(cv="spatial")).
    test_fold, _ = assign_folds(pts, 5, cv="spatial", n_blocks=80, seed=4)
    for k, (_, test) in enumerate(splits):
        np.testing.assert_array_equal(test, np.flatnonzero(test_fold == k))


def test_blocks_are_the_nearest_lattice_centre_by_great_circle_distance() -> None:
    # Independent of the code's dot-product argmax: the lattice written out here, distances by arccos.
    pts = _points(2000, seed=7)
    n = 50
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    lon = np.rad2deg(np.arctan2(np.sin(math.pi * (3 - math.sqrt(5)) * k), np.cos(math.pi * (3 - math.sqrt(5)) * k)))
    centres = np.column_stack([lon, np.rad2deg(np.arcsin(z))])
    d = _km_matrix(pts, centres)
    nearest = np.argmin(d, axis=1)
    sorted_d = np.sort(d, axis=1)
    clear = sorted_d[:, 1] - sorted_d[:, 0] > 1e-3  # not on a cell edge
    block = SphericalBlockKFold(5, n_blocks=n, random_state=0).assign(pts)[1]
    np.testing.assert_array_equal(block[clear], nearest[clear])


def test_buffer_drops_exactly_the_training_points_near_test_points() -> None:
    pts = _points(1500, seed=1)
    buffer = 400.0
    plain = list(SphericalBlockKFold(4, n_blocks=40, random_state=2).split(pts))
    buffered = list(SphericalBlockKFold(4, n_blocks=40, random_state=2, buffer_km=buffer).split(pts))
    dropped_any = 0
    for (train0, test0), (train, test) in zip(plain, buffered, strict=True):
        np.testing.assert_array_equal(test, test0)  # the buffer never changes the test fold
        assert set(train) <= set(train0)
        nearest = _km_matrix(pts[train0], pts[test]).min(axis=1)
        kept = np.isin(train0, train)
        assert np.all(nearest[kept] > buffer - 1e-6), nearest[kept].min()
        assert np.all(nearest[~kept] <= buffer + 1e-6), nearest[~kept].max()
        dropped_any += int((~kept).sum())
    assert dropped_any > 100  # the buffer really removed points (blocks are ~3,500 km across)
    # buffer_km=0 or None is no buffer.
    for off in (0, 0.0, None):
        same = list(SphericalBlockKFold(4, n_blocks=40, random_state=2, buffer_km=off).split(pts))
        for (a, b), (c, d) in zip(same, plain, strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)


def test_buffer_across_the_antimeridian_and_the_pole() -> None:
    # 22.2 km apart across the antimeridian, 11.1 km apart around the north pole, 1,000 km apart
    # (a third place); each pair split between folds 0 and 1 by hand.
    pts = np.array([[179.9, 0.0], [-179.9, 0.0], [0.0, 89.95], [180.0, 89.95], [10.0, 0.0], [19.0, 0.0]])
    test_fold = np.array([0, 1, 0, 1, 0, 1])
    for buffer, dropped in ((5.0, set()), (15.0, {3}), (25.0, {1, 3})):
        train, test = next(buffered_splits(pts, test_fold, buffer))
        assert test.tolist() == [0, 2, 4] and set(train) == {1, 3, 5} - dropped, buffer


def test_deterministic_with_random_state() -> None:
    pts = _points(2000, seed=5)

    def folds(cv: SphericalBlockKFold) -> list[list[int]]:
        return [test.tolist() for _, test in cv.split(pts)]

    assert folds(SphericalBlockKFold(5, random_state=11)) == folds(SphericalBlockKFold(5, random_state=11))
    assert folds(SphericalBlockKFold(5, random_state=11)) != folds(SphericalBlockKFold(5, random_state=12))
    gen = folds(SphericalBlockKFold(5, random_state=np.random.default_rng(11)))
    assert gen == folds(SphericalBlockKFold(5, random_state=11))
    # block_km picks the number of blocks: cells of ~2,258 km side are the default 100.
    assert SphericalBlockKFold(block_km=2258).blocks() == 100 and SphericalBlockKFold().blocks() == 100
    assert folds(SphericalBlockKFold(5, block_km=2258, random_state=1)) == folds(SphericalBlockKFold(5, random_state=1))


def test_coordinates_from_frames_arrays_or_lonlat() -> None:
    pts = _points(600, seed=8)
    reference = [test.tolist() for _, test in SphericalBlockKFold(3, random_state=0).split(pts)]
    frame = pd.DataFrame({"id": range(600), "Latitude": pts[:, 1], "LON": pts[:, 0]})
    named = pd.DataFrame({"a": pts[:, 0], "b": pts[:, 1]})
    features = np.random.default_rng(0).normal(size=(600, 7))
    for cv, X in (
        (SphericalBlockKFold(3, random_state=0), frame),
        (SphericalBlockKFold(3, random_state=0, lon="a", lat="b"), named),
        (SphericalBlockKFold(3, random_state=0, lonlat=pts), features),
        (SphericalBlockKFold(3, random_state=0), pts.tolist()),
        (SphericalBlockKFold(3, random_state=0), np.column_stack([pts[:, 0] % 360, pts[:, 1]])),  # 0..360
    ):
        assert [test.tolist() for _, test in cv.split(X)] == reference


def test_cross_validate_with_a_satclip_pipeline() -> None:
    pts = _points(400, seed=9)
    y = np.sin(np.deg2rad(pts[:, 1])) * 3 + np.cos(np.deg2rad(pts[:, 0]))
    encoder = _small_encoder()
    pipe = Pipeline([("satclip", SatCLIPEmbedding(model=encoder, device="cpu", dtype="float64")), ("ridge", Ridge())])
    cv = SphericalBlockKFold(4, n_blocks=30, random_state=0, buffer_km=200)
    result = cross_validate(pipe, pts, y, cv=cv, return_indices=True)
    splits = list(cv.split(pts))
    assert len(result["test_score"]) == 4
    for k, (train, test) in enumerate(splits):
        np.testing.assert_array_equal(result["indices"]["train"][k], train)
        np.testing.assert_array_equal(result["indices"]["test"][k], test)
        # The score is that of the pipeline fitted on exactly those rows.
        expected = clone(pipe).fit(pts[train], y[train]).score(pts[test], y[test])
        assert result["test_score"][k] == pytest.approx(expected, rel=1e-12)


def test_grid_search_with_a_satclip_pipeline_on_a_frame() -> None:
    pts = _points(300, seed=10)
    frame = pd.DataFrame({"station": np.arange(300), "lat": pts[:, 1], "lon": pts[:, 0]})
    y = np.cos(np.deg2rad(pts[:, 1])) + 0.1 * np.random.default_rng(1).normal(size=300)
    pipe = Pipeline([("satclip", SatCLIPEmbedding(model=_small_encoder(), device="cpu")), ("ridge", Ridge())])
    cv = SphericalBlockKFold(3, n_blocks=25, random_state=3)
    search = GridSearchCV(pipe, {"ridge__alpha": [1e-3, 1.0, 100.0]}, cv=cv).fit(frame, y)
    assert search.n_splits_ == 3 and search.best_params_["ridge__alpha"] in (1e-3, 1.0, 100.0)
    best = search.best_index_
    for k, (train, test) in enumerate(cv.split(frame)):
        model = clone(pipe).set_params(**search.best_params_).fit(frame.iloc[train], y[train])
        assert search.cv_results_[f"split{k}_test_score"][best] == pytest.approx(
            model.score(frame.iloc[test], y[test]), rel=1e-6
        )
    assert satclip.sklearn.SphericalBlockKFold is SphericalBlockKFold


def test_probe_uses_the_splitter_and_its_buffer() -> None:
    pts = _points(1200, seed=12)
    y = np.sin(np.deg2rad(pts[:, 1]) * 3)
    xyz = np.column_stack(
        [np.cos(np.deg2rad(pts[:, 1])) * np.cos(np.deg2rad(pts[:, 0])), np.sin(np.deg2rad(pts[:, 1]))]
    )
    plain = probe(xyz, pts, y, cv="spatial", folds=4, n_blocks=30, seed=6)
    buffered = probe(xyz, pts, y, cv="spatial", folds=4, n_blocks=30, seed=6, buffer_km=500)
    cv = SphericalBlockKFold(4, n_blocks=30, random_state=6, buffer_km=500)
    splits = list(cv.split(pts))
    np.testing.assert_array_equal(buffered.test_fold, plain.test_fold)
    assert buffered.n_train == [len(train) for train, _ in splits]
    assert plain.n_train == [int((plain.test_fold != k).sum()) for k in range(4)]
    assert all(b < p for b, p in zip(buffered.n_train, plain.n_train, strict=True))
    assert buffered.buffer_km == 500.0 and plain.buffer_km == 0.0
    assert buffered.folds != plain.folds
    # Random CV takes the buffer too.
    rnd = probe(xyz, pts, y, cv="random", folds=4, seed=6, buffer_km=100)
    assert sum(rnd.n_train) < 3 * len(pts)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_splits": 1}, "n_splits must be an integer >= 2"),
        ({"n_splits": 2.5}, "n_splits must be an integer >= 2"),
        ({"buffer_km": -1}, "buffer_km must be a finite number"),
        ({"buffer_km": float("nan")}, "buffer_km must be a finite number"),
        ({"buffer_km": "10"}, "buffer_km must be a number"),
        ({"n_blocks": 10, "block_km": 500}, "not both"),
        ({"block_km": 0}, "block_km must be a positive"),
        ({"n_blocks": 1}, "n_blocks must be an integer >= 2"),
        ({"random_state": "seed"}, "random_state must be"),
        ({"random_state": -3}, "random_state must be"),
    ],
)
def test_bad_parameters_are_probe_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ProbeError, match=match):
        list(SphericalBlockKFold(**kwargs).split(_points(100)))


def test_bad_inputs_name_the_problem() -> None:
    pts = _points(100)
    bad = pts.copy()
    bad[37] = [np.nan, 10.0]
    with pytest.raises(CoordinateError, match="37") as err:
        list(SphericalBlockKFold(3).split(bad))
    assert err.value.row == 37
    bad = pts.copy()
    bad[5, 1] = 95.0
    with pytest.raises(CoordinateError, match="5") as err:
        list(SphericalBlockKFold(3).split(pd.DataFrame({"lon": bad[:, 0], "lat": bad[:, 1]})))
    assert err.value.row == 5
    with pytest.raises(ShapeError, match="lonlat="):
        list(SphericalBlockKFold(3).split(np.zeros((100, 5))))
    with pytest.raises(ShapeError, match="lonlat= has 100 rows but X has 50"):
        list(SphericalBlockKFold(3, lonlat=pts).split(np.zeros((50, 5))))
    with pytest.raises(ShapeError, match="no longitude column"):
        list(SphericalBlockKFold(3).split(pd.DataFrame({"a": pts[:, 0], "b": pts[:, 1]})))
    with pytest.raises(ShapeError, match="not a DataFrame"):
        list(SphericalBlockKFold(3, lon="a").split(pts))
    with pytest.raises(ShapeError, match="no rows"):
        list(SphericalBlockKFold(3).split(np.zeros((0, 2))))
    # Points in fewer blocks than folds, and a buffer that leaves a fold nothing to train on.
    cluster = np.column_stack([np.linspace(10, 10.5, 50), np.linspace(45, 45.5, 50)])
    with pytest.raises(ProbeError, match="at least 3 occupied blocks"):
        list(SphericalBlockKFold(3).split(cluster))
    two_places = np.vstack([cluster, cluster + np.array([20.0, 0.0])])
    with pytest.raises(ProbeError, match="fold 0: every training point lies within buffer_km=5000"):
        list(SphericalBlockKFold(2, n_blocks=200, random_state=0, buffer_km=5000).split(two_places))
