"""Circuit breaker states, and the engine's per-store guards (breaker + in-flight bound)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fetcher.engine._breaker import BreakerState, CircuitBreaker, DeadlineTimer, StoreGuard
from fetcher.engine._fetch import StoreHandle
from fetcher.types import Status
from kvstores import StoreError
from tests.unit.fetch_support import FetchHarness, demo_snapshot, now_ms, record


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 1.0, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # a success in between resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_half_open_lets_one_probe_and_closes_on_success() -> None:
    clock = Clock()
    seen: list[BreakerState] = []
    breaker = CircuitBreaker(1, 2.0, clock=clock, on_change=seen.append)
    breaker.failure()
    clock.now += 1.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one probe at a time
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    assert seen == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 1.0, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.allow()


def test_abandoned_probe_frees_the_probe_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 0.0, clock=clock)
    breaker.failure()
    assert breaker.allow()
    breaker.abandon()  # the probe was cancelled: no verdict
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the next read probes instead of waiting forever


def test_zero_threshold_never_opens() -> None:
    breaker = CircuitBreaker(0, 1.0)
    for _ in range(100):
        breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_guard_metrics_follow_state() -> None:
    registry = CollectorRegistry()
    guard = StoreGuard("main", registry, max_in_flight=2, breaker_failures=1,
                       breaker_cooldown_s=60.0)
    guard.breaker.failure()
    assert registry.get_sample_value("fetcher_store_breaker_state", {"store": "main"}) == 2
    assert registry.get_sample_value(
        "fetcher_store_breaker_transitions_total", {"store": "main", "state": "open"}
    ) == 1
    # A second guard on the same registry (another engine) reuses the metric families.
    StoreGuard("other", registry, max_in_flight=0, breaker_failures=0, breaker_cooldown_s=1.0)


def _guarded(harness: FetchHarness, *, max_in_flight: int, failures: int, cooldown_s: float,
             timeout_s: float = 1.0) -> None:
    harness.engine._stores = {
        name: StoreHandle(name, store, timeout_s, max_in_flight=max_in_flight,
                          breaker_failures=failures, breaker_cooldown_s=cooldown_s)
        for name, store in harness.stores.items()
    }


async def test_engine_fails_fast_while_open_then_probes_and_recovers(tmp_path: Path) -> None:
    harness = FetchHarness(tmp_path, demo_snapshot(), negative_ttl_s=0.0)
    _guarded(harness, max_in_flight=4, failures=3, cooldown_s=0.2)
    group = harness.group("merchant_stats")
    await harness.write("merchant_stats", [5], record(group, 5), now_ms() - 1000)
    store = harness.stores["main"]
    store.error = StoreError("down")
    for n in range(3):  # distinct keys: no L1 or single-flight sharing between reads
        (vector,) = await harness.fetch("group", "merchant_stats", [[100 + n]])
        assert set(vector.statuses) == {int(Status.ERROR)}
    assert harness.calls() == 3
    assert harness.engine.guard("main").breaker.state is BreakerState.OPEN
    (vector,) = await harness.fetch("group", "merchant_stats", [[5]])
    assert set(vector.statuses) == {int(Status.ERROR)}
    assert harness.calls() == 3  # failed fast: the store was not called
    store.error = None
    await asyncio.sleep(0.25)
    (vector,) = await harness.fetch("group", "merchant_stats", [[5]])  # the probe
    assert set(vector.statuses) == {int(Status.PRESENT)}
    assert harness.engine.guard("main").breaker.state is BreakerState.CLOSED
    assert harness.metrics.registry.get_sample_value(
        "fetcher_store_breaker_rejected_total", {"store": "main"}
    ) == 1
    await harness.close()


async def test_deadline_cut_timeouts_do_not_open_the_breaker(tmp_path: Path) -> None:
    harness = FetchHarness(tmp_path, demo_snapshot())
    _guarded(harness, max_in_flight=4, failures=1, cooldown_s=60.0)
    harness.stores["main"].delay_s = 0.2
    loop = asyncio.get_running_loop()
    (vector,) = await harness.fetch("group", "merchant_stats", [[7]], deadline=loop.time() + 0.02)
    assert set(vector.statuses) == {int(Status.ERROR)}
    # The client's short deadline cut the read, not the store's timeout: still closed.
    assert harness.engine.guard("main").breaker.state is BreakerState.CLOSED
    await harness.close()


async def test_in_flight_bound_holds_and_slot_wait_spends_the_deadline(tmp_path: Path) -> None:
    harness = FetchHarness(tmp_path, demo_snapshot())
    _guarded(harness, max_in_flight=2, failures=0, cooldown_s=1.0)
    store = harness.stores["main"]
    store.gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks = [
        asyncio.create_task(harness.fetch("group", "merchant_stats", [[n]]))
        for n in range(1, 7)
    ]
    await asyncio.sleep(0.05)
    guard = harness.engine.guard("main")
    assert guard.in_flight == 2 and harness.calls() == 2
    in_flight = {"store": "main"}
    # The gauge reads the guard's count at scrape time.
    assert harness.metrics.registry.get_sample_value("fetcher_store_in_flight", in_flight) == 2
    # A request with a short deadline gives up waiting for a slot within that deadline.
    started = loop.time()
    (late,) = await harness.fetch("group", "merchant_stats", [[99]], deadline=started + 0.05)
    assert set(late.statuses) == {int(Status.ERROR)}
    assert loop.time() - started < 0.5
    assert harness.metrics.registry.get_sample_value(
        "fetcher_store_slot_timeouts_total", {"store": "main"}
    ) == 1
    store.gate.set()
    vectors = await asyncio.gather(*tasks)
    assert all(set(v.statuses) == {int(Status.NOT_FOUND)} for (v,) in vectors)
    assert guard.peak_in_flight == 2 and guard.in_flight == 0
    assert harness.metrics.registry.get_sample_value("fetcher_store_in_flight", in_flight) == 0
    await harness.close()


async def test_cancelled_reads_give_their_slots_back(tmp_path: Path) -> None:
    harness = FetchHarness(tmp_path, demo_snapshot())
    _guarded(harness, max_in_flight=1, failures=1, cooldown_s=60.0)
    store = harness.stores["main"]
    store.gate = asyncio.Event()
    holder = asyncio.create_task(harness.fetch("group", "merchant_stats", [[1]]))
    waiter = asyncio.create_task(harness.fetch("group", "merchant_stats", [[2]]))
    await asyncio.sleep(0.05)
    holder.cancel()
    waiter.cancel()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    store.gate.set()
    guard = harness.engine.guard("main")
    assert guard.in_flight == 0 and guard.breaker.state is BreakerState.CLOSED
    (vector,) = await harness.fetch("group", "merchant_stats", [[3]])
    assert set(vector.statuses) == {int(Status.NOT_FOUND)}
    await harness.close()


async def _read(timer: DeadlineTimer, seconds: float, limit_s: float) -> str:
    """A read under the shared timer, shaped like FetchEngine._read_store."""
    loop = asyncio.get_running_loop()
    expiry = timer.arm(loop, loop.time() + limit_s)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if expiry.close():
            return "timeout"
        raise
    expiry.close()
    return "done"


async def test_deadline_timer_cancels_only_reads_past_their_deadline() -> None:
    timer = DeadlineTimer()
    results = await asyncio.gather(
        _read(timer, 0.01, 0.5), _read(timer, 0.5, 0.05), _read(timer, 0.02, 0.3)
    )
    assert results == ["done", "timeout", "done"]


async def test_deadline_timer_leaves_an_outside_cancel_a_cancel() -> None:
    timer = DeadlineTimer()
    task = asyncio.create_task(_read(timer, 5.0, 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_deadline_timer_closed_reads_never_fire_and_the_heap_is_compacted() -> None:
    timer = DeadlineTimer()
    # Many reads that end long before their (far) deadline, then one that times out.
    for _ in range(5000):
        assert await _read(timer, 0, 60.0) == "done"
    assert len(timer._heap) <= 4096 + 1
    assert await _read(timer, 1.0, 0.02) == "timeout"
    # The closed far-deadline reads are still in the heap; firing them must cancel nothing.
    task = asyncio.create_task(asyncio.sleep(0.05))
    await task
    assert not task.cancelled()
