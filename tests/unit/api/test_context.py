"""Request-time values and derived features through FeatureServicer on a real in-process
grpc.aio server: values checked against the service's context (missing, unknown, mistyped
-> INVALID_ARGUMENT naming the field), targets without context refuse any, entity values
over the request's, derived features in the metadata and the listing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fetcher.api._service import FeatureServicer, add_to_server
from fetcher.client import decode_vectors, event_value, key_value
from fetcher.types import ContextValue, Derivation, FeatureType, Status
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc
from tests.unit.derive_support import DERIVATIONS, NAMES, derived_snapshot, expected
from tests.unit.fetch_support import MINUTE_MS, FetchHarness, now_ms, record

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NEEDS = "feature service 'user_merchant' reads amount:double, channel:string"
UM = {"user_id": 1, "merchant_id": 2}


class Served:
    """The harness and a stub of a server over it."""

    def __init__(self, h: FetchHarness, stub: Any) -> None:
        self.h, self.stub = h, stub


@pytest.fixture(params=["wire", "generated"])
async def served(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    h = FetchHarness(tmp_path, derived_snapshot())
    servicer = FeatureServicer(lambda: h.snapshot, h.engine, h.metrics,
                               max_batch_entities=10, default_deadline_s=2.0)
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


def values(mapping: dict[str, Any]) -> dict[str, pb.EventValue]:
    return {name: event_value(v) for name, v in mapping.items()}


def single(context: dict[str, Any] | None = None, target: str = "feature_service",
           name: str = "user_merchant", keys: dict[str, Any] | None = None) -> Any:
    return pb.GetFeaturesRequest(
        **{target: name}, keys={k: key_value(v) for k, v in (keys or UM).items()},
        context=values(context or {}))


def batch(contexts: list[dict[str, Any] | None], default: dict[str, Any] | None = None,
          target: str = "feature_service", name: str = "user_merchant",
          keys: dict[str, Any] | None = None) -> Any:
    return pb.GetBatchFeaturesRequest(
        **{target: name}, context=values(default or {}),
        entities=[pb.Entity(keys={k: key_value(v) for k, v in (keys or UM).items()},
                            context=values(c or {})) for c in contexts])


async def refused(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(request, timeout=5)
    return info.value.code(), info.value.details() or ""


def derived(row: dict[str, Any]) -> dict[str, tuple[Status, Any]]:
    return {n: (row[n].status, row[n].value if row[n].status is Status.PRESENT else None)
            for n in NAMES}


async def test_get_features_serves_derived_features_after_the_joins(served: Served) -> None:
    h = served.h
    t = now_ms() - MINUTE_MS
    user, merchant = record(h.group("user_profile"), 1), record(h.group("merchant_stats"), 2)
    await h.write("user_profile", [1], user, t)
    await h.write("merchant_stats", [2], merchant, t - 3)
    response = await served.stub.GetFeatures(single({"amount": 42.0, "channel": "web"}),
                                             timeout=5)
    meta = response.metadata
    assert list(meta.feature_names)[44:] == list(NAMES)
    assert list(meta.feature_types)[44:] == [int(d.type) for d in DERIVATIONS]
    assert list(meta.groups) == ["user_profile", "merchant_stats", "user_merchant"]
    assert list(meta.feature_groups) == [0] * 22 + [1] * 22 + [2] * len(NAMES)
    assert list(response.vector.event_timestamps_ms) == [t, t - 3, t]
    (row,) = decode_vectors(meta, [response.vector])
    assert derived(row) == expected(user, merchant, 42.0, "web")
    assert row["amount_over_avg"].group == "user_merchant"
    # An int64 is taken for a double (the client sends Python ints as int64).
    response = await served.stub.GetFeatures(single({"amount": 42, "channel": "web"}),
                                             timeout=5)
    assert derived(decode_vectors(response.metadata, [response.vector])[0]) == derived(row)


async def test_batch_entities_override_the_request_context(served: Served) -> None:
    h = served.h
    user = record(h.group("user_profile"), 1)
    await h.write("user_profile", [1], user, now_ms() - MINUTE_MS)
    request = batch([None, {"amount": 0.0}, {"channel": "app", "amount": 3}],
                    default={"amount": 10.0, "channel": "web"})
    response = await served.stub.GetBatchFeatures(request, timeout=5)
    rows = decode_vectors(response.metadata, response.vectors)
    assert [derived(r) for r in rows] == [
        expected(user, None, 10.0, "web"), expected(user, None, 0.0, "web"),
        expected(user, None, 3.0, "app")]
    assert rows[1]["per_amount"].status is Status.ERROR  # 100 / 0, this entity only
    # Without a request-level default, each entity carries its own.
    response = await served.stub.GetBatchFeatures(
        batch([{"amount": 1.0, "channel": "a"}, {"amount": 2.0, "channel": "b"}]), timeout=5)
    rows = decode_vectors(response.metadata, response.vectors)
    assert [r["tier"].value for r in rows] == [user["loyalty_tier"]] * 2
    assert [r["per_amount"].value for r in rows] == [100.0, 50.0]


@pytest.mark.parametrize(("context", "message"), [
    ({}, f"context: missing 'amount'; {NEEDS}"),
    ({"amount": 1.0}, f"context: missing 'channel'; {NEEDS}"),
    ({"amount": 1.0, "channel": "web", "coupon": "x"},
     f"context: unknown request-time value(s) 'coupon'; {NEEDS}"),
    ({"amount": 1.0, "coupon": "x"},
     f"context: unknown request-time value(s) 'coupon'; {NEEDS}"),
    ({"amount": "12", "channel": "web"}, "context['amount']: expected double, got string"),
    ({"amount": 1.0, "channel": 7}, "context['channel']: expected string, got int64"),
    ({"amount": None, "channel": "web"}, "context['amount']: expected double, got no value"),
    ({"amount": [1.0], "channel": "web"},
     "context['amount']: expected double, got double_list"),
])
async def test_get_features_refuses_context_that_does_not_fit(
        served: Served, context: dict[str, Any], message: str) -> None:
    assert await refused(served.stub.GetFeatures, single(context)) == (INVALID, message)


@pytest.mark.parametrize(("contexts", "default", "message"), [
    ([{"amount": 1.0, "channel": "a"}, {"amount": 1.0}], None,
     "entities[1].context: missing 'channel' (set it in the entity's or the request's "
     f"context); {NEEDS}"),
    ([None, None, None, {"amount": "x"}], {"amount": 1.0, "channel": "a"},
     "entities[3].context['amount']: expected double, got string"),
    ([None], {"amount": True, "channel": "a"}, "context['amount']: expected double, got bool"),
    ([None], {"amount": 1.0, "channel": "a", "extra": 1},
     f"context: unknown request-time value(s) 'extra'; {NEEDS}"),
    ([{"amount": 1.0, "channel": "a", "x" * 200: 1}], None,
     f"entities[0].context: unknown request-time value(s) {'x' * 80!r}... (200 chars); "
     f"{NEEDS}"),
])
async def test_batch_refuses_context_naming_the_entity(
        served: Served, contexts: list[dict[str, Any] | None], default: dict[str, Any] | None,
        message: str) -> None:
    assert await refused(served.stub.GetBatchFeatures, batch(contexts, default)) == (
        INVALID, message)


async def test_targets_without_context_refuse_any(served: Served) -> None:
    group = {"target": "feature_group", "name": "user_profile", "keys": {"user_id": 1}}
    assert await refused(served.stub.GetFeatures, single({"amount": 1.0}, **group)) == (
        INVALID, "context: feature group 'user_profile' reads no request-time values; "
        "remove 'amount'")
    place = {"name": "user_place", "keys": {"user_id": 1, "cell_id": 2, "place_id": "p"}}
    assert await refused(served.stub.GetBatchFeatures, batch([None, {"b": 1, "a": 2}],
                                                            **place)) == (
        INVALID, "entities[1].context: feature service 'user_place' reads no request-time "
        "values; remove 'a', 'b'")
    assert await refused(served.stub.GetBatchFeatures, batch([None], {"a": 1}, **place)) == (
        INVALID, "context: feature service 'user_place' reads no request-time values; "
        "remove 'a'")
    # Without context values they serve as they always did.
    response = await served.stub.GetBatchFeatures(batch([None], **place), timeout=5)
    assert list(response.metadata.groups) == ["user_profile", "place_visits"]


async def test_list_values_are_checked_by_item_type(served: Served) -> None:
    request = single({"channel": "web"})
    request.context["amount"].CopyFrom(
        pb.EventValue(list_value=pb.ListValue(int64_values=[1], string_values=["a"])))
    assert await refused(served.stub.GetFeatures, request) == (
        INVALID, "context['amount'].list_value: items in int64_values and string_values; a "
        "list has one item type")
    served.h.snapshot = derived_snapshot(
        context=(ContextValue("xs", FeatureType.DOUBLE_LIST),
                 ContextValue("ns", FeatureType.INT64_LIST)),
        derivations=(Derivation("xs_copy", "xs", FeatureType.DOUBLE_LIST),
                     Derivation("ns_copy", "ns", FeatureType.INT64_LIST)))
    for sent, want in (({"xs": [1, 2.5], "ns": [-3, 4]}, ([1.0, 2.5], [-3, 4])),
                       ({"xs": [1, 2], "ns": []}, ([1.0, 2.0], []))):  # int64s for doubles
        response = await served.stub.GetFeatures(single(sent), timeout=5)
        row = decode_vectors(response.metadata, [response.vector])[0]
        assert (row["xs_copy"].value, row["ns_copy"].value) == want
    assert await refused(served.stub.GetFeatures, single({"xs": [1.0], "ns": ["a"]})) == (
        INVALID, "context['ns']: expected int64_list, got string_list")
    assert await refused(served.stub.GetFeatures, single({"xs": 1.0, "ns": [1]})) == (
        INVALID, "context['xs']: expected double_list, got double")


async def test_listing_shows_context_and_derived_features(served: Served) -> None:
    listing = await served.stub.ListFeatureGroups(pb.ListFeatureGroupsRequest(
        name="user_merchant"), timeout=5)
    (info,) = listing.services
    assert [(c.name, c.type) for c in info.context] == [
        ("amount", FeatureType.DOUBLE), ("channel", FeatureType.STRING)]
    features = list(info.features)
    assert [f.name for f in features[44:]] == list(NAMES)
    assert [(f.expression, f.nullable) for f in features[44:]] == [
        (d.expression, True) for d in DERIVATIONS]
    assert {f.expression for f in features[:44]} == {""}
    assert list(info.groups) == ["user_profile", "merchant_stats"]
    listing = await served.stub.ListFeatureGroups(pb.ListFeatureGroupsRequest(
        name="user_place"), timeout=5)
    assert list(listing.services[0].context) == []
