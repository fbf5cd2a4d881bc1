"""satclip.sklearn.SatCLIPEmbedding: a stateless scikit-learn transformer around satclip.encode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import satclip
from satclip.errors import CoordinateError, ShapeError
from satclip.sklearn import NOT_APPLICABLE_CHECKS, SatCLIPEmbedding


def _points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))])


def test_transform_is_encode_for_arrays_and_frames(released_l6) -> None:
    pts = _points(50)
    step = SatCLIPEmbedding(released_l6, device="cpu", dtype="float64")
    expected = satclip.encode(pts, released_l6, device="cpu", dtype="float64")
    np.testing.assert_array_equal(step.fit(pts).transform(pts), expected)
    frame = pd.DataFrame({"station": range(50), "Latitude": pts[:, 1], "Longitude": pts[:, 0]})
    np.testing.assert_array_equal(step.fit_transform(frame), expected)
    named = SatCLIPEmbedding(released_l6, device="cpu", dtype="float64", lon="station", lat="Latitude")
    assert not np.allclose(named.fit_transform(frame), expected)  # the named columns are used
    assert step.get_feature_names_out()[[0, -1]].tolist() == ["emb_0", "emb_255"]


def test_get_params_clone_and_grid_search(released_l6) -> None:
    step = SatCLIPEmbedding(released_l6, device="cpu", dtype="float64", batch_size=7)
    assert step.get_params() == {
        "model": released_l6,
        "device": "cpu",
        "dtype": "float64",
        "batch_size": 7,
        "lon": None,
        "lat": None,
    }
    twin = clone(step)
    assert twin is not step and twin.get_params() == step.get_params()

    pts = _points(700, seed=1)
    # A target that is a linear function of the embedding: a pipeline with ridge must recover it.
    w = np.random.default_rng(2).normal(size=256)
    y = satclip.encode(pts, released_l6, device="cpu", dtype="float64") @ w
    pipe = make_pipeline(
        SatCLIPEmbedding(released_l6, device="cpu", dtype="float64"), RidgeCV(alphas=[1e-8, 1e-6, 1e-3])
    )
    pipe.fit(pts[:500], y[:500])
    assert pipe.score(pts[500:], y[500:]) > 0.999

    other = _points(5, seed=3)
    grid = GridSearchCV(
        make_pipeline(SatCLIPEmbedding(released_l6, device="cpu"), Ridge()),
        {"satclipembedding__dtype": ["float32", "float64"], "ridge__alpha": [1e-6, 100.0]},
        cv=3,
    )
    grid.fit(pts, y)
    assert grid.best_params_["ridge__alpha"] == 1e-6
    assert grid.predict(other).shape == (5,)


def test_bad_inputs_are_clear_errors(released_l6) -> None:
    step = SatCLIPEmbedding(released_l6, device="cpu")
    with pytest.raises(ShapeError, match="3 feature"):
        step.fit(np.zeros((4, 3)))
    with pytest.raises(CoordinateError, match="NaN"):
        step.transform(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    with pytest.raises(CoordinateError, match="latitude"):
        step.transform(np.array([[10.0, 120.0]]))
    with pytest.raises(ShapeError, match="no latitude column"):
        step.transform(pd.DataFrame({"lon": [1.0], "height": [2.0]}))


def test_check_estimator_where_it_applies(released_l6) -> None:
    """Every sklearn check passes except those that feed non-lon/lat data; those are listed with the
    reason in NOT_APPLICABLE_CHECKS, and each of them does fail (so the list stays honest)."""
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(SatCLIPEmbedding(released_l6, device="cpu"), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert failed == set(NOT_APPLICABLE_CHECKS)
    assert len(passed) >= 15, passed  # e.g. clone, get_params, sparse refusal, empty data, complex data


def test_feature_names_follow_sklearn_conventions(released_l6) -> None:
    import warnings

    pts = _points(20, seed=3)
    expected = satclip.encode(pts, released_l6, device="cpu", dtype="float64")
    frame = pd.DataFrame({"station": range(20), "Latitude": pts[:, 1], "Longitude": pts[:, 0]})
    step = SatCLIPEmbedding(released_l6, device="cpu", dtype="float64").fit(frame)
    assert step.feature_names_in_.tolist() == ["Longitude", "Latitude"] and step.n_features_in_ == 2
    with pytest.warns(UserWarning, match="X does not have valid feature names, but SatCLIPEmbedding was fitted"):
        np.testing.assert_array_equal(step.transform(pts), expected)
    with pytest.raises(ValueError, match="feature names should match those that were passed during fit"):
        step.transform(pd.DataFrame({"lon": pts[:, 0], "lat": pts[:, 1]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same columns (in any order, extra columns ignored): no warning
        np.testing.assert_array_equal(step.transform(frame[["Longitude", "station", "Latitude"]]), expected)

    on_array = SatCLIPEmbedding(released_l6, device="cpu", dtype="float64").fit(pts)
    assert not hasattr(on_array, "feature_names_in_") and on_array.n_features_in_ == 2
    with pytest.warns(UserWarning, match="X has feature names, but SatCLIPEmbedding was fitted without"):
        on_array.transform(frame)


def test_pandas_output_has_the_columns_of_satclips_wide_tables(released_l6) -> None:
    from satclip.io.tables import embedding_column_names

    pts = _points(10, seed=4)
    step = SatCLIPEmbedding(released_l6, device="cpu", dtype="float64").set_output(transform="pandas")
    out = step.fit_transform(pd.DataFrame({"lon": pts[:, 0], "lat": pts[:, 1]}))
    # The names `satclip encode --layout wide` and satclip.dask's wide layout write.
    assert list(out.columns) == embedding_column_names(256) == [f"emb_{i}" for i in range(256)]
    np.testing.assert_array_equal(out.to_numpy(), satclip.encode(pts, released_l6, device="cpu", dtype="float64"))
