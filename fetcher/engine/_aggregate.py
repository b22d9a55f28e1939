"""Aggregation groups in the engine: log lookups and the rows computed from their reads.

A join of an aggregation group reads its key's log (KVStore.read_logs) instead of a
version, and its row is computed at the read time from the batch part and the events
(fetcher.aggregation). Everything that can fail per key (a state or payload that does
not decode, more events than `max_events`) is ERROR for that group and key; a sum past
int64 is ERROR for that feature only.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fetcher.aggregation import StateDecodeError, aggregator_for
from fetcher.engine._rows import NULL_VALUE, PRESENT, GroupRow, RowShape
from fetcher.types import AggregationSpec, FeatureType, Status
from kvstores import LogLookup, LogRead

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

    __slots__ = ("_converts", "aggregator", "dataset", "max_events", "shape")

    def __init__(self, dataset: str, spec: AggregationSpec, shape: RowShape) -> None:
        self.dataset = dataset
        self.aggregator = aggregator_for(spec)
        self.max_events = spec.max_events
        self.shape = shape
        self._converts = tuple(_convert(f.type) for f in shape.features)

    def lookup(self, key: bytes, at_ms: int) -> LogLookup:
        """The log lookup of one key read at `at_ms`."""
        return (self.dataset, key, self.aggregator.scan_start(at_ms), at_ms, self.max_events)

    def row(self, read: LogRead, at_ms: int) -> GroupRow | int:
        """The group's row at `at_ms` from a log read, or NOT_FOUND.

        Raises StateDecodeError (TooManyEvents included) for a key that cannot be served.
        """
        if read.truncated:
            raise TooManyEvents(
                f"more than {self.max_events} events after the batch part: a batch job must "
                "write a newer batch part (or raise max_events)"
            )
        computed = self.aggregator.compute(read.batch, read.events, at_ms)
        if computed is None:
            return NOT_FOUND
        statuses = [_STATUS[s] for s in computed.statuses]
        values = [
            value if convert is None or status != PRESENT else convert(value)
            for value, status, convert in zip(computed.values, statuses, self._converts,
                                              strict=True)
        ]
        return self.shape.computed_row(values, statuses, computed.event_ms)
