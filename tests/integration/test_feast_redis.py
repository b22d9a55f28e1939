"""What Feast wrote, read by the fetcher and compared with what Feast itself reads.

The real `feast` package (its own venv, tests/feast_env.py) applies the repo of
tests/integration/feast_repo/ with `feast apply`, writes rows of every value type Feast's
Redis store writes (and their lists) with `write_to_online_store` (view `pushed`) and with
`feast materialize` from a Parquet source (view `materialized`, a two-column key), with
nulls, empty lists, missing entities and rows older than the views' TTL, into the test
Redis and the test Redis Cluster (a project of its own per run). Then the fetcher loads
feature_store.yaml + registry.db (fetcher.feast), reads the same rows through the engine
and the Feast store (kvstores.feast_redis), and every cell is compared with Feast's own
get_online_features:

- a value Feast returns is ours, value for value, with the same event time (in ms);
- Feast reports every cell PRESENT (its Python server sets no other status on Redis
  reads): a missing entity (event time 0) is NOT_FOUND for us, a null of a row that
  exists is NULL_VALUE, and a row older than its view's TTL, which Feast still serves,
  is OUTSIDE_MAX_AGE for us.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mmh3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from google.protobuf.timestamp_pb2 import Timestamp

from fetcher.api import VectorView, encode_values
from fetcher.cache import L1Cache, SingleFlight
from fetcher.engine import CacheTiers, FetchEngine, Plans, StoreHandle, TargetPlan
from fetcher.feast import FEAST_STORE, FeastCatalog, load_feast_repo
from fetcher.metrics import Metrics
from fetcher.types import FeatureType, Status
from kvstores import FeastRedisClusterStore, KVStore, open_store
from tests.conftest import REDIS_URL
from tests.feast_env import run_feast, run_side
from tests.servers import spy_redis_read_writes
from tests.unit.fetch_support import vector_values

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

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
FEAST_PRESENT = 1  # feast.serving.FieldStatus.PRESENT


# --- the rows written -------------------------------------------------------------------


def _scalar(name: str, n: int) -> Any:
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


def _value(feature: str, n: int) -> Any:
    if feature.endswith("_list"):
        return [_scalar(feature.removesuffix("_list"), n + k) for k in range(n % 4)]
    return _scalar(feature, n)


def _record(n: int, seed: int) -> dict[str, Any]:
    if n == 8:
        return dict.fromkeys(FEATURES)
    record = {f: _value(f, n + seed) for f in FEATURES}
    if n == 9:
        record.update({f: None for f in FEATURES[::2]})
    return record


@dataclass(frozen=True)
class Row:
    """The latest row of one entity of a view, as written."""

    event: dt.datetime
    values: dict[str, Any]
    expired: bool


def _event(now: dt.datetime, n: int, minutes: int) -> dt.datetime:
    # Sub-millisecond parts: event times are read back to the microsecond (Feast) and
    # rounded down to the millisecond (the fetcher).
    return now - dt.timedelta(minutes=minutes + n, microseconds=n * 1_111 + 7)


def _rows(now: dt.datetime, seed: int) -> dict[int, Row]:
    rows: dict[int, Row] = {}
    for n in range(ENTITIES):
        expired = n >= 10
        event = _event(now, n, 180 if expired else 10)
        rows[n] = Row(event, _record(n, seed), expired)
    return rows


_ARROW = {
    "i32": pa.int32(),
    "i64": pa.int64(),
    "f32": pa.float32(),
    "f64": pa.float64(),
    "str": pa.string(),
    "byt": pa.binary(),
    "flag": pa.bool_(),
    "ts": pa.timestamp("s", tz="UTC"),
}


def _write_parquet(path: Path, keys: dict[str, pa.Array], rows: list[Row]) -> None:
    columns: dict[str, pa.Array] = dict(keys)
    columns["event_timestamp"] = pa.array(
        [r.event for r in rows], type=pa.timestamp("us", tz="UTC")
    )
    for feature in FEATURES:
        scalar = feature.removesuffix("_list")
        kind = _ARROW[scalar] if scalar == feature else pa.list_(_ARROW[scalar])
        columns[feature] = pa.array([r.values[feature] for r in rows], type=kind)
    pq.write_table(pa.table(columns), path)


def _ms(event: dt.datetime) -> int:
    """An event time in ms since the epoch, rounded down (exactly: no float)."""
    return (event - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def _driver(n: int) -> tuple[int, str]:
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


def _feast_yaml(repo: Path, project: str, backend: str) -> None:
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


def _reads() -> list[dict[str, Any]]:
    users = [*range(ENTITIES), *MISSING]
    drivers = [_driver(n) for n in users]
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


def _target(plans: Plans, read: dict[str, Any]) -> TargetPlan:
    if "feature_service" in read:
        return plans.services[read["feature_service"]]
    return plans.groups[read["features"][0].partition(":")[0]]


def _open_store(catalog: FeastCatalog) -> KVStore:
    # A generous timeout: the store is not under test for speed on a busy 2-core machine.
    return open_store(catalog.config.store_url, timeout_s=10.0)


async def _read_ours(
    catalog: FeastCatalog, plans: Plans, reads: list[dict[str, Any]]
) -> dict[str, list[VectorView]]:
    store = _open_store(catalog)
    tiers = CacheTiers(
        l1=L1Cache(10_000), flights=SingleFlight(), l2=None,
        default_l1_ttl_s=5.0, default_l2_ttl_s=60.0, negative_ttl_s=1.0,
    )  # fmt: skip
    engine = FetchEngine({FEAST_STORE: StoreHandle(FEAST_STORE, store, 10.0)}, tiers, Metrics())
    out: dict[str, list[VectorView]] = {}
    try:
        for read in reads:
            plan = _target(plans, read)
            entities = [[row[k.name] for k in plan.request_keys] for row in read["entity_rows"]]
            vectors = await engine.fetch(plan, entities, [None] * len(entities))
            out[read["name"]] = [VectorView(v.wire) for v in vectors]
    finally:
        await engine.close()
        await store.close()
    return out


@pytest.fixture(scope="module", params=["redis", "redis_cluster"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    """feast apply, materialize and write_to_online_store, then both sides' answers."""
    backend: str = request.param
    repo = tmp_path_factory.mktemp(f"feast-{backend}")
    project = f"t{uuid.uuid4().hex[:12]}"
    _feast_yaml(repo, project, backend)
    (repo / "definitions.py").write_text(DEFINITIONS.read_text())
    now = dt.datetime.now(dt.UTC)
    pushed = _rows(now, seed=0)
    materialized = _rows(now, seed=50)
    _write_parquet(
        repo / "pushed.parquet",
        {"user_id": pa.array(list(pushed), type=pa.int64())},
        list(pushed.values()),
    )
    # Older rows of entities 1 and 2 too: materialize must keep the newest of each.
    older = {n: Row(_event(now, n, 40), _record(n, seed=90), False) for n in (1, 2)}
    source = [*materialized.items(), *older.items()]
    _write_parquet(
        repo / "materialized.parquet",
        {
            "driver_id": pa.array([_driver(n)[0] for n, _ in source], type=pa.int64()),
            "city": pa.array([_driver(n)[1] for n, _ in source], type=pa.string()),
        },
        [row for _, row in source],
    )
    run_feast(["apply"], repo)
    start = (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    run_feast(["materialize", start, end, "--views", "materialized"], repo)
    reads = _reads()
    feast = run_side(
        repo,
        [{"op": "write", "view": "pushed", "parquet": str(repo / "pushed.parquet")}]
        + [{"op": "read", **read} for read in reads],
    )["reads"]
    catalog = load_feast_repo(repo / "feature_store.yaml")
    plans = catalog.plans(encode_values)
    ours = asyncio.run(_read_ours(catalog, plans, reads))
    return World(
        backend=backend, repo=repo, catalog=catalog, plans=plans, pushed=pushed,
        materialized=materialized, feast=feast, ours=ours,
        targets={read["name"]: _target(plans, read) for read in reads},
    )  # fmt: skip


# --- comparing ---------------------------------------------------------------------------


def _canonical(feature_type: FeatureType, value: Any) -> Any:
    """One of our values as feast_side.py writes Feast's (bytes as hex)."""
    if feature_type is FeatureType.BYTES:
        return value.hex()
    if feature_type is FeatureType.BYTES_LIST:
        return [v.hex() for v in value]
    return value


def _written(feature: str, value: Any) -> Any:
    """A written value as it is read back: timestamps in seconds, bytes as hex."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_written(feature, v) for v in value]
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, bytes):
        return value.hex()
    return value


def _cells(world: World, name: str) -> Iterator[tuple[str, int, dict[str, Any], int, Any, int]]:
    """(feature, entity row, Feast's cell, our status, our value, our event ms) of a read."""
    answer = world.feast[name]
    column_of = dict(zip(answer["names"], answer["columns"], strict=True))
    plan = world.targets[name]
    for row, view in enumerate(world.ours[name]):
        values = vector_values(plan, view)
        for i, feature in enumerate(plan.feature_names):
            event_ms = view.event_ms[plan.feature_joins[i]]
            ours_value = _canonical(plan.feature_types[i], values[feature])
            yield feature, row, column_of[feature][row], view.statuses[i], ours_value, event_ms


def _stale(ts: list[int]) -> bool:
    age_s = dt.datetime.now(dt.UTC).timestamp() - (ts[0] + ts[1] / 1e9)
    return age_s > TTL_S


def test_every_cell_equals_feasts_own_read(world: World) -> None:
    seen: dict[int, int] = {}
    for name in world.feast:
        names = set(world.feast[name]["names"])
        assert set(world.targets[name].feature_names) <= names, name
        for feature, row, feast, status, value, event_ms in _cells(world, name):
            where = f"{world.backend} read {name!r}, {feature!r}, entity row {row}"
            seen[status] = seen.get(status, 0) + 1
            assert feast["status"] == FEAST_PRESENT, where  # Feast's Redis reads: always
            if feast["ts"] == [0, 0]:  # no row of this view for the entity
                assert feast["null"], where
                assert (status, event_ms) == (Status.NOT_FOUND, 0), where
                continue
            seconds, nanos = feast["ts"]
            assert event_ms == seconds * 1000 + nanos // 1_000_000, where
            if _stale(feast["ts"]):  # Feast ignores the TTL; we do not
                assert status == Status.OUTSIDE_MAX_AGE, where
            elif feast["null"]:
                assert status == Status.NULL_VALUE, where
            else:
                assert status == Status.PRESENT, where
                assert value == feast["value"], where
    # Every status was met, many times.
    assert seen.keys() == {
        Status.PRESENT, Status.NULL_VALUE, Status.NOT_FOUND, Status.OUTSIDE_MAX_AGE
    }, seen
    assert seen[Status.PRESENT] > 400, seen


def _latest(world: World, name: str, feature: str, row: int) -> tuple[Row | None, str]:
    """The row written for a read's entity row that serves `feature`, and its feature name."""
    view, _, bare = feature.rpartition("__")
    if not view:
        view, bare = name, feature
    if view == "alias":
        view = "pushed"
    entity = row if row < ENTITIES else None
    rows = world.pushed if view == "pushed" else world.materialized
    return (None if entity is None else rows[entity]), bare


def test_our_values_are_the_values_written(world: World) -> None:
    for name in world.feast:
        for feature, row, _, status, value, event_ms in _cells(world, name):
            written, bare = _latest(world, name, feature, row)
            where = f"{world.backend} read {name!r}, {feature!r}, entity row {row}"
            if written is None:
                assert status == Status.NOT_FOUND, where
                continue
            assert event_ms == _ms(written.event), where
            if written.expired:
                assert status == Status.OUTSIDE_MAX_AGE, where
            elif written.values[bare] is None:
                assert status == Status.NULL_VALUE, where
            else:
                assert status == Status.PRESENT, where
                assert value == _written(bare, written.values[bare]), where


def test_feast_serves_rows_past_the_ttl_that_we_call_outside_max_age(world: World) -> None:
    answer = world.feast["pushed"]
    column_of = dict(zip(answer["names"], answer["columns"], strict=True))
    plan = world.targets["pushed"]
    for n in (10, 11):
        written = world.pushed[n]
        assert written.expired
        view = world.ours["pushed"][n]
        assert set(view.statuses) == {Status.OUTSIDE_MAX_AGE}
        assert view.event_ms == [_ms(written.event)]
        for feature in plan.feature_names:
            cell = column_of[feature][n]
            assert cell["status"] == FEAST_PRESENT
            assert cell["value"] == _written(feature, written.values[feature]), feature


def test_the_registry_becomes_the_catalog(world: World) -> None:
    catalog = world.catalog
    assert set(catalog.groups) == {
        "pushed", "materialized", "subset/pushed", "subset/materialized", "aliased/alias",
    }  # fmt: skip
    pushed = catalog.groups["pushed"]
    assert [k.name for k in pushed.keys] == ["user_id"]
    assert [k.name for k in catalog.groups["materialized"].keys] == ["driver_id", "city"]
    assert pushed.max_age_s == TTL_S and pushed.store == FEAST_STORE
    assert [f.name for f in pushed.features] == list(FEATURES)
    assert [f.type.name for f in pushed.features] == [
        "INT64", "INT64", "DOUBLE", "DOUBLE", "STRING", "BYTES", "BOOL", "INT64",
        "INT64_LIST", "INT64_LIST", "DOUBLE_LIST", "DOUBLE_LIST", "STRING_LIST", "BYTES_LIST",
        "BOOL_LIST", "INT64_LIST",
    ]  # fmt: skip
    assert [f.name for f in catalog.groups["subset/materialized"].features] == ["byt_list", "i32"]
    subset = catalog.services["subset"]
    assert [(j.group, j.prefix) for j in subset.joins] == [
        ("subset/pushed", "pushed__"), ("subset/materialized", "materialized__"),
    ]  # fmt: skip
    (alias,) = catalog.services["aliased"].joins
    assert alias.key_mapping == (("customer_id", "user_id"),) and alias.prefix == "alias__"
    assert [k.name for k in world.targets["aliased"].request_keys] == ["customer_id"]
    skipped = "\n".join(catalog.skipped)
    assert "'offline_only': not served (online is false)" in skipped
    assert "on demand feature view 'bumped'" in skipped
    assert catalog.config.store_url.startswith(
        "feast+redis+cluster://" if world.backend == "redis_cluster" else "feast+redis://"
    )


def _client(world: World) -> Any:
    """A redis-py client of the Redis (or Redis Cluster) Feast wrote to."""
    if world.backend == "redis":
        return redis.Redis.from_url(f"{REDIS_URL.rsplit('/', 1)[0]}/{FEAST_DB}", socket_timeout=5)
    host, _, port = CLUSTER_URL.partition("://")[2].split(",")[0].rpartition(":")
    return redis.RedisCluster(host=host, port=int(port), socket_timeout=5)


def _hash_of(world: World, user: int) -> dict[bytes, bytes]:
    client = _client(world)
    try:
        found: dict[bytes, bytes] = client.hgetall(world.catalog.key_encoders["pushed"]([user]))
        return found
    finally:
        client.close()


def test_feasts_hash_is_what_the_fetcher_reads(world: World) -> None:
    # The entity key bytes, the murmur3 field names and the _ts field, checked on the
    # hash Feast wrote rather than through our own reader.
    fields = _hash_of(world, 3)
    expected = {
        mmh3.hash(f"pushed:{f}", signed=False).to_bytes(4, "little") for f in FEATURES
    } | {b"_ts:pushed"}
    assert set(fields) == expected
    assert _hash_of(world, MISSING[0]) == {}


def test_a_value_that_does_not_decode_is_error_for_its_entity_and_view_only(
    world: World,
) -> None:
    # User 2000 gets a `pushed` row whose i64 field is not a Value (written here, not by
    # Feast): that entity's `pushed` features are ERROR; its other view and other users
    # are served.
    user = 2000
    client = _client(world)
    try:
        client.hset(
            world.catalog.key_encoders["pushed"]([user]),
            mapping={
                b"_ts:pushed": Timestamp(seconds=int(time.time()) - 60).SerializeToString(),
                mmh3.hash("pushed:i64", signed=False).to_bytes(4, "little"): b"\xff\xff",
            },
        )
    finally:
        client.close()
    read = {"name": "broken", "feature_service": "whole",
            "entity_rows": [{"user_id": u, "driver_id": _driver(0)[0], "city": _driver(0)[1]}
                            for u in (user, 0)]}  # fmt: skip
    (broken, fine) = asyncio.run(_read_ours(world.catalog, world.plans, [read]))["broken"]
    plan = world.plans.services["whole"]
    joins = [plan.feature_joins[i] for i in range(len(plan.feature_names))]
    assert [s for s, j in zip(broken.statuses, joins, strict=True) if j == 0] == [
        Status.ERROR
    ] * len(FEATURES)
    assert Status.ERROR not in [s for s, j in zip(broken.statuses, joins, strict=True) if j == 1]
    assert Status.ERROR not in fine.statuses


async def test_one_round_trip_for_every_view_and_entity(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Standalone: one socket write, whose replies are all read before the call returns.
    # Cluster: one pipeline, which redis-py sends as one write per node, concurrently.
    if world.backend == "redis":
        writes = spy_redis_read_writes(monkeypatch)
    else:
        writes = []
        real_execute = FeastRedisClusterStore._execute

        async def counting(self: Any, client: Any, commands: Any) -> Any:
            writes.append(len(commands))
            return await real_execute(self, client, commands)

        monkeypatch.setattr(FeastRedisClusterStore, "_execute", counting)
    store = _open_store(world.catalog)
    plan = world.targets["whole"]
    lookups = [
        (join.dataset, join.entity_key([n, *_driver(n)]), None)
        for n in [*range(ENTITIES), *MISSING]
        for join in plan.joins
    ]
    try:
        await store.multi_get(lookups[:1])  # connects (a SELECT of the database first)
        writes.clear()
        found = await store.multi_get(lookups)
    finally:
        await store.close()
    assert len(writes) == 1
    assert sum(f is not None for f in found) == 2 * ENTITIES
