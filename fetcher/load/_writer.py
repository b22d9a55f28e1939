"""`fetcher load`: bulk-load CSV, JSON Lines and Parquet files into a group's store.

Each row is checked against the group (keys, event time, features), Avro-encoded
with the group's codec and written with `multi_put` in batches, a few batches in
flight at once. A row that does not fit is rejected and reported with its line
and field; it never stops the load (unless `max_rejects` is exceeded).
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from fetcher.codec import GroupCodec
from fetcher.load._formats import FORMATS, LoadError, detect_format, open_source
from fetcher.load._rows import RowPreparer
from fetcher.load._values import RowRejected
from fetcher.types import FeatureGroup
from kvstores.base import KVStore, Row

__all__ = [
    "FORMATS",
    "GROUP_TTL",
    "BatchWriter",
    "LoadError",
    "LoadProgress",
    "LoadReport",
    "Reject",
    "detect_format",
    "format_progress",
    "format_report",
    "load_file",
]


class _GroupTTL(enum.Enum):
    GROUP_TTL = "group"


#: Default of `load_file(ttl_s=...)`: use the group's `ttl_s`.
GROUP_TTL: Literal[_GroupTTL.GROUP_TTL] = _GroupTTL.GROUP_TTL


class Reject(NamedTuple):
    """One rejected row: where it is (line, or row index for Parquet), which field, why."""

    line: int
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """Counters of a load in progress, passed to the `progress` callback."""

    path: str
    rows_read: int
    rows_written: int
    rows_rejected: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class LoadReport:
    """Outcome of loading one file; `rejects` holds the first `max_reported_rejects`."""

    path: str
    group: str
    format: str
    rows_read: int
    rows_written: int
    rows_rejected: int
    rejects: tuple[Reject, ...]
    elapsed_s: float
    # True when the load stopped early because rows_rejected exceeded max_rejects.
    stopped_early: bool = False

    @property
    def ok(self) -> bool:
        """Every row was written."""
        return self.rows_rejected == 0 and not self.stopped_early

    @property
    def rows_per_s(self) -> float:
        """Rows read per second of wall time."""
        return self.rows_read / self.elapsed_s if self.elapsed_s > 0 else 0.0


class BatchWriter:
    """Groups rows into `multi_put` calls of `batch_size`, at most `max_in_flight` at once.

    Bounded concurrency keeps a network store busy while the next batch is being
    encoded, without letting memory grow with the file.
    """

    def __init__(self, store: KVStore, *, batch_size: int = 1000, max_in_flight: int = 4) -> None:
        """Write to `store`; batch_size and max_in_flight must be >= 1."""
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError("batch_size and max_in_flight must be >= 1")
        self._store = store
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._batch: list[Row] = []
        self._in_flight: deque[tuple[asyncio.Task[None], int]] = deque()
        self.rows_written = 0

    async def add(self, row: Row) -> None:
        """Queue one row; sends a batch when full, waiting when too many are in flight."""
        self._batch.append(row)
        if len(self._batch) >= self._batch_size:
            await self._send()

    async def _send(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.create_task(self._store.multi_put(batch))
        self._in_flight.append((task, len(batch)))
        # Let the task start (hand its batch to the thread or socket) before encoding more.
        await asyncio.sleep(0)
        while self._in_flight and (
            self._in_flight[0][0].done() or len(self._in_flight) >= self._max_in_flight
        ):
            await self._reap_oldest()

    async def _reap_oldest(self) -> None:
        task, count = self._in_flight.popleft()
        await task  # re-raises the store's error
        self.rows_written += count

    async def flush(self) -> None:
        """Send the partial batch and wait for every batch in flight."""
        if self._batch:
            await self._send()
        while self._in_flight:
            await self._reap_oldest()

    async def abort(self) -> None:
        """Cancel the batches in flight (after an error); rows not yet sent are dropped."""
        self._batch = []
        tasks = [task for task, _ in self._in_flight]
        self._in_flight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def load_file(
    path: str | os.PathLike[str],
    group: FeatureGroup,
    codec: GroupCodec,
    store: KVStore,
    *,
    batch_size: int = 1000,
    max_in_flight: int = 4,
    event_time_column: str = "event_time",
    default_event_ms: int | None = None,
    ttl_s: int | Literal[_GroupTTL.GROUP_TTL] | None = GROUP_TTL,
    ignore_unknown_columns: bool = False,
    max_rejects: int | None = None,
    max_reported_rejects: int = 100,
    progress: Callable[[LoadProgress], None] | None = None,
    progress_interval_s: float = 0.5,
) -> LoadReport:
    """Load one file into `group`'s dataset in `store`; returns what was written and rejected.

    Raises LoadError when the file as a whole does not fit (extension, header,
    columns) and StoreError when the store fails; rows already sent stay written.
    """
    started = time.monotonic()
    fspath = os.fspath(path)
    writer = BatchWriter(store, batch_size=batch_size, max_in_flight=max_in_flight)
    ttl = group.ttl_s if ttl_s is GROUP_TTL else ttl_s
    read = rejected = 0
    rejects: list[Reject] = []
    stopped_early = False
    last_report = started
    source = open_source(path, batch_rows=batch_size)

    def report_progress() -> None:
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(LoadProgress(fspath, read, writer.rows_written, rejected, elapsed))

    try:
        preparer = RowPreparer(
            group,
            codec,
            text=source.format == "csv",
            event_time_column=event_time_column,
            default_event_ms=default_event_ms,
            ignore_unknown_columns=ignore_unknown_columns,
        )
        if source.columns is not None:
            preparer.check_columns(source.columns, fspath)
        prepare = preparer.prepare
        dataset = group.dataset
        try:
            for line, values in source.rows():
                read += 1
                try:
                    if isinstance(values, RowRejected):
                        raise values
                    key, event_ms, value = prepare(values)
                except RowRejected as exc:
                    rejected += 1
                    if len(rejects) < max_reported_rejects:
                        rejects.append(Reject(line, exc.field, exc.message))
                    if max_rejects is not None and rejected > max_rejects:
                        stopped_early = True
                        break
                else:
                    await writer.add(Row(dataset, key, value, event_ms, ttl))
                # Checking the clock every 256 rows keeps its cost off the per-row path.
                if progress is not None and read & 255 == 0:
                    now = time.monotonic()
                    if now - last_report >= progress_interval_s:
                        last_report = now
                        report_progress()
            await writer.flush()
        except BaseException:
            await writer.abort()
            raise
    finally:
        source.close()
    report_progress()
    return LoadReport(
        path=fspath,
        group=group.name,
        format=source.format,
        rows_read=read,
        rows_written=writer.rows_written,
        rows_rejected=rejected,
        rejects=tuple(rejects),
        elapsed_s=time.monotonic() - started,
        stopped_early=stopped_early,
    )


def format_progress(progress: LoadProgress) -> str:
    """One status line for stderr: `data.csv: 120,000 read, 119,998 written, 2 rejected`."""
    rate = progress.rows_read / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
    return (
        f"{progress.path}: {progress.rows_read:,} read, {progress.rows_written:,} written, "
        f"{progress.rows_rejected:,} rejected ({rate:,.0f} rows/s)"
    )


def _location(report: LoadReport) -> str:
    return "row" if report.format == "parquet" else "line"


def format_report(reports: LoadReport | Sequence[LoadReport], *, max_shown: int = 10) -> str:
    """A summary table of one or more loads, then the first `max_shown` rejects of each file."""
    if isinstance(reports, LoadReport):
        reports = [reports]
    header = ("file", "group", "format", "read", "written", "rejected", "seconds", "rows/s")
    table = [header] + [
        (
            r.path,
            r.group,
            r.format,
            f"{r.rows_read:,}",
            f"{r.rows_written:,}",
            f"{r.rows_rejected:,}",
            f"{r.elapsed_s:.2f}",
            f"{r.rows_per_s:,.0f}",
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]
    for r in reports:
        if r.stopped_early:
            lines.append(f"{r.path}: stopped after {r.rows_rejected:,} rejected rows (max_rejects)")
        if not r.rejects:
            continue
        shown = r.rejects[:max_shown]
        lines.append(f"{r.path}: rejected rows (first {len(shown):,} of {r.rows_rejected:,}):")
        where = _location(r)
        for reject in shown:
            field = reject.field or "-"
            lines.append(f"  {where} {reject.line}: {field}: {reject.message}")
    return "\n".join(lines)
