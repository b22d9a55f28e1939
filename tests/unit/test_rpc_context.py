"""RpcContextInterceptor applied at registration (Registrar) on a real grpc.aio server."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fetcher.metrics import Metrics
from fetcher.rpc_context import RpcContextInterceptor


async def test_registrar_wraps_unary_handlers_and_passes_streams() -> None:
    context = RpcContextInterceptor(Metrics())
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    # grpc_health registers through both calls a Registrar offers.
    health_pb2_grpc.add_HealthServicer_to_server(servicer, context.registrar(server))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            reply = await stub.Check(request)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert "/grpc.health.v1.Health/Check" in context._wrapped

            # The wrapper is what answers: after close_gate, Check is refused...
            context.close_gate()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Check(request)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (refused.value.details() or "")
            assert context.inflight == 0

            # ...while Watch, a stream, is registered as it is and still answers.
            watch = stub.Watch(request)
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
            assert "/grpc.health.v1.Health/Watch" not in context._wrapped
    finally:
        await server.stop(None)
