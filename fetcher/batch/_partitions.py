"""What the Spark executors run: check rows, and write one partition through the store writers.

No pyspark import here: these functions get plain iterators of one partition's rows (Spark
ships them to the executors by reference, so the executors need the package installed).
Checking is fetcher.load's own (RowPreparer, EventPreparer); writing is kvstores'
`multi_put` for stored rows and fetcher.load.EventWriter for aggregation groups (batch part,
batch-end marker, events from the end on): the bytes are those `fetcher load` writes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fetcher.codec import GroupCodec
from fetcher.load import (
    EventPreparer,
    EventRejected,
    EventWriter,
    PushEvent,
    RowPreparer,
    RowRejected,
    event_id,
)
from fetcher.types import FeatureGroup
from kvstores import KVStore, Row, StoreError, open_store

_T = TypeVar("_T")

# Tags of the checked rows (the first item of each tuple the check stage yields).
KEYED = "k"  # (KEYED, key bytes, value): a row (or event) to group by key
REJECTED = "r"  # (REJECTED, where, field, message)
AFTER_END = "a"  # (AFTER_END,): a stored row at or after the end, not written


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything an executor needs: the group, its codec, the store and the write limits."""

    group: FeatureGroup
    codec: GroupCodec | None  # a stored-row group's Avro codec (None: an aggregation group)
    store_url: str
    store_timeout_s: float
    end_ms: int
    text: bool  # the source is CSV: every value is a string cell, as `fetcher load` reads it
    event_time_column: str = "event_time"
    id_column: str = "id"
    ignore_unknown_columns: bool = False
    batch_size: int = 500
    max_in_flight: int = 4
    retries: int = 5
    retry_base_s: float = 0.2


# -- the check stage (before the shuffle) --------------------------------------------------


def check_rows(spec: JobSpec, rows: Iterable[tuple[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """A stored-row group's rows: (KEYED, key, (event ms, Avro bytes)) for rows before the
    end, REJECTED with the field and why, AFTER_END for the rest."""
    if spec.codec is None:
        raise ValueError(f"group {spec.group.name!r} has no codec: an aggregation group")
    preparer = RowPreparer(spec.group, spec.codec, text=spec.text,
                           event_time_column=spec.event_time_column,
                           ignore_unknown_columns=spec.ignore_unknown_columns)
    end = spec.end_ms
    for where, row in rows:
        try:
            if isinstance(row, RowRejected):
                raise row
            key, event_ms, value = preparer.prepare(row)
        except RowRejected as exc:
            yield (REJECTED, where, exc.field, exc.message)
            continue
        if event_ms < end:
            yield (KEYED, key, (event_ms, value))
        else:
            yield (AFTER_END,)


def check_events(spec: JobSpec, rows: Iterable[tuple[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """An aggregation group's events: (KEYED, key, (ts, raw id, checked values)) or
    REJECTED with the field and why."""
    preparer = EventPreparer(spec.group, text=spec.text,
                             event_time_column=spec.event_time_column, id_column=spec.id_column)
    for where, row in rows:
        try:
            if isinstance(row, RowRejected):
                raise row
            event = preparer.prepare(row)
        except (RowRejected, EventRejected) as exc:
            yield (REJECTED, where, exc.field, exc.message)
            continue
        raw_id = event.raw_id
        # The id travels as text (str() is what `fetcher load --events` takes of it too).
        yield (KEYED, event.key, (event.ts_ms, None if raw_id in (None, "") else str(raw_id),
                                  event.values))


def latest(a: tuple[int, bytes], b: tuple[int, bytes]) -> tuple[int, bytes]:
    """The later of two versions (event ms, value); equal times: the larger value, so the
    pick does not depend on the order Spark meets them in."""
    return a if a >= b else b


# -- the write stage (after the shuffle: each key in one place) ----------------------------


async def with_retries(spec: JobSpec, call: Callable[[], Awaitable[_T]]) -> _T:
    """`call()`, retried on StoreError `spec.retries` times with exponential backoff and
    jitter; the last error is raised. Every write here is idempotent, so a retry is safe."""
    attempt = 0
    while True:
        try:
            return await call()
        except StoreError:
            if attempt >= spec.retries:
                raise
            delay = min(spec.retry_base_s * 2**attempt, 10.0)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            attempt += 1


def _reap(done: set[asyncio.Task[None]]) -> None:
    """Raise the first error of finished writes (every one retrieved: none logged later)."""
    errors = [error for error in (task.exception() for task in done) if error is not None]
    if errors:
        raise errors[0]


class _Bounded:
    """At most `limit` writes in flight; the first error stops the partition (the writes
    still in flight are cancelled and awaited before the store closes)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> _Bounded:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def submit(self, write: Coroutine[Any, Any, None]) -> None:
        """Start `write`, first waiting while `limit` are in flight; raises their error."""
        try:
            while len(self._tasks) >= self._limit:
                done, self._tasks = await asyncio.wait(self._tasks,
                                                       return_when=asyncio.FIRST_COMPLETED)
                _reap(done)
        except BaseException:
            write.close()  # never started: no "coroutine was never awaited"
            raise
        self._tasks.add(asyncio.create_task(write))

    async def drain(self) -> None:
        """Wait for every write in flight; raises the first error."""
        while self._tasks:
            done, self._tasks = await asyncio.wait(self._tasks,
                                                   return_when=asyncio.FIRST_EXCEPTION)
            _reap(done)


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    chunk: list[_T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _open(spec: JobSpec) -> KVStore:
    return open_store(spec.store_url, timeout_s=spec.store_timeout_s)


def write_rows(spec: JobSpec, items: Iterable[tuple[bytes, tuple[int, bytes]]]) -> Iterator[int]:
    """Write one partition's latest rows (key, (event ms, value)) with `multi_put`; yields
    the number written."""
    return iter([asyncio.run(_write_rows(spec, items))])


async def _write_rows(spec: JobSpec, items: Iterable[tuple[bytes, tuple[int, bytes]]]) -> int:
    store = await _open(spec)
    dataset, ttl = spec.group.dataset, spec.group.ttl_s
    written = 0
    try:
        async with _Bounded(spec.max_in_flight) as bounded:
            for chunk in _chunks(items, spec.batch_size):
                rows = [Row(dataset, key, value, event_ms, ttl)
                        for key, (event_ms, value) in chunk]

                async def put(rows: list[Row] = rows) -> None:
                    await with_retries(spec, lambda: store.multi_put(rows))

                await bounded.submit(put())
                written += len(rows)
            await bounded.drain()
    finally:
        await store.close()
    return written


async def _push(spec: JobSpec, writer: EventWriter, events: list[PushEvent]) -> None:
    await with_retries(spec, lambda: writer.push(events))


KeyEvents = tuple[bytes, Iterable[tuple[int, str | None, tuple[Any, ...]]]]


def _parts_and_events(spec: JobSpec, writer: EventWriter,
                      chunk: list[KeyEvents]) -> tuple[list[tuple[bytes, bytes]], list[PushEvent]]:
    """The batch parts of a chunk of keys, and their events at or after the end."""
    aggregator, codec, end = writer.aggregator, writer.aggregator.codec, spec.end_ms
    parts: list[tuple[bytes, bytes]] = []
    later: list[PushEvent] = []
    for key, events in chunk:
        # Sorted by (time, encoded values, id): the same part whatever order the shuffle
        # delivered the events in (a rerun writes the same bytes).
        encoded = sorted(((ts, codec.encode(values), raw_id, values)
                          for ts, raw_id, values in events),
                         key=lambda e: (e[0], e[1], e[2] or ""))
        before = [(ts, values) for ts, _, _, values in encoded if ts < end]
        if before:
            parts.append((key, aggregator.batch_part(before, end)))
        later.extend(PushEvent(key, ts, event_id(key, ts, payload, raw_id, spec.id_column),
                               payload)
                     for ts, payload, raw_id, _ in encoded if ts >= end)
    return parts, later


def write_key_events(spec: JobSpec, items: Iterable[KeyEvents]) -> Iterator[tuple[int, int]]:
    """Write one partition's keys of an aggregation group: each key's batch part at the end
    (and its marker), then its events from the end on; yields (parts written, events pushed)."""
    return iter([asyncio.run(_write_key_events(spec, items))])


async def _write_key_events(spec: JobSpec, items: Iterable[KeyEvents]) -> tuple[int, int]:
    store = await _open(spec)
    writer = EventWriter(spec.group, store)
    end = spec.end_ms
    parts_written = pushed = 0
    try:
        async with _Bounded(spec.max_in_flight) as bounded:
            for chunk in _chunks(items, spec.batch_size):
                parts, later = _parts_and_events(spec, writer, chunk)

                async def write(parts: list[tuple[bytes, bytes]] = parts,
                                later: list[PushEvent] = later) -> None:
                    # The keys' batch parts (and markers) first, then their events from the
                    # end on: a read in between sees the new part and fewer events, never
                    # one twice.
                    if parts:
                        await with_retries(spec, lambda: writer.write_batch_parts(parts, end))
                    for events in _chunks(later, spec.batch_size):
                        await _push(spec, writer, events)

                await bounded.submit(write())
                parts_written += len(parts)
                pushed += len(later)
            await bounded.drain()
    finally:
        await store.close()
    return parts_written, pushed
