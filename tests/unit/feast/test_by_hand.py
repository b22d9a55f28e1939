"""StoredRows read by hand (fetcher.feast._by_hand) against protobuf's reading of the same
bytes: every served type, nulls, values of another member, the store's own framing, and
cut, padded and bit-flipped rows (hypothesis). Where protobuf refuses a row, decode()
raises what protobuf raises."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.api import encode_values
from fetcher.engine._rows import RowShape, row_reader
from fetcher.feast import FEATURE_TYPES, NULL_TIMESTAMP, FeastRowCodec
from fetcher.feast import _by_hand as _by_hand_module
from fetcher.feast._by_hand import RowByHand
from fetcher.feast.proto.stored_row_pb2 import StoredRow
from fetcher.feast.proto.types import value_pb2 as v
from fetcher.feast.proto.types.value_pb2 import ValueType as VT
from fetcher.types import Feature
from kvstores.feast_redis import _FeastLayout, feast_dataset

EVENT_MS = 1_764_000_000_123

INT64 = st.integers(-(2**63), 2**63 - 1)
# Doubles from any 8 bytes: NaNs with payloads, infinities, subnormals, -0.0.
DOUBLE = st.one_of(
    st.floats(), st.binary(min_size=8, max_size=8).map(lambda b: struct.unpack("<d", b)[0])
)
FLOAT = st.one_of(
    st.floats(width=32), st.binary(min_size=4, max_size=4).map(lambda b: struct.unpack("<f", b)[0])
)
TEXT = st.one_of(st.text(max_size=6), st.text(min_size=130, max_size=300))
BLOB = st.one_of(st.binary(max_size=6), st.binary(min_size=130, max_size=300))
# Value type -> (member, strategy of its values).
SCALARS: dict[int, tuple[str, Any]] = {
    VT.DOUBLE: ("double_val", DOUBLE),
    VT.FLOAT: ("float_val", FLOAT),
    VT.INT32: ("int32_val", st.integers(-(2**31), 2**31 - 1)),
    VT.INT64: ("int64_val", INT64),
    VT.UNIX_TIMESTAMP: ("unix_timestamp_val", st.one_of(INT64, st.just(NULL_TIMESTAMP))),
    VT.BOOL: ("bool_val", st.booleans()),
    VT.STRING: ("string_val", TEXT),
    VT.BYTES: ("bytes_val", BLOB),
}
LISTS: dict[int, tuple[str, Any, Any]] = {
    VT.DOUBLE_LIST: ("double_list_val", v.DoubleList, DOUBLE),
    VT.INT64_LIST: ("int64_list_val", v.Int64List, INT64),
    VT.STRING_LIST: ("string_list_val", v.StringList, TEXT),
    VT.BOOL_LIST: ("bool_list_val", v.BoolList, st.booleans()),
}
TYPES = [*SCALARS, *LISTS]


def _value(value_type: int, value: Any) -> v.Value:
    if value_type in LISTS:
        member, message, _ = LISTS[value_type]
        return v.Value(**{member: message(val=value)})
    return v.Value(**{SCALARS[value_type][0]: value})


# The tags a Value's first byte has for the scalar members, a list member and others: the
# raw values below start with one of them and go on with any bytes (overlong varints,
# bools of 2, int32s out of range, bad UTF-8, lengths that do not fit, ...).
TAGS = [0x29, 0x35, 0x18, 0x20, 0x40, 0x38, 0x12, 0x0A, 0x7A, 0x98, 0x00, 0xFF]


def _field(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _varint(len(body)) + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@st.composite
def stored_values(draw: Any, value_type: int) -> bytes:
    """A Value's bytes for a feature of `value_type`: its own member mostly, sometimes
    null or unset, another member (served or not), or raw bytes after a tag."""
    kind = draw(st.sampled_from(["own"] * 6 + ["unset", "null", "other", "raw", "raw"]))
    if kind == "unset":
        return b""
    if kind == "null":
        return v.Value(null_val=v.NULL).SerializeToString()
    if kind == "raw":
        return bytes([draw(st.sampled_from(TAGS))]) + draw(st.binary(max_size=12))
    if kind == "other":
        other = draw(st.sampled_from([*TYPES, "map"]))
        if other == "map":
            return v.Value(map_val=b"\x01").SerializeToString()
        value_type = other
    if value_type in LISTS:
        value = _value(value_type, draw(st.lists(LISTS[value_type][2], max_size=4)))
    else:
        value = _value(value_type, draw(SCALARS[value_type][1]))
    return value.SerializeToString()


@st.composite
def rows(draw: Any, types: tuple[int, ...] = tuple(TYPES)) -> tuple[list[int], bytes]:
    """A view's value types and a StoredRow of them, maybe with the `_ts` field."""
    value_types = draw(st.lists(st.sampled_from(types), min_size=1, max_size=12))
    row = b"".join(_field(0x0A, draw(stored_values(vt))) for vt in value_types)
    if draw(st.booleans()):
        row += _field(0x12, b"\x08" + _varint(draw(st.integers(0, 2**40))))
    return value_types, row


def _codec(value_types: list[int]) -> FeastRowCodec:
    return FeastRowCodec('["view"]', [(f"f{i}", vt) for i, vt in enumerate(value_types)])


def _same(value: Any) -> Any:
    """A decoded value compared bit for bit (NaN equals NaN, -0.0 is not 0.0)."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, list):
        return [_same(item) for item in value]
    return (type(value).__name__, value)


def _outcome(decode: Any, data: bytes) -> Any:
    try:
        return {name: _same(value) for name, value in decode(data).items()}
    except Exception as exc:  # the error is the outcome compared
        return (type(exc), str(exc))


def _check(value_types: list[int], data: bytes) -> None:
    codec = _codec(value_types)
    assert _outcome(codec.decode, data) == _outcome(codec.decode_by_protobuf, data)


def _shape(value_types: list[int]) -> RowShape:
    return RowShape(
        [Feature(f"f{i}", FEATURE_TYPES[vt]) for i, vt in enumerate(value_types)], encode_values)


def _row_outcome(read: Any, data: bytes) -> Any:
    try:
        return read(data, EVENT_MS)
    except Exception as exc:  # the error is the outcome compared
        return (type(exc), str(exc))


def _check_rows(value_types: list[int], data: bytes) -> None:
    """The engine's rows of `data`: through the codec's layout as through its decoder."""
    codec = _codec(value_types)
    shape = _shape(value_types)
    fast = row_reader(shape, codec.decode, codec.double_layout())
    general = row_reader(shape, codec.decode_by_protobuf, None)
    assert _row_outcome(fast, data) == _row_outcome(general, data)


@settings(max_examples=400, deadline=None)
@given(rows())
def test_rows_read_as_protobuf_reads_them(row: tuple[list[int], bytes]) -> None:
    _check(*row)


@settings(max_examples=300, deadline=None)
@given(rows((VT.DOUBLE, VT.FLOAT)))
def test_rows_of_doubles_and_floats(row: tuple[list[int], bytes]) -> None:
    _check(*row)
    _check_rows(*row)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([VT.DOUBLE, VT.FLOAT]), min_size=1, max_size=25), st.data())
def test_rows_of_present_doubles_take_the_engines_fast_path(
    value_types: list[int], data: Any
) -> None:
    values = [_value(vt, data.draw(SCALARS[vt][1])) for vt in value_types]
    row = StoredRow(values=values).SerializeToString()
    codec = _codec(value_types)
    fast = row_reader(_shape(value_types), _no_decoder, codec.double_layout())
    general = row_reader(_shape(value_types), codec.decode_by_protobuf, None)
    assert fast(row, EVENT_MS) == general(row, EVENT_MS)


def _no_decoder(data: bytes) -> dict[str, Any]:
    raise AssertionError("the layout did not read the row")


@settings(max_examples=400, deadline=None)
@given(rows(), st.data())
def test_cut_padded_and_flipped_rows(row: tuple[list[int], bytes], data: Any) -> None:
    value_types, raw = row
    if data.draw(st.booleans()):  # half of them over the fixed layout's types
        value_types = [data.draw(st.sampled_from([VT.DOUBLE, VT.FLOAT])) for _ in value_types]
        raw = b"".join(_field(0x0A, _value(vt, 1.5).SerializeToString()) for vt in value_types)
    how = data.draw(st.sampled_from(["cut", "pad", "flip"]))
    if how == "cut":
        changed = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "pad":
        changed = raw + data.draw(st.binary(min_size=1, max_size=12))
    else:
        bit = data.draw(st.integers(0, 8 * len(raw) - 1))
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        changed = bytes(flipped)
    _check(value_types, changed)
    _check_rows(value_types, changed)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_rows_framed_by_the_store(data: Any) -> None:
    """What kvstores.feast_redis builds from an HMGET reply (absent fields, long values)."""
    value_types = data.draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=8))
    reply: list[bytes | None] = [data.draw(st.sampled_from([
        None, b"\x08\x01", StoredRow().event_timestamp.SerializeToString()]))]
    for vt in value_types:
        reply.append(data.draw(st.one_of(st.none(), stored_values(vt))))
    dataset = feast_dataset("view", [f"f{i}" for i in range(len(value_types))])
    (found,) = _FeastLayout().results([(dataset, b"k", None)], [reply], lambda: "here")
    if found is None:
        assert reply == [None] * len(reply)
        return
    assert found[0] == b"".join(_field(0x0A, value or b"") for value in reply[1:])
    _check(value_types, found[0])
    _check_rows(value_types, found[0])


def _by_hand(value_types: list[int]) -> RowByHand:
    codec = _codec(value_types)
    return codec._by_hand  # which path read the row is what is tested


@pytest.mark.parametrize(
    ("value_type", "value", "want"),
    [(VT.DOUBLE, -1.5, -1.5), (VT.FLOAT, 0.1, 0.10000000149011612), (VT.INT32, -7, -7),
     (VT.INT32, 2**31 - 1, 2**31 - 1), (VT.INT64, -(2**63), -(2**63)), (VT.INT64, 300, 300),
     (VT.UNIX_TIMESTAMP, 1_700_000_000, 1_700_000_000), (VT.UNIX_TIMESTAMP, NULL_TIMESTAMP, None),
     (VT.BOOL, True, True), (VT.BOOL, False, False), (VT.STRING, "é" * 100, "é" * 100),
     (VT.STRING, "", ""), (VT.BYTES, b"\x00\xff", b"\x00\xff")],
)  # fmt: skip
def test_each_scalar_is_read_by_hand(value_type: int, value: Any, want: Any) -> None:
    row = StoredRow(values=[_value(value_type, value), v.Value()]).SerializeToString()
    got = _by_hand([value_type, value_type]).read(row)
    assert got is not None and _same(got["f0"]) == _same(want) and got["f1"] is None


def test_a_row_of_doubles_is_one_struct_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without value readers, only the fixed layout can read the row.
    monkeypatch.setattr(_by_hand_module, "hand_reader", lambda vt, null: _no_reader)
    reader = _by_hand([VT.DOUBLE, VT.FLOAT, VT.DOUBLE])
    values = [v.Value(double_val=math.inf), v.Value(float_val=2.5), v.Value(double_val=-0.0)]
    row = StoredRow(values=values)
    row.event_timestamp.seconds = 1_700_000_000
    assert reader.read(row.SerializeToString()) == {"f0": math.inf, "f1": 2.5, "f2": -0.0}
    monkeypatch.undo()
    # The fixed layout gives way to the walk on a null, and both read the same values.
    values[1] = v.Value()
    assert _by_hand([VT.DOUBLE, VT.FLOAT, VT.DOUBLE]).read(
        StoredRow(values=values).SerializeToString()) == {"f0": math.inf, "f1": None, "f2": -0.0}


def _no_reader(data: bytes, start: int, end: int) -> Any:
    raise AssertionError("the fixed layout did not read the row")


def test_what_protobuf_must_read() -> None:
    reader = _by_hand([VT.INT64, VT.DOUBLE_LIST])
    listed = v.Value(double_list_val=v.DoubleList(val=[1.0]))
    # A list (and a served member of another type) is read by protobuf, the row by hand.
    row = StoredRow(values=[v.Value(int32_val=3), listed]).SerializeToString()
    assert reader.read(row) == {"f0": 3, "f1": [1.0]}
    # A value of a type the feature is not served as: the whole row goes to protobuf...
    wrong = StoredRow(values=[v.Value(string_val="3"), listed]).SerializeToString()
    assert reader.read(wrong) is None
    # ...which raises the error the decoder always raised.
    with pytest.raises(ValueError, match=r"'f0' \(INT64\): the stored value is a string_val"):
        _codec([VT.INT64, VT.DOUBLE_LIST]).decode(wrong)
    # Too many values, or values after the `_ts` field: protobuf again.
    assert reader.read(row + StoredRow(values=[v.Value()]).SerializeToString()) is None
    with pytest.raises(ValueError, match="row holds 3 values for 2 features"):
        _codec([VT.INT64, VT.DOUBLE_LIST]).decode(row + b"\x0a\x00")


# Value bytes protobuf reads in its own way, or refuses: by hand they must be read the
# same or left to protobuf.
ODD_VALUES = [
    b"\x38\x02", b"\x38\x7f", b"\x38\x80\x01", b"\x38\x81\x00", b"\x38",
    b"\x18" + b"\x85\x80\x80\x80\x10", b"\x18" + b"\xff" * 9 + b"\x01", b"\x18\x80\x80\x80\x80\x08",
    b"\x18\xff\xff\xff\xff\x07", b"\x20" + b"\xff" * 9 + b"\x7f", b"\x20" + b"\xff" * 9 + b"\x02",
    b"\x20" + b"\xff" * 10 + b"\x01", b"\x20\x80\x00", b"\x20\x80", b"\x20",
    b"\x40" + b"\x80" * 9 + b"\x01", b"\x40\x00\x20\x01",
    b"\x12\x01\xff", b"\x12\x03\xed\xa0\x80", b"\x12\x02\xc0\x80", b"\x12\x80\x00", b"\x12\x01ab",
    b"\x12\x01a\x08\x01", b"\x12\x02a", b"\x12\x81\x01" + b"a" * 129, b"\x12\x81\x01a",
    b"\x0a\x80\x00", b"\x0a\x01", b"\x0a\x01\x00\x00", b"\x0a\x00\x12\x00",
    b"\x29" + b"\x00" * 7, b"\x29" + b"\x00" * 9, b"\x29" + b"\x00" * 8 + b"\x29" + b"\x01" * 8,
    b"\x29" + b"\x00" * 8 + b"\x98\x01\x00", b"\x35\x00\x00\x80\x7f", b"\x35\x00\x00\x80",
    b"\x98\x01\x00", b"\x00", b"\xff",
]


@pytest.mark.parametrize("raw", ODD_VALUES)
@pytest.mark.parametrize("value_type", [*SCALARS, VT.DOUBLE_LIST])
def test_odd_encodings(value_type: int, raw: bytes) -> None:
    row = _field(0x0A, raw) + _field(0x0A, b"\x29" + b"\x00" * 8)
    _check([value_type, VT.DOUBLE], row)
    _check_rows([value_type, VT.DOUBLE], row)
