"""Logged records as Arrow: the written layout and the decoded one.

The writer thread gathers records (LogColumns) into `raw_batch`: request fields, keys and
context as columns, each vector as the wire bytes served (`LogSchema.raw_arrow`). Readers
(`fetcher logs read`) and the Kafka sink decode those into a column per feature
(`expand`, `columns_batch`: `LogSchema.arrow`), as follows.

The vectors arrive as the FeatureVector wire bytes the server sent. Protobuf appends the
repeated fields of concatenated messages, so the vectors of a batch are joined and parsed
once: the result holds every entity's statuses, doubles, ... one after the other. Numeric
arrays are then taken from that message's own serialization (packed, little-endian: the
doubles are already Arrow's bytes) and cut into one column per feature with numpy; only
strings, bytes and lists become Python objects. A vector whose counts do not match the
schema is dropped (counted as malformed), never shifted into its neighbours' columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from fetcher.engine import SLOT_BOOL, SLOT_BYTES, SLOT_DOUBLE, SLOT_INT64, SLOT_LIST, SLOT_STRING
from fetcher.featurelog._schema import (
    ARROW_TYPES,
    KEY_ARROW_TYPES,
    MAX_STATUS,
    STATUS_NAMES,
    TIMESTAMP,
    LogSchema,
)
from fetcher.types import FeatureType, Status
from fetcher.v1 import feature_service_pb2 as pb

_parse_vector = pb.FeatureVector.FromString
_PRESENT = int(Status.PRESENT)
_STATUS_DICTIONARY = pa.array(STATUS_NAMES, pa.string())
_LIST_FIELD = {
    FeatureType.DOUBLE_LIST: "double_values",
    FeatureType.INT64_LIST: "int64_values",
    FeatureType.STRING_LIST: "string_values",
    FeatureType.BOOL_LIST: "bool_values",
    FeatureType.BYTES_LIST: "bytes_values",
}
# FeatureVector fields read from its packed serialization: statuses, doubles, int64s,
# bools, event times.
_F_STATUS, _F_DOUBLE, _F_INT64, _F_BOOL, _F_EVENT = 1, 2, 3, 5, 8


class LogRow(NamedTuple):
    """One served entity to log: request fields, its keys and its vector's wire bytes."""

    request_time_ms: int
    request_id: str
    entity: int  # position in the request (0 for GetFeatures)
    config_version: str
    at_ms: int | None
    keys: Sequence[Any]
    context: Sequence[Any] | None  # one value per context value of the schema, or None
    wire: bytes


class LogColumns:
    """Records to log, column by column: what the writer gathers from the queue with a few
    list extends per request (a tuple per record cost more than its decoding)."""

    __slots__ = ("at_ms", "config_version", "context", "entity", "keys", "request_id",
                 "request_time_ms", "wires")

    def __init__(self) -> None:
        self.request_time_ms: list[int] = []
        self.request_id: list[str] = []
        self.entity: list[int] = []
        self.config_version: list[str] = []
        self.at_ms: list[int | None] = []
        self.keys: list[Sequence[Any]] = []
        self.context: list[Sequence[Any] | None] = []  # empty: no record has context values
        self.wires: list[bytes] = []

    def __len__(self) -> int:
        return len(self.wires)

    @classmethod
    def from_rows(cls, rows: Sequence[LogRow]) -> LogColumns:
        """The columns of `rows`."""
        out = cls()
        for r in rows:
            out.request_time_ms.append(r.request_time_ms)
            out.request_id.append(r.request_id)
            out.entity.append(r.entity)
            out.config_version.append(r.config_version)
            out.at_ms.append(r.at_ms)
            out.keys.append(r.keys)
            out.context.append(r.context)
            out.wires.append(r.wire)
        if all(c is None for c in out.context):
            out.context = []
        return out

    def subset(self, keep: Sequence[int]) -> LogColumns:
        """The records at the positions `keep`."""
        out = LogColumns()
        for name in self.__slots__:
            column = getattr(self, name)
            if column:
                setattr(out, name, [column[i] for i in keep])
        return out


class Malformed(ValueError):
    """Vectors whose layout is not the schema's."""


def _varint_array(data: bytes | memoryview) -> NDArray[np.int64]:
    """Decode packed protobuf varints (int64, two's complement) without a Python loop."""
    raw = np.frombuffer(data, np.uint8)
    if raw.size == 0:
        return np.zeros(0, np.int64)
    if int(raw.max()) < 0x80:  # every value < 128: one byte each
        return raw.astype(np.int64)
    ends = (raw & 0x80) == 0
    if not ends[-1]:
        raise Malformed("truncated varint")
    last = np.flatnonzero(ends)
    starts = np.empty_like(last)
    starts[0] = 0
    starts[1:] = last[:-1] + 1
    owner = np.repeat(np.arange(last.size), last - starts + 1)
    position = np.arange(raw.size) - starts[owner]
    if int(position.max()) > 9:
        raise Malformed("varint longer than 10 bytes")
    parts = (raw & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.add.reduceat(parts, starts).view(np.int64)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _packed_fields(wire: bytes) -> dict[int, memoryview]:
    """The payload of each length-delimited field of a canonical serialization (views)."""
    out: dict[int, memoryview] = {}
    view = memoryview(wire)
    pos, end = 0, len(wire)
    while pos < end:
        tag, pos = _read_varint(wire, pos)
        if tag & 7 != 2:
            raise Malformed(f"field {tag >> 3} is not packed")
        size, pos = _read_varint(wire, pos)
        out[tag >> 3] = view[pos:pos + size]
        pos += size
    return out


class _Vectors(NamedTuple):
    statuses: NDArray[np.uint8]  # (n, features)
    doubles: NDArray[np.float64]
    int64s: NDArray[np.int64]
    bools: NDArray[np.bool_]
    event_ms: NDArray[np.int64]  # (n, joins)
    strings: list[str]
    blobs: list[bytes]
    lists: list[list[Any]]  # per list feature, one list per entity


def _counts_ok(message: Any, schema: LogSchema, n: int) -> bool:
    c = schema.slot_counts
    return (len(message.statuses) == n * len(schema.features)
            and len(message.double_values) == n * c[SLOT_DOUBLE]
            and len(message.int64_values) == n * c[SLOT_INT64]
            and len(message.string_values) == n * c[SLOT_STRING]
            and len(message.bool_values) == n * c[SLOT_BOOL]
            and len(message.bytes_values) == n * c[SLOT_BYTES]
            and len(message.list_values) == n * c[SLOT_LIST]
            and len(message.event_timestamps_ms) == n * len(schema.joins))


def _decode(schema: LogSchema, wires: Sequence[bytes]) -> _Vectors:
    n = len(wires)
    message = _parse_vector(b"".join(wires))
    if not _counts_ok(message, schema, n):
        raise Malformed("value counts differ from the schema")
    counts = schema.slot_counts
    lists: list[list[Any]] = []
    if counts[SLOT_LIST]:
        # One slice of the container, then one slice per list: ~3x faster than indexing.
        items = message.list_values[:]
        per = counts[SLOT_LIST]
        for f in schema.features:
            if f.slot == SLOT_LIST:
                field = _LIST_FIELD[f.type]
                lists.append([getattr(item, field)[:] for item in items[f.index::per]])
    strings = message.string_values[:] if counts[SLOT_STRING] else []
    blobs = message.bytes_values[:] if counts[SLOT_BYTES] else []
    for name in ("string_values", "bytes_values", "list_values"):
        message.ClearField(name)
    packed = _packed_fields(message.SerializeToString())
    width = len(schema.features)
    status_bytes = packed.get(_F_STATUS, b"")
    bool_bytes = packed.get(_F_BOOL, b"")
    # A status or bool takes one byte when it is < 128: the byte count is then the count.
    if len(status_bytes) != n * width or len(bool_bytes) != n * counts[SLOT_BOOL]:
        raise Malformed("a status or bool is out of range")
    statuses = np.frombuffer(status_bytes, np.uint8).reshape(n, width)
    if width and int(statuses.max(initial=0)) > MAX_STATUS:
        raise Malformed("unknown status")
    return _Vectors(
        statuses=statuses,
        doubles=np.frombuffer(packed.get(_F_DOUBLE, b""), "<f8").reshape(n, counts[SLOT_DOUBLE]),
        int64s=_varint_array(packed.get(_F_INT64, b"")).reshape(n, counts[SLOT_INT64]),
        bools=np.frombuffer(bool_bytes, np.uint8).reshape(n, counts[SLOT_BOOL]) != 0,
        event_ms=_varint_array(packed.get(_F_EVENT, b"")).reshape(n, len(schema.joins)),
        strings=strings, blobs=blobs, lists=lists,
    )


def record_batch(schema: LogSchema, rows: Sequence[LogRow]) -> tuple[pa.RecordBatch | None, int]:
    """The rows as one record batch of `schema`, and how many were dropped as malformed."""
    return columns_batch(schema, LogColumns.from_rows(rows))


def columns_batch(schema: LogSchema, records: LogColumns) -> tuple[pa.RecordBatch | None, int]:
    """The records as one record batch of `schema`, and how many were dropped as malformed
    (a vector that does not decode alone is left out; the others are kept)."""
    try:
        vectors = _decode(schema, records.wires)
    except Exception:
        good = _decodable(schema, records.wires)
        if not good:
            return None, len(records)
        return columns_batch(schema, records.subset(good))[0], len(records) - len(good)
    return _build(schema, records, vectors), 0


def _decodable(schema: LogSchema, wires: Sequence[bytes]) -> list[int]:
    """The indexes of the vectors that decode alone (a batch that failed to decode whole
    is split: each broken vector, of any kind, is left out and counted by the caller)."""
    good = []
    for i, data in enumerate(wires):
        try:
            _decode(schema, [data])
        except Exception:
            continue
        good.append(i)
    return good


def _matrix_columns(matrix: NDArray[Any], absent: NDArray[np.bool_],
                    arrow: pa.DataType) -> list[pa.Array[Any]]:
    """The columns of an (entities, k) matrix as k arrays, built with one conversion: the
    matrix is transposed, converted whole and sliced (a slice costs no copy)."""
    n, k = matrix.shape
    if k == 0:
        return []
    whole = pa.array(np.ascontiguousarray(matrix.T).ravel(), arrow,
                     mask=np.ascontiguousarray(absent.T).ravel())
    return [whole.slice(i * n, n) for i in range(k)]


def _value_columns(schema: LogSchema, v: _Vectors, absent: NDArray[np.bool_]) -> list[Any]:
    """One array per feature, in feature order: null unless PRESENT."""
    by_slot: dict[int, list[int]] = {}
    for j, f in enumerate(schema.features):
        by_slot.setdefault(f.slot, []).append(j)
    out: list[Any] = [None] * len(schema.features)
    for slot, matrix, arrow in ((SLOT_DOUBLE, v.doubles, pa.float64()),
                                (SLOT_INT64, v.int64s, pa.int64()),
                                (SLOT_BOOL, v.bools, pa.bool_())):
        js = by_slot.get(slot, [])
        for j, column in zip(js, _matrix_columns(matrix, absent[:, js], arrow), strict=True):
            out[j] = column
    width = schema.slot_counts
    for slot, values in ((SLOT_STRING, v.strings), (SLOT_BYTES, v.blobs)):
        for j in by_slot.get(slot, []):
            f = schema.features[j]
            out[j] = pa.array(values[f.index::width[slot]], ARROW_TYPES[f.type],
                              mask=absent[:, j])
    for at, j in enumerate(by_slot.get(SLOT_LIST, [])):
        out[j] = pa.array(v.lists[at], ARROW_TYPES[schema.features[j].type], mask=absent[:, j])
    return out


def _meta_arrays(schema: LogSchema, r: LogColumns) -> list[pa.Array[Any]]:
    """The request fields, keys and context of the records: the columns both layouts share."""
    n = len(r)
    arrays: list[pa.Array[Any]] = [
        pa.array(r.request_time_ms, TIMESTAMP),
        pa.array(r.request_id, pa.string()),
        pa.array(r.entity, pa.int32()),
        pa.array(r.config_version, pa.string()),
        pa.repeat(pa.scalar(schema.hash, pa.string()), n),
        pa.array(r.at_ms, TIMESTAMP),
        pa.StructArray.from_arrays(
            [pa.array([keys[i] for keys in r.keys], KEY_ARROW_TYPES[k.type])
             for i, k in enumerate(schema.keys)],
            fields=list(schema.arrow.field("keys").type)),
    ]
    if schema.context:
        context = r.context or [None] * n
        missing = np.array([c is None for c in context])
        children = [
            pa.array([None if c is None else c[i] for c in context], ARROW_TYPES[kind])
            for i, (_, kind) in enumerate(schema.context)
        ]
        arrays.append(pa.StructArray.from_arrays(
            children, fields=list(schema.arrow.field("context").type),
            mask=pa.array(missing, pa.bool_())))
    return arrays


def _vector_arrays(schema: LogSchema, v: _Vectors) -> list[pa.Array[Any]]:
    """The decoded columns: values, statuses and event times (those the schema has)."""
    n = len(v.statuses)
    arrays: list[pa.Array[Any]] = []
    if schema.features:
        absent = v.statuses != _PRESENT
        codes = pa.array(np.ascontiguousarray(v.statuses.T).astype(np.int8).ravel(), pa.int8())
        whole = pa.DictionaryArray.from_arrays(codes, _STATUS_DICTIONARY)
        statuses = [whole.slice(j * n, n) for j in range(len(schema.features))]
        arrays.append(pa.StructArray.from_arrays(
            _value_columns(schema, v, absent), fields=list(schema.arrow.field("values").type)))
        arrays.append(pa.StructArray.from_arrays(
            statuses, fields=list(schema.arrow.field("statuses").type)))
    if schema.joins:
        # 0 on the wire: the join had no row (no event time).
        times = _matrix_columns(v.event_ms, v.event_ms == 0, TIMESTAMP)
        arrays.append(pa.StructArray.from_arrays(
            times, fields=list(schema.arrow.field("event_times").type)))
    return arrays


def _build(schema: LogSchema, r: LogColumns, v: _Vectors) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([*_meta_arrays(schema, r), *_vector_arrays(schema, v)],
                                      schema=schema.arrow)


def raw_batch(schema: LogSchema, records: LogColumns) -> pa.RecordBatch:
    """The records in the written layout (`schema.raw_arrow`): each vector's wire bytes as
    served, not decoded (the writer's work per record is a few list appends)."""
    return pa.RecordBatch.from_arrays(
        [*_meta_arrays(schema, records), pa.array(records.wires, pa.binary())],
        schema=schema.raw_arrow)


def expand(schema: LogSchema, raw: pa.Table | pa.RecordBatch) -> tuple[pa.Table | None, int]:
    """Records of the written layout -> the decoded one (`schema.arrow`), and how many were
    left out as malformed (a vector that does not decode alone)."""
    wires: list[bytes] = raw.column("vector").to_pylist()  # type: ignore[assignment]
    try:
        vectors = _decode(schema, wires)
        keep = None
    except Exception:
        keep = _decodable(schema, wires)
        if not keep:
            return None, len(wires)
        raw = raw.take(pa.array(keep, pa.int64()))
        vectors = _decode(schema, [wires[i] for i in keep])
    meta = [raw.column(i) for i in range(len(schema.raw_arrow) - 1)]
    table = pa.Table.from_arrays([*meta, *_vector_arrays(schema, vectors)], schema=schema.arrow)
    return table, 0 if keep is None else len(wires) - len(keep)
