"""Location encoders other than SatCLIP's: GeoCLIP (against the geoclip package and its real
weights), the parameter-free baselines (against independent formulas), user modules and callables,
and the errors for encoders that cannot be used."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import satclip
from conftest import require
from references.sh import reference_features
from satclip.errors import CheckpointError, EncoderError, MissingExtraError
from satclip.models.encoders import BUILTIN_ENCODERS


def sphere_points(n: int, seed: int = 0) -> np.ndarray:
    """Uniform on the sphere, plus both poles at several longitudes and the antimeridian."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-180, 180, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    special = np.array(
        [[lo, la] for la in (90.0, -90.0) for lo in (-180.0, -90.0, 0.0, 45.0, 180.0)]
        + [[s * 180.0, la] for s in (-1, 1) for la in (-60.0, -1e-7, 0.0, 33.3, 89.99)]
        + [[s * np.nextafter(180.0, 0.0), 10.0] for s in (-1, 1)]
    )
    return np.concatenate([special, np.column_stack([lon, lat])])[:n]


# --- GeoCLIP ---------------------------------------------------------------------------------------


needs_py311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="the geoclip package needs Python 3.11")


@needs_py311
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_geoclip_matches_the_geoclip_package_with_its_real_weights() -> None:
    """satclip's GeoCLIP vs the package's own LocationEncoder (its weights file, loaded by it): within
    1e-5 relative on 10,000 points with the poles and the antimeridian; the package is not imported
    by satclip's path."""
    points = sphere_points(10_000, seed=1)
    satclip.clear_caches()
    imported_before = "geoclip" in sys.modules  # another test may have imported the package already
    try:
        ours = satclip.encode(points, "geoclip", device="cpu")
    except MissingExtraError:
        require("geoclip")  # skips here without the extra (fails in CI)
        raise
    assert imported_before or "geoclip" not in sys.modules, "satclip imported the geoclip package"
    assert ours.shape == (10_000, 512) and ours.dtype == np.float32

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's torch.jit.script deprecation
        from geoclip.model.location_encoder import LocationEncoder

        reference = LocationEncoder(from_pretrained=True).eval()  # reads the packaged file, no download
    with torch.inference_mode():
        expected = reference(torch.from_numpy(points[:, ::-1].copy()).float()).numpy()  # it takes [lat, lon]
    scale = np.abs(expected).max(axis=1, keepdims=True)
    rel = np.abs(ours - expected) / scale
    assert rel.max() <= 1e-5, rel.max()
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


@needs_py311
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_geoclip_weights_from_a_file_and_their_layout(tmp_path: Path) -> None:
    require("geoclip")
    from satclip.models.geoclip import GeoCLIPLocationEncoder, installed_weights, load_geoclip

    path = installed_weights()
    assert path.name == "location_encoder_weights.pth" and path.parent.name == "weights"
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = load_geoclip(path)
    assert isinstance(model, GeoCLIPLocationEncoder)
    back = model.state_dict()
    assert sorted(back) == sorted(state) and len(back) == 27
    assert sum(v.numel() for v in back.values()) == 9_449_472
    for key, value in state.items():
        assert torch.equal(back[key], value), key
    # The same weights by path ('geoclip:PATH') give the same embeddings as the packaged ones.
    points = sphere_points(300, seed=2)
    copy = tmp_path / "weights.pth"
    torch.save(state, copy)
    np.testing.assert_array_equal(satclip.encode(points, f"geoclip:{copy}"), satclip.encode(points, "geoclip"))
    # float64 runs the same network in float64 (a different rounding of the same function).
    f64 = satclip.encode(points, "geoclip", dtype=torch.float64)
    assert f64.dtype == np.float64
    np.testing.assert_allclose(f64, satclip.encode(points, "geoclip"), atol=2e-3 * np.abs(f64).max())


def test_geoclip_weights_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from satclip.models import geoclip

    with pytest.raises(CheckpointError, match="no such GeoCLIP weights file"):
        geoclip.load_geoclip(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"LocEnc0.capsule.0.b": torch.zeros(3, 2)}, bad)
    with pytest.raises(CheckpointError, match=r"LocEnc0.capsule.0.b' must be a tensor of shape \(256, 2\)"):
        satclip.encode(np.zeros((1, 2)), f"geoclip:{bad}")
    # Without the package: the error names the extra to install.
    import importlib.metadata
    import importlib.util

    def no_dist(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    satclip.clear_caches()
    with pytest.raises(MissingExtraError, match=r"pip install 'satclip\[geoclip\]'"):
        satclip.encode(np.zeros((1, 2)), "geoclip")
    with pytest.raises(ImportError):
        geoclip.installed_weights()


# --- parameter-free baselines ----------------------------------------------------------------------


def test_baselines_match_independent_formulas() -> None:
    points = sphere_points(600, seed=3)
    lon, lat = np.radians(points[:, 0]), np.radians(points[:, 1])
    expected = {
        "wrap": np.column_stack([np.sin(lon), np.cos(lon), np.sin(lat), np.cos(lat)]),
        "cartesian3d": np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]),
        "lonlat": points,
        "sh-L10": reference_features(points, 10),
    }
    for name, want in expected.items():
        got = satclip.encode(points, name, dtype=torch.float64)
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=name)
        got32 = satclip.encode(points, name)  # float32: the float64 features rounded once
        assert got32.dtype == np.float32
        np.testing.assert_array_equal(got32, want.astype(np.float32) if name != "sh-L10" else got.astype(np.float32))
    sh40 = satclip.encode(points[:12], "sh-L40", dtype=torch.float64)
    np.testing.assert_allclose(sh40, reference_features(points[:12], 40), rtol=0, atol=1e-10)
    assert satclip.encode(points[:3], "SH-L7").shape == (3, 49)


def test_builtins_work_through_torch_input_and_the_transformer() -> None:
    points = sphere_points(40, seed=4)
    out = satclip.encode(torch.from_numpy(points), "wrap", dtype=torch.float64)
    assert isinstance(out, torch.Tensor) and out.shape == (40, 4)
    sklearn = require("sklearn")
    assert sklearn is not None
    from satclip.sklearn import SatCLIPEmbedding

    step = SatCLIPEmbedding("cartesian3d").fit(points)
    np.testing.assert_array_equal(step.transform(points), satclip.encode(points, "cartesian3d"))
    assert list(step.get_feature_names_out()) == ["emb_0", "emb_1", "emb_2"]


# --- any module or callable ------------------------------------------------------------------------


def test_modules_and_callables_are_encoders() -> None:
    points = sphere_points(100, seed=5)
    torch.manual_seed(0)
    linear = torch.nn.Linear(2, 8).double()
    with torch.no_grad():
        want = linear(torch.from_numpy(points)).numpy()
    got = satclip.encode(points, linear, dtype=torch.float64, batch_size=7)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert linear.weight.dtype == torch.float64  # the user's module is not changed
    got32 = satclip.encode(points, linear)
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)
    assert linear.weight.dtype == torch.float64

    def numpy_encoder(x: torch.Tensor) -> np.ndarray:
        return np.column_stack([x.numpy()[:, 1], x.numpy()[:, 0] * 2])

    np.testing.assert_allclose(
        satclip.encode(points, numpy_encoder, dtype=torch.float64), np.column_stack([points[:, 1], 2 * points[:, 0]])
    )


def test_encoders_that_cannot_be_used_raise_typed_errors() -> None:
    points = sphere_points(10)
    with pytest.raises(EncoderError, match="unknown model 'wrapp'") as info:
        satclip.encode(points, "wrapp")
    for name in [*BUILTIN_ENCODERS, "resnet50-l40"]:
        assert name in str(info.value)
    with pytest.raises(
        EncoderError, match=r"must map \(N, 2\) \[lon, lat\] to \(N, D\); for N = 1 it returned shape \(2,\)"
    ):
        satclip.encode(points, lambda x: x[0])
    with pytest.raises(EncoderError, match=r"for N = 10 it returned shape \(5, 2\)"):
        satclip.encode(points, lambda x: x[:5])
    with pytest.raises(EncoderError, match="encoder Linear failed"):
        satclip.encode(points, torch.nn.Linear(3, 4))
    with pytest.raises(EncoderError, match="must return an \\(N, D\\) tensor or array, got str"):
        satclip.encode(points, lambda x: "nope")
    with pytest.raises(EncoderError, match="degree must be 1 to"):
        satclip.encode(points, "sh-L0")


# --- one probe call, many encoders -----------------------------------------------------------------


def _smooth_sh_target(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth field: a random combination of the degree 2..9 spherical harmonics (independent formula)."""
    feats = reference_features(points, 10)
    weights = np.random.default_rng(seed).normal(size=feats.shape[1])
    weights[:4] = 0.0  # nothing a linear map of lon/lat or of the unit vector could explain directly
    return feats @ weights


def test_compare_ranks_encoders_on_a_task_with_a_known_ranking(tmp_path: Path) -> None:
    require("sklearn")
    from satclip.downstream.probes import Comparison, compare

    points = sphere_points(1000, seed=6)
    y = _smooth_sh_target(points)
    calls = []

    def counted_wrap(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return satclip.models.encoders.Wrap()(x)

    result = compare(points, y, ["sh-L10", counted_wrap, "lonlat"], cv="spatial", folds=4, n_blocks=40)
    assert isinstance(result, Comparison)
    assert list(result.results) == ["sh-L10", "counted_wrap", "lonlat"]
    r2 = {k: v[0] for k, v in result.scores().items()}
    assert r2["sh-L10"] > 0.99, r2  # the target is linear in these features
    assert r2["sh-L10"] > r2["counted_wrap"] + 0.5 and r2["sh-L10"] > r2["lonlat"] + 0.5, r2
    assert sum(calls) == 1 + len(points)  # encoded once (after the one-point shape probe), not per fold
    folds = [r.test_fold for r in result.results.values()]
    assert all(np.array_equal(folds[0], f) for f in folds)  # the same spatial folds for every encoder
    assert result.dims == {"sh-L10": 100, "counted_wrap": 4, "lonlat": 2}
    table = result.table().splitlines()
    assert "4-fold spatial CV" in table[0] and "1000 points" in table[0]
    assert [line.split()[0] for line in table[2:]] == ["sh-L10", "counted_wrap", "lonlat"]
    assert "±" in table[2] and "fit s" in table[1]
    # The same through the command line, with a chart.
    pd = require("pandas")
    require("matplotlib")
    from satclip.cli.main import main

    csv = tmp_path / "field.csv"
    pd.DataFrame({"lon": points[:, 0], "lat": points[:, 1], "y": y}).to_csv(csv, index=False)
    png = tmp_path / "chart.png"
    args = ["probe", "--models", "sh-L10,wrap,lonlat", str(csv), "--target", "y", "--cv", "spatial"]
    assert main([*args, "--folds", "4", "--blocks", "40", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_compare_errors(tmp_path: Path) -> None:
    require("sklearn")
    from satclip.cli.main import main
    from satclip.downstream.probes import compare
    from satclip.errors import ProbeError

    points = sphere_points(200, seed=7)
    y = points[:, 1].copy()
    with pytest.raises(ProbeError, match="at least one encoder"):
        compare(points, y, [])
    with pytest.raises(EncoderError, match="unknown model 'geoclipp'"):
        compare(points, y, ["wrap", "geoclipp"])
    with pytest.raises(ProbeError, match="5 folds need at least 5 points"):
        compare(points[:3], y[:3], ["wrap"], folds=5)
    csv = tmp_path / "p.csv"
    csv.write_text("lon,lat,y\n" + "\n".join(f"{a},{b},{b}" for a, b in points))
    assert main(["probe", str(csv), "--target", "y", "--models", "wrap", "--plot", str(tmp_path / "x.gif")]) == 2


# --- GeoCLIP's real weights downstream --------------------------------------------------------------


@needs_py311
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_geoclip_probe_on_air_temperature_beats_lonlat_and_its_map_has_structure() -> None:
    """With GeoCLIP's weights: a spatial-CV ridge probe of mean air temperature at the stations of
    the shared data (when present) scores far above raw lon/lat, and the embeddings of a region
    vary smoothly (neighbours close, far cells apart) over a few dominant components."""
    require("geoclip")
    require("sklearn")
    pd = require("pandas")
    from conftest import shared_data_dir
    from satclip.downstream.probes import compare

    data = shared_data_dir()
    csv = data / "air-temperature-stations.csv" if data is not None else None
    if csv is None or not csv.is_file():
        pytest.skip("the shared air-temperature-stations.csv is not here (SATCLIP_SHARED_DATA or ../shared/data)")
    frame = pd.read_csv(csv)
    result = compare(frame, "meanT", ["geoclip", "lonlat"], cv="spatial", folds=5)
    r2 = {k: v[0] for k, v in result.scores().items()}
    # Measured: geoclip 0.874 ± 0.032, lonlat 0.254 ± 0.204 (docs/benchmarks.md "Other location encoders").
    assert r2["geoclip"] > 0.8 and r2["geoclip"] > r2["lonlat"] + 0.4, r2

    # The embedding map of Europe at 1 degree (what `satclip map` draws: the first three principal
    # components as RGB) is structured: each component is strongly correlated between neighbouring
    # cells (measured 0.87 / 0.92 / 0.75 east-west, 0.82 / 0.89 / 0.66 north-south; 0 for noise)
    # and the three carry 20 % of the variance of 512 dimensions.
    lon, lat = np.meshgrid(np.arange(-10.0, 30.0, 1.0), np.arange(35.0, 60.0, 1.0))
    emb = satclip.encode(np.column_stack([lon.ravel(), lat.ravel()]), "geoclip").astype(np.float64)
    centred = emb - emb.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    assert (s[:3] ** 2).sum() / (s**2).sum() > 0.15
    pcs = (centred @ vt[:3].T).reshape(*lon.shape, 3)
    for k in range(3):
        pc = pcs[..., k]
        east_west = np.corrcoef(pc[:, 1:].ravel(), pc[:, :-1].ravel())[0, 1]
        north_south = np.corrcoef(pc[1:].ravel(), pc[:-1].ravel())[0, 1]
        assert east_west > 0.6 and north_south > 0.55, (k, east_west, north_south)


def test_builtin_encoders_through_the_dask_and_ray_adapters() -> None:
    pd = require("pandas")
    points = sphere_points(30, seed=9)
    frame = pd.DataFrame({"lon": points[:, 0], "lat": points[:, 1]})
    want = satclip.encode(points, "wrap")
    dd = require("dask.dataframe")
    from satclip import dask as satclip_dask

    out = satclip_dask.encode(dd.from_pandas(frame, npartitions=3), model="wrap").compute(scheduler="synchronous")
    np.testing.assert_array_equal(np.stack(out["embedding"].to_numpy()), want)
    require("ray.data")
    from satclip.ray import SatCLIPEncoder

    for model in ("wrap", satclip.models.encoders.Wrap(), lambda x: satclip.models.encoders.Wrap()(x)):
        batch = SatCLIPEncoder(model, device="cpu")(frame.copy())
        # (a plain callable gets the points in float32, the built-ins compute from float64)
        np.testing.assert_allclose(np.stack(list(batch["embedding"])), want, rtol=0, atol=1e-6)


def test_map_command_draws_a_builtin_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require("matplotlib")
    from satclip.cli.main import main

    png = tmp_path / "wrap.png"
    args = ["map", "--model", "cartesian3d", "-o", str(png), "--region=-20,30,40,70", "--resolution", "2"]
    assert main([*args, "--size", "120x80", "--quiet"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["map", "--model", "wrapp", "-o", str(tmp_path / "x.png"), "--quiet"]) == 1
    assert "geoclip" in capsys.readouterr().err  # the message lists the built-in encoders
