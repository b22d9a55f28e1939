"""Request checks shared by the RPCs: key maps and timestamps -> domain values, with
RequestError (a gRPC status and a message naming the field) for what is refused."""

from __future__ import annotations

from typing import Any

import grpc

from fetcher.api._proto_views import KEY_FIELD as _KIND_OF_KEY
from fetcher.codec import INT64_MAX, KeyValue
from fetcher.engine import TargetPlan
from fetcher.quoting import quoted_list
from fetcher.types import KeyType

_KEY_TYPE_NAME = {KeyType.INT64: "int64", KeyType.STRING: "string", KeyType.BYTES: "bytes"}
# Reads more than a day in the future are a client bug (ms vs s, clock far off), not a query.
_MAX_FUTURE_MS = 24 * 3600 * 1000
_MAX_STRING_KEY_BYTES = 64 * 1024


class RequestError(Exception):
    """A request the server refuses: the gRPC status code and a message naming the field."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def describe_keys(plan: TargetPlan) -> str:
    """`user_id:int64, merchant_id:int64`: the keys a target needs, for error messages."""
    return ", ".join(f"{k.name}:{_KEY_TYPE_NAME[k.type]}" for k in plan.request_keys)


def entity_values(plan: TargetPlan, keys: Any, field: str) -> list[KeyValue]:
    """Request key map -> key values in plan order; raises RequestError naming the field."""
    values: list[KeyValue] = []
    for column in plan.request_keys:
        value = keys.get(column.name)
        if value is None:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}: missing key {column.name!r}; {plan.kind.replace('_', ' ')} "
                f"{plan.name!r} needs {describe_keys(plan)}",
            )
        kind = value.WhichOneof("kind")
        expected = _KIND_OF_KEY[column.type]
        if kind != expected:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}[{column.name!r}]: expected {expected}, got {kind or 'no value'}",
            )
        item = getattr(value, expected)
        if type(item) is str and len(item) > _MAX_STRING_KEY_BYTES // 4 and (
            len(item.encode("utf-8", "surrogatepass")) > _MAX_STRING_KEY_BYTES
        ):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}[{column.name!r}]: key longer than {_MAX_STRING_KEY_BYTES} bytes",
            )
        if type(item) is bytes and len(item) > _MAX_STRING_KEY_BYTES:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}[{column.name!r}]: key longer than {_MAX_STRING_KEY_BYTES} bytes",
            )
        values.append(item)
    if len(keys) != len(values):
        expected_names = {k.name for k in plan.request_keys}
        extra = sorted(name for name in keys if name not in expected_names)
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}: unknown key(s) {quoted_list(extra)}; "
            f"{plan.kind.replace('_', ' ')} {plan.name!r} needs {describe_keys(plan)}",
        )
    return values


def timestamp_ms(message: Any, field: str, now_ms: int) -> int:
    """A google.protobuf.Timestamp -> epoch ms, refusing times no feature row can have."""
    seconds, nanos = message.seconds, message.nanos
    if not 0 <= nanos <= 999_999_999:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"{field}.nanos: {nanos} is outside 0..999999999"
        )
    if seconds < 0:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}: {seconds} s is before 1970-01-01; point-in-time reads need a time >= 0",
        )
    ms: int = seconds * 1000 + nanos // 1_000_000
    if ms > now_ms + _MAX_FUTURE_MS or ms > INT64_MAX // 2:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}: {seconds} s is more than a day in the future (did you send ms as s?)",
        )
    return ms
