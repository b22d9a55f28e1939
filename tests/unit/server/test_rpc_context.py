"""The RPC wrapper: unparsable bodies and oversized names, in process."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from fetcher.metrics import Metrics
from fetcher.quoting import quoted, quoted_list
from fetcher.server._rpc_context import RpcContextInterceptor
from fetcher.v1 import feature_service_pb2 as pb

METHOD = "/fetcher.v1.FeatureService/GetFeatures"


class Aborted(Exception):
    """What the fake context's abort raises (grpc's raises too)."""


class Context:
    """The part of grpc.aio.ServicerContext the wrapper touches."""

    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def code(self) -> grpc.StatusCode | None:
        return self.status[0] if self.status else None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status = (code, details)
        raise Aborted(details)


async def _handler(interceptor: RpcContextInterceptor, calls: list[Any]) -> Any:
    async def behavior(request: Any, context: Any) -> bytes:
        calls.append(request)
        return b""

    inner = grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=pb.GetFeaturesRequest.FromString)

    async def continuation(_: Any) -> Any:
        return inner

    class Details:
        method = METHOD

    return await interceptor.intercept_service(continuation, Details())


async def test_unparsable_body_is_refused_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    calls: list[Any] = []
    handler = await _handler(RpcContextInterceptor(metrics), calls)
    body = b"\xff\xff\xff\xff"
    with pytest.raises(DecodeError):  # what grpc would have logged a traceback for
        pb.GetFeaturesRequest.FromString(body)
    for _ in range(50):
        request = handler.request_deserializer(body)  # never raises
        context = Context()
        with pytest.raises(Aborted):
            await handler.unary_unary(request, context)
        assert context.status == (grpc.StatusCode.INVALID_ARGUMENT,
                                  "request body is not a valid fetcher.v1.GetFeaturesRequest")
    assert calls == []  # the servicer never sees a malformed request
    count = metrics.registry.get_sample_value(
        "fetcher_malformed_requests_total", {"method": "GetFeatures", "cause": "decode_error"})
    assert count == 50
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is None


async def test_parsable_body_reaches_the_servicer() -> None:
    calls: list[Any] = []
    handler = await _handler(RpcContextInterceptor(Metrics()), calls)
    body = pb.GetFeaturesRequest(feature_group="user_profile").SerializeToString()
    await handler.unary_unary(handler.request_deserializer(body), Context())
    assert calls == [pb.GetFeaturesRequest(feature_group="user_profile")]


def test_quoted_cuts_long_input_and_says_how_long_it_was() -> None:
    assert quoted("user_profile") == "'user_profile'"
    cut = quoted("x" * 100_000)
    assert cut == repr("x" * 80) + "... (100000 chars)"
    assert quoted(b"\x00" * 1_000).endswith("... (1000 bytes)")
    assert len(quoted(["y" * 1_000])) < 120
    assert quoted_list(["a", "b"]) == "'a', 'b'"
    assert quoted_list([str(i) for i in range(12)]).endswith("'4' and 7 more")
