"""satclip.ray.SatCLIPEncoder: called directly on pandas / NumPy / Arrow batches, and in a
Ray Data pipeline on a local Ray instance (2 CPUs), against satclip.encode in this process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import satclip
from conftest import require
from satclip.errors import CoordinateError, ShapeError
from satclip.ray import SatCLIPEncoder
from scaleout_helpers import EMBED_DIM, as_matrix, points_frame, tiny_checkpoint


@pytest.fixture
def ckpt(make_checkpoint):
    return tiny_checkpoint(make_checkpoint, seed=11)


def test_loads_the_model_once_and_encodes_every_batch_format(ckpt, monkeypatch) -> None:
    import satclip.embed.locations as enc

    satclip.clear_caches()
    loads = []
    original = enc.load
    monkeypatch.setattr(enc, "load", lambda *a, **k: loads.append(a) or original(*a, **k))
    frame = points_frame(500, seed=2)
    expected = satclip.encode(frame[["Longitude", "Latitude"]].to_numpy(), ckpt)
    assert len(loads) == 1
    satclip.clear_caches()
    loads.clear()

    encoder = SatCLIPEncoder(str(ckpt), device="cpu")
    assert len(loads) == 1 and encoder.embed_dim == EMBED_DIM

    out = encoder(frame)  # pandas; Longitude/Latitude found by name
    assert list(out.columns) == [*frame.columns, "embedding"]
    pd.testing.assert_index_equal(out.index, frame.index)
    np.testing.assert_allclose(as_matrix(out["embedding"]), expected, rtol=0, atol=1e-6)

    numpy_batch = {name: frame[name].to_numpy() for name in frame.columns}
    out = encoder(numpy_batch)
    assert out["embedding"].shape == (500, EMBED_DIM) and out["embedding"].dtype == np.float32
    np.testing.assert_allclose(out["embedding"], expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["site"], numpy_batch["site"])

    table = pa.Table.from_pandas(frame, preserve_index=False)
    out = encoder(table)
    assert out.column_names == [*table.column_names, "embedding"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), EMBED_DIM)
    np.testing.assert_allclose(as_matrix(out.column("embedding").combine_chunks()), expected, rtol=0, atol=1e-6)

    assert len(loads) == 1  # three batches, no further load


def test_bad_batches_are_refused_with_a_clear_error(ckpt) -> None:
    encoder = SatCLIPEncoder(ckpt, lon="x", lat="y", device="cpu", dtype="float64")
    with pytest.raises(ShapeError, match="no longitude column 'x'"):
        encoder({"lon": np.zeros(2), "lat": np.zeros(2)})
    with pytest.raises(CoordinateError, match="latitude"):
        encoder({"x": np.array([0.0, 1.0]), "y": np.array([0.0, -91.0])})
    with pytest.raises(ShapeError, match="already has a column 'embedding'"):
        encoder({"x": np.zeros(1), "y": np.zeros(1), "embedding": np.zeros(1)})
    with pytest.raises(TypeError, match="pandas DataFrames, dicts of NumPy arrays or pyarrow Tables"):
        encoder([[0.0, 0.0]])
    assert encoder({"x": np.zeros(3), "y": np.zeros(3)})["embedding"].dtype == np.float64


def test_map_batches_on_a_local_ray_instance(ckpt) -> None:
    ray = require("ray")
    require("ray.data")
    frame = points_frame(2000, seed=4).reset_index(drop=True)
    expected = satclip.encode(frame[["Longitude", "Latitude"]].to_numpy(), ckpt)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        # Several input blocks; one actor (a second would hold the other CPU that Ray Data's
        # own tasks need on a 2-CPU instance).
        ds = ray.data.from_pandas([frame.iloc[i : i + 500] for i in range(0, 2000, 500)])
        out = ds.map_batches(
            SatCLIPEncoder,
            fn_constructor_kwargs={"model": str(ckpt), "device": "cpu"},
            batch_size=300,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=1),
        ).to_pandas()
    finally:
        ray.shutdown()
    out = out.sort_values("site")
    np.testing.assert_array_equal(out["site"].to_numpy(), frame["site"].to_numpy())
    np.testing.assert_allclose(np.stack(out["embedding"].to_numpy()), expected, rtol=0, atol=1e-6)
