"""``satclip.ray.SatCLIPEncoder``: a callable class for ``ray.data.Dataset.map_batches``.

    import ray, satclip.ray
    ds = ray.data.read_parquet("s3://bucket/points/")
    out = ds.map_batches(
        satclip.ray.SatCLIPEncoder,
        fn_constructor_kwargs={"model": "/shared/satclip-resnet50-l40.ckpt"},
        batch_size=65536, compute=ray.data.ActorPoolStrategy(size=8),
        num_gpus=1,                                      # or 0 (the default) for CPU actors
    )
    out.write_parquet("s3://bucket/embeddings/")

Ray builds one instance per actor, so the model is loaded once per actor (in ``__init__``)
and every batch that actor receives reuses it. The device defaults to CUDA when Ray gave the
actor a GPU (``num_gpus`` > 0), else the CPU; pass ``device=`` to choose. Batches may be
pandas DataFrames, dicts of NumPy arrays (``batch_format="numpy"``) or pyarrow Tables; the
result has the same type, with the embeddings added as one column ``embedding`` of shape
(rows, embed_dim) (a 2-D array in a NumPy batch, fixed-size lists in pandas/Arrow ones).

This module imports Ray only inside functions, so ``import satclip`` never pulls it in; the
class itself needs only satclip, so it can be built and called without Ray as well.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from satclip.errors import ShapeError
from satclip.io.tables import EMBEDDING_COLUMN

#: Column the embeddings are written to (the name of the list column ``satclip encode`` writes).
COLUMN = EMBEDDING_COLUMN


class SatCLIPEncoder:
    """Embeds the ``[lon, lat]`` of each batch with one model, loaded once per instance.

    Parameters
    ----------
    model:
        A released model name, a Hub repository, a ``.ckpt``/``.safetensors`` path readable by
        every actor, a built-in encoder (``"geoclip"``, ``"sh-L10"``, ``"wrap"``..., see
        :mod:`satclip.models.encoders`), or a :class:`~satclip.models.location.LocationEncoder`, any other module or a
        callable mapping (N, 2) [lon, lat] to (N, D) (Ray ships constructor arguments to each
        actor once).
    lon, lat:
        Column names; default the usual names (``lon``/``longitude``/``x``..., any case).
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when this actor was given a GPU
        (or, outside Ray, when one is visible), else CPU.
    dtype:
        ``"float32"`` (default) or ``"float64"`` embeddings.
    batch_size:
        Points per forward pass within a Ray batch (default: :func:`satclip.encode`'s).
    column:
        Name of the output column (default ``"embedding"``); it must not exist in the batch.
    """

    def __init__(
        self,
        model: Any = "resnet50-l40",
        *,
        lon: str | None = None,
        lat: str | None = None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int | None = None,
        column: str = COLUMN,
    ):
        import torch

        import satclip
        from satclip.dask import _numpy_dtype

        self.lon, self.lat, self.column = lon, lat, column
        self.np_dtype = _numpy_dtype(dtype)
        self.dtype, self.batch_size = dtype, batch_size
        self.device = torch.device(device) if device is not None else _default_device()
        if isinstance(model, torch.nn.Module) or (callable(model) and not isinstance(model, (str, os.PathLike))):
            self.model: Any = model  # not cached by satclip.encode: its weights are copied per batch
        else:
            text = os.fspath(model)
            self.model = os.path.abspath(text) if os.path.exists(text) else text
        # Load now (once per actor): satclip.encode keeps it in this process's model cache, so
        # every later batch is a cache hit. Also fails the actor early on a bad model.
        with _LOAD_LOCK:
            probe = satclip.encode(np.empty((0, 2)), self.model, device=self.device, dtype=self.dtype)
        self.embed_dim = int(probe.shape[1])

    def __call__(self, batch: Any) -> Any:
        """The batch (pandas, dict of NumPy arrays, or pyarrow Table) with the embeddings added."""
        import satclip

        kind, columns = _batch_kind(batch)
        if self.column in columns:
            raise ShapeError(f"the batch already has a column {self.column!r}; pass column= another name")
        from satclip.points.columns import find_lonlat_columns

        lon, lat = find_lonlat_columns(columns, self.lon, self.lat)
        points = _points(batch, kind, lon, lat)
        embeddings = np.asarray(  # a frame gives NumPy
            satclip.encode(
                points, self.model, device=self.device, dtype=self.dtype, batch_size=self.batch_size, progress=False
            )
        )
        return _with_column(batch, kind, self.column, embeddings)


_LOAD_LOCK = threading.Lock()


def _default_device() -> Any:
    """CUDA when Ray assigned this actor a GPU (or, outside a Ray worker, when one is visible)."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    try:
        import ray

        if ray.is_initialized():
            return torch.device("cuda") if ray.get_gpu_ids() else torch.device("cpu")
    except ImportError:
        pass
    return torch.device("cuda")


def _batch_kind(batch: Any) -> tuple[str, list[Any]]:
    import sys

    pandas, pyarrow = sys.modules.get("pandas"), sys.modules.get("pyarrow")
    if pandas is not None and isinstance(batch, pandas.DataFrame):
        return "pandas", list(batch.columns)
    if pyarrow is not None and isinstance(batch, pyarrow.Table):
        return "arrow", list(batch.column_names)
    if isinstance(batch, dict):
        return "numpy", list(batch)
    raise TypeError(
        f"SatCLIPEncoder takes pandas DataFrames, dicts of NumPy arrays or pyarrow Tables, got {type(batch).__name__}"
    )


def _points(batch: Any, kind: str, lon: Any, lat: Any) -> Any:
    import pandas as pd

    if kind == "pandas":
        return pd.DataFrame({"lon": batch[lon], "lat": batch[lat]}, index=batch.index)
    if kind == "arrow":
        return pd.DataFrame({"lon": batch.column(lon).to_numpy(), "lat": batch.column(lat).to_numpy()})
    return pd.DataFrame({"lon": np.asarray(batch[lon]), "lat": np.asarray(batch[lat])})


def _with_column(batch: Any, kind: str, column: str, embeddings: np.ndarray) -> Any:
    if kind == "numpy":
        return {**batch, column: embeddings}
    import pyarrow as pa

    values = pa.array(np.ascontiguousarray(embeddings).reshape(-1))
    lists = pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1])
    if kind == "arrow":
        return batch.append_column(column, lists)
    import pandas as pd

    result = batch.copy(deep=False)
    result[column] = pd.Series(pd.arrays.ArrowExtensionArray(lists), index=batch.index)
    return result


__all__ = ["COLUMN", "SatCLIPEncoder"]
