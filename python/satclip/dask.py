"""``satclip.dask.encode``: SatCLIP embeddings for a Dask (or dask-geopandas) DataFrame.

    import dask.dataframe as dd, satclip.dask
    ddf = dd.read_parquet("points/*.parquet")
    out = satclip.dask.encode(ddf, model="/shared/satclip-resnet50-l40.ckpt")
    out.to_parquet("embeddings/")

Design choices:

* Only the model's *source* (a name or an absolute path) travels with the task graph, never its
  weights: each worker process loads the model on its first partition and keeps it in
  :func:`satclip.encode`'s per-process model cache, so later partitions on that worker reuse it.
  A lock makes concurrent threads of one worker wait for that single load instead of loading
  the model once per thread. A path must therefore be readable on every worker (a shared file
  system), and a Hub name needs the Hub (or its cache) there.
* A :class:`~satclip.models.location.LocationEncoder` object is refused: Dask would pickle its weights into
  every task of the graph. Save it once with :func:`satclip.save` and pass the file.
* The output is the input partition plus the embeddings, either one column ``embedding``
  (``layout="list"``) or columns ``emb_0 .. emb_{d-1}`` (``layout="wide"``). ``to_parquet`` writes
  the list column as the fixed-size float list ``satclip encode`` writes, and pandas, Dask,
  GeoPandas and DuckDB read it back with their defaults (see :func:`list_column`). ``meta`` is built
  from the input's meta, so
  nothing is computed to learn the output's schema; the client loads the model once (on CPU)
  to learn the embedding size and to fail early on a bad model.
* dask-geopandas frames (unless ``lon``/``lat`` are named) are embedded at their point geometries,
  reprojected to EPSG:4326 in the partition function (a frame without a CRS is taken to be
  in degrees already); other geometry types raise, naming the first offending row.

This module imports Dask only inside the functions, so ``import satclip`` never pulls it in.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from satclip.errors import CoordinateError, DTypeError, ShapeError
from satclip.io.tables import EMBEDDING_COLUMN, embedding_column_names

#: Serialises the first load of a model in a worker process (see the module notes).
_LOAD_LOCK = threading.Lock()

LAYOUTS = ("list", "wide")


def encode(
    frame: Any,
    model: str | os.PathLike[str] = "resnet50-l40",
    *,
    lon: str | None = None,
    lat: str | None = None,
    device: str | None = None,
    dtype: str = "float32",
    batch_size: int | None = None,
    layout: str = "list",
    keep_columns: bool = True,
) -> Any:
    """Lazily embed every row of a Dask DataFrame (or dask-geopandas GeoDataFrame).

    Parameters
    ----------
    frame:
        A ``dask.dataframe.DataFrame`` with longitude/latitude columns in degrees, or a
        ``dask_geopandas.GeoDataFrame`` of points (any CRS; see ``lon``/``lat``).
    model:
        A released model name (``"resnet50-l40"``), a built-in encoder name (``"geoclip"``,
        ``"sh-L10"``, ``"wrap"``..., see :mod:`satclip.models.encoders`), a Hub repository, or a ``.ckpt`` /
        ``.safetensors`` path readable by every worker (relative paths are made absolute
        here). Loaded once per worker process.
    lon, lat:
        Column names. Default: a GeoDataFrame's point geometry; for other frames the columns
        found by the usual names (``lon``/``longitude``/``x``..., see :func:`satclip.encode`).
    device:
        Passed to :func:`satclip.encode` on the workers (default: CUDA when a worker has one).
    dtype:
        ``"float32"`` (default) or ``"float64"`` embeddings.
    batch_size:
        Points per batch within a partition (default: :func:`satclip.encode`'s).
    layout:
        ``"list"``: one column ``embedding`` holding one float array per row (what
        ``pandas.read_parquet`` gives for the list column ``satclip encode`` writes); its Parquet
        type is that same fixed-size float list. ``"wide"``: columns ``emb_0 .. emb_{d-1}``.
    keep_columns:
        Keep the input columns (default) or return only the embeddings (same index).

    Returns
    -------
    A lazy frame of the same kind and partitioning as ``frame``, with the embeddings.
    """
    import dask.dataframe as dd
    import pandas as pd

    if not isinstance(frame, dd.DataFrame):
        raise TypeError(f"satclip.dask.encode needs a dask DataFrame, got {type(frame).__name__}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    np_dtype = _numpy_dtype(dtype)
    model = _portable_source(model)

    meta = frame._meta
    columns = _point_columns(meta, lon, lat)
    embed_dim = _embed_dim(model, dtype)
    names = [EMBEDDING_COLUMN] if layout == "list" else embedding_column_names(embed_dim)
    if keep_columns:
        clash = [n for n in names if n in meta.columns]
        if clash:
            raise ShapeError(
                f"the frame already has column(s) {clash[:3]}; drop or rename them, or pass keep_columns=False"
            )

    options = {"device": device, "dtype": dtype, "batch_size": batch_size}
    empty: np.ndarray = np.empty((0, embed_dim), dtype=np_dtype)
    out_meta = _attach(meta, empty, names, layout, keep_columns, pd, meta=True)
    return frame.map_partitions(
        _encode_partition,
        model=model,
        columns=columns,
        names=names,
        layout=layout,
        keep_columns=keep_columns,
        options=options,
        meta=out_meta,
    )


def _encode_partition(
    part: Any,
    *,
    model: str,
    columns: tuple[str, str] | None,
    names: list[str],
    layout: str,
    keep_columns: bool,
    options: dict[str, Any],
) -> Any:
    """Runs on a worker: embeds one pandas (or geopandas) partition."""
    import pandas as pd

    import satclip

    points = _partition_points(part, columns, pd)
    with _LOAD_LOCK:
        # Loads the model into this process's cache on the first call; a cache hit afterwards.
        satclip.encode(np.empty((0, 2)), model, device=options["device"], dtype=options["dtype"])
    embeddings = np.asarray(satclip.encode(points, model, **options, progress=False))  # a frame gives NumPy
    return _attach(part, embeddings, names, layout, keep_columns, pd)


# ----------------------------------------------------------------------------------------
# Helpers (shared with satclip.ray)


def _numpy_dtype(dtype: Any) -> type:
    name = str(dtype).removeprefix("torch.")
    if name == "float32":
        return np.float32
    if name == "float64":
        return np.float64
    raise DTypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def _portable_source(model: Any) -> str:
    """The model as a string every worker can resolve: existing paths become absolute."""
    from torch import nn

    if isinstance(model, nn.Module):
        raise TypeError(
            "pass the model as a name or a file path, not a module: its weights would be pickled into "
            "every task; save it once with satclip.save(model, 'model.safetensors') and pass that path"
        )
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name or a path, got {type(model).__name__}")
    text = os.fspath(model)
    if os.path.exists(text):
        return os.path.abspath(text)
    return text


def _embed_dim(model: str, dtype: str) -> int:
    import satclip

    return int(satclip.encode(np.empty((0, 2)), model, device="cpu", dtype=dtype).shape[1])


def _is_geo(frame: Any) -> bool:
    geopandas = _loaded("geopandas")
    return geopandas is not None and isinstance(frame, geopandas.GeoDataFrame)


def _loaded(name: str) -> Any:
    import sys

    return sys.modules.get(name)


def _point_columns(meta: Any, lon: str | None, lat: str | None) -> tuple[str, str] | None:
    """The (lon, lat) columns to read, or None to read a GeoDataFrame's point geometry."""
    from satclip.points.columns import find_lonlat_columns

    if _is_geo(meta) and lon is None and lat is None:
        return None  # a GeoDataFrame's location is its geometry
    found = find_lonlat_columns(list(meta.columns), lon, lat)
    for name in found:
        kind = getattr(meta[name].dtype, "kind", "O")
        if kind not in "iuf":
            raise DTypeError(f"column {name!r} must hold numbers (degrees), got dtype {meta[name].dtype}")
    return found


def _partition_points(part: Any, columns: tuple[str, str] | None, pd: Any) -> Any:
    """A pandas frame ``lon``, ``lat`` (degrees) with the partition's index, for satclip.encode."""
    if columns is not None:
        return pd.DataFrame({"lon": part[columns[0]], "lat": part[columns[1]]}, index=part.index)
    geometry = part.geometry
    if geometry.crs is not None and not geometry.crs.equals("EPSG:4326"):
        geometry = geometry.to_crs("EPSG:4326")
    missing = geometry.isna().to_numpy()
    kinds = geometry.geom_type.to_numpy()
    bad = np.flatnonzero(missing | ((kinds != "Point") & ~geometry.is_empty.to_numpy()))
    if bad.size:
        i = int(bad[0])
        label = part.index[i]
        label = label.item() if isinstance(label, np.generic) else label
        if missing[i]:
            raise CoordinateError(
                f"row {label!r} has a missing geometry (None); drop those rows (ddf[ddf.geometry.notna()]) "
                "or fill them first"
            )
        raise ShapeError(
            f"satclip embeds point geometries; row {label!r} holds a {kinds[i]} "
            "(use e.g. .representative_point() first)"
        )
    # Empty points give NaN, which satclip.encode reports with the row's label.
    return pd.DataFrame({"lon": geometry.x.to_numpy(), "lat": geometry.y.to_numpy()}, index=part.index)


def _attach(
    part: Any, embeddings: np.ndarray, names: list[str], layout: str, keep_columns: bool, pd: Any, *, meta: bool = False
) -> Any:
    """``part`` (or just its index) with the embeddings as a list column or wide columns; ``meta``:
    build the output's Dask meta rather than a partition."""
    if layout == "list":
        added = pd.DataFrame({EMBEDDING_COLUMN: list_column(embeddings, part.index, pd, as_meta=meta)})
    else:
        added = pd.DataFrame(embeddings, index=part.index, columns=names)
    if not keep_columns:
        return added
    # One concat (not a column insert per dimension); a GeoDataFrame stays one.
    return pd.concat([part, added], axis=1)


def list_column(embeddings: np.ndarray, index: Any, pd: Any, *, as_meta: bool) -> Any:
    """The ``embedding`` column: in the meta, the Arrow fixed-size float list type; in a partition,
    one float array per row (views of one contiguous block).

    Why the two differ: Dask's ``to_parquet`` takes the Parquet schema from the meta, so the meta
    must name the fixed-size list (an object meta makes Dask write each array's repr as a string).
    But the partitions must not be Arrow-backed lists: pyarrow stores a pandas column's dtype name
    in the file's pandas metadata, and no pandas version can parse a nested Arrow dtype name
    (``fixed_size_list<...>[256][pyarrow]``) back, so ``pandas.read_parquet``, ``dask.read_parquet``
    and ``pyarrow.Table.to_pandas`` would all fail on the file. An object column of arrays is
    converted to the meta's list type on write and recorded as ``object``, which every reader
    turns back into one array per row.
    """
    import pyarrow as pa

    if as_meta:
        dtype = pd.ArrowDtype(pa.list_(pa.from_numpy_dtype(embeddings.dtype), embeddings.shape[1]))
        return pd.Series([], index=index, name=EMBEDDING_COLUMN, dtype=dtype)
    rows = np.empty(len(embeddings), dtype=object)
    for i, row in enumerate(np.ascontiguousarray(embeddings)):
        rows[i] = row
    return pd.Series(rows, index=index, name=EMBEDDING_COLUMN, dtype=object)


__all__ = ["LAYOUTS", "encode"]
