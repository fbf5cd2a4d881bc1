"""The Triton SH kernel (satclip.harmonics.triton_kernel) checked against the Rust core without a GPU.

Triton reads ``TRITON_INTERPRET`` once, at import, and other tests may import it first (torch
does on some paths), so the interpreter run happens in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    import numpy as np, torch
    from satclip import spherical_harmonics
    from satclip.harmonics import triton_kernel as triton_harmonics
    rng = np.random.default_rng(5)
    points = np.stack([rng.uniform(-180, 180, 150), rng.uniform(-90, 90, 150)], axis=1)
    edges = [[0, 90], [0, -90], [180, 0], [-180, 0], [180, 90], [-180, -90], [37, 90 - 1e-9],
             [-37, -90 + 1e-9], [180, 45], [-180, -45], [179.9999999, 1e-9], [-180, 89.5]]
    points = np.concatenate([points, np.array(edges, dtype=np.float64)])
    result = {}
    for L, basis in [(1, "satclip"), (3, "orthonormal"), (10, "satclip"), (17, "orthonormal"), (40, "satclip")]:
        ref = spherical_harmonics(points, L, basis=basis)
        for dtype in (torch.float64, torch.float32):
            got = triton_harmonics.spherical_harmonics(torch.from_numpy(points).to(dtype), L, basis)
            assert got.dtype == torch.float32 and got.shape == ref.shape
            exact = spherical_harmonics(points.astype(dtype == torch.float32 and np.float32 or np.float64), L, basis=basis)
            err = float(np.abs(got.numpy() - exact).max() / np.abs(exact).max())
            result[f"{L}-{basis}-{str(dtype)}"] = err
    out = torch.full((4, 100), float("nan"))
    triton_harmonics.spherical_harmonics(torch.zeros(4, 2), 10, out=out)
    result["out"] = bool(torch.isfinite(out).all())
    json.dump(result, sys.stdout)
    """
)


def test_triton_kernel_matches_rust_core_in_the_interpreter() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result.pop("out") is True
    assert len(result) == 10
    for case, err in result.items():
        # Relative to the largest feature; includes the poles (exactly and 1e-9 deg away) and +-180.
        assert err <= 1e-5, (case, err)


def test_unavailable_device_is_a_clear_error() -> None:
    from satclip.harmonics import triton_kernel as triton_harmonics

    if triton_harmonics.interpreting():
        pytest.skip("the interpreter runs CPU tensors")
    with pytest.raises(RuntimeError, match="cannot run on a cpu tensor"):
        triton_harmonics.spherical_harmonics(torch.zeros(3, 2), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_kernel_on_cuda_matches_rust_core() -> None:
    from satclip import spherical_harmonics
    from satclip.harmonics import triton_kernel as triton_harmonics

    rng = np.random.default_rng(1)
    points = np.stack([rng.uniform(-180, 180, 5000), rng.uniform(-90, 90, 5000)], axis=1)
    points[:4] = [[180, 90], [-180, -90], [0, 90 - 1e-9], [-180, 0]]
    for L in (10, 40):
        got = triton_harmonics.spherical_harmonics(torch.from_numpy(points).cuda(), L).cpu().numpy()
        ref = spherical_harmonics(points, L)
        assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-5
