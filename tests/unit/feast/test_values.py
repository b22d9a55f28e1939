"""Feast's stored values read back: every served type, nulls, and values that do not fit."""

from __future__ import annotations

import pytest

from fetcher.feast import NULL_TIMESTAMP, FeastRowCodec
from fetcher.feast.proto.stored_row_pb2 import StoredRow
from fetcher.feast.proto.types import value_pb2 as v
from fetcher.feast.proto.types.value_pb2 import ValueType as VT

FEATURES = [
    ("i32", VT.INT32, v.Value(int32_val=-7), -7),
    ("i64", VT.INT64, v.Value(int64_val=2**62), 2**62),
    ("f32", VT.FLOAT, v.Value(float_val=0.1), 0.10000000149011612),
    ("f64", VT.DOUBLE, v.Value(double_val=0.1), 0.1),
    ("s", VT.STRING, v.Value(string_val="é"), "é"),
    ("b", VT.BYTES, v.Value(bytes_val=b"\x00"), b"\x00"),
    ("ok", VT.BOOL, v.Value(bool_val=False), False),
    ("ts", VT.UNIX_TIMESTAMP, v.Value(unix_timestamp_val=1_700_000_000), 1_700_000_000),
    ("i32s", VT.INT32_LIST, v.Value(int32_list_val=v.Int32List(val=[1, -1])), [1, -1]),
    ("i64s", VT.INT64_LIST, v.Value(int64_list_val=v.Int64List(val=[])), []),
    ("f32s", VT.FLOAT_LIST, v.Value(float_list_val=v.FloatList(val=[0.5])), [0.5]),
    ("f64s", VT.DOUBLE_LIST, v.Value(double_list_val=v.DoubleList(val=[1.5, 2])), [1.5, 2.0]),
    ("ss", VT.STRING_LIST, v.Value(string_list_val=v.StringList(val=["", "x"])), ["", "x"]),
    ("bs", VT.BYTES_LIST, v.Value(bytes_list_val=v.BytesList(val=[b"", b"y"])), [b"", b"y"]),
    ("oks", VT.BOOL_LIST, v.Value(bool_list_val=v.BoolList(val=[True])), [True]),
    ("tss", VT.UNIX_TIMESTAMP_LIST, v.Value(unix_timestamp_list_val=v.Int64List(val=[3])), [3]),
]


def _codec(features: list[tuple[str, int]]) -> FeastRowCodec:
    return FeastRowCodec('["view"]', features)


def test_every_served_type() -> None:
    codec = _codec([(name, vt) for name, vt, _, _ in FEATURES])
    row = StoredRow(values=[value for _, _, value, _ in FEATURES]).SerializeToString()
    assert codec.decode(row) == {name: want for name, _, _, want in FEATURES}


def test_nulls() -> None:
    codec = _codec([("a", VT.INT64), ("b", VT.STRING_LIST), ("c", VT.UNIX_TIMESTAMP)])
    row = StoredRow(
        values=[v.Value(), v.Value(null_val=v.NULL), v.Value(unix_timestamp_val=NULL_TIMESTAMP)]
    )
    assert codec.decode(row.SerializeToString()) == {"a": None, "b": None, "c": None}


def test_a_member_served_as_the_same_type_is_read() -> None:
    # A view whose Int32 became an Int64 (or Float32 a Float64) still reads its old rows.
    codec = _codec([("a", VT.INT64), ("b", VT.DOUBLE)])
    row = StoredRow(values=[v.Value(int32_val=5), v.Value(float_val=0.25)]).SerializeToString()
    assert codec.decode(row) == {"a": 5, "b": 0.25}


def test_values_that_do_not_fit_raise() -> None:
    codec = _codec([("a", VT.INT64)])
    with pytest.raises(ValueError, match=r"'a' \(INT64\): the stored value is a string_val"):
        codec.decode(StoredRow(values=[v.Value(string_val="1")]).SerializeToString())
    with pytest.raises(ValueError, match="map_val"):  # a type we do not serve, by its name
        codec.decode(StoredRow(values=[v.Value(map_val=b"")]).SerializeToString())
    with pytest.raises(ValueError, match="row holds 2 values for 1 features"):
        codec.decode(StoredRow(values=[v.Value(), v.Value()]).SerializeToString())


def test_the_fingerprint_follows_what_is_read() -> None:
    a = FeastRowCodec('["v","x"]', [("x", VT.INT64)]).fingerprint
    assert a == FeastRowCodec('["v","x"]', [("x", VT.INT64)]).fingerprint
    assert a != FeastRowCodec('["v","x"]', [("x", VT.INT32)]).fingerprint
    assert a != FeastRowCodec('["w","x"]', [("x", VT.INT64)]).fingerprint
    assert _codec([("x", VT.INT64)]).double_layout() is None
