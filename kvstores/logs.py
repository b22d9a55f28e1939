"""The aggregation log's rules every backend shares (docs/storage-layout.md, "the log").

The checks of an entry, the clamping of a lookup's bounds, the grouping of one call's
entries by key (the last entry of one identity wins) and the newest-first scan that
turns the entries a backend reads into a LogRead. The byte layouts stay in the backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kvstores.base import MAX_LOG_ID, KnownPart, LogEntry, LogRead

__all__ = ["MAX_LOG_TS", "LogScan", "by_key", "check_entry", "known_in", "log_bounds"]

#: Entry times are 0 <= ts_ms < MAX_LOG_TS: a double (Redis scores) holds them exactly.
MAX_LOG_TS = 2**53
# Bytes of a client's id quoted in an error message.
_QUOTED = 40


def _quoted(value: bytes) -> str:
    return repr(value[:_QUOTED]) + ("..." if len(value) > _QUOTED else "")


def check_entry(entry: LogEntry, *, max_ttl_s: int | None = None) -> None:
    """Raise ValueError, naming the field, when `entry` is outside the log's bounds.

    The dataset and key are the backend's to check (their limits differ per store).
    """
    where = f"log entry of dataset {entry.dataset!r}"
    if type(entry.ts_ms) is not int or not 0 <= entry.ts_ms < MAX_LOG_TS:
        raise ValueError(f"ts_ms {entry.ts_ms!r} of {where}: must be an int in [0, 2**53)")
    if not isinstance(entry.id, bytes):
        raise ValueError(f"id of {where}: must be bytes, got {type(entry.id).__name__}")
    if len(entry.id) > MAX_LOG_ID:
        raise ValueError(
            f"id {_quoted(entry.id)} of {where} is {len(entry.id)} bytes: at most {MAX_LOG_ID}"
        )
    if not isinstance(entry.key, bytes):
        raise ValueError(f"key of {where}: must be bytes, got {type(entry.key).__name__}")
    if not isinstance(entry.payload, bytes):
        raise ValueError(f"payload of {where}: must be bytes, got {type(entry.payload).__name__}")
    ttl = entry.ttl_s
    if ttl is not None and (
        type(ttl) is not int or ttl < 1 or (max_ttl_s is not None and ttl > max_ttl_s)
    ):
        bound = "" if max_ttl_s is None else f" and <= {max_ttl_s}"
        raise ValueError(f"ttl_s {ttl!r} of {where}: must be None or an int >= 1{bound}")


def by_key(entries: Iterable[LogEntry]) -> dict[tuple[str, bytes], list[LogEntry]]:
    """The entries of each (dataset, key), in order; of one (ts_ms, id) only the last given."""
    keys: dict[tuple[str, bytes], dict[tuple[int, bytes], LogEntry]] = {}
    for entry in entries:
        keys.setdefault((entry.dataset, entry.key), {})[(entry.ts_ms, entry.id)] = entry
    return {key: list(unique.values()) for key, unique in keys.items()}


def log_bounds(lo_ms: int, hi_ms: int, limit: int) -> tuple[int, int] | None:
    """A lookup's (lo, hi) clamped to the entry times, or None when the range holds none."""
    if type(limit) is not int or limit < 0:
        raise ValueError(f"limit {limit!r} of a log lookup: must be an int >= 0")
    lo, hi = max(lo_ms, 0), min(hi_ms, MAX_LOG_TS - 1)
    return (lo, hi) if lo <= hi else None


def known_in(
    known: Sequence[KnownPart | None] | None, index: int, bounds: tuple[int, int] | None
) -> KnownPart | None:
    """Lookup `index`'s known part when one was given and lies in its (clamped) range."""
    if known is None or bounds is None:
        return None
    part = known[index]
    if part is None or not bounds[0] <= part[0] <= bounds[1]:
        return None
    return part


class LogScan:
    """One lookup's answer, built from its entries newest first (the log's read rule).

    Stops at the first batch part (kept); after `limit` events, one more event sets
    `truncated` instead of being kept. With a `known` part, a scan that ends at it
    answers `known` instead of its payload: met with the known length (`add`), or,
    `unseen`, when the backend's range stops right after it and runs out (`result`).
    """

    __slots__ = ("batch", "events", "known", "limit", "reached", "truncated", "unseen")

    def __init__(self, limit: int, known: KnownPart | None = None, *, unseen: bool = False) -> None:
        """An empty scan keeping at most `limit` events."""
        self.limit = limit
        self.known = known
        self.unseen = unseen and known is not None
        self.reached = False
        self.batch: tuple[int, bytes] | None = None
        self.events: list[tuple[int, bytes, bytes]] = []
        self.truncated = False

    def add(self, ts_ms: int, id: bytes, payload: bytes) -> bool:
        """Take the next older entry; True when the scan is complete (take no more)."""
        if not id:
            if self.is_known(ts_ms, len(payload)):
                self.reached = True
            else:
                self.batch = (ts_ms, payload)
            return True
        if len(self.events) < self.limit:
            self.events.append((ts_ms, id, payload))
            return False
        self.truncated = True
        return True

    def is_known(self, ts_ms: int, size: int) -> bool:
        """Whether a batch part at `ts_ms` of `size` payload bytes is the known part."""
        known = self.known
        return known is not None and known[0] == ts_ms and known[1] == size

    @property
    def wanted(self) -> int:
        """The most entries the scan may still take (a page size for the backend)."""
        return self.limit + 1 - len(self.events)

    def result(self) -> LogRead:
        """The LogRead of the entries taken so far (the scan ran out or is complete)."""
        if self.reached or (self.unseen and self.batch is None and not self.truncated):
            return LogRead(None, self.events, False, True)
        return LogRead(self.batch, self.events, self.truncated)
