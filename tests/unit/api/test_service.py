"""FeatureServicer behind a real in-process grpc.aio server on 127.0.0.1: validation
(status codes, messages naming the field), metadata, listings and point-in-time reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from fetcher.api._service import FeatureServicer, add_to_server
from fetcher.client import decode_vectors, key_value, timestamp
from fetcher.types import Status
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc
from tests.unit.fetch_support import DAY_MS, MINUTE_MS, FetchHarness, demo_snapshot, now_ms, record

MAX_BATCH = 4
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class Served:
    """A harness (engine over real stores) and a stub connected to its server."""

    h: FetchHarness
    stub: Any


@pytest.fixture(params=["wire", "generated"])
async def served(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    """Every test runs against both registrations: the server's (service.add_to_server,
    feature RPCs answering in wire bytes) and the generated one (messages)."""
    # An online service may not join an offline group (the catalog refuses it): both off.
    h = FetchHarness(tmp_path, demo_snapshot(offline={"place_visits", "user_place"}))
    servicer = FeatureServicer(
        lambda: h.snapshot,
        h.engine,
        h.metrics,
        max_batch_entities=MAX_BATCH,
        default_deadline_s=0.3,
    )
    server = grpc.aio.server()
    if request.param == "wire":
        add_to_server(servicer, server)
    else:
        pb_grpc.add_FeatureServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(h, pb_grpc.FeatureServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(None)
        await h.close()


def single(target: str, name: str, keys: dict[str, Any], **extra: Any) -> pb.GetFeaturesRequest:
    return pb.GetFeaturesRequest(
        keys={k: key_value(v) for k, v in keys.items()}, **{target: name}, **extra
    )


def batch(target: str, name: str, entities: list[dict[str, Any]], **extra: Any) -> Any:
    return pb.GetBatchFeaturesRequest(
        entities=[pb.Entity(keys={k: key_value(v) for k, v in e.items()}) for e in entities],
        **{target: name},
        **extra,
    )


async def refused(call: Callable[[Any], Any], request: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(request, timeout=5)
    return info.value


async def test_get_features_serves_values_and_metadata_of_the_catalog(served: Served) -> None:
    h = served.h
    written = now_ms() - MINUTE_MS
    user, merchant = record(h.group("user_profile"), 1), record(h.group("merchant_stats"), 2)
    await h.write("user_profile", [1], user, written)
    await h.write("merchant_stats", [2], merchant, written)
    response = await served.stub.GetFeatures(
        single("feature_service", "user_merchant", {"user_id": 1, "merchant_id": 2}), timeout=5
    )
    plan = h.plan("service", "user_merchant")
    meta = response.metadata
    assert meta.config_version == h.snapshot.catalog.version
    assert list(meta.feature_names) == list(plan.feature_names)
    assert list(meta.feature_types) == [int(t) for t in plan.feature_types]
    assert list(meta.groups) == ["user_profile", "merchant_stats"]
    assert list(meta.feature_groups) == [0] * 22 + [1] * 22
    (values,) = decode_vectors(meta, [response.vector])
    want = {f"user_{k}": v for k, v in user.items()} | {
        f"merchant_{k}": v for k, v in merchant.items()
    }
    assert {name: fv.value for name, fv in values.items()} == want
    assert {fv.status for fv in values.values()} == {Status.PRESENT}
    assert values["merchant_logo_hash"].event_ms == written
    assert values["user_age"].group == "user_profile"


async def test_batch_entity_at_overrides_the_request_at(served: Served) -> None:
    h = served.h
    t1, t2 = now_ms() - 2 * DAY_MS, now_ms() - MINUTE_MS
    group = h.group("user_profile")
    await h.write("user_profile", [5], record(group, 1), t1)
    await h.write("user_profile", [5], record(group, 2), t2)
    request = batch("feature_group", "user_profile", [{"user_id": 5}] * 3, at=timestamp(t1 + 1))
    request.entities[1].at.CopyFrom(timestamp(t2))
    request.entities[2].at.CopyFrom(timestamp(t1 - 1))
    response = await served.stub.GetBatchFeatures(request, timeout=5)
    older, newer, before = decode_vectors(response.metadata, response.vectors)
    assert older["age"].value == record(group, 1)["age"] and older["age"].event_ms == t1
    assert newer["age"].value == record(group, 2)["age"] and newer["age"].event_ms == t2
    assert before["age"].status == Status.NOT_FOUND


@pytest.mark.parametrize(
    ("target", "name"), [("feature_group", "no_such_group"), ("feature_service", "nope_svc")]
)
async def test_unknown_target_is_not_found_naming_it(
    served: Served, target: str, name: str
) -> None:
    err = await refused(served.stub.GetFeatures, single(target, name, {"user_id": 1}))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert f"{target}: {name!r}" in (err.details() or "")
    err = await refused(served.stub.GetBatchFeatures, batch(target, name, [{"user_id": 1}]))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_offline_targets_are_failed_precondition(served: Served) -> None:
    err = await refused(
        served.stub.GetFeatures,
        single("feature_group", "place_visits", {"s2_cell_id": 1, "place_id": "p"}),
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "feature_group: 'place_visits' is offline" in (err.details() or "")
    err = await refused(
        served.stub.GetBatchFeatures,
        batch("feature_service", "user_place", [{"user_id": 1, "cell_id": 2, "place_id": "p"}]),
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "feature_service: 'user_place' is offline" in (err.details() or "")


NEEDS = "feature service 'user_merchant' needs user_id:int64, merchant_id:int64"


@pytest.mark.parametrize(
    ("keys", "wanted"),
    [
        ({}, f"keys: missing key 'user_id'; {NEEDS}"),
        ({"user_id": 1}, f"keys: missing key 'merchant_id'; {NEEDS}"),
        ({"user_id": 1, "merchant_id": 2, "shop": 3}, f"keys: unknown key(s) 'shop'; {NEEDS}"),
        ({"user_id": "1", "merchant_id": 2}, "keys['user_id']: expected int64_value, got string"),
        ({"user_id": 1, "merchant_id": b"\x02"}, "keys['merchant_id']: expected int64_value"),
    ],
    ids=["none", "missing", "extra", "string-for-int", "bytes-for-int"],
)
async def test_bad_keys_are_invalid_argument_naming_the_field(
    served: Served, keys: dict[str, Any], wanted: str
) -> None:
    err = await refused(served.stub.GetFeatures, single("feature_service", "user_merchant", keys))
    assert err.code() == INVALID
    assert wanted in (err.details() or "")


async def test_key_without_a_value_is_invalid_argument(served: Served) -> None:
    request = pb.GetFeaturesRequest(feature_group="user_profile", keys={"user_id": pb.Value()})
    err = await refused(served.stub.GetFeatures, request)
    assert err.code() == INVALID
    assert "keys['user_id']: expected int64_value, got no value" in (err.details() or "")


async def test_no_target_is_invalid_argument(served: Served) -> None:
    err = await refused(served.stub.GetFeatures, pb.GetFeaturesRequest())
    assert (err.code(), err.details()) == (INVALID, "target: set feature_group or feature_service")
    err = await refused(served.stub.GetBatchFeatures, pb.GetBatchFeaturesRequest())
    assert err.code() == INVALID


async def test_batch_validation_names_the_entity(served: Served) -> None:
    good = {"user_id": 1}
    err = await refused(
        served.stub.GetBatchFeatures,
        batch("feature_group", "user_profile", [good, good, good, {"user": 1}]),
    )
    assert err.code() == INVALID
    assert "entities[3].keys: missing key 'user_id'" in (err.details() or "")
    err = await refused(
        served.stub.GetBatchFeatures,
        batch("feature_group", "user_profile", [good, {"user_id": 2, "x": 1}]),
    )
    assert "entities[1].keys: unknown key(s) 'x'" in (err.details() or "")
    err = await refused(served.stub.GetBatchFeatures, batch("feature_group", "user_profile", []))
    assert err.code() == INVALID
    assert "entities: empty batch" in (err.details() or "")
    err = await refused(
        served.stub.GetBatchFeatures,
        batch("feature_group", "user_profile", [good] * (MAX_BATCH + 1)),
    )
    assert err.code() == INVALID
    assert f"above the limit of {MAX_BATCH}" in (err.details() or "")
    assert "server.max_batch_entities" in (err.details() or "")


AHEAD_S = now_ms() // 1000 + 2 * 86_400


@pytest.mark.parametrize(
    ("stamp", "wanted"),
    [
        (Timestamp(seconds=-1), ": -1 s is before 1970-01-01"),
        (Timestamp(seconds=AHEAD_S), f": {AHEAD_S} s is more than a day in the future"),
        (Timestamp(seconds=now_ms()), " s is more than a day in the future (did you send ms"),
        (Timestamp(seconds=1, nanos=-1), ".nanos: -1 is outside 0..999999999"),
        (Timestamp(seconds=1, nanos=1_000_000_000), ".nanos: 1000000000 is outside"),
    ],
    ids=["negative", "two-days-ahead", "ms-as-s", "nanos-negative", "nanos-too-big"],
)
async def test_bad_timestamps_are_invalid_argument_naming_the_field(
    served: Served, stamp: Timestamp, wanted: str
) -> None:
    err = await refused(
        served.stub.GetFeatures, single("feature_group", "user_profile", {"user_id": 1}, at=stamp)
    )
    assert err.code() == INVALID
    assert (err.details() or "").startswith("at")
    assert wanted in (err.details() or "")
    request = batch("feature_group", "user_profile", [{"user_id": 1}, {"user_id": 2}])
    request.entities[1].at.CopyFrom(stamp)
    err = await refused(served.stub.GetBatchFeatures, request)
    assert err.code() == INVALID
    assert (err.details() or "").startswith("entities[1].at")
    assert wanted in (err.details() or "")
    err = await refused(
        served.stub.GetBatchFeatures,
        batch("feature_group", "user_profile", [{"user_id": 1}], at=stamp),
    )
    assert (err.details() or "").startswith("at")


async def test_request_without_deadline_gets_the_default_one(served: Served) -> None:
    h = served.h
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms())
    h.set_timeout(5.0)
    h.stores["main"].delay_s = 10.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await served.stub.GetFeatures(
        single("feature_group", "user_profile", {"user_id": 1})
    )
    assert loop.time() - started < 2.5  # the servicer's 0.3 s default, not the 5 s timeout
    assert set(response.vector.statuses) == {int(Status.ERROR)}


async def test_list_feature_groups_all_by_name_and_unknown(served: Served) -> None:
    catalog = served.h.snapshot.catalog
    everything = await served.stub.ListFeatureGroups(pb.ListFeatureGroupsRequest(), timeout=5)
    assert everything.config_version == catalog.version
    assert [g.name for g in everything.groups] == sorted(catalog.groups)
    assert [s.name for s in everything.services] == sorted(catalog.services)
    one = await served.stub.ListFeatureGroups(
        pb.ListFeatureGroupsRequest(name="merchant_stats"), timeout=5
    )
    (group,) = one.groups
    assert not one.services
    assert [(k.name, k.type) for k in group.keys] == [("merchant_id", pb.KEY_INT64)]
    assert [f.name for f in group.features] == [
        f.name for f in catalog.groups["merchant_stats"].features
    ]
    assert (group.store, group.max_age_seconds, group.online) == ("main", 172800, True)
    svc = await served.stub.ListFeatureGroups(
        pb.ListFeatureGroupsRequest(name="user_place"), timeout=5
    )
    (service,) = svc.services
    assert [k.name for k in service.keys] == ["user_id", "cell_id", "place_id"]
    assert list(service.groups) == ["user_profile", "place_visits"]
    assert service.features[0].name == "user_age"
    err = await refused(
        served.stub.ListFeatureGroups, pb.ListFeatureGroupsRequest(name="nothing_here")
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "'nothing_here'" in (err.details() or "")
