"""The Feast tests' world (tests/integration/test_feast_redis.py): the rows written, a Feast
repo applied and filled by the real Feast, Feast's answers and the fetcher's.

Rows of entity n are a function of n: every value exact in every type it goes through
(float32 as multiples of 1/4, timestamps in whole seconds), lists of n % 4 items; entity 8
is all null, 9 half null, 10 and 11 are older than the TTL; MISSING entities are never
written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from fetcher.api import VectorView, encode_values
from fetcher.cache import L1Cache, SingleFlight
from fetcher.engine import CacheTiers, FetchEngine, Plans, StoreHandle, TargetPlan
from fetcher.feast import FEAST_STORE, FeastCatalog, load_feast_repo
from fetcher.metrics import Metrics
from fetcher.types import FeatureType
from kvstores import KVStore, open_store
from tests.conftest import REDIS_URL
from tests.feast_env import run_feast, run_side

DEFINITIONS = Path(__file__).resolve().parent / "feast_repo" / "definitions.py"
CLUSTER_URL = os.environ.get(
    "FETCHER_TEST_REDIS_CLUSTER_URL",
    "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
)
# Feast's rows go to a database no other suite flushes (they flush the URL's, 0).
FEAST_DB = 9
TTL_S = 3600
SCALARS = ("i32", "i64", "f32", "f64", "str", "byt", "flag", "ts")
FEATURES = (*SCALARS, *(f"{name}_list" for name in SCALARS))
ENTITIES = 12  # 0-7 fresh, 8 all null, 9 half null, 10-11 older than the TTL
MISSING = (1000, 1001)


# --- the rows written -------------------------------------------------------------------


def scalar(name: str, n: int) -> Any:
    """A value of feature `name` for entity number n: exact in every type it goes through."""
    if name == "i32":
        return (n * 7919) % 2001 - 1000
    if name == "i64":
        return n * 2**40 - 12_345
    if name == "f32":
        return n / 4 - 1.5  # multiples of 1/4 survive float32
    if name == "f64":
        return n / 3
    if name == "str":
        return ("", "é☃", f"s{n}")[n % 3]
    if name == "byt":
        return bytes([n % 256, 0, 255])[: n % 4]
    if name == "flag":
        return n % 2 == 0
    assert name == "ts"
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n * 3_601)


def value_of(feature: str, n: int) -> Any:
    """Feature `feature` of entity n: a scalar, or a list of n % 4 scalars."""
    if feature.endswith("_list"):
        return [scalar(feature.removesuffix("_list"), n + k) for k in range(n % 4)]
    return scalar(feature, n)


def record(n: int, seed: int) -> dict[str, Any]:
    """Every feature of entity n (8: all null, 9: every other one null); `seed` shifts n."""
    if n == 8:
        return dict.fromkeys(FEATURES)
    record = {f: value_of(f, n + seed) for f in FEATURES}
    if n == 9:
        record.update({f: None for f in FEATURES[::2]})
    return record


@dataclass(frozen=True)
class Row:
    """The latest row of one entity of a view, as written."""

    event: dt.datetime
    values: dict[str, Any]
    expired: bool


def event_time(now: dt.datetime, n: int, minutes: int) -> dt.datetime:
    """Entity n's event time, about `minutes` before `now`."""
    # Sub-millisecond parts: event times are read back to the microsecond (Feast) and
    # rounded down to the millisecond (the fetcher).
    return now - dt.timedelta(minutes=minutes + n, microseconds=n * 1_111 + 7)


def rows_of(now: dt.datetime, seed: int) -> dict[int, Row]:
    """The latest row of every entity of one view."""
    rows: dict[int, Row] = {}
    for n in range(ENTITIES):
        expired = n >= 10
        event = event_time(now, n, 180 if expired else 10)
        rows[n] = Row(event, record(n, seed), expired)
    return rows


ARROW = {
    "i32": pa.int32(),
    "i64": pa.int64(),
    "f32": pa.float32(),
    "f64": pa.float64(),
    "str": pa.string(),
    "byt": pa.binary(),
    "flag": pa.bool_(),
    "ts": pa.timestamp("s", tz="UTC"),
}


def write_parquet(path: Path, keys: dict[str, pa.Array], rows: list[Row]) -> None:
    """Rows with their key columns and event_timestamp, typed as Feast reads them."""
    columns: dict[str, pa.Array] = dict(keys)
    columns["event_timestamp"] = pa.array(
        [r.event for r in rows], type=pa.timestamp("us", tz="UTC")
    )
    for feature in FEATURES:
        scalar = feature.removesuffix("_list")
        kind = ARROW[scalar] if scalar == feature else pa.list_(ARROW[scalar])
        columns[feature] = pa.array([r.values[feature] for r in rows], type=kind)
    pq.write_table(pa.table(columns), path)


def ms(event: dt.datetime) -> int:
    """An event time in ms since the epoch, rounded down (exactly: no float)."""
    return (event - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def driver(n: int) -> tuple[int, str]:
    """The (driver_id, city) key of entity n of `materialized`."""
    return 500 + n, f"city-{n % 3}"


# --- the two sides ----------------------------------------------------------------------


@dataclass
class World:
    """One backend's Feast repo, the rows written, Feast's answers and ours."""

    backend: str
    repo: Path
    catalog: FeastCatalog
    plans: Plans
    pushed: dict[int, Row]
    materialized: dict[int, Row]
    feast: dict[str, Any]  # read name -> feast_side.py's answer
    ours: dict[str, list[VectorView]]  # read name -> one vector per entity row
    targets: dict[str, TargetPlan]


def feast_yaml(repo: Path, project: str, backend: str) -> None:
    """feature_store.yaml of a repo on the test Redis (database FEAST_DB) or Cluster."""
    if backend == "redis":
        parsed = urlparse(REDIS_URL)
        online = f'  connection_string: "{parsed.hostname}:{parsed.port},db={FEAST_DB}"\n'
    else:
        nodes = CLUSTER_URL.partition("://")[2].partition("/")[0]
        online = f'  redis_type: redis_cluster\n  connection_string: "{nodes}"\n'
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nprovider: local\nregistry: registry.db\n"
        f"online_store:\n  type: redis\n{online}"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )


def feast_reads() -> list[dict[str, Any]]:
    """The reads both sides answer: each view by features, each feature service."""
    users = [*range(ENTITIES), *MISSING]
    drivers = [driver(n) for n in users]
    both = [
        {"user_id": u, "driver_id": d, "city": c} for u, (d, c) in zip(users, drivers, strict=True)
    ]
    return [
        {"name": "pushed", "features": [f"pushed:{f}" for f in FEATURES],
         "entity_rows": [{"user_id": u} for u in users]},
        {"name": "materialized", "features": [f"materialized:{f}" for f in FEATURES],
         "entity_rows": [{"driver_id": d, "city": c} for d, c in drivers]},
        {"name": "whole", "feature_service": "whole", "full_feature_names": True,
         "entity_rows": both},
        {"name": "subset", "feature_service": "subset", "full_feature_names": True,
         "entity_rows": both},
        {"name": "aliased", "feature_service": "aliased", "full_feature_names": True,
         "entity_rows": [{"customer_id": u} for u in users]},
    ]  # fmt: skip


def target(plans: Plans, read: dict[str, Any]) -> TargetPlan:
    """Our plan answering a read: its feature service's, or its view's group's."""
    if "feature_service" in read:
        return plans.services[read["feature_service"]]
    return plans.groups[read["features"][0].partition(":")[0]]


def open_feast_store(catalog: FeastCatalog) -> KVStore:
    """The store of the repo's online store URL (a generous timeout: not under test here)."""
    # A generous timeout: the store is not under test for speed on a busy 2-core machine.
    return open_store(catalog.config.store_url, timeout_s=10.0)


async def read_ours(
    catalog: FeastCatalog, plans: Plans, reads: list[dict[str, Any]]
) -> dict[str, list[VectorView]]:
    """Our answers to `reads`, through the engine and the Feast store."""
    store = open_feast_store(catalog)
    tiers = CacheTiers(
        l1=L1Cache(10_000), flights=SingleFlight(), l2=None,
        default_l1_ttl_s=5.0, default_l2_ttl_s=60.0, negative_ttl_s=1.0,
    )  # fmt: skip
    engine = FetchEngine({FEAST_STORE: StoreHandle(FEAST_STORE, store, 10.0)}, tiers, Metrics())
    out: dict[str, list[VectorView]] = {}
    try:
        for read in reads:
            plan = target(plans, read)
            entities = [[row[k.name] for k in plan.request_keys] for row in read["entity_rows"]]
            vectors = await engine.fetch(plan, entities, [None] * len(entities))
            out[read["name"]] = [VectorView(v.wire) for v in vectors]
    finally:
        await engine.close()
        await store.close()
    return out




def canonical(feature_type: FeatureType, value: Any) -> Any:
    """One of our values as feast_side.py writes Feast's (bytes as hex)."""
    if feature_type is FeatureType.BYTES:
        return value.hex()
    if feature_type is FeatureType.BYTES_LIST:
        return [v.hex() for v in value]
    return value


def written_value(feature: str, value: Any) -> Any:
    """A written value as it is read back: timestamps in seconds, bytes as hex."""
    if value is None:
        return None
    if isinstance(value, list):
        return [written_value(feature, v) for v in value]
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, bytes):
        return value.hex()
    return value


def redis_client(world: World) -> Any:
    """A redis-py client of the Redis (or Redis Cluster) Feast wrote to."""
    if world.backend == "redis":
        return redis.Redis.from_url(f"{REDIS_URL.rsplit('/', 1)[0]}/{FEAST_DB}", socket_timeout=5)
    host, _, port = CLUSTER_URL.partition("://")[2].split(",")[0].rpartition(":")
    return redis.RedisCluster(host=host, port=int(port), socket_timeout=5)


def build_world(backend: str, repo: Path) -> World:
    """In `repo` (an empty dir): feast apply, materialize and write_to_online_store to
    `backend` ("redis" or "redis_cluster"), then both sides' answers."""
    project = f"t{uuid.uuid4().hex[:12]}"
    feast_yaml(repo, project, backend)
    (repo / "definitions.py").write_text(DEFINITIONS.read_text())
    now = dt.datetime.now(dt.UTC)
    pushed = rows_of(now, seed=0)
    materialized = rows_of(now, seed=50)
    write_parquet(
        repo / "pushed.parquet",
        {"user_id": pa.array(list(pushed), type=pa.int64())},
        list(pushed.values()),
    )
    # Older rows of entities 1 and 2 too: materialize must keep the newest of each.
    older = {n: Row(event_time(now, n, 40), record(n, seed=90), False) for n in (1, 2)}
    source = [*materialized.items(), *older.items()]
    write_parquet(
        repo / "materialized.parquet",
        {
            "driver_id": pa.array([driver(n)[0] for n, _ in source], type=pa.int64()),
            "city": pa.array([driver(n)[1] for n, _ in source], type=pa.string()),
        },
        [row for _, row in source],
    )
    run_feast(["apply"], repo)
    start = (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    run_feast(["materialize", start, end, "--views", "materialized"], repo)
    wanted = feast_reads()
    feast = run_side(
        repo,
        [{"op": "write", "view": "pushed", "parquet": str(repo / "pushed.parquet")}]
        + [{"op": "read", **read} for read in wanted],
    )["reads"]
    catalog = load_feast_repo(repo / "feature_store.yaml")
    plans = catalog.plans(encode_values)
    ours = asyncio.run(read_ours(catalog, plans, wanted))
    return World(
        backend=backend, repo=repo, catalog=catalog, plans=plans, pushed=pushed,
        materialized=materialized, feast=feast, ours=ours,
        targets={read["name"]: target(plans, read) for read in wanted},
    )  # fmt: skip


# --- our server over a Feast repo -------------------------------------------------------


class FeastServer:
    """fetcher's App serving a Feast repo (gRPC and HTTP, [feast] settings) on its own
    event loop in a thread, so sync tests and Feast's processes can call it."""

    def __init__(self, repo: Path, authz: Any = None, **feast: Any) -> None:
        from fetcher.config import FeastSettings, ServerSettings, Settings

        config = repo / "fetcher-config"
        (config / "groups").mkdir(parents=True, exist_ok=True)
        (config / "services").mkdir(exist_ok=True)
        self.settings = Settings(
            server=ServerSettings(
                listen="127.0.0.1:0", config_dir=str(config), metrics_listen="",
                drain_delay_s=0.0, shutdown_grace_s=5.0, default_deadline_ms=10_000,
            ),
            feast=FeastSettings(
                repo=str(repo / "feature_store.yaml"), http_listen="127.0.0.1:0",
                timeout_ms=10_000, **feast,
            ),
            authz=authz or {},
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.app: Any = None

    def call(self, coro: Any, timeout_s: float = 120.0) -> Any:
        """Run a coroutine on the server's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def __enter__(self) -> FeastServer:
        from fetcher.server import App

        self.thread.start()

        async def start() -> Any:
            app = App(self.settings)
            app.load()
            await app.start()
            return app

        self.app = self.call(start())
        return self

    @property
    def target(self) -> str:
        """host:port of the gRPC server."""
        return f"127.0.0.1:{self.app.port}"

    @property
    def http(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.app.feast_http_port}"

    def __exit__(self, *exc: object) -> None:
        try:
            if self.app is not None:
                self.call(self.app.stop(grace_s=5.0, drain_delay_s=0.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()
