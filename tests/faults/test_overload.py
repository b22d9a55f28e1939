"""Overload: beyond capacity the server sheds at once (RESOURCE_EXHAUSTED) and recovers;
a slow store holds at most max_in_flight reads and connections, and its breaker probes.

Latency is measured and reported (build/reliability.jsonl), never asserted.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.faults.harness import REDIS_GROUP, Caller, FaultServer, RedisServer, World, fault_server
from tests.faults.report import record
from tests.faults.toxiproxy import Proxy, ToxiproxyApi
from tests.faults.traffic import Outcome, burst, until_redis_served
from tests.faults.truth import ResponseChecker

OK = grpc.StatusCode.OK
SHED = grpc.StatusCode.RESOURCE_EXHAUSTED
MAX_RUNNING = 4
MAX_QUEUED = 8
STORE_SLOTS = 4


@pytest.fixture(scope="module")
def slow_proxy(toxiproxy: ToxiproxyApi, fault_redis: RedisServer) -> Iterator[Proxy]:
    """A proxy of this module's own (127.0.0.1:21001) in front of our Redis."""
    proxy = toxiproxy.proxy("overload_redis", 21001, f"127.0.0.1:{fault_redis.port}")
    yield proxy
    proxy.clear()


@pytest.fixture(scope="module")
def small_server(
    world: World, slow_proxy: Proxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultServer]:
    """A server with a small admission bound and a small per-store in-flight bound."""
    url = f"redis://127.0.0.1:{slow_proxy.listen_port}/0"
    with fault_server(
        "overload", Path(tmp_path_factory.mktemp("overload")), world, url,
        server={"max_inflight_rpcs": MAX_RUNNING, "max_queued_rpcs": MAX_QUEUED},
        redis_store={"max_in_flight": STORE_SLOTS, "breaker_failures": 5,
                     "breaker_cooldown_s": 0.2},
    ) as running:
        yield running


def _numbers(outcome: Outcome) -> dict[str, float]:
    total = max(1, outcome.total)
    return {
        "requests": outcome.total,
        "ok": outcome.codes[OK],
        "shed": outcome.codes[SHED],
        "error_rate": round(1 - outcome.codes[OK] / total, 3),
        "seconds": round(outcome.seconds, 2),
        "ok_per_s": round(outcome.codes[OK] / max(outcome.seconds, 1e-9), 1),
        "p50_ok_ms": round(outcome.percentile(50, OK) * 1000, 1),
        "p99_ok_ms": round(outcome.percentile(99, OK) * 1000, 1),
        "p50_shed_ms": round(outcome.percentile(50, SHED) * 1000, 1),
        "p99_shed_ms": round(outcome.percentile(99, SHED) * 1000, 1),
    }


async def test_burst_beyond_capacity_is_shed_then_recovers(
    small_server: FaultServer, slow_proxy: Proxy, checker: ResponseChecker, world: World,
    rng: random.Random,
) -> None:
    slow_proxy.clear()
    # Every read takes >= 25 ms: capacity is about MAX_RUNNING / 25 ms = 160 requests/s.
    # (A new Redis connection costs three round trips, so a read on one may pass the
    # 100 ms store timeout: the Redis group may be ERROR, never wrong.)
    slow_proxy.add("latency", {"latency": 25, "jitter": 0})
    caller = Caller(small_server.target)
    timeout_s = 2.0
    try:
        before = await burst(caller, checker, rng, requests=40, concurrency=2,
                             at_ms=world.now_ms, timeout_s=timeout_s, batch_share=0.2,
                             may_fail=(REDIS_GROUP,))
        during = await burst(caller, checker, rng, requests=600, concurrency=120,
                             at_ms=world.now_ms, timeout_s=timeout_s, batch_share=0.2,
                             may_fail=(REDIS_GROUP,))
        after = await burst(caller, checker, rng, requests=40, concurrency=2,
                            at_ms=world.now_ms, timeout_s=timeout_s, batch_share=0.2,
                             may_fail=(REDIS_GROUP,))
    finally:
        await caller.close()
        slow_proxy.clear()
    assert before.codes == {OK: 40}, before.details
    assert set(during.codes) <= {OK, SHED}, during.details  # never DEADLINE_EXCEEDED
    assert during.codes[SHED] > 0 and during.codes[OK] > 0
    assert "overloaded" in during.details[SHED] and "max_inflight_rpcs" in during.details[SHED]
    assert after.codes == {OK: 40}, after.details
    shed = small_server.metric("fetcher_rpc_shed_total", reason="queue_full")
    assert shed >= during.codes[SHED]  # every refusal counted by reason
    assert small_server.metric("fetcher_rpc_running") == 0
    for phase, outcome in (("before", before), ("during", during), ("after", after)):
        record(f"overload burst: {phase}", **_numbers(outcome),
               redis_error=outcome.redis_errors, wrong_values=0)


async def test_slow_store_holds_bounded_reads_and_connections(
    small_server: FaultServer, slow_proxy: Proxy, fault_redis: RedisServer,
    checker: ResponseChecker, world: World, rng: random.Random,
) -> None:
    slow_proxy.clear()
    rss_before, fds_before = small_server.rss_kb(), small_server.fds()
    # Idle connections of other servers on this Redis (the session's fault server).
    baseline_clients = fault_redis.clients()
    half_open = small_server.metric("fetcher_store_breaker_transitions_total", store="redis",
                                    state="half_open")
    slow_proxy.add("latency", {"latency": 250, "jitter": 0})  # above the 100 ms timeout
    caller = Caller(small_server.target)
    peak_reads = peak_clients = 0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal peak_reads, peak_clients
        while not stop.is_set():
            reads = await asyncio.to_thread(small_server.metric, "fetcher_store_in_flight",
                                            store="redis")
            clients = await asyncio.to_thread(fault_redis.clients)
            peak_reads, peak_clients = max(peak_reads, int(reads)), max(peak_clients, clients)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        outcome = Outcome()
        for _ in range(6):  # several waves, so the breaker opens, half-opens and reopens
            wave = await burst(caller, checker, rng, requests=60, concurrency=12,
                               at_ms=world.now_ms, timeout_s=2.0, may_fail=(REDIS_GROUP,))
            for code, n in wave.codes.items():
                outcome.codes[code] += n
            await asyncio.sleep(0.25)
        probes = small_server.metric("fetcher_store_breaker_transitions_total", store="redis",
                                     state="half_open") - half_open
        slow_proxy.clear()
        recovered_s = await until_redis_served(caller, checker, rng, world.now_ms)
    finally:
        stop.set()
        await watcher
        await caller.close()
        slow_proxy.clear()
    assert set(outcome.codes) <= {OK, SHED}
    assert 0 < peak_reads <= STORE_SLOTS
    # Beyond what was connected before: the health ping's pooled connection, and at most
    # one per read slot (a timed-out read's connection is closed before its slot is reused).
    assert peak_clients - baseline_clients <= STORE_SLOTS + 2, (baseline_clients, peak_clients)
    assert probes >= 1  # the breaker half-opened to probe while the store stayed slow
    assert small_server.metric("fetcher_store_breaker_state", store="redis") == 0
    record("slow store (250 ms > timeout), 12 clients x 6 waves",
           peak_store_reads=peak_reads, store_slots=STORE_SLOTS,
           peak_redis_clients=peak_clients - baseline_clients,
           breaker_probes=probes, recovered_s=round(recovered_s, 2),
           rss_kb_before=rss_before, rss_kb_after=small_server.rss_kb(),
           fds_before=fds_before, fds_after=small_server.fds(), wrong_values=0)
