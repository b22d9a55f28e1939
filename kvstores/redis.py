"""RedisStore: versions of every key in one Redis sorted set per entity key.

Layout (docs/storage-layout.md has the exact bytes):

- Redis key = b"<key_prefix>:<dataset>:{" + entity key bytes + b"}". The hash tag
  puts every version of an entity in one Redis Cluster slot.
- score = event_ms, member = event_ms as 8 bytes big-endian signed + value bytes,
  so two versions never share a member and the event time survives exactly.
  A score is a double: exact for |event_ms| <= 2**53 (year 287,396), checked on write.
- TTL: the whole entity key expires ttl_s after its newest write (EXPIRE).

"Latest at or before T" is ZRANGE key T -inf BYSCORE REV LIMIT 0 1. RedisClusterStore
sends a batch of them as one pipeline per node (kvstores.redis_cluster); RedisStore
runs them inside a small Lua script, one EVALSHA per 500 lookups, all in one write:
one round trip per call either way (docs/benchmarks.md, "Redis store fast path").
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import struct
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.maint_notifications import MaintNotificationsConfig

from kvstores.base import Found, KVStore, Lookup, Row, StoreError
from kvstores.redis_pipeline import PipelinedConnection, is_noscript

__all__ = ["MAX_EXACT_EVENT_MS", "BaseRedisStore", "Command", "RedisStore"]

#: Largest |event_ms| a double score holds exactly.
MAX_EXACT_EVENT_MS = 2**53

#: One Redis command: (name as str, redis key, *arguments); the key is always second.
Command = tuple[Any, ...]

_MEMBER_TS = struct.Struct(">q")
# Rows per pipeline on writes: large enough to amortise the round trip, small
# enough that one reply buffer stays modest and a timeout loses little work.
_WRITE_CHUNK = 1000
# RedisClusterException (no slot map, slot not covered) is not a RedisError.
_BACKEND_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)

# RedisStore's read: every lookup of a chunk in one command. KEYS[i] is an entity's
# Redis key, ARGV[i] its time bound ("+inf": the latest version); the reply holds per
# key its newest member at or before the bound, or nil (Lua false). No shebang, so it
# runs on Redis 6.2 as well; a script that only reads needs no flags on a replica or
# under maxmemory.
_READ_SCRIPT = (
    b"local found = {}\n"
    b"for i = 1, #KEYS do\n"
    b"  if ARGV[i] == '+inf' then\n"
    b"    found[i] = redis.call('ZRANGE', KEYS[i], -1, -1)[1] or false\n"
    b"  else\n"
    b"    found[i] = redis.call('ZRANGE', KEYS[i], ARGV[i], '-inf', 'BYSCORE', 'REV',"
    b" 'LIMIT', 0, 1)[1] or false\n"
    b"  end\n"
    b"end\n"
    b"return found\n"
)
_READ_SHA = hashlib.sha1(_READ_SCRIPT, usedforsecurity=False).hexdigest().encode()
# Lookups per EVALSHA: a script blocks Redis while it runs (a few µs per key), so
# a large batch runs as several short scripts, all sent in one write.
_SCRIPT_CHUNK = 500
# A read connection whose oldest request has had no reply for this many store timeouts
# (and at least _MIN_STALE_S) is dropped and opened again: late replies alone are not
# a reason to reconnect (kvstores.redis_pipeline).
_STALE_TIMEOUTS = 4
_MIN_STALE_S = 1.0
# The RESP bytes that never change: the command head and the "+inf" bound.
_EVALSHA_HEAD = b"$7\r\nEVALSHA\r\n$40\r\n" + _READ_SHA + b"\r\n"
_LATEST = b"$4\r\n+inf\r\n"
_SCRIPT_LOAD = b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%d\r\n%s\r\n" % (
    len(_READ_SCRIPT),
    _READ_SCRIPT,
)


def _check_event_ms(row: Row) -> None:
    if type(row.event_ms) is not int or not -MAX_EXACT_EVENT_MS <= row.event_ms <= (
        MAX_EXACT_EVENT_MS
    ):
        raise ValueError(
            f"event_ms {row.event_ms!r} of dataset {row.dataset!r}: "
            f"Redis scores are exact only for integers within +-2**53"
        )


def _describe(exc: BaseException) -> str:
    # asyncio.timeout raises a bare TimeoutError; say what it means.
    return f"{type(exc).__name__}: {exc or 'no answer in time'}"


class _Client(Protocol):
    async def aclose(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Client)


class BaseRedisStore(KVStore, Generic[ClientT]):
    """The Redis layout and batching over one client type; subclasses connect and execute."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.1,
        write_timeout_s: float = 5.0,
        max_connections: int = 64,
        max_versions: int | None = 16,
        key_prefix: str = "ft",
    ) -> None:
        """Validate the options and prepare the clients; nothing connects until the first call."""
        if timeout_s <= 0 or write_timeout_s <= 0:
            raise ValueError(
                f"timeout_s and write_timeout_s must be > 0, got {timeout_s}, {write_timeout_s}"
            )
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if max_versions is not None and max_versions < 1:
            raise ValueError(f"max_versions must be >= 1 or None, got {max_versions}")
        if not key_prefix or any(c in key_prefix for c in ":{}"):
            raise ValueError(f"key_prefix {key_prefix!r} must be non-empty without ':', '{{', '}}'")
        self.url = url
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_connections = max_connections
        self.max_versions = max_versions
        self.key_prefix = key_prefix
        self._prefixes: dict[str, bytes] = {}
        # Request path: fail fast within timeout_s (socket timeouts per operation,
        # asyncio.timeout in _run for the whole call including any wait for a
        # connection).
        self._client = self._make_client(timeout_s)
        # Bulk writes (fetcher load) get a longer timeout; the client is created on
        # first write so read-only servers never open its connections.
        self._write_client: ClientT | None = None
        self._closed = False

    @abc.abstractmethod
    def _make_client(self, timeout_s: float) -> ClientT:
        """A client whose socket operations time out after timeout_s; must not connect."""

    @abc.abstractmethod
    async def _execute(self, client: ClientT, commands: Sequence[Command]) -> list[Any]:
        """Send commands as one pipeline (no MULTI) and return the replies in order."""

    @abc.abstractmethod
    def _where(self) -> str:
        """'redis host:port/db' or similar for error messages; never the password."""

    def _key_prefix(self, dataset: str) -> bytes:
        # Built once per dataset.
        prefix = self._prefixes.get(dataset)
        if prefix is None:
            if not isinstance(dataset, str) or not dataset or "{" in dataset or "}" in dataset:
                raise ValueError(
                    f"dataset {dataset!r}: must be a non-empty str without '{{' or '}}' "
                    "(they would change the Redis Cluster hash tag)"
                )
            prefix = f"{self.key_prefix}:{dataset}:{{".encode()
            self._prefixes[dataset] = prefix
        return prefix

    def redis_key(self, dataset: str, key: bytes) -> bytes:
        """The Redis key holding every version of (dataset, key)."""
        return self._key_prefix(dataset) + key + b"}"

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Latest version at or before each lookup's time, or None; one pipeline per call."""
        self._check_open()
        if not lookups:
            return []
        commands = [
            ("ZRANGE", self.redis_key(dataset, key), b"+inf" if at_ms is None else at_ms,
             b"-inf", b"BYSCORE", b"REV", b"LIMIT", 0, 1)
            for dataset, key, at_ms in lookups
        ]  # fmt: skip
        replies = await self._run(self._client, commands, self.timeout_s, "multi_get")
        results: list[Found | None] = []
        for command, reply in zip(commands, replies, strict=True):
            if not reply:
                results.append(None)
                continue
            member: bytes = reply[0]
            if len(member) < _MEMBER_TS.size:
                raise StoreError(
                    f"{self._where()}: malformed member in {command[1]!r}: "
                    f"{len(member)} bytes, expected 8-byte event time + value"
                )
            results.append((member[_MEMBER_TS.size :], _MEMBER_TS.unpack_from(member)[0]))
        return results

    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Write rows in pipelines of 1000: replace same event time, add, expire, trim."""
        self._check_open()
        for row in rows:  # Validate everything before writing anything.
            _check_event_ms(row)
            if row.ttl_s is not None and row.ttl_s < 1:
                raise ValueError(f"ttl_s {row.ttl_s!r} of dataset {row.dataset!r}: must be >= 1")
            self._key_prefix(row.dataset)
        if not rows:
            return
        if self._write_client is None:
            self._write_client = self._make_client(self.write_timeout_s)
        trim_stop = None if self.max_versions is None else -(self.max_versions + 1)
        for start in range(0, len(rows), _WRITE_CHUNK):
            commands: list[Command] = []
            for row in rows[start : start + _WRITE_CHUNK]:
                rkey = self.redis_key(row.dataset, row.key)
                ts = row.event_ms
                # Not atomic (no MULTI, to stay cluster-friendly): a reader racing a
                # replace of the same event time may miss that version for an instant.
                commands.append(("ZREMRANGEBYSCORE", rkey, ts, ts))
                commands.append(("ZADD", rkey, ts, _MEMBER_TS.pack(ts) + row.value))
                if row.ttl_s is None:
                    # The newest write decides the entity's lifetime: "forever".
                    commands.append(("PERSIST", rkey))
                else:
                    commands.append(("EXPIRE", rkey, int(row.ttl_s)))
                if trim_stop is not None:
                    # Ranks ascend by score: drop all but the max_versions newest.
                    commands.append(("ZREMRANGEBYRANK", rkey, 0, trim_stop))
            await self._run(self._write_client, commands, self.write_timeout_s, "multi_put")

    async def close(self) -> None:
        """Close both clients and their connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
        if self._write_client is not None:
            await self._write_client.aclose()

    async def _run(
        self, client: ClientT, commands: Sequence[Command], timeout_s: float, what: str
    ) -> list[Any]:
        """Execute commands within timeout_s; every backend failure becomes StoreError."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._execute(client, commands)
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: {what} failed: {_describe(exc)}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._where()}: store is closed")


class RedisStore(BaseRedisStore[Redis]):
    """KVStore over Redis (standalone); connects lazily.

    Reads go through one pipelined connection (kvstores.redis_pipeline) shared by all
    concurrent calls; writes and PING through redis.asyncio's pool.
    """

    kind = "redis"

    def __init__(self, url: str, **options: Any) -> None:
        """See BaseRedisStore; `url` is redis://, rediss:// or unix:// as redis-py reads it."""
        super().__init__(url, **options)
        self._reads = PipelinedConnection(
            url,
            connect_timeout_s=self.timeout_s,
            stale_after_s=max(_MIN_STALE_S, _STALE_TIMEOUTS * self.timeout_s),
        )

    def _make_client(self, timeout_s: float) -> Redis:
        # No retries: a failed call raises at once and the caller decides (the
        # fetcher serves ERROR for that group). Recovery needs no retry: redis-py
        # disconnects a connection on any error or cancellation, and the pool
        # checks a pooled connection before reuse (a closed socket reads as EOF)
        # and reconnects it. No health_check_interval: its PING would add a round
        # trip to the first request after an idle period.
        # Maintenance notifications off: while on (redis-py 8 defaults to "auto")
        # the pool skips that stale-connection check, so a connection idle across
        # a Redis restart failed its next call; they may also relax socket
        # timeouts to 10 s during a failover.
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            # No CLIENT SETINFO on connect: two fewer round trips before a new connection's
            # first read, which otherwise cannot finish inside a short read timeout on a
            # slow link.
            driver_info=DriverInfo(name=None, lib_version=None),
        )
        return Redis.from_pool(pool)

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Latest version at or before each lookup's time, or None; one round trip per call."""
        self._check_open()
        if not lookups:
            return []
        request, scripts = self._pack_reads(lookups)
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._run_reads(request, scripts)
        except TimeoutError as exc:
            # No answer within timeout_s: the connection is stuck (or Redis is): drop it
            # so the next call reconnects instead of queueing behind this one.
            self._reads.reset()
            raise StoreError(f"{self._where()}: multi_get failed: {_describe(exc)}") from exc
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: multi_get failed: {_describe(exc)}") from exc
        results: list[Found | None] = []
        for reply in replies:
            for member in reply:
                if member is None:
                    results.append(None)
                elif len(member) < _MEMBER_TS.size:
                    dataset, key, _ = lookups[len(results)]
                    raise StoreError(
                        f"{self._where()}: malformed member in {self.redis_key(dataset, key)!r}: "
                        f"{len(member)} bytes, expected 8-byte event time + value"
                    )
                else:
                    results.append((member[_MEMBER_TS.size :], _MEMBER_TS.unpack_from(member)[0]))
        if len(results) != len(lookups):
            raise StoreError(
                f"{self._where()}: multi_get got {len(results)} results for {len(lookups)} lookups"
            )
        return results

    def _pack_reads(self, lookups: Sequence[Lookup]) -> tuple[bytes, int]:
        """The RESP bytes of one EVALSHA per chunk of lookups, and the number of chunks."""
        # Packed here rather than by redis-py: its pack_command encodes and joins
        # argument by argument and was ~19% of the server's CPU at 200 ZRANGEs.
        prefixes = self._prefixes
        parts: list[bytes] = []
        for start in range(0, len(lookups), _SCRIPT_CHUNK):
            chunk = lookups[start : start + _SCRIPT_CHUNK]
            count = b"%d" % len(chunk)
            parts.append(
                b"*%d\r\n%s$%d\r\n%s\r\n" % (2 * len(chunk) + 3, _EVALSHA_HEAD, len(count), count)
            )
            for dataset, key, _ in chunk:
                prefix = prefixes.get(dataset) or self._key_prefix(dataset)
                parts.append(b"$%d\r\n%s%s}\r\n" % (len(prefix) + len(key) + 1, prefix, key))
            for _, _, at_ms in chunk:
                if at_ms is None:
                    parts.append(_LATEST)
                else:
                    bound = b"%d" % at_ms
                    parts.append(b"$%d\r\n%s\r\n" % (len(bound), bound))
        return b"".join(parts), -(-len(lookups) // _SCRIPT_CHUNK)

    async def _run_reads(self, request: bytes, scripts: int) -> list[Any]:
        """Send the packed EVALSHAs on the pipelined connection; load the script when needed."""
        replies = await self._reads.exchange(request, scripts)
        if any(map(is_noscript, replies)):
            # First call, Redis restarted or SCRIPT FLUSH: load and read again, in one
            # write; the SHA is fixed, so this happens once per Redis start.
            replies = (await self._reads.exchange(_SCRIPT_LOAD + request, scripts + 1))[1:]
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    async def close(self) -> None:
        """Close the read connection and both clients (idempotent)."""
        self._reads.close()
        await super().close()

    async def _execute(self, client: Redis, commands: Sequence[Command]) -> list[Any]:
        pipe: Any = client.pipeline(transaction=False)  # Pipeline.reset is untyped
        try:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute()
            return replies
        finally:
            await pipe.reset()

    async def ping(self) -> None:
        """Return when Redis answers PING within the timeout; raise StoreError otherwise."""
        self._check_open()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.ping()
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: ping failed: {_describe(exc)}") from exc

    def _where(self) -> str:
        # Host and port only: the URL may carry a password.
        kwargs = self._client.connection_pool.connection_kwargs
        return f"redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
