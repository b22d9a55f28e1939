"""Per-store protection: a circuit breaker and a bound on concurrent reads.

A store that keeps failing (errors or timeouts) trips its breaker after N consecutive
failures: reads then fail fast (ERROR for its groups, no socket touched) until a cooldown
has passed; one probe read is then let through (half-open), and its outcome closes the
breaker or opens it for another cooldown. `StoreGuard` adds the in-flight bound: a
semaphore per store, so a slow store holds at most `max_in_flight` reads (and their
connections and buffers) however many requests arrive. `DeadlineTimer` bounds each read
in time with one event-loop timer shared by all reads.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge


class BreakerState(enum.IntEnum):
    """Breaker states; the value is what the fetcher_store_breaker_state gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after `failures` consecutive failures; one probe after `cooldown_s` decides.

    `failures` <= 0 disables it (always closed). Not thread-safe: one event loop.
    """

    __slots__ = (
        "_clock", "_failures", "_on_change", "_opened_at", "_probing", "cooldown_s",
        "state", "threshold",
    )

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if cooldown_s < 0:
            raise ValueError(f"breaker cooldown must be >= 0 s, got {cooldown_s}")
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.state = BreakerState.CLOSED
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def _move(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """True when a read may go to the store now (closed, or this read is the probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.cooldown_s:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self._probing:
            return False  # half-open lets exactly one read through at a time
        self._probing = True
        return True

    def success(self) -> None:
        """The read answered: closes a half-open breaker, resets the failure count."""
        self._failures = 0
        self._probing = False
        self._move(BreakerState.CLOSED)

    def failure(self) -> None:
        """The read failed or timed out: counts towards opening; a failed probe reopens."""
        self._probing = False
        if self.threshold <= 0:
            return
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def abandon(self) -> None:
        """The read ended without a verdict (cancelled, or cut by the client's deadline).

        Neither a success nor a failure: a probe slot is freed so the next read probes.
        """
        self._probing = False


@dataclass(frozen=True, slots=True)
class _Families:
    state: Gauge
    transitions: Counter
    rejected: Counter
    in_flight: Gauge
    slot_timeouts: Counter


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _families(registry: CollectorRegistry) -> _Families:
    # One set of families per registry, however many engines share it (tests build several).
    found = _FAMILIES.get(registry)
    if found is None:
        found = _FAMILIES[registry] = _Families(
            state=Gauge(
                "fetcher_store_breaker_state",
                "Circuit breaker per store: 0 closed, 1 half-open (probing), 2 open",
                ["store"], registry=registry,
            ),
            transitions=Counter(
                "fetcher_store_breaker_transitions_total",
                "Breaker state changes per store, by the state entered", ["store", "state"],
                registry=registry,
            ),
            rejected=Counter(
                "fetcher_store_breaker_rejected_total",
                "Store reads failed fast (ERROR) because the breaker was open", ["store"],
                registry=registry,
            ),
            in_flight=Gauge(
                "fetcher_store_in_flight", "multi_get calls running per store", ["store"],
                registry=registry,
            ),
            slot_timeouts=Counter(
                "fetcher_store_slot_timeouts_total",
                "Reads that ran out of deadline waiting for a free in-flight slot",
                ["store"], registry=registry,
            ),
        )
    return found


class StoreGuard:
    """The breaker and the in-flight bound of one store, with their metrics."""

    def __init__(
        self,
        name: str,
        registry: CollectorRegistry,
        *,
        max_in_flight: int,
        breaker_failures: int,
        breaker_cooldown_s: float,
    ) -> None:
        families = _families(registry)
        self.name = name
        state_gauge = families.state.labels(name)
        transitions: dict[BreakerState, Any] = {
            s: families.transitions.labels(name, s.name.lower()) for s in BreakerState
        }

        def changed(state: BreakerState) -> None:
            state_gauge.set(int(state))
            transitions[state].inc()

        state_gauge.set(0)
        self.breaker = CircuitBreaker(breaker_failures, breaker_cooldown_s, on_change=changed)
        # 0 = unbounded: no semaphore at all (the store's own pool is then the only bound).
        self.slots = asyncio.Semaphore(max_in_flight) if max_in_flight > 0 else None
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0
        # Read at scrape time rather than set on every read's start and end.
        families.in_flight.labels(name).set_function(lambda: self.in_flight)
        self.rejected = families.rejected.labels(name)
        self.slot_timeouts = families.slot_timeouts.labels(name)
        # (requests counter, latency histogram) children of the store's own metrics,
        # set by the engine that owns the Metrics; empty until then.
        self.store_metrics: tuple[Any, ...] = ()

    def entered(self) -> None:
        """A read started (holding a slot when bounded)."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def left(self) -> None:
        """A read ended, whatever its outcome."""
        self.in_flight -= 1


# uvloop's clock and timers have 1 ms resolution: a deadline within it counts as passed
# (asyncio.timeout on uvloop fires up to as early).
_CLOCK_SLACK_S = 0.001


class Expiry:
    """One read's deadline, armed by DeadlineTimer.arm; close() it when the read ends."""

    __slots__ = ("cancelling", "done", "expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.done = False
        self.expired = False

    def close(self) -> bool:
        """Disarm; True when the deadline cancelled the task and that cancellation is ours.

        As asyncio.timeout does: our cancel request is withdrawn (uncancel), and a
        CancelledError the caller sees then means TimeoutError, unless someone else
        cancelled the task too.
        """
        self.done = True
        if not self.expired:
            return False
        return self.task.uncancel() <= self.cancelling


class DeadlineTimer:
    """Cancels tasks past their deadline with one event-loop timer for all of them.

    What asyncio.timeout does per read, for less: on uvloop an asyncio.timeout costs
    ~9 µs and a bare call_at + cancel ~5 µs (a libuv timer each), where arming here is
    one heap push. The loop timer is re-armed only when the earliest live deadline
    changes; reads that ended are dropped lazily when they reach the top of the heap.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Expiry]] = []
        self._seq = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf
        # Heap size that triggers dropping ended reads early (amortised O(1) per arm).
        self._compact_at = 4096

    def arm(self, loop: asyncio.AbstractEventLoop, when: float) -> Expiry:
        """Cancel the current task at loop time `when` unless the Expiry is closed first."""
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("DeadlineTimer.arm must be called from a task")
        if loop is not self._loop:
            self._reset(loop)  # a new event loop (tests): the old one's reads are gone
        expiry = Expiry(task)
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), expiry))
        if len(heap) > self._compact_at:
            self._compact()
        if when < self._at:
            self._schedule(loop, when)
        return expiry

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self._heap = []
        self._loop = loop
        self._handle = None
        self._at = math.inf

    def _compact(self) -> None:
        # Many ended reads with far deadlines (long timeouts): drop them now, not at expiry.
        self._heap = [entry for entry in self._heap if not entry[2].done]
        heapq.heapify(self._heap)
        self._compact_at = max(4096, 4 * len(self._heap))

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        self._handle = loop.call_at(when, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        self._at = math.inf
        heap = self._heap
        now = loop.time() + _CLOCK_SLACK_S
        while heap:
            when, _, expiry = heap[0]
            if expiry.done:
                heapq.heappop(heap)
            elif when <= now:
                heapq.heappop(heap)
                expiry.expired = True
                expiry.task.cancel()
            else:
                self._schedule(loop, when)
                return
