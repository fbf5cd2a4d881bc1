"""Reading points and writing embeddings in batches, so the CLI's memory is bounded by the batch.

``satclip encode`` used to read the whole table, embed it and build the whole output table: peak
memory grew with N (4.3 GB for 2e6 rows). Here a :class:`PointReader` yields record batches
(``pyarrow.dataset`` scans of Parquet, pyarrow's streaming CSV reader, a memory-mapped ``.npy``)
and the writers append each batch's rows and embeddings as they come, so only one batch is in
memory at a time.

Inputs and outputs are local paths or URLs of any fsspec filesystem (``s3://``, ``gs://``,
``https://``, ``memory://``; the ``cloud`` extra brings s3fs). :func:`find_parts` lists the parts
of a partitioned input (a directory, searched recursively, so hive-partitioned folders such as
``year=2020/part-0.parquet`` work; or a glob). An object-store output is written to a local
temporary file and uploaded to its key only once complete (:func:`publish_to_url`), so a reader
never sees a partial object; without ``overwrite`` the upload is a conditional create where the
store offers one (S3's ``If-None-Match``), so a key written meanwhile by someone else is not
replaced.

A GeoParquet file without longitude/latitude columns is read from its primary geometry column
(WKB or GeoArrow ``point`` encoding) in the CRS its ``geo`` metadata names (OGC:CRS84 when it
names none); the geometries become points as :func:`satclip.encode` makes them of a
GeoDataFrame (:mod:`satclip.points.geo`: points as they are, transformed to lon/lat with pyproj
when the CRS is projected; other shapes by their representative point). This needs the ``geo``
extra.

Rows in messages are 0-based and count data rows only (the CSV header is not a row), like
``satclip.encode``'s own messages and a pandas index.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satclip.errors import DTypeError, OutputExistsError, SatclipError, ShapeError

#: Rows per batch when the user gives no --batch-size: big enough to amortise per-batch costs,
#: small enough that a batch's working set stays small. Measured at L=10 (benches/bench_cli_memory.py):
#: 65536 rows cost ~490 MB above the import baseline, 8192 rows ~140-180 MB.
DEFAULT_BATCH_ROWS = 8192

#: Bytes per block of the streaming CSV reader (also the block pyarrow infers column types from).
_CSV_BLOCK_BYTES = 8 << 20


# ----------------------------------------------------------------------------------------
# Where files are: local paths and fsspec URLs

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: str) -> bool:
    """True for ``scheme://...`` (an fsspec URL), false for a local path."""
    return bool(_URL.match(str(text)))


def url_filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path in it; a missing fsspec or protocol
    implementation (s3fs, gcsfs, aiohttp) is a :class:`SatclipError` saying what to install."""
    try:
        import fsspec
    except ImportError:
        raise SatclipError(f"reading or writing {url} needs fsspec: pip install 'satclip[cloud]'") from None
    try:
        return fsspec.core.url_to_fs(url)  # type: ignore[no-any-return]
    except ImportError as err:
        raise SatclipError(f"{url}: {err} (the 'cloud' extra brings s3fs: pip install 'satclip[cloud]')") from None
    except ValueError as err:  # an unknown protocol
        raise SatclipError(f"{url}: {err}") from None


@dataclass(frozen=True)
class Source:
    """One input file: a local path (``fs`` None) or a path in an fsspec filesystem; ``name`` is
    how messages name it (the path or URL as the user would write it)."""

    path: str
    fs: Any = None
    name: str = ""

    @classmethod
    def of(cls, text: str | Path) -> Source:
        text = str(text)
        if is_url(text):
            fs, path = url_filesystem(text)
            return cls(path, fs, text)
        return cls(text, None, text)

    def __str__(self) -> str:
        return self.name or self.path

    @property
    def suffix(self) -> str:
        return Path(self.path).suffix.lower()

    def is_file(self) -> bool:
        return Path(self.path).is_file() if self.fs is None else bool(self.fs.isfile(self.path))

    def open(self) -> Any:
        """The file opened for binary reading (seekable)."""
        return open(self.path, "rb") if self.fs is None else self.fs.open(self.path, "rb")


@dataclass(frozen=True)
class Part:
    """One part of a partitioned input and the name (relative, ``/``-separated) of its output."""

    source: Source
    output: str


#: Part files, as ``satclip encode`` reads them from a directory or glob.
PART_SUFFIXES = (".csv", ".parquet", ".pq")


def find_parts(text: str) -> list[Part] | None:
    """The parts of a partitioned input, or None for a single file.

    A directory (local or a URL prefix) stands for every ``.parquet``/``.pq``/``.csv`` file below
    it, in sorted order; names starting with ``.`` or ``_`` (and everything under such folders)
    are skipped, as ``pyarrow.dataset`` skips them. Each part's output keeps the part's path
    below the directory (``year=2020/part-0.parquet`` stays under ``year=2020/``), so the output
    folder has the input's hive partitioning. A glob (quoted on the shell) stands for the files
    it matches; their outputs are named by their stems.
    """
    import glob

    import pyarrow.fs as pafs

    url = is_url(text)
    fs, path = url_filesystem(text) if url else (None, text)
    if (fs is None and Path(path).is_dir()) or (fs is not None and fs.isdir(path)):
        where = f"the directory {text}"
        arrow_fs = pafs.LocalFileSystem() if fs is None else pafs.PyFileSystem(pafs.FSSpecHandler(fs))
        base = str(Path(path).resolve()) if fs is None else path.rstrip("/")
        infos = arrow_fs.get_file_info(pafs.FileSelector(base, recursive=True))
        parts = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            relative = info.path[len(base) :].lstrip("/")
            if any(piece.startswith((".", "_")) for piece in relative.split("/")):
                continue
            if Path(relative).suffix.lower() not in PART_SUFFIXES:
                continue
            full = str(Path(path) / relative) if fs is None else f"{path.rstrip('/')}/{relative}"
            name = full if fs is None else f"{text.rstrip('/')}/{relative}"
            parts.append(Part(Source(full, fs, name), str(Path(relative).with_suffix(".parquet"))))
        parts.sort(key=lambda p: p.output)
    elif glob.has_magic(path) and not (Path(path).exists() if fs is None else fs.exists(path)):
        where = f"the pattern {text!r}"
        if fs is None:
            found = sorted(p for p in glob.glob(path) if Path(p).is_file())
            parts = [Part(Source(p, None, p), f"{Path(p).stem}.parquet") for p in found]
        else:
            protocol = text.split("://", 1)[0]
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            parts = [Part(Source(p, fs, f"{protocol}://{p}"), f"{Path(p).stem}.parquet") for p in found]
        odd = [p.source for p in parts if p.source.suffix not in PART_SUFFIXES]
        if odd:
            raise ShapeError(f"partitioned input must be .parquet or .csv files, got {odd[0]}")
    else:
        return None
    if not parts:
        raise FileNotFoundError(f"{where} matches no .parquet, .pq or .csv files")
    return parts


# ----------------------------------------------------------------------------------------
# Reading


@dataclass
class Batch:
    """Rows ``first_row ..`` of the input: the columns to keep (None for .npy) and float64 points."""

    first_row: int
    table: Any  # pyarrow.RecordBatch or None
    lonlat: np.ndarray


class PointReader:
    """A CSV, Parquet/GeoParquet or ``.npy`` file read batch by batch (see the module doc).

    ``source``: a :class:`Source` or a local path. The points come from the longitude/latitude
    columns (``lon_col``/``lat_col`` or found by name); a GeoParquet file without such columns
    (``geometry`` only, or only projected ``x``/``y``) gives them from its geometry column.
    """

    def __init__(
        self,
        source: Source | Path | str,
        fmt: str,
        lon_col: str | None,
        lat_col: str | None,
        batch_rows: int,
        crs: str | None = None,
    ) -> None:
        self.source = source if isinstance(source, Source) else Source.of(source)
        self.path: Any = Path(self.source.path) if self.source.fs is None else str(self.source)
        self.fmt, self.batch_rows = fmt, batch_rows
        self.schema: Any = None  # pyarrow schema of the kept columns (None for .npy)
        self.num_rows: int | None = None  # known up front for Parquet and .npy
        self.geometry: _Geometry | None = None  # set when the points come from a GeoParquet geometry
        # The coordinate columns' CRS (for projected x/y); columns the user named are otherwise degrees.
        self._named = lon_col is not None or lat_col is not None
        self.crs: Any = None
        if crs is not None:  # read now, so that a bad CRS costs no model load
            from satclip.points.geo import parse_crs

            self.crs = parse_crs(crs)
        if fmt == "npy":
            self._open_npy()
            return
        from satclip.points.columns import find_lonlat_columns

        if fmt == "parquet":
            import pyarrow.dataset as ds

            try:
                self._dataset = ds.dataset(self.source.path, format="parquet", filesystem=self.source.fs)
                self.schema = self._dataset.schema
                self.num_rows = self._dataset.count_rows()
            except FileNotFoundError:
                raise
            except Exception as err:  # ArrowInvalid: not Parquet, truncated footer
                raise ShapeError(f"{self.path} is not a readable Parquet file: {err}") from None
            names = self.schema.names
        else:
            names = _csv_header(self.source)
        geo = _geo_metadata(self.schema) if fmt == "parquet" and lon_col is None and lat_col is None else None
        try:
            self.lon, self.lat = find_lonlat_columns(names, lon_col, lat_col)
        except ShapeError:
            if geo is None:
                raise
            self.geometry = _Geometry(self.path, self.schema, geo)
            return
        if geo is not None and str(self.lon).lower() == "x" and str(self.lat).lower() == "y":
            # x/y beside a geometry are more likely projected metres than degrees: use the geometry.
            self.geometry = _Geometry(self.path, self.schema, geo)
            return
        if fmt == "parquet":
            import pyarrow.types as pat

            for name in (self.lon, self.lat):
                kind = self.schema.field(name).type
                if not (pat.is_integer(kind) or pat.is_floating(kind) or pat.is_decimal(kind)):
                    raise DTypeError(f"{self.path}: column {name!r} must hold numbers (degrees), got {kind}")

    # -- .npy ------------------------------------------------------------------------------

    def _open_npy(self) -> None:
        try:
            if self.source.fs is None:
                array = np.load(self.source.path, mmap_mode="r", allow_pickle=False)
            else:  # no memory map over a network: the (N, 2) points are read whole
                with self.source.open() as f:
                    array = np.load(io.BytesIO(f.read()), allow_pickle=False)
        except ValueError as err:  # pickled object arrays, truncated files
            raise ShapeError(f"{self.path} is not a plain numeric .npy array: {err}") from None
        if array.dtype.kind not in "iuf" or array.ndim != 2 or array.shape[1] != 2:
            raise ShapeError(
                f"{self.path} must hold a numeric (N, 2) array of [lon, lat], got {array.dtype} {array.shape}"
            )
        self._array = array
        self.num_rows = array.shape[0]

    # -- iteration -------------------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        """The input batch by batch; raises ShapeError if it has no rows at all."""
        self._first_row = 0  # of the batch being read (geometry errors count from it)
        for table, lonlat in self._raw_batches():
            if len(lonlat):
                yield Batch(self._first_row, table, lonlat)
            self._first_row += len(lonlat)
        if self._first_row == 0:
            raise ShapeError(f"{self.path} has no rows (nothing to encode)")

    def _raw_batches(self) -> Iterator[tuple[Any, np.ndarray]]:
        if self.fmt == "npy":
            for start in range(0, self._array.shape[0], self.batch_rows):
                yield None, np.asarray(self._array[start : start + self.batch_rows], dtype=np.float64)
            return
        if self.fmt == "parquet":
            # A small read-ahead keeps memory bounded by a few batches.
            source: Any = self._dataset.to_batches(batch_size=self.batch_rows, batch_readahead=1, fragment_readahead=1)
        else:
            source = self._csv_batches()
        for batch in source:
            if self.geometry is not None:
                yield batch, self.geometry.lonlat(batch, self._first_row)
            else:
                yield batch, self._degrees(self._lonlat(batch))

    def _csv_batches(self) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        with self.source.open() as stream:
            try:
                # (open_csv already reads and converts the first block.)
                reader = pcsv.open_csv(
                    stream,
                    read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                    # The coordinates are read as numbers whatever the first block looks like, so a block of
                    # integer degrees followed by decimals does not fail; a cell that is no number is an error.
                    convert_options=pcsv.ConvertOptions(column_types={self.lon: pa.float64(), self.lat: pa.float64()}),
                )
            except pa.ArrowInvalid as err:
                raise _locate_bad_cell(self.source, self.lon, self.lat, err) from None
            self.schema = reader.schema
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as err:
                    raise _locate_bad_cell(self.source, self.lon, self.lat, err) from None
                # Re-chunk the reader's blocks into batches of at most batch_rows.
                for start in range(0, batch.num_rows, self.batch_rows):
                    yield batch.slice(start, self.batch_rows)

    def _degrees(self, points: np.ndarray) -> np.ndarray:
        """The columns' values as lon/lat degrees: transformed from ``crs`` when one was given; x/y
        columns without one only when they fit degrees (else a CRSError that asks for ``--crs``)."""
        from satclip.points.columns import planar_to_degrees
        from satclip.points.geo import crs_to_lonlat

        if self.crs is not None:
            lon, lat = crs_to_lonlat(points[:, 0], points[:, 1], self.crs, first_row=self._first_row)
            return np.stack([lon, lat], axis=1)
        return planar_to_degrees(points, (self.lon, self.lat), named=self._named, first_row=self._first_row)

    def _lonlat(self, batch: Any) -> np.ndarray:
        import pyarrow as pa

        columns = []
        for name in (self.lon, self.lat):
            column = batch.column(name).cast(pa.float64())
            columns.append(column.to_numpy(zero_copy_only=False))  # nulls become NaN
        return np.stack(columns, axis=1)


# ----------------------------------------------------------------------------------------
# GeoParquet geometry


def _geo_metadata(schema: Any) -> dict[str, Any] | None:
    """The primary geometry column's entry of GeoParquet's ``geo`` metadata (with its name under
    ``"name"``), or None when the file is no GeoParquet."""
    raw = (schema.metadata or {}).get(b"geo")
    if raw is None:
        return None
    try:
        geo = json.loads(raw)
        name = geo["primary_column"]
        column = dict(geo.get("columns", {}).get(name, {}))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if name not in schema.names:
        return None
    column["name"] = name
    return column


class _Geometry:
    """A GeoParquet geometry column turned into lon/lat points, batch by batch."""

    def __init__(self, path: Any, schema: Any, column: dict[str, Any]) -> None:
        self.path, self.name = path, column["name"]
        self.encoding = str(column.get("encoding", "WKB")).lower()
        if self.encoding not in ("wkb", "point"):
            raise ShapeError(
                f"{path}: the geometry column {self.name!r} is encoded as {column.get('encoding')!r}; "
                "satclip reads WKB and GeoArrow 'point' geometries (or give --lon-col/--lat-col)"
            )
        from satclip.points.geo import _need

        self._geopandas = _need("geopandas", f"{path}: reading GeoParquet geometries")
        self._shapely = _need("shapely", f"{path}: reading GeoParquet geometries")
        pyproj = _need("pyproj", f"{path}: reading GeoParquet geometries")
        # GeoParquet: no "crs" key means OGC:CRS84 (lon/lat degrees); an explicit null, an unknown CRS.
        crs = column.get("crs", "OGC:CRS84")
        try:
            self.crs = None if crs is None else pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as err:
            raise SatclipError(f"{path}: the CRS in the geo metadata cannot be read: {err}") from None

    def lonlat(self, batch: Any, first_row: int) -> np.ndarray:
        from satclip.points.geo import convert

        column = batch.column(self.name)
        n = len(column)
        index = range(first_row, first_row + n)
        if self.encoding == "wkb":
            values = column.to_numpy(zero_copy_only=False)
            series = self._geopandas.GeoSeries.from_wkb(values, index=index, crs=self.crs)
        else:  # GeoArrow point: a struct of x, y
            x = column.field("x").to_numpy(zero_copy_only=False).astype(np.float64)
            y = column.field("y").to_numpy(zero_copy_only=False).astype(np.float64)
            geoms = self._shapely.points(x, y)
            geoms[np.asarray(column.is_null())] = None
            series = self._geopandas.GeoSeries(geoms, index=index, crs=self.crs)
        try:
            converted = convert(series)
        except SatclipError as err:
            raise shift_row(err, first_row, self.path) from None
        assert converted is not None
        return np.asarray(converted[0], dtype=np.float64)


def _csv_header(source: Source) -> list[str]:
    with source.open() as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ShapeError(f"{source} is empty (no header row)")
    return header


def _locate_bad_cell(source: Source, lon: str, lat: str, err: Exception) -> Exception:
    """The first data row whose lon/lat cell is not a number (a slow scan, only after a failure)."""
    with source.open() as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        index = {name: header.index(name) for name in (lon, lat)}
        for row, cells in enumerate(reader):
            for name, i in index.items():
                cell = cells[i].strip() if i < len(cells) else ""
                if cell in ("", "NA", "NaN", "nan", "null", "NULL", "N/A", "#N/A", "-NaN", "-nan"):
                    continue  # read as missing, reported as NaN when encoded
                try:
                    float(cell)
                except ValueError:
                    return DTypeError(
                        f"{source}: row {row} (0-based, header not counted), column {name!r}: "
                        f"{cell!r} is not a number (degrees)"
                    )
    return DTypeError(f"{source}: the coordinate columns could not be read as numbers: {err}")


_ROW = re.compile(r"^row (\d+)(.*)$", re.S)


def shift_row(err: SatclipError, first_row: int, path: Any) -> SatclipError:
    """A batch's coordinate (or geometry) error with the row counted from the start of the file."""
    match = _ROW.match(str(err))
    if match is None:
        return type(err)(f"{path}: {err}")
    row = int(match[1]) + first_row
    return type(err)(f"{path}: row {row} (0-based, header not counted){match[2]}")


# ----------------------------------------------------------------------------------------
# Writers


def output_metadata(model: str, L: int, embed_dim: int, dtype: str, layout: str) -> dict[bytes, bytes]:
    """Parquet key/value metadata saying how the embeddings were made (``L`` under the key
    ``legendre_polys``, the name the released checkpoints give it)."""
    from satclip import __version__ as satclip_version  # one version source (rust/Cargo.toml, via metadata)

    info = {
        "model": model,
        "legendre_polys": L,
        "embed_dim": embed_dim,
        "dtype": dtype,
        "layout": layout,
        "satclip_version": satclip_version,
    }
    return {b"satclip": json.dumps(info, sort_keys=True).encode()}


#: The embeddings' one column in the "list" layout.
EMBEDDING_COLUMN = "embedding"
#: The prefix of the embeddings' columns in the "wide" layout: ``emb_0 .. emb_{d-1}``.
EMBEDDING_PREFIX = "emb_"


def embedding_column_names(dim: int) -> list[str]:
    """``emb_0 .. emb_{dim-1}``: the names of the embedding's columns wherever satclip gives one
    column per dimension (``satclip encode --layout wide``, ``satclip.dask.encode(layout="wide")``,
    ``satclip.sklearn.SatCLIPEmbedding.get_feature_names_out``)."""
    return [f"{EMBEDDING_PREFIX}{i}" for i in range(dim)]


class ParquetEmbeddingWriter:
    """Appends (kept columns, embeddings) batches to a Parquet file, one row group per batch.

    The input's schema metadata (GeoParquet's ``geo``, pandas') is kept and ``satclip`` added.
    """

    def __init__(self, path: Path, schema: Any, embed_dim: int, dtype: Any, layout: str, metadata: dict[bytes, bytes]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self.layout, self.dim = layout, embed_dim
        self._value_type = pa.from_numpy_dtype(dtype)
        if schema is None:  # .npy input: the points become the lon/lat columns
            schema = pa.schema([("lon", pa.float64()), ("lat", pa.float64())])
        names = [EMBEDDING_COLUMN] if layout == "list" else embedding_column_names(embed_dim)
        clash = sorted(set(names) & set(schema.names))
        if clash:
            raise ShapeError(f"the input already has a column {clash[0]!r}; rename it or use the other --layout")
        if layout == "list":
            fields = [pa.field("embedding", pa.list_(self._value_type, embed_dim))]
        else:
            fields = [pa.field(name, self._value_type) for name in names]
        merged = dict(schema.metadata or {})
        merged.update(metadata)
        self.schema = pa.schema(list(schema) + fields, metadata=merged)
        self._in_names = schema.names
        self._writer = pq.ParquetWriter(path, self.schema)

    def write(self, table: Any, lonlat: np.ndarray, embeddings: np.ndarray) -> None:
        pa = self._pa
        if table is None:
            columns = [pa.array(lonlat[:, 0]), pa.array(lonlat[:, 1])]
        else:
            columns = [table.column(name) for name in self._in_names]
        if self.layout == "list":
            values = pa.array(np.ascontiguousarray(embeddings).reshape(-1), type=self._value_type)
            columns.append(pa.FixedSizeListArray.from_arrays(values, self.dim))
        else:
            columns += [pa.array(embeddings[:, i], type=self._value_type) for i in range(self.dim)]
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        self._writer.close()


class NpyEmbeddingWriter:
    """Writes embeddings into a memory-mapped ``.npy`` of known length."""

    def __init__(self, path: Path, num_rows: int, embed_dim: int, dtype: Any) -> None:
        self._array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(num_rows, embed_dim))
        self._row = 0

    def write(self, table: Any, lonlat: np.ndarray, embeddings: np.ndarray) -> None:
        self._array[self._row : self._row + len(embeddings)] = embeddings
        self._row += len(embeddings)

    def close(self) -> None:
        self._array.flush()
        del self._array


def count_csv_rows(source: Source | Path | str, lon: str) -> int:
    """Data rows of a CSV (a streaming pass reading one column), for outputs that need N first."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    source = source if isinstance(source, Source) else Source.of(source)
    with source.open() as stream:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
            convert_options=pcsv.ConvertOptions(include_columns=[lon], column_types={lon: pa.string()}),
        )
        return sum(batch.num_rows for batch in reader)


# ----------------------------------------------------------------------------------------
# Publishing to an object store


def publish_to_url(url: str, write: Callable[[Path], Any], *, overwrite: bool = False) -> str:
    """The object-store counterpart of :func:`satclip.io.publish.publish`: ``write(tmp)`` fills a
    local temporary file, which is uploaded to ``url`` only once complete (one PUT, or a multipart
    upload that becomes visible when it completes), so the key never holds a partial file.

    Without ``overwrite`` the upload is a conditional create (``mode="create"``: S3's
    ``If-None-Match: *``; other filesystems check just before the upload) and a key that
    appeared meanwhile raises :class:`OutputExistsError`. The temporary file is removed on every
    failure; it needs local disk space for one output file (``$TMPDIR``).
    """
    from satclip.io.publish import raise_if_signalled

    fs, path = url_filesystem(url)
    with tempfile.TemporaryDirectory(prefix="satclip-") as tmpdir:
        tmp = Path(tmpdir) / f"out{Path(path).suffix}"
        write(tmp)
        raise_if_signalled()
        if not overwrite and fs.exists(path):
            raise OutputExistsError(
                f"{url} was created by something else while satclip was writing it; it was not replaced"
            )
        try:
            fs.put_file(os.fspath(tmp), path, mode="overwrite" if overwrite else "create")
        except FileExistsError:
            raise OutputExistsError(
                f"{url} was created by something else while satclip was writing it; it was not replaced"
            ) from None
    return url


__all__ = [
    "DEFAULT_BATCH_ROWS",
    "PART_SUFFIXES",
    "Batch",
    "NpyEmbeddingWriter",
    "ParquetEmbeddingWriter",
    "Part",
    "PointReader",
    "Source",
    "count_csv_rows",
    "find_parts",
    "is_url",
    "output_metadata",
    "publish_to_url",
    "shift_row",
    "url_filesystem",
]
