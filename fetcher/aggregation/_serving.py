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

from fetcher.aggregation._decoded import DecodedStates
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
# Batch parts are written in format 2 (a fixed-width directory read by one struct call);
# format 1 (varint headers between the operations) is still read.
BATCH_VERSION = 2
_BATCH_V1 = 1
_NULL = 0
_DOUBLE_TAG, _STRING_TAG = 2, 3  # value tags (docs/aggregations.md)
_DOUBLE = struct.Struct("<d")
_OFFSET = struct.Struct("<I")
_MISSING: Any = object()  # a state not decoded yet (None is a state: an empty sum)

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
        # The common values read in line (null, a double, a short string); anything else,
        # or anything malformed, is left to the general decoder (which names the fault).
        out: list[Any] = []
        pos, size = 1, len(payload)
        if size and payload[0] == PAYLOAD_VERSION:
            for _ in self.names:
                if pos >= size:
                    break
                tag = payload[pos]
                if tag == _NULL:
                    out.append(None)
                    pos += 1
                elif tag == _DOUBLE_TAG and pos + 9 <= size:
                    out.append(_DOUBLE.unpack_from(payload, pos + 1)[0])
                    pos += 9
                elif tag == _STRING_TAG and pos + 1 < size and payload[pos + 1] < 0x80:
                    stop = pos + 2 + payload[pos + 1]
                    if stop > size:
                        break
                    try:
                        out.append(payload[pos + 2 : stop].decode())
                    except UnicodeDecodeError:
                        break
                    pos = stop
                else:
                    break
            else:
                if pos == size:
                    return tuple(out)
        return self._decode(payload)

    def _decode(self, payload: bytes) -> tuple[Any, ...]:
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

    def batch_index(self, payload: bytes) -> list[tuple[int, int, int, int]]:
        """A batch part's decoded directory: (s0, m, offsets, states) per operation.

        Raises StateDecodeError when the part is not one of this group's (the engine
        caches a part with its index, so a part is checked once).
        """
        return _batch_index(payload, self._hops)

    def compute(
        self,
        batch: tuple[int, bytes] | None,
        events: Sequence[tuple[int, bytes, bytes]],
        at: int,
        index: list[tuple[int, int, int, int]] | None = None,
        cached: DecodedStates | None = None,
    ) -> Computed | None:
        """The features at `at` from a log read; None when the key has nothing (NOT_FOUND).

        `index` is the batch part's batch_index when the caller has it, `cached` the
        part's decoded states kept with it (filled with the states this read decodes;
        never changed otherwise). Raises StateDecodeError when a batch part or an event
        payload does not decode (the whole group is then ERROR for this key).
        """
        if at < 0:
            raise ValueError(f"read at {at}: times are milliseconds since the epoch, >= 0")
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
            arrays = _batch_index(payload, self._hops) if index is None else index
        values: list[Any] = []
        statuses: list[str] = []
        # (operation, first event time) -> (events applied, state of those events): windows
        # of one operation that take the same events fold them once.
        folded: dict[tuple[int, int], tuple[int, Any]] = {}
        inputs: dict[tuple[int, int], list[tuple[Any, int]]] = {}
        unpack = _OFFSET.unpack_from
        for op_index, operator, column, window_ms, hop_ms in self._features:
            if window_ms is None:
                start = 0
            else:
                start = at - window_ms
                if start < 0:
                    start = 0
                start -= start % hop_ms
            base = None
            first = start
            if arrays is not None and start < end:
                # The batch part's suffix state from `start` (docs/storage-layout.md).
                s0, m, offsets, states = arrays[op_index]
                j, rest = divmod(start - s0, hop_ms)
                if rest or not 0 <= j < m:
                    raise StateDecodeError(
                        f"batch part at {end} has no state from {start} (first {s0}, {m} states)"
                    )
                base = _MISSING if cached is None else cached.states.get((op_index, j), _MISSING)
                if base is _MISSING:
                    lo = unpack(payload, offsets + 4 * (j - 1))[0] if j else 0
                    hi = unpack(payload, offsets + 4 * j)[0]
                    if lo > hi:
                        raise StateDecodeError("batch part: state offsets out of order")
                    base = operator.decode(payload[states + lo : states + hi])
                    if cached is not None:
                        cached.add((op_index, j), base, operator.decoded_bytes(hi - lo))
                first = end
            key = (op_index, first)
            found = folded.get(key)
            if found is None:
                # The column's non-null (value, ts) from `first` on, shared by its operations.
                pairs = inputs.get((column, first))
                if pairs is None:
                    pairs = inputs[(column, first)] = [
                        (row[column], ts) for ts, row in decoded
                        if ts >= first and row[column] is not None
                    ]
                applied = len(pairs)
                fold = operator.fold(operator.empty(), pairs)
                folded[key] = (applied, fold)
            else:
                applied, fold = found
            if base is None:
                state = fold
            elif applied:
                # merge may change its first state, never `fold`; a cached one is detached.
                state = operator.merge(base if cached is None else operator.detach(base), fold)
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
        directory: list[int] = []
        body = bytearray()
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
            offset = 0
            for state in encoded:
                offset += len(state)
                body += _OFFSET.pack(offset)
            for state in encoded:
                body += state
            if offset > 0xFFFFFFFF:
                raise ValueError(f"the batch part of operation {operation.column} "
                                 f"{operation.operation} has {offset} bytes of states (> 4 GiB)")
            directory += (hop, s0, count, offset)
        out = bytearray((BATCH_VERSION,))
        put_uvarint(out, len(self.operators))
        out += _directory(len(self.operators)).pack(*directory)
        out += body
        return bytes(out)


_DIRECTORIES: dict[int, struct.Struct] = {}


def _directory(n: int) -> struct.Struct:
    """The directory of a format-2 batch part of `n` operations: (hop, s0, m, size) each."""
    found = _DIRECTORIES.get(n)
    if found is None:
        found = _DIRECTORIES[n] = struct.Struct("<" + "QQII" * n)
    return found


def _batch_index(payload: bytes, hops: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """(s0, m, offsets position, states position) of each operation of a batch part."""
    if not payload or payload[0] != BATCH_VERSION:
        return _batch_index_v1(payload, hops)
    if len(payload) > 1 and payload[1] < 0x80:  # fewer than 128 operations: one byte
        n, pos = payload[1], 2
    else:
        r = Reader(payload)
        r.pos = 1
        n, pos = r.uvarint(), r.pos
    if n != len(hops):
        raise StateDecodeError(f"aggregation state: batch part of {n} operations, the group "
                               f"has {len(hops)}")
    directory = _directory(n)
    start = pos
    pos += directory.size
    if len(payload) < pos:
        raise StateDecodeError(f"aggregation state: batch part truncated in its directory "
                               f"({len(payload)} bytes)")
    fields = directory.unpack_from(payload, start)
    out = []
    for i in range(n):
        hop, s0, m, size = fields[4 * i : 4 * i + 4]
        if hop != hops[i]:
            raise StateDecodeError(
                f"aggregation state: operation {i} of the batch part has hop {hop} ms, the "
                f"group's has {hops[i]} ms (a batch job must rewrite it)")
        states = pos + 4 * m
        if states + size > len(payload) or (
            _OFFSET.unpack_from(payload, states - 4)[0] != size if m else size != 0
        ):
            raise StateDecodeError(
                f"aggregation state: batch part operation {i}: {m} states of {size} bytes do "
                f"not fit its {len(payload)} bytes")
        out.append((s0, m, pos, states))
        pos = states + size
    if pos != len(payload):
        raise StateDecodeError(f"aggregation state: batch part of {len(payload)} bytes, its "
                               f"directory says {pos}")
    return out


def _batch_index_v1(payload: bytes, hops: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """The index of a format-1 batch part (varint headers)."""
    r = Reader(payload)
    version = r.byte()
    if version != _BATCH_V1:
        raise r.fail(f"batch part version {version}, expected {BATCH_VERSION} (or {_BATCH_V1})")
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
