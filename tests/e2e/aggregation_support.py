"""Helpers for tests/e2e/test_aggregations.py: aggregation groups served by the real
`fetcher serve` over every backend, written through PushEvents and batch parts.

- `group_json`: the catalog JSON of a spec (docs/configuration.md "Aggregation group");
- `Backend`: one store of the test services (URL unique to the module, tables created,
  cleaned afterwards);
- `StoreLoop`: a store opened on an event loop in a daemon thread, so the blocking tests
  can write batch parts exactly as `fetcher load --events` does (EventWriter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from fetcher.types import AggregationSpec, FeatureGroup, Status
from kvstores import KVStore, open_store
from tests.e2e.multi_backend_support import (
    CASSANDRA_HOST,
    CASSANDRA_PORT,
    DYNAMODB_URL,
    delete_redis_keys,
    drop_dynamodb_tables,
    drop_keyspace,
    require_cassandra,
)
from tests.unit.aggregation.log_model import ApproxPercentiles, close

_T = TypeVar("_T")

CLUSTER_URL = os.environ.get(
    "FETCHER_TEST_REDIS_CLUSTER_URL",
    "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
)
BACKENDS = ("embedded", "redis", "redis_cluster", "cassandra", "dynamodb")

# The unit tests' SPEC with every hop and window this many times longer (seconds for ms):
# real event times of the e2e tests fall into the same tiles.
SCALE = 1000


def scaled(spec: AggregationSpec) -> AggregationSpec:
    """`spec` with every hop, span and window SCALE times longer."""
    return replace(
        spec,
        operations=tuple(replace(o, hop_ms=o.hop_ms * SCALE,
                                 span_ms=None if o.span_ms is None else o.span_ms * SCALE)
                         for o in spec.operations),
        features=tuple(replace(f, window_ms=None if f.window_ms is None
                               else f.window_ms * SCALE) for f in spec.features),
    )


def row_mismatches(spec: AggregationSpec, row: dict[str, Any], want: list[Any] | None,
                   where: str) -> list[str]:
    """How a served row differs from the oracle's values `want` (None: the key is not
    found): every feature PRESENT and close to its value, or NULL_VALUE where the oracle
    has none. Empty when they agree."""
    if want is None:
        statuses = {f.status for f in row.values()}
        return [] if statuses == {Status.NOT_FOUND} else [f"{where}: found, expected NOT_FOUND"]
    wrong: list[str] = []
    for feature, wanted in zip(spec.features, want, strict=True):
        got = row[feature.name]
        if isinstance(wanted, ApproxPercentiles) and not wanted.values:
            wanted = None
        if wanted is None:
            if got.status is not Status.NULL_VALUE:
                wrong.append(f"{where} {feature.name}: {got} expected NULL")
        elif got.status is not Status.PRESENT or not close(got.value, wanted):
            wrong.append(f"{where} {feature.name}: {got.status.name} {got.value!r}, "
                         f"expected {wanted!r}")
    return wrong


_SCALAR_FEATURE = {"int64": "int64", "int32": "int64", "double": "double", "float": "double",
                   "string": "string", "bool": "bool", "bytes": "bytes"}


def feature_type(operation: str, column_type: str) -> str:
    """The served type of an operation over a column (the compiler's rule)."""
    if operation in ("count", "unique_count", "approx_unique_count"):
        return "int64"
    if operation in ("average", "variance", "stddev"):
        return "double"
    if operation == "sum":
        return "int64" if column_type in ("int64", "int32") else "double"
    if operation == "approx_percentile":
        return "double_list"
    scalar = _SCALAR_FEATURE[column_type]
    if operation in ("first_k", "last_k", "top_k", "bottom_k"):
        return f"{scalar}_list"
    return scalar


def group_json(name: str, dataset: str, spec: AggregationSpec) -> dict[str, Any]:
    """The catalog JSON of an aggregation group keyed by an int64 `user_id`."""
    types = {c.name: c.type for c in spec.columns}

    def seconds(ms: int | None) -> float | int | None:
        if ms is None:
            return None
        return ms // 1000 if ms % 1000 == 0 else ms / 1000

    return {
        "name": name,
        "store": "main",
        "dataset": dataset,
        "keys": [{"name": "user_id", "type": "int64"}],
        "online": True,
        "cache": {"l1": False, "l2": False},
        "aggregations": {
            "columns": [{"name": c.name, "type": c.type} for c in spec.columns],
            "operations": [
                {"column": o.column, "operation": o.operation, "hop_seconds": seconds(o.hop_ms),
                 "span_seconds": seconds(o.span_ms),
                 **({"k": o.k} if o.k is not None else {}),
                 **({"percentiles": list(o.percentiles)} if o.percentiles else {})}
                for o in spec.operations
            ],
            "features": [
                {"name": f.name,
                 "type": feature_type(spec.operations[f.operation].operation,
                                      types[spec.operations[f.operation].column]),
                 "operation": f.operation, "window_seconds": seconds(f.window_ms)}
                for f in spec.features
            ],
            "max_events": spec.max_events,
        },
    }


def write_config(root: Path, groups: Sequence[tuple[str, str, AggregationSpec]]) -> Path:
    """A config directory holding the groups (name, dataset, spec)."""
    (root / "groups").mkdir(parents=True, exist_ok=True)
    for name, dataset, spec in groups:
        (root / "groups" / f"{name}.json").write_text(
            json.dumps(group_json(name, dataset, spec), indent=2), encoding="utf-8"
        )
    return root


class StoreLoop:
    """A store on its own event loop in a daemon thread."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.store: KVStore = self.run(self._open(url))

    @staticmethod
    async def _open(url: str) -> KVStore:
        return open_store(url, timeout_s=30.0)

    def run(self, coro: Coroutine[Any, Any, _T], timeout_s: float = 120.0) -> _T:
        """Run `coro` on the store's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout_s)

    def close(self) -> None:
        """Close the store and stop the loop."""
        with contextlib.suppress(Exception):
            self.run(self.store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@dataclass
class Backend:
    """One backend's store URL for a test module, and how to clean it up."""

    name: str
    url: str
    cleanup: Any


def backend(name: str, redis_url: str, workdir: Path, tag: str) -> Backend:
    """The store URL of `name`, unique to `tag` where the backend is shared."""
    if name == "embedded":
        return Backend(name, f"embedded://{workdir}/agg.lmdb", lambda: None)
    if name == "redis":
        prefix = f"agg{tag}"
        # A database of its own: other suites flush database 0 of the shared test Redis.
        own = redis_url.rsplit("/", 1)[0] + "/7"
        return Backend(name, f"{own}?key_prefix={prefix}",
                       lambda: delete_redis_keys(own, f"{prefix}:*".encode()))
    if name == "redis_cluster":
        prefix = f"agg{tag}"

        def delete_cluster_keys() -> None:
            from redis.cluster import ClusterNode, RedisCluster

            nodes = [ClusterNode(h, int(p)) for h, p in
                     (n.split(":") for n in CLUSTER_URL.split("//", 1)[1].split(","))]
            client = RedisCluster(startup_nodes=nodes)
            try:
                for key in client.scan_iter(match=f"{prefix}:*".encode(), count=1000):
                    client.delete(key)
            finally:
                client.close()

        return Backend(name, f"{CLUSTER_URL}?key_prefix={prefix}", delete_cluster_keys)
    if name == "cassandra":
        require_cassandra()
        keyspace = f"agg_{tag}"
        return Backend(name, f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/{keyspace}",
                       lambda: drop_keyspace(keyspace))
    if name == "dynamodb":
        prefix = f"agg_{tag}_"

        def drop() -> None:
            drop_dynamodb_tables(DYNAMODB_URL, prefix)
            import botocore.session

            client = botocore.session.get_session().create_client(
                "dynamodb", region_name="us-east-1", endpoint_url=DYNAMODB_URL,
                aws_access_key_id="x", aws_secret_access_key="x",
            )  # fmt: skip
            with contextlib.suppress(client.exceptions.ResourceNotFoundException):
                client.delete_table(TableName=f"{prefix}log")

        # One connection: moto's TransactWriteItems is not thread-safe (concurrent
        # transactions on a table crash it with a 500); real DynamoDB needs no such bound.
        return Backend(name, f"dynamodb://us-east-1/{prefix}?endpoint_url={DYNAMODB_URL}"
                             "&max_pool_connections=1", drop)
    raise AssertionError(name)


def new_tag() -> str:
    """A short unique tag for names in shared services."""
    return uuid.uuid4().hex[:8]


@contextlib.contextmanager
def store_loop(url: str) -> Iterator[StoreLoop]:
    """A StoreLoop whose store's tables exist, closed afterwards."""
    host = StoreLoop(url)
    try:
        host.run(host.store.create())
        yield host
    finally:
        host.close()


def batch_parts(group: FeatureGroup, events_by_key: dict[bytes, list[tuple[int, dict[str, Any]]]],
                end_ms: int) -> list[tuple[bytes, bytes]]:
    """Each key's batch part at `end_ms` from all its events (the batch source)."""
    from fetcher.load._events import aggregation_of

    agg = aggregation_of(group)
    codec = agg.codec
    out = []
    for key, events in events_by_key.items():
        rows = [(ts, codec.values(values)) for ts, values in events]
        if any(ts < end_ms for ts, _ in rows):
            out.append((key, agg.batch_part(rows, end_ms)))
    return out
