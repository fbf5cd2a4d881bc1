"""Linear and small non-linear probes of location embeddings (the ``eval`` extra: scikit-learn).

    >>> from satclip.downstream.probes import probe
    >>> result = probe("resnet50-l40", lonlat, y, head="ridge", cv="spatial")   # doctest: +SKIP
    >>> result.mean                                                             # doctest: +SKIP
    {'r2': 0.83, 'rmse': 2.1}

The protocol users compare encoders with: embed the points, fit a head on some folds, score it on
the held-out fold. ``cv="random"`` is shuffled k-fold. ``cv="spatial"`` holds out whole regions so
a probe cannot score by interpolating between neighbours: the sphere is cut into ``n_blocks``
cells of (nearly) equal area - the Voronoi cells of a Fibonacci lattice, each point belongs to
its nearest lattice point by great-circle distance - and whole cells are dealt to the folds.
Cells in degrees (lon/lat boxes) would shrink towards the poles and split polar clusters at the
antimeridian; these do neither. The folds and the optional ``buffer_km`` (training points that
close to a test point are left out of that fold's training set) are those of the scikit-learn
splitter :class:`satclip.downstream.spatial_cv.SphericalBlockKFold`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from satclip.errors import DTypeError, ProbeError, SatclipError, ShapeError, first_line
from satclip.points.sphere import fibonacci_centres
from satclip.points.sphere import lonlat_to_xyz as unit_vectors

TASKS = ("regression", "classification")
HEADS = ("ridge", "logistic", "knn", "mlp")
CVS = ("random", "spatial")

#: Default number of spatial blocks: cells of ~5.1 million km^2 (about 2,300 km across).
DEFAULT_BLOCKS = 100


@dataclass
class ProbeResult:
    """Scores of one probe: ``folds`` (one dict per fold) and ``mean`` over the folds.

    Regression scores are ``r2`` and ``rmse``; classification scores ``accuracy`` and ``macro_f1``.
    ``test_fold[i]`` is the fold in which point ``i`` was held out; ``block[i]`` its spatial block
    (``-1`` everywhere for random CV). ``n_train[k]`` is the number of points fold ``k``'s head was
    trained on (fewer than outside the fold when ``buffer_km`` left some out).
    """

    task: str
    head: str
    cv: str
    folds: list[dict[str, float]]
    mean: dict[str, float]
    test_fold: np.ndarray = field(repr=False)
    block: np.ndarray = field(repr=False)
    buffer_km: float = 0.0
    n_train: list[int] = field(default_factory=list, repr=False)


def spatial_blocks(lonlat: Any, n_blocks: int = DEFAULT_BLOCKS) -> np.ndarray:
    """The equal-area block (0 .. n_blocks-1) of each point: its nearest Fibonacci-lattice centre."""
    points = _check_lonlat(lonlat)
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)) or n_blocks < 2:
        raise ProbeError(f"n_blocks must be an integer >= 2, got {n_blocks!r}")
    centres = fibonacci_centres(int(n_blocks))
    xyz = unit_vectors(points)
    out = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), 65536):  # bounded memory: (chunk, n_blocks) dot products
        out[start : start + 65536] = np.argmax(xyz[start : start + 65536] @ centres.T, axis=1)
    return out


def assign_folds(
    lonlat: Any,
    folds: int = 5,
    *,
    cv: str = "spatial",
    n_blocks: int = DEFAULT_BLOCKS,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(test_fold, block)`` per point. Spatial: whole blocks go to one fold, dealt in random order to
    the fold with the fewest points so far (balanced point counts). Random: shuffled k-fold.
    ``seed`` seeds ``numpy.random.default_rng`` (a Generator is used as it is)."""
    points = _check_lonlat(lonlat)
    n = len(points)
    folds = _check_folds(folds, n)
    rng = np.random.default_rng(seed)
    if cv == "random":
        test_fold = np.empty(n, dtype=np.int64)
        test_fold[rng.permutation(n)] = np.arange(n) % folds
        return test_fold, np.full(n, -1, dtype=np.int64)
    if cv != "spatial":
        raise ProbeError(f"unknown cv {cv!r}: use one of {', '.join(CVS)}")
    block = spatial_blocks(points, n_blocks)
    occupied, counts = np.unique(block, return_counts=True)
    if len(occupied) < folds:
        raise ProbeError(
            f"spatial CV needs at least {folds} occupied blocks, the points fall in {len(occupied)} of "
            f"{n_blocks}; use more blocks (n_blocks) or fewer folds"
        )
    order = rng.permutation(len(occupied))
    load = np.zeros(folds, dtype=np.int64)
    fold_of_block = {}
    for j in order:
        k = int(np.argmin(load))
        fold_of_block[int(occupied[j])] = k
        load[k] += counts[j]
    test_fold = np.array([fold_of_block[int(b)] for b in block], dtype=np.int64)
    return test_fold, block


def baseline_features(lonlat: Any, kind: str, *, L: int = 10, legendre_polys: int | None = None) -> np.ndarray:
    """Raw-coordinate features to compare embeddings against: ``"lonlat"`` (degrees), ``"xyz"``
    (unit vectors) or ``"sh"`` (the real spherical harmonics with ``L`` Legendre degrees, the
    encoder's input without its network). ``legendre_polys`` is the deprecated name of ``L``."""
    from satclip.harmonics.values import renamed_legendre_polys

    L = renamed_legendre_polys(L, legendre_polys, "baseline_features")  # type: ignore[assignment]
    points = _check_lonlat(lonlat)
    if kind == "lonlat":
        return points.copy()
    if kind == "xyz":
        return unit_vectors(points)
    if kind == "sh":
        from satclip.harmonics.values import spherical_harmonics

        return np.asarray(spherical_harmonics(np.ascontiguousarray(points), L))
    raise ProbeError(f"unknown baseline {kind!r}: use lonlat, xyz or sh")


def probe(
    embeddings: Any,
    lonlat: Any,
    y: Any,
    *,
    task: str = "regression",
    head: str = "ridge",
    cv: str = "random",
    folds: int = 5,
    n_blocks: int = DEFAULT_BLOCKS,
    seed: int = 0,
    buffer_km: float | None = None,
    device: str | None = None,
) -> ProbeResult:
    """Cross-validated probe of location features for target ``y``.

    Parameters
    ----------
    embeddings:
        An ``(N, D)`` feature array (embeddings or a :func:`baseline_features` result), or a model
        (anything :func:`satclip.encode` accepts), which is then used to embed ``lonlat``.
    lonlat:
        ``(N, 2)`` ``[lon, lat]`` degrees, or a DataFrame with lon/lat columns (then ``y`` may be a
        column name).
    y:
        ``(N,)`` targets: numbers for regression, labels for classification.
    task, head, cv, folds:
        ``head`` is ``"ridge"`` (RidgeCV; RidgeClassifierCV for classification), ``"logistic"``
        (classification only), ``"knn"`` (10 neighbours) or ``"mlp"`` (64 hidden units, Adam 1e-3).
        Features are standardised on each training fold.
    n_blocks, seed:
        Spatial blocks on the sphere (see the module notes) and the seed of the fold assignment.
    buffer_km:
        Leave out of each fold's training set the points within this great-circle distance (km)
        of one of its test points (either ``cv``); ``None`` or 0: none are left out.
    """
    if task not in TASKS:
        raise ProbeError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    if head not in HEADS:
        raise ProbeError(f"unknown head {head!r}: use one of {', '.join(HEADS)}")
    if head == "logistic" and task == "regression":
        raise ProbeError("head 'logistic' is for classification; use ridge, knn or mlp for regression")
    if cv not in CVS:
        raise ProbeError(f"unknown cv {cv!r}: use one of {', '.join(CVS)}")
    from satclip.downstream.spatial_cv import SphericalBlockKFold, _check_buffer, buffered_splits

    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(lonlat, pandas.DataFrame):
        frame = lonlat
        if isinstance(y, str):
            if y not in frame.columns:
                raise ShapeError(f"no target column {y!r}; the columns are {[str(c) for c in frame.columns]}")
            y = frame[y]
        from satclip.points.columns import frame_lonlat

        lonlat = frame_lonlat(frame)
    points = _check_lonlat(lonlat)
    n = len(points)
    target = _check_target(y, n, task)
    folds = _check_folds(folds, n)
    buffer = _check_buffer(buffer_km)
    X = _features(embeddings, points, device)
    if cv == "spatial":
        test_fold, block = SphericalBlockKFold(folds, n_blocks=n_blocks, random_state=seed).assign(points)
    else:
        test_fold, block = assign_folds(points, folds, cv=cv, n_blocks=n_blocks, seed=seed)
    scores, n_trained = [], []
    for k, (train, test) in enumerate(buffered_splits(points, test_fold, buffer)):
        n_train = len(train)
        n_trained.append(n_train)
        outside = f"the {n_train} points outside it" if not buffer else f"{n_train} points beyond {buffer:g} km of it"
        where = f"fold {k} (trained on {outside}, {cv} CV)"
        if task == "classification":
            classes = np.unique(target[train])
            if len(classes) < 2:
                # Every head would fail or, worse, learn to predict one class for everything.
                raise ProbeError(
                    f"{where}: the training points hold only the class {_plain(classes[0])!r}, a classifier "
                    f"needs at least two; use fewer folds, more spatial blocks, or cv='random'"
                )
        model = _make_head(task, head, seed, n_train=n_train)
        try:
            model.fit(X[train], target[train])
            predicted = model.predict(X[test])
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
            raise ProbeError(
                f"{where}: head {head!r} could not be fitted: {type(err).__name__}: {first_line(err)}"
            ) from None
        scores.append(_score(task, target[test], predicted))
    mean = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
    return ProbeResult(task, head, cv, scores, mean, test_fold, block, buffer, n_trained)


@dataclass
class Comparison:
    """Probes of several encoders on the same folds (:func:`compare`).

    ``results[label]`` is each encoder's :class:`ProbeResult`; ``encode_seconds`` the time its
    embeddings took (once for all folds) and ``fit_seconds`` the time of its probe's fits and
    predictions over the folds. :meth:`table` formats them; :meth:`plot` draws a bar chart.
    """

    results: dict[str, ProbeResult]
    encode_seconds: dict[str, float]
    fit_seconds: dict[str, float]
    dims: dict[str, int]
    n: int

    @property
    def metric(self) -> str:
        """The headline score: ``r2`` for regression, ``accuracy`` for classification."""
        first = next(iter(self.results.values()))
        return "r2" if first.task == "regression" else "accuracy"

    def scores(self, metric: str | None = None) -> dict[str, tuple[float, float]]:
        """``label -> (mean, standard deviation)`` of ``metric`` over the folds."""
        key = metric or self.metric
        return {
            label: (float(np.mean([f[key] for f in r.folds])), float(np.std([f[key] for f in r.folds])))
            for label, r in self.results.items()
        }

    def renamed(self, names: dict[str, str]) -> Comparison:
        """The same comparison with its rows relabelled ``old -> new``."""

        def re(part: dict[str, Any]) -> dict[str, Any]:
            return {names.get(k, k): v for k, v in part.items()}

        return Comparison(re(self.results), re(self.encode_seconds), re(self.fit_seconds), re(self.dims), self.n)

    def table(self) -> str:
        """One row per encoder: each score's mean ± spread (standard deviation over the folds), the
        embedding size, and the encode and fit times."""
        first = next(iter(self.results.values()))
        keys = list(first.mean)
        header = f"{first.task}: {first.head} head, {len(first.folds)}-fold {first.cv} CV, {self.n} points"
        if first.buffer_km:
            header += f", {first.buffer_km:g} km buffer"
        width = max(12, *(len(label) for label in self.results))
        lines = [
            header,
            f"{'encoder':<{width}}  {'dim':>5}  "
            + "  ".join(f"{k:>16}" for k in keys)
            + f"  {'encode s':>9}  {'fit s':>7}",
        ]
        for label, res in self.results.items():
            cells = []
            for k in keys:
                values = np.array([f[k] for f in res.folds])
                cells.append(f"{values.mean():>9.4f} ± {values.std():<5.3f}")
            lines.append(
                f"{label:<{width}}  {self.dims[label]:>5}  "
                + "  ".join(cells)
                + f"  {self.encode_seconds[label]:>9.2f}  {self.fit_seconds[label]:>7.2f}"
            )
        return "\n".join(lines)

    def plot(self, path: Any, *, metric: str | None = None, title: str | None = None) -> Any:
        """A bar chart of ``metric`` (mean, with the spread over folds as error bars) written to
        ``path`` (PNG, PDF or SVG; needs matplotlib, the ``maps`` extra). Returns the figure."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            from satclip.errors import MissingExtraError

            raise MissingExtraError("a comparison chart needs matplotlib: pip install 'satclip[maps]'") from None
        key = metric or self.metric
        scores = self.scores(key)
        labels = list(scores)
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 3.6), dpi=100)
        ax.bar(range(len(labels)), [m for m, _ in scores.values()], yerr=[s for _, s in scores.values()], capsize=4)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        first = next(iter(self.results.values()))
        ax.set_ylabel(f"{key} ({len(first.folds)}-fold {first.cv} CV)")
        ax.set_title(title or f"{first.head} probe, {self.n} points")
        ax.axhline(0, color="black", linewidth=0.6)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return fig


def compare(
    lonlat: Any,
    y: Any,
    encoders: Any,
    *,
    task: str = "regression",
    head: str = "ridge",
    cv: str = "spatial",
    folds: int = 5,
    n_blocks: int = DEFAULT_BLOCKS,
    seed: int = 0,
    buffer_km: float | None = None,
    device: str | None = None,
    plot: Any = None,
) -> Comparison:
    """Probes of several location encoders on the same folds, in one call.

    ``encoders`` is a list of anything :func:`satclip.encode` takes (SatCLIP model names and
    checkpoints, built-in encoders such as ``"geoclip"``, ``"sh-L10"``, ``"wrap"``,
    ``"cartesian3d"``, ``"lonlat"``, modules and callables) or ``(N, D)`` feature arrays, or a dict
    ``label -> encoder``. Each encoder embeds the points once; every fold of every probe uses
    those embeddings, and all probes share one fold assignment (``cv="spatial"`` by default).
    ``lonlat``, ``y`` and the probe options are those of :func:`probe`. ``plot``: a path for a bar
    chart of the headline score. Print ``result.table()`` for the table.
    """
    import time

    if isinstance(encoders, dict):
        items = [(str(k), v) for k, v in encoders.items()]
    else:
        if isinstance(encoders, str) or not hasattr(encoders, "__iter__"):
            encoders = [encoders]
        from satclip.models.encoders import label as encoder_label

        items = []
        for i, enc in enumerate(encoders):
            is_array = isinstance(enc, np.ndarray) or hasattr(enc, "detach")
            items.append((f"features {i}" if is_array else encoder_label(enc), enc))
    if not items:
        raise ProbeError("compare needs at least one encoder")
    labels = [label for label, _ in items]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):  # two encoders with one label get distinct rows
        seen[label] = seen.get(label, 0) + 1
        if labels.count(label) > 1:
            labels[i] = f"{label} #{seen[label]}"
    from satclip.models import encoders as builtins

    for _, enc in items:  # a misspelt name fails before any encoder runs
        if builtins.is_unknown_name(enc):
            raise builtins.unknown_encoder(enc)
        builtins.builtin_key(enc)
    points, target = _points_and_target(lonlat, y)
    common = dict(task=task, head=head, cv=cv, folds=folds, n_blocks=n_blocks, seed=seed, buffer_km=buffer_km)
    from satclip.downstream.spatial_cv import _check_buffer

    _check_buffer(buffer_km)  # these fail early, before any encoding
    assign_folds(points, folds, cv=cv, n_blocks=n_blocks, seed=seed)
    results, encode_s, fit_s, dims = {}, {}, {}, {}
    for label, (_, enc) in zip(labels, items, strict=True):
        start = time.perf_counter()
        X = _features(enc, points, device)
        encode_s[label] = time.perf_counter() - start
        dims[label] = int(X.shape[1])
        start = time.perf_counter()
        results[label] = probe(X, points, target, **common)  # type: ignore[arg-type]
        fit_s[label] = time.perf_counter() - start
    comparison = Comparison(results, encode_s, fit_s, dims, len(points))
    if plot is not None:
        comparison.plot(plot)
    return comparison


def _points_and_target(lonlat: Any, y: Any) -> tuple[np.ndarray, Any]:
    """``lonlat`` as (N, 2) degrees and ``y`` (a column name of a DataFrame ``lonlat`` is looked up)."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(lonlat, pandas.DataFrame):
        frame = lonlat
        if isinstance(y, str):
            if y not in frame.columns:
                raise ShapeError(f"no target column {y!r}; the columns are {[str(c) for c in frame.columns]}")
            y = frame[y]
        from satclip.points.columns import frame_lonlat

        lonlat = frame_lonlat(frame)
    return _check_lonlat(lonlat), y


# ----------------------------------------------------------------------------------------


def _features(embeddings: Any, points: np.ndarray, device: str | None) -> np.ndarray:
    if isinstance(embeddings, np.ndarray) or (
        type(embeddings).__module__.startswith("torch") and hasattr(embeddings, "ndim")
    ):
        X = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach") else embeddings, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(points):
            raise ShapeError(f"embeddings must be (N, D) with N = {len(points)} points, got shape {X.shape}")
    else:
        from satclip.embed.locations import encode

        X = np.asarray(encode(points, embeddings, device=device), dtype=np.float64)
    if not np.isfinite(X).all():
        row = int(np.argwhere(~np.isfinite(X))[0, 0])
        raise SatclipError(f"the features have a non-finite value at row {row}")
    return X


def _check_lonlat(lonlat: Any) -> np.ndarray:
    """Validated float64 (N, 2) degrees, longitudes in [-180, 180]: the points validator every
    entry point uses (0..360 accepted; the Rust core's messages)."""
    from satclip.points.arrays import valid_points

    return valid_points(lonlat)


def _check_target(y: Any, n: int, task: str) -> np.ndarray:
    target = _as_label_array(y)
    if target.ndim != 1 or len(target) != n:
        raise ShapeError(f"y must be one value per point: expected shape ({n},), got {target.shape}")
    missing = _missing(target)
    if missing.any():
        raise ProbeError(
            f"y has {int(missing.sum())} missing target(s) (empty, None or NaN), the first at row "
            f"{int(np.argmax(missing))}; drop or fill them first"
        )
    if task == "regression":
        if target.dtype.kind in "iufb":
            target = target.astype(np.float64)
        else:
            numbers = [_as_number(v) for v in target]
            bad = [i for i, v in enumerate(numbers) if v is None]
            if bad:
                raise DTypeError(
                    f"task='regression' needs numeric targets, but y at row {bad[0]} is {_plain(target[bad[0]])!r}; "
                    "for class labels use task='classification'"
                )
            target = np.asarray(numbers, dtype=np.float64)
        bad_rows = ~np.isfinite(target)
        if bad_rows.any():
            raise ProbeError(
                f"y has {int(bad_rows.sum())} non-finite target(s) (inf), the first at row "
                f"{int(np.argmax(bad_rows))}; drop or fill them first"
            )
        if n and np.all(target == target[0]):
            # Every fold's R^2 would be 0/0 (NaN): there is nothing for a probe to explain.
            raise ProbeError(
                f"y is {_plain(target[0])!r} at every point; a regression probe needs a target that varies"
            )
        return target
    if target.dtype.kind == "O":
        kinds: dict[str, int] = {}
        for i, v in enumerate(target):
            kinds.setdefault(type(v).__name__, i)
        if len({"str" if isinstance(v, str) else "number" for v in target}) > 1:
            raise DTypeError(
                f"y mixes label types ({', '.join(f'{k} at row {i}' for k, i in kinds.items())}); "
                "give every label the same type (e.g. all strings)"
            )
    if target.dtype.kind == "f":
        fractional = target != np.round(target)
        if fractional.any():
            row = int(np.argmax(fractional))
            raise DTypeError(
                f"task='classification' needs class labels, but y holds continuous numbers "
                f"(row {row}: {_plain(target[row])!r}); use task='regression' for them"
            )
    if target.dtype.kind == "c" or target.dtype.kind == "V":
        raise DTypeError(f"y must hold class labels (strings or integers), got dtype {target.dtype}")
    if len(np.unique(target)) < 2:
        raise ProbeError("classification needs at least two classes in y")
    return target


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (so messages show ``'a'``, not ``np.str_('a')``)."""
    return value.item() if isinstance(value, np.generic) else value


def _as_label_array(y: Any) -> np.ndarray:
    """``y`` as a NumPy array; pandas' nullable and Arrow-backed columns become object arrays
    with None for their missing values."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(y, (pandas.Series, pandas.Index, pandas.api.extensions.ExtensionArray)):
        values = pandas.Series(y)
        if isinstance(values.dtype, pandas.api.extensions.ExtensionDtype):
            return np.asarray(values.astype(object).where(values.notna(), None).to_numpy(dtype=object))
        return values.to_numpy()
    return np.asarray(y)


def _missing(target: np.ndarray) -> np.ndarray:
    """Which entries of ``target`` are missing: NaN, None, pandas' NA/NaT, or an empty string
    (what an empty CSV cell becomes)."""
    if target.dtype.kind == "f":
        return np.isnan(target)
    if target.dtype.kind in "US":
        return np.char.strip(target.astype(str)) == ""
    if target.dtype.kind != "O":
        return np.zeros(target.shape, dtype=bool)
    return np.fromiter((_is_missing(v) for v in target), dtype=bool, count=len(target))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


def _as_number(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating)):
        return float(value)
    if isinstance(value, str):  # numbers read from text, e.g. an object column of a CSV
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _make_head(task: str, head: str, seed: int, n_train: int) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeClassifierCV, RidgeCV
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    alphas = np.logspace(-8, 4, 25)
    regression = task == "regression"
    if head == "ridge":
        estimator = RidgeCV(alphas=alphas) if regression else RidgeClassifierCV(alphas=alphas)
    elif head == "logistic":
        estimator = LogisticRegression(max_iter=2000)
    elif head == "knn":
        k = max(1, min(10, n_train))
        estimator = KNeighborsRegressor(k) if regression else KNeighborsClassifier(k)
    else:
        mlp = MLPRegressor if regression else MLPClassifier
        estimator = mlp(
            hidden_layer_sizes=(64,), learning_rate_init=1e-3, max_iter=2000, early_stopping=False, random_state=seed
        )
    return make_pipeline(StandardScaler(), estimator)


def _score(task: str, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    if task == "regression":
        resid = truth - pred
        ss_tot = float(np.sum((truth - truth.mean()) ** 2))
        r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")
        return {"r2": r2, "rmse": float(np.sqrt(np.mean(resid**2)))}
    from sklearn.metrics import f1_score

    return {"accuracy": float(np.mean(truth == pred)), "macro_f1": float(f1_score(truth, pred, average="macro"))}


def _check_folds(folds: Any, n: int) -> int:
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ProbeError(f"folds must be an integer >= 2, got {folds!r}")
    if folds > n:
        raise ProbeError(f"{folds} folds need at least {folds} points, got {n}")
    return int(folds)
