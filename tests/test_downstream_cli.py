"""`satclip probe` and `satclip map` (PCA-RGB image and streamed Zarr / NetCDF / GeoTIFF exports)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import satclip
from conftest import require
from satclip.cli.main import main
from satclip.downstream import embedding_map


def _stations(tmp_path, n=400):
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    sh = satclip.spherical_harmonics(np.column_stack([lon, lat]), 4)
    frame = pd.DataFrame({"Lon": lon, "Lat": lat, "meanT": sh @ rng.normal(size=16)})
    path = tmp_path / "stations.csv"
    frame.to_csv(path, index=False)
    return path


def test_probe_table_compares_models_and_baselines(tmp_path, released_l6, capsys) -> None:
    csv = _stations(tmp_path)
    assert (
        main(
            [
                "probe",
                str(csv),
                "--target",
                "meanT",
                "--model",
                released_l6,
                "--model",
                released_l6,
                "--cv",
                "spatial",
                "--sh-degree",
                "4",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert "spatial CV" in out[0] and "400 points" in out[0]
    labels = [line.split("  ")[0].strip() for line in out[2:]]
    rows = {line.split("  ")[0].strip(): line for line in out[2:]}
    assert labels == [released_l6, released_l6, "baseline: lonlat", "baseline: xyz", "baseline: sh (L=4, 16 features)"]
    r2 = {k: float(v.split()[-7]) for k, v in rows.items()}  # r2 ± sd, rmse ± sd, seconds
    assert r2["baseline: sh (L=4, 16 features)"] > 0.99  # the target is linear in these features
    assert r2["baseline: lonlat"] < 0.5


def test_probe_errors(tmp_path, released_l6, capsys) -> None:
    csv = _stations(tmp_path)
    assert main(["probe", str(csv), "--target", "temp", "--model", released_l6]) == 1
    assert "no target column 'temp'" in capsys.readouterr().err
    frame = pd.read_csv(csv)
    frame.loc[5, "meanT"] = np.nan
    frame.to_csv(csv, index=False)
    assert main(["probe", str(csv), "--target", "meanT", "--baselines", "xyz"]) == 1
    assert "row 5" in capsys.readouterr().err
    assert main(["probe", str(csv), "--target", "meanT", "--head", "forest"]) == 2


def test_map_png_has_the_requested_size(tmp_path, released_l6) -> None:
    from matplotlib.image import imread

    png = tmp_path / "map.png"
    assert (
        main(
            [
                "map",
                "--model",
                released_l6,
                "-o",
                str(png),
                "--resolution",
                "10",
                "--size",
                "320x170",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert imread(png).shape[:2] == (170, 320)
    # no --overwrite: a usage error, like a bad option
    assert main(["map", "--model", released_l6, "-o", str(png), "--resolution", "10"]) == 2
    region = tmp_path / "europe.png"
    assert (
        main(
            [
                "map",
                "--model",
                released_l6,
                "-o",
                str(region),
                "--resolution",
                "2",
                "--region=-20,30,40,70",
                "--size",
                "400x300",
            ]
        )
        == 0
    )
    assert imread(region).shape[:2] == (300, 400)


def test_pca_rgb_is_bounded_and_streamed_bands_agree(released_l6, monkeypatch) -> None:
    grid = embedding_map.make_grid(5.0, (-30, -20, 30, 40))
    one = embedding_map.pca_rgb(released_l6, grid, device="cpu")
    monkeypatch.setattr(embedding_map, "BAND_POINTS", 25)  # 2 rows per band
    many = embedding_map.pca_rgb(released_l6, grid, device="cpu")
    assert one.shape == (12, 12, 3) and one.min() >= 0 and one.max() <= 1
    np.testing.assert_allclose(one, many, atol=1e-6)
    assert one.std(axis=(0, 1)).min() > 0.05  # three distinct, non-constant components


def test_geotiff_export_georeference_round_trips(tmp_path, released_l6, monkeypatch) -> None:
    rasterio = require("rasterio")
    monkeypatch.setattr(embedding_map, "BAND_POINTS", 40)  # several bands of rows
    tif = tmp_path / "grid.tif"
    assert (
        main(
            [
                "map",
                "--model",
                released_l6,
                "--export",
                str(tif),
                "--resolution",
                "2.5",
                "--region=-10,35,20,60",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with rasterio.open(tif) as f:
        assert f.crs.to_epsg() == 4326
        assert (f.width, f.height, f.count) == (12, 10, 256)
        assert f.transform == rasterio.transform.from_origin(-10, 60, 2.5, 2.5)
        values = f.read()
        rows, cols = np.meshgrid(np.arange(10), np.arange(12), indexing="ij")
        lon, lat = f.xy(rows.ravel(), cols.ravel())  # rasterio's own pixel-centre coordinates
    expected = satclip.encode(np.column_stack([lon, lat]), released_l6, device="cpu")
    np.testing.assert_allclose(values.reshape(256, -1).T, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("suffix", "refused"), [(".nc", False), (".tif", True)])
def test_export_needs_room_for_a_geotiff_scratch_file_too(
    tmp_path, released_l6, monkeypatch, capsys, suffix, refused
) -> None:
    require("rasterio" if suffix == ".tif" else "h5netcdf")
    import shutil

    size = 12 * 10 * 256 * 4  # the grid below, float32
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=size * 3 // 2))
    out = tmp_path / f"grid{suffix}"
    args = ["map", "--model", released_l6, "--export", str(out), "--resolution", "2.5", "--region=-10,35,20,60"]
    assert main([*args, "--device", "cpu"]) == (1 if refused else 0)
    assert out.exists() != refused
    if refused:
        assert "take 120.0 KiB (uncompressed, twice over while the COG is built" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_xarray_exports_hold_the_grid(tmp_path, released_l6, monkeypatch, suffix) -> None:
    xr = require("xarray")
    monkeypatch.setattr(embedding_map, "BAND_POINTS", 30)
    out = tmp_path / f"grid{suffix}"
    assert (
        main(["map", "--model", released_l6, "--export", str(out), "--resolution", "5", "--region=100,-40,160,0"]) == 0
    )
    ds = xr.open_zarr(out) if suffix == ".zarr" else xr.open_dataset(out)
    emb = ds["embeddings"]
    assert emb.dims == ("lat", "lon", "embedding") and emb.shape == (8, 12, 256)
    np.testing.assert_allclose(ds["lon"].values, np.arange(102.5, 160, 5))
    np.testing.assert_allclose(ds["lat"].values, np.arange(-2.5, -40, -5))
    lon, lat = np.meshgrid(ds["lon"].values, ds["lat"].values)
    expected = satclip.encode(np.column_stack([lon.ravel(), lat.ravel()]), released_l6, device="cpu")
    np.testing.assert_allclose(emb.values.reshape(-1, 256), expected, rtol=1e-6, atol=1e-6)
    ds.close()


def test_map_usage_errors(tmp_path, released_l6, capsys) -> None:
    assert main(["map", "--model", released_l6]) == 2  # neither -o nor --export
    assert main(["map", "--model", released_l6, "--export", str(tmp_path / "g.csv")]) == 2
    assert main(["map", "--model", released_l6, "-o", str(tmp_path / "m.png"), "--resolution", "7"]) == 2
    assert "not a whole number" in capsys.readouterr().err
    assert main(["map", "--model", released_l6, "-o", str(tmp_path / "m.png"), "--region=10,0,5,20"]) == 2
