"""Per-RPC context around every unary handler: request id, authorization, tracing, access log.

A grpc.aio server interceptor that wraps each unary-unary handler once per method
(cached), so the per-call cost is one extra coroutine frame. It also wraps the method's
request deserializer: a body that does not parse is answered INVALID_ARGUMENT, counted by
method and cause and logged at most once per interval, whichever way the handlers were
registered, streaming methods (health Watch, reflection) included (grpc itself would
answer UNKNOWN and log a traceback per call). Authorization needs the
target named in the request, which an interceptor alone never sees; the wrapped
handler does, so the check runs here and FeatureServicer stays unaware of it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from fetcher.metrics import Metrics
from fetcher.quoting import quoted
from fetcher.server._logging_json import request_id
from fetcher.server._security import TARGET_KINDS, Authorizer

log = logging.getLogger("fetcher.rpc")

FEATURE_SERVICE_PREFIX = "/fetcher.v1.FeatureService/"
_MAX_REQUEST_ID = 128
_Behavior = Callable[[Any, Any], Awaitable[Any]]
# The module-level generator: it is reseeded in forked workers, so ids stay distinct.
_random_bits = random.getrandbits


class _Malformed:
    """What the wrapped deserializer returns for a body that does not parse."""

    __slots__ = ("cause",)

    def __init__(self, cause: str) -> None:
        self.cause = cause


def _message_name(deserialize: Callable[[bytes], Any]) -> str:
    # A generated message's FromString is bound to its class.
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "")) or "request message"


def _safe_deserializer(
    deserialize: Callable[[bytes], Any] | None,
) -> Callable[[bytes], Any] | None:
    """`deserialize` that returns a _Malformed instead of raising."""
    if deserialize is None:
        return None

    def parse(body: bytes) -> Any:
        try:
            return deserialize(body)
        except DecodeError:
            return _Malformed("decode_error")
        except Exception:  # a deserializer other than protobuf's may raise anything
            return _Malformed("deserializer_error")

    return parse


def _incoming_request_id(context: Any) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            text = str(value)
            # Bounded and printable: the id is copied into every log line of the request.
            if 0 < len(text) <= _MAX_REQUEST_ID and text.isprintable():
                return text
            break
    # A log correlation id, not a secret: the PRNG, not a getrandom() syscall per RPC.
    return f"{_random_bits(64):016x}"


class RpcContextInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Sets the request id, checks authorization, and optionally traces and logs each RPC."""

    def __init__(
        self,
        metrics: Metrics,
        authorizer: Authorizer | None = None,
        tracer: Any | None = None,
        log_requests: bool = False,
    ) -> None:
        self._metrics = metrics
        self._authorizer = authorizer
        self._tracer = tracer
        self._log_requests = log_requests
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._accepting = True
        self._idle = asyncio.Event()
        self.inflight = 0
        self.served_ok = 0  # FeatureService RPCs answered OK: the drain's "none lost" proof
        self.cancelled = 0  # RPCs cancelled while their handler ran

    def close_gate(self) -> None:
        """From now on answer every RPC with UNAVAILABLE (clients retry elsewhere)."""
        self._accepting = False
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """After close_gate: wait until no handler runs (True) or `timeout_s` passed (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Return the method's handler, wrapped once per method name."""
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is None:
            # Streams (health Watch, reflection): only their bodies are checked.
            wrapped = self._wrap_stream(method, handler)
        else:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._wrap(method, handler.unary_unary, handler.request_deserializer),
                request_deserializer=_safe_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap_stream(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A streaming handler whose request bodies are parsed as the unary ones are."""
        short = method.rsplit("/", 1)[-1]
        refusal = f"request body is not a valid {_message_name(handler.request_deserializer)}"
        safe = _safe_deserializer(handler.request_deserializer)

        async def check(request: Any, context: Any) -> None:
            if request.__class__ is _Malformed:
                await self._malformed(short, request.cause, refusal, context, 0.0)

        async def checked(requests: Any, context: Any) -> Any:
            async for request in requests:
                await check(request, context)
                yield request

        async def responses(result: Any) -> Any:
            # An async generator handler yields its responses; a coroutine one writes them.
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            else:
                await result

        if handler.unary_stream is not None:
            unary_stream = handler.unary_stream

            async def unary_in(request: Any, context: Any) -> Any:
                await check(request, context)
                async for response in responses(unary_stream(request, context)):
                    yield response

            return grpc.unary_stream_rpc_method_handler(
                unary_in, request_deserializer=safe,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            stream_unary = handler.stream_unary

            async def stream_in_one_out(requests: Any, context: Any) -> Any:
                return await stream_unary(checked(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(
                stream_in_one_out, request_deserializer=safe,
                response_serializer=handler.response_serializer,
            )
        stream_stream = handler.stream_stream

        async def stream_in(requests: Any, context: Any) -> Any:
            async for response in responses(stream_stream(checked(requests, context), context)):
                yield response

        return grpc.stream_stream_rpc_method_handler(
            stream_in, request_deserializer=safe,
            response_serializer=handler.response_serializer,
        )

    def _wrap(
        self, method: str, inner: _Behavior, deserialize: Callable[[bytes], Any] | None = None
    ) -> _Behavior:
        guarded = self._authorizer is not None and method.startswith(FEATURE_SERVICE_PREFIX)
        short = method.rsplit("/", 1)[-1]
        # Built once per method: the message a malformed body is refused with.
        refusal = (
            f"request body is not a valid {_message_name(deserialize)}"
            if deserialize is not None else "request body is not valid"
        )

        counted = method.startswith(FEATURE_SERVICE_PREFIX)

        async def behavior(request: Any, context: Any) -> Any:
            if not self._accepting:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, "server is shutting down: retry on another one"
                )
            token = request_id.set(_incoming_request_id(context))
            # Read only by the access log and by authorization refusals.
            started = time.perf_counter() if self._log_requests or guarded else 0.0
            code = "OK"
            self.inflight += 1
            try:
                if request.__class__ is _Malformed:
                    await self._malformed(short, request.cause, refusal, context, started)
                if guarded:
                    await self._authorize(short, request, context, started)
                if self._tracer is None:
                    response = await inner(request, context)
                else:
                    with self._tracer.start_as_current_span(method) as span:
                        span.set_attribute("rpc.system", "grpc")
                        span.set_attribute("fetcher.request_id", request_id.get())
                        response = await inner(request, context)
                if counted:
                    self.served_ok += 1
                return response
            except asyncio.CancelledError:
                self.cancelled += 1
                code = "CANCELLED"
                raise
            except BaseException:
                status = context.code()
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                self.inflight -= 1
                if self.inflight == 0 and not self._accepting:
                    self._idle.set()
                if self._log_requests:
                    log.info(
                        "rpc %s %s", short, code,
                        extra={"method": short, "code": code,
                               "duration_ms": round((time.perf_counter() - started) * 1000, 3)},
                    )
                request_id.reset(token)

        return behavior

    async def _authorize(self, method: str, request: Any, context: Any, started: float) -> None:
        assert self._authorizer is not None
        grant = self._authorizer.authenticate(context)
        if grant is None:
            self._refused(method, grpc.StatusCode.UNAUTHENTICATED, started)
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "no known client identity: present a client certificate the server trusts "
                "or an `authorization: Bearer <token>` header",
            )
        assert grant is not None
        if method == "PushEvents":
            name = request.feature_group
            if not grant.allows("push", name):
                self._refused(method, grpc.StatusCode.PERMISSION_DENIED, started)
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client {grant.client!r} may not push events to group {quoted(name)} "
                    f"(authz.clients.{grant.client}.push_groups)",
                )
            return
        has_target = "target" in request.DESCRIPTOR.oneofs_by_name
        which = request.WhichOneof("target") if has_target else None
        if which is None:
            # ListFeatureGroups, or a request with no target (the service answers that one).
            return
        kind = TARGET_KINDS.get(which)
        name = getattr(request, which)
        if kind is not None and not grant.allows(kind, name):
            self._refused(method, grpc.StatusCode.PERMISSION_DENIED, started)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"client {grant.client!r} may not read feature {kind} {quoted(name)} "
                f"(authz.clients.{grant.client}.{kind}s)",
            )

    async def _malformed(
        self, method: str, cause: str, refusal: str, context: Any, started: float
    ) -> None:
        self._metrics.malformed_requests.labels(method, cause).inc()
        code = grpc.StatusCode.INVALID_ARGUMENT
        elapsed = time.perf_counter() - started if started else 0.0
        self._metrics.rpc_latency.labels(method, code.name).observe(elapsed)
        # Rate-limited and without a traceback: garbage at 10k calls/s is no log storm.
        self._metrics.log_limited(
            log, f"malformed:{method}:{cause}",
            "malformed %s request body (%s): answered INVALID_ARGUMENT", method, cause,
        )
        await context.abort(code, refusal)

    def _refused(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self._metrics.rpc_latency.labels(method, code.name).observe(time.perf_counter() - started)
        # Rate-limited: a misconfigured client must not flood the log.
        self._metrics.log_limited(log, f"refused:{code.name}", "refused %s: %s", method, code.name)
