"""Admission control: a bounded number of RPCs at work plus a bounded wait queue.

Beyond both bounds a request is refused at once (the service answers RESOURCE_EXHAUSTED)
instead of queueing without end: under overload latency then stays near the time one
queue's worth of work takes, and clients back off or go to another replica. A queued
request waits at most until its deadline. Slots are handed over first in, first out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


class Overloaded(Exception):
    """No slot for this RPC: the queue is full, or the deadline came while queued."""


@dataclass(frozen=True, slots=True)
class _Families:
    running: Gauge
    queued: Gauge
    shed: Counter


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _families(registry: CollectorRegistry) -> _Families:
    found = _FAMILIES.get(registry)
    if found is None:
        tasks = Gauge(
            "fetcher_asyncio_tasks", "asyncio tasks alive in the serving event loop",
            registry=registry,
        )
        loop = _running_loop()
        if loop is not None:
            # Read at scrape time (from the metrics thread): all_tasks copies the task set.
            tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
        found = _FAMILIES[registry] = _Families(
            running=Gauge(
                "fetcher_rpc_running", "Feature RPCs admitted and at work", registry=registry
            ),
            queued=Gauge(
                "fetcher_rpc_queued", "Feature RPCs waiting for an admission slot",
                registry=registry,
            ),
            shed=Counter(
                "fetcher_rpc_shed_total",
                "Feature RPCs refused with RESOURCE_EXHAUSTED, by reason "
                "(queue_full, queue_timeout)", ["reason"], registry=registry,
            ),
        )
    return found


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Admission:
    """At most `max_running` RPCs at work and `max_queued` waiting; 0 running = no limit."""

    def __init__(
        self, max_running: int, max_queued: int, registry: CollectorRegistry | None = None
    ) -> None:
        if max_queued < 0:
            raise ValueError(f"max_queued must be >= 0, got {max_queued}")
        self.max_running = max_running
        self.max_queued = max_queued
        self.running = 0
        self.shed_queue_full = 0
        self.shed_queue_timeout = 0
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()
        families = _families(registry) if registry is not None else None
        if families is not None:
            # Read at scrape time, not set on every enter and leave (two locked gauge
            # writes per RPC each way): the values are the same, the request path is free.
            families.running.set_function(lambda: self.running)
            families.queued.set_function(lambda: len(self._queue))
        self._shed_full = families.shed.labels("queue_full") if families else None
        self._shed_timeout = families.shed.labels("queue_timeout") if families else None

    @property
    def queued(self) -> int:
        """RPCs waiting for a slot right now."""
        return len(self._queue)

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody queues before us (no suspension)."""
        if self.max_running <= 0:
            return True
        if self.running < self.max_running and not self._queue:
            self.running += 1
            return True
        return False

    async def enter(self, deadline: float | None) -> None:
        """Take a slot, queueing until `deadline` (loop time) at most; raises Overloaded."""
        if self.try_enter():
            return
        if len(self._queue) >= self.max_queued:
            self.shed_queue_full += 1
            if self._shed_full is not None:
                self._shed_full.inc()
            raise Overloaded(
                f"server overloaded: {self.running} requests at work and {len(self._queue)} "
                f"queued (server.max_inflight_rpcs={self.max_running}, "
                f"server.max_queued_rpcs={self.max_queued}); retry with backoff or on "
                "another replica"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append(future)
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._forget(future)
            self.shed_queue_timeout += 1
            if self._shed_timeout is not None:
                self._shed_timeout.inc()
            raise Overloaded(
                "server overloaded: no admission slot before the request deadline "
                f"({self.running} at work, {len(self._queue)} queued); retry with backoff"
            ) from None
        except BaseException:
            self._forget(future)
            raise

    def _forget(self, future: asyncio.Future[None]) -> None:
        """A waiter leaves the queue without working: pass on a slot it was handed."""
        if future.done() and not future.cancelled():
            self.leave()  # handed a slot just as it gave up: give it to the next one
        else:
            future.cancel()
            with contextlib.suppress(ValueError):  # already popped by leave()
                self._queue.remove(future)

    def leave(self) -> None:
        """Give the slot back: to the oldest waiter still waiting, else to the pool."""
        if self.max_running <= 0:
            return
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)  # the slot moves over: `running` is unchanged
                return
        self.running -= 1

