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
    """One response column: a feature of a read's plan."""

    name: str
    feature: int  # index in the plan's features
    slot: int
    position: int  # within the slot
    join: int
    items: str | None  # list features: the ListValue field of the items
    encoder: Callable[[Any], bytes]  # value -> its Value (in the view's member), wire bytes
    native: Callable[[Any], Any]  # value -> its JSON form



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
        listed = _LIST_MESSAGE.get(value_type)
        encoder = (_scalar_encoder(_MEMBER[value_type]) if listed is None
                   else _list_encoder(*listed))
        out.append(Column(
            name=name, feature=i, slot=SLOT_OF_TYPE[plan.feature_types[i]],
            position=positions[i], join=plan.feature_joins[i],
            items=_LIST_ITEMS.get(value_type), encoder=encoder,
            native=_native_encoder(value_type),
        ))
    return tuple(out)


_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
_EMPTY_FIELD = b"\x0a\x00"  # an unset Value in FeatureVector.values (field 1)
_ZERO_TIME_FIELD = b"\x1a\x00"  # a zero Timestamp in FeatureVector.event_timestamps (3)


def wire_field(tag: bytes, inner: bytes) -> bytes:
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


def _list_encoder(member: str, message: Any) -> Callable[[Any], bytes]:
    def encode(items: Any) -> bytes:
        return wire_field(b"\x0a", Value(**{member: message(val=items)}).SerializeToString())

    return encode


def _time_field(ms: int) -> bytes:
    seconds, nanos = divmod(ms, 1000)
    inner = (b"\x08" + varint(seconds) if seconds else b"") + (
        b"\x10" + varint(nanos * 1_000_000) if nanos else b"")
    return wire_field(b"\x1a", inner)


@dataclass(frozen=True, slots=True)
class FeatureColumn:
    """One feature column of an answer: values (None where not PRESENT), Feast statuses,
    event times in ms, one per entity row."""

    column: Column
    values: list[Any]
    statuses: bytes
    times: list[int]


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
        times: dict[int, bytes] = {0: _ZERO_TIME_FIELD}
        for feature in self.features:
            column = feature.column
            encode = column.encoder
            values = [_EMPTY_FIELD if v is None else encode(v) for v in feature.values]
            stamps = []
            for ms in feature.times:
                field = times.get(ms)
                if field is None:
                    field = times[ms] = _time_field(ms)
                stamps.append(field)
            vector = b"".join(values) + wire_field(b"\x12", feature.statuses) + b"".join(stamps)
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
        texts: dict[int, str] = {0: _ZERO_TIME_TEXT}
        for feature in self.features:
            native = feature.column.native
            stamps = []
            for ms in feature.times:
                text = texts.get(ms)
                if text is None:
                    text = texts[ms] = _time_text(ms)
                stamps.append(text)
            results.append({
                "values": [None if v is None else native(v) for v in feature.values],
                "statuses": [_STATUS_NAMES[s] for s in feature.statuses],
                "event_timestamps": stamps,
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


def _native_encoder(value_type: int) -> Callable[[Any], Any]:
    """A served value -> its JSON form in `feast serve`'s answers."""
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
    return lambda v: v


def _native_key(value: Any) -> Any:
    member = value.WhichOneof("val")
    if member is None:
        return None
    got = getattr(value, member)
    return _b64(got) if member == "bytes_val" else got


def fill(columns: Sequence[Column], wires: Sequence[bytes], out: list[FeatureColumn]) -> None:
    """The feature `columns` of one engine read, from its vectors."""
    vectors = [fpb.FeatureVector.FromString(w) for w in wires]
    statuses = [bytes(v.statuses) for v in vectors]
    stamps = [v.event_timestamps_ms for v in vectors]
    slots: dict[int, list[Any]] = {}
    status_of = _STATUS_LIST
    present = int(Status.PRESENT)
    for column in columns:
        array = slots.get(column.slot)
        if array is None:
            array = slots[column.slot] = [getattr(v, _SLOT_FIELDS[column.slot]) for v in vectors]
        f, pos, items = column.feature, column.position, column.items
        own = [s[f] for s in statuses]
        if items is None:
            values = [row[pos] if s == present else None
                      for row, s in zip(array, own, strict=True)]
        else:
            values = [getattr(row[pos], items) if s == present else None
                      for row, s in zip(array, own, strict=True)]
        join = column.join
        out.append(FeatureColumn(
            column, values, bytes([status_of[s] for s in own]), [t[join] for t in stamps]))


__all__ = ["FIELD_STATUS", "Column", "FeastAnswer", "FeatureColumn", "answer_columns", "fill",
           "wire_field"]
