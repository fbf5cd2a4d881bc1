"""Using embeddings: probes and spatial cross-validation, geo-localisation of images, refinement by
gradient ascent, embedding maps and their exports, and plots."""

from satclip._lazy import submodules

__getattr__ = submodules(__name__)
