"""How satclip uses the machine: the CPU worker schedule and torch threads, the math library's
first-call defence, and the caches of loaded models (one ``clear_caches``)."""

from satclip._lazy import submodules

__getattr__ = submodules(__name__)
