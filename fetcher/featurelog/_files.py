"""The file sink: rotating Parquet files, never visible before they are whole.

Records are written in the vector layout (`LogSchema.raw_arrow`, marked in the file's
metadata): request fields, keys and context as columns, each served vector as its wire
bytes; `fetcher logs read` (fetcher.featurelog._read) decodes them to a column per feature.

Layout under the log directory (docs/operations.md, "Feature log"):

    schemas/<hash>.json                               each logged schema, written once
    service=<name>/.<writer>-<seq>.parquet.tmp        the file being written (hidden)
    service=<name>/date=<YYYY-MM-DD>/<first>-<last>-<hash>-<writer>-<seq>.parquet

A file is written under its hidden temporary name and renamed when it is closed: by size
(`max_file_bytes`), by age (`max_file_seconds`) or at shutdown, after its footer is written
and fsynced. A reader lists only closed files, so a crash or SIGKILL loses the file in
progress and never shows a torn one. <first> and <last> are the epoch ms of its first and
last record, `date=` the UTC date of the last (so a file is never in a date before one of
its records), <writer> names the process (host, pid and a random tag: every worker of
`fetcher serve --workers N` writes its own files, no lock is shared).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fetcher.featurelog._schema import LogSchema
from fetcher.featurelog._sink import LogBatch

SCHEMAS_DIR = "schemas"
SUFFIX = ".parquet"
TEMP_SUFFIX = ".parquet.tmp"
# Records buffered before they are written as one row group (or when the file closes).
ROW_GROUP_RECORDS = 20_000
ROW_GROUP_BYTES = 16 * 1024 * 1024
COMPRESSION: Literal["zstd"] = "zstd"
_NAME = re.compile(r"^(\d+)-(\d+)-([0-9a-f]{16})-(.+)\.parquet$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.]+")


def service_dir(root: Path, service: str) -> Path:
    """The directory of one service's files (Hive-style: `service=<name>`)."""
    return root / f"service={service}"


def writer_tag() -> str:
    """This process's part of its file names: host, pid and a random tag."""
    host = _UNSAFE.sub("_", socket.gethostname()) or "host"
    return f"{host[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class ClosedFile:
    """A closed log file, with what its name says."""

    path: Path
    first_ms: int
    last_ms: int
    schema_hash: str


def closed_files(root: Path, service: str, since_ms: int | None = None,
                 until_ms: int | None = None) -> list[ClosedFile]:
    """The closed files of `service` that may hold records in [since_ms, until_ms)."""
    base = service_dir(root, service)
    if not base.is_dir():
        return []
    first_day = None
    if since_ms is not None:
        first_day = _day(since_ms)
    out: list[ClosedFile] = []
    for day in sorted(base.iterdir()):
        if not day.name.startswith("date=") or not day.is_dir():
            continue
        if first_day is not None and day.name[5:] < first_day:
            continue
        for path in day.iterdir():
            found = _NAME.match(path.name)
            if found is None:
                continue
            first, last = int(found[1]), int(found[2])
            if since_ms is not None and last < since_ms:
                continue
            if until_ms is not None and first >= until_ms:
                continue
            out.append(ClosedFile(path, first, last, found[3]))
    return sorted(out, key=lambda f: (f.first_ms, f.path.name))


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_schema(root: Path, schema: LogSchema) -> None:
    """schemas/<hash>.json, unless it exists: written to a temporary name, then renamed."""
    target = root / SCHEMAS_DIR / f"{schema.hash}.json"
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    temp.write_text(schema.descriptor, encoding="ascii")
    _fsync(temp)
    # Another process may have written the same bytes meanwhile: replacing is harmless.
    os.replace(temp, target)


class _OpenFile:
    """One file being written: its Parquet writer, buffered records and bounds."""

    def __init__(self, schema: LogSchema, temp: Path, seq: int, opened: float) -> None:
        self.schema = schema
        self.temp = temp
        self.seq = seq
        self.opened = opened
        # Statistics of request_time only: readers prune row groups by time; those of
        # every feature column cost a third of the writer's time and serve no filter.
        self.writer = pq.ParquetWriter(str(temp), schema.raw_arrow, compression=COMPRESSION,
                                       write_statistics=["request_time"])
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.records = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def add(self, records: pa.RecordBatch) -> None:
        times = pc.min_max(records.column("request_time").cast(pa.int64()))
        low, high = times["min"].as_py(), times["max"].as_py()
        self.first_ms = low if self.first_ms is None else min(self.first_ms, low)
        self.last_ms = high if self.last_ms is None else max(self.last_ms, high)
        self.pending.append(records)
        self.pending_rows += records.num_rows
        self.pending_bytes += records.nbytes
        if self.pending_rows >= ROW_GROUP_RECORDS or self.pending_bytes >= ROW_GROUP_BYTES:
            self.flush()
        # Counted once kept: a failed write is the caller's loss, earlier records the file's.
        self.records += records.num_rows

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending),
                                    row_group_size=max(self.pending_rows, 1))
            self.pending, self.pending_rows, self.pending_bytes = [], 0, 0

    def size(self) -> int:
        """Bytes on disk plus the records still buffered (uncompressed: an upper bound)."""
        return self.temp.stat().st_size + self.pending_bytes


class FileSink:
    """Rotating Parquet files per service and schema under one directory (a LogSink)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_file_bytes: int,
        max_file_seconds: float,
        tag: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        closed: Callable[[Path, int], None] | None = None,
        lost: Callable[[str, int], None] | None = None,
    ) -> None:
        """`closed(path, records)` is called for each file made visible, `lost(service,
        records)` for the records of a file given up after a write error."""
        self.root = Path(directory)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tag = tag or writer_tag()
        # Fail at start, not at the first record: a read-only or full file system.
        probe = self.root / f".probe-{self._tag}"
        probe.write_bytes(b"")
        probe.unlink()
        self._max_bytes = max_file_bytes
        self._max_seconds = max_file_seconds
        self._monotonic = monotonic
        self._closed_cb = closed
        self._lost_cb = lost
        self._open: dict[tuple[str, str], _OpenFile] = {}
        self._schemas: set[str] = set()
        self._seq = 0

    def write(self, batch: LogBatch) -> None:
        """Append the records to their service and schema's file; rotate it when full."""
        if batch.records.num_rows == 0:
            return
        schema = batch.schema
        key = (schema.service, schema.hash)
        current = self._open.get(key)
        if current is None:
            current = self._open[key] = self._new_file(schema)
        try:
            current.add(batch.records)
            if current.size() >= self._max_bytes:
                self._close(key)
        except BaseException:
            self._abandon(key)
            raise

    def tick(self) -> None:
        """Close every file older than max_file_seconds."""
        now = self._monotonic()
        for key, current in list(self._open.items()):
            if now - current.opened >= self._max_seconds:
                try:
                    self._close(key)
                except OSError:
                    self._abandon(key)
                    raise

    def close(self) -> None:
        """Close every open file (each becomes visible under its final name)."""
        failed: OSError | None = None
        for key in list(self._open):
            try:
                self._close(key)
            except OSError as exc:
                self._abandon(key)
                failed = exc
        if failed is not None:
            raise failed

    def open_files(self) -> Iterator[Path]:
        """The temporary paths of the files being written (for tests and tools)."""
        return iter([f.temp for f in self._open.values()])

    def _new_file(self, schema: LogSchema) -> _OpenFile:
        if schema.hash not in self._schemas:
            write_schema(self.root, schema)
            self._schemas.add(schema.hash)
        self._seq += 1
        folder = service_dir(self.root, schema.service)
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{self._tag}-{self._seq:06d}{TEMP_SUFFIX}"
        return _OpenFile(schema, temp, self._seq, self._monotonic())

    def _close(self, key: tuple[str, str]) -> None:
        # Stays in _open until renamed: a failure on the way abandons it (_abandon).
        current = self._open[key]
        current.flush()
        current.writer.close()
        _fsync(current.temp)
        assert current.first_ms is not None and current.last_ms is not None
        folder = current.temp.parent / f"date={_day(current.last_ms)}"
        folder.mkdir(exist_ok=True)
        final = folder / (f"{current.first_ms}-{current.last_ms}-{current.schema.hash}-"
                          f"{self._tag}-{current.seq:06d}{SUFFIX}")
        os.replace(current.temp, final)
        _fsync(folder)
        del self._open[key]
        if self._closed_cb is not None:
            self._closed_cb(final, current.records)

    def _abandon(self, key: tuple[str, str]) -> None:
        """Drop a file that failed: its records are lost, the temporary file removed."""
        current = self._open.pop(key, None)
        if current is None:
            return
        # The writer may be broken already; the file goes anyway.
        with contextlib.suppress(Exception):
            current.writer.close()
        with contextlib.suppress(OSError):
            current.temp.unlink(missing_ok=True)
        if self._lost_cb is not None and current.records:
            self._lost_cb(current.schema.service, current.records)
