"""Embedding: ``satclip.encode`` (locations), ``encode_grid`` (regular lon/lat grids, separable),
``encode_images``, and the runners that execute a model over chunks on CPU threads or a GPU."""

from satclip._lazy import submodules

__getattr__ = submodules(__name__)
