"""Reading the S2-100K dataset layout: ``<root>/index.csv`` and ``<root>/images/<fn>``.

``index.csv`` has (at least) the columns ``lat``, ``lon`` and ``fn``; ``fn`` names a GeoTIFF under
``images/`` with 12 uint16 Sentinel-2 L2A bands (B01..B12 without B10), 256 x 256 pixels.
The model sees 13 channels: a zero band is inserted at position 10 where B10 would be, as the
released SatCLIP models were trained (their SSL4EO-S12 backbones expect all 13 bands).

GeoTIFFs are decoded with tifffile + imagecodecs (LZW with predictor): the patches are plain
pixel arrays whose georeferencing training does not use, so a GDAL stack (rasterio) would add
a large native dependency for nothing; tifffile is pure Python on top of imagecodecs' wheels.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from satclip.train.errors import DatasetError

#: Bands stored per file, and where the missing B10 band goes among them.
S2_FILE_BANDS = 12
ZERO_BAND_INDEX = 10
#: Channels the image encoders take.
S2_CHANNELS = 13
#: Files smaller than this hold (almost) nothing but no-data: the original code skipped them too.
DEFAULT_MIN_FILE_BYTES = 10_000

REQUIRED_COLUMNS = ("lat", "lon", "fn")


@dataclass(frozen=True)
class IndexEntry:
    """One row of ``index.csv``: the image file and the location of its centre."""

    path: Path
    lon: float
    lat: float


@dataclass
class SkipReport:
    """Files left out of training, by reason, so that a long run reports them instead of dying."""

    missing: list[str] = field(default_factory=list)
    undersized: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # file name -> why

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.undersized) + len(self.unreadable)

    def summary(self, listed: int) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (e.g. {self.missing[0]})")
        if self.undersized:
            parts.append(f"{len(self.undersized)} undersized (e.g. {self.undersized[0]})")
        if self.unreadable:
            name, why = next(iter(self.unreadable.items()))
            parts.append(f"{len(self.unreadable)} unreadable (e.g. {name}: {why})")
        return f"skipped {self.total} of {listed} images: " + ", ".join(parts)


def read_index(data_dir: str | os.PathLike) -> list[IndexEntry]:
    """Parses ``<data_dir>/index.csv``; raises :class:`DatasetError` naming what is wrong."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data directory {str(root)!r} does not exist or is not a directory")
    index_path = root / "index.csv"
    if not index_path.is_file():
        raise DatasetError(
            f"{str(index_path)!r} not found: the data directory must hold index.csv "
            "(columns lat, lon, fn) and an images/ folder"
        )
    images = root / "images"
    entries: list[IndexEntry] = []
    with open(index_path, newline="") as f:
        reader = csv.DictReader(f)
        missing_columns = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_columns:
            raise DatasetError(
                f"{str(index_path)!r} lacks column(s) {', '.join(missing_columns)} (found {reader.fieldnames})"
            )
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            try:
                lon, lat = float(row["lon"]), float(row["lat"])
            except (TypeError, ValueError):
                raise DatasetError(
                    f"{index_path}, line {line}: lon/lat must be numbers, got {row['lon']!r}, {row['lat']!r}"
                ) from None
            if not (math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90):
                raise DatasetError(
                    f"{index_path}, line {line}: (lon, lat) = ({lon}, {lat}) is not a valid location "
                    "in degrees (lon in [-180, 180], lat in [-90, 90])"
                )
            name = (row["fn"] or "").strip()
            if not name:
                raise DatasetError(f"{index_path}, line {line}: empty file name in column fn")
            entries.append(IndexEntry(images / name, lon, lat))
    if not entries:
        raise DatasetError(f"{str(index_path)!r} lists no images")
    return entries


def drop_unusable_files(entries: list[IndexEntry], min_file_bytes: int, report: SkipReport) -> list[IndexEntry]:
    """Keeps the entries whose file exists and has at least ``min_file_bytes`` bytes.

    Only a ``stat`` per file, so it is quick even for 100k files; files that exist but cannot be
    decoded are found (and skipped) when they are read.
    """
    kept = []
    for entry in entries:
        try:
            size = entry.path.stat().st_size
        except OSError:
            report.missing.append(entry.path.name)
            continue
        if size < min_file_bytes:
            report.undersized.append(entry.path.name)
            continue
        kept.append(entry)
    return kept


def read_s2_image(path: str | os.PathLike, min_size: int = 1) -> np.ndarray:
    """Reads one patch as a (13, H, W) uint16 array with the zero B10 band inserted.

    Raises ``ValueError`` (or the decoder's ``OSError``/``ValueError``) if the file is not a
    12-band uint16 image of at least ``min_size`` x ``min_size`` pixels.
    """
    import tifffile  # the train extra; imported here so that reading the index does not need it

    # maxworkers=1: each data-loading worker decodes one file on one thread; parallelism comes
    # from the workers, and more threads per worker would only oversubscribe the CPUs.
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        # The band axis comes from the file's own layout (tifffile derives the series axes from
        # SamplesPerPixel and PlanarConfiguration: "YXS" pixel-interleaved, "SYX" planar, "QYX"/"IYX"
        # one band per page), never from the shape: a 12-pixel-high patch has 12 at both ends.
        axes = series.axes
        data = tif.asarray(series=0, maxworkers=1)
    data = _bands_height_width(data, axes)
    if data.shape[0] != S2_FILE_BANDS:
        raise ValueError(f"expected {S2_FILE_BANDS} bands, got an image of shape {data.shape}")
    if data.dtype != np.uint16:
        raise ValueError(f"expected uint16 pixels, got {data.dtype}")
    height, width = data.shape[1:]
    if height < min_size or width < min_size:
        raise ValueError(f"image is {height} x {width} pixels, smaller than the {min_size}-pixel crop")
    out = np.zeros((S2_CHANNELS, height, width), dtype=np.uint16)
    out[:ZERO_BAND_INDEX] = data[:ZERO_BAND_INDEX]
    out[ZERO_BAND_INDEX + 1 :] = data[ZERO_BAND_INDEX:]
    return out


def _bands_height_width(data: np.ndarray, axes: str) -> np.ndarray:
    """``data`` (with tifffile's axis letters ``axes``) as (bands, height, width)."""
    if data.ndim != len(axes):
        raise ValueError(f"the TIFF's axes {axes!r} do not match its pixel array of shape {data.shape}")
    keep = [i for i, axis in enumerate(axes) if axis in "YX" or data.shape[i] != 1]
    shape = tuple(data.shape[i] for i in keep)
    axes = "".join(axes[i] for i in keep)
    if len(axes) != 3 or "Y" not in axes or "X" not in axes:
        raise ValueError(f"expected a 3-D image (bands, height, width), got axes {axes!r} of shape {shape}")
    data = data.reshape(shape)
    band = next(i for i, axis in enumerate(axes) if axis not in "YX")
    return data.transpose(band, axes.index("Y"), axes.index("X"))
