"""Spherical harmonics of [lon, lat] points: the features SatCLIP's location encoder starts from.

``values`` and ``gradients`` are the NumPy API over the Rust core (``satclip._core``, exact
recurrences, SIMD, threads); ``torch_values``/``torch_gradients`` compute the same in plain torch
(any device, autograd), ``triton_kernel`` on CUDA GPUs, and ``autograd`` joins the Rust values and
Jacobian into a ``torch.autograd.Function``. Only the NumPy API is imported here (no torch).
"""

from satclip._lazy import submodules
from satclip.harmonics.gradients import spherical_harmonics_with_gradient
from satclip.harmonics.values import get_num_threads, set_num_threads, simd_level, spherical_harmonics

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "simd_level",
    "spherical_harmonics",
    "spherical_harmonics_with_gradient",
]

__getattr__ = submodules(__name__)
