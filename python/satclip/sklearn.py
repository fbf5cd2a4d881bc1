"""scikit-learn transformer: SatCLIP location embeddings as a pipeline step (the ``eval`` extra).

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import RidgeCV
    >>> from satclip.sklearn import SatCLIPEmbedding
    >>> pipe = make_pipeline(SatCLIPEmbedding("resnet50-l40"), RidgeCV())   # doctest: +SKIP
    >>> pipe.fit(lonlat_train, y_train).score(lonlat_test, y_test)           # doctest: +SKIP

:class:`SphericalBlockKFold` (from :mod:`satclip.downstream.spatial_cv`) is the matching
cross-validation splitter: folds of whole equal-area blocks of the sphere, optionally with a
buffer, for ``cross_validate`` and ``GridSearchCV``.

The transformer is stateless: ``fit`` only validates its input (and records ``n_features_in_``,
which is always 2), ``transform`` is :func:`satclip.encode`. The model is loaded on the first
``transform`` and kept in :func:`satclip.encode`'s cache, so cloning the step (``GridSearchCV``,
``cross_val_score``) does not reload it.

scikit-learn's ``check_estimator``: the checks that apply pass (see ``tests/test_sklearn.py``);
those that cannot apply to a transformer whose input is *exactly* two columns, longitude and
latitude in degrees, are listed in :data:`NOT_APPLICABLE_CHECKS` with the reason.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from satclip.errors import CoordinateError, ShapeError

try:
    from sklearn.base import BaseEstimator, TransformerMixin
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("satclip.sklearn needs scikit-learn: pip install 'satclip[eval]'") from err

from satclip.downstream.spatial_cv import SphericalBlockKFold

#: check_estimator checks that do not apply, and why (they feed inputs that are not lon/lat).
_NOT_LONLAT = "feeds X with 3 or more columns; the input is exactly two columns (lon, lat), others are refused"
NOT_APPLICABLE_CHECKS: dict[str, str] = {
    **{
        name: _NOT_LONLAT
        for name in (
            "check_fit_score_takes_y",
            "check_dont_overwrite_parameters",
            "check_n_features_in_after_fitting",
            "check_positive_only_tag_during_fit",
            "check_estimators_dtypes",
            "check_dtype_object",
            "check_pipeline_consistency",
            "check_estimators_nan_inf",
            "check_estimators_pickle",
            "check_f_contiguous_array_estimator",
            "check_transformer_data_not_an_array",
            "check_transformer_general",
            "check_transformer_preserve_dtypes",
            "check_transformers_unfitted_stateless",
            "check_methods_sample_order_invariance",
            "check_methods_subset_invariance",
            "check_dict_unchanged",
            "check_fit2d_predict1d",
            "check_fit2d_1sample",
        )
    },
    "check_fit_idempotent": "draws latitudes beyond +-90 degrees, which are refused as invalid coordinates",
}


class SatCLIPEmbedding(TransformerMixin, BaseEstimator):
    """Embeds ``[lon, lat]`` points (degrees) with a SatCLIP location encoder.

    Parameters
    ----------
    model:
        Anything :func:`satclip.encode` accepts: a short name (``"resnet50-l40"``), a Hub repository,
        a checkpoint path, a :class:`satclip.LocationEncoder`, a built-in encoder (``"geoclip"``,
        ``"sh-L10"``, ``"wrap"``..., see :mod:`satclip.models.encoders`) or any module or callable mapping
        (N, 2) [lon, lat] to (N, D).
    device:
        ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
    dtype:
        ``"float32"`` (default) or ``"float64"``.
    batch_size:
        Points per batch, ``None`` for :func:`satclip.encode`'s memory-sized default.
    lon, lat:
        Column names when ``X`` is a DataFrame; ``None`` finds them by the usual names (``lon``/``lat``,
        ``longitude``/``latitude``, ... any case).

    Notes
    -----
    ``X`` is an ``(N, 2)`` array of ``[lon, lat]`` or a pandas DataFrame with longitude and latitude
    columns (other columns are ignored). ``transform`` returns ``(N, embed_dim)`` embeddings.
    """

    def __init__(
        self,
        model: Any = "resnet50-l40",
        *,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int | None = None,
        lon: Any = None,
        lat: Any = None,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.lon = lon
        self.lat = lat

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # stateless: the embedding does not depend on the training data
        tags.input_tags.allow_nan = False
        return tags

    def fit(self, X: Any, y: Any = None) -> SatCLIPEmbedding:
        """Validates ``X`` (nothing is learned); returns ``self``.

        Records ``n_features_in_`` (2) and, for a DataFrame, ``feature_names_in_``: the names of
        its longitude and latitude columns (other columns are ignored).
        """
        self._lonlat(X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The embeddings of the points of ``X``, ``(N, embed_dim)``.

        After ``fit`` on a DataFrame, an array ``X`` gives scikit-learn's "X does not have valid
        feature names" warning, and a DataFrame whose lon/lat columns have other names an error,
        as for any fitted scikit-learn estimator.
        """
        from satclip.embed.locations import encode

        points = self._lonlat(X, reset=False)
        emb = encode(points, self.model, device=self.device, dtype=self.dtype, batch_size=self.batch_size)
        self._embed_dim = emb.shape[1]
        return np.asarray(emb)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``emb_0 .. emb_{d-1}``, the column names of every wide embedding table satclip writes
        (:func:`satclip.io.tables.embedding_column_names`); loads the model to learn ``d`` if
        nothing was transformed yet."""
        from satclip.io.tables import embedding_column_names

        dim = getattr(self, "_embed_dim", None)
        if dim is None:
            from satclip.embed.locations import encode

            dim = encode(np.zeros((1, 2)), self.model, device=self.device, dtype=self.dtype).shape[1]
        return np.asarray(embedding_column_names(dim), dtype=object)

    def _lonlat(self, X: Any, *, reset: bool) -> np.ndarray:
        """``X`` validated as (N, 2) float64 degrees. ``reset`` (fit) records the input's feature
        names and count with scikit-learn's own helper; otherwise (transform) a fitted
        transformer checks them against the recorded ones the same way."""
        from sklearn.utils.validation import validate_data

        if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError("sparse input is not supported: X must be a dense (N, 2) [lon, lat] array")
        pandas = sys.modules.get("pandas")
        # The stateless transformer may transform without fit: nothing recorded, nothing to check.
        check_names = reset or hasattr(self, "n_features_in_")
        if pandas is not None and isinstance(X, pandas.DataFrame):
            from satclip.points.columns import find_lonlat_columns

            lon, lat = find_lonlat_columns(list(X.columns), self.lon, self.lat)
            X = X[[lon, lat]]
            if check_names:
                validate_data(self, X, reset=reset, skip_check_array=True)
                check_names = False
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.iscomplexobj(X):
            raise ValueError("Complex data not supported: X must be real [lon, lat] degrees")
        try:
            array = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"X must be numbers ([lon, lat] in degrees): {err}") from None
        bad = ~np.isfinite(array)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise CoordinateError(f"X has a non-finite value (NaN or inf) at index {tuple(int(i) for i in where)}")
        if array.ndim != 2 or array.shape[1] != 2:
            features = (
                f"{array.shape[1]} feature(s) (shape={array.shape})" if array.ndim == 2 else f"shape {array.shape}"
            )
            raise ShapeError(
                f"X must be (N, 2) [lon, lat] in degrees (or a DataFrame with lon/lat columns), got {features} "
                f"while a minimum of 2 is required and a maximum of 2 allowed"
            )
        if array.shape[0] == 0:
            raise ValueError("X has 0 samples (shape (0, 2)); a minimum of 1 is required")
        if check_names:
            validate_data(self, array, reset=reset, skip_check_array=True)
        return array


__all__ = ["NOT_APPLICABLE_CHECKS", "SatCLIPEmbedding", "SphericalBlockKFold"]
