"""A GetOnlineFeatures answer: the engine's vectors turned into Feast's response columns,
written as Feast's wire bytes (gRPC) or as `feast serve`'s JSON (HTTP).

Each feature column of a request (a `Column`, resolved once per snapshot by
fetcher.feast._serving) says where its values are in the engine's vectors and how they
are written: the Value member of the view's declared type, their JSON form.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from typing import Any

from fetcher.engine import SLOT_OF_TYPE, TargetPlan, varint
from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.feast.proto.types import value_pb2
from fetcher.types import Status
from fetcher.v1 import feature_service_pb2 as fpb

VT = value_pb2.ValueType
Value = value_pb2.Value

#: Our status -> Feast's FieldStatus (Feast has no ERROR: a row that did not decode, or a
#: store that failed, is INVALID, Feast's "status unset").
FIELD_STATUS = {
    Status.PRESENT: sv.PRESENT,
    Status.NOT_FOUND: sv.NOT_FOUND,
    Status.NULL_VALUE: sv.NULL_VALUE,
    Status.OUTSIDE_MAX_AGE: sv.OUTSIDE_MAX_AGE,
    Status.ERROR: sv.INVALID,
}
_STATUS_LIST = [FIELD_STATUS.get(Status(s), sv.INVALID) if s else sv.INVALID
                for s in range(max(Status) + 1)]
# Our vector's field of each slot (fetcher.engine SLOT_*).
_SLOT_FIELDS = ("double_values", "int64_values", "string_values", "bool_values",
                "bytes_values", "list_values")
_LIST_ITEMS: dict[int, str] = {
    VT.BYTES_LIST: "bytes_values", VT.STRING_LIST: "string_values",
    VT.INT32_LIST: "int64_values", VT.INT64_LIST: "int64_values",
    VT.UNIX_TIMESTAMP_LIST: "int64_values", VT.DOUBLE_LIST: "double_values",
    VT.FLOAT_LIST: "double_values", VT.BOOL_LIST: "bool_values",
}
# The Value member each Feast type is answered in (the type the view declares, as Feast).
_MEMBER: dict[int, str] = {
    VT.BYTES: "bytes_val", VT.STRING: "string_val", VT.INT32: "int32_val",
    VT.INT64: "int64_val", VT.DOUBLE: "double_val", VT.FLOAT: "float_val",
    VT.BOOL: "bool_val", VT.UNIX_TIMESTAMP: "unix_timestamp_val",
}
_LIST_MESSAGE: dict[int, tuple[str, Any]] = {
    VT.BYTES_LIST: ("bytes_list_val", value_pb2.BytesList),
    VT.STRING_LIST: ("string_list_val", value_pb2.StringList),
    VT.INT32_LIST: ("int32_list_val", value_pb2.Int32List),
    VT.INT64_LIST: ("int64_list_val", value_pb2.Int64List),
    VT.UNIX_TIMESTAMP_LIST: ("unix_timestamp_list_val", value_pb2.Int64List),
    VT.DOUBLE_LIST: ("double_list_val", value_pb2.DoubleList),
    VT.FLOAT_LIST: ("float_list_val", value_pb2.FloatList),
    VT.BOOL_LIST: ("bool_list_val", value_pb2.BoolList),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One response column: a feature of a read's plan, and where the engine's vectors
    hold it (each vector holds every feature of the plan, so a column is a stride)."""

    name: str
    feature: int  # index in the plan's features (and in a vector's statuses)
    features: int  # how many features (statuses) a vector of the plan has
    slot: int
    position: int  # within the slot
    slot_width: int  # how many values of the slot a vector has
    join: int
    joins: int  # how many event times a vector has
    items: str | None  # list features: the ListValue field of the items
    encoder: Callable[[Any], bytes]  # value -> its Value (in the view's member), wire bytes
    # The values of a column without None -> their FeatureVector.values fields, in one
    # C-level pass (fixed-size members only; the others go value by value).
    cells: Callable[[list[Any]], bytes] | None
    natives: Callable[[list[Any]], list[Any]]  # the values (None kept) -> their JSON form


def answer_columns(plan: TargetPlan, wanted: Sequence[tuple[str, str, int]]) -> tuple[Column, ...]:
    """(plan feature name, response name, Feast value type) -> columns of `plan`."""
    positions: list[int] = []
    seen = [0] * len(_SLOT_FIELDS)
    for kind in plan.feature_types:
        slot = SLOT_OF_TYPE[kind]
        positions.append(seen[slot])
        seen[slot] += 1
    index = {name: i for i, name in enumerate(plan.feature_names)}
    out = []
    for feature, name, value_type in wanted:
        i = index[feature]
        slot = SLOT_OF_TYPE[plan.feature_types[i]]
        listed = _LIST_MESSAGE.get(value_type)
        encoder = (_scalar_encoder(_MEMBER[value_type]) if listed is None
                   else _list_encoder(*listed))
        out.append(Column(
            name=name, feature=i, features=len(plan.feature_types), slot=slot,
            position=positions[i], slot_width=seen[slot], join=plan.feature_joins[i],
            joins=len(plan.groups), items=_LIST_ITEMS.get(value_type), encoder=encoder,
            cells=_CELLS.get(value_type), natives=_natives(value_type),
        ))
    return tuple(out)


_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
_EMPTY_FIELD = b"\x0a\x00"  # an unset Value in FeatureVector.values (field 1)
_ZERO_TIME_FIELD = b"\x1a\x00"  # a zero Timestamp in FeatureVector.event_timestamps (3)


def wire_field(tag: bytes, inner: bytes) -> bytes:
    """A length-delimited field: `tag`, the length of `inner` as a varint, `inner`."""
    return tag + varint(len(inner)) + inner


def _scalar_encoder(member: str) -> Callable[[Any], bytes]:
    """value -> the FeatureVector.values field of a Value holding it in `member` (wire
    bytes built by hand: a message per cell cost most of a 100-entity answer)."""
    if member == "double_val":
        return lambda v: b"\x0a\x09\x29" + _DOUBLE(v)
    if member == "float_val":
        return lambda v: b"\x0a\x05\x35" + _FLOAT(v)
    if member in ("int64_val", "int32_val", "unix_timestamp_val"):
        tag = {"int64_val": b"\x20", "int32_val": b"\x18", "unix_timestamp_val": b"\x40"}[member]
        return lambda v: wire_field(b"\x0a", tag + varint(v))
    if member == "bool_val":
        return lambda v: b"\x0a\x02\x38\x01" if v else b"\x0a\x02\x38\x00"
    if member == "string_val":
        return lambda v: wire_field(b"\x0a", wire_field(b"\x12", v.encode()))
    if member == "bytes_val":
        return lambda v: wire_field(b"\x0a", wire_field(b"\x0a", v))
    raise ValueError(member)


def _packed_cells(head: bytes, code: str) -> Callable[[list[Any]], bytes]:
    """Values -> their fields `head` + the value packed as `code`, one struct call each
    from C (the bytes _scalar_encoder writes, without a Python call per value)."""
    pack = struct.Struct(f"<{len(head)}s{code}").pack

    def cells(values: list[Any]) -> bytes:
        return b"".join(map(pack, repeat(head, len(values)), values))

    return cells


_BOOL_CELLS = {True: b"\x0a\x02\x38\x01", False: b"\x0a\x02\x38\x00"}
_CELLS: dict[int, Callable[[list[Any]], bytes]] = {
    VT.DOUBLE: _packed_cells(b"\x0a\x09\x29", "d"),
    VT.FLOAT: _packed_cells(b"\x0a\x05\x35", "f"),
    VT.BOOL: lambda values: b"".join(map(_BOOL_CELLS.__getitem__, values)),
}


def _list_encoder(member: str, message: Any) -> Callable[[Any], bytes]:
    def encode(items: Any) -> bytes:
        return wire_field(b"\x0a", Value(**{member: message(val=items)}).SerializeToString())

    return encode


def _time_field(ms: int) -> bytes:
    seconds, nanos = divmod(ms, 1000)
    inner = (b"\x08" + varint(seconds) if seconds else b"") + (
        b"\x10" + varint(nanos * 1_000_000) if nanos else b"")
    return wire_field(b"\x1a", inner)


class EventTimes:
    """The event times (ms) of one join's rows, one per entity row, shared by the join's
    columns: written as Timestamps or as text once per answer, not once per column."""

    __slots__ = ("_texts", "_wire", "ms")

    def __init__(self, ms: list[int]) -> None:
        self.ms = ms
        self._wire: bytes | None = None
        self._texts: list[str] | None = None

    def wire(self) -> bytes:
        """The FeatureVector.event_timestamps fields."""
        if self._wire is None:
            fields = {ms: _time_field(ms) for ms in set(self.ms)}
            self._wire = b"".join(map(fields.__getitem__, self.ms))
        return self._wire

    def texts(self) -> list[str]:
        """The times as `feast serve` writes them (the same list for every column)."""
        if self._texts is None:
            texts = {ms: _time_text(ms) for ms in set(self.ms)}
            self._texts = list(map(texts.__getitem__, self.ms))
        return self._texts


@dataclass(frozen=True, slots=True)
class FeatureColumn:
    """One feature column of an answer: values (None where not PRESENT), Feast statuses,
    event times, one per entity row; `complete` when every status is PRESENT."""

    column: Column
    values: list[Any]
    statuses: bytes
    times: EventTimes
    complete: bool


class FeastAnswer:
    """A GetOnlineFeatures answer, as Feast's wire bytes (gRPC) or `feast serve`'s JSON."""

    __slots__ = ("count", "entities", "features", "metadata", "names")

    def __init__(self, names: list[str], metadata: bytes, entities: list[tuple[str, Any]],
                 features: list[FeatureColumn], count: int) -> None:
        self.names = names
        self.metadata = metadata  # the response's metadata field, wire bytes
        self.entities = entities  # (join key, the request's RepeatedValue)
        self.features = features
        self.count = count

    def wire(self) -> bytes:
        """GetOnlineFeaturesResponse wire bytes."""
        count = self.count
        parts = [self.metadata]
        present = wire_field(b"\x12", bytes([sv.PRESENT]) * count)
        no_times = _ZERO_TIME_FIELD * count
        for _, repeated in self.entities:
            # RepeatedValue.val is field 1 of Values, as FeatureVector.values is.
            parts.append(wire_field(b"\x12", repeated.SerializeToString() + present + no_times))
        for feature in self.features:
            column = feature.column
            cells = column.cells
            if feature.complete and cells is not None:
                values = cells(feature.values)
            elif feature.complete:
                values = b"".join(map(column.encoder, feature.values))
            else:
                encode = column.encoder
                values = b"".join(
                    [_EMPTY_FIELD if v is None else encode(v) for v in feature.values])
            vector = values + wire_field(b"\x12", feature.statuses) + feature.times.wire()
            parts.append(wire_field(b"\x12", vector))
        return b"".join(parts)

    def json(self) -> dict[str, Any]:
        """The JSON `feast serve` answers (Feast's convert_response_to_dict)."""
        results: list[dict[str, Any]] = []
        zero = [_ZERO_TIME_TEXT] * self.count
        present = ["PRESENT"] * self.count
        for _, repeated in self.entities:
            results.append({"values": [_native_key(v) for v in repeated.val],
                            "statuses": present, "event_timestamps": zero})
        for feature in self.features:
            results.append({
                "values": feature.column.natives(feature.values),
                "statuses": list(map(_STATUS_NAMES.__getitem__, feature.statuses)),
                "event_timestamps": feature.times.texts(),
            })
        return {"metadata": {"feature_names": self.names}, "results": results}


_STATUS_NAMES = {v: sv.FieldStatus.Name(v) for v in sv.FieldStatus.values()}
_ZERO_TIME_TEXT = "1970-01-01T00:00:00Z"


def _time_text(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


def _finite(f: float) -> float | str:
    if math.isfinite(f):
        return f
    return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _native_encoder(value_type: int) -> Callable[[Any], Any] | None:
    """A served value -> its JSON form in `feast serve`'s answers; None: the value itself."""
    if value_type in (VT.DOUBLE, VT.FLOAT):
        return _finite
    if value_type == VT.BYTES:
        return _b64
    if value_type == VT.BYTES_LIST:
        return lambda items: [_b64(b) for b in items]
    if value_type in (VT.DOUBLE_LIST, VT.FLOAT_LIST):
        return lambda items: [_finite(f) for f in items]
    if value_type in _LIST_ITEMS:
        return list
    return None


def _natives(value_type: int) -> Callable[[list[Any]], list[Any]]:
    """A column's values (None where not PRESENT) -> their JSON forms."""
    native = _native_encoder(value_type)
    if native is None:
        return lambda values: values
    if native is _finite:

        def doubles(values: list[Any]) -> list[Any]:
            # Finite doubles are their own JSON form: checked in one C-level pass.
            if None not in values and all(map(math.isfinite, values)):
                return values
            return [None if v is None else _finite(v) for v in values]

        return doubles
    return lambda values: [None if v is None else native(v) for v in values]


def _native_key(value: Any) -> Any:
    member = value.WhichOneof("val")
    if member is None:
        return None
    got = getattr(value, member)
    return _b64(got) if member == "bytes_val" else got


# Our status byte -> Feast's FieldStatus byte (any other byte: INVALID).
_FEAST_STATUS = bytes(
    _STATUS_LIST[s] if s < len(_STATUS_LIST) else sv.INVALID for s in range(256))
_PRESENT = int(Status.PRESENT)


def fill(columns: Sequence[Column], wires: Sequence[bytes], out: list[FeatureColumn]) -> None:
    """The feature `columns` of one engine read, from its vectors (`wires`, one per entity
    row, all of the read's plan): each column is a strided slice of the vectors' statuses,
    values and event times joined end to end, so the work per cell is in C."""
    if not columns:
        return
    count = len(wires)
    vectors = [fpb.FeatureVector.FromString(w) for w in wires]
    first = columns[0]
    statuses = b"".join([bytes(v.statuses) for v in vectors])
    times = list(chain.from_iterable([v.event_timestamps_ms for v in vectors]))
    if len(statuses) != first.features * count or len(times) != first.joins * count:
        raise ValueError("the engine's vectors do not have the plan's shape")
    slots: dict[int, list[Any]] = {}
    joins: dict[int, EventTimes] = {}
    complete = bytes([_PRESENT]) * count
    for column in columns:
        slot = column.slot
        array = slots.get(slot)
        if array is None:
            field = _SLOT_FIELDS[slot]
            array = slots[slot] = list(chain.from_iterable([getattr(v, field) for v in vectors]))
            if len(array) != column.slot_width * count:
                raise ValueError("the engine's vectors do not have the plan's shape")
        own = statuses[column.feature::column.features]
        values = array[column.position::column.slot_width]
        is_complete = own == complete
        if not is_complete:
            values = [v if s == _PRESENT else None for v, s in zip(values, own, strict=True)]
        items = column.items
        if items is not None:
            values = [None if v is None else getattr(v, items) for v in values]
        join = joins.get(column.join)
        if join is None:
            join = joins[column.join] = EventTimes(times[column.join::column.joins])
        out.append(FeatureColumn(column, values, own.translate(_FEAST_STATUS), join, is_complete))


__all__ = ["FIELD_STATUS", "Column", "EventTimes", "FeastAnswer", "FeatureColumn",
           "answer_columns", "fill", "wire_field"]
