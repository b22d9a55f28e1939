"""RedisStore: versions of every key in one Redis sorted set per entity key.

Layout (docs/storage-layout.md has the exact bytes):

- Redis key = b"<key_prefix>:<dataset>:{" + entity key bytes + b"}". The hash tag
  puts every version of an entity in one Redis Cluster slot.
- score = event_ms, member = event_ms as 8 bytes big-endian signed + value bytes,
  so two versions never share a member and the event time survives exactly.
  A score is a double: exact for |event_ms| <= 2**53 (year 287,396), checked on write.
- TTL: the whole entity key expires ttl_s after its newest write (EXPIRE).
- Latest copy (unless latest_keys=False): a string key, the versions key + b":latest",
  holding the sorted set's newest member, written by the same script as the version
  and given the same TTL. A read of the latest version is then a plain GET (MGET)
  instead of a sorted-set lookup: about a quarter of Redis's CPU per lookup
  (docs/benchmarks.md, "Latest keys"), at the price of storing the newest value twice.

Aggregation logs are sorted sets of their own, the versions key + b":log", read and
written by the Lua scripts of kvstores.redis_log, one call per key.

"Latest at or before T" is ZRANGE key T -inf BYSCORE REV LIMIT 0 1. RedisClusterStore
sends a batch of reads as one pipeline per node (kvstores.redis_cluster); RedisStore
sends one MGET per 500 latest lookups and runs the others inside a small Lua script,
one EVALSHA per 500 lookups, all in one write: one round trip per call either way
(docs/benchmarks.md, "Redis store fast path"). A latest lookup whose latest key is
missing is looked up again in the sorted set (a second round trip, for those lookups
only), so rows written without the latest copy (before it existed, or by a job that
writes only the sorted set) are still found; latest_fallback=False skips that when
every writer maintains latest keys, making a miss cost one round trip.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import struct
from collections.abc import Sequence
from itertools import compress
from typing import Any, Generic, Protocol, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
from redis.maint_notifications import MaintNotificationsConfig

from kvstores.base import (
    EMPTY_LOG,
    Found,
    KnownPart,
    KVStore,
    LogEntry,
    LogLookup,
    LogRead,
    Lookup,
    Row,
    StoreError,
)
from kvstores.logs import by_key, check_entry, known_in, log_bounds
from kvstores.redis_log import (
    LOG_SUFFIX,
    READ_LOG_LOAD,
    READ_LOG_SCRIPT,
    READ_LOG_SHA,
    WRITE_LOG_SCRIPT,
    WRITE_LOG_SHA,
    MalformedMember,
    decode_read,
    pack_read,
    read_arguments,
    write_arguments,
)
from kvstores.redis_pipeline import PipelinedConnection, is_noscript

__all__ = ["LATEST_SUFFIX", "MAX_EXACT_EVENT_MS", "BaseRedisStore", "Command", "RedisStore"]

#: Largest |event_ms| a double score holds exactly.
MAX_EXACT_EVENT_MS = 2**53

#: One Redis command: (name as str, redis key, *arguments); the key is second, except
#: in ("EVALSHA", sha, numkeys, first key, ...).
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
#: Suffix of the latest-copy key: the versions key + this.
LATEST_SUFFIX = b":latest"
# What follows the entity key bytes in a latest key: the hash tag's end, then the suffix.
_LATEST_TAIL = b"}" + LATEST_SUFFIX
# Latest lookups per MGET: Redis answers an MGET in one go (about 1 µs per key), so a
# large batch is split like the scripts.
_MGET_CHUNK = 500

# The write of one row, atomic per entity so that the latest copy always equals the
# sorted set's newest member whatever order versions arrive in. KEYS[1] the versions
# key, KEYS[2] the latest key (same hash tag: same Cluster slot); ARGV: event_ms,
# member, TTL in seconds ("0": none), versions to keep ("0": all), "1" to write the
# latest copy or "0" to delete it (a store with latest_keys=False must not leave a
# stale copy that a reader with latest keys on would trust). An entity key that is
# empty or whose first byte is "}" has no latest key (KEYS[2] absent): its versions
# key's hash tag is empty, so Redis Cluster hashes the whole key and a second key
# would land in another slot. No key of the fetcher's key types is empty or starts
# with "}" (0x7d) except int64s >= 0x7d00000000000000; those read the sorted set.
_WRITE_SCRIPT = (
    b"local key, latest, ts = KEYS[1], KEYS[2], ARGV[1]\n"
    b"redis.call('ZREMRANGEBYSCORE', key, ts, ts)\n"
    b"redis.call('ZADD', key, ts, ARGV[2])\n"
    b"local ttl, keep = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    b"if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end\n"
    b"if keep > 0 then redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1)) end\n"
    b"if not latest then\n"
    b"elseif ARGV[5] == '1' then\n"
    b"  local newest = redis.call('ZRANGE', key, -1, -1)[1]\n"
    b"  if ttl > 0 then redis.call('SET', latest, newest, 'EX', ttl)\n"
    b"  else redis.call('SET', latest, newest) end\n"
    b"else\n"
    b"  redis.call('DEL', latest)\n"
    b"end\n"
    b"return 1\n"
)
# The first bytes (key[:1]) of entity keys without a latest key.
_NO_LATEST = (b"", b"}")
_WRITE_SHA = hashlib.sha1(_WRITE_SCRIPT, usedforsecurity=False).hexdigest()


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

    def script_load(self, script: Any) -> Any: ...


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
        latest_keys: bool = True,
        latest_fallback: bool = True,
    ) -> None:
        """Validate the options and prepare the clients; nothing connects until the first call.

        latest_keys: writes keep a copy of each entity's newest version in its own key
        and latest reads GET it (delete it when False, and read the sorted sets).
        latest_fallback: a latest read that finds no latest key looks in the sorted set
        (rows written by a job that maintains only the sorted sets are found).
        """
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
        self.latest_keys = latest_keys
        self.latest_fallback = latest_fallback
        self._prefixes: dict[str, bytes] = {}
        # Request path: fail fast within timeout_s (socket timeouts per operation,
        # asyncio.timeout in multi_get for the whole call including any wait for a
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

    def latest_key(self, dataset: str, key: bytes) -> bytes:
        """The Redis key holding the newest version of (dataset, key) (latest_keys)."""
        return self._key_prefix(dataset) + key + _LATEST_TAIL

    def log_key(self, dataset: str, key: bytes) -> bytes:
        """The Redis key holding the aggregation log of (dataset, key) (kvstores.redis_log)."""
        return self._key_prefix(dataset) + key + b"}" + LOG_SUFFIX

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Latest version at or before each lookup's time, or None.

        One round trip per call; a second one, for those lookups only, when latest
        lookups find no latest key and latest_fallback is on.
        """
        self._check_open()
        if not lookups:
            return []
        try:
            async with asyncio.timeout(self.timeout_s):
                members = await self._read(lookups, self.latest_keys)
                if self.latest_keys and self.latest_fallback and None in members:
                    missed = [
                        i for i, member in enumerate(members)
                        if member is None and lookups[i][2] is None
                    ]  # fmt: skip
                    if missed:
                        again = await self._read([lookups[i] for i in missed], False)
                        for i, member in zip(missed, again, strict=True):
                            members[i] = member
        except TimeoutError as exc:
            self._read_timed_out()
            raise StoreError(f"{self._where()}: multi_get failed: {_describe(exc)}") from exc
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: multi_get failed: {_describe(exc)}") from exc
        if len(members) != len(lookups):
            raise StoreError(
                f"{self._where()}: multi_get got {len(members)} results for {len(lookups)} lookups"
            )
        results: list[Found | None] = []
        for member in members:
            if member is None:
                results.append(None)
            elif len(member) < _MEMBER_TS.size:
                dataset, key, _ = lookups[len(results)]
                raise StoreError(
                    f"{self._where()}: malformed member in {self.redis_key(dataset, key)!r}"
                    f" (or its latest copy): {len(member)} bytes, expected 8-byte event time"
                    " + value"
                )
            else:
                results.append((member[_MEMBER_TS.size :], _MEMBER_TS.unpack_from(member)[0]))
        return results

    async def _read(self, lookups: Sequence[Lookup], latest_keys: bool) -> list[bytes | None]:
        """One round trip: per lookup the stored member (event time + value) or None.

        Latest lookups read the latest key when latest_keys is set, the sorted set
        otherwise; lookups with a time bound, and of entity keys that are empty or
        start with "}" (no latest key, see _WRITE_SCRIPT), always read the sorted set.
        """
        commands: list[Command] = [
            ("GET", self.latest_key(dataset, key))
            if at_ms is None and latest_keys and key[:1] not in _NO_LATEST else
            ("ZRANGE", self.redis_key(dataset, key), b"+inf" if at_ms is None else at_ms,
             b"-inf", b"BYSCORE", b"REV", b"LIMIT", 0, 1)
            for dataset, key, at_ms in lookups
        ]  # fmt: skip
        replies = await self._execute(self._client, commands)
        # GET answers bytes or None, ZRANGE a list of at most one member.
        return [
            (reply[0] if reply else None) if isinstance(reply, list) else reply
            for reply in replies
        ]

    def _read_timed_out(self) -> None:
        """Called when a read got no answer within timeout_s (before StoreError is raised)."""

    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Write rows, one script call each, in pipelines of 1000.

        Per row: replace the same event time, add, expire, trim, and keep the latest
        copy equal to the newest version (or delete it when latest_keys is off).
        """
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
        client = self._write_client
        keep = 0 if self.max_versions is None else self.max_versions
        latest = b"1" if self.latest_keys else b"0"
        for start in range(0, len(rows), _WRITE_CHUNK):
            commands: list[Command] = []
            for row in rows[start : start + _WRITE_CHUNK]:
                rkey = self.redis_key(row.dataset, row.key)
                ts = row.event_ms
                # Atomic per row; rows of one pipeline are not one transaction (no
                # MULTI, to stay cluster-friendly).
                member = _MEMBER_TS.pack(ts) + row.value
                ttl = int(row.ttl_s or 0)
                if row.key[:1] in _NO_LATEST:  # No latest key: see _WRITE_SCRIPT.
                    commands.append(("EVALSHA", _WRITE_SHA, 1, rkey, ts, member, ttl, keep, latest))
                else:
                    commands.append((
                        "EVALSHA", _WRITE_SHA, 2, rkey, rkey + LATEST_SUFFIX,
                        ts, member, ttl, keep, latest,
                    ))  # fmt: skip
            try:
                async with asyncio.timeout(self.write_timeout_s):
                    try:
                        await self._execute(client, commands)
                    except NoScriptError:
                        # First write, Redis restarted or SCRIPT FLUSH: load the script
                        # (on every master of a cluster) and write the chunk again;
                        # rewriting a version is a replace, so rows already written
                        # are unchanged.
                        await client.script_load(_WRITE_SCRIPT)
                        await self._execute(client, commands)
            except _BACKEND_ERRORS as exc:
                raise StoreError(f"{self._where()}: multi_put failed: {_describe(exc)}") from exc

    async def read_logs(
        self, lookups: Sequence[LogLookup], known: Sequence[KnownPart | None] | None = None
    ) -> list[LogRead]:
        """Each lookup's log entries: one read script call per lookup, in one round trip.

        The scan stops at the first batch part on the server (kvstores.redis_log); a known
        part met there (same time and length) is answered without its payload.
        """
        self._check_open()
        if not lookups:
            return []
        asked: list[int] = []  # the lookups whose range may hold entries
        commands: list[Command] = []
        for i, (dataset, key, lo_ms, hi_ms, limit) in enumerate(lookups):
            log_key = self.log_key(dataset, key)  # checks the dataset
            bounds = log_bounds(lo_ms, hi_ms, limit)
            if bounds is not None:
                asked.append(i)
                commands.append(("EVALSHA", READ_LOG_SHA, 1, log_key, bounds[1], bounds[0], limit,
                                 *read_arguments(known_in(known, i, bounds))))  # fmt: skip
        results = [EMPTY_LOG] * len(lookups)
        if not commands:
            return results
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._read_log_replies(commands)
        except TimeoutError as exc:
            self._read_timed_out()
            raise StoreError(f"{self._where()}: read_logs failed: {_describe(exc)}") from exc
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: read_logs failed: {_describe(exc)}") from exc
        if len(replies) != len(commands):
            raise StoreError(
                f"{self._where()}: read_logs got {len(replies)} replies for {len(commands)} reads"
            )
        for i, command, reply in zip(asked, commands, replies, strict=True):
            try:
                results[i] = decode_read(reply)
            except MalformedMember as exc:
                raise StoreError(
                    f"{self._where()}: malformed member in {command[3]!r}: {exc}"
                ) from exc
        return results

    async def _read_log_replies(self, commands: Sequence[Command]) -> list[Any]:
        """Run read script calls as one pipeline (per node); loads the script when missing."""
        try:
            return await self._execute(self._client, commands)
        except NoScriptError:
            # First read, Redis restarted or SCRIPT FLUSH: load (on every master) and again.
            await self._client.script_load(READ_LOG_SCRIPT)
            return await self._execute(self._client, commands)

    async def append_log(self, entries: Sequence[LogEntry]) -> None:
        """Write log entries: one write script call per key (atomic), in pipelines of 1000.

        Per key: replace the entries of the same (ts_ms, id), add, then EXPIRE by the
        longest TTL of the call's entries for that key (PERSIST when one has none).
        """
        self._check_open()
        for entry in entries:  # Validate everything before writing anything.
            check_entry(entry)
            self._key_prefix(entry.dataset)
        keys = by_key(entries)
        if not keys:
            return
        if self._write_client is None:
            self._write_client = self._make_client(self.write_timeout_s)
        client = self._write_client
        commands: list[Command] = [
            ("EVALSHA", WRITE_LOG_SHA, 1, self.log_key(dataset, key), *write_arguments(unique))
            for (dataset, key), unique in keys.items()
        ]
        for start in range(0, len(commands), _WRITE_CHUNK):
            chunk = commands[start : start + _WRITE_CHUNK]
            try:
                async with asyncio.timeout(self.write_timeout_s):
                    try:
                        await self._execute(client, chunk)
                    except NoScriptError:
                        # As in multi_put: load the script and write the chunk again (a
                        # rewrite of an entry replaces it with the same bytes).
                        await client.script_load(WRITE_LOG_SCRIPT)
                        await self._execute(client, chunk)
            except _BACKEND_ERRORS as exc:
                raise StoreError(f"{self._where()}: append_log failed: {_describe(exc)}") from exc

    async def close(self) -> None:
        """Close both clients and their connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
        if self._write_client is not None:
            await self._write_client.aclose()

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

    def _read_timed_out(self) -> None:
        # No answer within timeout_s: the connection is stuck (or Redis is): drop it
        # so the next call reconnects instead of queueing behind this one.
        self._reads.reset()

    async def _read(self, lookups: Sequence[Lookup], latest_keys: bool) -> list[bytes | None]:
        """One write on the pipelined connection: MGETs, then EVALSHAs; members in order."""
        if latest_keys:
            # Which lookups read the sorted sets (see BaseRedisStore._read).
            versions = [at_ms is not None or key[:1] in _NO_LATEST for _, key, at_ms in lookups]
            if not any(versions):  # The usual call: every lookup wants the latest version.
                return await self._exchange(lookups, ())
            if not all(versions):
                latest = list(compress(lookups, [not v for v in versions]))
                members = await self._exchange(latest, list(compress(lookups, versions)))
                # MGET members first, then the script's, back in the lookups' order.
                from_mget, from_script = iter(members[: len(latest)]), iter(members[len(latest) :])
                return [next(from_script) if v else next(from_mget) for v in versions]
        return await self._exchange((), lookups)

    def _pack_mgets(self, lookups: Sequence[Lookup]) -> tuple[bytes, int]:
        """The RESP bytes of one MGET of latest keys per chunk of lookups, and the count."""
        # Packed here rather than by redis-py: its pack_command encodes and joins
        # argument by argument and was ~19% of the server's CPU at 200 ZRANGEs.
        prefixes = self._prefixes
        parts: list[bytes] = []
        tail, size = _LATEST_TAIL, len(_LATEST_TAIL)
        for start in range(0, len(lookups), _MGET_CHUNK):
            chunk = lookups[start : start + _MGET_CHUNK]
            parts.append(b"*%d\r\n$4\r\nMGET\r\n" % (len(chunk) + 1))
            for dataset, key, _ in chunk:
                prefix = prefixes.get(dataset) or self._key_prefix(dataset)
                length = len(prefix) + len(key) + size
                parts.append(b"$%d\r\n%s%s%s\r\n" % (length, prefix, key, tail))
        return b"".join(parts), -(-len(lookups) // _MGET_CHUNK)

    def _pack_scripts(self, lookups: Sequence[Lookup]) -> tuple[bytes, int]:
        """The RESP bytes of one read EVALSHA per chunk of lookups, and the count."""
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

    async def _exchange(
        self, latest: Sequence[Lookup], scripted: Sequence[Lookup]
    ) -> list[bytes | None]:
        """One write: MGETs of `latest`'s latest keys, then read scripts for `scripted`.

        Members in that order; loads the read script when Redis lacks it.
        """
        request, count = self._pack_mgets(latest) if latest else (b"", 0)
        if scripted:
            scripts, script_count = self._pack_scripts(scripted)
            request += scripts
            count += script_count
        replies = await self._reads.exchange(request, count)
        if scripted and any(map(is_noscript, replies)):
            # First call, Redis restarted or SCRIPT FLUSH: load and read again, in one
            # write; the SHA is fixed, so this happens once per Redis start.
            replies = (await self._reads.exchange(_SCRIPT_LOAD + request, count + 1))[1:]
        members: list[bytes | None] = []
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
            members += reply
        return members

    async def _read_log_replies(self, commands: Sequence[Command]) -> list[Any]:
        """One write on the pipelined read connection: every read script call of the call."""
        request = b"".join(pack_read(*command[3:]) for command in commands)
        replies = await self._reads.exchange(request, len(commands))
        if any(map(is_noscript, replies)):
            # As in _exchange: load the script and read again, in one write.
            request = READ_LOG_LOAD + request
            replies = (await self._reads.exchange(request, len(commands) + 1))[1:]
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
