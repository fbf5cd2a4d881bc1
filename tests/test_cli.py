"""The ``satclip`` command line, end to end in a temporary directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import run_cli
from satclip.embed.locations import encode
from satclip.io.checkpoint import MODELS

pytestmark = pytest.mark.usefixtures("fresh_model_cache")


@pytest.fixture
def points() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 25
    return pd.DataFrame(
        {
            "site": [f"s{i}" for i in range(n)],
            "Longitude": rng.uniform(-180, 180, n),
            "Latitude": rng.uniform(-90, 90, n),
            "value": rng.normal(size=n),
        }
    )


def lonlat_of(frame: pd.DataFrame) -> np.ndarray:
    return frame[["Longitude", "Latitude"]].to_numpy()


def test_csv_to_parquet_list_column(
    tmp_path: Path, ckpt: str, points: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "points.csv", tmp_path / "emb.parquet"
    points.to_csv(src, index=False)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt)
    assert code == 0, err
    table = pq.read_table(dst)
    assert table.column_names == ["site", "Longitude", "Latitude", "value", "embedding"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 256)
    assert table.column("site").to_pylist() == points["site"].tolist()
    np.testing.assert_array_equal(table.column("value").to_numpy(), points["value"].to_numpy())
    embeddings = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(embeddings, encode(lonlat_of(points), ckpt, device="cpu"))


def test_parquet_to_wide_parquet_float64(
    tmp_path: Path, ckpt: str, points: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "points.parquet", tmp_path / "wide.parquet"
    points.rename(columns={"Longitude": "x_deg", "Latitude": "y_deg"}).to_parquet(src)
    code, _, err = run_cli(
        capsys,
        "encode",
        str(src),
        "-o",
        str(dst),
        "--model",
        ckpt,
        "--format",
        "wide",
        "--lon-col",
        "x_deg",
        "--lat-col",
        "y_deg",
        "--dtype",
        "float64",
        "--batch-size",
        "4",
    )
    assert code == 0, err
    frame = pd.read_parquet(dst)
    assert list(frame.columns[:4]) == ["site", "x_deg", "y_deg", "value"]
    assert list(frame.columns[4:]) == [f"emb_{i}" for i in range(256)]
    expected = encode(lonlat_of(points), ckpt, dtype=torch.float64, device="cpu")
    np.testing.assert_allclose(frame.iloc[:, 4:].to_numpy(), expected, rtol=0, atol=1e-13)


def test_npy_to_npy_and_npy_to_parquet(
    tmp_path: Path, ckpt: str, points: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "points.npy"
    np.save(src, lonlat_of(points))
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(tmp_path / "emb.npy"), "--model", ckpt)
    assert code == 0, err
    expected = encode(lonlat_of(points), ckpt, device="cpu")
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), expected)

    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(tmp_path / "emb.parquet"), "--model", ckpt)
    assert code == 0, err
    table = pq.read_table(tmp_path / "emb.parquet")
    assert table.column_names == ["lon", "lat", "embedding"]
    np.testing.assert_array_equal(table.column("lon").to_numpy(), points["Longitude"].to_numpy())


def test_refuses_to_overwrite(
    tmp_path: Path, ckpt: str, points: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "points.csv", tmp_path / "emb.npy"
    points.to_csv(src, index=False)
    dst.write_bytes(b"the user's own file")
    code, _out, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt)
    assert code == 2
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert dst.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "points.csv"]

    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt, "--overwrite")
    assert code == 0, err
    assert np.load(dst).shape == (len(points), 256)


def test_bad_coordinates_fail_cleanly(
    tmp_path: Path, ckpt: str, points: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    points.loc[7, "Latitude"] = 123.0
    src, dst = tmp_path / "points.csv", tmp_path / "emb.parquet"
    points.to_csv(src, index=False)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", str(dst), "--model", ckpt)
    assert code == 1
    assert "row 7" in err and "swapped" in err and "Traceback" not in err and err.count("\n") == 1
    assert not dst.exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["encode", "{dir}/points.txt", "-o", "{dir}/o.npy"], 2, "must be .csv, .parquet or .npy"),
        (["encode", "{dir}/points.csv", "-o", "{dir}/o.json"], 2, "must be .parquet, .pq or .npy"),
        (["encode", "{dir}/absent.csv", "-o", "{dir}/o.npy"], 1, "no such input file"),
        (["encode", "{dir}/points.csv", "-o", "{dir}/o.npy", "--lon-col", "nope"], 1, "no longitude column 'nope'"),
        (
            ["encode", "{dir}/points.csv", "-o", "{dir}/o.npy", "--batch-size", "0"],
            2,
            "--batch-size: must be a positive integer",
        ),
        (["encode", "{dir}/points.csv", "-o", "{dir}/o.npy", "--model", "resnet77-l10"], 1, "unknown model"),
        (
            ["encode", "{dir}/points.csv", "-o", "{dir}/o.npy", "--model", "{dir}/absent.ckpt"],
            1,
            "no such checkpoint file",
        ),
        (["encode", "{dir}/empty.csv", "-o", "{dir}/o.npy"], 1, "empty"),
        (["encode", "{dir}/pickled.npy", "-o", "{dir}/o.npy"], 1, "not a plain numeric .npy"),
    ],
)
def test_user_errors_are_one_line(
    tmp_path: Path,
    ckpt: str,
    points: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    points.to_csv(tmp_path / "points.csv", index=False)
    (tmp_path / "points.txt").write_text("1 2\n")
    (tmp_path / "empty.csv").write_text("")
    np.save(tmp_path / "pickled.npy", np.array([{"lon": 1}], dtype=object), allow_pickle=True)
    args = [a.replace("{dir}", str(tmp_path)) for a in argv]
    if "--model" not in args:
        args += ["--model", ckpt]
    got, _, err = run_cli(capsys, *args)
    assert got == code
    assert message in err and err.startswith("satclip: error:") and err.count("\n") == 1
    assert not (tmp_path / "o.npy").exists()


def test_models_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    for name, entry in MODELS.items():
        assert name in out and entry.repo_id in out and entry.filename in out


def test_convert_then_encode(
    tmp_path: Path, ckpt: str, points: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.safetensors"
    code, _, err = run_cli(capsys, "convert", ckpt, "-o", str(out))
    assert code == 0, err
    np.testing.assert_array_equal(encode(lonlat_of(points), out), encode(lonlat_of(points), ckpt))
    code, _, err = run_cli(capsys, "convert", ckpt, "-o", str(out))
    assert code == 2 and "already exists" in err


def test_console_entry_point(tmp_path: Path, ckpt: str) -> None:
    """The module runs as a program, as the installed ``satclip`` script does."""
    src = tmp_path / "p.npy"
    np.save(src, np.array([[8.55, 47.37], [-122.4, 37.8]]))
    result = subprocess.run(
        [sys.executable, "-m", "satclip.cli.main", "encode", str(src), "-o", str(tmp_path / "e.npy"), "--model", ckpt],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "e.npy").shape == (2, 256)
