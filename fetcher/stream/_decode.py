"""Kafka message values -> checked events of one aggregation group (JSON or plain Avro).

A value is one event: the group's key columns, the event time, an optional id and the
group's input columns, as a JSON object or as plain Avro binary with `event_schema(group)`.
Anything that does not fit raises EventRejected naming the field; the consumer sends such
a message to the dead-letter topic.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Callable
from typing import Any

from fastavro import parse_schema, schemaless_reader

from fetcher.load import EventRejected, EventWriter, PushEvent, RowRejected, event_time_ms
from fetcher.load import key_converter as load_key_converter
from fetcher.types import FeatureGroup, KeyType

_AVRO_KEYS = {KeyType.INT64: "long", KeyType.STRING: "string", KeyType.BYTES: "bytes"}
_AVRO_COLUMNS = {"int64": "long", "int32": "int", "double": "double", "float": "float",
                 "string": "string", "bool": "boolean", "bytes": "bytes"}
# How much of a bad value an error quotes (DESIGN.md: bounded quotes of client input).
_QUOTE = 60


def event_schema(group: FeatureGroup, *, event_time_field: str = "event_time",
                 id_field: str = "id") -> dict[str, Any]:
    """The Avro record schema of `group`'s events on Kafka (docs/streaming.md)."""
    if group.aggregation is None:
        raise ValueError(f"group {group.name!r} has no aggregations: it has no event stream")
    fields: list[dict[str, Any]] = [
        {"name": k.name, "type": _AVRO_KEYS[k.type]} for k in group.keys
    ]
    fields.append({"name": event_time_field, "type": ["null", "long"], "default": None,
                   "doc": "epoch milliseconds; null: the Kafka message's timestamp"})
    fields.append({"name": id_field, "type": ["null", "string"], "default": None,
                   "doc": "event id; null: topic/partition/offset"})
    for column in group.aggregation.columns:
        kind = column.type
        if kind.startswith("list<"):
            avro: Any = {"type": "array", "items": _AVRO_COLUMNS[kind[5:-1]]}
        else:
            avro = _AVRO_COLUMNS[kind]
        fields.append({"name": column.name, "type": ["null", avro], "default": None})
    return {"type": "record", "name": f"{group.name}_event", "namespace": "fetcher.stream",
            "fields": fields}


def _short(text: str) -> str:
    return text if len(text) <= _QUOTE else text[:_QUOTE] + "..."


class EventDecoder:
    """Decodes one group's message values into PushEvents (built once per consumer)."""

    def __init__(self, writer: EventWriter, *, value_format: str,
                 event_time_field: str = "event_time", id_field: str = "id") -> None:
        group = writer.group
        if group.aggregation is None:  # EventWriter refuses these already
            raise ValueError(f"group {group.name!r} has no aggregations")
        if value_format not in ("json", "avro"):
            raise ValueError(f"value format {value_format!r}: use json or avro")
        self.writer = writer
        self.value_format = value_format
        self.time_field = event_time_field
        self.id_field = id_field
        self._key_names = tuple(k.name for k in group.keys)
        self._to_keys = tuple(load_key_converter(k, text=False) for k in group.keys)
        self._bytes_columns = frozenset(
            c.name for c in group.aggregation.columns if c.type == "bytes"
        )
        self._parse: Callable[[bytes], dict[str, Any]]
        if value_format == "avro":
            self.schema = parse_schema(event_schema(group, event_time_field=event_time_field,
                                                    id_field=id_field))
            self._parse = self._avro
        else:
            self._parse = self._json

    def _json(self, value: bytes) -> dict[str, Any]:
        try:
            record = json.loads(value)
        except (UnicodeDecodeError, ValueError) as exc:
            raise EventRejected("value", _short(f"not JSON: {exc}")) from None
        if not isinstance(record, dict):
            raise EventRejected("value", f"a JSON object is expected, not {type(record).__name__}")
        for name in self._bytes_columns & record.keys():
            raw = record[name]
            if isinstance(raw, str):
                try:
                    record[name] = base64.b64decode(raw, validate=True)
                except (binascii.Error, ValueError):
                    raise EventRejected(f"values.{name}",
                                        "a bytes column takes a base64 string") from None
        return record

    def _avro(self, value: bytes) -> dict[str, Any]:
        stream = io.BytesIO(value)
        try:
            record: Any = schemaless_reader(stream, self.schema, None)
        except Exception as exc:  # fastavro raises many kinds on truncated or bad bytes
            raise EventRejected("value", _short(f"not an Avro event of this group: {exc!r}"))\
                from None
        if stream.tell() != len(value):
            raise EventRejected("value", f"{len(value) - stream.tell()} bytes after the Avro "
                                "record: another schema, or a Confluent-framed value?")
        return dict(record)

    def decode(self, value: bytes | None, timestamp_ms: int | None,
               default_id: str) -> PushEvent:
        """The event of one message value; EventRejected names what does not fit."""
        if value is None:
            raise EventRejected("value", "the message has no value (a tombstone)")
        record = self._parse(value)
        keys: list[Any] = []
        for name, convert in zip(self._key_names, self._to_keys, strict=True):
            raw = record.pop(name, None)
            if raw is None:
                raise EventRejected(f"keys.{name}", "the key column is missing")
            try:
                keys.append(convert(raw))
            except RowRejected as exc:
                raise EventRejected(f"keys.{name}", _short(exc.message)) from None
        key = self.writer.key_bytes(keys)
        raw_time = record.pop(self.time_field, None)
        if raw_time is None:
            if timestamp_ms is None or timestamp_ms < 0:
                raise EventRejected(self.time_field, "missing, and the message has no timestamp")
            ts = timestamp_ms
        else:
            try:
                ts = event_time_ms(self.time_field, raw_time)
            except RowRejected as exc:
                raise EventRejected(self.time_field, _short(exc.message)) from None
        raw_id = record.pop(self.id_field, None)
        ident = default_id if raw_id is None else raw_id
        if not isinstance(ident, str):
            raise EventRejected(self.id_field, f"an event id is a string, not "
                                f"{type(ident).__name__}")
        # The remaining fields are the input columns; EventWriter.event names any unknown one.
        return self.writer.event(key, ts, ident, record)
