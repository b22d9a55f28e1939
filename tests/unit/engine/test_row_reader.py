"""rows.row_reader: the fast path for groups of doubles gives exactly the general path's rows.

Every test compares the reader with `shape.to_row(codec.decode(value), event_ms)` (the
general path) on the same bytes, and counts the general decoder's calls to show which
path a value took.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.api import encode_values
from fetcher.codec._avro import DecodeError, GroupCodec, SchemaRegistry, avro_to_features
from fetcher.engine._rows import RowShape, row_reader
from fetcher.v1 import feature_service_pb2 as pb

EVENT_MS = 1_764_000_000_123


def _schema(types: list[Any], name: str = "Row") -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(types)],
    }


class _Counting:
    """Wraps a codec's decode and counts the values that took the general path."""

    def __init__(self, codec: GroupCodec) -> None:
        self.codec = codec
        self.calls = 0

    def __call__(self, data: bytes) -> dict[str, Any]:
        self.calls += 1
        return self.codec.decode(data)


def _setup(types: list[Any]) -> tuple[GroupCodec, RowShape, _Counting, Any]:
    registry = SchemaRegistry()
    fp = registry.register(_schema(types), "row.avsc")
    codec = GroupCodec(registry, fp)
    shape = RowShape(avro_to_features(codec.schema), encode_values)
    counting = _Counting(codec)
    return codec, shape, counting, row_reader(shape, counting, codec.double_layout())


def _general(codec: GroupCodec, shape: RowShape, value: bytes) -> bytes:
    return shape.to_row(codec.decode(value), EVENT_MS).wire


def test_plain_doubles_are_copied_into_the_row() -> None:
    codec, shape, counting, read = _setup(["double"] * 20)
    record = {f"f{i}": i / 64 - 3.0 for i in range(20)}
    value = codec.encode(record)
    layout = codec.double_layout()
    assert layout is not None and layout.raw and layout.size == len(value)
    row = read(value, EVENT_MS)
    assert counting.calls == 0  # the Avro decoder never ran
    assert row.event_ms == EVENT_MS
    assert row.wire == _general(codec, shape, value)
    vector = pb.FeatureVector.FromString(row.wire)
    assert list(vector.double_values) == [record[f"f{i}"] for i in range(20)]
    assert list(vector.statuses) == [pb.PRESENT] * 20
    assert list(vector.event_timestamps_ms) == [EVENT_MS]


def test_nullable_and_float_fields_take_the_struct_path_unless_null() -> None:
    types: list[Any] = ["double", ["null", "double"], "float", ["float", "null"], "double"]
    codec, shape, counting, read = _setup(types)
    layout = codec.double_layout()
    assert layout is not None and not layout.raw
    full = {"f0": 1.5, "f1": -2.25, "f2": 0.5, "f3": 3.0, "f4": 1e300}
    value = codec.encode(full)
    assert read(value, EVENT_MS).wire == _general(codec, shape, value)
    assert counting.calls == 0
    with_null = {**full, "f1": None}
    value = codec.encode(with_null)
    row = read(value, EVENT_MS)
    assert counting.calls == 1  # a null: the general path, which marks it
    assert row.wire == _general(codec, shape, value)
    assert pb.FeatureVector.FromString(row.wire).statuses[1] == pb.NULL_VALUE


@pytest.mark.parametrize("types", [["double"] * 3, ["double", ["null", "double"], "float"]],
                         ids=["plain", "struct"])
def test_each_row_gets_its_own_event_time_whatever_came_before(types: list[Any]) -> None:
    # The fast readers remember the last event time's bytes: repeats, changes and
    # changes back must all give the general path's row for that time.
    codec, shape, counting, read = _setup(types)
    value = codec.encode({"f0": 1.0, "f1": 2.0, "f2": 0.5})
    times = [EVENT_MS, EVENT_MS, EVENT_MS + 1, EVENT_MS, 0, 0, -5, 2**63 - 1, 1, EVENT_MS]
    for event_ms in times:
        row = read(value, event_ms)
        assert row.event_ms == event_ms
        assert row.wire == shape.to_row(codec.decode(value), event_ms).wire
    assert counting.calls == 0


def test_schemas_with_other_types_use_the_general_path() -> None:
    for types in (["double", "long"], ["double", "string"], ["double", ["null", "long"]]):
        codec, shape, counting, read = _setup(types)
        assert codec.double_layout() is None
        record = {"f0": 1.0, "f1": 7 if "string" not in str(types) else "x"}
        value = codec.encode(record)
        assert read(value, EVENT_MS).wire == _general(codec, shape, value)
        assert counting.calls == 1


def _outcome(fn: Any, value: bytes) -> Any:
    try:
        return fn(value)
    except DecodeError as exc:
        return ("error", re.sub(r" at 0x[0-9a-f]+", "", str(exc)))  # no object addresses


@pytest.mark.parametrize(
    "types", [["double"] * 4, [["null", "double"], "float", "double", ["double", "null"]]]
)
def test_damaged_values_give_the_general_paths_answer(types: list[Any]) -> None:
    codec, shape, _, read = _setup(types)
    value = codec.encode({f"f{i}": float(i) + 0.5 for i in range(4)})
    damaged = [
        value[:-1],  # truncated body
        value + b"\x00",  # a byte too many
        value[:9],  # truncated header
        b"\x00\x01" + value[2:],  # bad marker
        value[:2] + b"\xff" * 8 + value[10:],  # unknown fingerprint
    ]
    if not codec.double_layout().raw:  # type: ignore[union-attr]
        damaged.append(value[:10] + b"\x04" + value[11:])  # union branch 2 does not exist
        damaged.append(value[:10] + b"\x00" + value[11:])  # branch "null", then 8 stray bytes
    for bad in damaged:
        assert _outcome(lambda v: read(v, EVENT_MS).wire, bad) == _outcome(
            lambda v: _general(codec, shape, v), bad
        ), bad.hex()


def test_rows_of_an_older_writer_schema_are_resolved_by_the_general_path() -> None:
    registry = SchemaRegistry()
    old_fp = registry.register(_schema(["double", "double"], "Row"), "old.avsc")
    new_schema = _schema(["double", "double"])
    new_schema["fields"].append({"name": "f2", "type": "double", "default": 9.5})
    new_fp = registry.register(new_schema, "new.avsc")
    old, new = GroupCodec(registry, old_fp), GroupCodec(registry, new_fp)
    shape = RowShape(avro_to_features(new.schema), encode_values)
    counting = _Counting(new)
    read = row_reader(shape, counting, new.double_layout())
    value = old.encode({"f0": 1.0, "f1": 2.0})  # 10 + 16 bytes: shorter than the new layout
    row = read(value, EVENT_MS)
    assert counting.calls == 1
    assert list(pb.FeatureVector.FromString(row.wire).double_values) == [1.0, 2.0, 9.5]


def test_a_shape_that_is_not_the_schema_order_never_takes_the_fast_path() -> None:
    registry = SchemaRegistry()
    fp = registry.register(_schema(["double", "double"]), "row.avsc")
    codec = GroupCodec(registry, fp)
    shape = RowShape(tuple(reversed(avro_to_features(codec.schema))), encode_values)
    counting = _Counting(codec)
    read = row_reader(shape, counting, codec.double_layout())
    value = codec.encode({"f0": 1.0, "f1": 2.0})
    assert list(pb.FeatureVector.FromString(read(value, EVENT_MS).wire).double_values) == [2, 1]
    assert counting.calls == 1


_FIELD_TYPES = st.sampled_from(["double", "float", ["null", "double"], ["float", "null"]])
_DOUBLES = st.floats(allow_nan=True, allow_infinity=True)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(_FIELD_TYPES, min_size=1, max_size=12), st.data())
def test_any_double_schema_and_record_reads_the_same_on_both_paths(
    types: list[Any], data: st.DataObject
) -> None:
    codec, shape, _, read = _setup(types)
    record: dict[str, Any] = {}
    for i, t in enumerate(types):
        nullable = isinstance(t, list)
        is_float = "float" in str(t)
        value = data.draw(_FLOATS if is_float else _DOUBLES)
        record[f"f{i}"] = None if nullable and data.draw(st.booleans()) else value
    encoded = codec.encode(record)
    fast = read(encoded, EVENT_MS).wire
    assert fast == _general(codec, shape, encoded)

