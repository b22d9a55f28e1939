"""PushEvents: proto events -> checked events -> the group's EventWriter (fetcher.load).

Every event is checked before anything is written: a bad one refuses the whole request
with INVALID_ARGUMENT naming `events[i].<field>`. A store failure is UNAVAILABLE: some
keys may be written, and a retry of the same events converges (each (event_time, id)
counts once). After a write the pushed keys' vectors cached in this process's L1 are
dropped, so the next read here reflects the push.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from fetcher.api._requests import RequestError, entity_values, timestamp_ms
from fetcher.api._snapshot import Snapshot
from fetcher.engine import FetchEngine
from fetcher.load import EventRejected, EventWriter, PushEvent
from fetcher.metrics import Metrics
from fetcher.quoting import quoted
from fetcher.v1 import feature_service_pb2 as pb
from kvstores import StoreError

log = logging.getLogger("fetcher.push")

_LIST_FIELDS = ("double_values", "int64_values", "string_values", "bool_values")
# Writes of a request without a gRPC deadline are bounded by this.
_DEFAULT_WRITE_TIMEOUT_S = 10.0


def _event_value(value: Any, field: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind != "list_value":
        return getattr(value, kind)
    lists = [name for name in _LIST_FIELDS if len(getattr(value.list_value, name))]
    if len(lists) > 1:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}.list_value: items in {' and '.join(lists)}; a list has one item type",
        )
    return list(getattr(value.list_value, lists[0])) if lists else []


class PushHandler:
    """fetcher.v1.FeatureService/PushEvents over the current snapshot's groups."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        engine: FetchEngine,
        metrics: Metrics,
        *,
        max_events: int,
    ) -> None:
        self._snapshot = snapshot
        self._engine = engine
        self._metrics = metrics
        self._max_events = max_events
        # (catalog version, group) -> its writer: built once per snapshot.
        self._writers: dict[tuple[str, str], EventWriter] = {}

    def _writer(self, snap: Snapshot, name: str) -> EventWriter:
        group = snap.catalog.groups.get(name)
        if group is None:
            known = ", ".join(
                sorted(n for n, g in snap.catalog.groups.items() if g.aggregation is not None)
            ) or "none"
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"feature_group: {quoted(name)} is not in config version "
                f"{snap.catalog.version} (aggregation groups: {known})",
            )
        if group.aggregation is None:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"feature_group: {name!r} has no aggregations; its rows are written by "
                "`fetcher load`, not pushed as events",
            )
        writer = self._writers.get((snap.catalog.version, name))
        if writer is None:
            handle = self._engine.store_handle(group.store)
            if handle is None:
                raise RequestError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"feature_group: {name!r}: its store {group.store!r} is not open here",
                )
            if len(self._writers) > 1000:
                self._writers.clear()
            writer = self._writers[(snap.catalog.version, name)] = EventWriter(
                group, handle.store
            )
        return writer

    def _events(self, snap: Snapshot, writer: EventWriter, request: Any) -> list[PushEvent]:
        count = len(request.events)
        if count == 0:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               "events: empty; send at least one event")
        if count > self._max_events:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"events: {count} events is above the limit of {self._max_events} per "
                "request (server.max_batch_entities); split the push",
            )
        plan = snap.plans.groups[writer.group.name]
        now_ms = time.time_ns() // 1_000_000
        out: list[PushEvent] = []
        for index, event in enumerate(request.events):
            where = f"events[{index}]"
            key = plan.joins[0].entity_key(entity_values(plan, event.keys, f"{where}.keys"))
            if not event.HasField("event_time"):
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"{where}.event_time: missing; set when the event happened")
            ts = timestamp_ms(event.event_time, f"{where}.event_time", now_ms)
            values = {
                name: _event_value(value, f"{where}.values[{quoted(name)}]")
                for name, value in event.values.items()
            }
            try:
                out.append(writer.event(key, ts, event.id, values))
            except EventRejected as exc:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"{where}.{exc.field}: {exc.message}"[:500]) from None
        return out

    async def PushEvents(  # gRPC method name
        self, request: pb.PushEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PushEventsResponse:
        """Apply events to their keys' logs; the counts of accepted and late events."""
        started = time.perf_counter()
        group = request.feature_group
        try:
            snap = self._snapshot()
            writer = self._writer(snap, group)
            events = self._events(snap, writer, request)
        except RequestError as exc:
            self._metrics.rpc_latency.labels("PushEvents", exc.code.name).observe(
                time.perf_counter() - started)
            await context.abort(exc.code, exc.message)
            raise  # unreachable: abort raises
        remaining = context.time_remaining()
        timeout = _DEFAULT_WRITE_TIMEOUT_S if remaining is None else max(0.0, remaining)
        try:
            async with asyncio.timeout(timeout):
                result = await writer.push(events)
        except (StoreError, TimeoutError) as exc:
            code = grpc.StatusCode.UNAVAILABLE
            self._metrics.pushed_events.labels(group, "failed").inc(len(events))
            self._metrics.rpc_latency.labels("PushEvents", code.name).observe(
                time.perf_counter() - started)
            self._metrics.log_limited(log, f"push:{group}", "push to group %s failed: %r",
                                      group, exc)
            why = "timeout" if isinstance(exc, TimeoutError) else str(exc)[:200]
            await context.abort(
                code,
                f"store {writer.group.store!r} failed ({why}); some events may be written: "
                "retry the same events (each (event_time, id) counts once)",
            )
            raise
        self._engine.forget([e.key for e in events], snap.plans.groups[group].joins[0].cache_ns)
        self._metrics.pushed_events.labels(group, "accepted").inc(result.accepted)
        if result.late:
            self._metrics.pushed_events.labels(group, "late").inc(result.late)
        self._metrics.rpc_latency.labels("PushEvents", "OK").observe(time.perf_counter() - started)
        return pb.PushEventsResponse(
            accepted=result.accepted, late=result.late, late_events=result.late_indexes
        )
