"""``satclip encode`` against object stores: a real S3 API (moto's server on the loopback
interface, spoken to by s3fs over HTTP) and fsspec's in-memory filesystem."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from satclip.embed.locations import encode

pytestmark = pytest.mark.usefixtures("fresh_model_cache")

BUCKET = "satclip-test"


def frame(n: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"id": np.arange(first_id, first_id + n), "lon": rng.uniform(-180, 180, n), "lat": rng.uniform(-90, 90, n)}
    )


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), for the whole module."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An s3fs filesystem on a fresh bucket; ``s3://`` URLs given to the CLI reach the same server
    (fsspec's configuration for the s3 protocol, as a user's ~/.config/fsspec would set it)."""
    import fsspec
    import s3fs

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"client_kwargs": {"endpoint_url": s3_endpoint}})
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    fs.invalidate_cache()
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def local_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory local temporary files go to, so that tests can see none is left."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def put_parquet(fs: Any, key: str, points: pd.DataFrame) -> None:
    with fs.open(f"{BUCKET}/{key}", "wb") as f:
        points.to_parquet(f, index=False)


def embeddings_of(table: pa.Table) -> np.ndarray:
    return np.stack(table.column("embedding").to_pylist()).astype(np.float32)


def etags(fs: Any, prefix: str) -> dict[str, str]:
    fs.invalidate_cache()
    return {p: fs.info(p)["ETag"] for p in fs.find(f"{BUCKET}/{prefix}")}


def test_encode_from_s3_to_s3_and_never_clobber(
    s3: Any, ckpt: str, local_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    points = frame(300, 1)
    with s3.open(f"{BUCKET}/in/points.csv", "wb") as f:
        f.write(points.to_csv(index=False).encode())
    src, dst = f"s3://{BUCKET}/in/points.csv", f"s3://{BUCKET}/out/emb.parquet"
    code, _, err = run_cli(capsys, "encode", src, "-o", dst, "--model", ckpt, "--batch-size", "64")
    assert code == 0, err
    with s3.open(f"{BUCKET}/out/emb.parquet", "rb") as f:
        table = pq.read_table(f)
    assert table.column_names == ["id", "lon", "lat", "embedding"]
    assert table.column("id").to_pylist() == points["id"].tolist()
    expected = encode(points[["lon", "lat"]].to_numpy(), ckpt)
    np.testing.assert_allclose(embeddings_of(table), expected, rtol=0, atol=2e-6)

    # An existing key: a usage error before the model is loaded (the model below does not exist).
    before = etags(s3, "out")
    code, _, err = run_cli(capsys, "encode", src, "-o", dst, "--model", "absent.ckpt")
    assert code == 2 and "already exists; pass --overwrite" in err, err
    assert etags(s3, "out") == before
    code, _, err = run_cli(capsys, "encode", src, "-o", dst, "--model", ckpt, "--layout", "wide", "--overwrite")
    assert code == 0, err
    with s3.open(f"{BUCKET}/out/emb.parquet", "rb") as f:
        assert "emb_255" in pq.read_schema(f).names
    assert list(local_tmp.iterdir()) == []


def test_an_s3_key_created_while_writing_is_not_replaced(
    s3: Any, ckpt: str, local_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import satclip.io.tables as tables

    put_parquet(s3, "in.parquet", frame(50, 2))
    real_close = tables.ParquetEmbeddingWriter.close

    def close_and_race(self: Any) -> None:
        real_close(self)
        s3.pipe(f"{BUCKET}/out.parquet", b"someone else's")

    monkeypatch.setattr(tables.ParquetEmbeddingWriter, "close", close_and_race)
    code, _, err = run_cli(
        capsys, "encode", f"s3://{BUCKET}/in.parquet", "-o", f"s3://{BUCKET}/out.parquet", "--model", ckpt
    )
    assert code == 2 and "created by something else" in err, err
    assert s3.cat(f"{BUCKET}/out.parquet") == b"someone else's"
    assert list(local_tmp.iterdir()) == []


def test_the_conditional_upload_refuses_a_key_that_appeared_after_the_last_check(s3: Any, tmp_path: Path) -> None:
    # The key appears between publish_to_url's own existence check and the upload: only S3's
    # If-None-Match (s3fs's mode="create") stands between the upload and the other writer's object.
    from satclip.errors import OutputExistsError
    from satclip.io.tables import publish_to_url

    real_exists = type(s3).exists

    def exists_then_race(self: Any, path: str, **kwargs: Any) -> bool:
        found = real_exists(self, path, **kwargs)
        if path.endswith("raced.bin"):
            s3.pipe(f"{BUCKET}/raced.bin", b"first")
        return bool(found)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(s3), "exists", exists_then_race)
        with pytest.raises(OutputExistsError, match="created by something else"):
            publish_to_url(f"s3://{BUCKET}/raced.bin", lambda tmp: tmp.write_bytes(b"second"))
    assert s3.cat(f"{BUCKET}/raced.bin") == b"first"


def test_hive_partitioned_s3_folder_keeps_its_partitions(
    s3: Any, ckpt: str, local_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = frame(70, 3), frame(40, 4, first_id=70), frame(30, 5, first_id=110)
    put_parquet(s3, "in/year=2020/part-0.parquet", a)
    put_parquet(s3, "in/year=2021/part-0.parquet", b)
    put_parquet(s3, "in/year=2021/part-1.parquet", c)
    s3.pipe(f"{BUCKET}/in/_SUCCESS", b"")  # marker files and hidden files are not parts
    s3.pipe(f"{BUCKET}/in/year=2021/.part-2.parquet.crc", b"x")
    out = f"s3://{BUCKET}/out"
    code, stdout, err = run_cli(capsys, "encode", f"s3://{BUCKET}/in/", "-o", out, "--model", ckpt)
    assert code == 0, err
    assert "wrote 3 parts" in stdout
    s3.invalidate_cache()
    assert sorted(s3.find(f"{BUCKET}/out")) == [
        f"{BUCKET}/out/year=2020/part-0.parquet",
        f"{BUCKET}/out/year=2021/part-0.parquet",
        f"{BUCKET}/out/year=2021/part-1.parquet",
    ]
    # Read back as a hive-partitioned dataset: the partition column comes back from the paths.
    dataset = ds.dataset(f"{BUCKET}/out", filesystem=s3, format="parquet", partitioning="hive")
    table = dataset.to_table().sort_by("id")
    assert table.column("year").to_pylist() == [2020] * 70 + [2021] * 70
    points = pd.concat([a, b, c])
    assert table.column("id").to_pylist() == points["id"].tolist()
    expected = encode(points[["lon", "lat"]].to_numpy(), ckpt)
    np.testing.assert_allclose(embeddings_of(table), expected, rtol=0, atol=2e-6)


def test_interrupted_s3_run_resumes_without_recomputing_finished_parts(
    s3: Any, ckpt: str, local_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import satclip.cli.main as cli
    import satclip.io.tables as tables

    n_parts = 5
    for i in range(n_parts):
        put_parquet(s3, f"in/p{i}.parquet", frame(60, 10 + i, first_id=60 * i))
    argv = ["encode", f"s3://{BUCKET}/in", "-o", f"s3://{BUCKET}/out", "--model", ckpt, "--batch-size", "25"]

    # Ctrl-C in the middle of the third part (its second batch).
    real_write = tables.ParquetEmbeddingWriter.write
    calls = {"n": 0}

    def write_then_interrupt(self: Any, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 2:  # three batches per part
            raise KeyboardInterrupt
        real_write(self, *args)

    monkeypatch.setattr(tables.ParquetEmbeddingWriter, "write", write_then_interrupt)
    code, _, err = run_cli(capsys, *argv)
    assert code == 130 and "interrupted" in err and "rerun to resume" in err, err
    done = etags(s3, "out")
    assert sorted(done) == [f"{BUCKET}/out/p0.parquet", f"{BUCKET}/out/p1.parquet"]  # no partial third part
    assert list(local_tmp.iterdir()) == []
    monkeypatch.setattr(tables.ParquetEmbeddingWriter, "write", real_write)

    # The rerun encodes exactly the missing parts; the finished objects are not written again.
    encoded: list[str] = []
    real_encode_file = cli._encode_file

    def counting(args: Any, model: Any, reader: Any, output: str, *rest: Any) -> None:
        encoded.append(output)
        real_encode_file(args, model, reader, output, *rest)

    monkeypatch.setattr(cli, "_encode_file", counting)
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "wrote 3 parts" in stdout and "2 already done, skipped" in stdout
    assert encoded == [f"s3://{BUCKET}/out/p{i}.parquet" for i in range(2, n_parts)]
    after = etags(s3, "out")
    assert {k: after[k] for k in done} == done
    for i in range(n_parts):
        with s3.open(f"{BUCKET}/out/p{i}.parquet", "rb") as f:
            table = pq.read_table(f)
        with s3.open(f"{BUCKET}/in/p{i}.parquet", "rb") as f:
            points = pd.read_parquet(f)
        np.testing.assert_allclose(
            embeddings_of(table), encode(points[["lon", "lat"]].to_numpy(), ckpt), rtol=0, atol=2e-6
        )

    # Nothing left: a third run loads no model at all.
    code, stdout, _ = run_cli(capsys, *argv[:-4], "--model", "absent.ckpt")
    assert code == 0 and "all 5 parts are already in" in stdout


def test_s3_output_checks_come_before_the_model(s3: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    frame(5, 6).to_csv(src, index=False)
    code, _, err = run_cli(capsys, "encode", str(src), "-o", "s3://no-such-bucket/o.parquet", "--model", "absent.ckpt")
    assert code == 1 and "the bucket no-such-bucket does not exist" in err, err
    code, _, err = run_cli(capsys, "encode", str(src), "-o", f"s3://{BUCKET}/o.json", "--model", "absent.ckpt")
    assert code == 2 and "extension '.json'" in err, err
    code, _, err = run_cli(capsys, "encode", str(src), "-o", "https://example.com/o.parquet", "--model", "absent.ckpt")
    assert code == 2 and "can be read, not written" in err, err


def test_memory_filesystem_npy_in_and_out(ckpt: str, capsys: pytest.CaptureFixture[str], local_tmp: Path) -> None:
    import io

    import fsspec

    fs = fsspec.filesystem("memory")
    lonlat = frame(40, 7)[["lon", "lat"]].to_numpy()
    buffer = io.BytesIO()
    np.save(buffer, lonlat)
    fs.pipe("/satclip-test/points.npy", buffer.getvalue())
    try:
        code, _, err = run_cli(
            capsys, "encode", "memory://satclip-test/points.npy", "-o", "memory://satclip-test/emb.npy", "--model", ckpt
        )
        assert code == 0, err
        got = np.load(io.BytesIO(fs.cat("/satclip-test/emb.npy")))
        np.testing.assert_allclose(got, encode(lonlat, ckpt), rtol=0, atol=2e-6)
    finally:
        fs.rm("/satclip-test", recursive=True)
    assert list(local_tmp.iterdir()) == []
