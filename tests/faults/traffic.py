"""Client traffic for the fault, overload and soak tests: every OK answer is truth-checked."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import grpc

from fetcher.client import KeyInput
from tests.faults.harness import REDIS_GROUP, SERVICE, Answer, Caller
from tests.faults.truth import ERROR_OUTCOME, ResponseChecker

USERS = 10_001  # 1..10000 exist, 10001 does not
MERCHANTS = 1_001


def random_keys(rng: random.Random) -> dict[str, KeyInput]:
    """A user_merchant entity, existing or not."""
    return {"user_id": rng.randint(1, USERS), "merchant_id": rng.randint(1, MERCHANTS)}


@dataclass
class Outcome:
    """What a burst of traffic got: status codes, client latencies, per-group results."""

    codes: collections.Counter[grpc.StatusCode] = field(default_factory=collections.Counter)
    latencies: dict[grpc.StatusCode, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list))
    details: dict[grpc.StatusCode, str] = field(default_factory=dict)
    redis_errors: int = 0
    redis_served: int = 0
    seconds: float = 0.0  # wall time of the burst

    def add(self, answer: Answer) -> None:
        """Count one answer."""
        self.codes[answer.code] += 1
        self.latencies[answer.code].append(answer.seconds)
        self.details.setdefault(answer.code, answer.details)

    @property
    def total(self) -> int:
        """Answers counted."""
        return sum(self.codes.values())

    def percentile(self, q: float, code: grpc.StatusCode | None = None) -> float:
        """Latency percentile (0..100) in seconds, of one code or of all answers."""
        values = sorted(
            v for c, vs in self.latencies.items() if code is None or c == code for v in vs
        )
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(len(values) * q / 100))]


async def one_request(
    caller: Caller, checker: ResponseChecker, rng: random.Random, outcome: Outcome, *,
    at_ms: int | None, timeout_s: float, may_fail: Collection[str], batch_share: float = 0.3,
    batch_size: int = 20,
) -> Answer:
    """Send one single or batch request of random entities; check it if OK."""
    entities: Sequence[dict[str, KeyInput]]
    if rng.random() < batch_share:
        entities = [random_keys(rng) for _ in range(batch_size)]
        request = Caller.batch(entities, at_ms)
    else:
        entities = [random_keys(rng)]
        request = Caller.single(entities[0], at_ms)
    answer = await caller.call(request, timeout_s)
    outcome.add(answer)
    if answer.code is grpc.StatusCode.OK:
        read_ms = at_ms if at_ms is not None else time.time_ns() // 1_000_000
        results = checker.check_response(answer.response, list(entities), read_ms,
                                         service=SERVICE, may_fail=may_fail)
        for groups in results:
            if groups[REDIS_GROUP] == ERROR_OUTCOME:
                outcome.redis_errors += 1
            else:
                outcome.redis_served += 1
    return answer


async def burst(
    caller: Caller, checker: ResponseChecker, rng: random.Random, *, requests: int,
    concurrency: int, at_ms: int | None, timeout_s: float, may_fail: Collection[str] = (),
    batch_share: float = 0.3,
) -> Outcome:
    """`requests` requests, `concurrency` at a time; every OK answer checked."""
    outcome = Outcome()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one_request(caller, checker, rng, outcome, at_ms=at_ms, timeout_s=timeout_s,
                              may_fail=may_fail, batch_share=batch_share)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    outcome.seconds = time.perf_counter() - started
    return outcome


async def until_redis_served(
    caller: Caller, checker: ResponseChecker, rng: random.Random, at_ms: int,
    within_s: float = 15.0,
) -> float:
    """Seconds until a request gets the Redis group served again; fails after `within_s`."""
    started = time.monotonic()
    outcome = Outcome()
    while time.monotonic() - started < within_s:
        await one_request(caller, checker, rng, outcome, at_ms=at_ms, timeout_s=1.0,
                          may_fail=(REDIS_GROUP,), batch_share=0.0)
        if outcome.redis_served:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"Redis group not served again {within_s} s after the fault ended: "
                         f"{dict(outcome.codes)}")
