"""The operations whose states hold values: first_k, last_k, top_k, bottom_k, unique_count,
histogram."""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass
from typing import Any

from fetcher.aggregation._encoding import Reader, put_uvarint, put_value, value_bytes
from fetcher.aggregation._operator import Operator

# An entry of a k state: (ts or value, encoded value bytes, value), sorted ascending.
Entry = tuple[Any, bytes, Any]
KState = list[Entry]
_K_TAGS = {"first_k": 10, "last_k": 11, "top_k": 12, "bottom_k": 13}


def _collection_bytes(encoded: int) -> int:
    """The memory estimate of a decoded k, set or counts state of `encoded` bytes: each
    value is a Python object, its value bytes another, in a tuple, set or dict slot;
    measured (sys.getsizeof, deep) at 10-35x the encoded bytes of a few values, ~10-16x
    of tens of them."""
    return 256 + 16 * encoded


@dataclass(frozen=True, slots=True)
class KeepK(Operator[KState]):
    """At most k values: the earliest (first_k), latest (last_k), largest (top_k) or smallest
    (bottom_k). Ties (same time or equal values) go by the encoded value bytes."""

    which: str
    k: int

    def __post_init__(self) -> None:
        if self.which not in _K_TAGS or self.k <= 0:
            raise ValueError(f"{self.which} needs k > 0, got {self.k}")

    @property
    def tag(self) -> int:
        """The operation tag: 10 first_k, 11 last_k, 12 top_k, 13 bottom_k."""
        return _K_TAGS[self.which]

    @property
    def _by_time(self) -> bool:
        return self.which in ("first_k", "last_k")

    @property
    def _keeps_largest(self) -> bool:
        return self.which in ("last_k", "top_k")

    def empty(self) -> KState:
        """No events: no values."""
        return []

    def _trim(self, entries: KState) -> KState:
        return entries[-self.k :] if self._keeps_largest else entries[: self.k]

    def _add(self, state: KState, value: Any, ts: int) -> KState:
        bisect.insort(state, (ts if self._by_time else value, value_bytes(value), value))
        if len(state) > self.k:
            del state[0 if self._keeps_largest else -1]
        return state

    def merge(self, a: KState, b: KState) -> KState:
        """The k kept from the values of both."""
        return self._trim(list(heapq.merge(a, b)))

    def decoded_bytes(self, encoded: int) -> int:
        """See _collection_bytes."""
        return _collection_bytes(encoded)

    def result(self, state: KState) -> list[Any] | None:
        """first_k oldest first, last_k newest first, top_k descending, bottom_k ascending;
        None for an empty window."""
        if not state:
            return None
        values = [e[2] for e in state]
        return values[::-1] if self._keeps_largest else values

    def _put(self, out: bytearray, state: KState) -> None:
        put_uvarint(out, len(state))
        for primary, _, value in state:
            if self._by_time:
                put_uvarint(out, primary)
            put_value(out, value)

    def _read(self, r: Reader) -> KState:
        def entry(r: Reader) -> Entry:
            ts = r.uvarint() if self._by_time else None
            value, encoded = r.value_and_bytes()
            return (value if ts is None else ts, encoded, value)

        state = r.items(entry)
        if len(state) > self.k:
            raise r.fail(f"{len(state)} values for k = {self.k}")
        try:
            ordered = state == sorted(state)
        except TypeError:
            ordered = False
        if not ordered:
            raise r.fail("values not in order")
        return state


# A set or count state past its limit is None: the exact answer is no longer known.
DistinctState = set[bytes] | None
CountsState = dict[bytes, int] | None


def _put_limited(out: bytearray, keys: list[bytes] | None) -> None:
    """A flag (0 exact, 1 past the limit) and, when exact, the count of keys."""
    out.append(0 if keys is not None else 1)
    if keys is not None:
        put_uvarint(out, len(keys))


def _read_flag(r: Reader) -> bool:
    """Whether the state is past its limit."""
    flag = r.byte()
    if flag > 1:
        raise r.fail(f"limit flag {flag}")
    return flag == 1


@dataclass(frozen=True, slots=True)
class UniqueCount(Operator[DistinctState]):
    """The exact number of distinct values, while it is at most `limit`; past it, NULL."""

    limit: int

    @property
    def tag(self) -> int:
        """The operation tag: 14."""
        return 14

    def empty(self) -> DistinctState:
        """No events: no values."""
        return set()

    def _add(self, state: DistinctState, value: Any, ts: int) -> DistinctState:
        if state is not None:
            state.add(value_bytes(value))
            if len(state) > self.limit:
                return None
        return state

    def merge(self, a: DistinctState, b: DistinctState) -> DistinctState:
        """The union, or past the limit."""
        if a is None or b is None:
            return None
        a |= b
        return None if len(a) > self.limit else a

    def detach(self, state: DistinctState) -> DistinctState:
        """A copy of the set: `merge` adds to its first state in place."""
        return None if state is None else set(state)

    def decoded_bytes(self, encoded: int) -> int:
        """See _collection_bytes."""
        return _collection_bytes(encoded)

    def result(self, state: DistinctState) -> int | None:
        """The count (0 for an empty window); None past the limit."""
        return None if state is None else len(state)

    def _put(self, out: bytearray, state: DistinctState) -> None:
        keys = None if state is None else sorted(state)
        _put_limited(out, keys)
        for key in keys or ():
            out += key

    def _read(self, r: Reader) -> DistinctState:
        if _read_flag(r):
            return None
        state = {r.value_and_bytes()[1] for _ in range(r.count())}
        if len(state) > self.limit:
            raise r.fail(f"{len(state)} values past the limit {self.limit}")
        return state


@dataclass(frozen=True, slots=True)
class Histogram(Operator[CountsState]):
    """The count of each distinct value, while there are at most `limit` of them; past it,
    NULL."""

    limit: int

    @property
    def tag(self) -> int:
        """The operation tag: 17."""
        return 17

    def empty(self) -> CountsState:
        """No events: no counts."""
        return {}

    def _add(self, state: CountsState, value: Any, ts: int) -> CountsState:
        if state is not None:
            key = value_bytes(value)
            state[key] = state.get(key, 0) + 1
            if len(state) > self.limit:
                return None
        return state

    def merge(self, a: CountsState, b: CountsState) -> CountsState:
        """The counts added, or past the limit."""
        if a is None or b is None:
            return None
        for key, n in b.items():
            a[key] = a.get(key, 0) + n
        return None if len(a) > self.limit else a

    def detach(self, state: CountsState) -> CountsState:
        """A copy of the counts: `merge` adds to its first state in place."""
        return None if state is None else dict(state)

    def decoded_bytes(self, encoded: int) -> int:
        """See _collection_bytes."""
        return _collection_bytes(encoded)

    def result(self, state: CountsState) -> dict[Any, int] | None:
        """value -> count; None for an empty window or past the limit."""
        if not state:
            return None
        return {Reader(key).value(): n for key, n in sorted(state.items())}

    def _put(self, out: bytearray, state: CountsState) -> None:
        keys = None if state is None else sorted(state)
        _put_limited(out, keys)
        for key in keys or ():
            out += key
            put_uvarint(out, state[key] if state is not None else 0)

    def _read(self, r: Reader) -> CountsState:
        if _read_flag(r):
            return None
        state: dict[bytes, int] = {}
        for _ in range(r.count()):
            key = r.value_and_bytes()[1]
            n = r.uvarint()
            if n == 0 or key in state:
                raise r.fail("a zero or repeated count")
            state[key] = n
        if len(state) > self.limit:
            raise r.fail(f"{len(state)} values past the limit {self.limit}")
        return state
