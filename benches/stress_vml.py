#!/usr/bin/env python
"""Stress check: MKL's first multi-threaded ``sin`` in a process, with and without satclip's defence.

    python benches/stress_vml.py --trials 2000 --defence off   # the race, as the SIREN met it before
    python benches/stress_vml.py --trials 6000 --defence on    # the same, after satclip.runtime.vml.initialise()

Each trial forks a fresh child from a parent that has imported torch but never called a VML
function, so the child's first ``sin`` is MKL's first. The child runs the SIREN's first layer as
``satclip.models.location.Siren.forward_into`` does (``addmm``, ``* w0``, in-place ``sin_``) on a 2,560 x 256
chunk and compares the result with NumPy's float64 sine of the same pre-activations; a trial is
bad when any value is off by more than 1e-5 (MKL's high-accuracy sine is within an ulp, its
low-accuracy mode ~5e-4 here). ``--defence on`` calls :func:`satclip.runtime.vml.initialise` in the child
first, which is what importing :mod:`satclip.models.location` does in every satclip process.

Patterns: ``omp`` - one ``sin_`` split over ``--threads`` torch (OpenMP) threads, as a direct
``SirenNet`` call does; ``workers`` - two Python threads, each with one torch thread, running
their first ``sin_`` at once, as ``satclip.encode``'s chunk workers do. ``--busy`` starts that
many busy-loop processes beside the trials (a loaded machine makes the race more likely).
Not part of the test suite: the race shows in roughly one fresh process in a few hundred.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import numpy as np
import torch

W0 = 30.0
ROWS, WIDTH = 2560, 256


def _data(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # NumPy, not torch, draws the data: the parent must not start torch's OpenMP pool before forking.
    rng = np.random.default_rng(0)
    npdt = np.float64 if dtype == torch.float64 else np.float32
    # Pre-activations of a few radians and more after w0, as in a trained SIREN's first layer.
    x = rng.standard_normal((ROWS, WIDTH)).astype(npdt)
    weight = (rng.standard_normal((WIDTH, WIDTH)) / 16).astype(npdt)
    bias = rng.standard_normal(WIDTH).astype(npdt)
    return torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)


def _first_layer_error(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    """Largest error of the layer's in-place sine against NumPy's float64 sine of the same arguments."""
    out = torch.addmm(bias, x, weight.t())
    out.mul_(W0)
    want = np.sin(out.numpy().astype(np.float64))
    out.sin_()
    return float(np.abs(out.numpy() - want).max())


def _child(args: argparse.Namespace, data: tuple) -> int:
    x, weight, bias = data
    if args.defence == "on":
        from satclip.runtime import vml

        vml.initialise()
    if args.pattern == "omp":
        torch.set_num_threads(args.threads)
        errors = [_first_layer_error(x, weight, bias)]
    else:
        torch.set_num_threads(1)
        half = ROWS // 2
        parts = (x[:half], x[half:])
        errors = [0.0, 0.0]
        start = threading.Barrier(2)

        def work(i: int) -> None:
            start.wait()
            errors[i] = _first_layer_error(parts[i], weight, bias)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return 1 if max(errors) > 1e-5 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--defence", choices=("on", "off"), default="on")
    parser.add_argument("--pattern", choices=("omp", "workers"), default="omp")
    parser.add_argument("--threads", type=int, default=16, help="torch threads in the omp pattern")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy-loop processes beside the trials")
    args = parser.parse_args()

    data = _data(getattr(torch, args.dtype))
    loop = "import time\nt = time.time() + 3600\nwhile time.time() < t: pass\n"
    busy = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(args.busy)]
    bad, started = 0, time.monotonic()
    try:
        for _ in range(args.trials):
            pid = os.fork()
            if pid == 0:
                code = 2
                try:
                    code = _child(args, data)
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if code not in (0, 1):
                print(f"a trial's child failed (exit {code})", file=sys.stderr)
                return 2
            bad += code
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(
        f"defence {args.defence}, pattern {args.pattern}, {args.dtype}, "
        f"{args.threads if args.pattern == 'omp' else 2} threads, {args.busy} busy loops: "
        f"{bad} of {args.trials} fresh processes computed a wrong sine ({time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
