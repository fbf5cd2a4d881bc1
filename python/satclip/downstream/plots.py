"""World maps of image-location similarity (the ``maps`` extra: matplotlib).

Coastlines come from cartopy's Natural Earth data when cartopy is installed; without it the map
is drawn on plain longitude/latitude axes (equirectangular, 1 degree = 1 degree), which is still
readable for locating a guess. Nothing here is imported by ``import satclip``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from satclip.errors import SatclipError


def plot_similarity_map(
    smap: Any,
    *,
    true_location: tuple[float, float] | None = None,
    guesses: np.ndarray | None = None,
    ax: Any = None,
    title: str | None = None,
    cmap: str = "magma",
) -> Any:
    """Draws a :func:`satclip.similarity_map` result on a world map; returns the matplotlib Figure.

    Parameters
    ----------
    smap:
        An ``xarray.DataArray`` (dims ``lat``, ``lon``) or a :class:`satclip.downstream.locate.SimilarityMap`.
    true_location:
        ``(lon, lat)`` to mark with a cross (e.g. from the GeoTIFF's georeference).
    guesses:
        ``(k, 2)`` ``[lon, lat]`` guesses to mark, best first (e.g. ``locate(...).lonlat[0]``).
    ax:
        An existing Axes (a cartopy GeoAxes gets coastlines); default a new Figure, not pyplot's,
        so no GUI backend is needed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SatclipError("plotting needs matplotlib: pip install 'satclip[maps]'") from None
    values, lon, lat = _grid(smap)
    transform: dict[str, Any] = {}
    if ax is None:
        fig = Figure(figsize=(12, 6.2), layout="constrained")
        ccrs = _cartopy_crs()
        ax = fig.add_subplot(1, 1, 1, projection=ccrs.PlateCarree()) if ccrs is not None else fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    is_geo = hasattr(ax, "coastlines")
    if is_geo:
        transform = {"transform": _cartopy_crs().PlateCarree()}
    dlon = float(lon[1] - lon[0]) if lon.size > 1 else 360.0
    dlat = float(lat[1] - lat[0]) if lat.size > 1 else 180.0
    extent = (lon[0] - dlon / 2, lon[-1] + dlon / 2, lat[0] - dlat / 2, lat[-1] + dlat / 2)
    image = ax.imshow(values, origin="lower", extent=extent, cmap=cmap, interpolation="nearest", **transform)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    if is_geo:
        ax.coastlines(linewidth=0.6, color="white")
        ax.set_global()
    else:
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_aspect("equal")
        ax.set_xlabel("longitude (deg)")
        ax.set_ylabel("latitude (deg)")
        ax.set_xticks(np.arange(-180, 181, 60))
        ax.set_yticks(np.arange(-90, 91, 30))
        ax.grid(color="white", alpha=0.25, linewidth=0.5)
    if guesses is not None:
        g = np.asarray(guesses, dtype=float).reshape(-1, 2)
        ax.scatter(
            g[:, 0], g[:, 1], s=40, facecolors="none", edgecolors="cyan", linewidths=1.5, label="guesses", **transform
        )
        ax.scatter(g[:1, 0], g[:1, 1], s=90, marker="*", color="cyan", label="best guess", **transform)
    if true_location is not None:
        ax.scatter(
            [true_location[0]], [true_location[1]], s=90, marker="x", color="red", label="true location", **transform
        )
    if guesses is not None or true_location is not None:
        ax.legend(loc="lower left")
    if title:
        ax.set_title(title)
    return fig


def plot_embedding_map(
    rgb: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    *,
    size_px: tuple[int, int] = (1600, 800),
    dpi: int = 100,
    title: str | None = None,
) -> Any:
    """Draws an ``(height, width, 3)`` RGB grid (``satclip.downstream.embedding_map.pca_rgb``) on a world map.

    ``lon`` / ``lat`` are the cell centres (``lat`` may run north to south). The Figure is
    ``size_px`` pixels when saved at ``dpi`` (no tight bounding box, so the size is exact).
    A grid with more than twice as many cells as the figure has pixels along an axis is sampled
    down (nearest cell) to twice the pixels first: what is drawn does not change, but
    matplotlib's copies of the image (RGBA, resampled: several times its size) stay small.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SatclipError("plotting needs matplotlib: pip install 'satclip[maps]'") from None
    width, height = size_px
    rgb = _nearest_rows_cols(np.asarray(rgb), 2 * height, 2 * width)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    ccrs = _cartopy_crs()
    ax = fig.add_subplot(1, 1, 1, projection=ccrs.PlateCarree()) if ccrs is not None else fig.add_subplot(1, 1, 1)
    dlon = float(abs(lon[1] - lon[0])) if lon.size > 1 else 1.0
    dlat = float(abs(lat[1] - lat[0])) if lat.size > 1 else 1.0
    north_up = lat.size < 2 or lat[0] > lat[-1]
    extent = (lon.min() - dlon / 2, lon.max() + dlon / 2, lat.min() - dlat / 2, lat.max() + dlat / 2)
    kwargs = {"transform": ccrs.PlateCarree()} if ccrs is not None else {}
    ax.imshow(rgb, origin="upper" if north_up else "lower", extent=extent, interpolation="nearest", **kwargs)
    if ccrs is not None:
        ax.coastlines(linewidth=0.5, color="white")  # type: ignore[union-attr]  # a cartopy GeoAxes
    else:
        ax.set_aspect("equal")
        ax.set_xlabel("longitude (deg)")
        ax.set_ylabel("latitude (deg)")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if title:
        ax.set_title(title)
    return fig


def _nearest_rows_cols(image: np.ndarray, max_rows: int, max_cols: int) -> np.ndarray:
    """``image`` sampled at evenly spaced cell centres down to at most ``max_rows`` x ``max_cols``."""
    rows, cols = image.shape[:2]
    if rows > max_rows:
        image = image[((np.arange(max_rows) + 0.5) * rows / max_rows).astype(np.intp)]
    if cols > max_cols:
        image = image[:, ((np.arange(max_cols) + 0.5) * cols / max_cols).astype(np.intp)]
    return image


def _grid(smap: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if hasattr(smap, "dims") and hasattr(smap, "coords"):  # xarray.DataArray
        if tuple(smap.dims) != ("lat", "lon"):
            raise SatclipError(f"expected a DataArray with dims ('lat', 'lon'), got {tuple(smap.dims)}")
        return np.asarray(smap.values), np.asarray(smap["lon"].values), np.asarray(smap["lat"].values)
    try:
        values, lon, lat = smap
    except (TypeError, ValueError):
        raise SatclipError("expected a similarity_map result (DataArray or SimilarityMap)") from None
    return np.asarray(values), np.asarray(lon), np.asarray(lat)


def _cartopy_crs() -> Any:
    try:
        import cartopy.crs as ccrs
    except ImportError:
        return None
    return ccrs


__all__ = ["plot_embedding_map", "plot_similarity_map"]
