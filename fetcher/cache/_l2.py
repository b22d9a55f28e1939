"""L2: the shared cache in Redis, one round trip per batch, never failing the caller.

Redis key: "<prefix>:" + u32 len + dataset + u32 len + key bytes + at, where at is
b"L" for "latest" or b"@" + 8-byte big-endian at_ms; length prefixes keep any
bytes unambiguous. Redis value: 8-byte big-endian event_ms + value bytes, or a
1-byte marker for "cached as missing" (a real value is at least 8 bytes).

A Redis failure or timeout is a miss (get_many) or a no-op (put_many): counted in
`errors`, logged at most once per `log_every_s`, then Redis is left alone for
`backoff_s` so a hung server does not cost every request a full timeout. The
client reconnects by itself once Redis answers again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import struct
import time
from collections.abc import Sequence
from typing import Final, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fetcher.cache._keys import CacheKey
from kvstores.base import Found, StoreError

log = logging.getLogger("fetcher.cache.l2")

_LEN = struct.Struct(">I")
_I64 = struct.Struct(">q")
_LATEST: Final = b"L"
_AT: Final = b"@"
# One byte: cannot be mistaken for an encoded value, which is >= 8 bytes.
_NEGATIVE_VALUE: Final = b"\x00"


class NegativeEntry(enum.Enum):
    """Type of the `Negative` sentinel: the key is cached as having no value."""

    NEGATIVE = "negative"


#: "Cached as missing": the store had no row for the key when it was cached.
Negative: Final = NegativeEntry.NEGATIVE


class L2Cache:
    """Redis-backed cache of store rows (Found) and negative entries, keyed by CacheKey.

    Construction does not connect: the first call does, so a down Redis never
    stops the process from starting.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "l2",
        timeout_s: float = 0.05,
        backoff_s: float = 0.5,
        log_every_s: float = 10.0,
        max_connections: int | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self._log_every_s = log_every_s
        parts = urlsplit(url)
        # Host and port only: the URL may carry a password.
        self._where = f"{parts.hostname}:{parts.port or 6379}"
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            # The whole call is bounded by asyncio.timeout(timeout_s) below; a
            # socket timeout too would arm a timer per reply (per SET in a
            # pipeline), which tripled the cost of put_many.
            socket_timeout=None,
            socket_connect_timeout=timeout_s,
            # No retries: a retry would double the time a miss costs; the next
            # request tries again anyway.
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
        )
        self._prefix = key_prefix.encode("utf-8") + b":"
        # dataset -> encoded key prefix, built once per dataset.
        self._dataset_prefixes: dict[str, bytes] = {}
        self._retry_at = 0.0  # monotonic time before which Redis is skipped
        self._next_log_at = 0.0
        self._unlogged = 0
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.skipped = 0  # calls answered without Redis during the backoff

    def redis_key(self, key: CacheKey) -> bytes:
        """Return the Redis key of `key` (binary-safe, unambiguous)."""
        dataset, entity, at_ms = key
        prefix = self._dataset_prefixes.get(dataset)
        if prefix is None:
            name = dataset.encode("utf-8")
            prefix = self._prefix + _LEN.pack(len(name)) + name
            self._dataset_prefixes[dataset] = prefix
        at = _LATEST if at_ms is None else _AT + _I64.pack(at_ms)
        return b"".join((prefix, _LEN.pack(len(entity)), entity, at))

    async def get_many(self, keys: Sequence[CacheKey]) -> list[Found | NegativeEntry | None]:
        """Return, per key and in order, the cached row, Negative, or None (not cached).

        One MGET; when Redis fails or times out every key is None.
        """
        if not keys:
            return []
        if self._backing_off():
            return [None] * len(keys)
        redis_keys = [self.redis_key(key) for key in keys]
        try:
            async with asyncio.timeout(self._timeout_s):
                # decode_responses is off: the replies are bytes.
                raw = cast("list[bytes | None]", await self._client.mget(redis_keys))
        except Exception as exc:  # any failure is a miss, never the caller's error
            self._record_error("get_many", exc)
            return [None] * len(keys)
        unpack = _I64.unpack_from
        out: list[Found | NegativeEntry | None] = []
        append = out.append
        for value in raw:
            if value is None:
                append(None)
            elif len(value) >= 8:
                append((value[8:], unpack(value)[0]))
            elif value == _NEGATIVE_VALUE:
                append(Negative)
            else:  # not written by this class: treat as not cached
                append(None)
        misses = out.count(None)
        self.misses += misses
        self.hits += len(out) - misses
        return out

    async def put_many(
        self,
        items: Sequence[tuple[CacheKey, Found | None]],
        ttl_s: float,
        negative_ttl_s: float,
    ) -> None:
        """Cache each row (None: a negative entry) with its TTL, in one pipeline.

        A TTL <= 0 skips those items; a Redis failure is counted, never raised.
        """
        if not items or self._backing_off():
            return
        ttl_ms = math.ceil(ttl_s * 1000)
        negative_ttl_ms = math.ceil(negative_ttl_s * 1000)
        pipe = self._client.pipeline(transaction=False)
        # execute_command rather than pipe.set: set() validates its options per
        # call, which made a 100-key put ~1.6x slower.
        queue = pipe.execute_command
        pack = _I64.pack
        queued = 0
        for key, found in items:
            if found is None:
                if negative_ttl_ms > 0:
                    queue(b"SET", self.redis_key(key), _NEGATIVE_VALUE, b"PX", negative_ttl_ms)
                    queued += 1
            elif ttl_ms > 0:
                queue(b"SET", self.redis_key(key), pack(found[1]) + found[0], b"PX", ttl_ms)
                queued += 1
        if not queued:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await pipe.execute()
        except Exception as exc:  # a failed write only costs a later miss
            self._record_error("put_many", exc)

    async def ping(self) -> None:
        """Return when Redis answers; raise StoreError when it does not."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._client.ping()
        except Exception as exc:
            raise StoreError(f"L2 cache: redis at {self._where} did not answer: {exc!r}") from exc
        self._retry_at = 0.0

    async def close(self) -> None:
        """Close the connections; the cache is not used afterwards."""
        await self._client.aclose()

    def _backing_off(self) -> bool:
        if self._retry_at and time.monotonic() < self._retry_at:
            self.skipped += 1
            return True
        return False

    def _record_error(self, operation: str, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if self._backoff_s > 0:
            self._retry_at = now + self._backoff_s
        if now < self._next_log_at:
            self._unlogged += 1
            return
        log.warning(
            "L2 cache %s failed, served as misses: redis at %s: %r (%d more errors since last log)",
            operation,
            self._where,
            exc,
            self._unlogged,
        )
        self._next_log_at = now + self._log_every_s
        self._unlogged = 0
