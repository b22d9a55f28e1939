"""Decoded rows, kept as FeatureVector wire bytes: what L1 caches and what merge concatenates.

A `GroupRow` holds one group's features for one entity already serialized as a
FeatureVector message (statuses, one packed array per value type, its event
time). Protobuf appends the repeated fields of concatenated messages in order, so
a vector of several joins is the concatenation of its rows' bytes: merging is one
`bytes.join` and building the response one C-level parse, whatever the number of
features. It is also the smallest form of a row: 20 doubles cost about 300 bytes
in L1, against about 800 as a tuple of Python floats.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from fetcher.codec import DoubleLayout
from fetcher.types import Feature, FeatureType, Status

# Value slots: the order of the typed value arrays in a vector (and of EntityVector.values).
SLOT_DOUBLE = 0
SLOT_INT64 = 1
SLOT_STRING = 2
SLOT_BOOL = 3
SLOT_BYTES = 4
SLOT_LIST = 5
SLOT_COUNT = 6

SLOT_OF_TYPE: dict[FeatureType, int] = {
    FeatureType.DOUBLE: SLOT_DOUBLE,
    FeatureType.INT64: SLOT_INT64,
    FeatureType.STRING: SLOT_STRING,
    FeatureType.BOOL: SLOT_BOOL,
    FeatureType.BYTES: SLOT_BYTES,
    FeatureType.DOUBLE_LIST: SLOT_LIST,
    FeatureType.INT64_LIST: SLOT_LIST,
    FeatureType.STRING_LIST: SLOT_LIST,
    FeatureType.BOOL_LIST: SLOT_LIST,
    FeatureType.BYTES_LIST: SLOT_LIST,
}

#: Serializes a vector's values other than its doubles: {FeatureVector field: values} ->
#: wire bytes, where `list_values` holds (ListValue field, items) pairs. The api layer
#: provides it (fetcher.api.encode_values): the engine writes wire bytes, never protobuf types.
ValuesEncoder = Callable[[dict[str, Any]], bytes]

# The FeatureVector field of each slot but doubles (which are packed by hand, below).
_SLOT_FIELD = {
    SLOT_INT64: "int64_values",
    SLOT_STRING: "string_values",
    SLOT_BOOL: "bool_values",
    SLOT_BYTES: "bytes_values",
    SLOT_LIST: "list_values",
}

# The ListValue field a list feature's items go in.
LIST_FIELD: dict[FeatureType, str] = {
    FeatureType.DOUBLE_LIST: "double_values",
    FeatureType.INT64_LIST: "int64_values",
    FeatureType.STRING_LIST: "string_values",
    FeatureType.BOOL_LIST: "bool_values",
    FeatureType.BYTES_LIST: "bytes_values",
}

# The placeholder a slot holds when the feature is not PRESENT (the proto zero value).
_ZERO: dict[int, Any] = {
    SLOT_DOUBLE: 0.0,
    SLOT_INT64: 0,
    SLOT_STRING: "",
    SLOT_BOOL: False,
    SLOT_BYTES: b"",
    SLOT_LIST: (),
}

PRESENT = int(Status.PRESENT)
NULL_VALUE = int(Status.NULL_VALUE)
OUTSIDE_MAX_AGE = int(Status.OUTSIDE_MAX_AGE)

# Wire tags (field number << 3 | wire type) of FeatureVector's hand-written fields.
_TAG_STATUSES = b"\x0a"  # 1, length-delimited (packed enum)
_TAG_DOUBLES = b"\x12"  # 2, length-delimited (packed double)
_TAG_EVENT_MS = b"\x40"  # 8, varint: one unpacked element, which parsers must accept


def varint(value: int) -> bytes:
    """Protobuf varint of an int64 (negative values as their 64-bit two's complement)."""
    if 1 << 35 <= value < 1 << 42:
        # Every event time from 1971 to 2109 in ms: six bytes without a loop (every row
        # built from the store pays this). Split first: the 28 and 14-bit halves are
        # one-digit ints, on which CPython's operators are much cheaper.
        low = value & 0xFFFFFFF
        high = value >> 28
        return bytes((
            low & 0x7F | 0x80, low >> 7 & 0x7F | 0x80, low >> 14 & 0x7F | 0x80,
            low >> 21 | 0x80, high & 0x7F | 0x80, high >> 7,
        ))  # fmt: skip
    if 0 <= value < 0x4000:
        # Lengths of vectors and fields: one or two bytes.
        return bytes((value,)) if value < 0x80 else bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def event_field(event_ms: int) -> bytes:
    """The event_timestamps_ms element of one row."""
    return _TAG_EVENT_MS + varint(event_ms)


class GroupRow(NamedTuple):
    """One group's row for one entity: `wire` is a serialized FeatureVector of its features.

    `event_ms` is the row's event time (also inside `wire`); 0 for rows that do not exist.
    An immutable pair: a tuple, so that the rows built per store read cost no more
    than one (a frozen dataclass's __init__ took twice as long).
    """

    event_ms: int
    wire: bytes


# GroupRow(event_ms, wire) without the generated __new__'s Python frame: the row path.
_new_row: Callable[[type[GroupRow], tuple[int, bytes]], GroupRow] = tuple.__new__


def _tuple_getter(keys: tuple[Any, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """obj -> (obj[k] for k in keys) as a tuple, whatever the number of keys.

    Used with field names on decoded records and with positions on unpacked tuples.
    """
    if not keys:
        return lambda obj: ()
    if len(keys) == 1:
        (key,) = keys
        return lambda obj: (obj[key],)
    return operator.itemgetter(*keys)


class RowShape:
    """Built once per group: turns a decoded Avro record into a GroupRow."""

    __slots__ = (
        "_doubles",
        "_encode_values",
        "_feature_slots",
        "_fields",
        "_getters",
        "_list_fields",
        "_null_rows",
        "_other_slots",
        "_positions",
        "_present",
        "_status_head",
        "_zero_body",
        "features",
    )

    def __init__(self, features: Sequence[Feature], encode_values: ValuesEncoder) -> None:
        self.features = tuple(features)
        self._encode_values = encode_values
        fields: list[list[str]] = [[] for _ in range(SLOT_COUNT)]
        # (slot, index in slot) -> feature index, to mark the right status on a null.
        positions: list[list[int]] = [[] for _ in range(SLOT_COUNT)]
        for index, feature in enumerate(self.features):
            slot = SLOT_OF_TYPE[feature.type]
            fields[slot].append(feature.name)
            positions[slot].append(index)
        self._fields = tuple(tuple(f) for f in fields)
        self._feature_slots = tuple(SLOT_OF_TYPE[f.type] for f in self.features)
        # One getter per slot, record -> tuple of the slot's values: a C-level itemgetter
        # instead of a list comprehension per slot (3x faster on a 22-feature row).
        self._getters = tuple(_tuple_getter(names) for names in self._fields)
        self._positions = tuple(tuple(p) for p in positions)
        self._list_fields = tuple(LIST_FIELD[f.type] for f in self.features if f.type in LIST_FIELD)
        count = len(self.features)
        self._status_head = _TAG_STATUSES + varint(count) if count else b""
        self._present = bytes([PRESENT] * count)
        doubles = len(self._fields[SLOT_DOUBLE])
        # Packed doubles are the little-endian IEEE bytes: struct writes them in one call.
        pack = struct.Struct(f"<{doubles}d").pack
        head = _TAG_DOUBLES + varint(8 * doubles)
        self._doubles: Callable[[tuple[Any, ...]], bytes] | None = (
            (lambda values: head + pack(*values)) if doubles else None
        )
        # Slots other than doubles that this group has: serialized by protobuf itself.
        self._other_slots = tuple(
            (slot, _SLOT_FIELD[slot])
            for slot in range(SLOT_INT64, SLOT_COUNT)
            if self._fields[slot]
        )
        self._zero_body = self._body(
            tuple(tuple(_ZERO[slot] for _ in names) for slot, names in enumerate(self._fields))
        )
        self._null_rows: dict[int, GroupRow] = {}

    def _body(self, values: tuple[tuple[Any, ...], ...]) -> bytes:
        """Wire bytes of the values of every slot (no statuses, no event time)."""
        body = self._doubles(values[SLOT_DOUBLE]) if self._doubles is not None else b""
        if not self._other_slots:
            return body
        fields: dict[str, Any] = {}
        for slot, name in self._other_slots:
            if slot == SLOT_LIST:
                fields[name] = list(zip(self._list_fields, values[SLOT_LIST], strict=True))
            else:
                fields[name] = values[slot]
        return body + self._encode_values(fields)

    def to_row(self, record: Mapping[str, Any], event_ms: int) -> GroupRow:
        """Encode a decoded record; a null feature gets NULL_VALUE and a zero value.

        Raises (struct.error, TypeError, ValueError) when a value does not fit its
        feature's type: the caller treats that like a row that does not decode.
        """
        values = tuple([get(record) for get in self._getters])
        statuses = self._present
        for slot, slot_values in enumerate(values):
            if None in slot_values:
                values, statuses = self._fix_nulls(values, statuses, slot)
        wire = b"".join(
            (self._status_head, statuses, self._body(values), _TAG_EVENT_MS, varint(event_ms))
        )
        return _new_row(GroupRow, (event_ms, wire))

    def computed_row(
        self, values: Sequence[Any], statuses: Sequence[int], event_ms: int
    ) -> GroupRow:
        """A row of values in feature order with a status each (not PRESENT: a zero value).

        Raises (struct.error, TypeError, ValueError) when a value does not fit its type.
        """
        slots: list[list[Any]] = [[] for _ in range(SLOT_COUNT)]
        for feature_slot, value, status in zip(self._feature_slots, values, statuses, strict=True):
            slots[feature_slot].append(value if status == PRESENT else _ZERO[feature_slot])
        wire = b"".join((
            self._status_head, bytes(statuses), self._body(tuple(tuple(v) for v in slots)),
            _TAG_EVENT_MS, varint(event_ms),
        ))  # fmt: skip
        return _new_row(GroupRow, (event_ms, wire))

    def _fix_nulls(
        self, values: tuple[tuple[Any, ...], ...], statuses: bytes, slot: int
    ) -> tuple[tuple[tuple[Any, ...], ...], bytes]:
        zero = _ZERO[slot]
        new_statuses = bytearray(statuses)
        fixed = list(values[slot])
        for i, value in enumerate(fixed):
            if value is None:
                fixed[i] = zero
                new_statuses[self._positions[slot][i]] = NULL_VALUE
        new_values = list(values)
        new_values[slot] = tuple(fixed)
        return tuple(new_values), bytes(new_statuses)

    def present_head(self) -> bytes:
        """The start of a row whose features are all PRESENT: its statuses field."""
        return self._status_head + self._present

    def _status_bytes(self, status: int) -> bytes:
        return self._status_head + bytes([status] * len(self.features))

    def empty_row(self, status: int) -> GroupRow:
        """The row for an entity without a usable row: every feature `status`, zero values.

        Built once per status (a Status or its int) and shared: rows are immutable.
        """
        row = self._null_rows.get(status)
        if row is None:
            wire = self._status_bytes(int(status)) + self._zero_body + event_field(0)
            row = self._null_rows[int(status)] = GroupRow(0, wire)
        return row

    def stale_row(self, row: GroupRow) -> GroupRow:
        """`row` past the group's max age: OUTSIDE_MAX_AGE, zero values, event time kept."""
        empty = self.empty_row(OUTSIDE_MAX_AGE).wire
        # The empty row ends with event time 0 (2 bytes): swap in the row's own.
        return GroupRow(row.event_ms, empty[:-2] + event_field(row.event_ms))


#: Decodes one stored value (its bytes, its event time) into the group's row.
RowReader = Callable[[bytes, int], GroupRow]


def row_reader(
    shape: RowShape,
    decode: Callable[[bytes], Mapping[str, Any]],
    layout: DoubleLayout | None,
) -> RowReader:
    """value, event_ms -> GroupRow: `shape.to_row(decode(value), event_ms)`, made faster
    for groups of doubles.

    With a DoubleLayout (every field double or float, nullable or not) whose fields are
    the shape's features in order, a row written with the current schema and no null
    field skips the Avro decoder: plain doubles are copied into the row as they are
    (Avro and protobuf both write a double as its 8 little-endian bytes), other layouts
    are read with one struct call. Anything else (a null, an older writer schema, bytes
    of the wrong size or a bad union branch) takes the general path, which also raises
    the errors: the result is the same either way, only faster.
    """

    def general(value: bytes, event_ms: int) -> GroupRow:
        return shape.to_row(decode(value), event_ms)

    if (
        layout is None
        or layout.names != tuple(f.name for f in shape.features)
        or any(f.type is not FeatureType.DOUBLE for f in shape.features)
    ):
        return general
    count = len(layout.names)
    head = shape.present_head() + _TAG_DOUBLES + varint(8 * count)
    header = layout.header
    size = layout.size
    offset = layout.offset
    # Closure locals: read per row without global lookups.
    new_row, row_type, join = _new_row, GroupRow, b"".join
    # The last event time's field, (event_ms, bytes), swapped whole (so safe to share
    # between threads): rows of one group written by one batch job often share their
    # event time, and its varint costs more than the rest of the row.
    last_event: list[tuple[int, bytes]] = [(0, event_field(0))]
    if layout.raw:

        def plain_doubles(value: bytes, event_ms: int) -> GroupRow:
            if len(value) == size and value.startswith(header):
                seen_ms, field = last_event[0]
                if seen_ms != event_ms:
                    field = event_field(event_ms)
                    last_event[0] = (event_ms, field)
                return new_row(row_type, (event_ms, join((head, value[offset:], field))))
            return general(value, event_ms)

        return plain_doubles
    unpack = layout.body.unpack_from
    pick_values = _tuple_getter(layout.value_positions)
    pack = struct.Struct(f"<{count}d").pack
    pick_branches = _tuple_getter(layout.branch_positions)
    branches = layout.branches

    def fixed_doubles(value: bytes, event_ms: int) -> GroupRow:
        if len(value) == size and value.startswith(header):
            values = unpack(value, offset)
            if pick_branches(values) == branches:
                seen_ms, field = last_event[0]
                if seen_ms != event_ms:
                    field = event_field(event_ms)
                    last_event[0] = (event_ms, field)
                wire = join((head, pack(*pick_values(values)), field))
                return new_row(row_type, (event_ms, wire))
        return general(value, event_ms)

    return fixed_doubles
