"""Embeddings on a regular lon/lat grid: PCA-as-RGB maps and full-grid exports (``satclip map``).

The grid is north-up (row 0 is the northernmost row of cell centres), like a raster: cell
``(row, col)`` is centred at ``(lon0 + (col + 1/2) res, lat1 - (row + 1/2) res)``. Everything is
computed in bands of rows, so memory is bounded by one band whatever the grid size (a 0.1 degree
global grid is 3600 x 1800 = 6.5 M points, 6.6 GB of float32 embeddings, which never sit in memory):

* the RGB map fits a 3-component PCA on an evenly spread subsample of the grid (at most
  :data:`PCA_SAMPLE` points), then projects band by band; each component is scaled to [0, 1]
  between its 1st and 99th percentile on the sample. Only the float32 RGB image (12 bytes per
  cell) spans the grid, so an image grid may have at most :data:`MAP_MAX_CELLS` cells
  (:func:`check_map_grid`, which ``satclip map`` applies before loading the model);
* exports write each band as it is computed, as a variable ``embeddings`` with dims
  ``(lat, lon, embedding)``: Zarr (one chunk per band, resumable, see :func:`export_grid`),
  NetCDF-4 (h5netcdf, hyperslab writes) or a multi-band Cloud-Optimized GeoTIFF (band ``b`` is
  embedding dimension ``b - 1``; EPSG:4326 and the grid's affine transform; tiled, compressed,
  with overviews, see :class:`_GeoTIFFWriter`).

Bands are embedded with :func:`satclip.encode_grid` (the separable path for product grids), whose
bits do not depend on how the rows are split into bands.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satclip.errors import MissingExtraError, OutputExistsError, SatclipError
from satclip.io.publish import signals_deferred

#: Points embedded per band (~64 MiB of float32 embeddings for 256 dimensions).
BAND_POINTS = 1 << 16
#: Grid points the PCA of a map is fitted on.
PCA_SAMPLE = 50_000
#: Cells an RGB map grid may have: 2**25 cells are 384 MiB of float32 RGB (a global grid at
#: 0.05 degrees has 26 M cells); the embeddings themselves are streamed band by band.
MAP_MAX_CELLS = 1 << 25
#: Bytes per cell of the RGB image :func:`pca_rgb` returns (three float32 components).
RGB_CELL_BYTES = 12
EXPORT_SUFFIXES = (".zarr", ".nc", ".tif", ".tiff")


@dataclass(frozen=True)
class Grid:
    """A north-up lon/lat grid of cell centres: ``lon`` (width,), ``lat`` (height,), descending."""

    resolution: float
    region: tuple[float, float, float, float]

    @property
    def width(self) -> int:
        return round((self.region[2] - self.region[0]) / self.resolution)

    @property
    def height(self) -> int:
        return round((self.region[3] - self.region[1]) / self.resolution)

    @property
    def lon(self) -> np.ndarray:
        return self.region[0] + (np.arange(self.width) + 0.5) * self.resolution

    @property
    def lat(self) -> np.ndarray:
        return self.region[3] - (np.arange(self.height) + 0.5) * self.resolution

    def points(self, rows: slice) -> np.ndarray:
        """``[lon, lat]`` of the cells of ``rows``, row-major, shape ``(len(rows) * width, 2)``."""
        lon, lat = np.meshgrid(self.lon, self.lat[rows])
        return np.column_stack([lon.ravel(), lat.ravel()])

    def bands(self, band_points: int | None = None) -> Iterator[slice]:
        rows = max(1, (BAND_POINTS if band_points is None else band_points) // self.width)
        for start in range(0, self.height, rows):
            yield slice(start, min(start + rows, self.height))


def make_grid(resolution: float = 0.5, region: Any = None) -> Grid:
    """Validates ``resolution`` (degrees) and ``region`` ``(lon0, lat0, lon1, lat1)`` (default global)."""
    if region is None:
        region = (-180.0, -90.0, 180.0, 90.0)
    try:
        lon0, lat0, lon1, lat1 = (float(v) for v in region)
        res = float(resolution)
    except (TypeError, ValueError):
        raise SatclipError(f"region must be four numbers lon0,lat0,lon1,lat1, got {region!r}") from None
    if not (math.isfinite(res) and res > 0):
        raise SatclipError(f"resolution must be a positive number of degrees, got {resolution!r}")
    if not (-180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90):
        raise SatclipError(
            f"region {region!r} must be lon0,lat0,lon1,lat1 with -180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90"
        )
    grid = Grid(res, (lon0, lat0, lon1, lat1))
    for size, span, name in ((grid.width, lon1 - lon0, "width"), (grid.height, lat1 - lat0, "height")):
        if size < 1 or abs(size * res - span) > 1e-6 * res:
            raise SatclipError(f"the region's {name} ({span:g} deg) is not a whole number of {res:g}-deg cells")
    return grid


def _encode(points: np.ndarray, model: Any, device: str | None) -> np.ndarray:
    from satclip.embed.locations import encode

    return np.asarray(encode(points, model, device=device, progress=False))


def _encode_rows(grid: Grid, rows: slice, model: Any, device: str | None) -> np.ndarray:
    """Embeddings of a band of rows, ``(rows, width, dim)`` float32 (the separable grid path)."""
    from satclip.embed.grid import encode_grid

    return encode_grid(grid.lon, grid.lat[rows], model, device=device, progress=False)


def _bar(total: int, progress: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pt", unit_scale=True, desc=desc, disable=not progress, file=sys.stderr)


def check_map_grid(grid: Grid) -> None:
    """Refuses (before any work) a grid whose RGB image would exceed :data:`MAP_MAX_CELLS` cells."""
    cells = grid.width * grid.height
    if cells > MAP_MAX_CELLS:
        raise SatclipError(
            f"a {grid.width} x {grid.height} grid ({cells:,} cells) at {grid.resolution:g} deg would need "
            f"{format_bytes(cells * RGB_CELL_BYTES)} of memory for its RGB image; a map may have at most "
            f"{MAP_MAX_CELLS:,} cells ({format_bytes(MAP_MAX_CELLS * RGB_CELL_BYTES)}): use a coarser "
            "resolution or a smaller region (--export streams any size to disk)"
        )


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``1.4 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def pca_rgb(model: Any, grid: Grid, *, device: str | None = None, progress: bool = False) -> np.ndarray:
    """The grid's embeddings as RGB, ``(height, width, 3)`` float32 in [0, 1] (3-component PCA).

    Embeddings are computed and projected one band of rows at a time; only the RGB result
    (12 bytes per cell) spans the grid.
    """
    n = grid.width * grid.height
    step = max(1, n // PCA_SAMPLE)
    flat = np.arange(0, n, step)
    sample_pts = np.column_stack([grid.lon[flat % grid.width], grid.lat[flat // grid.width]])
    sample = _encode(sample_pts, model, device).astype(np.float64)
    mean = sample.mean(axis=0)
    # Principal axes from the SVD of the centred sample; the sign is fixed so each axis's largest
    # loading is positive (the colours do not flip between runs or machines).
    _, sv, vt = np.linalg.svd(sample - mean, full_matrices=False)
    # Only components with real variance get a colour channel: a direction the sample does not
    # vary along (a grid of two cells has one) would only colour rounding noise. Channels
    # without a component are a neutral 0.5.
    used = int(np.count_nonzero(sv[:3] > 1e-9 * sv[0])) if sv.size and sv[0] > 0 else 0
    axes = vt[:used]
    axes *= np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])[:, None]
    proj = (sample - mean) @ axes.T
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    # Per band: (emb - mean) @ axes.T == emb @ axes.T - mean @ axes.T, without a centred copy of
    # the band's embeddings.
    axes_t = axes.T
    offset = mean @ axes_t + lo
    rgb = np.zeros((grid.height, grid.width, 3), dtype=np.float32)
    rgb[..., used:] = 0.5
    if used == 0:  # one cell, or a model whose embeddings do not vary over the grid
        return rgb
    with _bar(n, progress, "satclip map") as bar:
        for rows in grid.bands():
            emb = _encode_rows(grid, rows, model, device).reshape(-1, axes_t.shape[0])
            band = np.clip((emb @ axes_t.astype(emb.dtype) - offset) / scale, 0.0, 1.0)
            rgb[rows, :, : axes.shape[0]] = band.reshape(rows.stop - rows.start, grid.width, -1)
            bar.update(band.shape[0])
    return rgb


def export_grid(
    model: Any,
    grid: Grid,
    path: Path,
    *,
    device: str | None = None,
    progress: bool = False,
    model_name: str = "",
    overwrite: bool = False,
) -> Path:
    """Writes the grid's full embeddings to ``path`` (.zarr, .nc or .tif), one band of rows at a time.

    The export is written under a temporary name next to ``path`` and renamed when complete, so
    an interrupted export leaves nothing under ``path``. An existing ``path`` (file or Zarr
    directory) raises :class:`~satclip.errors.OutputExistsError` before any work unless
    ``overwrite=True``; with it, the old output is replaced only once the new one is complete.

    Zarr exports are resumable: the store is built in the hidden directory ``.NAME.partial``
    next to ``path``, one chunk per band of rows, and a chunk is marked finished once written.
    Running the same export again (same model, grid and band size) after an interrupt keeps the
    finished chunks, computes only the others and gives the same bytes as an uninterrupted run
    (the embeddings do not depend on how the rows were split). Memory stays bounded by a band.
    The store carries CF georeferencing (``spatial_ref`` grid mapping with the WGS 84 WKT and
    the GeoTransform, lat/lon axes) and GDAL's ``_CRS`` attribute.

    GeoTIFF exports are Cloud-Optimized GeoTIFFs (512 x 512 blocks, band-interleaved, ZSTD
    with the floating-point predictor, averaged overviews, EPSG:4326), built through a compressed
    scratch file next to ``path`` that is removed afterwards (see :class:`_GeoTIFFWriter`).
    """
    from satclip.io.publish import publish

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise SatclipError(f"export format {path.suffix!r} unknown: use {', '.join(EXPORT_SUFFIXES)}")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise OutputExistsError(f"{path} already exists; pass overwrite=True to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"the output directory {parent} does not exist")
    if suffix == ".zarr":
        _export_zarr(model, grid, path, device=device, progress=progress, model_name=model_name, overwrite=overwrite)
        return path
    publish(
        path,
        lambda tmp: _export(model, grid, tmp, device=device, progress=progress, model_name=model_name),
        overwrite=overwrite,
    )
    return path


def _export(model: Any, grid: Grid, path: Path, *, device: str | None, progress: bool, model_name: str) -> None:
    suffix = path.suffix.lower()
    writer = {".nc": _NetCDFWriter, ".tif": _GeoTIFFWriter, ".tiff": _GeoTIFFWriter}[suffix]
    attrs = _attrs(model, grid, model_name)
    out: Any = None  # the writer, created with the first band (its shape fixes the layout)
    try:
        with _bar(grid.width * grid.height, progress, "satclip export") as bar:
            for rows in grid.bands():
                band = _encode_rows(grid, rows, model, device)
                if out is None:
                    out = writer(path, grid, band.shape[2], band.shape[0], attrs)
                out.write(rows, band)
                bar.update(band.shape[0] * band.shape[1])
    except BaseException:
        if out is not None:
            out.discard()  # publish removes the output; a writer's scratch goes here
        raise
    assert out is not None
    out.close()


def _attrs(model: Any, grid: Grid, model_name: str) -> dict[str, Any]:
    return {"satclip_model": str(model_name or model), "resolution_deg": grid.resolution, "crs": "EPSG:4326"}


#: Name of the directory, inside a partial Zarr export, holding one empty file per finished chunk.
_DONE = ".satclip-done"


def partial_zarr_path(path: Path) -> Path:
    """Where the Zarr export to ``path`` is built (and found again to resume it)."""
    return path.with_name(f".{path.name}.partial")


def _export_zarr(
    model: Any, grid: Grid, path: Path, *, device: str | None, progress: bool, model_name: str, overwrite: bool
) -> None:
    """The resumable Zarr export (see :func:`export_grid`)."""
    import hashlib
    import shutil

    from satclip.io.publish import _rename_directory

    zarr = _need("zarr")
    bands = list(grid.bands())
    # What the partial store must have been started with to be resumed: the grid, the bands and
    # the model (its name and a fingerprint of its output, so a changed checkpoint is not mixed in).
    probe = _encode(np.array([[12.5, 41.9], [-70.25, -33.5]]), model, device).astype(np.float32)
    spec = {
        "model": str(model_name or model),
        "model_fingerprint": hashlib.sha256(np.round(probe, 5).tobytes()).hexdigest(),
        "resolution": grid.resolution,
        "region": list(grid.region),
        "band_rows": bands[0].stop - bands[0].start,
    }
    partial = partial_zarr_path(path)
    root: Any = None
    if partial.is_dir():
        try:
            root = zarr.open_group(str(partial), mode="r+", zarr_format=2)
            if dict(root.attrs).get("satclip_partial_export") != spec or "embeddings" not in root:
                root = None
        except Exception:  # not a store we can resume: start again
            root = None
        if root is None:
            shutil.rmtree(partial)
    elif partial.exists():
        partial.unlink()
    done = partial / _DONE
    with _bar(grid.width * grid.height, progress, "satclip export") as bar:
        for i, rows in enumerate(bands):
            cells = (rows.stop - rows.start) * grid.width
            if root is not None and (done / str(i)).exists():
                bar.update(cells)  # finished before an interrupt: not recomputed
                continue
            band = _encode_rows(grid, rows, model, device)
            if root is None:
                root = _create_zarr(zarr, partial, grid, band.shape[2], spec, _attrs(model, grid, model_name))
                done.mkdir()
            root["embeddings"][rows.start : rows.stop] = band
            (done / str(i)).touch()
            bar.update(cells)
    del root.attrs["satclip_partial_export"]
    shutil.rmtree(done)
    zarr.consolidate_metadata(str(partial), zarr_format=2)
    _rename_directory(partial, path, overwrite)


def _crs_wkt() -> str:
    try:
        import pyproj

        return str(pyproj.CRS.from_epsg(4326).to_wkt())
    except ImportError:
        return _WGS84_WKT


_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],'
    'UNIT["degree",0.0174532925199433],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)


def _grid_mapping(grid: Grid) -> dict[str, Any]:
    """Attributes of the CF grid-mapping variable ``spatial_ref`` (WGS 84, as CF and GDAL read it,
    with the grid's geotransform: north-up, cell edges from the region's north-west corner)."""
    wkt = _crs_wkt()
    res, (lon0, _, _, lat1) = grid.resolution, grid.region
    return {
        "grid_mapping_name": "latitude_longitude",
        "crs_wkt": wkt,
        "spatial_ref": wkt,
        "semi_major_axis": 6378137.0,
        "inverse_flattening": 298.257223563,
        "longitude_of_prime_meridian": 0.0,
        "GeoTransform": f"{lon0!r} {res!r} 0.0 {lat1!r} 0.0 {-res!r}",
    }


def _create_zarr(zarr: Any, path: Path, grid: Grid, dim: int, spec: dict[str, Any], attrs: dict[str, Any]) -> Any:
    """An empty Zarr (v2) store for the grid's embeddings, readable by xarray (CF) and GDAL."""
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    band_rows = spec["band_rows"]
    wkt = _crs_wkt()

    def array(name: str, values: np.ndarray, dims: list[str], **extra: Any) -> None:
        arr = root.create_array(name, shape=values.shape, dtype=values.dtype, chunks=values.shape, fill_value=None)
        arr[...] = values
        arr.attrs.update(_ARRAY_DIMENSIONS=dims, **extra)

    array("lat", grid.lat, ["lat"], units="degrees_north", standard_name="latitude", axis="Y")
    array("lon", grid.lon, ["lon"], units="degrees_east", standard_name="longitude", axis="X")
    array("embedding", np.arange(dim, dtype=np.int32), ["embedding"], long_name="embedding dimension")
    array("spatial_ref", np.array(0, dtype=np.int32), [], **_grid_mapping(grid))
    emb = root.create_array(
        "embeddings",
        shape=(grid.height, grid.width, dim),
        dtype=np.float32,
        chunks=(band_rows, grid.width, dim),
        fill_value=np.nan,
    )
    emb.attrs.update(
        _ARRAY_DIMENSIONS=["lat", "lon", "embedding"],
        grid_mapping="spatial_ref",
        coordinates="spatial_ref",
        long_name="SatCLIP location embedding",
        _CRS={"wkt": wkt},
    )
    root.attrs.update(attrs, Conventions="CF-1.8", satclip_partial_export=spec)
    return root


def _need(module: str) -> Any:
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError:
        raise MissingExtraError(f"this export needs {module}: pip install 'satclip[geo]'") from None


class _NetCDFWriter:
    def __init__(self, path: Path, grid: Grid, dim: int, band_rows: int, attrs: dict[str, Any]):
        h5netcdf = _need("h5netcdf")
        _need("h5py")
        with signals_deferred():  # a File interrupted in its constructor breaks in its finaliser
            self.file = h5netcdf.File(path, "w")
        self.file.dimensions = {"lat": grid.height, "lon": grid.width, "embedding": dim}
        for name, values, units, std, axis in (
            ("lat", grid.lat, "degrees_north", "latitude", "Y"),
            ("lon", grid.lon, "degrees_east", "longitude", "X"),
        ):
            var = self.file.create_variable(name, (name,), "f8")
            var[:] = values
            var.attrs.update(units=units, standard_name=std, axis=axis)
        self.file.create_variable("embedding", ("embedding",), "i4")[:] = np.arange(dim)
        self.file.create_variable("spatial_ref", (), "i4").attrs.update(_grid_mapping(grid))
        self.var = self.file.create_variable(
            "embeddings", ("lat", "lon", "embedding"), "f4", chunks=(band_rows, grid.width, dim)
        )
        self.var.attrs.update(grid_mapping="spatial_ref", long_name="SatCLIP location embedding")
        self.file.attrs.update(attrs, Conventions="CF-1.8")

    def write(self, rows: slice, band: np.ndarray) -> None:
        self.var[rows, :, :] = band

    def close(self) -> None:
        self.file.close()

    def discard(self) -> None:
        self.file.close()


#: Block (tile) size of GeoTIFF exports, the common COG choice; smaller images get one block
#: rounded up to a multiple of 16 (the TIFF rule for tile sizes).
COG_BLOCK = 512


def _cog_overview_factors(width: int, height: int, block: int = COG_BLOCK) -> list[int]:
    """Decimation factors 2, 4, 8 ... until the coarsest overview fits in one block (GDAL's COG rule)."""
    factors: list[int] = []
    f = 2
    while -(-width // (f // 2)) > block or -(-height // (f // 2)) > block:
        factors.append(f)
        f *= 2
    return factors


class _GeoTIFFWriter:
    """A Cloud-Optimized GeoTIFF, built in two passes so that memory stays bounded by a band.

    Bands of rows go to a scratch GeoTIFF next to ``path``: band-interleaved strips of exactly one
    band of rows each, so every write completes its strips and GDAL flushes them at once (tiles
    would stay dirty in the block cache until a whole tile row had arrived: 512 rows x width x
    256 dimensions, 1.9 GB for a 0.1 deg grid). On :meth:`close` the scratch gets its overviews
    and is copied into the COG layout (``COPY_SRC_OVERVIEWS``: IFDs first, then the overviews'
    tiles from the coarsest, then the full resolution), which GDAL does one dimension and one
    swath of block rows at a time, then the scratch is removed.

    The COG is band-interleaved (one 512 x 512 float32 block of one dimension is 1 MiB): GDAL's
    COG driver (before 3.11) only writes pixel-interleaved tiles, which for 256 dimensions would
    be 256 MiB each. ZSTD (level 1) with the floating-point predictor: lossless, and on a global
    grid about 4x faster to write than DEFLATE for ~7% more bytes (float embeddings compress little
    either way). Overviews average the embeddings of the cells they cover.
    """

    def __init__(self, path: Path, grid: Grid, dim: int, band_rows: int, attrs: dict[str, Any]):
        rasterio = _need("rasterio")
        from rasterio.transform import from_origin

        self.rasterio = rasterio
        self.window = _need("rasterio.windows").Window
        self.path, self.width, self.height = path, grid.width, grid.height
        self.scratch = path.with_name(f"{path.stem}.scratch{path.suffix}")
        # A small block cache keeps the writer's memory flat on any grid size (finished strips
        # and the copy's swaths go straight to disk).
        self.env = rasterio.Env(GDAL_CACHEMAX=64)
        self.env.__enter__()
        self.file: Any = None
        try:
            self.file = rasterio.open(
                self.scratch,
                "w",
                driver="GTiff",
                width=grid.width,
                height=grid.height,
                count=dim,
                dtype="float32",
                crs="EPSG:4326",
                transform=from_origin(grid.region[0], grid.region[3], grid.resolution, grid.resolution),
                tiled=False,
                blockysize=band_rows,
                interleave="band",
                # Fast and lossless: the scratch is read twice, then deleted.
                compress="zstd",
                zstd_level=1,
                predictor=3,
                BIGTIFF="IF_SAFER",
            )
            self.file.update_tags(**{k: str(v) for k, v in attrs.items()})
        except BaseException:
            self.discard()
            raise

    def write(self, rows: slice, band: np.ndarray) -> None:
        window = self.window(0, rows.start, self.width, rows.stop - rows.start)
        self.file.write(np.ascontiguousarray(np.moveaxis(band, 2, 0)), window=window)

    def close(self) -> None:
        from rasterio.enums import Resampling
        from rasterio.shutil import copy

        try:
            block = min(COG_BLOCK, 16 * -(-max(self.width, self.height) // 16))
            factors = _cog_overview_factors(self.width, self.height, block)
            if factors:
                self.file.build_overviews(factors, Resampling.average)
            self.file.close()
            self.file = None
            copy(
                self.scratch,
                self.path,
                driver="GTiff",
                COPY_SRC_OVERVIEWS="YES",
                TILED="YES",
                BLOCKXSIZE=block,
                BLOCKYSIZE=block,
                INTERLEAVE="BAND",
                COMPRESS="ZSTD",
                ZSTD_LEVEL=1,
                PREDICTOR=3,
                BIGTIFF="IF_SAFER",
                NUM_THREADS="ALL_CPUS",
            )
        finally:
            self.discard()

    def discard(self) -> None:
        """Closes and removes the scratch file (after an interrupt or a failure too)."""
        try:
            if self.file is not None:
                self.file.close()
                self.file = None
        finally:
            self.scratch.unlink(missing_ok=True)
            if self.env is not None:
                self.env.__exit__(None, None, None)
                self.env = None
