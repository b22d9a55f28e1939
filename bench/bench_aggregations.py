"""Aggregation groups: fetch CPU per entity beside a plain group, and push-to-read freshness.

1. CPU (in process, as bench/bench_fetch_path.py measures the fetch path: the RPC wrapper
   around the servicer's handlers, a FetchEngine, L1 off and no batch part cache, a real
   redis-server this script starts on 127.0.0.1:6491, emptied by each run): GetBatchFeatures
   of 100 entities of
   - `user_a`, the bench's plain group of 20 doubles (bench/config/catalog), and
   - `user_txn`, an aggregation group of 10 aggregations over 1h, 1d and 7d (30
     features): each key has a batch part (batch end 2 h ago, a week of events) and
     `--events` events after it.
   Reported: µs of process CPU per entity, entity rows/s, p50/p99 wall ms per call, and
   the ratio of the two groups' CPU (target: at most 2x).
2. Freshness (`--freshness N`): a real `fetcher serve` over the same redis-server; N times,
   for a bench key (batch part and events): PushEvents of one event, then GetFeatures
   until its 1h count reflects it; the time from the push's acknowledgement to the first
   answer that reflects it (p50, p99), and how many reads missed it.

3. The batch part L1 (`--parts`): the same CPU runs of `user_txn` with the batch part
   cache off ("cold": every fetch reads each key's part from Redis) and on ("warm": the
   warm-up calls filled it, so the reads name the parts known and Redis leaves them
   out), alternating in each round, and with `--baseline TREE` the same runs of another
   tree (e.g. an export of main) first, cold, and warm too with `--baseline-parts` (a
   tree that has the part cache). Reported besides CPU:
   bytes Redis sent per entity (INFO total_net_output_bytes) and Redis CPU per entity
   (INFO used_cpu_user + used_cpu_sys), over the timed calls.

Run: .venv/bin/python bench/bench_aggregations.py [--reps 5] [--events 10] [--freshness 300]
     .venv/bin/python bench/bench_aggregations.py --parts [--baseline /tmp/main
         [--baseline-parts]] --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# A worker of --baseline: the fetcher of that tree (the bench helpers stay this tree's).
if os.environ.get("BENCH_AGG_TREE"):
    sys.path.insert(0, os.environ["BENCH_AGG_TREE"])

from bench.bench_fetch_path import BenchContext, _handlers, _rpc, _start_redis  # noqa: E402

PLAIN_CATALOG = ROOT / "bench" / "config" / "catalog"
REDIS_PORT = 6491
USERS = 1_000
BATCH = 100
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# (column, operation, k/percentiles) x windows 1h, 1d, 7d
AGGREGATIONS: list[tuple[str, str, Any]] = [
    ("amount", "count", None), ("amount", "sum", None), ("amount", "average", None),
    ("amount", "min", None), ("amount", "max", None), ("amount", "variance", None),
    ("amount", "last", None), ("merchant", "unique_count", None),
    ("merchant", "last_k", 3), ("amount", "top_k", 3),
]
WINDOWS = (("1h", 3600), ("1d", 86400), ("7d", 604800))


def _hop(window_s: int) -> int:
    return 300 if window_s < 12 * 3600 else 3600 if window_s < 12 * 86400 else 86400


def catalog_dir(dest: Path) -> Path:
    """The plain bench groups plus `user_txn`, in one config directory."""
    shutil.copytree(PLAIN_CATALOG, dest)
    for service in (dest / "services").glob("*.json") if (dest / "services").exists() else []:
        service.unlink()
    operations: list[dict[str, Any]] = []
    features: list[dict[str, Any]] = []
    types = {"count": "int64", "sum": "double", "average": "double", "min": "double",
             "max": "double", "variance": "double", "last": "double", "unique_count": "int64",
             "last_k": "string_list", "top_k": "double_list"}
    for column, op, k in AGGREGATIONS:
        by_hop: dict[int, int] = {}
        for text, seconds in WINDOWS:
            hop = _hop(seconds)
            if hop not in by_hop:
                by_hop[hop] = len(operations)
                operations.append({"column": column, "operation": op, "hop_seconds": hop,
                                   "span_seconds": seconds, **({"k": k} if k else {})})
            operations[by_hop[hop]]["span_seconds"] = seconds
            features.append({"name": f"{column}_{op}_{text}", "type": types[op],
                             "operation": by_hop[hop], "window_seconds": seconds})
    group = {
        "name": "user_txn", "store": "bench", "dataset": "user_txn",
        "keys": [{"name": "user_id", "type": "int64"}], "online": True,
        "cache": {"l1": False, "l2": False},
        "aggregations": {
            "columns": [{"name": "amount", "type": "double"},
                        {"name": "merchant", "type": "string"}],
            "operations": operations, "features": features,
        },
    }
    (dest / "groups" / "user_txn.json").write_text(json.dumps(group, indent=2))
    return dest


async def _fill(store: Any, snapshot: Any, events_after: int, now_ms: int) -> None:
    from fetcher.codec._keys import key_encoder
    from fetcher.load import EventWriter
    from kvstores import Row

    plain = snapshot.catalog.groups["user_a"]
    codec = snapshot.catalog.codecs["user_a"]
    encode = key_encoder(plain.keys)
    await store.multi_put([
        Row(plain.dataset, encode([u]), codec.encode(
            {f.name: u + i / 64 for i, f in enumerate(plain.features)}), now_ms - 1000)
        for u in range(USERS)
    ])
    group = snapshot.catalog.groups["user_txn"]
    writer = EventWriter(group, store)
    agg = writer.aggregator
    end = now_ms - 2 * HOUR_MS
    for start in range(0, USERS, 100):
        parts = []
        pushes = []
        for u in range(start, start + 100):
            key = encode([u])
            history = [(end - DAY_MS * 7 + j * 4 * HOUR_MS + u,
                        agg.codec.values({"amount": float(j % 17), "merchant": f"m{j % 5}"}))
                       for j in range(42)]
            parts.append((key, agg.batch_part(history, end)))
            for j in range(events_after):
                ts = end + (j + 1) * (2 * HOUR_MS - 60_000) // max(events_after, 1)
                pushes.append(writer.event(key, ts, f"e{j}",
                                           {"amount": float(j), "merchant": f"m{j % 7}"}))
        await writer.write_batch_parts(parts, end)
        await writer.push(pushes)


def _redis_counters() -> tuple[int, float]:
    """(bytes Redis has sent, its CPU seconds) so far."""
    import redis

    client = redis.Redis(port=REDIS_PORT)
    try:
        stats, cpu = client.info("stats"), client.info("cpu")
    finally:
        client.close()
    return int(stats["total_net_output_bytes"]), cpu["used_cpu_user"] + cpu["used_cpu_sys"]


async def _worker(calls: int, events_after: int, parts: bool = False,
                  groups: tuple[str, ...] = ("user_a", "user_txn")) -> dict[str, Any]:
    """Both groups' batch-of-100 GetBatchFeatures, L1 off: CPU and wall per call.

    `parts`: with the batch part L1 (filled by the warm-up calls before the timed ones).
    """
    from fetcher.api._service import FeatureServicer
    from fetcher.api._snapshot import build_snapshot
    from fetcher.cache import L1Cache, SingleFlight
    from fetcher.catalog._loader import load_catalog
    from fetcher.engine._fetch import CacheTiers, FetchEngine, StoreHandle
    from fetcher.metrics import Metrics
    from fetcher.server._rpc_context import RpcContextInterceptor
    from fetcher.v1 import feature_service_pb2 as pb
    from kvstores.redis import RedisStore

    scratch = Path(tempfile.mkdtemp(prefix="bench-agg-"))
    snapshot = build_snapshot(load_catalog(catalog_dir(scratch / "catalog")))
    import redis

    # The bench's own redis-server: emptied, so that every run reads logs of one batch
    # part (a log keeping the parts of earlier runs makes the read script copy them).
    flush = redis.Redis(port=REDIS_PORT)
    flush.flushdb()
    flush.close()
    store = RedisStore(f"redis://127.0.0.1:{REDIS_PORT}/0", timeout_s=2.0)
    now_ms = time.time_ns() // 1_000_000
    await _fill(store, snapshot, events_after, now_ms)
    metrics = Metrics()
    extra: dict[str, Any] = {}
    if parts:
        from fetcher.cache import PartCache

        extra["parts"] = PartCache(256 << 20, 3600.0)
    tiers = CacheTiers(l1=L1Cache(1000), flights=SingleFlight(), l2=None,
                       default_l1_ttl_s=60.0, default_l2_ttl_s=60.0, negative_ttl_s=1.0,
                       l1_enabled=False, **extra)
    engine = FetchEngine({"bench": StoreHandle("bench", store, 2.0, max_in_flight=64)},
                         tiers, metrics)
    servicer = FeatureServicer(lambda: snapshot, engine, metrics, max_batch_entities=5000,
                               default_deadline_s=5.0)
    batch = _rpc(RpcContextInterceptor(metrics), _handlers(servicer), "GetBatchFeatures")
    context = BenchContext()
    out: dict[str, Any] = {}
    try:
        for group in groups:
            requests = [
                pb.GetBatchFeaturesRequest(
                    feature_group=group,
                    entities=[{"keys": {"user_id": {"int64_value": (b * BATCH + i) % USERS}}}
                              for i in range(BATCH)],
                )
                for b in range(USERS // BATCH)
            ]
            for request in requests:
                wire = await batch(request, context)
            vectors = pb.GetBatchFeaturesResponse.FromString(wire).vectors
            bad = [list(v.statuses) for v in vectors if any(s != 1 for s in v.statuses)]
            if bad:
                raise SystemExit(f"{group}: features not PRESENT: {bad[0]}")
            best: dict[str, float] = {}
            for _ in range(3):
                walls = []
                sent0, redis_cpu0 = _redis_counters()
                cpu0 = time.process_time()
                for i in range(calls):
                    t0 = time.perf_counter()
                    await batch(requests[i % len(requests)], context)
                    walls.append(time.perf_counter() - t0)
                cpu = time.process_time() - cpu0
                sent1, redis_cpu1 = _redis_counters()
                walls.sort()
                sample = {
                    "cpu_us_per_entity": cpu / (calls * BATCH) * 1e6,
                    "rows_per_s": calls * BATCH / sum(walls),
                    "p50_ms": walls[len(walls) // 2] * 1000,
                    "p99_ms": walls[min(len(walls) - 1, int(len(walls) * 0.99))] * 1000,
                    "redis_bytes_per_entity": (sent1 - sent0) / (calls * BATCH),
                    "redis_cpu_us_per_entity": (redis_cpu1 - redis_cpu0) / (calls * BATCH) * 1e6,
                }
                if not best or sample["cpu_us_per_entity"] < best["cpu_us_per_entity"]:
                    best = sample
            out[group] = best
    finally:
        await engine.close()
        await store.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _freshness(pushes: int, scratch: Path) -> dict[str, float]:
    """Through a real server: push one event, then read until it shows; ms after the ack."""
    import socket

    from fetcher.client import FeatureClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = catalog_dir(scratch / "fresh-catalog")
    settings = scratch / "settings.toml"
    settings.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nconfig_dir = "{config}"\nmetrics_listen = ""\n'
        f'drain_delay_s = 0.0\n\n[stores.bench]\nurl = "redis://127.0.0.1:{REDIS_PORT}/0"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHER")}
    server = subprocess.Popen(
        [sys.executable, "-m", "fetcher.cli", "serve", "--settings", str(settings)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with FeatureClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            for _ in range(200):
                try:
                    client.describe("user_txn")
                    break
                except Exception:
                    time.sleep(0.1)
            delays = []
            stale = 0
            for n in range(pushes):
                # A bench key (a batch part and 10 events after it, written by the workers).
                user = n % USERS
                before = client.get(keys={"user_id": user}, group="user_txn")
                count = before["amount_count_1h"].value
                ts = time.time_ns() // 1_000_000 - 1
                client.push("user_txn", [({"user_id": user}, ts, f"fresh-{n}",
                                          {"amount": 1.0, "merchant": "m"})])
                acked = time.perf_counter()
                while True:
                    row = client.get(keys={"user_id": user}, group="user_txn")
                    if row["amount_count_1h"].value == count + 1:
                        break
                    stale += 1
                delays.append((time.perf_counter() - acked) * 1000)
            # The same read of a plain group: what one GetFeatures costs this client.
            plain = []
            for _ in range(pushes):
                t0 = time.perf_counter()
                client.get(keys={"user_id": 1}, group="user_a")
                plain.append((time.perf_counter() - t0) * 1000)
    finally:
        server.terminate()
        server.wait(10)
    delays.sort()
    plain.sort()
    return {"p50_ms": delays[len(delays) // 2],
            "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
            "max_ms": delays[-1], "stale_reads": stale,
            "plain_p50_ms": plain[len(plain) // 2],
            "plain_p99_ms": plain[min(len(plain) - 1, int(len(plain) * 0.99))]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--events", type=int, default=10,
                        help="events per key after its batch part")
    parser.add_argument("--freshness", type=int, default=300)
    parser.add_argument("--parts", action="store_true",
                        help="user_txn with the batch part L1 off and on (3. above)")
    parser.add_argument("--baseline", default="",
                        help="with --parts: a tree whose fetcher is run first in each round")
    parser.add_argument("--baseline-parts", action="store_true",
                        help="with --baseline: that tree has the part cache; run it warm too")
    parser.add_argument("--cache", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        groups = tuple(args.only.split(",")) if args.only else ("user_a", "user_txn")
        print(json.dumps(asyncio.run(_worker(args.calls, args.events, args.cache, groups))))
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-agg-"))
    redis = _start_redis(scratch, REDIS_PORT)
    if args.parts:
        try:
            _parts_rounds(args)
        finally:
            redis.terminate()
            redis.wait(10)
            shutil.rmtree(scratch, ignore_errors=True)
        return
    try:
        runs = []
        for _ in range(args.reps):
            proc = subprocess.run([sys.executable, __file__, "--worker", "--calls",
                                   str(args.calls), "--events", str(args.events)],
                                  capture_output=True, text=True, check=False, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"batch of {BATCH} entities, L1 off, redis, {args.events} events/key after "
              f"the batch part; medians of {args.reps} runs (each the best of 3):")
        for group in ("user_a", "user_txn"):
            med = {k: statistics.median(r[group][k] for r in runs) for k in runs[0][group]}
            print(f"  {group:9} cpu {med['cpu_us_per_entity']:7.1f} µs/entity  "
                  f"{med['rows_per_s']:9.0f} rows/s  p50 {med['p50_ms']:6.2f} ms  "
                  f"p99 {med['p99_ms']:6.2f} ms")
        ratios = [r["user_txn"]["cpu_us_per_entity"] / r["user_a"]["cpu_us_per_entity"]
                  for r in runs]
        print(f"  CPU ratio aggregation/plain per entity: median {statistics.median(ratios):.2f}"
              f" (runs: {', '.join(f'{x:.2f}' for x in ratios)})")
        if args.freshness:
            fresh = _freshness(args.freshness, scratch)
            print(f"freshness over {args.freshness} pushes (ack -> first read that reflects "
                  f"it): p50 {fresh['p50_ms']:.2f} ms, p99 {fresh['p99_ms']:.2f} ms, "
                  f"max {fresh['max_ms']:.2f} ms; reads that missed the push: "
                  f"{fresh['stale_reads']}; a plain 20-double GetFeatures from the same client: "
                  f"p50 {fresh['plain_p50_ms']:.2f} ms, p99 {fresh['plain_p99_ms']:.2f} ms")
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)


def _parts_rounds(args: argparse.Namespace) -> None:
    """`--reps` rounds of [baseline,] part cache off, part cache on: user_txn only."""
    variants = [("cold", "", False), ("warm", "", True)]
    if args.baseline:
        variants.insert(0, ("baseline", args.baseline, False))
        if args.baseline_parts:
            variants.insert(1, ("base-warm", args.baseline, True))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for _ in range(args.reps):
        for name, tree, cached in variants:
            env = dict(os.environ)
            if tree:
                env["BENCH_AGG_TREE"] = tree
            command = [sys.executable, __file__, "--worker", "--only", "user_txn", "--calls",
                       str(args.calls), "--events", str(args.events)]
            if cached:
                command.append("--cache")
            proc = subprocess.run(command, capture_output=True, text=True, check=False,
                                  cwd=tree or ROOT, env=env)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1])["user_txn"])
    print(f"user_txn, batch of {BATCH} entities, redis, {args.events} events/key after the "
          f"batch part; {args.reps} alternating rounds (each run the best of 3 by CPU):")
    for name, _, _ in variants:
        samples = runs[name]
        med = {k: statistics.median(r[k] for r in samples) for k in samples[0]}
        cpus = ", ".join(f"{r['cpu_us_per_entity']:.0f}" for r in samples)
        print(f"  {name:8} cpu {med['cpu_us_per_entity']:7.1f} µs/entity (runs {cpus})  "
              f"redis sent {med['redis_bytes_per_entity']:8.0f} B/entity, "
              f"redis cpu {med['redis_cpu_us_per_entity']:6.1f} µs/entity  "
              f"p50 {med['p50_ms']:6.2f} ms  p99 {med['p99_ms']:6.2f} ms  "
              f"{med['rows_per_s']:7.0f} rows/s")
    cold, warm = runs["cold"], runs["warm"]
    ratios = [c["cpu_us_per_entity"] / w["cpu_us_per_entity"]
              for c, w in zip(cold, warm, strict=True)]
    print(f"  cold/warm fetcher CPU per entity: median {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
