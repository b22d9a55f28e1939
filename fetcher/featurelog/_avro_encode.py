"""Record batches of a LogSchema -> one Avro binary value per record, column at a time.

fastavro's writer costs about 90 µs per record of the bench's 40-double service (a dict
per record, a dispatch per field): more than serving the request. Avro's binary encoding
is simple enough to build from the Arrow columns with numpy instead: each field of the
record (fetcher.featurelog._avro) becomes a *segment*, the bytes of that field for every
record, one after the other, with each record's length; the segments are then interleaved
record by record into one buffer (one scatter per segment) and cut into the values. Only
lists become Python objects (one `bytes` per record's list). The tests compare every byte
with fastavro's own writer.

Avro binary, as used here: long and int are zig-zag varints; double 8 bytes
little-endian; boolean one byte; string and bytes a long length then the bytes; an enum
its index as a long; a union the branch index as a long, then the value (so `null` is
0x00 and a present value 0x02 then its bytes); an array one block (a long count, the
items) then a 0 count, or only the 0 when empty; a record its fields in order.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from fetcher.featurelog._schema import STATUS_NAMES, LogSchema
from fetcher.types import FeatureType, KeyType

_U8 = np.uint8
_ARANGE10 = np.arange(10, dtype=np.uint64)
_SHIFTS = (7 * _ARANGE10).astype(np.uint64)
# A padded matrix is as wide as its longest value: one large value among many small ones
# makes the batch encode in halves rather than pad every record to its size.
MAX_PADDED_BYTES = 32 * 1024 * 1024
_STATUS_DICTIONARY = pa.array(STATUS_NAMES, pa.string())
_LIMITS = np.array([1 << (7 * j) for j in range(1, 10)], dtype=np.uint64)


class Segment(NamedTuple):
    """The bytes of one or more fields for every record, as a padded (n, width) matrix:
    record i's bytes are `cells[i][keep[i]]`, in order."""

    cells: NDArray[np.uint8]
    keep: NDArray[np.bool_]


def _zigzag(values: NDArray[np.int64]) -> NDArray[np.uint64]:
    v = values.astype(np.int64, copy=False)
    out: NDArray[np.uint64] = ((v << 1) ^ (v >> 63)).view(np.uint64)
    return out


def _varint_cells(z: NDArray[np.uint64]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """(m, w) bytes of each value's varint and its length (1 to 10); w is the longest."""
    flat = z.reshape(-1)
    lengths = 1 + (flat[:, None] >= _LIMITS[None, :]).sum(axis=1).astype(np.int64)
    width = int(lengths.max(initial=1))
    groups = (flat[:, None] >> _SHIFTS[None, :width]) & np.uint64(0x7F)
    more = _ARANGE10[None, :width].astype(np.int64) < (lengths[:, None] - 1)
    cells = (groups | (more.astype(np.uint64) << np.uint64(7))).astype(_U8)
    return cells, lengths


def varint_segment(values: NDArray[np.int64]) -> Segment:
    """Non-null longs (or ints): one zig-zag varint per record."""
    cells, lengths = _varint_cells(_zigzag(values))
    return Segment(cells, np.arange(cells.shape[1])[None, :] < lengths[:, None])


def union_long_segment(values: NDArray[np.int64], present: NDArray[np.bool_]) -> Segment:
    """["null", long] for an (n, k) matrix: per record its k cells, tag then varint."""
    n = present.shape[0]
    cells, lengths = _varint_cells(_zigzag(values))
    flat_present = present.reshape(-1)
    width = 1 + cells.shape[1]
    full = np.empty((len(flat_present), width), _U8)
    full[:, 0] = np.where(flat_present, 2, 0)
    full[:, 1:] = cells
    sizes = np.where(flat_present, 1 + lengths, 1)
    keep = np.arange(width)[None, :] < sizes[:, None]
    return Segment(full.reshape(n, -1), keep.reshape(n, -1))


def union_fixed_segment(raw: NDArray[np.uint8], present: NDArray[np.bool_]) -> Segment:
    """["null", double | boolean] for (n, k, w) value bytes: per cell the tag, then the w
    bytes when present."""
    n, k, width = raw.shape
    full = np.empty((n, k, 1 + width), _U8)
    full[:, :, 0] = np.where(present, 2, 0)
    full[:, :, 1:] = raw
    if present.all():
        return Segment(full.reshape(n, -1), np.ones((n, k * (1 + width)), np.bool_))
    keep = np.empty((n, k, 1 + width), np.bool_)
    keep[:, :, 0] = True
    keep[:, :, 1:] = present[:, :, None]
    return Segment(full.reshape(n, -1), keep.reshape(n, -1))


def fixed_segment(data: NDArray[np.uint8]) -> Segment:
    """An (n, w) matrix of bytes: w bytes per record (statuses: one byte each)."""
    return Segment(np.ascontiguousarray(data, _U8), np.ones(data.shape, np.bool_))


class _TooWide(Exception):
    """A padded segment would be larger than MAX_PADDED_BYTES: encode fewer records."""


def _padded(lens: NDArray[np.int64], data: NDArray[np.uint8]) -> Segment:
    """Variable-length parts (record after record in `data`) as a padded segment."""
    width = int(lens.max(initial=0))
    if width * len(lens) > MAX_PADDED_BYTES and len(lens) > 1:
        raise _TooWide
    keep = np.arange(width)[None, :] < lens[:, None]
    cells = np.zeros(keep.shape, _U8)
    cells[keep] = data  # row-major order is record order
    return Segment(cells, keep)


def _binary_parts(array: pa.Array[Any]) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Each value's byte length and the values' bytes, one after the other (nulls empty)."""
    if array.null_count:
        array = pc.if_else(array.is_valid(), array, pa.scalar(b"" if pa.types.is_binary(
            array.type) else "", array.type))
    n = len(array)
    buffers: list[Any] = array.buffers()
    offsets = np.frombuffer(buffers[1], np.int32)[array.offset:array.offset + n + 1]
    data = (np.frombuffer(buffers[2], _U8)[offsets[0]:offsets[-1]] if buffers[2] is not None
            else np.zeros(0, _U8))
    return np.diff(offsets).astype(np.int64), data


def binary_segments(array: pa.Array[Any], present: NDArray[np.bool_] | None) -> list[Segment]:
    """string or bytes (`present` None) or ["null", string | bytes]: tag, length, bytes."""
    lens, data = _binary_parts(array)
    out = []
    if present is not None:
        out.append(fixed_segment(np.where(present, 2, 0).astype(_U8)[:, None]))
    length = varint_segment(lens)
    out.append(length if present is None else _only(length, present))  # a null has no length
    out.append(_padded(lens, data))
    return out


def _long(value: int) -> bytes:
    z = (value << 1) ^ (value >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _item_encoder(kind: FeatureType) -> Callable[[Any], bytes]:
    if kind is FeatureType.DOUBLE_LIST:
        return lambda items: struct.pack(f"<{len(items)}d", *items)
    if kind is FeatureType.INT64_LIST:
        return lambda items: b"".join([_long(v) for v in items])
    if kind is FeatureType.BOOL_LIST:
        return lambda items: bytes([1 if v else 0 for v in items])
    if kind is FeatureType.STRING_LIST:
        return lambda items: b"".join([_long(len(b)) + b for b in
                                       [v.encode("utf-8") for v in items]])
    return lambda items: b"".join([_long(len(v)) + v for v in items])


def list_segment(array: pa.Array[Any], kind: FeatureType) -> Segment:
    """["null", array<T>]: per record in Python (lists are rare and small)."""
    encode_items = _item_encoder(kind)
    parts: list[bytes] = []
    for items in array.to_pylist():
        if items is None:
            parts.append(b"\x00")
        elif not items:
            parts.append(b"\x02\x00")
        else:
            parts.append(b"\x02" + _long(len(items)) + encode_items(items) + b"\x00")
    lens = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    return _padded(lens, np.frombuffer(b"".join(parts), _U8))


def _valid(array: pa.Array[Any]) -> NDArray[np.bool_]:
    if not array.null_count:
        return np.ones(len(array), np.bool_)
    out: NDArray[np.bool_] = array.is_valid().to_numpy(zero_copy_only=False)
    return out


def _fixed_values(array: pa.Array[Any], dtype: Any) -> NDArray[Any]:
    """A fixed-width column's values as numpy (a view; nulls hold anything)."""
    if pa.types.is_boolean(array.type):  # bit-packed: numpy has no view of it
        filled = array.fill_null(False) if array.null_count else array
        return np.asarray(filled.to_numpy(zero_copy_only=False), dtype)
    data: Any = array.buffers()[1]
    assert data is not None
    out: NDArray[Any] = np.frombuffer(data, dtype)[array.offset:array.offset + len(array)]
    return out


def _ints(array: pa.Array[Any]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """An integer or timestamp column as int64 (nulls 0 or anything) and where it is valid."""
    if pa.types.is_int32(array.type):
        return _fixed_values(array, "<i4").astype(np.int64), _valid(array)
    return _fixed_values(array, "<i8"), _valid(array)


def _value_segments(kind: FeatureType, columns: list[pa.Array[Any]]) -> list[Segment]:
    """["null", T] cells of consecutive columns of one scalar numeric kind, or one column."""
    if kind in (FeatureType.DOUBLE, FeatureType.BOOL):
        dtype = "<f8" if kind is FeatureType.DOUBLE else _U8
        width = 8 if kind is FeatureType.DOUBLE else 1
        matrix = np.stack([_fixed_values(c, dtype) for c in columns], axis=1)
        present = np.stack([_valid(c) for c in columns], axis=1)
        raw = np.ascontiguousarray(matrix).view(_U8).reshape(len(matrix), len(columns), width)
        return [union_fixed_segment(raw, present)]
    if kind is FeatureType.INT64:
        pairs = [_ints(c) for c in columns]
        return [union_long_segment(np.stack([p[0] for p in pairs], axis=1),
                                   np.stack([p[1] for p in pairs], axis=1))]
    (column,) = columns
    if kind in (FeatureType.STRING, FeatureType.BYTES):
        return binary_segments(column, _valid(column))
    return [list_segment(column, kind)]


_MATRIX_KINDS = (FeatureType.DOUBLE, FeatureType.BOOL, FeatureType.INT64)


def _nullable_fields(kinds: list[FeatureType], columns: list[pa.Array[Any]]) -> list[Segment]:
    """The union cells of a record of nullable fields, runs of one numeric kind at once."""
    out: list[Segment] = []
    start = 0
    while start < len(kinds):
        end = start + 1
        if kinds[start] in _MATRIX_KINDS:
            while end < len(kinds) and kinds[end] is kinds[start]:
                end += 1
        out += _value_segments(kinds[start], columns[start:end])
        start = end
    return out


def _only(segment: Segment, rows: NDArray[np.bool_]) -> Segment:
    """The segment with nothing for the records not in `rows`."""
    if rows.all():
        return segment
    return Segment(segment.cells, segment.keep & rows[:, None])


def _key_segments(kind: KeyType, column: pa.Array[Any]) -> list[Segment]:
    if kind is KeyType.INT64:
        return [varint_segment(_ints(column)[0])]
    return binary_segments(column, None)


def _struct_children(batch: pa.RecordBatch, name: str) -> list[pa.Array[Any]]:
    column: Any = batch.column(name)
    return list(column.flatten())


def _status_codes(columns: list[pa.Array[Any]]) -> NDArray[np.int64]:
    """The (n, features) FeatureStatus numbers of the status columns (dictionary-encoded:
    the writer's dictionary is STATUS_NAMES itself; a read-back batch's in any order)."""
    codes = []
    for column in columns:
        if not isinstance(column, pa.DictionaryArray):
            column = column.dictionary_encode()
        indices = _fixed_values(column.indices, np.int8).astype(np.int64)
        if not column.dictionary.equals(_STATUS_DICTIONARY):
            indices = np.array([STATUS_NAMES.index(v) for v in column.dictionary.to_pylist()]
                               or [0], np.int64)[indices]
        codes.append(indices)
    return np.stack(codes, axis=1)


def record_segments(schema: LogSchema, batch: pa.RecordBatch) -> list[Segment]:
    """The segments of the Avro records of `batch`, in field order."""
    segments: list[Segment] = [varint_segment(_ints(batch.column("request_time"))[0])]
    segments += binary_segments(batch.column("request_id"), None)
    segments.append(varint_segment(_ints(batch.column("entity"))[0]))
    segments += binary_segments(batch.column("config_version"), None)
    at, valid = _ints(batch.column("at"))
    segments.append(union_long_segment(at[:, None], valid[:, None]))
    for key, column in zip(schema.keys, _struct_children(batch, "keys"), strict=True):
        segments += _key_segments(key.type, column)
    if schema.context:
        # ["null", Context]: a record without request-time values has only the 0 tag.
        context: Any = batch.column("context")
        given = context.is_valid().to_numpy(zero_copy_only=False)
        segments.append(fixed_segment(np.where(given, 2, 0).astype(_U8)[:, None]))
        segments += [_only(s, given) for s in _nullable_fields(
            [kind for _, kind in schema.context], list(context.flatten()))]
    if schema.features:
        segments += _nullable_fields([f.type for f in schema.features],
                                     _struct_children(batch, "values"))
        codes = _status_codes(_struct_children(batch, "statuses"))
        # An enum index is a long: statuses are < 64, so each is one byte, twice the index.
        segments.append(fixed_segment((codes * 2).astype(_U8)))
    if schema.joins:
        pairs = [_ints(c) for c in _struct_children(batch, "event_times")]
        segments.append(union_long_segment(np.stack([p[0] for p in pairs], axis=1),
                                           np.stack([p[1] for p in pairs], axis=1)))
    return segments


def interleave(segments: list[Segment], n: int) -> list[bytes]:
    """The n records' values: each record's kept cells of every segment, in order (the
    matrices side by side, compacted row by row)."""
    if n == 0:
        return []
    keep = np.concatenate([s.keep for s in segments], axis=1)
    cells = np.concatenate([s.cells for s in segments], axis=1)
    if keep.all():  # every record as long as the others (no nulls, same lengths): no compaction
        width = cells.shape[1]
        buffer = cells.tobytes()
        return [buffer[a:a + width] for a in range(0, n * width, width)]
    buffer = cells[keep].tobytes()
    ends = np.cumsum(keep.sum(axis=1))
    starts = np.concatenate([[0], ends[:-1]])
    return [buffer[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def encode_records(schema: LogSchema, batch: pa.RecordBatch) -> list[bytes]:
    """One Avro binary value (fetcher.featurelog._avro's schema) per record of `batch`."""
    if batch.num_rows == 0:
        return []
    try:
        return interleave(record_segments(schema, batch), batch.num_rows)
    except _TooWide:
        half = batch.num_rows // 2
        return (encode_records(schema, batch.slice(0, half))
                + encode_records(schema, batch.slice(half)))
