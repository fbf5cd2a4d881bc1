"""Type stubs for the Rust extension ``satclip._core`` (source: rust/src/python/mod.rs, gradient.rs; argument checks in args.rs)."""

import numpy as np
import numpy.typing as npt

MAX_DEGREES: int

# pyo3 exports every #[pymodule] item in __all__; stubtest checks this list against it.
__all__ = [
    "MAX_DEGREES",
    "cached_workspace_bytes",
    "check_lonlat_row",
    "get_num_threads",
    "set_num_threads",
    "simd_level",
    "spherical_harmonics",
    "spherical_harmonics_with_gradient",
]

def spherical_harmonics(
    lonlat: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    L: int,
    basis: str = "satclip",
    out: npt.NDArray[np.float32] | npt.NDArray[np.float64] | None = None,
    parallel: bool = True,
) -> npt.NDArray[np.float32] | npt.NDArray[np.float64]: ...
def spherical_harmonics_with_gradient(
    lonlat: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    L: int,
    basis: str,
    values: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    gradients: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    fresh: bool = False,
) -> None: ...
def check_lonlat_row(row: int, lon: float, lat: float) -> None:
    """Raises the CoordinateError the core raises for row ``row`` holding (lon, lat) if either is invalid (same message, ``.row``, ``.column``); returns None otherwise."""
    ...

def simd_level() -> str: ...
def get_num_threads() -> int: ...
def set_num_threads(threads: int) -> None: ...
def cached_workspace_bytes() -> int:
    """Bytes of per-thread kernel workspace cached now (pool threads plus the caller); at most 8 MiB per thread after any call."""
    ...
