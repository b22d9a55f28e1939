"""RedisStore.multi_get: latest keys (MGET) against the sorted sets (read script), CPU and wall.

    .venv/bin/python -m bench.bench_redis_store --url redis://127.0.0.1:6470/0 [--mix latest]

Use a Redis of your own: the run writes keys under the prefix "benchstore" (and never
flushes). `--mix mixed` (default): a quarter of the lookups ask for a past time and a
tenth of the entities are missing (a latest-key miss costs a second round trip);
`--mix latest`: every lookup wants the latest version of a present entity (what the
bench's feature requests do). Per batch size, both paths read the same rows, in turns,
`--reps` times; each turn is `calls` multi_gets, timed with time.process_time (this
process's CPU) and time.perf_counter (wall), plus the Redis process's CPU (INFO cpu).
Prints the medians per call as a markdown table, then how long one EVALSHA keeps Redis
busy (INFO commandstats usec_per_call) at 100 to 5000 keys.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import uvloop

from kvstores import Found, Lookup, RedisStore, Row
from kvstores.redis import _READ_SCRIPT

_DATASETS = ("bench_users", "bench_merchants")  # two groups, as in a fetcher request
_VERSIONS = (1_000, 2_000, 3_000)
_VALUE = bytes(range(150))  # about one bench feature row's Avro bytes

MultiGet = Callable[[Sequence[Lookup]], Awaitable[list[Found | None]]]


def lookups(count: int, mix: str) -> list[Lookup]:
    """`count` lookups over both datasets; "mixed": some at a past time, some missing."""
    out: list[Lookup] = []
    mixed = mix == "mixed"
    for i in range(count):
        entity = i // 2
        key = entity.to_bytes(8, "big") if i % 10 != 9 or not mixed else b"missing-%d" % i
        at_ms = 2_500 if i % 4 == 3 and mixed else None
        out.append((_DATASETS[i % 2], key, at_ms))
    return out


async def load(store: RedisStore, entities: int) -> None:
    """Write `entities` users and merchants with three versions each."""
    rows = [
        Row(dataset, entity.to_bytes(8, "big"), _VALUE + b"%d" % ts, ts, ttl_s=3_600)
        for entity in range(entities)
        for dataset in _DATASETS
        for ts in _VERSIONS
    ]
    await store.multi_put(rows)


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds the Redis process has used (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one_turn(
    multi_get: MultiGet, batch: list[Lookup], calls: int, client: redis.Redis
) -> tuple[float, float, float]:
    """CPU, wall and Redis CPU in µs per multi_get over `calls` calls."""
    redis_before = redis_cpu_s(client)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await multi_get(batch)
    cpu = time.process_time() - cpu_before
    wall = time.perf_counter() - wall_before
    redis_used = redis_cpu_s(client) - redis_before
    return cpu / calls * 1e6, wall / calls * 1e6, redis_used / calls * 1e6


async def compare(
    url: str, sizes: list[int], reps: int, budget: int, entities: int, mix: str
) -> list[dict[str, Any]]:
    """Medians per size and path; checks both paths return the same results first."""
    store = RedisStore(url, timeout_s=5.0, key_prefix="benchstore")
    # Reads only: a store with latest_keys=False would delete the latest copies it writes.
    versions = RedisStore(url, timeout_s=5.0, key_prefix="benchstore", latest_keys=False)
    client = redis.Redis.from_url(url)
    await load(store, entities)
    paths: dict[str, MultiGet] = {
        "sorted sets, script": versions.multi_get,
        "latest keys, MGET": store.multi_get,
    }
    rows: list[dict[str, Any]] = []
    for size in sizes:
        batch = lookups(size, mix)
        results = [await multi_get(batch) for multi_get in paths.values()]
        if results[0] != results[1] or results[0].count(None) == size:
            raise SystemExit(f"{size} lookups: the two paths disagree or found nothing")
        calls = max(20, budget // size)
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in paths}
        for _ in range(reps):  # in turns, so drift in machine load hits both alike
            for name, multi_get in paths.items():
                samples[name].append(await one_turn(multi_get, batch, calls, client))
        for name, got in samples.items():
            cpu, wall, server = (statistics.median(column) for column in zip(*got, strict=True))
            rows.append(
                {"lookups": size, "path": name, "calls": calls, "cpu_us": cpu, "wall_us": wall,
                 "redis_cpu_us": server}
            )  # fmt: skip
    client.close()
    await store.close()
    await versions.close()
    return rows


def script_time(url: str, sizes: list[int], reps: int) -> list[tuple[int, float]]:
    """Median usec_per_call of one EVALSHA of the read script over `size` keys."""
    client = redis.Redis.from_url(url)
    sha = client.script_load(_READ_SCRIPT)
    store_keys = [
        b"benchstore:%s:{%s}" % (_DATASETS[i % 2].encode(), (i // 2).to_bytes(8, "big"))
        for i in range(max(sizes))
    ]
    out = []
    for size in sizes:
        per_call = []
        for _ in range(reps):
            client.config_resetstat()
            for _ in range(max(3, 2_000 // size)):
                client.evalsha(sha, size, *store_keys[:size], *([b"+inf"] * size))
            per_call.append(float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]))
        out.append((size, statistics.median(per_call)))
    client.close()
    return out


def main() -> None:
    """Parse arguments, run both measurements, print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6470/0")
    parser.add_argument("--sizes", default="1,2,100,200,1000")
    parser.add_argument("--script-sizes", default="100,500,1000,5000")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--budget", type=int, default=20_000, help="lookups per turn")
    parser.add_argument("--mix", choices=("mixed", "latest"), default="mixed")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    script_sizes = [int(s) for s in args.script_sizes.split(",")]
    entities = max(sizes + script_sizes)
    rows = uvloop.run(compare(args.url, sizes, args.reps, args.budget, entities, args.mix))
    print("| lookups | path | calls/turn | CPU µs/call | wall µs/call | Redis CPU µs/call |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['lookups']} | {row['path']} | {row['calls']} | {row['cpu_us']:,.1f} "
            f"| {row['wall_us']:,.1f} | {row['redis_cpu_us']:,.1f} |"
        )
    print()
    print("| keys in one EVALSHA | usec_per_call (Redis busy) | per key |")
    print("| ---: | ---: | ---: |")
    for size, usec in script_time(args.url, script_sizes, args.reps):
        print(f"| {size} | {usec:,.1f} | {usec / size:.2f} |")


if __name__ == "__main__":
    main()
