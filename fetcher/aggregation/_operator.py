"""The shape every operation shares: empty, update, merge, result, encode, decode."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from fetcher.aggregation._encoding import FORMAT_VERSION, Reader, header, is_null, open_state

S = TypeVar("S")


class Operator(ABC, Generic[S]):
    """One operation's state algebra. `update` and `merge` may reuse their first argument:
    pass a state once and keep what they return (sketch states change in place)."""

    __slots__ = ()

    @property
    @abstractmethod
    def tag(self) -> int:
        """The operation's tag byte in its encoded states (docs/aggregations.md)."""

    @property
    def format_version(self) -> int:
        """The version byte of this operation's states (docs/aggregations.md)."""
        return FORMAT_VERSION

    @abstractmethod
    def empty(self) -> S:
        """The state of a window with no events."""

    def update(self, state: S, value: Any, ts: int) -> S:
        """The state with one more event; null values (None, NaN) are skipped."""
        if ts < 0:
            raise ValueError(f"event time {ts}: times are milliseconds since the epoch, >= 0")
        if is_null(value):
            return state
        return self._add(state, value, ts)

    def add(self, state: S, value: Any, ts: int) -> S:
        """update() without its checks: `value` is not null and `ts` is a valid time."""
        return self._add(state, value, ts)

    def fold(self, state: S, pairs: Sequence[tuple[Any, int]]) -> S:
        """add() of every (value, ts), oldest first: non-null values, valid times."""
        add = self._add
        for value, ts in pairs:
            state = add(state, value, ts)
        return state

    @abstractmethod
    def _add(self, state: S, value: Any, ts: int) -> S:
        """The state with one more non-null event."""

    @abstractmethod
    def merge(self, a: S, b: S) -> S:
        """The state of the events of both `a` and `b` (associative; order-free)."""

    def detach(self, state: S) -> S:
        """A state equal to `state` that `merge` may change without changing `state`.

        `state` itself for the operations whose states never change (numbers, tuples) or
        whose `merge` builds a new state; a copy for those that merge in place.
        """
        return state

    def decoded_bytes(self, encoded: int) -> int:
        """An estimate of the memory a decoded state of `encoded` bytes holds.

        The scalar states (a number, moments, a first/last pick) are 28-160 bytes of
        Python objects (sys.getsizeof, deep): 160 plus 2 per encoded byte covers them.
        """
        return 160 + 2 * encoded

    @abstractmethod
    def result(self, state: S) -> Any:
        """The feature value of a state; None means NULL_VALUE."""

    def encode(self, state: S) -> bytes:
        """The state as bytes: version, operation tag, payload (deterministic)."""
        out = header(self.tag, self.format_version)
        self._put(out, state)
        return bytes(out)

    def decode(self, data: bytes) -> S:
        """The state of `encode`'s bytes; StateDecodeError if they are not one."""
        r = open_state(data, self.tag, self.format_version)
        state = self._read(r)
        r.end()
        return state

    @abstractmethod
    def _put(self, out: bytearray, state: S) -> None:
        """Append the payload of `state`."""

    @abstractmethod
    def _read(self, r: Reader) -> S:
        """Read a payload written by `_put`."""
