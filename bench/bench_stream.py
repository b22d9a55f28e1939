"""`fetcher stream`: events/s one consumer applies into Redis, and produce-to-served freshness.

Needs the Kafka broker of scripts/services.sh (`scripts/services.sh start kafka`,
127.0.0.1:19092; FETCHER_TEST_KAFKA_BOOTSTRAP to use another). Starts its own
redis-server on 127.0.0.1:6493 (never the test Redis).

1. Throughput: `--events` JSON events (400 users, an aggregation group of count, sum and
   average over 1 h and 1 d) are produced to a new one-partition topic first; then one
   `fetcher stream` process (this checkout, `python -m fetcher.cli`) applies them. The
   rate is taken from its own metrics: events applied between the first /metrics sample
   that shows any and the one that shows all, over the time between them (the process
   start and the consumer group join are left out). Each batch size in `--batch-sizes`
   `--reps` times, interleaved; medians.
2. Freshness (`--freshness N`): a `fetcher serve` over the same Redis and a running
   `fetcher stream` (linger `--linger-ms`); N times: produce one event for a key (the
   producer's flush returns when the broker acknowledged it), then GetFeatures until its
   1 h count reflects it; ms from before the produce call to that answer (p50, p99). The
   producer sends at once (linger.ms 0).

Run: .venv/bin/python bench/bench_stream.py [--events 50000] [--reps 3] [--freshness 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_fetch_path import _start_redis  # noqa: E402

KAFKA = os.environ.get("FETCHER_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
REDIS_PORT = 6493
USERS = 400
HOUR_S = 3600


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _catalog(root: Path, group: str) -> Path:
    ops = [("amount", "count"), ("amount", "sum"), ("amount", "average")]
    operations, features = [], []
    for column, name in ops:
        operations.append({"column": column, "operation": name, "hop_seconds": 300,
                           "span_seconds": 86400})
        index = len(operations) - 1
        for label, seconds in (("1h", HOUR_S), ("1d", 86400)):
            kind = "int64" if name == "count" else "double"
            features.append({"name": f"{column}_{name}_{label}", "type": kind,
                             "operation": index, "window_seconds": seconds})
    body = {"name": group, "store": "main", "dataset": group,
            "keys": [{"name": "user_id", "type": "int64"}], "online": True,
            "cache": {"l1": False, "l2": False},
            "aggregations": {"columns": [{"name": "amount", "type": "double"}],
                             "operations": operations, "features": features}}
    (root / "groups").mkdir(parents=True, exist_ok=True)
    (root / "groups" / f"{group}.json").write_text(json.dumps(body))
    return root


def _settings(path: Path, config: Path, port: int, batch_size: int, linger_ms: int) -> Path:
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nconfig_dir = "{config}"\n'
        'metrics_listen = ""\ndrain_delay_s = 0.0\n\n'
        f'[stores.main]\nurl = "redis://127.0.0.1:{REDIS_PORT}/0"\ntimeout_ms = 5000\n\n'
        f'[kafka]\nbootstrap_servers = "{KAFKA}"\nbatch_size = {batch_size}\n'
        f"linger_ms = {linger_ms}\n")
    return path


def _topic(name: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(name, partitions)])[name].result(60)


def _producer(linger_ms: int = 20) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": KAFKA, "linger.ms": linger_ms,
                     "enable.idempotence": True})


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{"))


def _stream(settings: Path, group: str, metrics_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHER")}
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "fetcher.cli", "stream", "--settings", str(settings),
             "--group", group, "--metrics-port", str(metrics_port)],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def throughput(scratch: Path, events: int, batch_size: int) -> float:
    """Events/s one consumer applies (see the module docstring)."""
    group = f"bench_stream_{uuid.uuid4().hex[:8]}"
    config = _catalog(scratch / group, group)
    settings = _settings(scratch / f"{group}.toml", config, _free_port(), batch_size, 100)
    topic = f"fetcher.events.{group}"
    _topic(topic)
    producer = _producer()
    now = time.time_ns() // 1_000_000
    for n in range(events):
        value = {"user_id": n % USERS, "event_time": now - (n % 3600) * 1000,
                 "amount": float(n % 97)}
        producer.produce(topic, json.dumps(value).encode(), key=str(n % USERS).encode())
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit("the broker did not acknowledge the bench events")
    port = _free_port()
    process = _stream(settings, group, port, scratch / "stream.log")
    first_at = first_count = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            count = _metric(port, "fetcher_stream_events_applied_total")
            now_s = time.perf_counter()
            if count > 0 and first_at is None:
                first_at, first_count = now_s, count
            if count >= events:
                assert first_at is not None and first_count is not None
                if count == first_count:
                    raise SystemExit("every event applied in the first sample: use more --events")
                return (count - first_count) / (now_s - first_at)
            if process.poll() is not None:
                raise SystemExit(f"fetcher stream exited {process.returncode}: "
                                 f"{(scratch / 'stream.log').read_text()[-2000:]}")
            time.sleep(0.05)
        raise SystemExit("the stream did not apply every event within 600 s")
    finally:
        _stop(process)


def freshness(scratch: Path, samples: int, linger_ms: int) -> dict[str, float]:
    """Produce one event, read until it shows (see the module docstring)."""
    from fetcher.client import FeatureClient

    group = f"bench_fresh_{uuid.uuid4().hex[:8]}"
    config = _catalog(scratch / group, group)
    server_port = _free_port()
    settings = _settings(scratch / f"{group}.toml", config, server_port, 500, linger_ms)
    topic = f"fetcher.events.{group}"
    _topic(topic)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHER")}
    server = subprocess.Popen(
        [sys.executable, "-m", "fetcher.cli", "serve", "--settings", str(settings)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics_port = _free_port()
    stream = _stream(settings, group, metrics_port, scratch / "fresh-stream.log")
    producer = _producer(0)  # sent at once: the producer's own linger is not the stream's
    delays: list[float] = []
    try:
        with FeatureClient(f"127.0.0.1:{server_port}", timeout_s=5) as client:
            for _ in range(300):
                try:
                    client.describe(group)
                    break
                except Exception:
                    time.sleep(0.1)
            # Wait until the consumer owns the partition: one warm-up event shows.
            producer.produce(topic, json.dumps({"user_id": 0, "amount": 1.0}).encode())
            producer.flush(30)
            while client.get(keys={"user_id": 0}, group=group)[
                    "amount_count_1h"].value != 1:
                time.sleep(0.05)
            for n in range(samples):
                user = 1 + n % USERS
                before = client.get(keys={"user_id": user}, group=group)
                count = before["amount_count_1h"].value or 0
                started = time.perf_counter()
                producer.produce(topic, json.dumps({"user_id": user, "amount": 2.0}).encode())
                producer.flush(30)
                while True:
                    row = client.get(keys={"user_id": user}, group=group)
                    if (row["amount_count_1h"].value or 0) == count + 1:
                        break
                delays.append((time.perf_counter() - started) * 1000)
    finally:
        _stop(stream)
        server.terminate()
        server.wait(10)
    delays.sort()
    return {"p50_ms": delays[len(delays) // 2],
            "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
            "max_ms": delays[-1]}


def main() -> None:
    """Throughput per batch size (medians of --reps, interleaved), then freshness."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-sizes", default="100,500,2000")
    parser.add_argument("--freshness", type=int, default=300)
    parser.add_argument("--linger-ms", default="100,10")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        scratch = Path(tmp)
        redis = _start_redis(scratch, REDIS_PORT)
        try:
            rates: dict[int, list[float]] = {s: [] for s in sizes}
            for rep in range(args.reps):
                for size in sizes:
                    rate = throughput(scratch, args.events, size)
                    rates[size].append(rate)
                    print(f"rep {rep + 1} batch_size {size}: {rate:,.0f} events/s", flush=True)
            print("\n| batch_size | events/s (median) | runs |\n| --- | --- | --- |")
            for size in sizes if args.reps else ():
                runs = ", ".join(f"{r:,.0f}" for r in rates[size])
                print(f"| {size} | {statistics.median(rates[size]):,.0f} | {runs} |")
            if args.freshness:
                print("\n| linger_ms | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- |")
                for linger in (int(x) for x in args.linger_ms.split(",") if x):
                    f = freshness(scratch, args.freshness, linger)
                    print(f"| {linger} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | "
                          f"{f['max_ms']:.1f} |", flush=True)
        finally:
            redis.terminate()
            redis.wait(10)


if __name__ == "__main__":
    main()
