"""satclip.downstream.embedding_map through the Python API: exports never replace an existing output unasked,
GeoTIFF exports are valid Cloud-Optimized GeoTIFFs, and the PCA colours of models with fewer than
three embedding dimensions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import satclip
from conftest import require
from satclip.downstream import embedding_map
from satclip.errors import OutputExistsError, SatclipError


@pytest.fixture
def grid() -> embedding_map.Grid:
    return embedding_map.make_grid(30.0, (-180, -90, 180, 90))  # 12 x 6 cells


def test_export_refuses_to_replace_an_existing_zarr_store(released_l6, grid, tmp_path: Path) -> None:
    require("zarr")
    xr = require("xarray")
    store = tmp_path / "mine.zarr"
    store.mkdir()
    (store / "notes.txt").write_text("my notes")
    with pytest.raises(OutputExistsError, match=r"mine\.zarr already exists; pass overwrite=True"):
        embedding_map.export_grid(released_l6, grid, store, device="cpu")
    assert (store / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.zarr"]  # no temporary left behind

    embedding_map.export_grid(released_l6, grid, store, device="cpu", overwrite=True)
    assert not (store / "notes.txt").exists()
    exported = xr.open_zarr(store)["embeddings"].to_numpy()
    lon, lat = np.meshgrid(grid.lon, grid.lat)
    expected = satclip.encode(np.column_stack([lon.ravel(), lat.ravel()]), released_l6, device="cpu")
    np.testing.assert_allclose(exported.reshape(-1, exported.shape[-1]), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".tif", ".nc"])
def test_export_refuses_to_replace_an_existing_file(released_l6, grid, tmp_path: Path, suffix: str) -> None:
    require("rasterio" if suffix == ".tif" else "h5netcdf")
    target = tmp_path / f"mine{suffix}"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=f"mine{suffix} already exists") as info:
        embedding_map.export_grid(released_l6, grid, target, device="cpu")
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, SatclipError)
    assert target.read_bytes() == b"precious"
    embedding_map.export_grid(released_l6, grid, target, device="cpu", overwrite=True)
    assert target.stat().st_size > 1000


def test_save_refuses_to_replace_with_a_satclip_error(released_l6, tmp_path: Path) -> None:
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="m.safetensors already exists"):
        satclip.save(satclip.load(released_l6), target)
    assert target.read_bytes() == b"precious"


def test_pca_rgb_channels_without_a_component_are_neutral_grey(released_l6) -> None:
    # Two cells: one direction of variance, so one channel carries it and the other two are 0.5.
    grid = embedding_map.make_grid(90.0, (-180, 0, 0, 90))
    assert (grid.height, grid.width) == (1, 2)
    rgb = embedding_map.pca_rgb(released_l6, grid, device="cpu")
    e = satclip.encode(np.column_stack([grid.lon, grid.lat.repeat(2)]), released_l6, device="cpu", dtype="float64")
    # Independent of the SVD: the single principal axis is +-(e1 - e0), its sign making the largest
    # loading positive; the cell further along it is the brighter one (1 after the 1-99 % scaling).
    d = e[1] - e[0]
    brighter = 1 if d[np.argmax(np.abs(d))] > 0 else 0
    np.testing.assert_array_equal(rgb[0, :, 0], [1.0, 0.0] if brighter == 0 else [0.0, 1.0])
    np.testing.assert_array_equal(rgb[..., 1:], np.full((1, 2, 2), 0.5, dtype=np.float32))

    one = embedding_map.pca_rgb(released_l6, embedding_map.make_grid(90.0, (-180, 0, -90, 90)), device="cpu")
    np.testing.assert_array_equal(one, np.full((1, 1, 3), 0.5, dtype=np.float32))


def test_an_interrupted_zarr_export_resumes_without_recomputing_and_matches_an_uninterrupted_one(
    released_l6, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xr = require("xarray")
    grid = embedding_map.make_grid(2.0)  # global, 180 x 90 cells
    monkeypatch.setattr(embedding_map, "BAND_POINTS", 180 * 10)  # 9 bands of 10 rows
    encode_rows = embedding_map._encode_rows
    computed: list[int] = []

    def counting(grid: embedding_map.Grid, rows: slice, *args: object) -> np.ndarray:
        if len(computed) == 4 and fail:
            raise KeyboardInterrupt
        computed.append(rows.start)
        return encode_rows(grid, rows, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(embedding_map, "_encode_rows", counting)
    store = tmp_path / "world.zarr"
    fail = True
    with pytest.raises(KeyboardInterrupt):
        embedding_map.export_grid(released_l6, grid, store, device="cpu")
    assert not store.exists() and embedding_map.partial_zarr_path(store).is_dir()
    fail, computed[:] = False, []
    embedding_map.export_grid(released_l6, grid, store, device="cpu")
    assert computed == [40, 50, 60, 70, 80]  # the four finished bands were kept
    assert not embedding_map.partial_zarr_path(store).exists()

    computed[:] = []
    embedding_map.export_grid(released_l6, grid, tmp_path / "again.zarr", device="cpu")
    assert len(computed) == 9
    chunks = sorted(p.name for p in (store / "embeddings").iterdir() if not p.name.startswith("."))
    assert len(chunks) == 9
    for name in chunks:  # the same bytes as an uninterrupted run
        assert (store / "embeddings" / name).read_bytes() == (
            tmp_path / "again.zarr" / "embeddings" / name
        ).read_bytes()

    ds = xr.open_zarr(store)
    emb = ds["embeddings"].to_numpy()
    assert emb.shape == (90, 180, 256) and ds["embedding"].dtype.kind == "i"
    assert ds["spatial_ref"].attrs["grid_mapping_name"] == "latitude_longitude"
    expected = satclip.encode(grid.points(slice(0, 90)), released_l6, device="cpu")
    np.testing.assert_allclose(emb.reshape(-1, 256), expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    ds.close()
    rasterio = require("rasterio")
    with rasterio.open(f'ZARR:"{store}":/embeddings') as f:  # what a GIS sees: 256 bands, north-up, WGS 84
        assert (f.count, f.width, f.height) == (256, 180, 90)
        assert f.crs.to_epsg() == 4326
        assert f.transform == rasterio.transform.from_origin(-180, 90, 2.0, 2.0)


def test_geotiff_export_is_a_valid_cloud_optimized_geotiff(
    released_l6, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("rio_cogeo")
    rioxarray = require("rioxarray")
    rasterio = require("rasterio")
    from rio_cogeo.cogeo import cog_validate

    # Small blocks and bands so that a small grid has several tile rows, bands of rows that do not
    # line up with them, and two overview levels.
    monkeypatch.setattr(embedding_map, "COG_BLOCK", 32)
    monkeypatch.setattr(embedding_map, "BAND_POINTS", 70 * 7)
    grid = embedding_map.make_grid(2.0, (-170, -60, -30, 50))  # 70 x 55 cells
    tif = tmp_path / "grid.tif"
    embedding_map.export_grid(released_l6, grid, tif, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.tif"]  # no scratch left behind

    valid, errors, warnings = cog_validate(str(tif), strict=True)
    assert valid and not errors and not warnings, (errors, warnings)
    with rasterio.open(tif) as f:
        assert (f.block_shapes[0], f.compression.name, f.interleaving.name) == ((32, 32), "zstd", "band")
        assert f.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert f.overviews(1) == [2, 4]
        assert f.tags()["crs"] == "EPSG:4326"

    da = rioxarray.open_rasterio(tif)
    assert da.rio.crs.to_epsg() == 4326
    assert da.rio.bounds() == pytest.approx((-170, -60, -30, 50), abs=1e-9)  # cell edges, not centres
    np.testing.assert_allclose(da["x"].values, grid.lon)
    np.testing.assert_allclose(da["y"].values, grid.lat)
    expected = satclip.encode_grid(grid.lon, grid.lat, released_l6, device="cpu")
    # Lossless compression of the same bits: equal to encode_grid on the same cells.
    np.testing.assert_array_equal(np.moveaxis(da.values, 0, 2), expected)
    da.close()


def test_an_interrupted_geotiff_export_leaves_nothing(
    released_l6, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("rasterio")
    encode_rows = embedding_map._encode_rows
    calls: list[int] = []

    def failing(grid: embedding_map.Grid, rows: slice, *args: object) -> np.ndarray:
        calls.append(rows.start)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return encode_rows(grid, rows, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(embedding_map, "BAND_POINTS", 12 * 2)
    monkeypatch.setattr(embedding_map, "_encode_rows", failing)
    grid = embedding_map.make_grid(30.0)  # 12 x 6 cells, bands of 2 rows
    with pytest.raises(KeyboardInterrupt):
        embedding_map.export_grid(released_l6, grid, tmp_path / "grid.tif", device="cpu")
    assert list(tmp_path.iterdir()) == []  # neither the output nor its scratch


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_zarr_and_netcdf_exports_carry_their_crs_for_rioxarray(released_l6, tmp_path: Path, suffix: str) -> None:
    """What rioxarray (and so GIS tools reading CF) sees: WGS 84 from the CF grid mapping, the
    grid's cell edges as bounds, north-up, and the embeddings of encode_grid."""
    xr = require("xarray")
    require("rioxarray")
    require("zarr" if suffix == ".zarr" else "h5netcdf")
    grid = embedding_map.make_grid(5.0, (-20, 30, 40, 70))  # 12 x 8 cells
    out = tmp_path / f"grid{suffix}"
    embedding_map.export_grid(released_l6, grid, out, device="cpu")
    ds = xr.open_zarr(out, decode_coords="all") if suffix == ".zarr" else xr.open_dataset(out, decode_coords="all")
    emb = ds["embeddings"]
    assert emb.rio.crs.to_epsg() == 4326
    assert emb.rio.bounds() == pytest.approx((-20, 30, 40, 70), abs=1e-9)
    assert emb.rio.transform().e < 0  # north-up: rows run from north to south
    expected = satclip.encode_grid(grid.lon, grid.lat, released_l6, device="cpu")
    np.testing.assert_array_equal(emb.transpose("lat", "lon", "embedding").to_numpy(), expected)
    ds.close()
