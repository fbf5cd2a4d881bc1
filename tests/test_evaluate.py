"""satclip.downstream.probes: spatial-block CV on the sphere and cross-validated probes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import satclip
from satclip.downstream.probes import assign_folds, baseline_features, probe, spatial_blocks


def _points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))])


def test_spatial_cv_never_splits_a_block() -> None:
    pts = _points(5000)
    test_fold, block = assign_folds(pts, 5, cv="spatial", n_blocks=60, seed=3)
    for b in np.unique(block):
        assert len(np.unique(test_fold[block == b])) == 1, f"block {b} is in several folds"
    # So for every fold, no block has points on both sides of the split.
    for k in range(5):
        assert not set(block[test_fold == k]) & set(block[test_fold != k])
    counts = np.bincount(test_fold)
    assert counts.min() > 0.6 * counts.max()  # blocks are dealt to balance the folds


def test_blocks_are_equal_area_cells_on_the_sphere() -> None:
    # Uniform points on the sphere fill equal-area cells equally (Poisson spread ~ 1/sqrt(200) = 7 %);
    # 10x10-degree-style boxes would hold ~10x fewer points near the poles than at the equator.
    block = spatial_blocks(_points(20000, seed=1), 100)
    counts = np.bincount(block, minlength=100)
    assert counts.std() / counts.mean() < 0.15
    # Neighbours across the antimeridian and around a pole share a block.
    near = np.array([[179.99, 60.0], [-179.99, 60.0], [0.0, 89.99], [180.0, 89.99], [90.0, 89.99]])
    b = spatial_blocks(near, 100)
    assert b[0] == b[1] and b[2] == b[3] == b[4]


def test_ridge_recovers_a_linear_function_of_the_sh_features() -> None:
    pts = _points(3000, seed=2)
    sh = satclip.spherical_harmonics(pts, 10)
    y = sh @ np.random.default_rng(5).normal(size=sh.shape[1])
    for cv in ("random", "spatial"):
        res = probe(baseline_features(pts, "sh", L=10), pts, y, head="ridge", cv=cv)
        assert res.mean["r2"] >= 0.99, (cv, res.mean)
        assert len(res.folds) == 5
        raw = probe(baseline_features(pts, "lonlat"), pts, y, head="ridge", cv=cv)
        assert raw.mean["r2"] < 0.3, (cv, raw.mean)  # a linear map of lon/lat cannot follow degree-10 structure


def test_scores_match_sklearn_metrics_on_the_same_folds() -> None:
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import mean_squared_error, r2_score
    from sklearn.model_selection import PredefinedSplit, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pts = _points(800, seed=4)
    X = baseline_features(pts, "xyz")
    y = np.sin(np.radians(pts[:, 1])) * 3 + np.random.default_rng(0).normal(size=800)
    res = probe(X, pts, y, cv="spatial", seed=1)
    pred = cross_val_predict(
        make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-8, 4, 25))), X, y, cv=PredefinedSplit(res.test_fold)
    )
    for k, fold in enumerate(res.folds):
        t = res.test_fold == k
        assert fold["r2"] == pytest.approx(r2_score(y[t], pred[t]), rel=1e-9)
        assert fold["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y[t], pred[t])), rel=1e-9)


def test_classification_and_heads() -> None:
    pts = _points(1500, seed=6)
    labels = np.where(pts[:, 1] > 0, "north", "south")
    X = baseline_features(pts, "xyz")
    for head in ("logistic", "ridge", "knn"):
        res = probe(X, pts, labels, task="classification", head=head, cv="spatial")
        assert res.mean["accuracy"] > 0.9 and res.mean["macro_f1"] > 0.9, (head, res.mean)
    mlp = probe(X, pts, np.sin(np.radians(pts[:, 1])), head="mlp", folds=3)
    assert mlp.mean["r2"] > 0.9


def test_model_input_equals_precomputed_embeddings(make_checkpoint) -> None:
    ckpt = make_checkpoint(4)
    pts = _points(400, seed=7)
    y = pts[:, 1] ** 2
    emb = satclip.encode(pts, ckpt, device="cpu")
    a = probe(str(ckpt), pts, y, cv="spatial", device="cpu")
    b = probe(emb, pts, y, cv="spatial")
    assert a.mean == pytest.approx(b.mean)


def test_dataframe_target_column_and_bad_inputs() -> None:
    pts = _points(200, seed=8)
    frame = pd.DataFrame({"Lon": pts[:, 0], "Lat": pts[:, 1], "meanT": pts[:, 1] * 0.5})
    X = baseline_features(pts, "xyz")
    assert probe(X, frame, "meanT").mean["r2"] > 0.9
    with pytest.raises(ValueError, match="no target column 'temp'"):
        probe(X, frame, "temp")
    y = frame["meanT"].to_numpy().copy()
    y[17] = np.nan
    with pytest.raises(ValueError, match=r"1 missing .* row 17"):
        probe(X, pts, y)
    with pytest.raises(ValueError, match="unknown head 'forest'"):
        probe(X, pts, frame["meanT"], head="forest")
    with pytest.raises(ValueError, match="logistic"):
        probe(X, pts, frame["meanT"], head="logistic")
    with pytest.raises(ValueError, match="unknown cv"):
        probe(X, pts, frame["meanT"], cv="blocks")
    with pytest.raises(ValueError, match=r"expected shape \(200,\)"):
        probe(X, pts, np.zeros(199))
    with pytest.raises(ValueError, match="at least 5 occupied blocks"):
        probe(X[:20], pts[:20] * 0.001, np.arange(20.0), cv="spatial")  # all in one small region


@pytest.mark.parametrize("bad", [(400.0, 10.0), (10.0, -95.0), (np.nan, 0.0), (0.0, np.inf)])
def test_bad_coordinates_are_reported_as_encode_reports_them(bad: tuple[float, float]) -> None:
    # One owner of coordinate errors: the probe's message, row and column are the Rust core's.
    pts = _points(40, seed=3)
    pts[23] = bad
    X = baseline_features(_points(40, seed=3), "xyz")
    with pytest.raises(satclip.errors.CoordinateError) as from_probe:
        probe(X, pts, np.arange(40.0))
    with pytest.raises(satclip.errors.CoordinateError) as from_core:
        satclip.spherical_harmonics(pts, 2)
    assert str(from_probe.value) == str(from_core.value)
    assert from_core.value.row == 23
    assert (from_probe.value.row, from_probe.value.column) == (from_core.value.row, from_core.value.column)


def _labels(pts: np.ndarray) -> np.ndarray:
    return np.where(pts[:, 1] > 0, "north", "south").astype(object)


def test_missing_class_labels_are_named_by_row_before_any_fitting() -> None:
    pts = _points(120, seed=11)
    X = baseline_features(pts, "xyz")
    for missing in (np.nan, None, "", pd.NA):
        y = _labels(pts)
        y[7] = missing
        with pytest.raises(satclip.errors.ProbeError, match=r"1 missing target\(s\).*row 7"):
            probe(X, pts, y, task="classification")
    # The same through a DataFrame column read from a CSV with one empty cell.
    frame = pd.DataFrame({"lon": pts[:, 0], "lat": pts[:, 1], "biome": _labels(pts)})
    frame.loc[frame.index[9], "biome"] = np.nan
    with pytest.raises(satclip.errors.ProbeError, match="row 9"):
        probe(X, frame, "biome", task="classification")
    nullable = pd.array(np.where(pts[:, 1] > 0, 1, 0), dtype="Int64")
    nullable[3] = pd.NA
    with pytest.raises(satclip.errors.ProbeError, match="row 3"):
        probe(X, pts, nullable, task="classification")


def test_target_kind_must_match_the_task() -> None:
    pts = _points(120, seed=12)
    X = baseline_features(pts, "xyz")
    with pytest.raises(satclip.errors.DTypeError, match=r"continuous numbers \(row 0: .*task='regression'"):
        probe(X, pts, pts[:, 1], task="classification")
    with pytest.raises(satclip.errors.DTypeError, match=r"regression.*row 0 is 'south'.*task='classification'"):
        probe(X, pts, _labels(pts))
    mixed = _labels(pts)
    mixed[5] = 3
    with pytest.raises(satclip.errors.DTypeError, match="mixes label types.*int at row 5"):
        probe(X, pts, mixed, task="classification")
    # Labels of one type work whatever the type: strings score as their integer codes do.
    codes = (pts[:, 1] > 0).astype(int)
    as_text = probe(X, pts, _labels(pts), task="classification", head="logistic")
    as_codes = probe(X, pts, codes, task="classification", head="logistic")
    assert as_text.folds == as_codes.folds
    assert probe(X, pts, codes.astype(float), task="classification").mean["accuracy"] > 0.9


@pytest.mark.parametrize("head", ["ridge", "logistic", "knn", "mlp"])
def test_a_training_fold_with_one_class_is_named(head: str) -> None:
    pts = _points(60, seed=13)
    X = baseline_features(pts, "xyz")
    test_fold, _ = assign_folds(pts, 3, cv="random", seed=0)
    # Class "b" only in fold 1: fold 1's training points are all "a".
    y = np.where(test_fold == 1, "b", "a")
    with pytest.raises(satclip.errors.ProbeError, match=r"fold 1 \(trained on the 40 points.*only the class 'a'"):
        probe(X, pts, y, task="classification", head=head, folds=3, cv="random", seed=0)


def test_constant_regression_target_and_bad_arguments_are_probe_errors() -> None:
    pts = _points(30, seed=14)
    X = baseline_features(pts, "xyz")
    with pytest.raises(satclip.errors.ProbeError, match="y is 1.5 at every point"):
        probe(X, pts, np.array(["1.5"] * 30, dtype=object))
    with pytest.raises(satclip.errors.ProbeError, match="5 folds need at least 5 points, got 3"):
        probe(X[:3], pts[:3], np.arange(3.0))
    with pytest.raises(satclip.errors.ProbeError, match="unknown head"):
        probe(X, pts, np.arange(30.0), head="forest")


def test_compare_passes_the_buffer_and_checks_it_before_encoding() -> None:
    pts = _points(600, seed=4)
    y = np.sin(np.radians(pts[:, 1]) * 2)
    calls = []

    def encoder(lonlat):
        calls.append(len(lonlat))
        return np.radians(np.asarray(lonlat, dtype=np.float64))

    with pytest.raises(satclip.errors.ProbeError, match="buffer_km"):
        satclip.compare(pts, y, [encoder], cv="spatial", folds=3, n_blocks=20, buffer_km=-5)
    assert calls == []  # refused before any encoder ran
    result = satclip.compare(pts, y, [encoder], cv="spatial", folds=3, n_blocks=20, buffer_km=300)
    (res,) = result.results.values()
    outside = [int((res.test_fold != k).sum()) for k in range(3)]
    assert res.buffer_km == 300 and all(n <= m for n, m in zip(res.n_train, outside, strict=True))
    assert sum(res.n_train) < sum(outside)
    assert result.table().splitlines()[0].endswith("600 points, 300 km buffer")
