"""The real server over an embedded LMDB store: the core checks, and bad requests.

Bad requests must fail with the exact gRPC code and a message naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from fetcher.client import FeatureClient, KeyInput, decode_vectors, key_value
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc
from tests.e2e.conftest import E2EData, RunningServer
from tests.e2e.core import CoreChecks, now_ms

USER_MERCHANT_KEYS = "user_id:int64, merchant_id:int64"


@pytest.fixture(scope="module")
def server(embedded_server: RunningServer) -> RunningServer:
    """This module's server: the embedded-store one."""
    return embedded_server


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Any:
    """A raw stub, for requests the client would refuse to build."""
    channel = grpc.insecure_channel(server.target)
    yield pb_grpc.FeatureServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def version(client: FeatureClient) -> str:
    """The config version the server reports."""
    return client.describe().config_version


class TestEmbeddedCore(CoreChecks):
    """The core checks against the embedded-store server."""


def _error(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    error: Any = info.value
    return error.code(), error.details()


def _um(user: int | str = 1, merchant: int = 2) -> pb.GetFeaturesRequest:
    return pb.GetFeaturesRequest(
        feature_service="user_merchant",
        keys={"user_id": key_value(user), "merchant_id": key_value(merchant)},
    )


def _batch(entities: list[dict[str, KeyInput]], **kwargs: Any) -> pb.GetBatchFeaturesRequest:
    request = pb.GetBatchFeaturesRequest(feature_service="user_merchant", **kwargs)
    for keys in entities:
        request.entities.add(keys={k: key_value(v) for k, v in keys.items()})
    return request


def _seconds_from_now(seconds: int) -> Timestamp:
    return Timestamp(seconds=int(time.time()) + seconds)


INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_targets_are_not_found(stub: Any, version: str) -> None:
    request = pb.GetFeaturesRequest(feature_service="nope", keys={"user_id": key_value(1)})
    assert _error(lambda: stub.GetFeatures(request)) == (
        grpc.StatusCode.NOT_FOUND,
        f"feature_service: 'nope' is not in config version {version} "
        "(known: user_merchant, user_place)",
    )
    request = pb.GetFeaturesRequest(feature_group="nope", keys={"user_id": key_value(1)})
    assert _error(lambda: stub.GetFeatures(request)) == (
        grpc.StatusCode.NOT_FOUND,
        f"feature_group: 'nope' is not in config version {version} "
        "(known: merchant_stats, place_visits, user_profile)",
    )
    batch = pb.GetBatchFeaturesRequest(feature_service="nope")
    batch.entities.add(keys={"user_id": key_value(1)})
    assert _error(lambda: stub.GetBatchFeatures(batch))[0] == grpc.StatusCode.NOT_FOUND
    listing = pb.ListFeatureGroupsRequest(name="nope")
    assert _error(lambda: stub.ListFeatureGroups(listing)) == (
        grpc.StatusCode.NOT_FOUND,
        f"name: no feature group or feature service named 'nope' in config version {version}",
    )


def test_bad_keys_name_the_field(stub: Any) -> None:
    missing = pb.GetFeaturesRequest(feature_service="user_merchant", keys={"user_id": key_value(1)})
    assert _error(lambda: stub.GetFeatures(missing)) == (
        INVALID,
        f"keys: missing key 'merchant_id'; feature service 'user_merchant' needs "
        f"{USER_MERCHANT_KEYS}",
    )
    assert _error(lambda: stub.GetFeatures(_um(user="42"))) == (
        INVALID, "keys['user_id']: expected int64_value, got string_value"
    )
    extra = _um()
    extra.keys["shop_id"].CopyFrom(key_value(3))
    assert _error(lambda: stub.GetFeatures(extra)) == (
        INVALID,
        f"keys: unknown key(s) 'shop_id'; feature service 'user_merchant' needs "
        f"{USER_MERCHANT_KEYS}",
    )
    no_target = pb.GetFeaturesRequest(keys={"user_id": key_value(1)})
    assert _error(lambda: stub.GetFeatures(no_target)) == (
        INVALID, "target: set feature_group or feature_service"
    )
    place = pb.GetFeaturesRequest(
        feature_group="place_visits",
        keys={"s2_cell_id": key_value(1), "place_id": key_value(b"place-00001")},
    )
    assert _error(lambda: stub.GetFeatures(place)) == (
        INVALID, "keys['place_id']: expected string_value, got bytes_value"
    )


def test_bad_batches_name_the_field(stub: Any) -> None:
    assert _error(lambda: stub.GetBatchFeatures(_batch([]))) == (
        INVALID, "entities: empty batch; send at least one"
    )
    too_many: list[dict[str, KeyInput]] = [{"user_id": i, "merchant_id": 1} for i in range(601)]
    assert _error(lambda: stub.GetBatchFeatures(_batch(too_many))) == (
        INVALID,
        "entities: 601 entities is above the limit of 600 per request "
        "(server.max_batch_entities); split the batch",
    )
    entities: list[dict[str, KeyInput]] = [{"user_id": 1, "merchant_id": 1}] * 3
    entities.append({"user_id": 4})
    assert _error(lambda: stub.GetBatchFeatures(_batch(entities))) == (
        INVALID,
        f"entities[3].keys: missing key 'merchant_id'; feature service 'user_merchant' needs "
        f"{USER_MERCHANT_KEYS}",
    )
    wrong: list[dict[str, KeyInput]] = [
        {"user_id": 1, "merchant_id": 1}, {"user_id": 2, "merchant_id": "7"}
    ]
    assert _error(lambda: stub.GetBatchFeatures(_batch(wrong))) == (
        INVALID, "entities[1].keys['merchant_id']: expected int64_value, got string_value"
    )


def test_batch_at_the_limit_is_served(stub: Any, e2e_data: E2EData) -> None:
    entities: list[dict[str, KeyInput]] = [
        {"user_id": 9400 + i, "merchant_id": 1 + i % 1002} for i in range(600)
    ]
    read = now_ms()
    response = stub.GetBatchFeatures(_batch(entities))
    rows = decode_vectors(response.metadata, response.vectors)
    assert len(rows) == 600
    for keys, row in zip(entities, rows, strict=True):
        e2e_data.truth.check(row, keys, read, service="user_merchant")


def test_bad_times_name_the_field(stub: Any) -> None:
    future = _seconds_from_now(2 * 86_400)
    request = _um()
    request.at.CopyFrom(future)
    assert _error(lambda: stub.GetFeatures(request)) == (
        INVALID,
        f"at: {future.seconds} s is more than a day in the future (did you send ms as s?)",
    )
    as_ms = _um()
    as_ms.at.seconds = now_ms()  # milliseconds sent as seconds
    assert _error(lambda: stub.GetFeatures(as_ms)) == (
        INVALID,
        f"at: {as_ms.at.seconds} s is more than a day in the future (did you send ms as s?)",
    )
    before_epoch = _um()
    before_epoch.at.seconds = -5
    assert _error(lambda: stub.GetFeatures(before_epoch)) == (
        INVALID, "at: -5 s is before 1970-01-01; point-in-time reads need a time >= 0"
    )
    batch = _batch([{"user_id": 1, "merchant_id": 1}, {"user_id": 2, "merchant_id": 2}])
    batch.entities[1].at.CopyFrom(future)
    assert _error(lambda: stub.GetBatchFeatures(batch)) == (
        INVALID,
        f"entities[1].at: {future.seconds} s is more than a day in the future "
        "(did you send ms as s?)",
    )
    batch = _batch([{"user_id": 1, "merchant_id": 1}], at=future)
    assert _error(lambda: stub.GetBatchFeatures(batch))[1].startswith("at: ")
