"""Files in and out: checkpoints (both halves), the Hugging Face Hub, atomic no-clobber publishing,
streamed tables (CSV/Parquet), and GeoTIFF patches with their georeferencing."""

from satclip._lazy import submodules

__getattr__ = submodules(__name__)
