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
import time
from collections.abc import Iterator
from typing import Any

import mmh3
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from fetcher.feast import FEAST_STORE
from fetcher.types import Status
from kvstores import FeastRedisClusterStore
from tests.integration.feast_support import (
    ENTITIES,
    FEATURES,
    MISSING,
    TTL_S,
    Row,
    World,
    canonical,
    driver,
    ms,
    open_feast_store,
    read_ours,
    redis_client,
    written_value,
)
from tests.servers import spy_redis_read_writes
from tests.unit.fetch_support import vector_values

FEAST_PRESENT = 1  # feast.serving.FieldStatus.PRESENT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _cells(world: World, name: str) -> Iterator[tuple[str, int, dict[str, Any], int, Any, int]]:
    """(feature, entity row, Feast's cell, our status, our value, our event ms) of a read."""
    answer = world.feast[name]
    column_of = dict(zip(answer["names"], answer["columns"], strict=True))
    plan = world.targets[name]
    for row, view in enumerate(world.ours[name]):
        values = vector_values(plan, view)
        for i, feature in enumerate(plan.feature_names):
            event_ms = view.event_ms[plan.feature_joins[i]]
            ours_value = canonical(plan.feature_types[i], values[feature])
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
            assert event_ms == ms(written.event), where
            if written.expired:
                assert status == Status.OUTSIDE_MAX_AGE, where
            elif written.values[bare] is None:
                assert status == Status.NULL_VALUE, where
            else:
                assert status == Status.PRESENT, where
                assert value == written_value(bare, written.values[bare]), where


def test_feast_serves_rows_past_the_ttl_that_we_call_outside_max_age(world: World) -> None:
    answer = world.feast["pushed"]
    column_of = dict(zip(answer["names"], answer["columns"], strict=True))
    plan = world.targets["pushed"]
    for n in (10, 11):
        written = world.pushed[n]
        assert written.expired
        view = world.ours["pushed"][n]
        assert set(view.statuses) == {Status.OUTSIDE_MAX_AGE}
        assert view.event_ms == [ms(written.event)]
        for feature in plan.feature_names:
            cell = column_of[feature][n]
            assert cell["status"] == FEAST_PRESENT
            assert cell["value"] == written_value(feature, written.values[feature]), feature


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



def _hash_of(world: World, user: int) -> dict[bytes, bytes]:
    client = redis_client(world)
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
    client = redis_client(world)
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
            "entity_rows": [{"user_id": u, "driver_id": driver(0)[0], "city": driver(0)[1]}
                            for u in (user, 0)]}  # fmt: skip
    (broken, fine) = asyncio.run(read_ours(world.catalog, world.plans, [read]))["broken"]
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
    store = open_feast_store(world.catalog)
    plan = world.targets["whole"]
    lookups = [
        (join.dataset, join.entity_key([n, *driver(n)]), None)
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
