"""Bounded soak: mixed single and batch traffic for FETCHER_SOAK_SECONDS (60 in `make test`,
600 in `make soak`) while a fault schedule toggles toxics on the Redis proxy.

Every answer is truth-checked (zero wrong values); RSS, open fds and asyncio tasks are
sampled each second and their slopes (least-squares fit after a warm-up third) must stay
near zero. The numbers go to build/reliability.jsonl.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.faults.harness import REDIS_GROUP, Caller, RedisServer, World, fault_server
from tests.faults.report import record
from tests.faults.toxiproxy import Proxy, ToxiproxyApi
from tests.faults.traffic import Outcome, one_request, until_redis_served
from tests.faults.truth import ResponseChecker

SECONDS = float(os.environ.get("FETCHER_SOAK_SECONDS", "60"))
OK, SHED = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED
# (toxic type, attributes, stream), each on for 3 s then off for 3 s, in turn.
SCHEDULE: list[tuple[str, dict[str, Any], str]] = [
    ("latency", {"latency": 250, "jitter": 0}, "downstream"),
    ("reset_peer", {"timeout": 0}, "upstream"),
    ("timeout", {"timeout": 0}, "downstream"),
    ("bandwidth", {"rate": 8}, "downstream"),
    ("limit_data", {"bytes": 4000}, "downstream"),
    ("latency", {"latency": 20, "jitter": 10}, "downstream"),
]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points, per unit of x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


async def _faults(proxy: Proxy, stop: asyncio.Event) -> int:
    toggled = 0
    while not stop.is_set():
        for kind, attributes, stream in SCHEDULE:
            if stop.is_set():
                break
            name = await asyncio.to_thread(proxy.add, kind, attributes, stream=stream)
            toggled += 1
            await asyncio.sleep(3)
            await asyncio.to_thread(proxy.remove, name)
            await asyncio.sleep(3)
    return toggled


@pytest.fixture
def soak_proxy(toxiproxy: ToxiproxyApi, soak_redis: RedisServer) -> Proxy:
    """127.0.0.1:21010 -> the soak's redis-server."""
    return toxiproxy.proxy("soak_redis", 21010, f"127.0.0.1:{soak_redis.port}")


async def test_soak_with_fault_schedule(
    soak_world: World, soak_proxy: Proxy, tmp_path: Path
) -> None:
    checker = ResponseChecker(soak_world.truth)
    url = f"redis://127.0.0.1:{soak_proxy.listen_port}/0"
    with fault_server("soak", tmp_path, soak_world, url,
                      server={"max_inflight_rpcs": 64, "max_queued_rpcs": 64}) as server:
        caller = Caller(server.target)
        outcome = Outcome()
        stop = asyncio.Event()
        samples: list[tuple[float, int, int, float]] = []
        rng = random.Random(7)

        async def client() -> None:
            while not stop.is_set():
                # Half as of the load time, half as of now: both cache-key shapes.
                at = soak_world.now_ms if rng.random() < 0.5 else None
                await one_request(caller, checker, rng, outcome, at_ms=at, timeout_s=1.0,
                                  may_fail=(REDIS_GROUP,), batch_share=0.3)

        async def sample() -> None:
            started = time.monotonic()
            while not stop.is_set():
                tasks = await asyncio.to_thread(server.metric, "fetcher_asyncio_tasks")
                samples.append((time.monotonic() - started, server.rss_kb(), server.fds(),
                                tasks))
                await asyncio.sleep(1.0)

        clients = [asyncio.create_task(client()) for _ in range(8)]
        sampler = asyncio.create_task(sample())
        faults = asyncio.create_task(_faults(soak_proxy, stop))
        await asyncio.sleep(SECONDS)
        stop.set()
        await asyncio.gather(*clients, sampler)
        toggled = await faults
        soak_proxy.clear()
        await until_redis_served(caller, checker, rng, soak_world.now_ms)
        await caller.close()
    assert set(outcome.codes) <= {OK, SHED}, outcome.details
    assert outcome.codes[OK] > 0 and outcome.redis_served > 0 and outcome.redis_errors > 0
    steady = samples[len(samples) // 3:]
    per_min = {
        name: round(60 * slope([(x[0], x[i]) for x in steady]), 2)
        for i, name in ((1, "rss_kb"), (2, "fds"), (3, "tasks"))
    }
    record(f"soak {SECONDS:.0f} s", requests=outcome.total, ok=outcome.codes[OK],
           shed=outcome.codes[SHED], vectors=checker.tally.vectors,
           redis_served=outcome.redis_served, redis_error=outcome.redis_errors,
           toxics_toggled=toggled, p50_ms=round(outcome.percentile(50, OK) * 1000, 1),
           p99_ms=round(outcome.percentile(99, OK) * 1000, 1),
           rss_kb=[samples[0][1], samples[-1][1]], fds=[samples[0][2], samples[-1][2]],
           tasks=[samples[0][3], samples[-1][3]], slope_per_min=per_min, wrong_values=0)
    minutes = SECONDS / 60
    # Flat: over the steady part, growth stays within noise (not a speed assertion).
    assert per_min["rss_kb"] * minutes < 40_000, per_min
    # Redis connections come and go with the faults (up to max_in_flight = 32 of them).
    assert per_min["fds"] * minutes < 40, per_min
    assert per_min["tasks"] * minutes < 50, per_min
