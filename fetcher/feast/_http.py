"""Feast's HTTP API on a port of its own (aiohttp): `POST /get-online-features` with
`feast serve`'s JSON request and response, and `GET /health`.

The request is Feast's: {"features": [...]} or {"feature_service": ...}, "entities":
{join key: [values]}, "full_feature_names". The response is what `feast serve` sends
(Feast's convert_response_to_dict): "metadata.feature_names", and per column "values"
(native JSON; bytes base64), "statuses" (names), "event_timestamps" (RFC 3339), built
by fetcher.feast.FeastAnswer.json. Errors
as Feast's server sends them: an unknown view, feature or service 404 with Feast's error
detail (a JSON string of module, class and message), a malformed request 422 with
{"detail": [{"loc", "msg", "type"}]}.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fetcher.feast._serving import FeastReader, FeastRequestError
from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.feast.proto.types import value_pb2

log = logging.getLogger("fetcher.feast.http")

# Bound on a request body (the gRPC server's limit is server.max_message_bytes).
MAX_BODY_BYTES = 16 * 1024 * 1024

#: (the request's Authorization header or None, "service" or "group", names) -> None when
#: allowed, else (HTTP status, message).
HttpAuthorize = Callable[[str | None, str, list[str]], tuple[int, str] | None]


def _invalid(field: str, message: str) -> web.Response:
    detail = [{"loc": ["body", *field.split(".")], "msg": message, "type": "value_error"}]
    return web.json_response({"detail": detail}, status=422)


def _feast_error(cls: str, message: str, status: int) -> web.Response:
    detail = json.dumps({"module": "feast.errors", "class": cls, "message": message})
    return web.json_response(detail, status=status)


def _entity_value(value: Any, field: str) -> Any:
    if isinstance(value, bool) or value is None:
        raise FeastRequestError(field, f"expected an integer or a string, got {json.dumps(value)}")
    if isinstance(value, int):
        return value_pb2.Value(int64_val=value)
    if isinstance(value, str):
        return value_pb2.Value(string_val=value)
    raise FeastRequestError(field, f"expected an integer or a string, got {type(value).__name__}")


def request_from_json(body: Any) -> Any:
    """Feast's JSON request as a GetOnlineFeaturesRequest; FeastRequestError naming the field."""
    if not isinstance(body, dict):
        raise FeastRequestError("body", "expected a JSON object")
    request = sv.GetOnlineFeaturesRequest()
    entities = body.get("entities")
    if not isinstance(entities, dict):
        raise FeastRequestError("entities", "expected an object of join key -> list of values")
    for name, values in entities.items():
        if not isinstance(values, list):
            raise FeastRequestError(f"entities.{name}", "expected a list of values")
        column = request.entities[name].val
        for i, value in enumerate(values):
            column.append(_entity_value(value, f"entities.{name}.{i}"))
    service = body.get("feature_service")
    features = body.get("features", [])
    if service is not None:
        if not isinstance(service, str):
            raise FeastRequestError("feature_service", "expected a string")
        request.feature_service = service
    else:
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise FeastRequestError("features", "expected a list of strings")
        request.features.val.extend(features)
    full = body.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise FeastRequestError("full_feature_names", "expected true or false")
    request.full_feature_names = full
    return request


class FeastHttp:
    """The aiohttp application of Feast's HTTP API over a FeastReader."""

    def __init__(
        self, reader: FeastReader, *, default_deadline_s: float | None,
        authorize: HttpAuthorize | None = None,
        observe: Callable[[str, float], None] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self._reader = reader
        self._deadline_s = default_deadline_s
        self._authorize = authorize
        self._observe = observe
        self._ready = ready
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post("/get-online-features", self.get_online_features)
        self.app.router.add_get("/health", self.health)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def health(self, request: web.Request) -> web.Response:
        """200 while the server serves (its stores up), 503 otherwise, as `feast serve`."""
        if self._ready is not None and not self._ready():
            return web.Response(status=503)
        return web.Response(status=200)

    async def get_online_features(self, request: web.Request) -> web.Response:
        """POST /get-online-features."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self._answer(request, started)
        if self._observe is not None:
            self._observe(str(response.status), loop.time() - started)
        return response

    async def _answer(self, request: web.Request, started: float) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError) as exc:
            return _invalid("body", f"not JSON: {str(exc)[:200]}")
        try:
            proto = request_from_json(body)
            _, resolved = self._reader.prepare(proto)
            if self._authorize is not None:
                if proto.WhichOneof("kind") == "feature_service":
                    refused = self._authorize(request.headers.get("Authorization"), "service",
                                              [proto.feature_service])
                else:
                    refused = self._authorize(request.headers.get("Authorization"), "group",
                                              [r.plan.name for r in resolved.reads])
                if refused is not None:
                    return web.json_response({"detail": refused[1]}, status=refused[0])
            deadline = None if self._deadline_s is None else started + self._deadline_s
            response = await self._reader.read(proto, resolved, deadline)
        except FeastRequestError as exc:
            if exc.not_found:
                return _feast_error(exc.feast_class, str(exc), 404)
            return _invalid(exc.field, str(exc))
        return web.json_response(response.json())

    async def start(self, host: str, port: int, *, reuse_port: bool = False,
                    ssl_context: Any = None) -> int:
        """Listen on host:port (0: any free port); the bound port."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True,
                           reuse_port=reuse_port or None, ssl_context=ssl_context)
        await site.start()
        self._runner = runner
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def stop(self) -> None:
        """Stop listening and finish the running requests."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

