"""Image embedding throughput (images/s) per released image-encoder architecture.

Variants (``variant`` in extra_info), same randomly initialised encoder, same S2-100K-sized
uint16 batch (4, 12, 256, 256), same batch size, 2 threads (the machine); the default and full modes only
(quick mode, what CI runs, skips them visibly):

* ``satclip``       ``satclip.encode_images(dn, encoder)``: validation (finite / non-negative /
                    units), float conversion, / 10000, zero B10, ViT centre crop, forward
* ``timm_forward``  the bare timm forward on an already preprocessed float32 tensor: the floor
                    ``satclip`` cannot beat; their ratio is satclip's preprocessing overhead

``images_per_s`` = ``n_images`` / median. Timing does not depend on the weights, so the encoder
is built from its config (no checkpoint needed). CUDA cases run only when a GPU is visible
(the input then lives on the GPU, so this is device throughput).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import satclip
from benchkit import Mode, set_threads, timed, usable_cpus
from conftest import get_mode
from satclip.models.image import ImageEncoder, ImageEncoderConfig

ARCHITECTURES = ("resnet18", "resnet50", "vit16")
SIZE = 256


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "image_case" not in metafunc.fixturenames:
        return
    mode: Mode = get_mode(metafunc.config)
    if mode.name == "quick":  # keep CI's quick run short (as bench_encode does)
        metafunc.parametrize("image_case", [None], ids=["none-in-quick-mode"])
        return
    n = 4
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases, ids = [], []
    for device in devices:
        for arch in ARCHITECTURES:
            for variant in ("satclip", "timm_forward"):
                count = n if device == "cpu" else 64
                cases.append((variant, arch, count, device))
                ids.append(f"{variant}-{arch}-B{count}-{device}")
    metafunc.parametrize("image_case", cases, ids=ids)


_ENCODERS: dict[str, ImageEncoder] = {}


def _encoder(arch: str) -> ImageEncoder:
    if arch not in _ENCODERS:
        torch.manual_seed(0)
        _ENCODERS[arch] = ImageEncoder(ImageEncoderConfig(arch)).eval()
    return _ENCODERS[arch]


def _make_call(variant: str, arch: str, n: int, device: str) -> Callable[[], Any]:
    rng = np.random.default_rng(0)
    dn = rng.integers(0, 10_000, size=(n, 12, SIZE, SIZE)).astype(np.uint16)
    encoder = _encoder(arch).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if variant == "satclip":
        images: Any = torch.from_numpy(dn.astype(np.int32)).to(device) if device == "cuda" else dn

        def run() -> Any:
            out = satclip.encode_images(images, encoder, device=device, batch_size=n)
            sync()
            return out

        return run
    x = torch.from_numpy(dn.astype(np.float32) / 10000.0)
    x = torch.cat([x[:, :10], torch.zeros_like(x[:, :1]), x[:, 10:]], dim=1)
    if encoder.input_size is not None:
        off = (SIZE - encoder.input_size) // 2
        x = x[:, :, off : off + encoder.input_size, off : off + encoder.input_size]
    x = x.contiguous().to(device)

    @torch.inference_mode()
    def forward() -> Any:
        out = encoder(x)
        sync()
        return out

    return forward


def bench_images(benchmark: Any, mode: Mode, image_case: tuple[str, str, int, str] | None) -> None:
    if image_case is None:
        pytest.skip(
            "image benchmarks run in the default and full modes (pytest benches/bench_images.py --benchmark-only)"
        )
    variant, arch, n, device = image_case
    threads = min(2, usable_cpus())
    set_threads(threads)
    benchmark.group = f"images {arch} B={n} {device}"
    timed(
        benchmark,
        _make_call(variant, arch, n, device),
        mode.few_rounds(budget_s=min(mode.budget_s, 1.0)),
        kind="images",
        variant=variant,
        architecture=arch,
        n_images=n,
        image_size=SIZE,
        threads=threads,
        device=device,
    )
    median = benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = n / median
