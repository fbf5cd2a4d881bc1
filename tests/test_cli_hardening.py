"""The command line against a hostile user: outputs and options are checked before any model is
loaded, maps refuse grids too large for memory up front, and a terminated run always stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require, run_cli
from satclip.downstream import embedding_map

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "python")}


def one_line_error(err: str) -> bool:
    return err.startswith("satclip: error:") and err.count("\n") == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------------------
# Outputs and options are checked before the model is loaded: the checkpoint below does not
# exist, so an error about anything else proves that nothing was loaded (or computed).


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["map", "-o", "nodir/x.png"], 1, "-o nodir/x.png: the output directory nodir does not exist"),
        (["map", "-o", "grid.nc"], 2, "-o grid.nc: extension '.nc'; the output must be .png, .pdf or .svg"),
        (["map", "--export", "x.xyz"], 2, "--export x.xyz: extension '.xyz'"),
        (["map", "--export", "nodir/g.nc"], 1, "--export nodir/g.nc: the output directory nodir does not exist"),
        (["map", "-o", "both.tif", "--export", "both.tif"], 2, "-o and --export both name both.tif"),
        (["map", "-o", "m.png", "--export", "./m.png"], 2, "-o and --export both name m.png"),
        (["map", "--export", "taken.nc"], 2, "--export: taken.nc already exists; pass --overwrite"),
        (["map", "--export", "store.zarr"], 2, "--export: store.zarr already exists; pass --overwrite"),
        (["map", "-o", "store.zarr.png/"], 2, "is a directory"),
        (["map", "-o", "m.png", "--resolution", "0"], 2, "argument --resolution: must be a positive number"),
        (["map", "-o", "m.png", "--resolution", "nan"], 2, "argument --resolution: must be a positive number"),
        (["map", "-o", "m.png", "--resolution", "-1"], 2, "argument --resolution: must be a positive number"),
        (["map", "-o", "m.png", "--resolution", "7"], 2, "not a whole number of 7-deg cells"),
        (["map", "-o", "m.png", "--region=0,0,nan,2"], 2, "must be lon0,lat0,lon1,lat1 with"),
        (["map", "-o", "m.png", "--region=0,0,x,2"], 2, "--region must be four numbers"),
        (["map", "-o", "m.png", "--size", "0x0"], 2, "--size 0x0: each side must be 16"),
        (["map", "-o", "m.png", "--size", "wide"], 2, "--size must be WIDTHxHEIGHT"),
        (["map"], 2, "give -o IMAGE and/or --export GRID"),
        (["embed-images", "a.tif", "-o", "nodir/e.parquet"], 1, "-o nodir/e.parquet: the output directory nodir"),
        (["embed-images", "a.tif", "-o", "e.csv"], 2, "-o e.csv: extension '.csv'; the output must be .parquet or .pq"),
        (["embed-images", "a.tif", "-o", "a.tif"], 2, "-o a.tif: extension '.tif'"),
        (["embed-images", "a.tif", "-o", "taken.parquet"], 2, "-o: taken.parquet already exists"),
        (["embed-images", "absent.tif", "-o", "e.parquet"], 1, "no such image file: absent.tif"),
        (["embed-images", "empty", "-o", "e.parquet"], 1, "empty is a directory with no .tif or .tiff files"),
        (["embed-images", "a.tif", "-o", "e.parquet", "--batch-size", "0"], 2, "argument --batch-size: must be"),
        (["locate", "a.tif", "--map", "nodir/m.png"], 1, "--map nodir/m.png: the output directory nodir"),
        (["locate", "a.tif", "--map", "m.xyz"], 2, "--map m.xyz: extension '.xyz'"),
        (["locate", "a.tif", "--map", "m.png", "--resolution", "0"], 2, "argument --resolution: must be a positive"),
        (["locate", "a.tif", "--map", "m.png", "--resolution", "200"], 2, "must be 0.01 to 90 degrees, got 200"),
        (["locate", "a.tif", "b.tif", "--map", "m.png"], 2, "--map draws one image: give a single TIF, not 2"),
        (["locate", "a.tif", "--top-k", "0"], 2, "argument --top-k: must be a positive integer"),
        (["locate", "a.tif", "--top-k", "100001"], 2, "--top-k: at most 100000"),
        (["locate", "a.tif", "--cache-dir", "a.tif"], 2, "--cache-dir a.tif is not a directory"),
        (["encode", "p.csv", "-o", "p.csv", "--overwrite"], 2, "-o p.csv: extension '.csv'"),
        (["encode", "p.parquet", "-o", "./p.parquet", "--overwrite"], 2, "-o p.parquet is also an input"),
        (["encode", "p.csv", "-o", "nodir/e.npy"], 1, "-o nodir/e.npy: the output directory nodir does not exist"),
        (["encode", "p.csv", "-o", "e.npy", "--batch-size", "-3"], 2, "argument --batch-size: must be a positive"),
        (["convert", "absent.ckpt", "-o", "m.pt"], 2, "-o m.pt: extension '.pt'; the output must be .safetensors"),
        (["probe", "p.csv", "--target", "t", "--folds", "1"], 2, "argument --folds: must be at least 2"),
        (["probe", "p.csv", "--target", "t", "--baselines", "bogus"], 2, "unknown baseline(s) bogus"),
        (["probe", "p.txt", "--target", "t"], 2, "cannot read p.txt: the input must be a .csv or .parquet file"),
        (["probe", "absent.csv", "--target", "t"], 1, "no such input file: absent.csv"),
        (["probe", "empty.csv", "--target", "t"], 1, "empty.csv is empty"),
        (["probe", "header.csv", "--target", "t"], 1, "header.csv has no rows"),
        (["probe", "p.csv", "--target", "t", "--head", "forest"], 2, "argument --head: invalid choice: 'forest'"),
    ],
)
def test_outputs_and_options_are_checked_before_the_model_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv, code, message
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.tif", "b.tif", "taken.nc", "taken.parquet", "p.txt", "empty.csv"):
        Path(name).write_bytes(b"")
    Path("header.csv").write_text("lon,lat,t\n")
    Path("store.zarr").mkdir()
    Path("store.zarr.png").mkdir()
    Path("empty").mkdir()
    pd.DataFrame({"lon": [1.0], "lat": [2.0], "t": [3.0]}).to_csv("p.csv", index=False)
    pd.DataFrame({"lon": [1.0], "lat": [2.0]}).to_parquet("p.parquet")
    before = sorted(p.name for p in tmp_path.iterdir())

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("satclip.io.checkpoint.load", no_loading)
    if argv[0] not in ("convert", "probe"):
        argv = [*argv, "--model", "absent.ckpt"]
    got, _, err = run_cli(capsys, *argv)
    assert (got, message in err) == (code, True), err
    assert one_line_error(err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary left


@pytest.mark.parametrize(
    "argv",
    [
        ["encode", "p.csv", "-o", "taken.parquet"],
        ["encode", "p.csv", "-o", "taken.npy"],
        ["convert", "absent.ckpt", "-o", "taken.safetensors"],
        ["embed-images", "a.tif", "-o", "taken.parquet"],
        ["locate", "a.tif", "--map", "taken.png"],
        ["map", "-o", "taken.png"],
        ["map", "--export", "taken.nc"],
        ["map", "--export", "store.zarr"],
        ["probe", "p.csv", "--target", "t", "--plot", "taken.png", "--model", "absent.ckpt"],
    ],
)
def test_every_command_refuses_an_existing_output_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    # Two proofs that no model was loaded: the checkpoint does not exist (loading it would be
    # exit 1, "no such checkpoint file"), and every loader raises if it is called at all.
    monkeypatch.chdir(tmp_path)
    for name in ("a.tif", "taken.parquet", "taken.npy", "taken.safetensors", "taken.png", "taken.nc"):
        Path(name).write_bytes(b"the user's own file")
    Path("store.zarr").mkdir()
    pd.DataFrame({"lon": [1.0, 2.0], "lat": [2.0, 3.0], "t": [3.0, 4.0]}).to_csv("p.csv", index=False)

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for loader in (
        "satclip.io.checkpoint.load",
        "satclip.embed.images.encode_images",
        "satclip.downstream.locate.locate",
        "satclip.downstream.probes.compare",
    ):
        monkeypatch.setattr(loader, no_loading)
    if argv[0] not in ("convert", "probe"):
        argv = [*argv, "--model", "absent.ckpt"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "already exists; pass --overwrite to replace it" in err and one_line_error(err), err
    for name in ("taken.parquet", "taken.npy", "taken.safetensors", "taken.png", "taken.nc"):
        assert Path(name).read_bytes() == b"the user's own file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file


def test_probe_plot_is_published_and_replaced_only_with_overwrite(
    tmp_path: Path, released_l6: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require("matplotlib")
    require("sklearn")
    rng = np.random.default_rng(1)
    csv = tmp_path / "p.csv"
    pd.DataFrame({"lon": rng.uniform(-180, 180, 60), "lat": rng.uniform(-80, 80, 60), "t": rng.normal(size=60)}).to_csv(
        csv, index=False
    )
    chart = tmp_path / "chart.png"
    argv = ["probe", str(csv), "--target", "t", "--baselines", "lonlat", "--plot", str(chart)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    chart.write_bytes(b"mine")
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "already exists" in err and chart.read_bytes() == b"mine"
    code, _, err = run_cli(capsys, *argv, "--overwrite")
    assert code == 0 and chart.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "p.csv"]


def test_map_export_checks_the_disk_before_loading_a_released_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("satclip.io.checkpoint.load", no_loading)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    out = tmp_path / "grid.nc"
    code, _, err = run_cli(capsys, "map", "--model", "resnet50-l40", "--export", str(out), "--resolution", "10")
    assert code == 1 and one_line_error(err), err
    # 36 x 18 cells x 256 float32 values, the size of every released model's embeddings
    assert "36 x 18 cells x 256 float32 embeddings take 648.0 KiB" in err and "only 1000 B is free" in err, err
    assert not out.exists()


def test_a_directory_of_images_stands_for_its_geotiffs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from satclip.cli.images import image_paths

    (tmp_path / "b.TIF").write_bytes(b"")
    (tmp_path / "a.tif").write_bytes(b"")
    (tmp_path / "c.tiff").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.tif").write_bytes(b"")  # not recursive
    assert [p.name for p in image_paths([tmp_path])] == ["a.tif", "b.TIF", "c.tiff"]
    assert image_paths([tmp_path / "sub" / "d.tif", tmp_path / "sub"]) == [tmp_path / "sub" / "d.tif"] * 2


# ----------------------------------------------------------------------------------------
# Map memory: row bands of float32, and a documented limit enforced before any work


def test_a_map_too_large_for_memory_is_refused_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.png"
    code, _, err = run_cli(capsys, "map", "--model", "absent.ckpt", "-o", str(out), "--resolution", "0.001")
    assert code == 2 and one_line_error(err), err
    # 360000 x 180000 cells, 12 bytes each (float32 RGB), against the documented limit
    assert "360000 x 180000 grid (64,800,000,000 cells)" in err and "724.2 GiB" in err
    assert f"at most {embedding_map.MAP_MAX_CELLS:,} cells" in err
    code, _, err = run_cli(
        capsys, "map", "--model", "absent.ckpt", "-o", str(out), "--region=0,0,2,2", "--resolution", "1",
        "--size", "70000x35000",
    )  # fmt: skip
    assert code == 2 and one_line_error(err) and "--size 70000x35000: each side must be 16 to 32768" in err, err
    assert not out.exists()


def test_the_map_limit_is_the_grid_s_cells(released_l6: str, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = embedding_map.make_grid(10.0, (-30, -20, 30, 40))  # 6 x 6
    embedding_map.check_map_grid(grid)
    monkeypatch.setattr(embedding_map, "MAP_MAX_CELLS", 35)
    with pytest.raises(embedding_map.SatclipError, match="6 x 6 grid"):
        embedding_map.check_map_grid(grid)


def test_pca_rgb_is_float32(released_l6: str) -> None:
    rgb = embedding_map.pca_rgb(released_l6, embedding_map.make_grid(10.0, (-30, -20, 30, 40)), device="cpu")
    assert rgb.dtype == np.float32 and rgb.shape == (6, 6, 3)


def test_a_grid_finer_than_the_image_is_sampled_down_before_matplotlib_copies_it() -> None:
    require("matplotlib")
    from satclip.downstream.plots import plot_embedding_map

    rows, cols = 900, 1800
    rgb = np.zeros((rows, cols, 3), dtype=np.float32)
    rgb[:, cols // 2 :, 0] = 1.0  # the eastern half red
    lon = -180 + (np.arange(cols) + 0.5) * 360 / cols
    lat = 90 - (np.arange(rows) + 0.5) * 180 / rows
    fig = plot_embedding_map(rgb, lon, lat, size_px=(160, 80))
    drawn = fig.axes[0].images[0].get_array()
    assert drawn.shape == (160, 320, 3)  # twice the pixels, not the grid
    assert drawn[:, :160, 0].max() == 0 and drawn[:, 160:, 0].min() == 1  # the same picture


# ----------------------------------------------------------------------------------------
# SIGTERM: a terminated run stops, leaves nothing and exits 143 - every time


def test_a_sigterm_swallowed_by_a_finaliser_still_stops_the_run(tmp_path: Path) -> None:
    # Python runs the signal handler in whatever the main thread executes; inside a finaliser
    # (here a __del__, in real runs a WeakValueDictionary callback of h5py or xarray) the
    # exception it raises is printed as "Exception ignored" and dropped.
    script = textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        from satclip.io.publish import Terminated, publish, signals_as_exceptions

        class Finaliser:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside __del__

        def write(tmp):
            Finaliser()  # collected at once
            Path(tmp).write_text("the whole file")

        try:
            with signals_as_exceptions():
                publish(Path(sys.argv[1]), write)
        except Terminated:
            print("terminated")
            sys.exit(143)
        print("finished")
    """)
    out = tmp_path / "out.txt"
    run = subprocess.run([sys.executable, "-c", script, str(out)], env=ENV, capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout.strip()) == (143, "terminated"), run.stderr
    assert "Exception ignored" not in run.stderr
    assert sorted(tmp_path.iterdir()) == []


def test_a_sigterm_inside_a_deferred_block_is_raised_when_the_block_ends(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, signal
        from satclip.io.publish import Terminated, signals_as_exceptions, signals_deferred

        steps = []
        try:
            with signals_as_exceptions():
                with signals_deferred():
                    os.kill(os.getpid(), signal.SIGTERM)
                    steps.append("after the signal")  # the block runs to its end
                steps.append("after the block")  # never reached
        except Terminated:
            steps.append("terminated")
        print(",".join(steps))
    """)
    run = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "after the signal,terminated", run.stderr
    assert "Exception ignored" not in run.stderr


def test_a_sigterm_while_a_netcdf_file_is_being_created_breaks_no_finaliser(tmp_path: Path) -> None:
    # The signal lands inside h5netcdf.File's constructor, the one moment an interrupted run used
    # to print "Exception ignored" (the half-built File's finaliser failing).
    require("h5netcdf")
    script = textwrap.dedent("""
        import gc, os, signal, sys
        import h5netcdf.core
        from satclip.downstream import embedding_map
        from satclip.io.publish import Terminated, signals_as_exceptions

        opened = h5netcdf.core._open_h5py
        def interrupted(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
            return opened(*args, **kwargs)
        h5netcdf.core._open_h5py = interrupted

        grid = embedding_map.make_grid(30.0, (-180, -90, 180, 90))
        try:
            with signals_as_exceptions():
                embedding_map._NetCDFWriter(sys.argv[1], grid, 4, 2, {})
        except Terminated:
            print("terminated")
        gc.collect()
    """)
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "g.nc")], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert run.stdout.strip() == "terminated", run.stderr
    assert "Exception ignored" not in run.stderr, run.stderr


def _sigterm_at_several_moments(command: list[str], out: Path, delays: list[float]) -> int:
    """Runs ``command`` once per delay and sends SIGTERM that long after the output's temporary
    file appeared; returns how many runs were caught mid-work. Every terminated run must exit
    143 with nothing published and no temporary file left, and none may swallow the signal."""
    caught = 0
    for delay in delays:
        proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not list(out.parent.glob(f".{out.name}.tmp-*")):
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert "Exception ignored" not in err, err
        leftovers = list(out.parent.glob(f".{out.name}.tmp-*"))
        assert leftovers == [], leftovers
        if "wrote " in err:  # finished before the signal (which may then end the exit itself)
            assert proc.returncode in (0, -signal.SIGTERM) and out.is_file(), err
            out.unlink()
            continue
        assert proc.returncode == 143, err
        assert one_line_error(err.split("\r")[-1]) and "terminated; no output was written" in err, err
        assert not out.exists()
        caught += 1
    return caught


def test_sigterm_stops_map_export_at_any_moment(tmp_path: Path, ckpt: str) -> None:
    require("h5netcdf")
    out = tmp_path / "grid.nc"
    command = [sys.executable, "-m", "satclip.cli.main", "map", "--model", ckpt, "--export", str(out), "--resolution", "0.5",
               "--quiet", "--device", "cpu"]  # fmt: skip
    assert _sigterm_at_several_moments(command, out, [0.0, 0.05, 0.2, 0.5]) >= 3


def test_sigterm_stops_encode_at_any_moment(tmp_path: Path, ckpt: str) -> None:
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    rng = np.random.default_rng(3)
    pd.DataFrame({"lon": rng.uniform(-180, 180, 60000), "lat": rng.uniform(-90, 90, 60000)}).to_parquet(src)
    command = [sys.executable, "-m", "satclip.cli.main", "encode", str(src), "-o", str(out), "--model", ckpt,
               "--batch-size", "500", "--quiet", "--device", "cpu"]  # fmt: skip
    assert _sigterm_at_several_moments(command, out, [0.0, 0.05, 0.2, 0.5]) >= 3
