"""The key-value store contract every backend implements.

A store knows datasets, key bytes, event times and value bytes; nothing about
feature groups, Avro or protobuf. Lookups and rows are plain tuples because they
are built per entity on the request path, where a tuple costs a fraction of a
dataclass.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

# (dataset, key bytes, at_ms): the latest version with event time <= at_ms,
# or the latest version of all when at_ms is None.
Lookup = tuple[str, bytes, int | None]
# (value bytes, event time in ms since the Unix epoch) of the version found.
Found = tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class Row:
    """One version to write: `value` for `key` in `dataset`, as of `event_ms`."""

    dataset: str
    key: bytes
    value: bytes
    event_ms: int
    # Seconds the entity's data is kept by the store; None keeps it forever.
    ttl_s: int | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of an aggregation group's log (docs/storage-layout.md "the log").

    An event (`id` 1..128 bytes) or a batch part (`id` empty) of `key` in `dataset` at
    `ts_ms` (0 <= ts_ms < 2**53). `(ts_ms, id)` is its identity: writing it again replaces it.
    """

    dataset: str
    key: bytes
    ts_ms: int
    id: bytes
    payload: bytes
    # Seconds the entry is kept after its write; None keeps it forever.
    ttl_s: int | None = None


# (dataset, key bytes, lo_ms, hi_ms, limit): the entries with lo_ms <= ts_ms <= hi_ms,
# newest first, up to and including the first batch part, at most `limit` events.
LogLookup = tuple[str, bytes, int, int, int]
# (ts_ms, payload length) of a batch part the reader already holds (docs/storage-layout.md
# "the log", "known parts"): given per lookup to read_logs, which then leaves that part's
# payload out of its answer when it is still the first batch part the scan meets.
KnownPart = tuple[int, int]


class LogRead(NamedTuple):
    """What one log lookup found."""

    # (ts_ms, payload) of the first batch part met, newest first; None when none was.
    batch: tuple[int, bytes] | None
    # (ts_ms, id, payload) of the events newer than that batch part (or than lo_ms), newest
    # first (descending (ts_ms, id)).
    events: list[tuple[int, bytes, bytes]]
    # The limit stopped the scan: more events are in the range, before any batch part.
    truncated: bool
    # The scan ended at the lookup's known part, whose payload the store did not send
    # (`batch` is None): it is still the newest batch part in the range. Redis and LMDB
    # say so only when the part is there with the known length; Cassandra and DynamoDB
    # read past it unseen, so for them it means "no newer batch part".
    known: bool = False


EMPTY_LOG = LogRead(None, [], False)

MAX_LOG_ID = 128
"""The longest event id (bytes) a log entry may have."""


class StoreError(Exception):
    """A store could not answer (down, timed out, refused); the caller maps it to ERROR."""


class KVStore(abc.ABC):
    """Async, batched access to one key-value backend."""

    #: Short backend name used in logs and metrics ("redis", "embedded", ...).
    kind: str = "abstract"

    @abc.abstractmethod
    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Return, per lookup and in order, the version found or None when there is none.

        Raises StoreError when the backend cannot answer; one call is one round trip
        per backend node whatever the number of lookups.
        """

    @abc.abstractmethod
    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Write every row (a new version of its key), batched; raises StoreError."""

    async def read_logs(
        self, lookups: Sequence[LogLookup], known: Sequence[KnownPart | None] | None = None
    ) -> list[LogRead]:
        """Read aggregation logs: per lookup and in order, what it found.

        One call is one round trip per backend node whatever the number of lookups (a
        lookup stops at its first batch part on the server where the backend can).
        After `limit` events the store looks at one more entry in the range: a batch
        part is returned, an event sets `truncated` (and `batch` is None). `known[i]`
        (when given and not None, with lo <= its ts_ms <= hi) is a batch part the caller
        holds: a scan that ends at it answers `known` instead of its payload. Raises
        StoreError when the backend cannot answer.
        """
        raise StoreError(f"the {self.kind} store does not hold aggregation logs")

    async def append_log(self, entries: Sequence[LogEntry]) -> None:
        """Write log entries; the entries of one key are applied atomically; raises StoreError."""
        raise StoreError(f"the {self.kind} store does not hold aggregation logs")

    async def create(self) -> None:
        """Create what the backend needs before the first write (keyspace, tables), idempotently.

        A no-op for backends that need nothing; `fetcher load` calls it before writing.
        """
        return None

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the backend answers; raise StoreError when it does not."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""
