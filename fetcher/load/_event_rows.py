"""Event preparation for aggregation groups: a source row -> (key bytes, time, checked values).

`EventPreparer` is what `fetcher load --events` and the Spark backfill (fetcher.batch) check
each raw event with, so a row is accepted or rejected, and encoded, the same way by both.
`event_id` gives an event its log id: the id column's value, or a hash of the event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from fetcher.aggregation import EventValueError
from fetcher.codec import KeyValueError, key_encoder
from fetcher.load._event_checks import (
    EventRejected,
    aggregation_of,
    check_event_id,
    check_event_ms,
)
from fetcher.load._values import RowRejected, event_time_ms, key_converter
from fetcher.types import FeatureGroup


class PreparedEvent(NamedTuple):
    """One checked event: key bytes, event time (ms), checked values, the raw id (or None)."""

    key: bytes
    ts_ms: int
    values: tuple[Any, ...]
    raw_id: Any


def _text_value(column_type: str, raw: str) -> Any:
    if raw == "":
        return None
    if column_type in ("int64", "int32"):
        return int(raw)
    if column_type in ("double", "float"):
        return float(raw)
    if column_type == "bool":
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise ValueError(f"{raw!r:.40} is not true/false")
    if column_type == "string":
        return raw
    raise ValueError(f"a {column_type} column cannot be read from CSV text (use JSON Lines or "
                     "Parquet)")


def content_id(key: bytes, ts: int, payload: bytes) -> bytes:
    """The id of an event without one: a hash of what it is (a rerun writes the same id)."""
    return hashlib.sha256(key + ts.to_bytes(8, "big") + payload).hexdigest()[:32].encode()


def event_id(key: bytes, ts: int, payload: bytes, raw_id: Any, id_column: str) -> bytes:
    """An event's log id: its id column's value (as text), or `content_id` when it has none."""
    if raw_id in (None, ""):
        return content_id(key, ts, payload)
    return check_event_id(str(raw_id), id_column)


class EventPreparer:
    """Checks the raw events of one source of `group`; built once per file (or partition)."""

    def __init__(
        self,
        group: FeatureGroup,
        *,
        text: bool,
        event_time_column: str = "event_time",
        id_column: str = "id",
    ) -> None:
        """`text`: values are CSV cells (strings) rather than typed JSON/Parquet values."""
        self.group = group
        self.codec = aggregation_of(group).codec
        self._text = text
        self._event_column = event_time_column
        self._id_column = id_column
        self._key_names = [c.name for c in group.keys]
        self._to_keys = [key_converter(c, text=text) for c in group.keys]
        self._encode_key = key_encoder(group.keys)
        self.known_columns = frozenset(
            {*self._key_names, event_time_column, id_column, *self.codec.names})

    def prepare(self, row: Mapping[str, Any]) -> PreparedEvent:
        """The checked event of one row; raises RowRejected or EventRejected naming the field."""
        unknown = [c for c in row if c not in self.known_columns]
        if unknown:
            raise RowRejected(unknown[0], f"not a key, event time, id or input "
                              f"column of {self.group.name!r}")
        key_values = []
        for name, convert in zip(self._key_names, self._to_keys, strict=True):
            raw = row.get(name)
            if raw is None or raw == "":
                raise RowRejected(name, "key column is missing or empty")
            key_values.append(convert(raw))
        try:
            key = self._encode_key(key_values)
        except KeyValueError as exc:
            raise EventRejected("keys", str(exc)) from None
        column = self._event_column
        raw_time = row.get(column)
        if raw_time is None or raw_time == "":
            raise RowRejected(column, "the event time is missing")
        ts = check_event_ms(event_time_ms(column, raw_time), column)
        codec = self.codec
        values = {n: row[n] for n in codec.names if n in row}
        if self._text:
            for name, kind in zip(codec.names, codec.types, strict=True):
                if name in values:
                    try:
                        values[name] = _text_value(kind, values[name])
                    except ValueError as exc:
                        raise RowRejected(name, str(exc)) from None
        try:
            checked = codec.values(values)
        except EventValueError as exc:
            raise RowRejected(exc.field, str(exc)) from None
        return PreparedEvent(key, ts, checked, row.get(self._id_column))
