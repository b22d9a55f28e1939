"""The store's floor: the fetcher's Redis reads as raw pipelines from a Python loop.

    python -m bench.redis_floor --url URL --data FILE --concurrency C --seconds S

FILE is a JSON list of requests, each a list of user ids (the same sequence the
servers get). One request = the read the fetcher's RedisStore sends for it: one MGET
of the latest keys, per user and per feature group (docs/storage-layout.md), over
redis.asyncio with hiredis on uvloop. Keys are built before the clock starts. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import sys
import time
from pathlib import Path

import uvloop
from redis.asyncio import Redis

from bench.data import GROUPS


def redis_key(dataset: str, user: int) -> bytes:
    """The fetcher's Redis key of one user's versions (docs/storage-layout.md)."""
    return b"ft:" + dataset.encode() + b":{" + struct.pack(">q", user) + b"}"


def latest_key(dataset: str, user: int) -> bytes:
    """The fetcher's Redis key of one user's latest version (docs/storage-layout.md)."""
    return redis_key(dataset, user) + b":latest"


def request_keys(users: list[int]) -> list[bytes]:
    """Every key one request reads: each user's latest key in each group's dataset."""
    return [latest_key(f"bench_{group}", user) for user in users for group in GROUPS]


async def measure(
    url: str, requests: list[list[bytes]], concurrency: int, seconds: float
) -> dict[str, object]:
    """Run `concurrency` loops over `requests` for `seconds`; counts and latencies."""
    client = Redis.from_url(url, max_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    error_sample = ""
    next_index = 0
    empty = 0

    async def one_loop(stop_at: float) -> None:
        nonlocal next_index, errors, error_sample, empty
        while time.perf_counter() < stop_at:
            keys = requests[next_index % len(requests)]
            next_index += 1
            started = time.perf_counter()
            try:
                replies = await client.mget(keys)
            except Exception as exc:  # counted and reported, the loop goes on
                errors += 1
                error_sample = error_sample or f"{type(exc).__name__}: {exc}"
                continue
            latencies.append(time.perf_counter() - started)
            empty += sum(1 for reply in replies if not reply)

    try:
        await client.ping()
        warm_until = time.perf_counter() + min(1.0, seconds / 4)
        await asyncio.gather(*(one_loop(warm_until) for _ in range(concurrency)))
        latencies.clear()
        empty = 0
        started = time.perf_counter()
        await asyncio.gather(*(one_loop(started + seconds) for _ in range(concurrency)))
        took = time.perf_counter() - started
    finally:
        await client.aclose()
    if empty:
        errors += empty
        error_sample = error_sample or f"{empty} reads found no row"
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors,
        "seconds": took,
        "p50_ms": statistics.median(ordered) * 1e3 if ordered else 0.0,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1e3 if ordered else 0.0,
        "error_sample": error_sample,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.redis_floor")
    parser.add_argument("--url", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    requests = [request_keys(users) for users in json.loads(args.data.read_text())]
    result = uvloop.run(measure(args.url, requests, args.concurrency, args.seconds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
