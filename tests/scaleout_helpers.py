"""Helpers shared by the Dask and Ray tests: point frames, a small checkpoint, list columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

EMBED_DIM = 16


def tiny_checkpoint(make_checkpoint, legendre_polys: int = 10, seed: int = 0) -> Path:
    """A released-layout checkpoint with a small SIREN (fast to load and run on the workers)."""
    from conftest import released_hyper_parameters

    size = {"embed_dim": EMBED_DIM, "capacity": 32}
    return make_checkpoint(legendre_polys, seed=seed, hparams=released_hyper_parameters(legendre_polys, **size), **size)


def points_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform on the sphere
    frame = pd.DataFrame({"site": np.arange(n), "Longitude": rng.uniform(-180, 180, n), "Latitude": lat})
    frame.index = frame.index * 10 + 3  # not a RangeIndex from 0: the index must survive
    return frame


def as_matrix(column) -> np.ndarray:
    """(N, D) from an Arrow fixed-size-list column or a pandas column of one array per row."""
    if isinstance(column, pd.Series) and column.dtype == object:
        return np.stack(column.to_numpy())
    array = pa.array(column)
    return array.flatten().to_numpy().reshape(len(array), array.type.list_size)
