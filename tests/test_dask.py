"""satclip.dask.encode on a real distributed.LocalCluster (2 worker processes), checked against
satclip.encode on the whole (concatenated) frame in this process."""

from __future__ import annotations

from pathlib import Path

import cloudpickle
import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import satclip
import satclip.dask
from conftest import require
from satclip.errors import CoordinateError, ShapeError
from scaleout_helpers import EMBED_DIM, as_matrix, points_frame, tiny_checkpoint

N_PARTITIONS = 6


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=40
    )
    with cluster, distributed.Client(cluster) as c:
        # Start-up cost belongs to the fixture: each worker process imports torch once.
        c.run(lambda: __import__("satclip.embed.locations"))
        yield c


def _count_model_loads_on_workers(client) -> None:
    """Wraps satclip.embed.locations.load in every worker process with a call counter (fresh cache)."""

    def install() -> None:
        import satclip.embed.locations as enc

        satclip.clear_caches()
        original = getattr(enc.load, "original", enc.load)

        def counting(*args, **kwargs):
            counting.calls += 1
            return original(*args, **kwargs)

        counting.calls = 0
        counting.original = original
        enc.load = counting

    client.run(install)


def _model_loads_on_workers(client) -> dict[str, int]:
    def calls() -> int:
        import satclip.embed.locations as enc

        return enc.load.calls

    return client.run(calls)


def test_cluster_embeddings_equal_one_process_and_model_loads_once_per_worker(client, make_checkpoint) -> None:
    ckpt = tiny_checkpoint(make_checkpoint, seed=3)
    frame = points_frame(3000)
    ddf = dd.from_pandas(frame, npartitions=N_PARTITIONS)
    lazy = satclip.dask.encode(ddf, model=ckpt, lon="Longitude", lat="Latitude")

    # The graph carries the model's path, not its weights: no layer's bytes are in it.
    graph = cloudpickle.dumps(dict(lazy.__dask_graph__()))
    assert str(ckpt).encode() in graph
    for name, tensor in satclip.load(ckpt).state_dict().items():
        for dtype in (np.float64, np.float32):
            assert tensor.numpy().astype(dtype).tobytes()[:64] not in graph, name

    _count_model_loads_on_workers(client)
    result = client.compute(lazy).result()
    loads = _model_loads_on_workers(client)

    expected = satclip.encode(frame[["Longitude", "Latitude"]].rename(columns=str.lower), ckpt)
    assert isinstance(result, pd.DataFrame)
    pd.testing.assert_index_equal(result.index, frame.index)
    pd.testing.assert_frame_equal(result[list(frame.columns)], frame)
    assert list(result.columns) == [*frame.columns, "embedding"]
    # meta told the truth, except that the list column's meta is the Parquet type to_parquet writes
    # (the computed column holds one array per row; see satclip.dask.list_column)
    assert result.dtypes.drop("embedding").equals(lazy._meta.dtypes.drop("embedding"))
    assert lazy._meta.dtypes["embedding"] == pd.ArrowDtype(pa.list_(pa.float32(), EMBED_DIM))
    # Same rows, batched differently: equal to float32 rounding (row results do not depend on
    # the batch in exact arithmetic; BLAS may block batches differently).
    np.testing.assert_allclose(as_matrix(result["embedding"]), expected, rtol=0, atol=1e-6)
    assert as_matrix(result["embedding"]).dtype == np.float32
    # 6 partitions, 2 workers: each worker that ran any loaded the model exactly once.
    assert sorted(loads.values()) in ([1, 1], [0, 1]), loads

    wide = client.compute(
        satclip.dask.encode(
            ddf, model=ckpt, lon="Longitude", lat="Latitude", layout="wide", keep_columns=False, dtype="float64"
        )
    ).result()
    assert list(wide.columns) == [f"emb_{i}" for i in range(EMBED_DIM)] and (wide.dtypes == np.float64).all()
    expected64 = satclip.encode(frame[["Longitude", "Latitude"]].to_numpy(), ckpt, dtype="float64")
    np.testing.assert_allclose(wide.to_numpy(), expected64, rtol=0, atol=1e-12)
    # The cache is keyed by dtype too: at most one more load per worker for float64.
    again = _model_loads_on_workers(client)
    assert all(0 <= again[w] - loads[w] <= 1 for w in loads) and sum(again.values()) > sum(loads.values())


def test_dask_geopandas_points_in_a_projected_crs(client, make_checkpoint) -> None:
    dgpd = require("dask_geopandas")
    gpd = require("geopandas")
    ckpt = tiny_checkpoint(make_checkpoint, seed=5)
    frame = points_frame(600, seed=1)
    frame = frame[frame["Latitude"].abs() < 80]  # Web Mercator's domain
    gdf = gpd.GeoDataFrame(
        {"site": frame["site"]}, geometry=gpd.points_from_xy(frame["Longitude"], frame["Latitude"]), crs=4326
    ).to_crs(3857)
    ddf = dgpd.from_geopandas(gdf, npartitions=3)
    lazy = satclip.dask.encode(ddf, model=str(ckpt))
    assert isinstance(lazy, dgpd.GeoDataFrame)
    result = client.compute(lazy).result()
    assert isinstance(result, gpd.GeoDataFrame) and result.crs == gdf.crs
    assert result.geometry.geom_equals(gdf.geometry).all()
    # Reference: the original degrees (reprojection round trip ~1e-9 deg).
    expected = satclip.encode(frame[["Longitude", "Latitude"]].to_numpy(), ckpt)
    np.testing.assert_allclose(as_matrix(result["embedding"]), expected, rtol=0, atol=1e-5)


def test_non_point_geometry_and_bad_coordinates_are_reported_by_row(client, make_checkpoint) -> None:
    dgpd = require("dask_geopandas")
    gpd = require("geopandas")
    from shapely.geometry import Point, box

    ckpt = tiny_checkpoint(make_checkpoint, 4, seed=1)
    gdf = gpd.GeoDataFrame(
        {"k": [1, 2, 3, 4]},
        geometry=[Point(0, 0), Point(1, 1), box(0, 0, 1, 1), Point(2, 2)],
        index=[10, 11, 12, 13],
        crs=4326,
    )
    with pytest.raises(ShapeError, match=r"row 12 holds a Polygon"):
        client.compute(satclip.dask.encode(dgpd.from_geopandas(gdf, npartitions=2), model=ckpt)).result()

    frame = pd.DataFrame({"lon": [0.0, 10.0, 20.0, 30.0], "lat": [0.0, 95.0, 0.0, 0.0]}, index=[5, 6, 7, 8])
    with pytest.raises(CoordinateError, match=r"index label (np\.int64\()?6"):
        client.compute(satclip.dask.encode(dd.from_pandas(frame, npartitions=2), model=ckpt)).result()


def test_bad_arguments_fail_on_the_client_before_any_task(make_checkpoint, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(make_checkpoint, 4)
    ddf = dd.from_pandas(pd.DataFrame({"lon": [1.0], "lat": [2.0], "name": ["a"], "embedding": [0]}), npartitions=1)
    with pytest.raises(TypeError, match="satclip.save"):
        satclip.dask.encode(ddf, model=satclip.load(ckpt))
    with pytest.raises(ShapeError, match="already has column"):
        satclip.dask.encode(ddf, model=ckpt)
    with pytest.raises(ShapeError, match="no longitude column 'x'"):
        satclip.dask.encode(ddf, model=ckpt, lon="x", keep_columns=False)
    with pytest.raises(satclip.errors.DTypeError, match="'name' must hold numbers"):
        satclip.dask.encode(ddf, model=ckpt, lat="name", keep_columns=False)
    with pytest.raises(ValueError, match="layout"):
        satclip.dask.encode(ddf, model=ckpt, layout="long", keep_columns=False)
    with pytest.raises(satclip.errors.CheckpointError):
        satclip.dask.encode(ddf, model=tmp_path / "missing.ckpt", keep_columns=False)
    with pytest.raises(TypeError, match="dask DataFrame"):
        satclip.dask.encode(ddf.compute(), model=ckpt)


def _read_back(path: Path) -> dict[str, pd.DataFrame]:
    """The directory ``path`` read by each reader with its default settings."""
    import pyarrow.parquet as pq

    readers = {
        "pandas": lambda: pd.read_parquet(path),
        "dask": lambda: dd.read_parquet(path).compute(),
        "pyarrow": lambda: pq.read_table(path).to_pandas(),
    }
    out = {name: read() for name, read in readers.items()}
    try:
        import duckdb
    except ImportError:
        pass
    else:
        out["duckdb"] = duckdb.sql(f"SELECT * FROM read_parquet('{path}/*.parquet')").df()
    return out


@pytest.mark.parametrize("geo", [False, True], ids=["dask", "dask-geopandas"])
def test_parquet_written_by_dask_reads_back_with_every_reader(make_checkpoint, tmp_path: Path, geo: bool) -> None:
    import dask

    ckpt = tiny_checkpoint(make_checkpoint, 4, seed=2)
    frame = points_frame(40, seed=4)
    if geo:
        gpd = require("geopandas")
        dgpd = require("dask_geopandas")
        gdf = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["Longitude"], frame["Latitude"]), crs=4326)
        ddf = dgpd.from_geopandas(gdf, npartitions=2)
    else:
        ddf = dd.from_pandas(frame, npartitions=2)
    expected = satclip.encode(frame[["Longitude", "Latitude"]].to_numpy(), ckpt)
    with dask.config.set(scheduler="synchronous"):
        satclip.dask.encode(ddf, ckpt, lon="Longitude", lat="Latitude").to_parquet(tmp_path / "d")

    import pyarrow.parquet as pq

    # The same column type as `satclip encode` writes (a fixed-size float list).
    assert pq.read_schema(next((tmp_path / "d").glob("*.parquet"))).field("embedding").type == pa.list_(
        pa.float32(), EMBED_DIM
    )
    tables = _read_back(tmp_path / "d")
    if geo:
        tables["geopandas"] = gpd.read_parquet(tmp_path / "d")
        assert tables["geopandas"].crs == gdf.crs
    for name, table in tables.items():
        table = table.sort_values("site")
        np.testing.assert_array_equal(table["site"].to_numpy(), frame["site"].to_numpy(), err_msg=name)
        got = np.stack(table["embedding"].to_numpy())
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=name)


def test_a_missing_geometry_is_named_as_missing(make_checkpoint) -> None:
    import dask

    dgpd = require("dask_geopandas")
    gpd = require("geopandas")
    from shapely.geometry import Point

    ckpt = tiny_checkpoint(make_checkpoint, 4, seed=1)
    gdf = gpd.GeoDataFrame({"k": range(4)}, geometry=[Point(0, 0), Point(1, 1), None, Point(2, 2)], crs=4326)
    gdf.index = [5, 6, 7, 8]
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(CoordinateError, match=r"row 7 has a missing geometry \(None\)") as info:
            satclip.dask.encode(dgpd.from_geopandas(gdf, npartitions=2), model=ckpt).compute()
    assert "representative_point" not in str(info.value)
