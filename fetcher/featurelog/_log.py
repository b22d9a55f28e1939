"""The feature log: what feature services served, kept off the request path.

The request path calls `FeatureLog.served` once per answered request. For one entity it
decides the sample (one SHA-256, fetcher.featurelog._sampling) and appends what the server
already built (request keys, request-time values, the vector's wire bytes, a clock read and
the request id) to
a bounded in-memory queue; a batch is appended whole and sampled in the writer (hashing
hundreds of keys would cost the request path ~1.5 µs each). When the queue holds
`queue_size` entity vectors, more are dropped and counted, never waited for.

A background task drains the queue every DRAIN_INTERVAL_S (at once when it is half
full) and hands the records to one writer thread, which gathers them into one Arrow
record batch per schema, each vector kept as its wire bytes (fetcher.featurelog._columns
raw_batch: decoding them into a column per feature costs ~5x more and is left to the
reader), and gives them to the sink. The sink is blocking
code, in that thread only, so the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from fetcher.catalog import Catalog
from fetcher.codec import KeyValue
from fetcher.config import FeatureLogSettings
from fetcher.engine import TargetPlan
from fetcher.featurelog._columns import LogColumns, raw_batch
from fetcher.featurelog._sampling import Sampler
from fetcher.featurelog._schema import LogSchema, log_schema, service_descriptor
from fetcher.featurelog._sink import LogBatch, LogSink
from fetcher.featurelog._sinks import open_sink
from fetcher.metrics import Metrics

log = logging.getLogger("fetcher.featurelog")

DRAIN_INTERVAL_S = 0.25
WRITE_CHUNK = 1024
# Plans remembered at most (each holds its snapshot's plan alive): reloads add new ones.
_MAX_TARGETS = 1024


class _Target:
    """What the log needs of one served plan, built on its first request."""

    __slots__ = ("config_version", "dropped", "sampler", "schema", "service")

    def __init__(self, schema: LogSchema, sampler: Sampler, config_version: str,
                 metrics: Metrics) -> None:
        self.schema = schema
        self.service = schema.service
        self.sampler = sampler
        self.config_version = config_version
        self.dropped = metrics.feature_log_dropped.labels(schema.service, "queue_full")


# target, request time ms, request id, entities' key values, ats, vector wires, the
# entities' request-time values (or None), whether every entity of it is kept (sampling
# already decided)
_Item = tuple[_Target, int, str, Sequence[Sequence[KeyValue]], Sequence[int | None],
              Sequence[bytes], Sequence[Sequence[Any]] | None, bool]


class FeatureLog:
    """The served-feature log of one process: sampling, bounded queue, writer thread, sink."""

    def __init__(
        self,
        settings: FeatureLogSettings,
        metrics: Metrics,
        *,
        request_id: Callable[[], str] = lambda: "",
        sink: LogSink | None = None,
        drain_interval_s: float = DRAIN_INTERVAL_S,
        tag: str | None = None,
    ) -> None:
        self._metrics = metrics
        self._request_id = request_id
        self._max = settings.queue_size
        self._wake_at = max(1, settings.queue_size // 2)
        self._interval = drain_interval_s
        self.sink: LogSink = sink if sink is not None else open_sink(settings, metrics, tag)
        self._items: list[_Item] = []
        self.pending = 0
        self._targets: dict[int, tuple[TargetPlan, _Target | None]] = {}
        self._schemas: dict[str, LogSchema] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="feature-log")
        self._closing = False
        self._closed = False
        metrics.feature_log_queue.set_function(lambda: self.pending)

    # The request path ---------------------------------------------------------------

    def served(
        self,
        catalog: Catalog,
        plan: TargetPlan,
        entities: Sequence[Sequence[KeyValue]],
        ats: Sequence[int | None],
        contexts: Sequence[Sequence[Any]] | None,
        wires: Sequence[bytes],
    ) -> None:
        """Queue what one request served (never blocks, never raises): the api's ServedLog."""
        try:
            entry = self._targets.get(id(plan))
            if entry is None or entry[0] is not plan:
                entry = self._register(catalog, plan)
            target = entry[1]
            if target is None or self._closed:
                return
            count = len(wires)
            decided = target.sampler.all
            if count == 1 and not decided:
                if not target.sampler.selected(entities[0]):
                    return
                decided = True
            if self.pending + count > self._max:
                target.dropped.inc(count)
                return
            self._items.append((target, time.time_ns() // 1_000_000, self._request_id(),
                                entities, ats, wires, contexts, decided))
            self.pending += count
            if self.pending >= self._wake_at:
                self._wakeup.set()
        except Exception:  # a bug here must not fail the request it logs
            self._metrics.log_limited(log, "featurelog.served",
                                      "feature log: could not queue a served request",
                                      every_s=10.0)

    def _register(self, catalog: Catalog, plan: TargetPlan) -> tuple[TargetPlan, _Target | None]:
        if len(self._targets) >= _MAX_TARGETS:
            self._targets.clear()
        service = catalog.services.get(plan.name) if plan.kind == "feature_service" else None
        target = None
        if service is not None:
            sampler = Sampler(plan.name, plan.request_keys, service.sample_percent)
            if not sampler.none:
                descriptor = log_schema(service_descriptor(plan))
                schema = self._schemas.setdefault(descriptor.hash, descriptor)
                target = _Target(schema, sampler, catalog.version, self._metrics)
        entry = (plan, target)
        self._targets[id(plan)] = entry
        return entry

    # The background task and the writer thread ------------------------------------------

    async def start(self) -> None:
        """Start draining the queue in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="feature-log")

    async def flush(self) -> None:
        """Write what is queued now and wait until the writer has (benchmarks, tests)."""
        if not self._closed:
            await self._drain_once(asyncio.get_running_loop())

    async def close(self) -> None:
        """Write what is queued, close the sink (its files become visible), stop."""
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        loop = asyncio.get_running_loop()
        try:
            if self._task is not None:
                await self._task
            else:  # never started: write what was queued here
                await self._drain_once(loop)
        finally:
            self._closed = True
            try:
                await loop.run_in_executor(self._executor, self._close_sink)
            finally:
                self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.pending < self._wake_at and not self._closing:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._interval)
            await self._drain_once(loop)
            if self._closing and not self._items:
                return

    async def _drain_once(self, loop: asyncio.AbstractEventLoop) -> None:
        items, self._items = self._items, []
        # In chunks of about WRITE_CHUNK vectors: a small working set for the writer (the
        # request path's data stays in the CPU caches) and the loop runs between chunks.
        # Vectors not yet written still count in `pending`: the queue bound holds.
        start = 0
        while start < len(items):
            chunk: list[_Item] = []
            count = 0
            while start < len(items) and (not chunk or count < WRITE_CHUNK):
                count += len(items[start][5])
                chunk.append(items[start])
                start += 1
            # Shielded: a cancelled drain must not leave a write half done in the thread.
            await asyncio.shield(loop.run_in_executor(self._executor, self._write, chunk))
            self.pending -= count
        if not items:
            await asyncio.shield(loop.run_in_executor(self._executor, self._write, items))

    def _write(self, items: list[_Item]) -> None:
        """In the writer thread: sample batches, gather, write, rotate."""
        groups: dict[str, tuple[LogSchema, LogColumns]] = {}
        for target, now_ms, rid, entities, ats, wires, contexts, decided in items:
            schema = target.schema
            group = groups.get(schema.hash)
            if group is None:
                group = groups[schema.hash] = (schema, LogColumns())
            cols = group[1]
            if decided and len(wires) == 1:  # GetFeatures: most items
                cols.at_ms.append(ats[0])
                cols.keys.append(entities[0])
                cols.wires.append(wires[0])
                cols.entity.append(0)
                cols.request_time_ms.append(now_ms)
                cols.request_id.append(rid)
                cols.config_version.append(target.config_version)
                if schema.context:
                    cols.context.append(contexts[0] if contexts else None)
                continue
            if decided:
                n = len(wires)
                kept: Sequence[int] = range(n)
                cols.at_ms.extend(ats)
                cols.keys.extend(entities)
                cols.wires.extend(wires)
            else:
                selected = target.sampler.selected
                kept = [i for i in range(len(wires)) if selected(entities[i])]
                n = len(kept)
                cols.at_ms.extend([ats[i] for i in kept])
                cols.keys.extend([entities[i] for i in kept])
                cols.wires.extend([wires[i] for i in kept])
            cols.entity.extend(kept)
            cols.request_time_ms.extend([now_ms] * n)
            cols.request_id.extend([rid] * n)
            cols.config_version.extend([target.config_version] * n)
            if schema.context:
                cols.context.extend([contexts[i] if contexts else None for i in kept])
        for schema, cols in groups.values():
            if len(cols):
                self._write_rows(schema, cols)
        try:
            self.sink.tick()
        except Exception as exc:
            self._metrics.log_limited(log, "featurelog.tick", "feature log: %r", exc)

    def _write_rows(self, schema: LogSchema, rows: LogColumns) -> None:
        metrics = self._metrics
        service = schema.service
        try:
            self.sink.write(LogBatch(schema, raw_batch(schema, rows)))
        except Exception as exc:
            metrics.feature_log_dropped.labels(service, "error").inc(len(rows))
            metrics.log_limited(log, f"featurelog.error.{service}",
                                "feature log: records of %s lost: %r", service, exc)
            return
        metrics.feature_log_records.labels(service).inc(len(rows))

    def _close_sink(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:
            log.error("feature log: closing the sink failed: %r", exc)
