"""FeastRedisStore and FeastRedisClusterStore: the rows Feast's Redis online store wrote, read.

Feast's layout (docs/feast.md has the bytes), which these stores only read:

- Redis key: the serialized entity key followed by the project name. The lookup's key
  bytes are that whole key (fetcher.feast builds it); the store adds nothing.
- One hash per entity key, shared by every feature view of that entity. A feature's field
  is the murmur3_32 hash (seed 0, unsigned, 4 bytes little-endian) of
  "<feature view>:<feature>", its value the feature's feast.types.Value bytes; the field
  `_ts:<feature view>` holds the view's event time, a google.protobuf.Timestamp.

A lookup's dataset names a feature view and the features to read (`feast_dataset`); each
lookup is one HMGET of `_ts:<view>` and those features' fields, and every lookup of a
call goes in one pipeline: one round trip (one per node on a cluster). The value found
is a fetcher.feast.StoredRow (protos/fetcher/feast/proto/stored_row.proto) built without
parsing what Redis returned: each feature's Value bytes in dataset order (an absent field
as an empty Value, Feast's null). Its event time is `_ts` in ms (rounded down), beside
the row, not in it: a row of present doubles then has a fixed size, which the decoder
reads with one struct call. A lookup whose fields are all absent is not found; Feast keeps one
version per view, so a lookup with a time bound finds it only when it is not newer.

Read-only: Feast's own writers (`feast materialize`, `write_to_online_store`, push) write
this layout; `multi_put` raises.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import mmh3
from redis.exceptions import ResponseError

from kvstores.base import Found, Lookup, Row, StoreError
from kvstores.redis import _BACKEND_ERRORS, Command, RedisStore, _describe
from kvstores.redis_cluster import RedisClusterStore

__all__ = [
    "FeastRedisClusterStore",
    "FeastRedisStore",
    "feast_dataset",
    "feature_field",
    "timestamp_ms",
]

# A dataset's HMGET fields are cached per dataset string; a catalog has a bounded number
# of them, but reloads can bring new ones: past this many the cache starts again.
_MAX_DATASETS = 4096
_EMPTY_VALUE = b"\x0a\x00"  # StoredRow.values: one empty feast.types.Value
_VALUE_TAG = b"\x0a"  # StoredRow field 1 (values), length-delimited
_READ_ONLY = (
    "is read-only: Feast's own writers (feast materialize, write_to_online_store, push) "
    "write its rows"
)


def feast_dataset(view: str, features: Sequence[str]) -> str:
    """The dataset of a lookup reading `features` (in this order) of feature view `view`.

    `view` is the name Feast hashes fields with (the versioned name when Feast's online
    versioning is on).
    """
    if not view or not features:
        raise ValueError("a Feast dataset needs a feature view name and at least one feature")
    return json.dumps([view, *features], ensure_ascii=False, separators=(",", ":"))


def feature_field(view: str, feature: str) -> bytes:
    """The hash field of `feature` of `view`: murmur3_32 of "view:feature", little-endian."""
    return mmh3.hash(f"{view}:{feature}", seed=0, signed=False).to_bytes(4, "little")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: StoredRow.values field heads of Values of 0..127 bytes: the tag and a one-byte length.
_SHORT_VALUE_HEADS = tuple(_VALUE_TAG + bytes((n,)) for n in range(0x80))


def _value_field(value: bytes | None) -> bytes:
    """One StoredRow.values field: a Value's bytes, an absent field as an empty Value."""
    return _VALUE_TAG + _varint(len(value)) + value if value else _EMPTY_VALUE


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def timestamp_ms(data: bytes) -> int:
    """Milliseconds since the epoch (rounded down) of google.protobuf.Timestamp bytes.

    Raises ValueError for bytes that are not a Timestamp (protobuf is not imported here:
    the store layer knows bytes only).
    """
    seconds = nanos = 0
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if tag == 0x08:
            seconds = _signed64(value)
        elif tag == 0x10:
            nanos = _signed64(value)
        else:
            raise ValueError(f"unexpected field tag {tag:#04x}")
    return seconds * 1000 + nanos // 1_000_000


class _Hashes:
    """What one dataset reads, built once: its HMGET fields (`_ts` first)."""

    __slots__ = ("fields", "resp", "view")

    def __init__(self, dataset: str) -> None:
        try:
            parsed = json.loads(dataset)
        except ValueError:
            parsed = None
        if (
            not isinstance(parsed, list)
            or len(parsed) < 2
            or not all(isinstance(name, str) and name for name in parsed)
        ):
            raise ValueError(
                f"dataset {dataset[:200]!r}: not a Feast dataset (a JSON list of a feature "
                "view and its features: kvstores.feast_redis.feast_dataset)"
            )
        view, *features = parsed
        self.view: str = view
        self.fields: tuple[bytes, ...] = (
            f"_ts:{view}".encode(),
            *(feature_field(view, f) for f in features),
        )
        # The RESP bytes of the fields, the same in every HMGET of this dataset.
        self.resp = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in self.fields)


class _FeastLayout:
    """The read side of Feast's layout, shared by the standalone and the cluster store."""

    def __init__(self) -> None:
        self._datasets: dict[str, _Hashes] = {}

    def hashes(self, dataset: str) -> _Hashes:
        found = self._datasets.get(dataset)
        if found is None:
            if len(self._datasets) >= _MAX_DATASETS:
                self._datasets.clear()
            found = self._datasets[dataset] = _Hashes(dataset)
        return found

    def pack(self, lookups: Sequence[Lookup]) -> bytes:
        """The RESP bytes of one HMGET per lookup."""
        hashes = self.hashes
        parts: list[bytes] = []
        for dataset, key, _ in lookups:
            h = hashes(dataset)
            parts.append(
                b"*%d\r\n$5\r\nHMGET\r\n$%d\r\n%s\r\n%s"
                % (len(h.fields) + 2, len(key), key, h.resp)
            )
        return b"".join(parts)

    def commands(self, lookups: Sequence[Lookup]) -> list[Command]:
        """One HMGET command per lookup (the cluster store routes them by key)."""
        return [("HMGET", key, *self.hashes(dataset).fields) for dataset, key, _ in lookups]

    def results(
        self, lookups: Sequence[Lookup], replies: Sequence[Any], where: Callable[[], str]
    ) -> list[Found | None]:
        """Per lookup, the StoredRow and event time found, or None; `where()` names the
        store in errors."""
        if len(replies) != len(lookups):
            raise StoreError(f"{where()}: got {len(replies)} replies for {len(lookups)} lookups")
        results: list[Found | None] = []
        heads = _SHORT_VALUE_HEADS
        # The rows of one batch job share their event time: its Timestamp is parsed once.
        last_ts: bytes | None = None
        last_ms = 0
        for (dataset, key, at_ms), reply in zip(lookups, replies, strict=True):
            if isinstance(reply, ResponseError):
                raise StoreError(f"{where()}: HMGET of {key[:200]!r} failed: {reply}")
            ts, *values = reply
            if ts is None and all(v is None for v in values):
                results.append(None)
                continue
            try:
                # Values of one size under 128 bytes (a view of doubles: 9 each) are framed
                # by one join, their shared field head as the separator.
                (size,) = set(map(len, values))
                head = heads[size]
                row = head + head.join(values)
            except (TypeError, ValueError, IndexError):  # None, several sizes, a long value
                try:
                    # A Value under 128 bytes (every scalar but long strings and bytes) has
                    # a one-byte length: its field head comes from a table, no varint call.
                    row = b"".join([heads[len(v)] + v for v in values])
                except (TypeError, IndexError):  # an absent field (None) or a long value
                    row = b"".join([_value_field(v) for v in values])
            event_ms = 0
            if ts is not None:
                if ts == last_ts:
                    event_ms = last_ms
                else:
                    try:
                        event_ms = timestamp_ms(ts)
                    except ValueError as exc:
                        view = self.hashes(dataset).view
                        raise StoreError(
                            f"{where()}: field _ts:{view} of {key[:200]!r} is not a "
                            f"google.protobuf.Timestamp ({exc})"
                        ) from None
                    last_ts, last_ms = ts, event_ms
            if at_ms is not None and event_ms > at_ms:
                results.append(None)
                continue
            results.append((row, event_ms))
        return results


class FeastRedisStore(RedisStore):
    """Feast's rows on a standalone Redis: one pipelined write of HMGETs per call; read-only.

    The connections, timeouts and PING are RedisStore's (one pipelined read connection,
    no retries, StoreError on failure or after `timeout_s`).
    """

    kind = "feast_redis"

    def __init__(self, url: str, *, timeout_s: float = 0.1, max_connections: int = 64) -> None:
        """`url` is redis://, rediss:// or unix:// as redis-py reads it; connects lazily."""
        super().__init__(url, timeout_s=timeout_s, max_connections=max_connections)
        self._layout = _FeastLayout()

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Per lookup the view's row of the entity, or None; one round trip."""
        self._check_open()
        if not lookups:
            return []
        try:
            request = self._layout.pack(lookups)
        except ValueError as exc:
            raise StoreError(f"{self._where()}: {exc}") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._reads.exchange(request, len(lookups))
        except TimeoutError as exc:
            self._read_timed_out()
            raise StoreError(f"{self._where()}: multi_get failed: {_describe(exc)}") from exc
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: multi_get failed: {_describe(exc)}") from exc
        return self._layout.results(lookups, replies, self._where)

    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Always raises StoreError: see the module docstring."""
        raise StoreError(f"{self._where()}: a Feast store {_READ_ONLY}")

    def _where(self) -> str:
        return "feast " + super()._where()


class FeastRedisClusterStore(RedisClusterStore):
    """Feast's rows on a Redis Cluster: one pipeline per node per call; read-only.

    Feast's keys have no hash tag, so an entity's hash lives in the slot of its whole key;
    the connections, routing and timeouts are RedisClusterStore's.
    """

    kind = "feast_redis_cluster"

    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        timeout_s: float = 0.1,
        max_connections: int = 64,
    ) -> None:
        """`nodes`: (host, port) of one or more cluster nodes; the rest are discovered."""
        super().__init__(
            nodes,
            username=username,
            password=password,
            ssl=ssl,
            timeout_s=timeout_s,
            max_connections=max_connections,
        )
        self._layout = _FeastLayout()

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Per lookup the view's row of the entity, or None; one round trip per node."""
        self._check_open()
        if not lookups:
            return []
        try:
            commands = self._layout.commands(lookups)
        except ValueError as exc:
            raise StoreError(f"{self._where()}: {exc}") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._execute(self._client, commands)
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: multi_get failed: {_describe(exc)}") from exc
        return self._layout.results(lookups, replies, self._where)

    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Always raises StoreError: see the module docstring."""
        raise StoreError(f"{self._where()}: a Feast store {_READ_ONLY}")

    def _where(self) -> str:
        return "feast " + super()._where()
