"""The scalar operations: count, sum, average/variance/stddev, min/max, first/last."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fetcher.aggregation._encoding import Reader, put_double, put_uvarint, put_value, value_bytes
from fetcher.aggregation._operator import Operator

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The fast paths of decode(): the exact bytes of the common states (format 1, a one-byte
# count, a tagged double), read at once; any other bytes take the general decoder.
_DOUBLE_AT_3 = struct.Struct("<3xd")
_MOMENTS_AT_3 = struct.Struct("<3xdd")
_DOUBLE_TAG = 2


class AggregateOverflowError(ArithmeticError):
    """An int64 result (a sum) outside the int64 range: the feature is an error, not a value."""


@dataclass(frozen=True, slots=True)
class Count(Operator[int]):
    """The number of non-null values; 0 for an empty window."""

    @property
    def tag(self) -> int:
        """The operation tag: 1."""
        return 1

    def empty(self) -> int:
        """No events: 0."""
        return 0

    def _add(self, state: int, value: Any, ts: int) -> int:
        return state + 1

    def fold(self, state: int, pairs: Sequence[tuple[Any, int]]) -> int:
        """The count plus the number of pairs."""
        return state + len(pairs)

    def merge(self, a: int, b: int) -> int:
        """The sum of the counts."""
        return a + b

    def result(self, state: int) -> int:
        """The count."""
        return state

    def _put(self, out: bytearray, state: int) -> None:
        put_uvarint(out, state)

    def decode(self, data: bytes) -> int:
        """The count of `encode`'s bytes; StateDecodeError if they are not one."""
        if len(data) == 3 and data[0] == 1 and data[1] == 1 and data[2] < 0x80:
            return data[2]
        return Operator.decode(self, data)

    def _read(self, r: Reader) -> int:
        return r.uvarint()


@dataclass(frozen=True, slots=True)
class Sum(Operator["int | float | None"]):
    """The sum; exact (unbounded) ints for integer columns, doubles otherwise."""

    integral: bool
    @property
    def tag(self) -> int:
        """The operation tag: 2."""
        return 2

    def empty(self) -> int | float | None:
        """No events: None (NULL)."""
        return None

    def _add(self, state: int | float | None, value: Any, ts: int) -> int | float | None:
        v = int(value) if self.integral else float(value)
        return v if state is None else state + v

    def fold(
        self, state: int | float | None, pairs: Sequence[tuple[Any, int]]
    ) -> int | float | None:
        """The sum with every value added in order (left to right, as add() would)."""
        if not pairs:
            return state
        convert = int if self.integral else float
        total: Any = convert(pairs[0][0]) if state is None else state + convert(pairs[0][0])
        for value, _ in pairs[1:]:
            total += convert(value)
        return total  # type: ignore[no-any-return]

    def merge(self, a: int | float | None, b: int | float | None) -> int | float | None:
        """The sum of the sums."""
        return b if a is None else a if b is None else a + b

    def result(self, state: int | float | None) -> int | float | None:
        """The sum; AggregateOverflowError if an integer sum leaves int64."""
        if isinstance(state, int) and not INT64_MIN <= state <= INT64_MAX:
            raise AggregateOverflowError(f"sum {state} does not fit in int64")
        return state

    def _put(self, out: bytearray, state: int | float | None) -> None:
        if state is not None:
            put_value(out, state)

    def decode(self, data: bytes) -> int | float | None:
        """The sum of `encode`'s bytes; StateDecodeError if they are not one."""
        if (not self.integral and len(data) == 11 and data[0] == 1 and data[1] == 2
                and data[2] == _DOUBLE_TAG):
            total: float = _DOUBLE_AT_3.unpack(data)[0]
            return total
        return Operator.decode(self, data)

    def _read(self, r: Reader) -> int | float | None:
        if r.at_end():
            return None
        v = r.value()
        if self.integral and isinstance(v, int) and not isinstance(v, bool):
            return v
        if not self.integral and isinstance(v, float):
            return v
        raise r.fail("a sum of the wrong type")


Moments = tuple[int, float, float]  # (n, mean, M2: the sum of squared deviations)


@dataclass(frozen=True, slots=True)
class MomentsOperator(Operator[Moments]):
    """Average, population variance or standard deviation, from (n, mean, M2) (Chan et al.)."""

    which: str  # "average", "variance" or "stddev"

    @property
    def tag(self) -> int:
        """The operation tag: 3 average, 6 variance, 7 stddev."""
        return {"average": 3, "variance": 6, "stddev": 7}[self.which]

    def empty(self) -> Moments:
        """No events: n = 0."""
        return (0, 0.0, 0.0)

    def _add(self, state: Moments, value: Any, ts: int) -> Moments:
        n, mean, m2 = state
        x = float(value)
        n += 1
        delta = x - mean
        mean += delta / n
        return (n, mean, m2 + delta * (x - mean))

    def merge(self, a: Moments, b: Moments) -> Moments:
        """Chan et al.'s parallel combination."""
        if b[0] == 0:
            return a
        if a[0] == 0:
            return b
        n = a[0] + b[0]
        delta = b[1] - a[1]
        mean = a[1] + delta * (b[0] / n)
        return (n, mean, a[2] + b[2] + delta * delta * (a[0] * (b[0] / n)))

    def result(self, state: Moments) -> float | None:
        """The average, variance (M2 / n) or stddev; None for an empty window."""
        n, mean, m2 = state
        if n == 0:
            return None
        if self.which == "average":
            return mean
        variance = max(m2, 0.0) / n
        return variance if self.which == "variance" else math.sqrt(variance)

    def _put(self, out: bytearray, state: Moments) -> None:
        put_uvarint(out, state[0])
        if state[0]:
            put_double(out, state[1])
            put_double(out, state[2])

    def decode(self, data: bytes) -> Moments:
        """The moments of `encode`'s bytes; StateDecodeError if they are not one."""
        if len(data) == 19 and data[0] == 1 and 0 < data[2] < 0x80 and data[1] == self.tag:
            mean, m2 = _MOMENTS_AT_3.unpack(data)
            return (data[2], mean, m2)
        return Operator.decode(self, data)

    def _read(self, r: Reader) -> Moments:
        n = r.uvarint()
        return (n, r.double(), r.double()) if n else (0, 0.0, 0.0)


Pick = tuple[int, bytes, Any] | None  # (ts, tie-break key, value)


@dataclass(frozen=True, slots=True)
class Extreme(Operator[Any]):
    """Min or max of an ordered column; equal values tie-break on their encoded bytes."""

    largest: bool

    @property
    def tag(self) -> int:
        """The operation tag: 4 min, 5 max."""
        return 5 if self.largest else 4

    def empty(self) -> Any:
        """No events: None."""
        return None

    def _add(self, state: Any, value: Any, ts: int) -> Any:
        return self.merge(state, value)

    def fold(self, state: Any, pairs: Sequence[tuple[Any, int]]) -> Any:
        """The extreme of the state and the values (equal values: merged for their bytes)."""
        if not pairs:
            return state
        values = [v for v, _ in pairs]
        best = max(values) if self.largest else min(values)
        for value in values:
            if value == best:
                state = self.merge(state, value)
        return state

    def merge(self, a: Any, b: Any) -> Any:
        """The smaller (min) or larger (max) of the two."""
        if a is None or b is None:
            return b if a is None else a
        if a != b:  # one column, one type: the values decide (bytes only break ties)
            return (b if b > a else a) if self.largest else (b if b < a else a)
        ka, kb = (a, value_bytes(a)), (b, value_bytes(b))
        return (b if kb > ka else a) if self.largest else (b if kb < ka else a)

    def result(self, state: Any) -> Any:
        """The value, or None for an empty window."""
        return state

    def _put(self, out: bytearray, state: Any) -> None:
        if state is not None:
            put_value(out, state)

    def decode(self, data: bytes) -> Any:
        """The value of `encode`'s bytes; StateDecodeError if they are not one."""
        if len(data) == 11 and data[0] == 1 and data[2] == _DOUBLE_TAG and data[1] == self.tag:
            return _DOUBLE_AT_3.unpack(data)[0]
        return Operator.decode(self, data)

    def _read(self, r: Reader) -> Any:
        return None if r.at_end() else r.value()


@dataclass(frozen=True, slots=True)
class FirstLast(Operator[Pick]):
    """The value of the earliest (first) or latest (last) event; ties on the time go to the
    smallest (first) or largest (last) encoded value bytes, whatever the arrival order."""

    latest: bool

    @property
    def tag(self) -> int:
        """The operation tag: 8 first, 9 last."""
        return 9 if self.latest else 8

    def empty(self) -> Pick:
        """No events: None."""
        return None

    def _add(self, state: Pick, value: Any, ts: int) -> Pick:
        return self.merge(state, (ts, value_bytes(value), value))

    def merge(self, a: Pick, b: Pick) -> Pick:
        """The earlier (first) or later (last) pick."""
        if a is None or b is None:
            return b if a is None else a
        if self.latest:
            return b if b[:2] > a[:2] else a
        return b if b[:2] < a[:2] else a

    def result(self, state: Pick) -> Any:
        """The value, or None for an empty window."""
        return None if state is None else state[2]

    def _put(self, out: bytearray, state: Pick) -> None:
        if state is not None:
            put_uvarint(out, state[0])
            put_value(out, state[2])

    def _read(self, r: Reader) -> Pick:
        if r.at_end():
            return None
        ts = r.uvarint()
        value, encoded = r.value_and_bytes()
        return (ts, encoded, value)

