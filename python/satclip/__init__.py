"""satclip: fast, faithful SatCLIP location embeddings.

>>> import satclip, numpy as np
>>> satclip.spherical_harmonics(np.array([[8.55, 47.37]]), 10).shape
(1, 100)

The PyTorch parts (``encode``, ``load``, ``save``, ``satclip.models.location``, and the image half:
``encode_images``, ``load_image_encoder``, ``locate``, ``similarity_map``) are imported on first use,
so ``import satclip`` stays fast for users who only need the encoding.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import Any

from satclip import errors
from satclip.harmonics.gradients import spherical_harmonics_with_gradient
from satclip.harmonics.values import get_num_threads, set_num_threads, simd_level, spherical_harmonics


def _installed_version() -> str:
    # One source of truth: rust/Cargo.toml's version, which maturin writes into the package metadata.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("satclip")
    except PackageNotFoundError:  # a bare source tree on PYTHONPATH, never installed
        return "0+unknown"


# name -> module that defines it, imported lazily (they need torch).
_LAZY = {
    "encode": "satclip.embed.locations",
    "encode_grid": "satclip.embed.grid",
    "load": "satclip.io.checkpoint",
    "save": "satclip.io.checkpoint",
    "MODELS": "satclip.models.registry",
    "LocationEncoder": "satclip.models.location",
    "SphericalHarmonics": "satclip.models.location",
    "SirenNet": "satclip.models.location",
    # The image half (needs timm; GeoTIFF paths need tifffile): the `images` extra.
    "encode_images": "satclip.embed.images",
    "load_image_encoder": "satclip.models.image",
    "ImageEncoder": "satclip.models.image",
    "locate": "satclip.downstream.locate",
    "similarity_map": "satclip.downstream.locate",
    "fibonacci_grid": "satclip.downstream.locate",
    "plot_similarity_map": "satclip.downstream.plots",
    "refine_locations": "satclip.downstream.refine",
    "location_jacobian": "satclip.downstream.refine",
    # Other location encoders (GeoCLIP, parameter-free baselines) and probes that compare them.
    "BUILTIN_ENCODERS": "satclip.models.encoders",
    "load_geoclip": "satclip.models.geoclip",
    "compare": "satclip.downstream.probes",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read on first use: importlib.metadata costs ~30 ms at import
        value = globals()[name] = _installed_version()
        return value
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and find_spec(f"satclip.{name}") is not None:
        # Submodules too (``satclip.models.location.build_location_encoder`` after a plain ``import satclip``),
        # imported on first use like the names above.
        return import_module(f"satclip.{name}")
    raise AttributeError(f"module 'satclip' has no attribute {name!r}")


__all__ = [
    "spherical_harmonics",
    "spherical_harmonics_with_gradient",
    "simd_level",
    "set_num_threads",
    "get_num_threads",
    "errors",
    *_LAZY,
]
