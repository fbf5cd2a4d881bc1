"""``satclip embed-images`` and ``satclip locate``, end to end on GeoTIFFs written here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import satclip
from conftest import require, write_s2_geotiff
from satclip.cli.main import main
from satclip.io.georef import great_circle_km, image_center


@pytest.fixture
def model(released_with_visual) -> str:
    return str(released_with_visual("moco_resnet18")[0])


@pytest.fixture
def tifs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(9)
    return [
        write_s2_geotiff(
            tmp_path / f"patch_{i}.tif",
            rng.integers(0, 6000, (12, 40, 40)).astype(np.uint16),
            epsg=32600 + 10 * (i + 1),
            origin=(450_000.0 + 1000 * i, 4_000_000.0),
        )
        for i in range(3)
    ]


def test_embed_images_writes_one_row_per_file(tmp_path, model, tifs, capsys):
    out = tmp_path / "emb.parquet"
    assert main(["embed-images", *map(str, tifs), "-o", str(out), "--model", model, "--device", "cpu"]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["path", "embedding"]
    assert table.column("path").to_pylist() == [str(p) for p in tifs]
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert emb.dtype == np.float32 and emb.shape == (3, 256)
    assert np.array_equal(emb, satclip.encode_images(tifs, model, device="cpu"))
    # never overwritten without --overwrite (a usage error: exit status 2)
    before = out.read_bytes()
    assert main(["embed-images", str(tifs[0]), "-o", str(out), "--model", model]) == 2
    assert out.read_bytes() == before
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_embed_images_reports_a_bad_file(tmp_path, model, tifs, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    out = tmp_path / "emb.parquet"
    assert main(["embed-images", str(tifs[0]), str(bad), "-o", str(out), "--model", model]) == 1
    err = capsys.readouterr().err
    assert "broken.tif: not a Sentinel-2 GeoTIFF" in err and "Traceback" not in err
    assert not out.exists()


def test_locate_prints_guesses_and_distances(tmp_path, model, tifs, capsys):
    code = main(["locate", *map(str, tifs[:2]), "--model", model, "--top-k", "3", "--device", "cpu"])
    assert code == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(\d)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(-?\d\.\d+)\s+(\d+\.\d)$", out, re.M)
    assert len(rows) == 6
    res = satclip.locate(tifs[:2], model, top_k=3, device="cpu")
    for i, tif in enumerate(tifs[:2]):
        c = image_center(tif)
        assert f"true centre {c.lon:.4f}, {c.lat:.4f}" in out
        for rank in range(3):
            _, lon, _lat, score, dist = rows[3 * i + rank]
            assert float(lon) == pytest.approx(res.lonlat[i, rank, 0], abs=1e-4)
            assert float(score) == pytest.approx(res.scores[i, rank], abs=1e-4)
            assert float(dist) == pytest.approx(great_circle_km(c.lon, c.lat, *res.lonlat[i, rank]), abs=0.06)


def test_locate_draws_a_map(tmp_path, model, tifs, capsys):
    require("matplotlib")
    png = tmp_path / "map.png"
    assert (
        main(["locate", str(tifs[0]), "--model", model, "--map", str(png), "--resolution", "10", "--top-k", "1"]) == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one map, one image
    assert main(["locate", str(tifs[0]), str(tifs[1]), "--model", model, "--map", str(tmp_path / "m2.png")]) == 2


def test_locate_without_georeference_says_so(tmp_path, model, capsys):
    plain = write_s2_geotiff(tmp_path / "plain.tif", np.ones((12, 32, 32), np.uint16), epsg=None)
    assert main(["locate", str(plain), "--model", model, "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "no georeference" in out and "distance_km" not in out
