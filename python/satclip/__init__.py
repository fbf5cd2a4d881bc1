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
from typing import TYPE_CHECKING, Any

from satclip import errors
from satclip._lazy import submodules
from satclip.harmonics.gradients import spherical_harmonics_with_gradient
from satclip.harmonics.values import get_num_threads, set_num_threads, simd_level, spherical_harmonics


def _installed_version() -> str:
    # One source of truth: rust/Cargo.toml's version, which maturin writes into the package metadata.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("satclip")
    except PackageNotFoundError:  # a bare source tree on PYTHONPATH, never installed
        return "0+unknown"


_submodule = submodules(__name__)

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
    "load_image_encoder": "satclip.io.checkpoint",
    "ImageEncoder": "satclip.models.image",
    "locate": "satclip.downstream.locate",
    "similarity_map": "satclip.downstream.locate",
    "fibonacci_grid": "satclip.points.sphere",
    "plot_similarity_map": "satclip.downstream.plots",
    "refine_locations": "satclip.downstream.refine",
    "location_jacobian": "satclip.downstream.refine",
    # Other location encoders (GeoCLIP, parameter-free baselines) and probes that compare them.
    "BUILTIN_ENCODERS": "satclip.models.encoders",
    "load_geoclip": "satclip.models.geoclip",
    "compare": "satclip.downstream.probes",
    # The two-tower model, and the one switch for every in-memory cache.
    "SatCLIP": "satclip.models.satclip",
    "clear_caches": "satclip.runtime.caches",
}

if TYPE_CHECKING:  # the same names, for type checkers and the API docs (tests check they match _LAZY)
    from satclip.downstream.locate import locate as locate
    from satclip.downstream.locate import similarity_map as similarity_map
    from satclip.downstream.plots import plot_similarity_map as plot_similarity_map
    from satclip.downstream.probes import compare as compare
    from satclip.downstream.refine import location_jacobian as location_jacobian
    from satclip.downstream.refine import refine_locations as refine_locations
    from satclip.embed.grid import encode_grid as encode_grid
    from satclip.embed.images import encode_images as encode_images
    from satclip.embed.locations import encode as encode
    from satclip.io.checkpoint import load as load
    from satclip.io.checkpoint import load_image_encoder as load_image_encoder
    from satclip.io.checkpoint import save as save
    from satclip.models.encoders import BUILTIN_ENCODERS as BUILTIN_ENCODERS
    from satclip.models.geoclip import load_geoclip as load_geoclip
    from satclip.models.image import ImageEncoder as ImageEncoder
    from satclip.models.location import (
        LocationEncoder as LocationEncoder,
    )
    from satclip.models.location import (
        SirenNet as SirenNet,
    )
    from satclip.models.location import (
        SphericalHarmonics as SphericalHarmonics,
    )
    from satclip.models.registry import MODELS as MODELS
    from satclip.models.satclip import SatCLIP as SatCLIP
    from satclip.points.sphere import fibonacci_grid as fibonacci_grid
    from satclip.runtime.caches import clear_caches as clear_caches


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read on first use: importlib.metadata costs ~30 ms at import
        value = globals()[name] = _installed_version()
        return value
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    # Submodules too (``satclip.models.location.build_location_encoder`` after a plain ``import satclip``),
    # imported on first use like the names above.
    return _submodule(name)


__all__ = [
    "spherical_harmonics",
    "spherical_harmonics_with_gradient",
    "simd_level",
    "set_num_threads",
    "get_num_threads",
    "errors",
    *_LAZY,
]
