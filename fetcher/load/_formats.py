"""File readers for `fetcher load`: CSV, JSON Lines and Parquet, streamed row by row.

Every reader yields `(line, values)` where `line` is where the row is in the file
(CSV: physical line number, header included; JSONL: line number; Parquet: row
index from 0) and `values` a column -> value mapping, or a `RowRejected` when the
row cannot even be parsed. No reader holds more than one batch of the file in memory.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fetcher.load._values import RowRejected

SourceRow = tuple[int, Mapping[str, Any] | RowRejected]

#: File extension -> format name understood by `open_source`.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class LoadError(Exception):
    """The file as a whole cannot be loaded (unknown format, bad header, unreadable)."""


def detect_format(path: str | os.PathLike[str]) -> str:
    """Format name from the file extension; raises LoadError naming the supported ones."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise LoadError(
            f"{os.fspath(path)}: unknown file extension {suffix!r}; use {known}"
        ) from None


class Source:
    """An open input file: its format, its columns when known up front, and its rows."""

    def __init__(self, path: str | os.PathLike[str], fmt: str, batch_rows: int) -> None:
        """Open `path` as `fmt`; the header (CSV) or schema (Parquet) is read now."""
        self.path = os.fspath(path)
        self.format = fmt
        self._batch_rows = batch_rows
        # Column names for CSV and Parquet; None for JSONL, whose rows each carry their own.
        self.columns: tuple[str, ...] | None = None
        self._csv_file: Any = None
        self._parquet: Any = None
        try:
            if fmt == "csv":
                self._open_csv()
            elif fmt == "parquet":
                self._open_parquet()
        except OSError as exc:
            raise LoadError(f"{self.path}: cannot read: {exc}") from exc

    def _open_csv(self) -> None:
        # newline="" lets the csv module see quoted newlines; utf-8-sig drops an Excel BOM.
        self._csv_file = open(self.path, newline="", encoding="utf-8-sig")  # noqa: SIM115
        self._csv_reader = csv.reader(self._csv_file, strict=True)
        try:
            header = next(self._csv_reader)
        except StopIteration:
            raise LoadError(f"{self.path}: empty file, expected a header line") from None
        except csv.Error as exc:
            raise LoadError(f"{self.path}: line 1: bad CSV header: {exc}") from None
        names = tuple(cell.strip() for cell in header)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise LoadError(f"{self.path}: duplicate header column(s) {', '.join(duplicates)}")
        self.columns = names

    def _open_parquet(self) -> None:
        import pyarrow.parquet as pq  # heavy import, only when a Parquet file is loaded

        try:
            self._parquet = pq.ParquetFile(self.path)
        except OSError:
            raise
        except Exception as exc:  # pyarrow raises ArrowInvalid for a non-Parquet file
            raise LoadError(f"{self.path}: not a Parquet file: {exc}") from exc
        self.columns = tuple(self._parquet.schema_arrow.names)

    def rows(self) -> Iterator[SourceRow]:
        """Yield every row of the file, in order."""
        if self.format == "csv":
            return self._csv_rows()
        if self.format == "parquet":
            return self._parquet_rows()
        return self._jsonl_rows()

    def _csv_rows(self) -> Iterator[SourceRow]:
        assert self.columns is not None
        columns = self.columns
        reader = self._csv_reader
        width = len(columns)
        while True:
            # A quoted cell may span lines: the row starts on the line after the last one read.
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, RowRejected("", f"bad CSV: {exc}")
                continue
            if not cells:
                continue  # blank line
            if len(cells) != width:
                yield line, RowRejected("", f"has {len(cells)} cells, the header has {width}")
                continue
            yield line, dict(zip(columns, cells, strict=True))

    def _jsonl_rows(self) -> Iterator[SourceRow]:
        try:
            handle = open(self.path, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise LoadError(f"{self.path}: cannot read: {exc}") from exc
        with handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    yield line, RowRejected("", f"not valid JSON: {exc}")
                    continue
                if not isinstance(value, dict):
                    kind = type(value).__name__
                    yield line, RowRejected("", f"expects a JSON object, got {kind}")
                    continue
                yield line, value

    def _parquet_rows(self) -> Iterator[SourceRow]:
        index = 0
        # iter_batches decodes one record batch at a time: memory stays bounded by the batch.
        for batch in self._parquet.iter_batches(batch_size=self._batch_rows):
            for values in batch.to_pylist():
                yield index, values
                index += 1

    def close(self) -> None:
        """Release the file handle."""
        if self._csv_file is not None:
            self._csv_file.close()
        if self._parquet is not None:
            self._parquet.close()


def open_source(path: str | os.PathLike[str], *, batch_rows: int = 1000) -> Source:
    """Open `path` for reading in the format its extension names; raises LoadError."""
    if not os.path.isfile(path):
        raise LoadError(f"{os.fspath(path)}: no such file")
    return Source(path, detect_format(path), batch_rows)
