"""StoredRow bytes read by hand: Feast's usual values without a protobuf parse per row.

kvstores.feast_redis frames an HMGET reply as a StoredRow (protos/fetcher/feast/proto/
stored_row.proto): per feature `0x0a <length> <Value bytes>`, then maybe the `_ts` field.
A Value holding a scalar in its type's own member has one short shape (protobuf's wire
format with feast/types/Value.proto's field numbers):

    double   0x29 + 8 bytes LE          float    0x35 + 4 bytes LE
    int32    0x18 + varint              int64    0x20 + varint
    unix ts  0x40 + varint              bool     0x38 + 0x00 or 0x01
    string   0x12 + varint length + UTF-8
    bytes    0x0a + varint length + the bytes
    unset    no bytes (an absent field; Feast's Null member goes to protobuf)

Those are read here with struct and bytes operations, and a view of doubles and floats
only with one struct call per row. Anything else (lists, a value in another member, a
long varint, cut or padded bytes) goes to protobuf, the Value alone or, when the row
itself does not walk cleanly, the whole row: a row read here gives what protobuf gives,
and a row that protobuf refuses is always left to it (so are its errors). A row of
present doubles and floats has a fixed size: `double_layout` hands it to the engine's
fast path, which builds the group's row from it without a decoded record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from fetcher.codec import DoubleLayout
from fetcher.feast.proto import stored_row_pb2
from fetcher.feast.proto.types import value_pb2

VT = value_pb2.ValueType

#: "Not a shape read by hand": the Value goes to protobuf.
SLOW: Any = object()

#: (row bytes, start, end) -> the value of the Value bytes row[start:end], or SLOW.
HandReader = Callable[[bytes, int, int], Any]

_VALUES_TAG = 0x0A  # StoredRow field 1 (values), length-delimited
_DOUBLE = struct.Struct("<d").unpack_from
_FLOAT = struct.Struct("<f").unpack_from
_INT64_SIGN = 1 << 63
_UINT64 = 1 << 64
_INT32_MIN, _INT32_END = -(1 << 31), 1 << 31


def _uvarint(data: bytes, pos: int, end: int) -> int:
    """The varint that fills data[pos:end] exactly (at most 10 bytes, below 2**64), or -1."""
    if end - pos == 1:
        byte = data[pos]
        return byte if byte < 0x80 else -1
    if not 1 < end - pos <= 10:
        return -1
    value = shift = 0
    for i in range(pos, end):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value if i == end - 1 and value < _UINT64 else -1
    return -1


def _body_start(data: bytes, pos: int, end: int) -> int:
    """Where the body of the length-prefixed field whose length starts at `pos` begins,
    when that body ends exactly at `end`; -1 otherwise."""
    length = shift = 0
    while pos < end and shift < 35:
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return pos if pos + length == end else -1
        shift += 7
    return -1


def _read_double(data: bytes, start: int, end: int) -> Any:
    if end - start == 9 and data[start] == 0x29:
        return _DOUBLE(data, start + 1)[0]
    return SLOW


def _read_float(data: bytes, start: int, end: int) -> Any:
    if end - start == 5 and data[start] == 0x35:
        return _FLOAT(data, start + 1)[0]
    return SLOW


def _read_bool(data: bytes, start: int, end: int) -> Any:
    if end - start == 2 and data[start] == 0x38 and data[start + 1] < 2:
        return data[start + 1] == 1
    return SLOW


def _signed(tag: int) -> Callable[[bytes, int, int], int | None]:
    """The int64 in a Value's varint member `tag`, None when it is not that shape."""

    def read(data: bytes, start: int, end: int) -> int | None:
        if data[start] != tag:
            return None
        value = _uvarint(data, start + 1, end)
        if value < 0:
            return None
        return value - _UINT64 if value >= _INT64_SIGN else value

    return read


_int64_of, _int32_of, _timestamp_of = _signed(0x20), _signed(0x18), _signed(0x40)


def _read_int64(data: bytes, start: int, end: int) -> Any:
    value = _int64_of(data, start, end)
    return SLOW if value is None else value


def _read_int32(data: bytes, start: int, end: int) -> Any:
    value = _int32_of(data, start, end)
    # protobuf keeps the low 32 bits of a longer varint: only the usual encodings here.
    if value is None or not _INT32_MIN <= value < _INT32_END:
        return SLOW
    return value


def _timestamp_reader(null: int) -> HandReader:
    def read(data: bytes, start: int, end: int) -> Any:
        value = _timestamp_of(data, start, end)
        if value is None:
            return SLOW
        return None if value == null else value

    return read


def _read_string(data: bytes, start: int, end: int) -> Any:
    if data[start] != 0x12:
        return SLOW
    body = _body_start(data, start + 1, end)
    if body < 0:
        return SLOW
    try:
        return data[body:end].decode()
    except UnicodeDecodeError:  # protobuf refuses it: let it say so
        return SLOW


def _read_bytes(data: bytes, start: int, end: int) -> Any:
    if data[start] != 0x0A:
        return SLOW
    body = _body_start(data, start + 1, end)
    return SLOW if body < 0 else data[body:end]


def _read_slowly(data: bytes, start: int, end: int) -> Any:
    return SLOW


def hand_reader(value_type: int, null_timestamp: int) -> HandReader:
    """The by-hand reader of a Feast value type's own member (lists: always SLOW)."""
    if value_type == VT.UNIX_TIMESTAMP:
        return _timestamp_reader(null_timestamp)
    return _READERS.get(value_type, _read_slowly)


_READERS: dict[int, HandReader] = {
    VT.DOUBLE: _read_double,
    VT.FLOAT: _read_float,
    VT.BOOL: _read_bool,
    VT.INT64: _read_int64,
    VT.INT32: _read_int32,
    VT.STRING: _read_string,
    VT.BYTES: _read_bytes,
}


# The fixed StoredRow field of a present double or float Value: its head, its struct code.
_FIXED: dict[int, tuple[bytes, str]] = {
    VT.DOUBLE: (b"\x0a\x09\x29", "3sd"),
    VT.FLOAT: (b"\x0a\x05\x35", "3sf"),
}


def double_layout(names: Sequence[str], value_types: Sequence[int]) -> DoubleLayout | None:
    """The engine's fast path over StoredRows of doubles and floats without a null
    (fetcher.engine row_reader): each value's field head (three bytes) checked where an
    Avro row's union branch is, the values read with the same struct call; None when a
    feature is of another type."""
    if not value_types or not all(vt in _FIXED for vt in value_types):
        return None
    codes = "".join("BBB" + _FIXED[vt][1][-1] for vt in value_types)
    heads = tuple(byte for vt in value_types for byte in _FIXED[vt][0])
    count = len(value_types)
    body = struct.Struct("<" + codes)
    return DoubleLayout(
        header=b"",
        size=body.size,
        names=tuple(names),
        raw=False,
        body=body,
        branch_positions=tuple(i for f in range(count) for i in range(4 * f, 4 * f + 3)),
        branches=heads,
        value_positions=tuple(4 * f + 3 for f in range(count)),
        offset=0,
    )


class RowByHand:
    """Reads a StoredRow of one codec's features by hand where it can (see the module)."""

    __slots__ = ("_fields", "_fixed", "_heads", "_names", "_rest")

    def __init__(
        self,
        names: Sequence[str],
        value_types: Sequence[int],
        slow_readers: Sequence[Callable[[bytes], Any]],
        null_timestamp: int,
    ) -> None:
        """`slow_readers[i]`: Value bytes -> feature i's value through protobuf (or raise)."""
        self._names = tuple(names)
        self._fields = tuple(
            (name, hand_reader(vt, null_timestamp), slow)
            for name, vt, slow in zip(names, value_types, slow_readers, strict=True)
        )
        # Every feature a double or a float: a row without nulls is one struct call.
        self._fixed: struct.Struct | None = None
        self._heads: tuple[bytes, ...] = ()
        if value_types and all(vt in _FIXED for vt in value_types):
            self._fixed = struct.Struct("<" + "".join(_FIXED[vt][1] for vt in value_types))
            self._heads = tuple(_FIXED[vt][0] for vt in value_types)
        # The bytes after the values last found to hold no values (the `_ts` field, the
        # same in every row of a batch): checked by protobuf once, not per row.
        self._rest = b""

    def read(self, data: bytes) -> dict[str, Any] | None:
        """The row's values by feature name, or None when protobuf must read the row."""
        fixed = self._fixed
        if fixed is not None and len(data) >= fixed.size:
            got = fixed.unpack_from(data)
            if got[0::2] == self._heads and self._rest_ok(data, fixed.size):
                return dict(zip(self._names, got[1::2], strict=True))
        out: dict[str, Any] = {}
        pos = 0
        size = len(data)
        try:
            for name, fast, slow in self._fields:
                if data[pos] != _VALUES_TAG:
                    return None
                length = data[pos + 1]
                start = pos + 2
                if length >= 0x80:
                    start = _varint_end(data, pos + 1)
                    length = _uvarint(data, pos + 1, start)
                    if length < 0:
                        return None
                end = start + length
                if end > size:
                    return None
                if length == 0:
                    out[name] = None
                else:
                    value = fast(data, start, end)
                    out[name] = slow(data[start:end]) if value is SLOW else value
                pos = end
        except Exception:  # cut bytes, or protobuf refused a Value: the whole row to it
            return None
        return out if self._rest_ok(data, pos) else None

    def _rest_ok(self, data: bytes, pos: int) -> bool:
        """Whether data[pos:] is StoredRow fields without values (or nothing)."""
        if pos == len(data):
            return True
        rest = data[pos:]
        if rest == self._rest:
            return True
        try:
            if stored_row_pb2.StoredRow.FromString(rest).values:
                return False
        except Exception:
            return False
        self._rest = rest
        return True


def _varint_end(data: bytes, pos: int) -> int:
    """The position after the varint starting at `pos` (IndexError when it is cut)."""
    while data[pos] >= 0x80:
        pos += 1
    return pos + 1
