"""Malformed and oversized input against the real server process.

Random bytes that do not parse as the method's message are answered INVALID_ARGUMENT,
naming the message, on every unary RPC, and cost a bounded number of log lines (never a
traceback). Client input of 100 KB (names, key names, key values, header values) gets
the status its content calls for, with a message of bounded length.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.v1 import feature_service_pb2 as pb
from tests.property.conftest import PropertyServer

# Every unary method the server registers, with its request message.
UNARY = [
    ("/fetcher.v1.FeatureService/GetFeatures", pb.GetFeaturesRequest),
    ("/fetcher.v1.FeatureService/GetBatchFeatures", pb.GetBatchFeaturesRequest),
    ("/fetcher.v1.FeatureService/ListFeatureGroups", pb.ListFeatureGroupsRequest),
    ("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest),
]
# The streaming methods: health Watch (one request in) and reflection (a stream in).
STREAMS = [
    ("/grpc.health.v1.Health/Watch", health_pb2.HealthCheckRequest, "unary_stream"),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     reflection_pb2.ServerReflectionRequest, "stream_stream"),
]
BIG = 100_000
# A bound on any status message here: far below the client's 16 KB metadata limit.
MAX_DETAILS = 1_000
HYPOTHESIS = settings(max_examples=60, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def _parses(message: Any, body: bytes) -> bool:
    try:
        message.FromString(body)
    except DecodeError:
        return False
    return True


def _malformed(message: Any, rng: random.Random) -> bytes:
    """Random bytes (1-300) that do not parse as `message`."""
    while True:
        body = rng.randbytes(rng.randint(1, 300))
        if not _parses(message, body):
            return body


@pytest.fixture(scope="module")
def channel(prop_server: PropertyServer) -> Iterator[grpc.Channel]:
    """A plain channel: bodies are sent as raw bytes (no serializer)."""
    with grpc.insecure_channel(prop_server.server.target) as ch:
        yield ch


def _call(channel: grpc.Channel, method: str, body: bytes,
          metadata: tuple[tuple[str, str], ...] = ()) -> grpc.RpcError:
    call = channel.unary_unary(method)
    with pytest.raises(grpc.RpcError) as info:
        call(body, timeout=30, metadata=metadata)
    error: grpc.RpcError = info.value
    return error


def _call_stream(channel: grpc.Channel, method: str, kind: str, body: bytes) -> grpc.RpcError:
    if kind == "unary_stream":
        call = channel.unary_stream(method)(body, timeout=30)
    else:
        call = channel.stream_stream(method)(iter([body]), timeout=30)
    with pytest.raises(grpc.RpcError) as info:
        for _ in call:
            pass
    error: grpc.RpcError = info.value
    return error


def _new_log(prop_server: PropertyServer, start: int) -> str:
    with open(prop_server.server.log, "rb") as fh:
        fh.seek(start)
        return fh.read().decode("utf-8", "replace")


@pytest.mark.parametrize(("method", "message"), UNARY, ids=[m for m, _ in UNARY])
@HYPOTHESIS
@given(data=st.data())
def test_unparsable_body_is_invalid_argument(
    channel: grpc.Channel, method: str, message: Any, data: st.DataObject
) -> None:
    body = data.draw(st.binary(min_size=1, max_size=300).filter(lambda b: not _parses(message, b)))
    error = _call(channel, method, body)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert error.details() == f"request body is not a valid {message.DESCRIPTOR.full_name}"


@pytest.mark.parametrize(("method", "message", "kind"), STREAMS, ids=[m for m, _, _ in STREAMS])
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_unparsable_stream_body_is_invalid_argument(
    channel: grpc.Channel, method: str, message: Any, kind: str, data: st.DataObject
) -> None:
    body = data.draw(st.binary(min_size=1, max_size=300).filter(lambda b: not _parses(message, b)))
    error = _call_stream(channel, method, kind, body)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert error.details() == f"request body is not a valid {message.DESCRIPTOR.full_name}"


def test_a_thousand_bad_bodies_write_a_few_log_lines(
    prop_server: PropertyServer, channel: grpc.Channel
) -> None:
    rng = random.Random(12)
    start = prop_server.server.log.stat().st_size
    began = time.monotonic()
    codes = []
    for i in range(1_000):
        if i % 10 == 9:  # one call in ten on a streaming method
            method, message, kind = STREAMS[i // 10 % len(STREAMS)]
            codes.append(_call_stream(channel, method, kind, _malformed(message, rng)).code())
            continue
        method, message = UNARY[i % len(UNARY)]
        codes.append(_call(channel, method, _malformed(message, rng)).code())
    elapsed = time.monotonic() - began
    assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}
    # The server still answers a good request after all that.
    good = pb.ListFeatureGroupsRequest().SerializeToString()
    assert pb.ListFeatureGroupsResponse.FromString(
        channel.unary_unary(UNARY[2][0])(good, timeout=30)).groups
    logged = _new_log(prop_server, start)
    lines = [line for line in logged.splitlines() if line.strip()]
    assert "Traceback" not in logged, logged[:2000]
    # At most one line per method and cause per 10 s interval: 6 methods, one cause, a run
    # of a few seconds (more intervals only if the machine made it slower).
    allowed = (len(UNARY) + len(STREAMS)) * (1 + int(elapsed // 10))
    assert len(lines) <= allowed, "\n".join(lines[:20])
    assert len(lines) < 10 or elapsed >= 10, "\n".join(lines[:20])


def _bounded(error: grpc.RpcError, code: grpc.StatusCode) -> str:
    details = error.details() or ""
    assert error.code() == code, (error.code(), details[:300])
    assert len(details) <= MAX_DETAILS, len(details)
    return details


def test_oversized_names_are_not_found_with_a_bounded_message(channel: grpc.Channel) -> None:
    name = "g" * BIG
    for request in (pb.GetFeaturesRequest(feature_group=name),
                    pb.GetFeaturesRequest(feature_service=name)):
        details = _bounded(_call(channel, UNARY[0][0], request.SerializeToString()),
                           grpc.StatusCode.NOT_FOUND)
        assert f"({BIG} chars)" in details
    batch = pb.GetBatchFeaturesRequest(feature_service=name, entities=[pb.Entity()])
    _bounded(_call(channel, UNARY[1][0], batch.SerializeToString()), grpc.StatusCode.NOT_FOUND)
    listing = pb.ListFeatureGroupsRequest(name=name)
    _bounded(_call(channel, UNARY[2][0], listing.SerializeToString()), grpc.StatusCode.NOT_FOUND)


def test_oversized_key_names_and_values_are_invalid_with_a_bounded_message(
    channel: grpc.Channel,
) -> None:
    one_big_name = pb.GetFeaturesRequest(feature_group="user_profile", keys={
        "user_id": pb.Value(int64_value=1), "k" * BIG: pb.Value(int64_value=2)})
    details = _bounded(_call(channel, UNARY[0][0], one_big_name.SerializeToString()),
                       grpc.StatusCode.INVALID_ARGUMENT)
    assert "unknown key(s)" in details and f"({BIG} chars)" in details
    many_names = pb.GetFeaturesRequest(feature_group="user_profile", keys={
        "user_id": pb.Value(int64_value=1),
        **{f"extra_{i:04d}_" + "x" * 90: pb.Value(int64_value=i) for i in range(1_000)}})
    details = _bounded(_call(channel, UNARY[0][0], many_names.SerializeToString()),
                       grpc.StatusCode.INVALID_ARGUMENT)
    assert "and 995 more" in details
    big_value = pb.GetFeaturesRequest(feature_group="place_visits", keys={
        "s2_cell_id": pb.Value(int64_value=1), "place_id": pb.Value(string_value="v" * BIG)})
    details = _bounded(_call(channel, UNARY[0][0], big_value.SerializeToString()),
                       grpc.StatusCode.INVALID_ARGUMENT)
    assert "key longer than" in details
    in_batch = pb.GetBatchFeaturesRequest(feature_group="user_profile", entities=[
        pb.Entity(keys={"user_id": pb.Value(int64_value=1)}),
        pb.Entity(keys={"k" * BIG: pb.Value(int64_value=1)})])
    _bounded(_call(channel, UNARY[1][0], in_batch.SerializeToString()),
             grpc.StatusCode.INVALID_ARGUMENT)


def test_oversized_header_values_do_not_change_the_answer(
    prop_server: PropertyServer, channel: grpc.Channel
) -> None:
    # An x-request-id beyond 128 characters (here 4,000, within gRPC's 8 KB soft header
    # limit) is replaced by a generated id: the request is
    # served, and the id is not copied into the log.
    start = prop_server.server.log.stat().st_size
    request = pb.GetFeaturesRequest(feature_group="user_profile",
                                    keys={"user_id": pb.Value(int64_value=42)})
    response = pb.GetFeaturesResponse.FromString(channel.unary_unary(UNARY[0][0])(
        request.SerializeToString(), timeout=30, metadata=(("x-request-id", "r" * 4_000),)))
    assert list(response.vector.statuses)  # served: one status per feature
    # A header block beyond the server's limit is refused by gRPC before any handler runs,
    # and the refusal quotes none of it.
    huge = _call(channel, UNARY[0][0], request.SerializeToString(),
                 metadata=(("x-request-id", "r" * BIG),))
    assert huge.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (huge.code(), huge.details())
    assert len(huge.details() or "") <= MAX_DETAILS
    assert "rrrrrrrr" not in _new_log(prop_server, start)
