"""One side of the regression gate: times satclip cases on request, in whichever satclip it imports.

``gate.py`` starts two of these, one importing this tree's satclip and one importing the
reference build (``PYTHONPATH``), and sends both the same requests in turn. Protocol: one JSON
object per line on stdin (``{"case": name, "calls": k}``), one JSON line back per request
(``{"seconds": [...]}``, the CPU time this process spent in each of the ``k`` calls: unlike
wall-clock time it does not grow while other processes hold the core). The first line written is a
greeting that says which satclip was imported and which SIMD level its core runs. Everything
runs on one thread (satclip's core and torch), so the two sides never compete for a core.

Only public API that every version of satclip has is used, so any earlier commit can be the
reference.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np


def _cases() -> dict[str, Callable[[], object]]:
    import torch

    import satclip

    satclip.set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def points(n: int) -> np.ndarray:
        return np.column_stack([rng.uniform(-180, 180, n), rng.uniform(-90, 90, n)])

    cases: dict[str, Callable[[], object]] = {}
    for L in (10, 40):
        for dtype in (np.float32, np.float64):
            lonlat, out = points(10_000), np.empty((10_000, L * L), dtype)

            def sh(lonlat: np.ndarray = lonlat, out: np.ndarray = out, L: int = L) -> object:
                return satclip.spherical_harmonics(lonlat, L, out=out)

            cases[f"SH L={L} {dtype.__name__} N=10000"] = sh
    grad_in = points(1_000)
    cases["SH+gradient L=40 float64 N=1000"] = lambda: satclip.spherical_harmonics_with_gradient(grad_in, 40)

    try:
        from satclip.models.location import build_location_encoder
    except ModuleNotFoundError:  # a reference commit from before the package was split into rooms
        from satclip.nn import build_location_encoder  # type: ignore[import-not-found, no-redef]

    for L, n in ((10, 20_000), (40, 5_000)):
        torch.manual_seed(0)
        model, lonlat = build_location_encoder(L).eval(), points(n)

        def encode(model: torch.nn.Module = model, lonlat: np.ndarray = lonlat) -> object:
            return satclip.encode(lonlat, model)

        cases[f"encode L={L} float32 N={n}"] = encode
    # The separable grid path; registered only where satclip has it, so a reference commit
    # without encode_grid still runs (the gate times the cases both sides have).
    encode_grid = getattr(satclip, "encode_grid", None)
    if callable(encode_grid):
        torch.manual_seed(0)
        grid_model = build_location_encoder(40).eval()
        lon, lat = np.arange(-179.5, 180.0, 1.0), np.arange(89.5, 59.0, -1.0)
        cases["encode_grid L=40 float32 360x30"] = lambda: encode_grid(lon, lat, grid_model)
    return cases


def main() -> None:
    import satclip

    cases = _cases()
    for fn in cases.values():
        fn()  # first calls: page faults, caches, lazy set-up
    print(json.dumps({"satclip": satclip.__file__, "simd": satclip.simd_level(), "cases": list(cases)}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        fn, seconds = cases[request["case"]], []
        for _ in range(request["calls"]):
            start = time.process_time()
            fn()
            seconds.append(time.process_time() - start)
        print(json.dumps({"seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
