"""The streaming, partitioned and never-overwrite behaviour of ``satclip encode``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import require, run_cli
from satclip.cli.main import main
from satclip.embed.locations import encode
from satclip.io.publish import OutputExistsError, publish

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("fresh_model_cache")


def frame(n: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"id": np.arange(first_id, first_id + n), "lon": rng.uniform(-180, 180, n), "lat": rng.uniform(-90, 90, n)}
    )


def embeddings_of(path: Path) -> np.ndarray:
    return np.stack(pq.read_table(path).column("embedding").to_pylist()).astype(np.float32)


def no_temporaries(directory: Path) -> bool:
    return not [p for p in directory.rglob(".*") if ".tmp-" in p.name]


# ----------------------------------------------------------------------------------------
# Streaming: batches of the file give the same answer as encoding it whole


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_output_matches_encode_and_has_one_row_group_per_batch(
    tmp_path: Path, ckpt: str, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    points = frame(1000, 1)
    src, dst = tmp_path / f"in{suffix}", tmp_path / "out.parquet"
    points.to_csv(src, index=False) if suffix == ".csv" else points.to_parquet(src)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt, "--batch-size", "128")
    assert code == 0, err
    assert pq.ParquetFile(dst).metadata.num_row_groups == 8  # ceil(1000 / 128): written batch by batch
    out = pq.read_table(dst).to_pandas()
    pd.testing.assert_frame_equal(out[["id", "lon", "lat"]], points)
    expected = encode(points[["lon", "lat"]].to_numpy(), ckpt)
    np.testing.assert_allclose(embeddings_of(dst), expected, rtol=0, atol=2e-6)


def test_npy_output_from_csv_is_streamed_into_the_right_rows(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    points = frame(300, 2)
    src, dst = tmp_path / "in.csv", tmp_path / "out.npy"
    points.to_csv(src, index=False)
    assert run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt, "--batch-size", "64")[0] == 0
    np.testing.assert_allclose(np.load(dst), encode(points[["lon", "lat"]].to_numpy(), ckpt), rtol=0, atol=2e-6)


def test_bad_coordinate_in_a_later_batch_names_its_row_in_the_file(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    points = frame(200, 3)
    points.loc[150, "lat"] = 95.0
    src = tmp_path / "in.parquet"
    points.to_parquet(src)
    code, _, err = run_cli(
        capsys, "encode", str(src), "-o", str(tmp_path / "o.parquet"), "--model", ckpt, "--batch-size", "64"
    )
    assert code == 1
    assert "row 150 (0-based" in err, err
    assert no_temporaries(tmp_path) and not (tmp_path / "o.parquet").exists()


# ----------------------------------------------------------------------------------------
# Messages and early checks


def test_non_numeric_cell_names_its_row(tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_text("lon,lat\n1,2\n3,4\nabc,5\n")
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(tmp_path / "o.parquet"), "--model", ckpt)
    assert code == 1
    assert "row 2 (0-based, header not counted)" in err and "'lon'" in err and "'abc'" in err, err


@pytest.mark.parametrize("name", ["header.csv", "empty.npy"])
def test_header_only_csv_and_empty_npy_both_say_no_rows(
    tmp_path: Path, ckpt: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / name
    if name.endswith(".csv"):
        src.write_text("lon,lat\n")
    else:
        np.save(src, np.zeros((0, 2)))
    for out in ("o.parquet", "o.npy"):
        code, _, err = run_cli(capsys, "encode", str(src), "-o", str(tmp_path / out), "--model", ckpt)
        assert code == 1 and "has no rows" in err, err
        assert not (tmp_path / out).exists()
    assert no_temporaries(tmp_path)


def test_missing_output_directory_is_reported_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    frame(10, 4).to_csv(src, index=False)
    # The model does not exist either: the directory must be the error, so nothing was loaded.
    code, _, err = run_cli(
        capsys, "encode", str(src), "-o", str(tmp_path / "nowhere" / "o.parquet"), "--model", "no-such.ckpt"
    )
    assert code == 1
    assert f"the output directory {tmp_path / 'nowhere'} does not exist" in err, err


def test_version_comes_from_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"satclip {version('satclip')}"


# ----------------------------------------------------------------------------------------
# Never overwrite, even a file created while satclip works


def test_publish_refuses_a_name_taken_while_writing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"new")
        target.write_bytes(b"someone else's")  # appears after the start-of-run check

    with pytest.raises(OutputExistsError, match="created by something else"):
        publish(target, write)
    assert target.read_bytes() == b"someone else's"
    assert no_temporaries(tmp_path)
    publish(target, lambda tmp: tmp.write_bytes(b"new"), overwrite=True)
    assert target.read_bytes() == b"new"


def test_cli_does_not_clobber_an_output_created_meanwhile(
    tmp_path: Path, ckpt: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import satclip.io.tables as streaming

    src, dst = tmp_path / "in.csv", tmp_path / "o.parquet"
    frame(50, 5).to_csv(src, index=False)
    real_close = streaming.ParquetEmbeddingWriter.close

    def close_and_race(self: Any) -> None:
        real_close(self)
        dst.write_bytes(b"other")

    monkeypatch.setattr(streaming.ParquetEmbeddingWriter, "close", close_and_race)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt)
    assert code == 2 and "created by something else" in err, err
    assert dst.read_bytes() == b"other" and no_temporaries(tmp_path)


def test_save_does_not_clobber_a_file_created_meanwhile(
    released_l10: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    import satclip

    model = satclip.load(released_l10[0])
    dst = tmp_path / "m.safetensors"
    real = safetensors.torch.save_file

    def save_and_race(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        dst.write_bytes(b"other")

    monkeypatch.setattr(safetensors.torch, "save_file", save_and_race)
    with pytest.raises(FileExistsError, match="created by something else"):
        satclip.save(model, dst)
    assert dst.read_bytes() == b"other" and no_temporaries(tmp_path)


# ----------------------------------------------------------------------------------------
# Partitioned datasets


def _geoparquet(path: Path, points: pd.DataFrame) -> None:
    # WKB little-endian points written by hand: the test needs no geo stack.
    wkb = [
        b"\x01\x01\x00\x00\x00" + np.array([x, y], "<f8").tobytes() for x, y in zip(points.lon, points.lat, strict=True)
    ]
    table = pa.Table.from_pandas(points, preserve_index=False).append_column("geometry", pa.array(wkb, pa.binary()))
    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}},
    }
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"geo": json.dumps(geo).encode()}), path)


def test_directory_of_geoparquet_and_csv_parts(tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    a, b = frame(120, 6), frame(80, 7, first_id=120)
    _geoparquet(parts / "a.parquet", a)
    b.to_csv(parts / "b.csv", index=False)
    (parts / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "encode", str(parts), "-o", str(out), "--model", ckpt, "--batch-size", "50")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet", "b.parquet"]
    table = pq.read_table(out / "a.parquet")
    assert table.column("geometry").to_pylist() == pq.read_table(parts / "a.parquet").column("geometry").to_pylist()
    assert json.loads(table.schema.metadata[b"geo"])["primary_column"] == "geometry"
    info = json.loads(table.schema.metadata[b"satclip"])
    assert info["legendre_polys"] == 10 and info["dtype"] == "float32" and info["embed_dim"] == 256
    assert info["model"] == ckpt and info["satclip_version"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 256)
    for name, points in (("a", a), ("b", b)):
        np.testing.assert_allclose(
            embeddings_of(out / f"{name}.parquet"), encode(points[["lon", "lat"]].to_numpy(), ckpt), rtol=0, atol=2e-6
        )


def test_glob_of_parts_wide_layout_and_skipping_finished_parts(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        frame(40, 10 + i).to_parquet(tmp_path / f"part-{i}.parquet")
    out = tmp_path / "out"
    pattern = str(tmp_path / "part-*.parquet")
    assert run_cli(capsys, "encode", pattern, "-o", str(out), "--model", ckpt, "--layout", "wide")[0] == 0
    assert pq.read_table(out / "part-0.parquet").column_names[:4] == ["id", "lon", "lat", "emb_0"]
    (out / "part-1.parquet").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, stdout, _ = run_cli(capsys, "encode", pattern, "-o", str(out), "--model", ckpt, "--layout", "wide")
    assert code == 0 and "wrote 1 parts" in stdout and "2 already done" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "part-1.parquet"} == before
    code, stdout, _ = run_cli(
        capsys, "encode", pattern, "-o", str(out), "--model", ckpt, "--overwrite", "--layout", "wide"
    )
    assert code == 0 and "wrote 3 parts" in stdout


def test_sigint_midway_then_rerun_completes_only_the_missing_parts(tmp_path: Path, ckpt: str) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    n_parts = 8
    for i in range(n_parts):
        frame(4000, 20 + i, first_id=4000 * i).to_parquet(parts / f"p{i}.parquet")
    out, reference = tmp_path / "out", tmp_path / "reference"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    command = [
        sys.executable,
        "-m",
        "satclip.cli.main",
        "encode",
        str(parts),
        "--model",
        ckpt,
        "--batch-size",
        "200",
        "--quiet",
        "-o",
    ]
    proc = subprocess.Popen([*command, str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        out.is_dir() and any(p.suffix == ".parquet" and not p.name.startswith(".") for p in out.iterdir())
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and no_temporaries(out)
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()}
    assert 1 <= len(done) < n_parts, "the interrupt came too late to test resuming"

    rerun = subprocess.run([*command, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"wrote {n_parts - len(done)} parts" in rerun.stdout and f"{len(done)} already done" in rerun.stdout
    assert {name: (out / name).stat().st_ino for name in done} == {name: v[0] for name, v in done.items()}  # untouched
    fresh = subprocess.run([*command, str(reference)], env=env, capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    for i in range(n_parts):
        assert (out / f"p{i}.parquet").read_bytes() == (reference / f"p{i}.parquet").read_bytes()


def test_sigterm_while_writing_removes_the_temporary_file(tmp_path: Path, ckpt: str) -> None:
    src, dst = tmp_path / "in.parquet", tmp_path / "o.parquet"
    frame(50000, 30).to_parquet(src)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "satclip.cli.main", "encode", str(src), "-o", str(dst), "--model", ckpt, "--batch-size", "500", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and no_temporaries(tmp_path) and proc.poll() is None:
        time.sleep(0.01)
    assert not no_temporaries(tmp_path), "the run ended before its temporary file was seen"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err
    assert no_temporaries(tmp_path) and not dst.exists()


def test_a_directory_output_is_published_without_replacing_one_that_appeared(tmp_path: Path) -> None:
    # Zarr stores are directories: `satclip map --export grid.zarr` publishes them the same way.
    store = tmp_path / "grid.zarr"

    def write(tag: str) -> Any:
        def into(tmp: Path) -> None:
            tmp.mkdir()
            (tmp / "data").write_text(tag)

        return into

    publish(store, write("first"))
    with pytest.raises(OutputExistsError):
        publish(store, write("second"))
    assert (store / "data").read_text() == "first"
    publish(store, write("third"), overwrite=True)
    assert (store / "data").read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.zarr"]  # no temporary left behind


# ----------------------------------------------------------------------------------------
# GeoParquet without lon/lat columns: the points come from the geometry column


def test_geometry_only_geoparquet_in_a_projected_crs(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gpd = require("geopandas")
    pyproj = require("pyproj")
    points = frame(300, 40)
    metres = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(points.lon, points.lat)
    # x/y in metres beside the geometry: they are not degrees, so the geometry is used.
    gdf = gpd.GeoDataFrame(
        {"id": points.id, "x": metres[0], "y": metres[1]}, geometry=gpd.points_from_xy(*metres), crs="EPSG:3857"
    )
    src, dst = tmp_path / "pts.parquet", tmp_path / "out.parquet"
    gdf.to_parquet(src)  # GeoPandas' own GeoParquet writer: WKB and a PROJJSON crs
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt, "--batch-size", "64")
    assert code == 0, err
    table = pq.read_table(dst)
    assert table.column_names == ["id", "x", "y", "geometry", "embedding"]
    assert json.loads(table.schema.metadata[b"geo"])["primary_column"] == "geometry"
    # Independent reference: the original degrees (the CRS round trip is exact to ~1e-9 degrees).
    np.testing.assert_allclose(embeddings_of(dst), encode(points[["lon", "lat"]].to_numpy(), ckpt), rtol=0, atol=2e-5)


def test_geoparquet_polygons_are_encoded_as_satclip_encode_encodes_the_frame(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gpd = require("geopandas")
    shapely = require("shapely")
    # A concave (U-shaped) polygon: its centroid lies outside it, its representative point inside.
    u_shape = shapely.Polygon([(0, 0), (10, 0), (10, 10), (8, 10), (8, 2), (2, 2), (2, 10), (0, 10)])
    shapes = [shapely.affinity.translate(u_shape, 30 * i - 90, 10 * i - 40) for i in range(6)]
    shapes.append(shapely.LineString([(100, 5), (110, 15)]))
    gdf = gpd.GeoDataFrame({"name": [f"g{i}" for i in range(7)]}, geometry=shapes, crs="EPSG:4326")
    src, dst = tmp_path / "shapes.parquet", tmp_path / "out.parquet"
    gdf.to_parquet(src)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt, "--batch-size", "3")
    assert code == 0, err
    np.testing.assert_array_equal(embeddings_of(dst), encode(gdf, ckpt))
    inside = gdf.representative_point()
    assert all(gdf.geometry.iloc[i].contains(inside.iloc[i]) for i in range(6))


def test_a_missing_geometry_in_a_later_batch_names_its_row(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gpd = require("geopandas")
    points = frame(100, 41)
    geometry = list(gpd.points_from_xy(points.lon, points.lat))
    geometry[70] = None
    gdf = gpd.GeoDataFrame({"id": points.id}, geometry=geometry, crs="EPSG:4326")
    src = tmp_path / "pts.parquet"
    gdf.to_parquet(src)
    code, _, err = run_cli(
        capsys, "encode", str(src), "-o", str(tmp_path / "o.parquet"), "--model", ckpt, "--batch-size", "32"
    )
    assert code == 1 and "row 70" in err and "missing or empty geometry" in err, err
    assert no_temporaries(tmp_path) and not (tmp_path / "o.parquet").exists()


def test_hive_partitioned_local_folder_keeps_its_layout(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = tmp_path / "points"
    for year, seed in ((2020, 50), (2021, 51)):
        (parts / f"year={year}").mkdir(parents=True)
        frame(30, seed, first_id=year).to_parquet(parts / f"year={year}" / "part-0.parquet")
    (parts / "_SUCCESS").write_text("")
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "encode", str(parts), "-o", str(out), "--model", ckpt)
    assert code == 0 and "wrote 2 parts" in stdout, err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert written == ["year=2020/part-0.parquet", "year=2021/part-0.parquet"]
    back = pd.read_parquet(out)  # pandas reads the hive layout back with its partition column
    source = pd.read_parquet(parts)
    assert back["year"].astype(int).tolist() == source["year"].astype(int).tolist()
    np.testing.assert_allclose(
        np.stack(back["embedding"].to_list()), encode(source[["lon", "lat"]].to_numpy(), ckpt), rtol=0, atol=2e-6
    )


def test_parts_written_into_their_own_input_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame(10, 52).to_parquet(tmp_path / "a.parquet")
    code, _, err = run_cli(
        capsys, "encode", str(tmp_path), "-o", str(tmp_path), "--model", "absent.ckpt", "--overwrite"
    )
    assert code == 2 and "would replace an input part" in err, err


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    frame(20, 53).to_parquet(tmp_path / "a.parquet")
    frame(20, 54).to_parquet(tmp_path / "b.parquet")
    out = tmp_path / "embedded"
    code, stdout, err = run_cli(capsys, "encode", str(tmp_path), "-o", str(out), "--model", ckpt)
    assert code == 0 and "wrote 2 parts" in stdout, err
    code, stdout, err = run_cli(capsys, "encode", str(tmp_path), "-o", str(out), "--model", ckpt)
    assert code == 0 and "all 2 parts are already in" in stdout, err
    assert sorted(p.name for p in out.rglob("*")) == ["a.parquet", "b.parquet"]


# ----------------------------------------------------------------------------------------
# Projected coordinate columns: --crs


def test_projected_xy_columns_need_a_crs_and_are_transformed_with_it(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pyproj = require("pyproj")
    rng = np.random.default_rng(4)
    # UTM zone 32N (central Europe) eastings/northings in metres.
    utm = pd.DataFrame({"id": range(200), "x": rng.uniform(3e5, 7e5, 200), "y": rng.uniform(4.8e6, 5.6e6, 200)})
    src = tmp_path / "utm.csv"
    utm.to_csv(src, index=False)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(tmp_path / "a.npy"), "--model", ckpt)
    assert code == 1 and "not longitude/latitude degrees" in err and "--crs" in err and "row 0" in err
    assert not (tmp_path / "a.npy").exists()

    code, _, err = run_cli(
        capsys, "encode", str(src), "-o", str(tmp_path / "b.npy"), "--model", ckpt, "--crs", "EPSG:32632"
    )
    assert code == 0, err
    lon, lat = pyproj.Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(utm.x, utm.y)
    expected = np.asarray(encode(np.stack([lon, lat], axis=1), ckpt))
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), expected)


def test_xy_columns_in_degrees_need_no_crs_and_a_bad_crs_is_refused_before_the_model(
    tmp_path: Path, ckpt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require("pyproj")
    points = frame(50, 9).rename(columns={"lon": "x", "lat": "y"})
    src = tmp_path / "deg.csv"
    points.to_csv(src, index=False)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(tmp_path / "a.npy"), "--model", ckpt)
    assert code == 0, err
    expected = np.asarray(encode(points[["x", "y"]].to_numpy(), ckpt))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)
    missing_model = str(tmp_path / "no-such-model.ckpt")
    code, _, err = run_cli(
        capsys, "encode", str(src), "-o", str(tmp_path / "b.npy"), "--model", missing_model, "--crs", "EPSG:999999"
    )
    assert code == 1 and "cannot read the CRS 'EPSG:999999'" in err and "no-such-model" not in err
