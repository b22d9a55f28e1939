"""An aggregation group's features from its log: event payloads, batch parts, the fetch.

A key's log (docs/storage-layout.md "the log") holds events after the key's batch end
and batch parts: the suffix states of every operation up to the batch end. A fetch at `T`
takes the newest batch part at or before `T`, one suffix state per window, and applies
the events after the batch end that fall in each window. Pure: no store, no protobuf.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fetcher.aggregation._encoding import (
    Reader,
    StateDecodeError,
    put_uvarint,
    put_value,
)
from fetcher.aggregation._operations import AggregateOverflowError
from fetcher.aggregation._operator import Operator
from fetcher.aggregation._windows import tile_start
from fetcher.types import AggregationSpec

PAYLOAD_VERSION = 1
BATCH_VERSION = 1
_NULL = 0
_OFFSET = struct.Struct("<I")

# Python types an event value of each scalar column type may arrive as.
_INTEGER_TYPES = ("int64", "int32")
_FLOAT_TYPES = ("double", "float")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class EventValueError(ValueError):
    """An event value that does not fit its column; `field` names the column."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_scalar(name: str, column_type: str, value: Any) -> Any:
    if column_type in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventValueError(name, f"{type(value).__name__} is not an integer")
        low, high = _INT32 if column_type == "int32" else _INT64
        if not low <= value <= high:
            raise EventValueError(name, f"{value} does not fit {column_type}")
        return value
    if column_type in _FLOAT_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EventValueError(name, f"{type(value).__name__} is not a number")
        return float(value)
    if column_type == "string":
        if not isinstance(value, str):
            raise EventValueError(name, f"{type(value).__name__} is not a string")
        return value
    if column_type == "bool":
        if not isinstance(value, bool):
            raise EventValueError(name, f"{type(value).__name__} is not a bool")
        return value
    if column_type == "bytes":
        if not isinstance(value, bytes | bytearray):
            raise EventValueError(name, f"{type(value).__name__} is not bytes")
        return bytes(value)
    raise EventValueError(name, f"column type {column_type!r} is not supported")


def check_value(name: str, column_type: str, value: Any) -> Any:
    """`value` as the column's events hold it (float for double columns); None stays None.

    Raises EventValueError naming the column when the value does not fit.
    """
    if value is None:
        return None
    if column_type.startswith("list<") and column_type.endswith(">"):
        item_type = column_type[5:-1]
        if not isinstance(value, list | tuple):
            raise EventValueError(name, f"{type(value).__name__} is not a list")
        items = []
        for i, item in enumerate(value):
            if item is None:
                raise EventValueError(f"{name}[{i}]", "a list item may not be null")
            items.append(_check_scalar(f"{name}[{i}]", item_type, item))
        return items
    return _check_scalar(name, column_type, value)


class EventCodec:
    """Event payloads of one group: `01`, then per input column a tagged value or `00`."""

    __slots__ = ("names", "types")

    def __init__(self, spec: AggregationSpec) -> None:
        self.names = tuple(c.name for c in spec.columns)
        self.types = tuple(c.type for c in spec.columns)

    def values(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The checked input values of one event (a missing column is null)."""
        unknown = [k for k in record if k not in self.names]
        if unknown:
            raise EventValueError(
                f"{unknown[0]!r:.60}", f"not an input column (columns: {', '.join(self.names)})"
            )
        return tuple(
            check_value(n, t, record.get(n)) for n, t in zip(self.names, self.types, strict=True)
        )

    def encode(self, values: Sequence[Any]) -> bytes:
        """The payload of checked values (from `values`)."""
        out = bytearray((PAYLOAD_VERSION,))
        for value in values:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                out.append(_NULL)
            else:
                put_value(out, value)
        return bytes(out)

    def decode(self, payload: bytes) -> tuple[Any, ...]:
        """The values of a payload; StateDecodeError when it is not one of this group's."""
        r = Reader(payload)
        version = r.byte()
        if version != PAYLOAD_VERSION:
            raise r.fail(f"event payload version {version}, expected {PAYLOAD_VERSION}")
        out: list[Any] = []
        data = r.data
        for _ in self.names:
            if r.pos < len(data) and data[r.pos] == _NULL:
                r.pos += 1
                out.append(None)
            else:
                out.append(r.value())
        r.end()
        return tuple(out)


class Computed:
    """One key's features at one read: values and statuses in feature order."""

    __slots__ = ("event_ms", "statuses", "values")

    def __init__(self, values: list[Any], statuses: list[str], event_ms: int) -> None:
        self.values = values
        # "present", "null" or "error" per feature (the engine maps them to its statuses).
        self.statuses = statuses
        self.event_ms = event_ms


class GroupAggregator:
    """Built once per aggregation group: its operators, payload codec and windows."""

    __slots__ = ("_features", "_hops", "codec", "operators", "spec")

    def __init__(self, spec: AggregationSpec, operators: Sequence[Operator[Any]]) -> None:
        if len(operators) != len(spec.operations):
            raise ValueError("one operator per operation")
        self.spec = spec
        self.operators = tuple(operators)
        self.codec = EventCodec(spec)
        self._hops = tuple(op.hop_ms for op in spec.operations)
        column_index = {c.name: i for i, c in enumerate(spec.columns)}
        # Per feature: (operation index, operator, column index, window ms, hop ms).
        self._features = tuple(
            (
                f.operation,
                self.operators[f.operation],
                column_index[spec.operations[f.operation].column],
                f.window_ms,
                spec.operations[f.operation].hop_ms,
            )
            for f in spec.features
        )

    # -- reads ---------------------------------------------------------------------------

    def scan_start(self, at: int) -> int:
        """The earliest event time a read at `at` may need (0 with an unbounded window)."""
        lo = at
        for _, _, _, window_ms, hop_ms in self._features:
            if window_ms is None:
                return 0
            lo = min(lo, tile_start(max(at - window_ms, 0), hop_ms))
        return lo

    def compute(
        self,
        batch: tuple[int, bytes] | None,
        events: Sequence[tuple[int, bytes, bytes]],
        at: int,
    ) -> Computed | None:
        """The features at `at` from a log read; None when the key has nothing (NOT_FOUND).

        Raises StateDecodeError when a batch part or an event payload does not decode
        (the whole group is then ERROR for this key).
        """
        decode = self.codec.decode
        # Oldest first, so that order-dependent states see events in time order.
        decoded = [(ts, decode(payload)) for ts, _, payload in reversed(events) if ts < at]
        if batch is None and not decoded:
            return None
        end = -1
        arrays: list[tuple[int, int, int, int]] | None = None
        payload = b""
        if batch is not None:
            end, payload = batch
            if end > at:
                raise StateDecodeError(f"batch part at {end} is newer than the read at {at}")
            arrays = _batch_index(payload, self._hops)
        values: list[Any] = []
        statuses: list[str] = []
        # (operation, first event time) -> (events applied, state of those events): windows
        # of one operation that take the same events fold them once.
        folded: dict[tuple[int, int], tuple[int, Any]] = {}
        inputs: dict[tuple[int, int], list[tuple[Any, int]]] = {}
        for op_index, operator, column, window_ms, hop_ms in self._features:
            start = 0 if window_ms is None else tile_start(max(at - window_ms, 0), hop_ms)
            base = None
            first = start
            if arrays is not None and start < end:
                base = _suffix_state(operator, payload, arrays[op_index], start, hop_ms, end)
                first = end
            applied, fold = folded.get((op_index, first), (-1, None))
            if applied < 0:
                # The column's non-null (value, ts) from `first` on, shared by its operations.
                pairs = inputs.get((column, first))
                if pairs is None:
                    pairs = inputs[(column, first)] = [
                        (row[column], ts) for ts, row in decoded
                        if ts >= first and row[column] is not None
                    ]
                applied = len(pairs)
                fold = operator.fold(operator.empty(), pairs)
                folded[(op_index, first)] = (applied, fold)
            if base is None:
                state = fold
            elif applied:
                state = operator.merge(base, fold)  # merge may change `base`, never `fold`
            else:
                state = base
            try:
                value = operator.result(state)
            except AggregateOverflowError:
                values.append(None)
                statuses.append("error")
                continue
            values.append(value)
            statuses.append("null" if value is None else "present")
        newest = decoded[-1][0] if decoded else -1
        return Computed(values, statuses, max(newest, end, 0))

    # -- writes --------------------------------------------------------------------------

    def batch_part(self, events: Iterable[tuple[int, Sequence[Any]]], end: int) -> bytes:
        """The batch part at `end` of one key's events (ts, checked values); later ones ignored."""
        if end < 0:
            raise ValueError(f"batch end {end}: times are milliseconds since the epoch, >= 0")
        rows = sorted(((ts, row) for ts, row in events if ts < end), key=lambda e: e[0])
        out = bytearray((BATCH_VERSION,))
        put_uvarint(out, len(self.operators))
        column_index = {c.name: i for i, c in enumerate(self.spec.columns)}
        for operation, operator in zip(self.spec.operations, self.operators, strict=True):
            column = column_index[operation.column]
            hop = operation.hop_ms
            if operation.span_ms is None:
                s0, count = 0, 1
            else:
                s0 = tile_start(max(end - operation.span_ms, 0), hop)
                count = -(-(end - s0) // hop)
            tiles = [operator.empty() for _ in range(count)]
            for ts, row in rows:
                if ts >= s0:
                    j = 0 if operation.span_ms is None else (ts - s0) // hop
                    tiles[j] = operator.update(tiles[j], row[column], ts)
            encoded: list[bytes] = [b""] * count
            acc = operator.empty()
            for j in range(count - 1, -1, -1):
                acc = operator.merge(tiles[j], acc)
                encoded[j] = operator.encode(acc)
            put_uvarint(out, hop)
            put_uvarint(out, s0)
            put_uvarint(out, count)
            offset = 0
            for state in encoded:
                offset += len(state)
                out += _OFFSET.pack(offset)
            for state in encoded:
                out += state
        return bytes(out)


def _batch_index(payload: bytes, hops: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """(s0, m, offsets position, states position) of each operation of a batch part."""
    r = Reader(payload)
    version = r.byte()
    if version != BATCH_VERSION:
        raise r.fail(f"batch part version {version}, expected {BATCH_VERSION}")
    n = r.uvarint()
    if n != len(hops):
        raise r.fail(f"batch part of {n} operations, the group has {len(hops)}")
    out = []
    for i in range(n):
        hop = r.uvarint()
        if hop != hops[i]:
            raise r.fail(f"operation {i} of the batch part has hop {hop} ms, the group's "
                         f"has {hops[i]} ms (a batch job must rewrite it)")
        s0 = r.uvarint()
        m = r.uvarint()
        offsets = r.pos
        r.take(4 * m)
        size = _OFFSET.unpack_from(payload, offsets + 4 * (m - 1))[0] if m else 0
        states = r.pos
        r.take(size)
        out.append((s0, m, offsets, states))
    r.end()
    return out


def _suffix_state(
    operator: Operator[Any],
    payload: bytes,
    array: tuple[int, int, int, int],
    start: int,
    hop_ms: int,
    end: int,
) -> Any:
    """The batch part's state of the events from `start` (a window start before `end`)."""
    s0, m, offsets, states = array
    j, rest = divmod(start - s0, hop_ms)
    if rest or not 0 <= j < m:
        raise StateDecodeError(
            f"batch part at {end} has no state from {start} (first {s0}, {m} states)"
        )
    first = _OFFSET.unpack_from(payload, offsets + 4 * (j - 1))[0] if j else 0
    last = _OFFSET.unpack_from(payload, offsets + 4 * j)[0]
    if first > last:
        raise StateDecodeError("batch part: state offsets out of order")
    return operator.decode(payload[states + first : states + last])
