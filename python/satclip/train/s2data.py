"""Reading the S2-100K dataset layout: ``<root>/index.csv`` and ``<root>/images/<fn>``.

``index.csv`` has (at least) the columns ``lat``, ``lon`` and ``fn``; ``fn`` names a GeoTIFF under
``images/`` with 12 uint16 Sentinel-2 L2A bands (B01..B12 without B10), 256 x 256 pixels.
The model sees 13 channels: a zero band is inserted at position 10 where B10 would be, as the
released SatCLIP models were trained (their SSL4EO-S12 backbones expect all 13 bands).

The GeoTIFFs are decoded by :func:`satclip.io.geotiff.read_s2_image` (tifffile + imagecodecs), the
reader :func:`satclip.encode_images` uses too.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from satclip.train.errors import DatasetError

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
            if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 360 and abs(lat) <= 90):
                raise DatasetError(
                    f"{index_path}, line {line}: (lon, lat) = ({lon}, {lat}) is not a valid location "
                    "in degrees (lon in [-180, 360], lat in [-90, 90])"
                )
            if lon > 180:  # the 0..360 convention: the same meridian, exactly (as every entry point)
                lon -= 360.0
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
