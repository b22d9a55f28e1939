"""Micro-benchmarks of the cache building blocks: L1, single-flight and L2 round trips.

Run: .venv/bin/python bench/bench_cache.py [redis-url]  (L2 is skipped without a URL).
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit
from collections.abc import Callable

from fetcher.cache import CacheKey, L1Cache, L2Cache, SingleFlight


def per_call_us(fn: Callable[[], object], number: int = 20_000) -> float:
    """Best of 5 runs of `number` calls, in µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def keys(n: int, dataset: str = "users") -> list[CacheKey]:
    """`n` distinct latest-version keys of `dataset`."""
    return [(dataset, i.to_bytes(8, "big"), None) for i in range(n)]


def bench_l1() -> None:
    """L1 get_many / put_many of 100 keys, half of them cached, in a 100k-entry cache."""
    cache = L1Cache(100_000)
    batch = keys(100)
    cache.put_many([(k, object()) for k in keys(100_000, "other")], ttl_s=600)
    cache.put_many([(k, object()) for k in batch[::2]], ttl_s=600)
    print(f"L1 get_many 100 keys, 50% hits: {per_call_us(lambda: cache.get_many(batch)):.1f} µs")
    print(f"L1 get 1 key (hit):             {per_call_us(lambda: cache.get(batch[0])):.2f} µs")
    items = [(k, object()) for k in batch]
    put_us = per_call_us(lambda: cache.put_many(items, 60))
    print(f"L1 put_many 100 keys:           {put_us:.1f} µs")


async def bench_singleflight() -> None:
    """claim 100 fresh keys, then resolve them all: the owner's full cost."""
    flight = SingleFlight()
    batch = keys(100)
    number = 5_000
    started = time.perf_counter()
    for _ in range(number):
        owned, _ = flight.claim(batch)
        with flight.owning(batch):
            flight.resolve_many([(batch[i], i) for i in owned])
    took = (time.perf_counter() - started) / number * 1e6
    print(f"SingleFlight claim+owning+resolve_many 100 keys: {took:.1f} µs")


async def bench_l2(url: str) -> None:
    """L2 get_many of 100 keys (50 cached) against a real Redis: one MGET round trip."""
    l2 = L2Cache(url, key_prefix="bench-l2", timeout_s=1.0)
    batch = keys(100)
    await l2.put_many([(k, (b"x" * 64, 1)) for k in batch[::2]], ttl_s=60, negative_ttl_s=60)
    for _ in range(200):  # warm the connection
        await l2.get_many(batch)
    samples = []
    for _ in range(2_000):
        started = time.perf_counter()
        await l2.get_many(batch)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(f"L2 get_many 100 keys (local redis): p50 {p50:.0f} µs, p99 {p99:.0f} µs")
    items = [(k, (b"x" * 64, 1)) for k in batch]
    started = time.perf_counter()
    for _ in range(500):
        await l2.put_many(items, ttl_s=60, negative_ttl_s=60)
    took = (time.perf_counter() - started) / 500 * 1e6
    print(f"L2 put_many 100 keys (local redis): mean {took:.0f} µs")
    await l2.close()


def main() -> None:
    """Run every benchmark; L2 only when a Redis URL is given."""
    bench_l1()
    asyncio.run(bench_singleflight())
    if len(sys.argv) > 1:
        asyncio.run(bench_l2(sys.argv[1]))


if __name__ == "__main__":
    main()
