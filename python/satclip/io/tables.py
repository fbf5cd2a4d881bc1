"""Reading points and writing embeddings in batches, so the CLI's memory is bounded by the batch.

``satclip encode`` used to read the whole table, embed it and build the whole output table: peak
memory grew with N (4.3 GB for 2e6 rows). Here a :class:`PointReader` yields record batches
(pyarrow's streaming CSV and Parquet readers; a memory-mapped ``.npy``) and the writers append
each batch's rows and embeddings as they come, so only one batch is in memory at a time.

Rows in messages are 0-based and count data rows only (the CSV header is not a row), like
``satclip.encode``'s own messages and a pandas index.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satclip.errors import CoordinateError, DTypeError, ShapeError

#: Rows per batch when the user gives no --batch-size: big enough to amortise per-batch costs,
#: small enough that a batch's working set stays small. Measured at L=10 (benches/bench_cli_memory.py):
#: 65536 rows cost ~490 MB above the import baseline, 8192 rows ~140-180 MB.
DEFAULT_BATCH_ROWS = 8192

#: Bytes per block of the streaming CSV reader (also the block pyarrow infers column types from).
_CSV_BLOCK_BYTES = 8 << 20


@dataclass
class Batch:
    """Rows ``first_row ..`` of the input: the columns to keep (None for .npy) and float64 points."""

    first_row: int
    table: Any  # pyarrow.RecordBatch or None
    lonlat: np.ndarray


class PointReader:
    """A CSV, Parquet/GeoParquet or ``.npy`` file read batch by batch (see the module doc)."""

    def __init__(self, path: Path, fmt: str, lon_col: str | None, lat_col: str | None, batch_rows: int) -> None:
        self.path, self.fmt, self.batch_rows = Path(path), fmt, batch_rows
        self.schema: Any = None  # pyarrow schema of the kept columns (None for .npy)
        self.num_rows: int | None = None  # known up front for Parquet and .npy
        if fmt == "npy":
            self._open_npy()
            return
        from satclip.points.columns import find_lonlat_columns

        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                self._parquet = pq.ParquetFile(self.path)
            except Exception as err:  # ArrowInvalid: not Parquet, truncated footer
                raise ShapeError(f"{self.path} is not a readable Parquet file: {err}") from None
            self.schema = self._parquet.schema_arrow
            self.num_rows = self._parquet.metadata.num_rows
            names = self.schema.names
        else:
            names = _csv_header(self.path)
        self.lon, self.lat = find_lonlat_columns(names, lon_col, lat_col)
        if fmt == "parquet":
            for name in (self.lon, self.lat):
                kind = self.schema.field(name).type
                import pyarrow.types as pat

                if not (pat.is_integer(kind) or pat.is_floating(kind) or pat.is_decimal(kind)):
                    raise DTypeError(f"{self.path}: column {name!r} must hold numbers (degrees), got {kind}")

    # -- .npy ------------------------------------------------------------------------------

    def _open_npy(self) -> None:
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
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
        first = 0
        for table, lonlat in self._raw_batches():
            if len(lonlat):
                yield Batch(first, table, lonlat)
            first += len(lonlat)
        if first == 0:
            raise ShapeError(f"{self.path} has no rows (nothing to encode)")

    def _raw_batches(self) -> Iterator[tuple[Any, np.ndarray]]:
        if self.fmt == "npy":
            for start in range(0, self._array.shape[0], self.batch_rows):
                yield None, np.asarray(self._array[start : start + self.batch_rows], dtype=np.float64)
            return
        if self.fmt == "parquet":
            source: Any = self._parquet.iter_batches(batch_size=self.batch_rows)
        else:
            source = self._csv_batches()
        for batch in source:
            yield batch, self._lonlat(batch)

    def _csv_batches(self) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        try:
            # (open_csv already reads and converts the first block.)
            reader = pcsv.open_csv(
                self.path,
                read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                # The coordinates are read as numbers whatever the first block looks like, so a block of
                # integer degrees followed by decimals does not fail; a cell that is no number is an error.
                convert_options=pcsv.ConvertOptions(column_types={self.lon: pa.float64(), self.lat: pa.float64()}),
            )
        except pa.ArrowInvalid as err:
            raise _locate_bad_cell(self.path, self.lon, self.lat, err) from None
        self.schema = reader.schema
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as err:
                raise _locate_bad_cell(self.path, self.lon, self.lat, err) from None
            # Re-chunk the reader's blocks into batches of at most batch_rows.
            for start in range(0, batch.num_rows, self.batch_rows):
                yield batch.slice(start, self.batch_rows)

    def _lonlat(self, batch: Any) -> np.ndarray:
        import pyarrow as pa

        columns = []
        for name in (self.lon, self.lat):
            column = batch.column(name).cast(pa.float64())
            columns.append(column.to_numpy(zero_copy_only=False))  # nulls become NaN
        return np.stack(columns, axis=1)


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ShapeError(f"{path} is empty (no header row)")
    return header


def _locate_bad_cell(path: Path, lon: str, lat: str, err: Exception) -> Exception:
    """The first data row whose lon/lat cell is not a number (a slow scan, only after a failure)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
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
                        f"{path}: row {row} (0-based, header not counted), column {name!r}: "
                        f"{cell!r} is not a number (degrees)"
                    )
    return DTypeError(f"{path}: the coordinate columns could not be read as numbers: {err}")


_ROW = re.compile(r"^row (\d+)(.*)$", re.S)


def shift_row(err: CoordinateError, first_row: int, path: Path) -> CoordinateError:
    """A batch's coordinate error with the row counted from the start of the file."""
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
        names = ["embedding"] if layout == "list" else [f"emb_{i}" for i in range(embed_dim)]
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


def count_csv_rows(path: Path, lon: str) -> int:
    """Data rows of a CSV (a streaming pass reading one column), for outputs that need N first."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
        convert_options=pcsv.ConvertOptions(include_columns=[lon], column_types={lon: pa.string()}),
    )
    return sum(batch.num_rows for batch in reader)
