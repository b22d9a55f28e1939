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
