"""The feature log's cost: requests/s with logging at 100% against logging off.

Two measurements, each alternating off and on in fresh processes, medians over `--reps`:

- **server** (the target): `fetcher serve --workers 1` of this checkout pinned to CPU 0
  (taskset), the raw gRPC client bench/grpc_load.py pinned to CPU 1, the bench catalog
  (service user_ab: two groups of 20 float64) in an embedded LMDB store, L1 off (every row
  read from the store) or warm (`--l1 warm`). Logging on = `FETCHER__LOG__FEATURES__ENABLED`
  with the feature log writing its Parquet files into a temp dir; the server's
  /metrics is scraped after each run for records written and dropped (a run that drops
  would hide the writer's cost: it is reported). Also the server's CPU per request
  (user + system of the process over the run, /proc).
- **inproc**: the servicer's handlers behind the RPC wrapper, called in a loop as
  bench/bench_fetch_path.py does (no network), over the same store; CPU per call with the
  log's writer thread included (each sample ends with `FeatureLog.flush()`, so every
  record it queued is written). The harshest view: no gRPC cost to hide behind.

Run: .venv/bin/python bench/bench_feature_log.py [--mode server|inproc|both] [--reps 3]
     [--seconds 5] [--l1 cold|warm] [--sink files|kafka [--kafka HOST:PORT]]
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
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This checkout's fetcher and bench packages, whatever the venv's editable install points at.
sys.path.insert(0, str(ROOT))
CATALOG = ROOT / "bench" / "config" / "catalog"
USERS = 1_000
BATCH = 100
# name, call, concurrency
SERVER_SCENARIOS = (("1 entity, c=16", "GetFeatures", 16), ("100 entities, c=4",
                                                             "GetBatchFeatures", 4))


def fill_store(path: Path) -> None:
    """The bench catalog's two groups for USERS users, in an embedded store at `path`."""
    from fetcher.catalog._loader import load_catalog
    from fetcher.codec._keys import key_encoder
    from kvstores import EmbeddedStore, Row

    async def fill() -> None:
        catalog = load_catalog(CATALOG)
        store = EmbeddedStore(path, map_size=256 << 20, sync=False)
        now_ms = time.time_ns() // 1_000_000
        rows = []
        for group in catalog.groups.values():
            encode = key_encoder(group.keys)
            codec = catalog.codecs[group.name]
            for user in range(USERS):
                record = {f.name: user + i / 64 for i, f in enumerate(group.features)}
                rows.append(Row(group.dataset, encode([user]), codec.encode(record),
                                now_ms - 1000))
        await store.multi_put(rows)
        await store.close()

    asyncio.run(fill())


# --- server ---------------------------------------------------------------------------


def _requests(path: Path, method: str) -> Path:
    if method == "GetFeatures":
        items: list[Any] = [{"feature_service": "user_ab",
                             "keys": {"user_id": {"int64_value": str(u)}}} for u in range(USERS)]
    else:
        items = [{"feature_service": "user_ab",
                  "entities": [{"keys": {"user_id": {"int64_value": str((b * BATCH + i) % USERS)}}}
                               for i in range(BATCH)]} for b in range(USERS // BATCH)]
    path.write_text(json.dumps(items))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("fetcher_feature_log_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0]
            out[key] = out.get(key, 0.0) + float(value)
    return out


def _serve_once(work: Path, store: Path, logging_on: bool, l1: str, seconds: float,
                protoset: Path, data: dict[str, Path], sink: str = "files",
                kafka: str = "") -> dict[str, Any]:
    port, metrics = _free_port(), _free_port()
    settings = work / "bench.toml"
    settings.write_text(
        "[server]\n"
        f'listen = "127.0.0.1:{port}"\nconfig_dir = "{CATALOG}"\nworkers = 1\n'
        f'metrics_listen = "127.0.0.1:{metrics}"\nmax_batch_entities = 5000\n'
        "drain_delay_s = 0.0\nshutdown_grace_s = 2.0\n"
        f'[stores.bench]\nurl = "embedded://{store}"\ntimeout_ms = 500\n')
    log_dir = work / "feature-log"
    shutil.rmtree(log_dir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHER__")}
    env.update({
        "FETCHER__LOG__FEATURES__ENABLED": "true" if logging_on else "false",
        "FETCHER__LOG__FEATURES__DIRECTORY": str(log_dir),
        "FETCHER__LOG__LEVEL": "WARNING",
        "FETCHER__CACHE__L1_MAX_ENTRIES": "0" if l1 == "cold" else "100000",
        "FETCHER__CACHE__L1_TTL_S": "3600",
    })
    if sink == "kafka":  # a topic per run: the sink creates it (and its schema topic)
        env.update({"FETCHER__LOG__FEATURES__SINK": "kafka",
                    "FETCHER__LOG__FEATURES__KAFKA_BOOTSTRAP_SERVERS": kafka,
                    "FETCHER__LOG__FEATURES__KAFKA_TOPIC":
                        f"bench.feature-log.{os.getpid()}.{time.time_ns()}"})
    log = (work / f"server-{'on' if logging_on else 'off'}.log").open("wb")
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "fetcher.cli", "serve", "--settings",
         str(settings)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _scrape(metrics)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start: see {log.name}") from None
                time.sleep(0.2)
        for name, method, concurrency in SERVER_SCENARIOS:
            args = ["taskset", "-c", "1", sys.executable, "-m", "bench.grpc_load",
                    "--target", f"127.0.0.1:{port}", "--protoset", str(protoset),
                    "--call", f"fetcher.v1.FeatureService.{method}", "--data",
                    str(data[method]), "--concurrency", str(concurrency)]
            # Warm-up (and L1 warm: every user read once), then the measured run.
            subprocess.run([*args, "--seconds", "1.5"], cwd=ROOT, check=True,
                           capture_output=True)
            before_cpu, before_log = _cpu_s(server.pid), _scrape(metrics)
            run = subprocess.run([*args, "--seconds", str(seconds)], cwd=ROOT, check=True,
                                 capture_output=True, text=True)
            result = json.loads(run.stdout)
            cpu = _cpu_s(server.pid) - before_cpu
            # What the run's records cost is only all counted once they are written.
            time.sleep(0.6)
            after_log = _scrape(metrics)
            out[name] = {
                "rps": result["requests"] / result["seconds"],
                "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
                "errors": result["errors"],
                "cpu_us": cpu / result["requests"] * 1e6,
                "logged": after_log.get("fetcher_feature_log_records_total", 0.0)
                - before_log.get("fetcher_feature_log_records_total", 0.0),
                "dropped": after_log.get("fetcher_feature_log_dropped_total", 0.0)
                - before_log.get("fetcher_feature_log_dropped_total", 0.0),
            }
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    return out


def bench_server(reps: int, seconds: float, l1: str, sink: str = "files",
                 kafka: str = "") -> dict[str, Any]:
    """Off and on alternately, `reps` times; the runs of each."""
    from bench.protoset import write_descriptor_set
    from fetcher.v1 import feature_service_pb2 as pb

    work = Path(tempfile.mkdtemp(prefix="bench-flog-"))
    try:
        store = work / "store.lmdb"
        fill_store(store)
        protoset = write_descriptor_set(pb.DESCRIPTOR, work / "fetcher.protoset")
        data = {m: _requests(work / f"{m}.json", m) for _, m, _ in SERVER_SCENARIOS}
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for rep in range(reps):
            order = ("off", "on") if rep % 2 == 0 else ("on", "off")
            for which in order:
                runs[which].append(_serve_once(work, store, which == "on", l1, seconds,
                                               protoset, data, sink, kafka))
                print(f"  server rep {rep + 1} {which}: " + ", ".join(
                    f"{k} {v['rps']:.0f} req/s" for k, v in runs[which][-1].items()),
                    file=sys.stderr)
        return runs
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- in process ------------------------------------------------------------------------


class _Context:
    def time_remaining(self) -> float:
        return 1.0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def code(self) -> Any:
        return None

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"aborted: {code} {details}")


async def _inproc_worker(store_path: Path, logging_on: bool, calls: int) -> dict[str, Any]:
    import dataclasses

    from fetcher.api._service import FeatureServicer, feature_handlers
    from fetcher.api._snapshot import build_snapshot
    from fetcher.cache import L1Cache, SingleFlight
    from fetcher.catalog._loader import load_catalog
    from fetcher.config import FeatureLogSettings
    from fetcher.engine import CacheTiers, FetchEngine, StoreHandle
    from fetcher.featurelog import FeatureLog
    from fetcher.metrics import Metrics
    from fetcher.server._logging_json import request_id
    from fetcher.server._rpc_context import RpcContextInterceptor
    from fetcher.v1 import feature_service_pb2 as pb
    from kvstores import EmbeddedStore

    catalog = load_catalog(CATALOG)
    snapshot = build_snapshot(catalog)
    store = EmbeddedStore(store_path, map_size=256 << 20, sync=False)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-flog-inproc-"))
    out: dict[str, Any] = {}
    try:
        for l1_on in (False, True):
            metrics = Metrics()
            tiers = CacheTiers(l1=L1Cache(100_000), flights=SingleFlight(), l2=None,
                               default_l1_ttl_s=3600.0, default_l2_ttl_s=60.0,
                               negative_ttl_s=1.0, l1_enabled=l1_on)
            engine = FetchEngine({"bench": StoreHandle("bench", store, 0.5)}, tiers, metrics)
            feature_log = None
            if logging_on:
                settings = dataclasses.replace(FeatureLogSettings(), enabled=True,
                                               directory=str(log_dir))
                feature_log = FeatureLog(settings, metrics, request_id=request_id.get)
                await feature_log.start()
            servicer = FeatureServicer(lambda: snapshot, engine, metrics,
                                       max_batch_entities=5000, default_deadline_s=1.0,
                                       served_log=feature_log)
            interceptor = RpcContextInterceptor(metrics)
            handlers = feature_handlers(servicer)
            singles = [pb.GetFeaturesRequest(feature_service="user_ab",
                                             keys={"user_id": {"int64_value": u}})
                       for u in range(USERS)]
            batches = [pb.GetBatchFeaturesRequest(
                feature_service="user_ab",
                entities=[{"keys": {"user_id": {"int64_value": (b * BATCH + i) % USERS}}}
                          for i in range(BATCH)]) for b in range(USERS // BATCH)]
            context = _Context()
            label = "warm" if l1_on else "cold"
            for name, method, requests, count in (
                (f"1 entity, L1 {label}", "GetFeatures", singles, calls),
                (f"100 entities, L1 {label}", "GetBatchFeatures", batches,
                 max(1, calls // 50)),
            ):
                handler = handlers[method]
                call = interceptor._wrap(f"/fetcher.v1.FeatureService/{method}",
                                         handler.unary_unary)
                for request in requests:
                    await call(request, context)
                if feature_log is not None:
                    await feature_log.flush()
                best: dict[str, float] = {}
                for _ in range(3):
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    for i in range(count):
                        await call(requests[i % len(requests)], context)
                    if feature_log is not None:
                        await feature_log.flush()  # the writer's work is in the sample
                    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                    sample = {"cpu_us": cpu / count * 1e6, "rps": count / wall}
                    if not best or sample["cpu_us"] < best["cpu_us"]:
                        best = sample
                out[name] = best
            if feature_log is not None:
                await feature_log.close()
            await engine.close()
    finally:
        await store.close()
        shutil.rmtree(log_dir, ignore_errors=True)
    return out


def bench_inproc(reps: int, calls: int) -> dict[str, Any]:
    """Fresh worker processes, off and on alternately; the samples of each."""
    work = Path(tempfile.mkdtemp(prefix="bench-flog-"))
    try:
        store = work / "store.lmdb"
        fill_store(store)
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for rep in range(reps):
            for which in (("off", "on") if rep % 2 == 0 else ("on", "off")):
                result = subprocess.run(
                    [sys.executable, __file__, "--worker", which, "--store", str(store),
                     "--calls", str(calls)], cwd=ROOT, check=True, capture_output=True,
                    text=True)
                runs[which].append(json.loads(result.stdout))
        return runs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _median(runs: list[dict[str, Any]], scenario: str, key: str) -> float:
    return statistics.median(r[scenario][key] for r in runs)


def report(title: str, runs: dict[str, list[dict[str, Any]]], extra: tuple[str, ...]) -> str:
    """A Markdown table: medians off and on, the on/off ratio of requests/s."""
    lines = [f"### {title}", "", "| scenario | req/s off | req/s on | on/off | CPU µs/req off "
             "| CPU µs/req on |" + "".join(f" {e} |" for e in extra),
             "| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(extra)]
    for scenario in runs["off"][0]:
        off, on = _median(runs["off"], scenario, "rps"), _median(runs["on"], scenario, "rps")
        cells = [f"{off:,.0f}", f"{on:,.0f}", f"{on / off:.3f}",
                 f"{_median(runs['off'], scenario, 'cpu_us'):,.1f}",
                 f"{_median(runs['on'], scenario, 'cpu_us'):,.1f}"]
        cells += [f"{_median(runs['on'], scenario, e):,.0f}" for e in extra]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="bench/bench_feature_log.py")
    parser.add_argument("--mode", choices=("server", "inproc", "both"), default="both")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--l1", choices=("cold", "warm"), default="cold")
    parser.add_argument("--sink", choices=("files", "kafka"), default="files",
                        help="server mode: the log's sink when on")
    parser.add_argument("--kafka", default="127.0.0.1:19092",
                        help="with --sink kafka: the brokers")
    parser.add_argument("--worker", choices=("off", "on"), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import uvloop

        print(json.dumps(uvloop.run(_inproc_worker(args.store, args.worker == "on",
                                                   args.calls))))
        return 0
    if args.mode in ("server", "both"):
        runs = bench_server(args.reps, args.seconds, args.l1, args.sink, args.kafka)
        print(report(f"Real server, L1 {args.l1}, sink {args.sink} (medians of {args.reps})",
                     runs,
                     ("logged", "dropped")))
        print()
    if args.mode in ("inproc", "both"):
        runs = bench_inproc(args.reps, args.calls)
        print(report(f"In process (medians of {args.reps}, best of 3 each)", runs, ()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
