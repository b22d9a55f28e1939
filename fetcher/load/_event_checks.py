"""The checks every writer of aggregation groups applies: event ids, times, the aggregator."""

from __future__ import annotations

from typing import Any

from fetcher.aggregation import GroupAggregator, aggregator_for
from fetcher.types import FeatureGroup
from kvstores import MAX_LOG_ID

MAX_EVENT_MS = 2**53 - 1


class EventRejected(ValueError):
    """An event that cannot be written; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def aggregation_of(group: FeatureGroup) -> GroupAggregator:
    """The aggregator of an aggregation group; ValueError for a group of stored rows."""
    if group.aggregation is None:
        raise ValueError(
            f"group {group.name!r} has no aggregations: its rows are loaded with `fetcher load`"
        )
    return aggregator_for(group.aggregation)


def check_event_id(raw: Any, where: str = "id") -> bytes:
    """An event id as log bytes (1..128 bytes; a str is UTF-8)."""
    if isinstance(raw, str):
        data = raw.encode()
    elif isinstance(raw, bytes | bytearray):
        data = bytes(raw)
    else:
        raise EventRejected(where, f"an event id is a string, not {type(raw).__name__}")
    if not 1 <= len(data) <= MAX_LOG_ID:
        raise EventRejected(where, f"an event id has 1 to {MAX_LOG_ID} bytes, not {len(data)}")
    return data


def check_event_ms(ts_ms: Any, where: str = "event_time") -> int:
    """An event time in epoch ms, 0 <= ts < 2**53."""
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
        raise EventRejected(where, f"an event time is integer ms, not {type(ts_ms).__name__}")
    if not 0 <= ts_ms <= MAX_EVENT_MS:
        raise EventRejected(where, f"{ts_ms} is outside 0 .. 2**53 - 1 ms since the epoch")
    return ts_ms
