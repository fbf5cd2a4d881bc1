"""Image -> location retrieval (locate, similarity_map), the candidate grid and its cache, the
GeoTIFF georeference and the map figure. References: brute-force cosine similarity in NumPy,
pyproj for UTM, the S2-100K index for patch centres, closed forms for the lattice."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import satclip
import satclip.embed.locations
from conftest import require, shared_data_dir, write_s2_geotiff
from satclip.downstream import locate as locate_mod
from satclip.io.georef import great_circle_km, image_center, utm_to_lonlat

SAMPLE = (shared_data_dir() or Path("/nonexistent")) / "s2-100k-sample"


@pytest.fixture
def model(released_with_visual):
    return released_with_visual("moco_resnet18")[0]


@pytest.fixture(autouse=True)
def _fresh_cache():
    satclip.clear_caches()
    yield
    satclip.clear_caches()


def images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 8000, size=(n, 12, 32, 32)).astype(np.uint16)


def brute_force(image_emb: np.ndarray, cand_emb: np.ndarray) -> np.ndarray:
    a = image_emb.astype(np.float64)
    b = cand_emb.astype(np.float64)
    return (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))


def test_fibonacci_grid_is_equal_area_and_in_range():
    n = 100_000
    g = satclip.fibonacci_grid(n)
    assert g.shape == (n, 2)
    assert np.all((g[:, 0] >= -180) & (g[:, 0] < 180)) and np.all(np.abs(g[:, 1]) < 90)
    # Equal-area: the points in a latitude band are N * (sin b - sin a) / 2, to within one.
    for a, b in ((-90, -60), (-10, 10), (30, 45), (70, 90)):
        inside = np.count_nonzero((g[:, 1] >= a) & (g[:, 1] < b))
        assert abs(inside - n * (math.sin(math.radians(b)) - math.sin(math.radians(a))) / 2) <= 1.5
    # Near-uniform in longitude too: every 10x10-degree cell at the equator holds ~ its share.
    cell = np.count_nonzero((np.abs(g[:, 1]) < 5) & (g[:, 0] >= 0) & (g[:, 0] < 10))
    expected = n * math.sin(math.radians(5)) * (10 / 360)
    assert abs(cell - expected) < 0.05 * expected
    with pytest.raises(ValueError):
        satclip.fibonacci_grid(1)


def test_locate_ranks_exactly_as_brute_force_cosine(model):
    cands = satclip.fibonacci_grid(5000)
    res = satclip.locate(images(), model, candidates=cands, top_k=7, device="cpu")
    img = satclip.encode_images(images(), model, device="cpu")
    loc = satclip.encode(cands, satclip.load(model), device="cpu")
    sims = brute_force(img, loc)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    assert np.array_equal(res.indices, order)
    assert np.allclose(res.scores, np.take_along_axis(sims, order, axis=1), atol=1e-12, rtol=0)
    assert np.array_equal(res.lonlat, cands[order])
    assert np.array_equal(res.image_embeddings, img)
    frame = res.to_frame()
    assert list(frame.columns) == ["image", "rank", "lon", "lat", "score"] and len(frame) == 21


def test_default_grid_embeddings_are_computed_once_and_cached_on_disk(model, monkeypatch, tmp_path):
    calls = []
    real = satclip.embed.locations.encode
    monkeypatch.setattr(satclip.embed.locations, "encode", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    small = satclip.fibonacci_grid(2000)
    first = satclip.locate(images(1), model, candidates=small, device="cpu", cache_dir=tmp_path)
    again = satclip.locate(images(1, seed=5), model, candidates=small, device="cpu", cache_dir=tmp_path)
    assert calls == [2000]  # the second image reused the candidates' embeddings
    assert len(list(tmp_path.glob("satclip-candidates-*.npy"))) == 1
    assert len(list(tmp_path.iterdir())) == 1  # and no temporary file beside it
    satclip.clear_caches()
    from_disk = satclip.locate(images(1), model, candidates=small, device="cpu", cache_dir=tmp_path)
    assert calls == [2000]
    assert np.array_equal(from_disk.indices, first.indices) and not np.array_equal(again.indices, first.indices)
    # Other weights are another key: nothing stale is reused.
    img_enc, loc_enc = satclip.load_image_encoder(model), satclip.load(model)
    with torch.no_grad():
        loc_enc.nnet.last_layer.bias.add_(0.5)
    satclip.locate(images(1), (img_enc, loc_enc), candidates=small, device="cpu", cache_dir=tmp_path)
    assert calls == [2000, 2000]
    # The default grid is the 100k-point lattice.
    res = satclip.locate(images(1), (img_enc, loc_enc), top_k=2, device="cpu")
    assert res.candidates.shape == (100_000, 2) and calls[-1] == 100_000


def test_refine_hook_gets_the_ranked_result(model):
    seen = {}

    def refine(result, *, location_encoder, device):
        seen.update(result=result, encoder=location_encoder, device=device)
        result.lonlat = result.lonlat + 0.5
        return result

    cands = satclip.fibonacci_grid(500)
    plain = satclip.locate(images(2), model, candidates=cands, device="cpu")
    refined = satclip.locate(images(2), model, candidates=cands, device="cpu", refine=refine)
    assert isinstance(seen["encoder"], satclip.LocationEncoder) and seen["device"] == torch.device("cpu")
    assert np.array_equal(refined.lonlat, plain.lonlat + 0.5)


def test_refine_true_climbs_above_the_best_grid_point_and_stays_on_the_sphere(model):
    # The reference for "better" is the brute-force cosine of the refined locations' own
    # embeddings, computed here through the plain encode path, not the refiner's score.
    cands = satclip.fibonacci_grid(2000)
    imgs = images(3, seed=4)
    plain = satclip.locate(imgs, model, candidates=cands, top_k=3, device="cpu")
    refined = satclip.locate(imgs, model, candidates=cands, top_k=3, device="cpu", refine=True)
    lon, lat = refined.lonlat[..., 0], refined.lonlat[..., 1]
    assert np.all(np.isfinite(refined.lonlat)) and np.all(np.abs(lon) <= 180) and np.all(np.abs(lat) <= 90)
    loc_emb = satclip.encode(refined.lonlat.reshape(-1, 2), satclip.load(model), dtype=torch.float64)
    img_emb = np.repeat(refined.image_embeddings.astype(np.float64), 3, axis=0)
    cosine = (loc_emb * img_emb).sum(1) / np.linalg.norm(loc_emb, axis=1) / np.linalg.norm(img_emb, axis=1)
    np.testing.assert_allclose(cosine.reshape(3, 3), refined.scores, atol=1e-5)
    # Every image's best refined guess beats its best grid point, and the ranking is by score.
    assert np.all(refined.scores[:, 0] > plain.scores[:, 0])
    assert np.all(np.diff(refined.scores, axis=1) <= 0)


def test_locate_bad_arguments(model):
    with pytest.raises(ValueError, match="top_k"):
        satclip.locate(images(1), model, candidates=satclip.fibonacci_grid(10), top_k=11)
    with pytest.raises(satclip.errors.CoordinateError):
        satclip.locate(images(1), model, candidates=np.array([[0.0, 95.0]]), top_k=1)
    with pytest.raises(satclip.errors.SatclipError, match="both halves"):
        satclip.locate(images(1), satclip.load(model))


def test_similarity_map_matches_brute_force(model):
    img = images(1)
    smap = satclip.similarity_map(img[0], model, resolution=10.0, xarray=False, device="cpu")
    assert smap.values.shape == (18, 36)
    assert np.allclose(smap.lon, np.arange(-175, 180, 10)) and np.allclose(smap.lat, np.arange(-85, 90, 10))
    emb = satclip.encode_images(img, model, device="cpu")
    rows, cols = [0, 9, 17, 4], [0, 20, 35, 7]
    pts = np.stack([smap.lon[cols], smap.lat[rows]], axis=1)
    expected = brute_force(emb, satclip.encode(pts, satclip.load(model), device="cpu"))[0]
    assert np.allclose(smap.values[rows, cols], expected, atol=1e-12)
    xr = require("xarray")
    da = satclip.similarity_map(img[0], model, resolution=10.0, device="cpu")
    assert isinstance(da, xr.DataArray) and da.dims == ("lat", "lon")
    assert np.array_equal(da.values, smap.values)
    with pytest.raises(satclip.errors.ShapeError, match="one image"):
        satclip.similarity_map(images(2), model, resolution=10.0)


def test_plot_similarity_map_draws_a_figure(model, tmp_path):
    require("matplotlib")
    smap = satclip.similarity_map(images(1)[0], model, resolution=10.0, xarray=False, device="cpu")
    fig = satclip.plot_similarity_map(smap, true_location=(10.0, 45.0), guesses=np.array([[0.0, 0.0], [20.0, 10.0]]))
    ax = fig.axes[0]
    assert len(ax.get_images()) == 1 and tuple(ax.get_images()[0].get_extent()) == (-180, 180, -90, 90)
    assert np.array_equal(ax.get_images()[0].get_array(), smap.values)
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------- georef


def test_utm_inverse_matches_pyproj():
    pyproj = require("pyproj")
    rng = np.random.default_rng(0)
    for _ in range(300):
        zone, north = int(rng.integers(1, 61)), bool(rng.integers(0, 2))
        e = rng.uniform(170_000, 830_000)
        n = rng.uniform(0, 9_300_000) if north else rng.uniform(1_000_000, 10_000_000)
        epsg = (32600 if north else 32700) + zone
        lon, lat = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(e, n)
        got = utm_to_lonlat(e, n, zone=zone, north=north)
        assert abs(got[0] - lon) < 1e-7 and abs(got[1] - lat) < 1e-7


def test_image_center_of_written_geotiff(tmp_path):
    pyproj = require("pyproj")
    px = np.zeros((12, 64, 80), np.uint16)
    path = write_s2_geotiff(tmp_path / "g.tif", px, epsg=32733, origin=(400_000.0, 8_000_000.0))
    c = image_center(path)
    lon, lat = pyproj.Transformer.from_crs(32733, 4326, always_xy=True).transform(400_000 + 400, 8_000_000 - 320)
    assert c.epsg == 32733 and abs(c.lon - lon) < 1e-8 and abs(c.lat - lat) < 1e-8
    assert image_center(write_s2_geotiff(tmp_path / "plain.tif", px, epsg=None)) is None


@pytest.mark.skipif(not (SAMPLE / "index.csv").is_file(), reason="shared S2-100K sample not present")
def test_image_center_matches_the_s2_100k_index():
    with open(SAMPLE / "index.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        c = image_center(SAMPLE / "images" / row["fn"])
        assert great_circle_km(c.lon, c.lat, float(row["lon"]), float(row["lat"])) < 1e-3  # < 1 m


def test_great_circle_distance():
    r = 6371.0088
    assert great_circle_km(0, 0, 0, 90) == pytest.approx(math.pi * r / 2, rel=1e-12)
    assert great_circle_km(-179.5, 0, 179.5, 0) == pytest.approx(math.radians(1) * r, rel=1e-9)
    assert great_circle_km(10, 20, 10, 20) == 0


def test_large_maps_are_computed_in_chunks_without_caching(model, monkeypatch):
    img = images(1)[0]
    cached = satclip.similarity_map(img, model, resolution=10.0, xarray=False, device="cpu")
    satclip.clear_caches()
    monkeypatch.setattr(locate_mod, "_MAP_CACHE_LIMIT", 10)
    chunked = satclip.similarity_map(img, model, resolution=10.0, xarray=False, device="cpu")
    assert np.allclose(chunked.values, cached.values, atol=1e-12)
    assert not locate_mod._CACHE  # nothing kept for a map above the limit


def test_impossible_georeferencing_is_refused_naming_the_file(tmp_path):
    from satclip.errors import ImageError

    px = np.zeros((12, 64, 80), np.uint16)
    # 10-degree pixels in EPSG:4326: the centre would be 400 degrees east, 320 degrees south.
    bad = write_s2_geotiff(tmp_path / "bad-scale.tif", px, epsg=4326, origin=(0.0, 0.0))
    with pytest.raises(ImageError, match=r"bad-scale\.tif: .*lon 400, lat -320 \(EPSG:4326\).*not on Earth"):
        image_center(bad)
    # The same tags on a 2 x 2 image are a valid (coarse) georeference: centre (10, 0).
    ok = image_center(write_s2_geotiff(tmp_path / "ok.tif", px[:, :2, :2], epsg=4326, origin=(0.0, 10.0)))
    assert (ok.lon, ok.lat, ok.epsg) == (10.0, 0.0, 4326)


def test_a_two_tower_model_locates_as_its_checkpoint_does(model):
    """satclip.SatCLIP (both halves in one module) gives locate and similarity_map exactly what
    the checkpoint's name gives, and its state-dict keys are the released layout's."""
    two_tower = satclip.SatCLIP(satclip.load_image_encoder(model), satclip.load(model)).eval()
    cands = satclip.fibonacci_grid(2000)
    by_name = satclip.locate(images(), model, candidates=cands, top_k=3, device="cpu")
    by_model = satclip.locate(images(), two_tower, candidates=cands, top_k=3, device="cpu")
    assert np.array_equal(by_model.indices, by_name.indices)
    assert np.array_equal(by_model.scores, by_name.scores)
    smap = satclip.similarity_map(images(1)[0], two_tower, resolution=30.0, xarray=False, device="cpu")
    expected = satclip.similarity_map(images(1)[0], model, resolution=30.0, xarray=False, device="cpu")
    assert np.array_equal(smap.values, expected.values)
    released = torch.load(model, map_location="cpu", weights_only=True)["state_dict"]
    released_keys = {k.removeprefix("model.") for k in released if k.startswith(("model.visual.", "model.location."))}
    own_keys = set(two_tower.state_dict())
    assert released_keys <= own_keys and own_keys - released_keys == {"logit_scale"}
    # The learnt temperature scales cosine similarities, as in training.
    x = torch.from_numpy(images(2).astype(np.float32) / 10_000)
    x = torch.cat([x[:, :10], torch.zeros_like(x[:, :1]), x[:, 10:]], dim=1)
    points = torch.tensor([[8.55, 47.37], [-74.0, 40.7]], dtype=torch.float64)
    with torch.no_grad():
        logits = two_tower.logits(x, points)
        image_features, location_features = two_tower(x, points)
    assert torch.allclose(logits, math.exp(two_tower.logit_scale.item()) * image_features @ location_features.T)
