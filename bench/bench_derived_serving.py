"""What derived features cost a request: µs of process CPU per GetFeatures and per
GetBatchFeatures of 100 entities, for user_ab (two groups of 20 doubles, no derivations)
and user_ab_derived (the same joins, one request-time value and 11 derivations of 1-4
operations each), in process as bench/bench_fetch_path.py measures (its RPC wrapper,
handlers and EmbeddedStore), L1 off (cold) and on (warm).

Run: .venv/bin/python -m bench.bench_derived_serving [--calls 3000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_fetch_path import BATCH, CATALOG, USERS, BenchContext, _fill, _handlers, _rpc

DERIVED = {
    "name": "user_ab_derived",
    "description": "user_ab with derived features",
    "online": True,
    "joins": [{"group": "user_a"}, {"group": "user_b"}],
    "context": [{"name": "amount", "type": "double"}],
    "derivations": [
        {"name": "r01", "expression": "a00 / (b00 + 1)", "type": "double"},
        {"name": "r02", "expression": "amount / (a01 + 1)", "type": "double"},
        {"name": "r03", "expression": "if(a02 > b02, a02 - b02, b02 - a02)", "type": "double"},
        {"name": "r04", "expression": "amount > 3 * coalesce(a03, 50.0)", "type": "bool"},
        {"name": "r05", "expression": "log(a04 + 1) * b04", "type": "double"},
        {"name": "r06", "expression": "sqrt(abs(a05 - b05))", "type": "double"},
        {"name": "r07", "expression": "round(a06 * 100) / 100", "type": "double"},
        {"name": "r08", "expression": "min(a07, b07, amount)", "type": "double"},
        {"name": "r09", "expression": "r04 and a08 > 1", "type": "bool"},
        {"name": "r10", "expression": "floor(a09 + b09)", "type": "double"},
        {"name": "r11", "expression": "if(a10 < 500, 0, 1)", "type": "int64"},
    ],
}


async def _measure(calls: int) -> dict[str, dict[str, float]]:
    from fetcher.api._service import FeatureServicer
    from fetcher.api._snapshot import build_snapshot
    from fetcher.cache import L1Cache, SingleFlight
    from fetcher.catalog._loader import load_catalog
    from fetcher.engine._fetch import CacheTiers, FetchEngine, StoreHandle
    from fetcher.metrics import Metrics
    from fetcher.server._rpc_context import RpcContextInterceptor
    from fetcher.v1 import feature_service_pb2 as pb
    from kvstores import EmbeddedStore

    scratch = Path(tempfile.mkdtemp(prefix="bench-derived-"))
    shutil.copytree(CATALOG, scratch / "catalog")
    (scratch / "catalog" / "services" / "user_ab_derived.json").write_text(json.dumps(DERIVED))
    snapshot = build_snapshot(load_catalog(scratch / "catalog"))
    store = EmbeddedStore(scratch / "lmdb", map_size=64 << 20, sync=False)
    await _fill(store, snapshot)
    out: dict[str, dict[str, float]] = {}
    try:
        for l1_on in (False, True):
            metrics = Metrics()
            tiers = CacheTiers(
                l1=L1Cache(100_000), flights=SingleFlight(), l2=None,
                default_l1_ttl_s=3600.0, default_l2_ttl_s=60.0, negative_ttl_s=1.0,
                l1_enabled=l1_on,
            )
            handle = StoreHandle("bench", store, 0.5, max_in_flight=64, breaker_failures=5)
            engine = FetchEngine({"bench": handle}, tiers, metrics)
            servicer = FeatureServicer(lambda: snapshot, engine, metrics,
                                       max_batch_entities=5000, default_deadline_s=1.0)
            interceptor = RpcContextInterceptor(metrics)
            get1 = _rpc(interceptor, _handlers(servicer), "GetFeatures")
            batch = _rpc(interceptor, _handlers(servicer), "GetBatchFeatures")
            label = "warm" if l1_on else "cold"
            for service in ("user_ab", "user_ab_derived"):
                context = {"amount": {"double_value": 120.5}} if service != "user_ab" else {}
                singles = [pb.GetFeaturesRequest(feature_service=service, context=context,
                                                 keys={"user_id": {"int64_value": u}})
                           for u in range(USERS)]
                batches = [pb.GetBatchFeaturesRequest(
                    feature_service=service, context=context,
                    entities=[{"keys": {"user_id": {"int64_value": (b * BATCH + i) % USERS}}}
                              for i in range(BATCH)])
                    for b in range(USERS // BATCH)]
                for name, call, requests, count in (
                    (f"get1_{label}", get1, singles, calls),
                    (f"batch100_{label}", batch, batches, max(1, calls // 50)),
                ):
                    for request in requests:  # warm-up (fills L1 when it is on)
                        await call(request, BenchContext())
                    best = float("inf")
                    for _ in range(5):
                        cpu0 = time.process_time()
                        for i in range(count):
                            await call(requests[i % len(requests)], BenchContext())
                        best = min(best, (time.process_time() - cpu0) / count * 1e6)
                    out.setdefault(name, {})[service] = best
            await engine.close()
    finally:
        await store.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def main() -> None:
    """Print µs of CPU per call, with and without derivations, and the difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="GetFeatures calls per sample")
    args = parser.parse_args()
    import uvloop

    results: Any = uvloop.run(_measure(args.calls))
    print(f"calls={args.calls}, {len(DERIVED['derivations'])} derivations, best of 5")
    print("| scenario | user_ab CPU µs/call | user_ab_derived | difference |")
    print("| --- | ---: | ---: | ---: |")
    for name, by_service in results.items():
        plain, derived = by_service["user_ab"], by_service["user_ab_derived"]
        print(f"| {name} | {plain:.1f} | {derived:.1f} | +{derived - plain:.1f} µs |")


if __name__ == "__main__":
    main()
