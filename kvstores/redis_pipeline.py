"""One Redis connection shared by every concurrent read, requests pipelined on it.

redis-py's asyncio client takes a connection out of a pool for each call, writes
through an asyncio StreamWriter and reads each reply through a StreamReader: at one
small read per RPC that was about half of a Python gRPC server's throughput
(docs/benchmarks.md, "Pipelined Redis reads"). This module keeps the parts that are
the job of a library to the libraries (hiredis parses RESP; redis-py parses the URL
and builds the TLS context) and only multiplexes: each request is written at once on
the one socket, Redis answers in order, and replies go to the waiting requests in the
order they were sent. Under concurrency several replies arrive in one socket read.

Failure rules, so that one slow or lost connection never serves a reply to the wrong
request:

- a request cancelled by its caller stays queued; its replies are read and dropped;
- the connection closing (Redis restart, network error) fails every queued request
  with ConnectionError; the next request connects again;
- a request that has waited longer than `stale_after_s` at the head of the queue
  means Redis stopped answering: the next request (or the caller that timed out,
  through `reset`) closes the connection, failing what is queued, and reconnects.
  `stale_after_s` is meant to be several times the callers' timeout: replies that
  are only late (a slow link, a busy Redis) are read and dropped on the same
  connection, where reconnecting on each caller's timeout would add a connection
  storm to the slowness (measured: thousands of connects per second at 8 callers).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast

import hiredis
from redis.asyncio.connection import RedisSSLContext, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.connection import parse_url as _parse_redis_url
from redis.exceptions import ResponseError

__all__ = ["PipelinedConnection", "RedisProtocolError", "is_noscript"]


def is_noscript(reply: Any) -> bool:
    """Whether a reply is Redis's NOSCRIPT error (EVALSHA of a script it does not have)."""
    return isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT")


class RedisProtocolError(ConnectionError):
    """Bytes from Redis that are not RESP, or a reply nobody asked for."""


class _Request:
    __slots__ = ("future", "replies", "sent_at", "want")

    def __init__(self, future: asyncio.Future[list[Any]], want: int, sent_at: float) -> None:
        self.future = future
        self.want = want
        self.replies: list[Any] = []
        self.sent_at = sent_at


class _ReplyProtocol(asyncio.Protocol):
    """Matches the replies read from the socket to the requests, in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[_Request] = collections.deque()
        self.lost: BaseException | None = None
        self._reader = hiredis.Reader(replyError=ResponseError)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        queue = self.queue
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(RedisProtocolError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:  # no complete reply buffered (RESP2 has no false)
                return
            if not queue:
                self.abort(RedisProtocolError("Redis sent a reply no request waits for"))
                return
            request = queue[0]
            request.replies.append(reply)
            if len(request.replies) == request.want:
                queue.popleft()
                if not request.future.done():  # done: its caller gave up; reply dropped
                    request.future.set_result(request.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("Redis closed the connection"))

    def abort(self, exc: BaseException) -> None:
        """Close the socket now and fail every queued request with `exc`."""
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        queue = self.queue
        while queue:
            request = queue.popleft()
            if not request.future.done():
                request.future.set_exception(
                    ConnectionError(f"connection to Redis lost: {exc!r}")
                    if not isinstance(exc, ConnectionError)
                    else exc
                )

    def closing(self) -> bool:
        """Whether the transport is closing (lost, or about to be)."""
        return self.transport is None or self.transport.is_closing()

    def send(self, payload: bytes, want: int, now: float) -> asyncio.Future[list[Any]]:
        assert self.transport is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.queue.append(_Request(future, want, now))
        self.transport.write(payload)
        return future


def _ssl_context(kwargs: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context redis-py would build for the same rediss:// URL (same defaults)."""
    context = RedisSSLContext(
        keyfile=kwargs.get("ssl_keyfile"),
        certfile=kwargs.get("ssl_certfile"),
        cert_reqs=kwargs.get("ssl_cert_reqs", "required"),
        ca_certs=kwargs.get("ssl_ca_certs"),
        ca_path=kwargs.get("ssl_ca_path"),
        check_hostname=kwargs.get("ssl_check_hostname", True),
    ).get()
    return context


def _command(*args: bytes) -> bytes:
    """RESP bytes of one command."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class PipelinedConnection:
    """A lazily opened, self-healing, pipelined connection for one Redis URL."""

    def __init__(self, url: str, *, connect_timeout_s: float, stale_after_s: float) -> None:
        kwargs: dict[str, Any] = dict(_parse_redis_url(url))
        self._kwargs = kwargs
        self._connect_timeout_s = connect_timeout_s
        self._stale_after_s = stale_after_s
        self._protocol: _ReplyProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False
        self.connects = 0  # connections opened so far (tests and metrics)
        # Sent once on every new connection before any request: AUTH and SELECT.
        handshake: list[bytes] = []
        password, username = kwargs.get("password"), kwargs.get("username")
        if password is not None:
            auth = (username.encode(), password.encode()) if username else (password.encode(),)
            handshake.append(_command(b"AUTH", *auth))
        db = int(kwargs.get("db") or 0)
        if db:
            handshake.append(_command(b"SELECT", b"%d" % db))
        self._handshake = handshake

    async def exchange(self, payload: bytes, replies: int) -> list[Any]:
        """Send `payload` (RESP bytes of `replies` commands); return the replies in order.

        An error reply is returned as a ResponseError in its place, not raised.
        """
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        now = loop.time()
        if protocol is None or protocol.lost is not None or protocol.closing():
            protocol = await self._connect()
        elif protocol.queue and now - protocol.queue[0].sent_at > self._stale_after_s:
            self._drop(protocol)
            protocol = await self._connect()
        else:
            return await protocol.send(payload, replies, now)
        return await protocol.send(payload, replies, loop.time())  # after connecting

    def reset(self) -> None:
        """Drop the connection if its oldest request has waited too long (a caller timed out)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or not protocol.queue:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - protocol.queue[0].sent_at >= self._stale_after_s:
            self._drop(protocol)

    def _drop(self, protocol: _ReplyProtocol) -> None:
        """Close a connection whose oldest request went unanswered too long."""
        protocol.abort(TimeoutError(f"no reply from Redis in {self._stale_after_s} s"))

    async def _connect(self) -> _ReplyProtocol:
        if self._closed:
            raise ConnectionError("connection closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent first requests open one connection
            protocol = self._protocol
            if protocol is not None and protocol.lost is None and not protocol.closing():
                return protocol
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self._connect_timeout_s):
                protocol = await self._open()
                try:
                    if self._handshake:
                        answers = await protocol.send(
                            b"".join(self._handshake), len(self._handshake), loop.time()
                        )
                        refused = [a for a in answers if isinstance(a, ResponseError)]
                        if refused:
                            raise ConnectionError(f"Redis refused the connection: {refused[0]}")
                except BaseException as exc:  # refused, timed out or cancelled: never kept
                    protocol.abort(exc)
                    raise
            self._protocol = protocol
            self.connects += 1
            return protocol

    async def _open(self) -> _ReplyProtocol:
        loop = asyncio.get_running_loop()
        kwargs = self._kwargs
        connection_class = kwargs.get("connection_class")
        if connection_class is UnixDomainSocketConnection:
            _, protocol = await loop.create_unix_connection(_ReplyProtocol, kwargs["path"])
        else:
            tls = _ssl_context(kwargs) if connection_class is SSLConnection else None
            _, protocol = await loop.create_connection(
                _ReplyProtocol,
                kwargs.get("host", "localhost"),
                int(kwargs.get("port", 6379)),
                ssl=tls,
                server_hostname=kwargs.get("host", "localhost") if tls else None,
            )
        return protocol

    def close(self) -> None:
        """Close the connection; queued requests fail; later requests raise."""
        self._closed = True
        if self._protocol is not None:
            self._protocol.abort(ConnectionError("connection closed"))
            self._protocol = None
