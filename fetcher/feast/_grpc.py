"""Feast's gRPC services on our server: feast.serving.ServingService (GetOnlineFeatures,
GetFeastServingInfo) and `feast listen`'s GrpcFeatureServer (GetOnlineFeatures).

Beside fetcher.v1.FeatureService, never in its path. Deadlines, admission and metrics as
ours (method label "Feast/GetOnlineFeatures"); authorization through the server's check
(`authorize`), which reads the call's identity and the views or service it names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from fetcher.feast._serving import FeastReader, FeastRequestError, serving_info_version
from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.metrics import Metrics

SERVING_SERVICE = "feast.serving.ServingService"
GRPC_FEATURE_SERVER = "GrpcFeatureServer"
METHOD_LABEL = "Feast/GetOnlineFeatures"

#: (context, "service" or "group", names) -> None, or aborts the call (PERMISSION_DENIED).
Authorize = Callable[[Any, str, Sequence[str]], Awaitable[None]]


class FeastServicer:
    """GetOnlineFeatures and GetFeastServingInfo, answered by a FeastReader."""

    def __init__(
        self,
        reader: FeastReader,
        metrics: Metrics,
        *,
        default_deadline_s: float | None,
        admission: Any | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self._reader = reader
        self._metrics = metrics
        self._default_deadline_s = default_deadline_s
        self._admission = admission
        self._authorize = authorize

    def _deadline(self, context: Any) -> float | None:
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self._default_deadline_s
            if remaining is None:
                return None
        return float(asyncio.get_running_loop().time() + remaining)

    async def GetFeastServingInfo(  # gRPC method name
        self, request: Any, context: Any
    ) -> Any:
        """The server's version, as Feast's Go server answers."""
        return sv.GetFeastServingInfoResponse(version=serving_info_version())

    async def GetOnlineFeatures(  # gRPC method name
        self, request: Any, context: Any
    ) -> bytes:
        """Feast's online features of the request's entity rows (response wire bytes)."""
        started = time.perf_counter()
        admission = self._admission
        if admission is not None and not admission.try_enter():
            try:
                await admission.enter(self._deadline(context))
            except Exception as exc:  # fetcher.api.Overloaded
                self._observe(grpc.StatusCode.RESOURCE_EXHAUSTED, started)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
                raise
        try:
            return await self._get(request, context, started)
        finally:
            if admission is not None:
                admission.leave()

    async def _get(self, request: Any, context: Any, started: float) -> bytes:
        try:
            snap, resolved = self._reader.prepare(request)
            if self._authorize is not None:
                if request.WhichOneof("kind") == "feature_service":
                    await self._authorize(context, "service", [request.feature_service])
                else:
                    await self._authorize(
                        context, "group", [r.plan.name for r in resolved.reads])
            response = await self._reader.read(request, resolved, self._deadline(context))
        except FeastRequestError as exc:
            code = (grpc.StatusCode.NOT_FOUND if exc.not_found
                    else grpc.StatusCode.INVALID_ARGUMENT)
            self._observe(code, started)
            await context.abort(code, str(exc))
            raise
        self._metrics.entities.labels(f"feast:{snap.catalog.config.project}").inc(
            response.count)
        self._observe(grpc.StatusCode.OK, started)
        return response.wire()

    def _observe(self, code: grpc.StatusCode, started: float) -> None:
        self._metrics.rpc_latency.labels(METHOD_LABEL, code.name).observe(
            time.perf_counter() - started)


def _as_is(wire: bytes) -> bytes:
    return wire


def add_feast_services(servicer: FeastServicer, server: Any) -> tuple[str, str]:
    """Register ServingService and GrpcFeatureServer on `server`; their full names."""
    get = grpc.unary_unary_rpc_method_handler(
        servicer.GetOnlineFeatures,
        request_deserializer=sv.GetOnlineFeaturesRequest.FromString,
        response_serializer=_as_is,  # the answer's wire bytes, built by FeastAnswer
    )
    info = grpc.unary_unary_rpc_method_handler(
        servicer.GetFeastServingInfo,
        request_deserializer=sv.GetFeastServingInfoRequest.FromString,
        response_serializer=sv.GetFeastServingInfoResponse.SerializeToString,
    )
    for name, handlers in (
        (SERVING_SERVICE, {"GetOnlineFeatures": get, "GetFeastServingInfo": info}),
        (GRPC_FEATURE_SERVER, {"GetOnlineFeatures": get}),
    ):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)
    return SERVING_SERVICE, GRPC_FEATURE_SERVER
