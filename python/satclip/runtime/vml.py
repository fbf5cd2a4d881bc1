"""One serial call of each MKL VML function satclip uses, before any parallel one.

Why: PyTorch's CPU build computes ``sin``, ``cos``, ``exp`` ... on float tensors with MKL's
vector math library (VML), asking for its high-accuracy mode. When the *first* call of such a
function in a process is a large tensor, torch splits it over its OpenMP threads and every
thread enters MKL at once; MKL sets itself up for that function on first use, and a thread that
arrives while another is still doing so can compute its whole block with the low-accuracy (EP)
variant instead. Measured on an Ice Lake machine with 16 torch threads and a fresh process per
trial: about one first ``sin_`` in 150-1000 had one thread's block off by up to ~5e-4 after the
SIREN's w0 = 30; nothing else in the process is affected, and every later call is correct.

The defence: make that first call ourselves, on a few elements, so it runs on the calling thread
alone (torch does not split tensors below its grain size) before any of satclip's parallel work.
Once one call of a function and dtype has returned, MKL's setup for it is complete and later
concurrent calls only read it. A process forked afterwards (a DataLoader or Dask worker)
inherits the finished setup; a fresh worker process imports :mod:`satclip.models.location` before it can run
a model, and that import runs :func:`initialise` again. ``benches/stress_vml.py`` measures the
race with and without this call.
"""

from __future__ import annotations

import threading

import torch

# The torch elementwise functions on float tensors that satclip's code calls (SIREN: sin; torch SH
# recurrences and refinement: sin, cos; training and logits: exp), and those its image encoders
# might (erf, tanh, log): a call that torch does not route to VML costs nothing here.
_FUNCTIONS = (torch.sin, torch.cos, torch.exp, torch.erf, torch.tanh, torch.log)
_DTYPES = (torch.float32, torch.float64)

_lock = threading.Lock()
_done = False


def initialised() -> bool:
    """Whether :func:`initialise` has run in this process."""
    return _done


def initialise() -> None:
    """Run each VML function satclip uses once, serially, in this process (idempotent). The first
    run takes tens of milliseconds, nearly all of it MKL loading the kernels that the first real
    call would load anyway."""
    global _done
    with _lock:
        if _done:
            return
        with torch.inference_mode():
            for dtype in _DTYPES:
                x = torch.full((8,), 0.5, dtype=dtype)  # far below torch's grain size: one thread
                for fn in _FUNCTIONS:
                    fn(x)
        _done = True
