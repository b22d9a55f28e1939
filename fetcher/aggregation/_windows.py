"""Window arithmetic: hops (tile sizes), tile starts and the tiles a read at T covers.

Times are milliseconds since the Unix epoch and never negative. A read at time T of a
window of length W with hop H covers the events with `tile_start(T - W, H) <= ts < T`
(an unbounded window: `0 <= ts < T`).
"""

from __future__ import annotations

from dataclasses import dataclass

_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS


def default_hop_ms(window_ms: int | None) -> int:
    """Chronon's hop for a window: 5 min below 12 h, 1 h below 12 d, else (and unbounded) 1 day."""
    if window_ms is not None and window_ms < 12 * _HOUR_MS:
        return 5 * _MINUTE_MS
    if window_ms is not None and window_ms < 12 * _DAY_MS:
        return _HOUR_MS
    return _DAY_MS


def _check_time(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} is {value}: times are milliseconds since the epoch, >= 0")


def _check_hop(hop_ms: int) -> None:
    if hop_ms <= 0:
        raise ValueError(f"hop is {hop_ms} ms: a hop is a positive number of milliseconds")


def tile_start(ts: int, hop_ms: int) -> int:
    """The start of the tile of `hop_ms` holding an event at `ts` (tiles are [start, start+hop))."""
    _check_time("ts", ts)
    _check_hop(hop_ms)
    return ts - ts % hop_ms


def window_start(at: int, window_ms: int | None, hop_ms: int) -> int:
    """The first time a read at `at` covers: `tile_start(at - window, hop)`, at least 0."""
    _check_time("at", at)
    _check_hop(hop_ms)
    if window_ms is None:
        return 0
    if window_ms <= 0:
        raise ValueError(f"window is {window_ms} ms: a window is positive (or None: unbounded)")
    return tile_start(max(at - window_ms, 0), hop_ms)


def read_tiles(at: int, window_ms: int | None, hop_ms: int) -> range:
    """The starts of the tiles a read at `at` needs, oldest first (the last one may be partial).

    A tile starting at `at` or later holds only events at `at` or later, which the read
    excludes, so it is never listed.
    """
    return range(window_start(at, window_ms, hop_ms), at, hop_ms)


@dataclass(frozen=True, slots=True)
class Window:
    """A window: its length in ms (None: unbounded) and its hop (tile size) in ms."""

    length_ms: int | None
    hop_ms: int

    @classmethod
    def of(cls, length_ms: int | None, hop_ms: int | None = None) -> Window:
        """A window of `length_ms` with `hop_ms`, or the default hop for that length."""
        hop = default_hop_ms(length_ms) if hop_ms is None else hop_ms
        _check_hop(hop)
        if length_ms is not None and length_ms <= 0:
            raise ValueError(f"window is {length_ms} ms: a window is positive (or None)")
        return cls(length_ms, hop)

    def start(self, at: int) -> int:
        """The first time a read at `at` covers."""
        return window_start(at, self.length_ms, self.hop_ms)

    def covers(self, ts: int, at: int) -> bool:
        """Whether a read at `at` includes an event at `ts`."""
        _check_time("ts", ts)
        return self.start(at) <= ts < at

    def tiles(self, at: int) -> range:
        """The starts of the tiles a read at `at` needs, oldest first."""
        return read_tiles(at, self.length_ms, self.hop_ms)
