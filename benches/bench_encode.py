"""End-to-end location encoding (SH + SIREN), satclip against two pure-torch code paths.

Variants (``variant`` in extra_info), all with the same randomly initialised released-size
model (``build_location_encoder(L)``: SIREN 256 wide, 2 hidden layers, 256 out), eval mode, the
same points and the same batch size:

* ``satclip``         ``satclip.encode(lonlat, model, dtype=float32)`` (exact Rust SH rounded
                      to float32 per fixed-size chunk, float32 SIREN)
* ``satclip_f64``     the same with ``dtype=float64`` (gate: float32 over float64 encode)
* ``bare_nnet``       float32 ``nnet(features)`` on features computed beforehand (untimed): the
                      SIREN alone; encode over it > 1 means the SH cost nothing extra
* ``torch_sh_siren``  (ii) the vectorised torch SH (benches/sh_baselines.py) in float32 feeding
                      the same SIREN in float32: what a torch user would write
* ``original_style``  (i) the original code path: per-(l, m) SH columns + torch.stack and a
                      float64 SIREN. It runs at ~0.6 ms/point at L = 40 here, so it is timed on
                      one batch of ``BATCH`` points and report.py scales its median linearly to N
                      (``n_timed`` in extra_info; batches are independent, so cost is linear in N)
* ``sh_only``         the Rust SH alone, float64 into a reused buffer, batched as encode does:
                      its median over ``satclip``'s is the SH share of encode time

``bench_encode_against_bare`` times ``satclip`` and ``bare_nnet`` as interleaved pairs (the bare
call just before each timed encode round), so that the load of a shared machine falls on both
alike: its ``encode_vs_bare_paired`` ratio is the one to read for "the SH cost nothing extra".
It runs in quick mode too (N = ``PAIRED_QUICK_N``), on CPU.

The model is built with ``build_location_encoder`` rather than loaded (no download needed);
timing does not depend on the weights. CUDA cases run only when a GPU is visible.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import satclip
from benchkit import Mode, sample_lonlat, set_threads, timed, usable_cpus
from conftest import get_mode
from satclip.models.location import build_location_encoder
from sh_baselines import per_lm_torch_sh, vectorised_torch_sh

DEGREES = (10, 40)
#: Points per batch for every variant; encode's own default is of the same order on CPU.
BATCH = 16_384


#: N of the paired encode/bare comparison in quick mode (which has no other encode cases):
#: ~0.1-0.3 s per call at L = 40, long enough that per-call costs do not decide the ratio.
PAIRED_QUICK_N = 20_000


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mode: Mode = get_mode(metafunc.config)
    if "paired_case" in metafunc.fixturenames:
        n = max(mode.encode_sizes, default=PAIRED_QUICK_N)
        pairs = [(L, n, threads) for L in DEGREES for threads in (1, 2)]
        metafunc.parametrize("paired_case", pairs, ids=[f"L{L}-N{n}-cpu-t{t}" for L, n, t in pairs])
    if "encode_case" not in metafunc.fixturenames:
        return
    cases, ids = [], []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for n in mode.encode_sizes:
            for L in DEGREES:
                for threads in (1, 2):
                    for variant in (
                        "satclip",
                        "satclip_f64",
                        "bare_nnet",
                        "torch_sh_siren",
                        "original_style",
                        "sh_only",
                    ):
                        if variant == "sh_only" and device != "cpu":
                            continue
                        if threads == 1 and (device != "cpu" or variant in ("original_style", "sh_only")):
                            continue  # 1-thread runs only for the issue-9 ratios
                        cases.append((variant, L, n, device, threads))
                        ids.append(f"{variant}-L{L}-N{n}-{device}-t{threads}")
    if not cases:  # quick mode: no encode cases; keep one visible, explained skip
        cases, ids = [None], ["none-in-this-mode"]
    metafunc.parametrize("encode_case", cases, ids=ids)


_MODELS: dict[int, Any] = {}


def _model(L: int) -> Any:
    if L not in _MODELS:
        torch.manual_seed(L)
        _MODELS[L] = build_location_encoder(L).eval()
    return _MODELS[L]


def _batched(n: int, fn: Callable[[int, int], None]) -> Callable[[], None]:
    def run() -> None:
        for start in range(0, n, BATCH):
            fn(start, min(start + BATCH, n))

    return run


def _make_call(variant: str, L: int, n: int, device: str) -> Callable[[], Any]:
    lonlat, _ = sample_lonlat(n)
    model = _model(L)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    if variant == "satclip":
        if device == "cuda":
            pts = torch.from_numpy(lonlat).to(device)  # output stays on the GPU: device throughput
            model_dev = copy.deepcopy(model).to(device)

            def run_gpu() -> Any:
                out = satclip.encode(pts, model=model_dev, device=device, dtype=torch.float32)
                sync()
                return out

            return run_gpu
        return lambda: satclip.encode(lonlat, model=model, device="cpu", dtype=torch.float32, batch_size=BATCH)

    if variant == "satclip_f64":
        dev_pts = torch.from_numpy(lonlat).to(device) if device == "cuda" else lonlat
        return lambda: (satclip.encode(dev_pts, model=model, device=device, dtype=torch.float64), sync())

    if variant == "bare_nnet":
        net32 = copy.deepcopy(model.nnet).to(device=device, dtype=torch.float32)
        features = torch.from_numpy(satclip.spherical_harmonics(lonlat, L).astype(np.float32)).to(device)

        @torch.inference_mode()
        def bare() -> Any:
            out = net32(features)
            sync()
            return out

        return bare

    if variant == "sh_only":
        buf = np.empty((min(BATCH, n), L * L), dtype=np.float64)

        def sh(start: int, stop: int) -> None:
            satclip.spherical_harmonics(lonlat[start:stop], L, out=buf[: stop - start])

        return _batched(n, sh)

    if variant == "torch_sh_siren":
        net = copy.deepcopy(model.nnet).to(device=device, dtype=torch.float32)
        pts32 = torch.from_numpy(lonlat.astype(np.float32)).to(device)
        out = torch.empty(n, model.embed_dim, dtype=torch.float32, device=device)
        if device == "cuda":
            from satclip.harmonics.torch_values import torch_spherical_harmonics as sh_fn  # the package's GPU path
        else:
            sh_fn = vectorised_torch_sh

        @torch.inference_mode()
        def torch_step(start: int, stop: int) -> None:
            out[start:stop] = net(sh_fn(pts32[start:stop], L))

        run = _batched(n, torch_step)
        return lambda: (run(), sync())

    if variant == "original_style":
        n = min(n, BATCH)  # one batch; see the module docstring
        net64 = copy.deepcopy(model.nnet).to(device=device, dtype=torch.float64)
        pts64 = torch.from_numpy(lonlat).to(device)
        out64 = torch.empty(n, model.embed_dim, dtype=torch.float64, device=device)

        @torch.inference_mode()
        def original_step(start: int, stop: int) -> None:
            out64[start:stop] = net64(per_lm_torch_sh(pts64[start:stop], L))

        run = _batched(n, original_step)
        return lambda: (run(), sync())
    raise ValueError(variant)


def bench_encode(benchmark: Any, mode: Mode, encode_case: tuple[str, int, int, str, int] | None) -> None:
    if encode_case is None:
        pytest.skip(f"no end-to-end encode cases in {mode.name} mode")
    variant, L, n, device, threads = encode_case
    threads = min(threads, usable_cpus())
    set_threads(threads)  # end to end: use the machine (2 cores here)
    benchmark.group = f"encode L={L} N={n} {device}"
    _, source = sample_lonlat(n)
    n_timed = min(n, BATCH) if variant == "original_style" else n
    timed(
        benchmark,
        _make_call(variant, L, n, device),
        # At most a few rounds: the slow variants take tens of seconds per call.
        mode.few_rounds(),
        kind="encode",
        variant=variant,
        L=L,
        n=n,
        threads=threads,
        device=device,
        batch=BATCH,
        n_timed=n_timed,
        data=source,
    )


def bench_encode_against_bare(benchmark: Any, mode: Mode, paired_case: tuple[int, int, int]) -> None:
    L, n, threads = paired_case
    threads = min(threads, usable_cpus())
    set_threads(threads)
    benchmark.group = f"encode vs bare L={L} N={n} cpu"
    encode_call = _make_call("satclip", L, n, "cpu")
    bare_call = _make_call("bare_nnet", L, n, "cpu")
    bare_seconds: list[float] = []

    def time_bare() -> None:  # pytest-benchmark's untimed setup, run before every timed round
        start = time.perf_counter()
        bare_call()
        bare_seconds.append(time.perf_counter() - start)

    encode_call(), bare_call()  # warm-up: lazy initialisation, first-touch page faults
    _, source = sample_lonlat(n)
    benchmark.extra_info.update(
        kind="encode_paired", variant="satclip", L=L, n=n, threads=threads, device="cpu", mode=mode.name, data=source
    )
    benchmark.pedantic(encode_call, setup=time_bare, rounds=11 if mode.encode_sizes else 7, iterations=1)
    benchmark.extra_info["bare_seconds"] = bare_seconds
    benchmark.extra_info["bare_median_s"] = statistics.median(bare_seconds)
