"""Aggregation groups in the engine: log lookups and the rows computed from their reads.

A join of an aggregation group reads its key's log (KVStore.read_logs) instead of a
version, and its row is computed at the read time from the batch part and the events
(fetcher.aggregation). Everything that can fail per key (a state or payload that does
not decode, more events than `max_events`) is ERROR for that group and key; a sum past
int64 is ERROR for that feature only.

Batch parts are cached in L1 (fetcher.cache.PartCache) when the process has one: a
lookup of a key whose part is cached carries it as known (kvstores.KnownPart), and the
store leaves the payload out while that part is still the newest in the range
(docs/aggregations.md "Batch parts in L1").
"""

from __future__ import annotations

import hashlib
from typing import Any

from fetcher.aggregation import StateDecodeError, aggregator_for
from fetcher.cache import CachedPart, PartCache
from fetcher.engine._rows import NULL_VALUE, PRESENT, GroupRow, RowShape
from fetcher.types import AggregationSpec, FeatureType, Status
from kvstores import KnownPart, LogLookup, LogRead

ERROR = int(Status.ERROR)
NOT_FOUND = int(Status.NOT_FOUND)
_STATUS = {"present": PRESENT, "null": NULL_VALUE, "error": ERROR}


class TooManyEvents(StateDecodeError):
    """A key with more events after its batch part than the group reads (max_events)."""


def spec_fingerprint(spec: AggregationSpec) -> str:
    """A short hash of a spec: cache keys of computed rows change when the spec does."""
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:16]


def _convert(kind: FeatureType) -> Any:
    if kind is FeatureType.DOUBLE:
        return float
    if kind is FeatureType.DOUBLE_LIST:
        return lambda v: [float(x) for x in v]
    if kind is FeatureType.INT64:
        return int
    return None


class AggregateReader:
    """Built once per aggregation group: its log lookups and rows."""

    __slots__ = ("_converts", "aggregator", "dataset", "max_events", "part_ns", "shape")

    def __init__(self, store: str, dataset: str, spec: AggregationSpec, shape: RowShape) -> None:
        self.dataset = dataset
        self.aggregator = aggregator_for(spec)
        self.max_events = spec.max_events
        self.shape = shape
        # The batch part cache's namespace: a part is bytes of one store's dataset, and its
        # cached directory is decoded for this spec's operations.
        self.part_ns = f"{store}/{dataset}@{spec_fingerprint(spec)}"
        self._converts = tuple(_convert(f.type) for f in shape.features)

    def lookup(self, key: bytes, at_ms: int) -> LogLookup:
        """The log lookup of one key read at `at_ms`."""
        return (self.dataset, key, self.aggregator.scan_start(at_ms), at_ms, self.max_events)

    def held(self, parts: PartCache, lookup: LogLookup) -> CachedPart | None:
        """The cached batch part `lookup` can name as known: one in its range, or None.

        A part newer than the read time, or older than every window start, is of no use
        to this read (the store is asked without it).
        """
        part = parts.get((self.part_ns, lookup[1]))
        if part is None or not lookup[2] <= part.ts_ms <= lookup[3]:
            return None
        return part

    @staticmethod
    def known(held: CachedPart | None) -> KnownPart | None:
        """What the store is told of a held part: its time and payload length."""
        return None if held is None else (held.ts_ms, len(held.payload))

    def row(
        self,
        read: LogRead,
        at_ms: int,
        key: bytes = b"",
        held: CachedPart | None = None,
        parts: PartCache | None = None,
    ) -> GroupRow | int:
        """The group's row at `at_ms` from a log read, or NOT_FOUND.

        `held` is the part the lookup named as known, `parts` the process's part cache
        (None: parts are not cached), which the read updates. Raises StateDecodeError
        (TooManyEvents included) for a key that cannot be served.
        """
        if read.truncated:
            raise TooManyEvents(
                f"more than {self.max_events} events after the batch part: a batch job must "
                "write a newer batch part (or raise max_events)"
            )
        batch = read.batch
        index = None
        part = None  # the cached part this read uses (its decoded states too)
        if read.known:
            if held is None:
                raise StateDecodeError("the store answered a known batch part none was named")
            if parts is not None:
                parts.hits += 1
            batch, index, part = (held.ts_ms, held.payload), held.index, held
        elif parts is not None:
            index, part = self._cache_part(parts, key, batch, held)
        if part is None:
            computed = self.aggregator.compute(batch, read.events, at_ms, index)
        else:
            try:
                computed = self.aggregator.compute(batch, read.events, at_ms, index,
                                                   part.states)
            finally:  # the states decoded before a failure are kept (and counted) too
                if parts is not None and part.states.bytes + part.base_size != part.size:
                    parts.recount((self.part_ns, key), part)
        if computed is None:
            return NOT_FOUND
        statuses = [_STATUS[s] for s in computed.statuses]
        values = [
            value if convert is None or status != PRESENT else convert(value)
            for value, status, convert in zip(computed.values, statuses, self._converts,
                                              strict=True)
        ]
        return self.shape.computed_row(values, statuses, computed.event_ms)

    def _cache_part(
        self,
        parts: PartCache,
        key: bytes,
        batch: tuple[int, bytes] | None,
        held: CachedPart | None,
    ) -> tuple[list[tuple[int, int, int, int]] | None, CachedPart | None]:
        """Keep the part a read brought (when it is the newest known); its index and the
        entry that keeps it (None: not kept).

        A read that named a held part and got no confirmation (not truncated: checked
        before) says the store no longer has that part as the newest: the entry is
        replaced by what the read found, or dropped when it found no part.
        """
        cache_key = (self.part_ns, key)
        if batch is None:
            if held is not None:
                parts.discard(cache_key)
            return None, None
        index = self.aggregator.batch_index(batch[1])  # a part that does not decode: not kept
        parts.misses += 1
        if held is None:
            current = parts.get(cache_key)
            # An older part (a read at a time before the cached batch end) is not kept.
            if current is not None and current.ts_ms >= batch[0]:
                return index, None
        return index, parts.put(cache_key, batch[0], batch[1], index)
