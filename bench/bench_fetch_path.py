"""Fetch path CPU: µs of process CPU per GetFeatures / GetBatchFeatures, old code vs new.

In process, no network between client and server: the RPC wrapper (fetcher.server._rpc_context)
around FeatureServicer's method handlers as the server registers them
(fetcher.api._service.feature_handlers; the generated ones for trees before it), each call
followed by the handler's response serializer as gRPC would run it, over a FetchEngine
on the bench catalog (bench/config/catalog, service user_ab: two groups of 20 float64 in
one store), called directly with a minimal context object, on uvloop. The store is a
real EmbeddedStore (LMDB in a temp dir) or a real redis-server this script starts on
127.0.0.1:6490 (`--store redis`).

Old vs new in one run: two temp copies of fetcher/ and kvstores/ are taken at the same
moment; in one the engine-path modules (OWNED) are replaced by their `--baseline` git
version. Each repetition runs both in fresh subprocesses, alternating; each subprocess
reports the best of 3 samples per scenario, and the medians over repetitions are printed.

Run: .venv/bin/python bench/bench_fetch_path.py [--store embedded|redis] [--reps 5]
"""

from __future__ import annotations

import argparse
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
CATALOG = ROOT / "bench" / "config" / "catalog"
# The modules whose old and new versions are compared; everything else is shared.
OWNED = (
    "fetcher/engine/_fetch.py", "fetcher/engine/_plan.py", "fetcher/engine/_rows.py",
    "fetcher/engine/_merge.py", "fetcher/engine/_breaker.py", "fetcher/api/_service.py",
    "fetcher/api/_admission.py", "fetcher/api/_proto_views.py", "fetcher/api/_wire.py",
    "fetcher/api/_snapshot.py", "fetcher/api/__init__.py",
    "fetcher/cache/_singleflight.py", "fetcher/cache/_l1.py", "fetcher/server/_rpc_context.py",
    "fetcher/codec/_avro.py", "fetcher/codec/_keys.py", "kvstores/redis.py", "kvstores/embedded.py",
)
REDIS_PORT = 6490
USERS = 1_000
BATCH = 100
SCENARIOS = ("get1_cold", "get1_warm", "batch100_cold", "batch100_warm")


class BenchContext:
    """The part of grpc.aio.ServicerContext the fetch path touches: a 1 s client deadline."""

    def time_remaining(self) -> float:
        """Seconds left, as a client deadline of 1 s would leave them."""
        return 1.0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """No metadata: the wrapper makes up a request id."""
        return ()

    def code(self) -> Any:
        """No status set."""
        return None

    async def abort(self, code: Any, details: str) -> None:
        """A bench request is never refused: fail loudly if it is."""
        raise RuntimeError(f"aborted: {code} {details}")


async def _open_store(kind: str, scratch: Path) -> Any:
    from kvstores import EmbeddedStore
    from kvstores.redis import RedisStore

    if kind == "embedded":
        return EmbeddedStore(scratch / "lmdb", map_size=64 << 20, sync=False)
    return RedisStore(f"redis://127.0.0.1:{REDIS_PORT}/0", timeout_s=0.5)


async def _fill(store: Any, snapshot: Any) -> None:
    from fetcher.codec._keys import key_encoder
    from kvstores import Row

    now_ms = time.time_ns() // 1_000_000
    rows = []
    for group in snapshot.catalog.groups.values():
        codec = snapshot.catalog.codecs[group.name]
        encode_key = key_encoder(group.keys)
        for user in range(USERS):
            record = {f.name: user + i / 64 for i, f in enumerate(group.features)}
            rows.append(
                Row(group.dataset, encode_key([user]), codec.encode(record), now_ms - 1000)
            )
    await store.multi_put(rows)


async def _worker(kind: str, calls: int) -> dict[str, Any]:
    """Measure every scenario once in this process; CPU and wall µs per call."""
    import fetcher.engine._fetch
    from fetcher.api._admission import Admission
    from fetcher.api._service import FeatureServicer
    from fetcher.api._snapshot import build_snapshot
    from fetcher.cache import L1Cache, SingleFlight
    from fetcher.catalog._loader import load_catalog
    from fetcher.engine._fetch import CacheTiers, FetchEngine, StoreHandle
    from fetcher.metrics import Metrics
    from fetcher.server._rpc_context import RpcContextInterceptor
    from fetcher.v1 import feature_service_pb2 as pb

    snapshot = build_snapshot(load_catalog(CATALOG))
    scratch = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    store = await _open_store(kind, scratch)
    await _fill(store, snapshot)
    out: dict[str, Any] = {"engine": fetcher.engine._fetch.__file__}
    try:
        for l1_on in (False, True):
            metrics = Metrics()
            tiers = CacheTiers(
                l1=L1Cache(100_000), flights=SingleFlight(), l2=None,
                default_l1_ttl_s=3600.0, default_l2_ttl_s=60.0, negative_ttl_s=1.0,
                l1_enabled=l1_on,
            )
            # The production defaults of [stores.*] and [server] (fetcher/config/_settings.py).
            handle = StoreHandle("bench", store, 0.5, max_in_flight=64, breaker_failures=5)
            engine = FetchEngine({"bench": handle}, tiers, metrics)
            servicer = FeatureServicer(
                lambda: snapshot, engine, metrics, max_batch_entities=5000,
                default_deadline_s=1.0, admission=Admission(256, 256, metrics.registry),
            )
            interceptor = RpcContextInterceptor(metrics)
            get1 = _rpc(interceptor, _handlers(servicer), "GetFeatures")
            batch = _rpc(interceptor, _handlers(servicer), "GetBatchFeatures")
            singles = [
                pb.GetFeaturesRequest(
                    feature_service="user_ab", keys={"user_id": {"int64_value": u}}
                )
                for u in range(USERS)
            ]
            batches = [
                pb.GetBatchFeaturesRequest(
                    feature_service="user_ab",
                    entities=[{"keys": {"user_id": {"int64_value": (b * BATCH + i) % USERS}}}
                              for i in range(BATCH)],
                )
                for b in range(USERS // BATCH)
            ]
            context = BenchContext()
            label = "warm" if l1_on else "cold"
            for name, call, requests, count in (
                (f"get1_{label}", get1, singles, calls),
                (f"batch100_{label}", batch, batches, max(1, calls // 50)),
            ):
                for request in requests:  # warm-up; with L1 on, fills L1 with every user
                    response = await call(request, context)
                _check(response, name)
                best: dict[str, float] = {}
                # Best of 3 in the process: a shared machine's other load only adds CPU time.
                for _ in range(3):
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    for i in range(count):
                        await call(requests[i % len(requests)], context)
                    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                    sample = {"cpu_us": cpu / count * 1e6, "wall_us": wall / count * 1e6}
                    if not best or sample["cpu_us"] < best["cpu_us"]:
                        best = sample
                out[name] = best
            await engine.close()
    finally:
        await store.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _handlers(servicer: Any) -> dict[str, Any]:
    """The FeatureService method handlers the server registers (generated ones if older)."""
    import grpc

    from fetcher.v1 import feature_service_pb2 as pb

    try:
        from fetcher.api._service import feature_handlers
    except ImportError:  # a tree from before fetcher.api._service.feature_handlers
        return {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, name),
                request_deserializer=getattr(pb, f"{name}Request").FromString,
                response_serializer=getattr(pb, f"{name}Response").SerializeToString,
            )
            for name in ("GetFeatures", "GetBatchFeatures")
        }
    return feature_handlers(servicer)


def _rpc(interceptor: Any, handlers: dict[str, Any], name: str) -> Any:
    """The wrapped handler of `name`, its response serialized as gRPC would do it."""
    handler = handlers[name]
    behavior = interceptor._wrap(f"/fetcher.v1.FeatureService/{name}", handler.unary_unary)
    serialize = handler.response_serializer

    async def call(request: Any, context: Any) -> bytes:
        wire: bytes = serialize(await behavior(request, context))
        return wire

    return call


def _check(wire: bytes, scenario: str) -> None:
    """Every value served: a bench that measures ERROR answers measures nothing."""
    from fetcher.v1 import feature_service_pb2 as pb

    if scenario.startswith("get1"):
        vectors = [pb.GetFeaturesResponse.FromString(wire).vector]
    else:
        vectors = list(pb.GetBatchFeaturesResponse.FromString(wire).vectors)
    for vector in vectors:
        if any(status != 1 for status in vector.statuses):  # 1 = PRESENT
            raise SystemExit(f"{scenario}: a feature was not PRESENT: {list(vector.statuses)}")


def _tree(dest: Path, baseline: str | None) -> Path:
    """Copy fetcher/ and kvstores/ into `dest`; OWNED files from git `baseline` if given."""
    for package in ("fetcher", "kvstores"):
        shutil.copytree(ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    if baseline is not None:
        for path in OWNED:
            text = subprocess.run(
                ["git", "show", f"{baseline}:{path}"], cwd=ROOT, check=True,
                capture_output=True, text=True,
            ).stdout
            (dest / path).write_text(text)
    return dest


def _run_worker(tree: Path, kind: str, calls: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", "--store", kind, "--calls", str(calls)],
        env=env, capture_output=True, text=True, check=False, cwd=tree,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker in {tree} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["engine"].startswith(str(tree)):
        raise SystemExit(f"worker imported {result['engine']}, not the copy in {tree}")
    return result


def _start_redis(scratch: Path, port: int = REDIS_PORT) -> subprocess.Popen[bytes]:
    """A redis-server without persistence on 127.0.0.1:`port`, answering PING."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(scratch)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"],
                              capture_output=True, text=True, check=False)
        if ping.stdout.strip() == "PONG":
            return proc
        time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"redis-server did not answer on 127.0.0.1:{port}")


def main() -> None:
    """Old vs new, `--reps` alternating subprocess pairs; prints medians as a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("embedded", "redis"), default="embedded")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000, help="GetFeatures calls per sample")
    parser.add_argument("--baseline", default="HEAD", help="git ref of the old OWNED modules")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import uvloop

        print(json.dumps(uvloop.run(_worker(args.store, args.calls))))
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-fetch-trees-"))
    redis = _start_redis(scratch) if args.store == "redis" else None
    try:
        trees = {
            "old": _tree(scratch / "old", args.baseline),
            "new": _tree(scratch / "new", None),
        }
        samples: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
        for rep in range(args.reps):
            for variant in ("old", "new") if rep % 2 == 0 else ("new", "old"):
                samples[variant].append(_run_worker(trees[variant], args.store, args.calls))
        print(f"store={args.store} reps={args.reps} calls={args.calls} baseline={args.baseline}")
        print("| scenario | old CPU µs/call | new CPU µs/call | change | old wall µs "
              "| new wall µs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name in SCENARIOS:
            old, new = (
                {k: statistics.median(s[name][k] for s in samples[v])
                 for k in ("cpu_us", "wall_us")}
                for v in ("old", "new")
            )
            change = (new["cpu_us"] / old["cpu_us"] - 1) * 100
            print(f"| {name} | {old['cpu_us']:.1f} | {new['cpu_us']:.1f} | {change:+.1f}% | "
                  f"{old['wall_us']:.1f} | {new['wall_us']:.1f} |")
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
