"""Scale-out overhead: satclip.dask.encode on a 2-worker LocalCluster vs satclip.encode in one process.

Same points, same released-size model (SIREN 256 wide, 2 hidden layers, written to a
safetensors file the workers load), float32:

* ``one_process``  ``satclip.encode`` here with 2 threads (satclip's pool and torch's): the
                   whole machine to one process
* ``dask_2x1``     ``satclip.dask.encode`` over 8 partitions on ``LocalCluster(n_workers=2,
                   processes=True, threads_per_worker=1)``, each worker single-threaded; the
                   input is persisted on the workers first and the embeddings stay there
                   (``persist`` + ``wait``), as when a pipeline writes them out from the workers

points/s = n / median. On a 2-core machine ``dask_2x1 / one_process`` (points/s) <= 1 is
expected: the same two cores, plus scheduling and partition overheads. Not run in quick mode
(what CI runs): starting a cluster costs more than the whole quick suite.
"""

from __future__ import annotations

import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pytest

import satclip
import satclip.dask
from benchkit import sample_lonlat, set_threads, timed
from conftest import get_mode

SIZES = {"default": (100_000,), "full": (1_000_000,)}
DEGREES = (10, 40)
PARTITIONS = 8


def _one_thread() -> None:
    import torch

    import satclip

    satclip.set_num_threads(1)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def client(pytestconfig):
    if get_mode(pytestconfig).name == "quick":
        pytest.skip("scale-out benchmark: default and full modes only")
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=40
    )
    with cluster, distributed.Client(cluster) as c:
        c.run(_one_thread)
        yield c


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from satclip.models.location import build_location_encoder

    root = tmp_path_factory.mktemp("models")
    files = {}
    for L in DEGREES:
        torch = pytest.importorskip("torch")
        torch.manual_seed(L)
        files[L] = root / f"released-size-l{L}.safetensors"
        satclip.save(build_location_encoder(L), files[L])
    return files


def _cases(config):
    return [(L, n) for L in DEGREES for n in SIZES.get(get_mode(config).name, ())]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = _cases(metafunc.config)
        metafunc.parametrize("case", cases, ids=[f"L{L}-n{n}" for L, n in cases])


@pytest.mark.parametrize("variant", ["one_process", "dask_2x1"])
def bench_scaleout(benchmark, client, model_files, case, variant, mode) -> None:
    L, n = case
    lonlat, source = sample_lonlat(n)
    frame = pd.DataFrame({"lon": lonlat[:, 0], "lat": lonlat[:, 1]})
    path = str(model_files[L])
    if variant == "one_process":
        set_threads(2)

        def run():
            return satclip.encode(frame, path)
    else:
        ddf = client.persist(dd.from_pandas(frame, npartitions=PARTITIONS))
        distributed.wait(ddf)

        def run():
            out = client.persist(satclip.dask.encode(ddf, model=path))
            distributed.wait(out)
            del out

    timed(benchmark, run, mode, kind="scaleout", variant=variant, L=L, n=n, points=source, workers=2)
    if variant == "one_process":
        # Same numbers on both paths (checked once, outside the timing).
        check = client.compute(satclip.dask.encode(dd.from_pandas(frame.iloc[:2000], npartitions=2), model=path))
        emb = check.result()["embedding"]
        import pyarrow as pa

        got = pa.array(emb).flatten().to_numpy().reshape(len(emb), -1)
        np.testing.assert_allclose(got, satclip.encode(frame.iloc[:2000], path), rtol=0, atol=1e-5)
