"""Peak memory of ``satclip encode`` on a 2e6-row table: bounded by the batch.

Each run is a fresh subprocess; its peak resident set (``ru_maxrss`` from ``os.wait4``) is the
number reported. Two references are measured in the same run:

* the import baseline - a process that imports torch and satclip's CLI and loads the model,
  then exits (torch alone is ~0.5 GB resident here); the CLI's *working* memory is its peak
  minus this baseline;
* the whole-table path the CLI used before streaming (read everything with pandas, one
  ``satclip.encode``, build one table, write it), to put the ratio on record.

Working memory must stay under 600 MB beyond the baseline at any N, and under a fifth of the
whole-table path's working memory at N = 2e6. (600 MB *total* is out of reach: the import
baseline alone measured 667 MB on the development machine.) Linux only. N = 2e6 in default/full mode, 2e5 in quick.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchkit import Mode

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
WORKING_LIMIT = 600 * MiB

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss semantics: Linux only")

_BASELINE = """
import sys, satclip.cli.main, torch
from satclip.io.checkpoint import load
load(sys.argv[1])
"""

_WHOLE_TABLE = """
import sys, numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq, satclip
frame = pd.read_csv(sys.argv[1])
emb = satclip.encode(frame, sys.argv[2], progress=False)
table = pa.Table.from_pandas(frame, preserve_index=False)
table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]))
pq.write_table(table, sys.argv[3])
"""


def _peak_rss(argv: list[str]) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err
    return usage.ru_maxrss * 1024  # KiB on Linux


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, mode: Mode) -> dict[str, Any]:
    import pandas as pd

    import satclip
    from satclip.io.checkpoint import EncoderConfig

    n = 200_000 if mode.name == "quick" else 2_000_000
    root = tmp_path_factory.mktemp("cli-memory")
    model = root / "l10.safetensors"
    satclip.save(EncoderConfig(L=10).build(), model)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(n), "lon": rng.uniform(-180, 180, n), "lat": rng.uniform(-90, 90, n)})
    frame.to_csv(root / "points.csv", index=False)
    frame.to_parquet(root / "points.parquet", row_group_size=100_000)
    return {"n": n, "root": root, "model": str(model)}


@pytest.mark.parametrize("source", ["points.csv", "points.parquet"])
def bench_cli_peak_rss(benchmark: Any, dataset: dict[str, Any], source: str) -> None:
    root, model = dataset["root"], dataset["model"]
    baseline = _peak_rss([sys.executable, "-c", _BASELINE, model])
    results: dict[str, int] = {}

    def run() -> None:
        out = root / f"out-{source}.parquet"
        out.unlink(missing_ok=True)
        cli = [
            sys.executable,
            "-m",
            "satclip.cli.main",
            "encode",
            str(root / source),
            "-o",
            str(out),
            "--model",
            model,
            "--quiet",
        ]
        results["streamed"] = _peak_rss(cli)

    benchmark.pedantic(run, rounds=1, iterations=1)
    whole = _peak_rss(
        [sys.executable, "-c", _WHOLE_TABLE, str(root / "points.csv"), model, str(root / "whole.parquet")]
    )
    streamed = results["streamed"]
    benchmark.extra_info.update(
        n=dataset["n"],
        baseline_mib=round(baseline / MiB),
        streamed_peak_mib=round(streamed / MiB),
        streamed_working_mib=round((streamed - baseline) / MiB),
        whole_table_peak_mib=round(whole / MiB),
        whole_over_streamed=round(whole / streamed, 2),
    )
    print(
        f"\n{source} n={dataset['n']}: baseline {baseline / MiB:.0f} MiB, streamed peak {streamed / MiB:.0f} MiB "
        f"(working {(streamed - baseline) / MiB:.0f} MiB), whole-table peak {whole / MiB:.0f} MiB"
    )
    assert streamed - baseline < WORKING_LIMIT
    if dataset["n"] >= 2_000_000:
        assert (streamed - baseline) * 5 < whole - baseline
