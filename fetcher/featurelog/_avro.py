"""The Avro form of a logged schema (the Kafka sink's record format) and its decoding.

A record of a LogSchema is one Avro `record` (docs/operations.md, "Kafka sink"), its
fields in this order, each present only when the schema has that part:

    request_time    long (timestamp-millis)
    request_id      string
    entity          int
    config_version  string
    at              ["null", long (timestamp-millis)]
    keys            record: one field per request key (long | string | bytes)
    context         ["null", record]: one ["null", T] field per request-time value
                    (null: the request sent none)
    values          record: one ["null", T] field per feature (null unless PRESENT)
    statuses        record: one FeatureStatus enum per feature
    event_times     record: one ["null", long (timestamp-millis)] field per join

T is double, long, string, boolean, bytes or an array of one of them. Field names are the
descriptor's when they are Avro names, else made into one (`[^A-Za-z0-9_]` -> `_`, `_`
before a leading digit, `_<n>` on a repeat) with the original in `fetcher.name`. The
descriptor itself rides along (`fetcher.log_schema`, `fetcher.schema_hash`), so the JSON of
this schema alone is enough to read the records years later. `schema_hash` is not in the
value: it is the message's header and the schema the value is read with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from fetcher.featurelog._schema import (
    STATUS_NAMES,
    LogSchema,
    canonical_json,
    log_schema,
)
from fetcher.types import FeatureType, KeyType

NAMESPACE = "fetcher.featurelog"
STATUS_ENUM = "FeatureStatus"
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_TIMESTAMP: dict[str, Any] = {"type": "long", "logicalType": "timestamp-millis"}

AVRO_TYPES: dict[FeatureType, Any] = {
    FeatureType.DOUBLE: "double",
    FeatureType.INT64: "long",
    FeatureType.STRING: "string",
    FeatureType.BOOL: "boolean",
    FeatureType.BYTES: "bytes",
    FeatureType.DOUBLE_LIST: {"type": "array", "items": "double"},
    FeatureType.INT64_LIST: {"type": "array", "items": "long"},
    FeatureType.STRING_LIST: {"type": "array", "items": "string"},
    FeatureType.BOOL_LIST: {"type": "array", "items": "boolean"},
    FeatureType.BYTES_LIST: {"type": "array", "items": "bytes"},
}
KEY_AVRO_TYPES: dict[KeyType, str] = {
    KeyType.INT64: "long", KeyType.STRING: "string", KeyType.BYTES: "bytes"}


def avro_names(names: Sequence[str]) -> list[str]:
    """Avro field names for `names`, in order: each made a valid, distinct Avro name."""
    out: list[str] = []
    taken: set[str] = set()
    for name in names:
        base = name if _AVRO_NAME.match(name) else _NOT_NAME.sub("_", name) or "_"
        if base[0].isdigit():
            base = f"_{base}"
        final, n = base, 1
        while final in taken:
            final, n = f"{base}_{n}", n + 1
        taken.add(final)
        out.append(final)
    return out


def _fields(names: Sequence[str], types: Sequence[Any]) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    for original, name, kind in zip(names, avro_names(names), types, strict=True):
        field: dict[str, Any] = {"name": name, "type": kind}
        if name != original:
            field["fetcher.name"] = original
        fields.append(field)
    return fields


def _record(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": fields}


def avro_schema(schema: LogSchema) -> dict[str, Any]:
    """The Avro schema (as JSON data) of the records of `schema`."""
    fields: list[dict[str, Any]] = [
        {"name": "request_time", "type": _TIMESTAMP},
        {"name": "request_id", "type": "string"},
        {"name": "entity", "type": "int"},
        {"name": "config_version", "type": "string"},
        {"name": "at", "type": ["null", _TIMESTAMP]},
        {"name": "keys", "type": _record("Keys", _fields(
            [k.name for k in schema.keys], [KEY_AVRO_TYPES[k.type] for k in schema.keys]))},
    ]
    if schema.context:
        fields.append({"name": "context", "type": ["null", _record("Context", _fields(
            [name for name, _ in schema.context],
            [["null", AVRO_TYPES[kind]] for _, kind in schema.context]))]})
    if schema.features:
        names = [f.name for f in schema.features]
        fields.append({"name": "values", "type": _record("Values", _fields(
            names, [["null", AVRO_TYPES[f.type]] for f in schema.features]))})
        enum = {"type": "enum", "name": STATUS_ENUM, "symbols": list(STATUS_NAMES)}
        fields.append({"name": "statuses", "type": _record("Statuses", _fields(
            names, [enum] + [STATUS_ENUM] * (len(names) - 1)))})
    if schema.joins:
        fields.append({"name": "event_times", "type": _record("EventTimes", _fields(
            [j.field for j in schema.joins], [["null", _TIMESTAMP]] * len(schema.joins)))})
    return {"type": "record", "name": "LogRecord", "namespace": NAMESPACE,
            "doc": f"feature log records of service {schema.service}",
            "fetcher.schema_hash": schema.hash, "fetcher.log_schema": schema.descriptor,
            "fields": fields}


def avro_schema_json(schema: LogSchema) -> bytes:
    """The schema topic's value for `schema`: its Avro schema as canonical JSON bytes."""
    return canonical_json(avro_schema(schema)).encode("ascii")


class SchemaMismatch(ValueError):
    """A schema topic value that is not the Avro form of the descriptor it carries."""


def schema_from_json(data: bytes, expected_hash: str | None = None) -> LogSchema:
    """The LogSchema of a schema topic value (checked: hash and Avro form match)."""
    avro = json.loads(data)
    descriptor = avro.get("fetcher.log_schema") if isinstance(avro, dict) else None
    if not isinstance(descriptor, str):
        raise SchemaMismatch("no fetcher.log_schema in the Avro schema")
    schema = log_schema(json.loads(descriptor))
    if expected_hash is not None and schema.hash != expected_hash:
        raise SchemaMismatch(f"its descriptor hashes to {schema.hash}, not {expected_hash}")
    if avro != avro_schema(schema):
        raise SchemaMismatch(f"its Avro schema is not this version's form of descriptor "
                             f"{schema.hash}")
    return schema


def _plain_reader_schema(value: Any) -> Any:
    """The schema without logical types: the same bytes, read as plain ints (no datetimes)."""
    if isinstance(value, dict):
        return {k: _plain_reader_schema(v) for k, v in value.items() if k != "logicalType"}
    if isinstance(value, list):
        return [_plain_reader_schema(v) for v in value]
    return value


class RecordDecoder:
    """Avro values of one schema -> record batches of `schema.arrow` (the files' layout)."""

    def __init__(self, schema: LogSchema) -> None:
        from fastavro import parse_schema

        self.schema = schema
        self._parsed = parse_schema(_plain_reader_schema(avro_schema(schema)))
        self._keys = [(k.name, a) for k, a in zip(
            schema.keys, avro_names([k.name for k in schema.keys]), strict=True)]
        self._context = list(zip([n for n, _ in schema.context],
                                 avro_names([n for n, _ in schema.context]), strict=True))
        names = [f.name for f in schema.features]
        self._features = list(zip(names, avro_names(names), strict=True))
        self._joins = list(zip([j.field for j in schema.joins],
                               avro_names([j.field for j in schema.joins]), strict=True))

    def decode(self, values: Sequence[bytes]) -> pa.RecordBatch:
        """The records of `values` (each one Avro binary record of this schema)."""
        import io

        from fastavro import schemaless_reader

        rows: list[dict[str, Any]] = []
        for value in values:
            rec: Any = schemaless_reader(io.BytesIO(value), self._parsed, None)
            row: dict[str, Any] = {
                "request_time": rec["request_time"], "request_id": rec["request_id"],
                "entity": rec["entity"], "config_version": rec["config_version"],
                "schema_hash": self.schema.hash, "at": rec["at"],
                "keys": {n: rec["keys"][a] for n, a in self._keys},
            }
            if self._context:
                given = rec["context"]
                row["context"] = (None if given is None
                                  else {n: given[a] for n, a in self._context})
            if self._features:
                row["values"] = {n: rec["values"][a] for n, a in self._features}
                row["statuses"] = {n: rec["statuses"][a] for n, a in self._features}
            if self._joins:
                row["event_times"] = {n: rec["event_times"][a] for n, a in self._joins}
            rows.append(row)
        return pa.RecordBatch.from_pylist(rows, schema=self.schema.arrow)
