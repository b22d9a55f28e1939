"""Writers of aggregation groups: pushed events, and batch parts built from event files.

`EventWriter.push` is the one write path of streams (the PushEvents RPC and any stream
consumer call it): events go to each key's log, idempotent per (time, id), atomic per
key. `load_event_files` is `fetcher load --events`: it reads every event of the files,
writes each key's batch part at the batch end, and pushes the events from the batch end
on. docs/storage-layout.md "the log" has the bytes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fetcher.aggregation import EventValueError
from fetcher.codec import KeyValue, KeyValueError, key_encoder
from fetcher.load._event_checks import (
    MAX_EVENT_MS,
    EventRejected,
    aggregation_of,
    check_event_id,
    check_event_ms,
)
from fetcher.load._event_rows import EventPreparer, content_id, event_id
from fetcher.load._formats import LoadError, open_source
from fetcher.load._values import RowRejected, event_time_ms
from fetcher.types import FeatureGroup
from kvstores import KVStore, LogEntry, Row

__all__ = [
    "BATCH_END_MARKER",
    "MAX_EVENT_MS",
    "EventLoadReport",
    "EventRejected",
    "EventWriter",
    "PushEvent",
    "PushResult",
    "aggregation_of",
    "check_event_id",
    "check_event_ms",
    "content_id",
    "format_event_report",
    "load_event_files",
    "run_load_events",
]

# The value of a batch-end marker version (docs/storage-layout.md "Batch ends").
BATCH_END_MARKER = b"\x01"


@dataclass(frozen=True, slots=True)
class PushEvent:
    """One checked event of a group: its key bytes, time, id and payload."""

    key: bytes
    ts_ms: int
    id: bytes
    payload: bytes


class PushResult(NamedTuple):
    """What a push did: events written, and those older than their key's batch end."""

    accepted: int
    late: int
    # Positions (in the pushed list) of the late events: written to the log (reads before
    # the batch end see them) but ignored by reads after it, which use the batch part.
    late_indexes: tuple[int, ...]


class EventWriter:
    """Writes one aggregation group's events to its store (a stream's write path)."""

    def __init__(self, group: FeatureGroup, store: KVStore) -> None:
        self.group = group
        self.store = store
        self.aggregator = aggregation_of(group)
        self._encode_key = key_encoder(group.keys)

    def key_bytes(self, values: Sequence[KeyValue]) -> bytes:
        """The store key of the group's key values, in key column order."""
        try:
            return self._encode_key(values)
        except KeyValueError as exc:
            raise EventRejected("keys", str(exc)) from None

    def event(
        self, key: bytes, ts_ms: int, event_id: str | bytes, values: Mapping[str, Any]
    ) -> PushEvent:
        """A checked event; EventRejected names the field that does not fit."""
        ts = check_event_ms(ts_ms)
        ident = check_event_id(event_id)
        codec = self.aggregator.codec
        try:
            checked = codec.values(values)
        except EventValueError as exc:
            raise EventRejected(f"values.{exc.field}", exc.message) from None
        return PushEvent(key, ts, ident, codec.encode(checked))

    async def batch_ends(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        """The latest batch end of each key that has one."""
        found = await self.store.multi_get([(self.group.dataset, key, None) for key in keys])
        return {key: hit[1] for key, hit in zip(keys, found, strict=True) if hit is not None}

    async def push(self, events: Sequence[PushEvent]) -> PushResult:
        """Append `events` to their keys' logs; raises StoreError (nothing or some keys
        written: a retry of the same events converges, each (time, id) counts once)."""
        if not events:
            return PushResult(0, 0, ())
        keys = list(dict.fromkeys(e.key for e in events))
        ends = await self.batch_ends(keys)
        late = tuple(i for i, e in enumerate(events) if e.ts_ms < ends.get(e.key, -1))
        dataset, ttl = self.group.dataset, self.group.ttl_s
        await self.store.append_log(
            [LogEntry(dataset, e.key, e.ts_ms, e.id, e.payload, ttl) for e in events]
        )
        return PushResult(len(events) - len(late), len(late), late)

    async def write_batch_parts(
        self, parts: Sequence[tuple[bytes, bytes]], end_ms: int
    ) -> None:
        """Write batch parts (key, part bytes) at `end_ms`, then each key's batch-end marker."""
        dataset, ttl = self.group.dataset, self.group.ttl_s
        await self.store.append_log(
            [LogEntry(dataset, key, end_ms, b"", part, ttl) for key, part in parts]
        )
        await self.store.multi_put(
            [Row(dataset, key, BATCH_END_MARKER, end_ms, ttl) for key, _ in parts]
        )


# -- fetcher load --events -------------------------------------------------------------


@dataclass
class EventLoadReport:
    """What `fetcher load --events` did with its files."""

    files: list[str]
    events: int = 0
    rejected: int = 0
    keys: int = 0
    pushed: int = 0  # events at or after the batch end, written to the logs
    batch_end_ms: int = 0
    seconds: float = 0.0
    rejects: list[tuple[str, int, str]] = field(default_factory=list)  # (file, row, why)

    @property
    def ok(self) -> bool:
        return self.rejected == 0


async def load_event_files(
    group: FeatureGroup,
    store: KVStore,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_end_ms: int,
    event_time_column: str = "event_time",
    id_column: str = "id",
    batch_size: int = 500,
    max_in_flight: int = 4,
    progress: Callable[[str], None] | None = None,
    max_rejects_kept: int = 20,
) -> EventLoadReport:
    """Read raw events, write every key's batch part at `batch_end_ms` and push the events
    from the batch end on. Holds the events in memory, grouped by key (one machine)."""
    started = time.perf_counter()
    writer = EventWriter(group, store)
    check_event_ms(batch_end_ms, "batch end")
    codec = writer.aggregator.codec
    report = EventLoadReport([os.fspath(p) for p in paths], batch_end_ms=batch_end_ms)
    by_key: dict[bytes, list[tuple[int, tuple[Any, ...]]]] = {}
    later: list[PushEvent] = []
    for path in paths:
        source = open_source(path)
        preparer = EventPreparer(group, text=source.format == "csv",
                                 event_time_column=event_time_column, id_column=id_column)
        try:
            for number, row in source.rows():
                report.events += 1
                try:
                    if isinstance(row, RowRejected):
                        raise row
                    key, ts, checked, raw_id = preparer.prepare(row)
                    if ts < batch_end_ms:
                        by_key.setdefault(key, []).append((ts, checked))
                    else:
                        payload = codec.encode(checked)
                        ident = event_id(key, ts, payload, raw_id, id_column)
                        later.append(PushEvent(key, ts, ident, payload))
                except (RowRejected, EventRejected) as exc:
                    report.rejected += 1
                    if len(report.rejects) < max_rejects_kept:
                        report.rejects.append((os.fspath(path), number, str(exc)))
        finally:
            source.close()
    if progress is not None:
        progress(f"{report.events} events read, {len(by_key)} keys before the batch end")
    report.keys = len(by_key)
    # Batch parts first, then events after the end: a read in between sees the new batch
    # part and fewer events, never an event twice.
    items = list(by_key.items())
    slots = asyncio.Semaphore(max_in_flight)
    done = 0

    async def write_parts(chunk: list[tuple[bytes, list[tuple[int, tuple[Any, ...]]]]]) -> None:
        nonlocal done
        async with slots:
            # Built inside the slot: built up front, every chunk's parts would hold the loop
            # while the writes in flight run out their store timeouts.
            parts = [(key, writer.aggregator.batch_part(rows, batch_end_ms))
                     for key, rows in chunk]
            await writer.write_batch_parts(parts, batch_end_ms)
        done += len(chunk)
        if progress is not None:
            progress(f"batch parts: {done}/{len(items)} keys")

    await asyncio.gather(*(write_parts(items[i:i + batch_size])
                           for i in range(0, len(items), batch_size)))

    async def push(chunk: list[PushEvent]) -> None:
        async with slots:
            await writer.push(chunk)

    await asyncio.gather(*(push(later[i:i + batch_size])
                           for i in range(0, len(later), batch_size)))
    report.pushed = len(later)
    report.seconds = time.perf_counter() - started
    return report


def format_event_report(report: EventLoadReport) -> str:
    """The summary `fetcher load --events` prints."""
    lines = [
        f"events read: {report.events}, rejected: {report.rejected}",
        f"batch parts written: {report.keys} keys at batch end {report.batch_end_ms}",
        f"events at or after the batch end pushed to the logs: {report.pushed}",
        f"time: {report.seconds:.1f} s",
    ]
    lines += reject_lines([f"{path}:{number}: {why}" for path, number, why in report.rejects],
                          report.rejected)
    return "\n".join(lines)


def reject_lines(shown: Sequence[str], total: int) -> list[str]:
    """A report's reject lines: one per kept reject (`where: why`), then how many more."""
    lines = [f"  rejected {said}" for said in shown]
    if total > len(shown):
        lines.append(f"  ... and {total - len(shown):,} more")
    return lines


async def run_load_events(settings: Any, args: Any) -> int:
    """`fetcher load --events --group G FILE...`: exit 0 all written, 1 rejects, 2 setup."""
    import sys

    from fetcher.catalog import CatalogError, load_catalog
    from kvstores import StoreError, open_store

    err = sys.stderr
    try:
        catalog = load_catalog(settings.server.config_dir, settings.stores.keys())
    except CatalogError as exc:
        err.write(f"error: {exc}\n")
        return 2
    group = catalog.groups.get(args.group)
    if group is None or group.aggregation is None:
        known = ", ".join(sorted(n for n, g in catalog.groups.items()
                                 if g.aggregation is not None)) or "(none)"
        what = "unknown group" if group is None else "not an aggregation group:"
        err.write(f"error: {what} {args.group!r} (aggregation groups: {known}); "
                  "`fetcher load --events` writes the events of a group with aggregations\n")
        return 2
    try:
        end = (time.time_ns() // 1_000_000 if args.batch_end is None
               else event_time_ms("--batch-end", args.batch_end))
        check_event_ms(end, "--batch-end")
    except (RowRejected, EventRejected) as exc:
        err.write(f"error: {exc}\n")
        return 2
    conf = settings.stores[group.store]
    try:
        store = open_store(conf.url, timeout_s=conf.timeout_ms / 1000)
    except (StoreError, ValueError) as exc:
        err.write(f"error: store {conf.name!r}: {exc}\n")
        return 2
    try:
        await store.create()
        report = await load_event_files(
            group, store, args.files, batch_end_ms=end,
            event_time_column=args.event_time_column, id_column=args.id_column,
            progress=lambda line: print(line, file=err),
        )
    except LoadError as exc:
        err.write(f"error: {exc}\n")
        return 1
    except StoreError as exc:
        err.write(f"error: the store failed, the load stopped (rerun it: batch parts and "
                  f"events are replaced, never counted twice): {exc}\n")
        return 2
    finally:
        await store.close()
    print(format_event_report(report))
    return 0 if report.ok else 1
