"""Backfill throughput: `fetcher backfill` (Spark local[2]) against `fetcher load` on the
same files, rows/s into a redis-server this script starts on 127.0.0.1:6492.

Two cases, each run `--runs` times, the two writers alternating (side by side in one run):
- plain: a stored-row group of 5 features, `--rows` rows over `--rows / 4` keys (4
  versions each, 3 before the end): load writes every row, the backfill the latest per key;
- events: an aggregation group (count, sum, average, max over 1 h and 1 d; last over all),
  `--rows` events over `--rows / 10` keys, a fifth after the end: load `--events` and the
  backfill write the same bytes (tests/e2e/test_backfill.py holds them equal).

rows/s = source rows read / wall seconds of the write (the Spark session is started once
before, and one untimed run of each case warms its Python workers; both times are
reported apart). Medians of the runs, and their ratio.

Run: .venv/bin/python -m bench.bench_backfill [--rows 200000] [--runs 3]
(as a module: bench/profile.py would shadow the standard library's on sys.path)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from fetcher.batch import add_backfill_arguments, build_session, plan_backfill, run_backfill_job
from fetcher.catalog import load_catalog
from fetcher.load import load_event_files, load_file
from kvstores import open_store

REDIS_PORT = 6492
BASE = 1_750_000_000_000
HOUR = 3_600_000
END = BASE + 20 * HOUR


def write_config(root: Path) -> Path:
    groups = root / "groups"
    groups.mkdir(parents=True, exist_ok=True)
    schema = {"type": "record", "name": "BenchPlain", "fields": [
        {"name": f"f{i}", "type": "double"} for i in range(4)] + [
        {"name": "label", "type": "string"}]}
    (groups / "plain.avsc").write_text(json.dumps(schema))
    (groups / "plain.json").write_text(json.dumps({
        "name": "plain", "store": "main", "dataset": "bench_plain",
        "keys": [{"name": "user_id", "type": "int64"}], "schema": "plain.avsc", "online": True}))
    ops = [("amount", "count", 3600, 86400), ("amount", "sum", 3600, 86400),
           ("amount", "average", 3600, 86400), ("amount", "max", 3600, 86400),
           ("merchant", "last", 3600, None)]
    (groups / "events.json").write_text(json.dumps({
        "name": "events", "store": "main", "dataset": "bench_events",
        "keys": [{"name": "user_id", "type": "int64"}], "online": True,
        "aggregations": {
            "columns": [{"name": "amount", "type": "double"},
                        {"name": "merchant", "type": "string"}],
            "operations": [{"column": c, "operation": o, "hop_seconds": h, "span_seconds": s}
                           for c, o, h, s in ops],
            "features": [
                *({"name": f"{c}_{o}_{w}", "type": "int64" if o == "count" else "double",
                   "operation": i, "window_seconds": w}
                  for i, (c, o, _, _) in enumerate(ops[:4]) for w in (3600, 86400)),
                {"name": "merchant_last", "type": "string", "operation": 4,
                 "window_seconds": None},
            ],
        }}))
    return root


def write_sources(tmp: Path, rows: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(7)
    keys = max(rows // 4, 1)
    plain = [{"user_id": n % keys, "event_time": BASE + (n // keys) * 6 * HOUR + n % 1000,
              **{f"f{i}": rng.random() for i in range(4)}, "label": f"l{n % 13}"}
             for n in range(rows)]
    pq.write_table(pa.Table.from_pylist(plain), tmp / "plain.parquet")
    users = max(rows // 10, 1)
    events = [{"user_id": n % users, "event_time": BASE + rng.randrange(25 * HOUR),
               "id": f"e{n}", "amount": round(rng.uniform(0, 100), 2),
               "merchant": f"m{rng.randrange(50)}"} for n in range(rows)]
    pq.write_table(pa.Table.from_pylist(events), tmp / "events.parquet")
    return tmp / "plain.parquet", tmp / "events.parquet"


def settings(tmp: Path, config: Path, prefix: str) -> Path:
    path = tmp / f"{prefix}.toml"
    path.write_text(f'[server]\nconfig_dir = "{config}"\nmetrics_listen = ""\n\n'
                    f'[stores.main]\nurl = "redis://127.0.0.1:{REDIS_PORT}/0?key_prefix={prefix}"\n'
                    "timeout_ms = 60000\n")
    return path


def flush() -> None:
    import redis

    client = redis.Redis(port=REDIS_PORT)
    client.flushdb()
    client.close()


async def run_load(config: Path, group: str, path: Path, prefix: str) -> int:
    catalog = load_catalog(config)
    store = open_store(f"redis://127.0.0.1:{REDIS_PORT}/0?key_prefix={prefix}", timeout_s=60)
    try:
        if group == "events":
            report = await load_event_files(catalog.groups[group], store, [path],
                                            batch_end_ms=END)
            return report.events
        loaded = await load_file(path, catalog.groups[group], catalog.codecs[group], store)
        return loaded.rows_read
    finally:
        await store.close()


def run_spark(spark: Any, settings_path: Path, group: str, path: Path) -> int:
    parser = argparse.ArgumentParser()
    add_backfill_arguments(parser)
    args = parser.parse_args(["--settings", str(settings_path), "--group", group,
                              "--source", str(path), "--end", str(END), "--partitions", "4"])
    spec, source = plan_backfill(args)
    assert source is not None
    report = run_backfill_job(spark, spec, source)
    assert report.ok
    return report.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    redis_bin = shutil.which("redis-server") or "redis-server"
    server = subprocess.Popen([redis_bin, "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        config = write_config(scratch / "config")
        plain, events = write_sources(scratch, opts.rows)
        started = time.perf_counter()
        spark = build_session("bench-backfill", "local[2]", {
            "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
            "spark.ui.showConsoleProgress": "false"})
        print(f"Spark session start: {time.perf_counter() - started:.1f} s", flush=True)
        # One untimed run of each case: the Python workers start and import the package.
        for group, path in (("plain", plain), ("events", events)):
            flush()
            t0 = time.perf_counter()
            run_spark(spark, settings(scratch, config, "warm"), group, path)
            print(f"warm-up {group}: {time.perf_counter() - t0:.1f} s", flush=True)
        results: dict[str, list[float]] = {}
        for case, group, path in (("plain", "plain", plain), ("events", "events", events)):
            for run in range(opts.runs):
                for writer in ("load", "spark"):
                    flush()
                    t0 = time.perf_counter()
                    if writer == "load":
                        count = asyncio.run(run_load(config, group, path, f"{writer}{run}"))
                    else:
                        count = run_spark(spark, settings(scratch, config, f"{writer}{run}"),
                                          group, path)
                    rate = count / (time.perf_counter() - t0)
                    results.setdefault(f"{case} {writer}", []).append(rate)
                    print(f"{case} {writer} run {run + 1}: {count:,} rows, {rate:,.0f} rows/s",
                          flush=True)
        spark.stop()
        print()
        print(f"{opts.rows:,} rows, medians of {opts.runs} runs")
        print("| case | `fetcher load` rows/s | backfill local[2] rows/s | ratio |")
        print("| --- | ---: | ---: | ---: |")
        for case in ("plain", "events"):
            load = statistics.median(results[f"{case} load"])
            spark_rate = statistics.median(results[f"{case} spark"])
            print(f"| {case} | {load:,.0f} | {spark_rate:,.0f} | {spark_rate / load:.2f} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
        os.environ.pop("PYSPARK_PYTHON", None)


if __name__ == "__main__":
    main()
