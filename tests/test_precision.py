"""Precision modes of satclip.encode against float64 references computed without satclip.

The reference is the original SIREN forward in float64 (tests/references/original.py) on exact
features: high-precision (mpmath) features at the awkward points, the Rust core's float64
features (checked against mpmath in test_spherical_harmonics.py) at many random ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import satclip
from conftest import CheckpointFactory, location_state_dict, released_checkpoint_dict
from references.original import original_siren_forward
from references.sh import reference_features
from satclip.embed.locations import encode
from satclip.io.checkpoint import load

EDGE_POINTS = np.array(
    [[0, 90], [0, -90], [180, 0], [-180, 0], [180, 90], [-180, -90], [12, 90 - 1e-9], [-12, -90 + 1e-9], [0, 0]],
    dtype=np.float64,
)


def _random(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))], axis=1)


def _relative(got: np.ndarray, ref: np.ndarray) -> float:
    """max over points of max |got - ref| / max |ref| (each embedding at its own scale)."""
    return float((np.abs(got.astype(np.float64) - ref).max(axis=1) / np.abs(ref).max(axis=1)).max())


@pytest.mark.parametrize("L", [10, 40])
def test_float32_encode_within_2e5_of_an_independent_float64_reference(
    make_checkpoint: CheckpointFactory, L: int
) -> None:
    path = make_checkpoint(L, seed=11)
    weights = location_state_dict(released_checkpoint_dict(L, seed=11))
    random = _random(5000, seed=L)
    ref_edges = original_siren_forward(torch.from_numpy(reference_features(EDGE_POINTS, L)), weights).numpy()
    ref_random = original_siren_forward(torch.from_numpy(satclip.spherical_harmonics(random, L)), weights).numpy()
    got = encode(np.concatenate([EDGE_POINTS, random]), path, dtype=torch.float32, device="cpu")
    assert got.dtype == np.float32
    assert _relative(got[: len(EDGE_POINTS)], ref_edges) <= 2e-5
    assert _relative(got[len(EDGE_POINTS) :], ref_random) <= 2e-5
    assert np.abs(got - ref_random.astype(np.float32)[0]).max() > 0  # not a constant


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_do_not_depend_on_batch_size_or_position(
    make_checkpoint: CheckpointFactory, dtype: torch.dtype
) -> None:
    # issue 13 item 19: fixed internal chunks at absolute offsets, tail padded to full size.
    path = make_checkpoint(10, seed=2)
    points = _random(9000, seed=3)
    whole = encode(points, path, dtype=dtype, device="cpu")
    for batch_size in (1, 500, 4097):
        np.testing.assert_array_equal(encode(points, path, dtype=dtype, device="cpu", batch_size=batch_size), whole)
    # A point's embedding is the same whatever else is encoded with it (bitwise here: every GEMM
    # has the chunk's shape; the bound documented in docs/explanations/precision.md is what BLAS guarantees).
    for part in (points[:1], points[4096:4100], points[-3:]):
        got = encode(part, path, dtype=dtype, device="cpu")
        ref = whole[[int(np.flatnonzero((points == p).all(axis=1))[0]) for p in part]]
        assert _relative(got, ref.astype(np.float64)) <= (2e-6 if dtype == torch.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_do_not_depend_on_the_thread_count(make_checkpoint: CheckpointFactory, dtype: torch.dtype) -> None:
    # On CPU the chunks are shared out to one worker per torch thread, each running
    # single-threaded GEMMs of the chunk's shape; a point's embedding must not depend on that.
    path = make_checkpoint(10, seed=4)
    points = _random(7 * 2560 + 17, seed=5)  # several chunks per worker and a padded tail
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(encode(points, path, dtype=dtype, device="cpu", batch_size=5 * 2560))
            assert torch.get_num_threads() == threads  # encode puts back what it changes
    finally:
        torch.set_num_threads(before)
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])
    ref = encode(points[::97], path, dtype=torch.float64, device="cpu")
    assert _relative(results[0][::97], ref) <= 2e-5  # and it is the right answer, not just a stable one


def test_a_worker_error_stops_the_call_and_progress_counts_every_point(
    make_checkpoint: CheckpointFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from satclip.embed import runners

    path = make_checkpoint(10, seed=8)
    points = _random(9 * 2560 + 5, seed=9)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encode(points, path, device="cpu", progress=True)
        assert f"{len(points) / 1000:.1f}k/{len(points) / 1000:.1f}k" in capsys.readouterr().err  # tqdm's n/total
        calls = [0]
        features = runners.SirenRunner._features

        def failing(self, lonlat, buffers):  # type: ignore[no-untyped-def]
            calls[0] += 1
            if calls[0] == 3:
                raise RuntimeError("chunk 3 failed")
            return features(self, lonlat, buffers)

        monkeypatch.setattr(runners.SirenRunner, "_features", failing)
        with pytest.raises(RuntimeError, match="chunk 3 failed"):
            encode(points, path, device="cpu")
        assert calls[0] < 10  # the other worker stopped instead of finishing the whole input
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_concurrent_encodes_take_turns_and_agree(make_checkpoint: CheckpointFactory) -> None:
    import threading

    path = make_checkpoint(10, seed=10)
    points = _random(6 * 2560, seed=11)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        want = encode(points, path, device="cpu")
        results: dict[int, np.ndarray] = {}

        def one(i: int) -> None:
            results[i] = encode(points, path, device="cpu")

        workers = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for w in workers:
            w.start()
        results[3] = encode(points, path, device="cpu")
        for w in workers:
            w.join(timeout=120)
        assert torch.get_num_threads() == 2  # the calling thread's own setting is put back
    finally:
        torch.set_num_threads(before)
    assert sorted(results) == [0, 1, 2, 3]
    for got in results.values():
        np.testing.assert_array_equal(got, want)


def _encode_in_child(path: str) -> np.ndarray:
    return encode(_random(3000, seed=6), path, dtype=torch.float32, device="cpu")


def test_encode_works_in_a_forked_child_after_the_parent_used_its_workers(make_checkpoint: CheckpointFactory) -> None:
    # A forked child inherits the parent's worker pool object but none of its threads: a pool
    # used as is would never run the jobs (a hang), so encode must make a new one there.
    import multiprocessing

    path = str(make_checkpoint(10, seed=7))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        want = _encode_in_child(path)  # the parent's pool now exists
        with multiprocessing.get_context("fork").Pool(1) as pool:
            got = pool.apply_async(_encode_in_child, (path,)).get(timeout=120)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_into_equals_the_module_forward_bitwise(dtype: torch.dtype) -> None:
    model = satclip.models.location.build_location_encoder(10).to(dtype).eval()
    features = torch.from_numpy(satclip.spherical_harmonics(_random(700, seed=9), 10)).to(dtype)
    hidden = (torch.empty(700, 256, dtype=dtype), torch.empty(700, 256, dtype=dtype))
    out = torch.empty(700, 256, dtype=dtype)
    with torch.no_grad():
        expected = model.nnet(features)
        model.nnet.forward_into(features, hidden, out)
    assert torch.equal(out, expected)


def test_reduced_precision_is_cuda_only(make_checkpoint: CheckpointFactory) -> None:
    with pytest.raises(satclip.errors.DTypeError, match="CUDA"):
        encode(_random(3, 0), make_checkpoint(10), dtype=torch.bfloat16, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype, bound", [(torch.float32, 2e-5), (torch.bfloat16, None), (torch.float16, None)])
def test_cuda_precision_modes(make_checkpoint: CheckpointFactory, dtype: torch.dtype, bound: float | None) -> None:
    path = make_checkpoint(40, seed=5)
    points = _random(20000, seed=1)
    ref = encode(points, path, dtype=torch.float64, device="cpu")
    got = encode(points, path, dtype=dtype, device="cuda")
    if bound is not None:
        assert _relative(got, ref) <= bound
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999
    assert load(path) is not None
