"""The aggregation log's reading rule the slow obvious way, for tests to compare stores with.

docs/storage-layout.md ("the log") in a few lines of Python: keep every entry (the last
of one identity wins), sort newest first, scan to the first batch part under the limit.
"""

from __future__ import annotations

from collections.abc import Iterable

from kvstores import KnownPart, LogEntry, LogLookup, LogRead

# (dataset, key, ts_ms, id) -> payload: what a log holds once written.
Written = dict[tuple[str, bytes, int, bytes], bytes]

MAX_TS = 2**53 - 1
# Ids whose bytes are prefixes of one another, hold 00 bytes or sort by a byte >= 0x80:
# a layout that frames ids by length, or compares bytes signed, orders them wrongly.
TRICKY_IDS = [b"a", b"a\x00", b"a\x00\x00", b"aa", b"ab", b"b", b"\x00", b"\x00\x01",
              b"\x01", b"\x7f", b"\x80", b"\xff", b"\xff\xff"]  # fmt: skip
TRICKY_KEYS = [b"", b"a", b"a\x00", b"\x00", b"\xff" * 8, b"{x}", b"}{", b"}", b":", b":log"]


def model_read(written: Written, lookup: LogLookup) -> LogRead:
    """What a lookup must find in `written`, by the docs' reading rule."""
    dataset, key, lo, hi, limit = lookup
    entries = sorted(
        ((ts, id, payload) for (d, k, ts, id), payload in written.items()
         if (d, k) == (dataset, key) and lo <= ts <= hi),
        reverse=True,
    )  # fmt: skip
    events: list[tuple[int, bytes, bytes]] = []
    for ts, id, payload in entries:
        if not id:
            return LogRead((ts, payload), events, False)
        if len(events) == limit:
            return LogRead(None, events, True)
        events.append((ts, id, payload))
    return LogRead(None, events, False)


def remember(written: Written, entries: Iterable[LogEntry]) -> None:
    """Apply entries to the model: the last of one identity wins."""
    for e in entries:
        written[(e.dataset, e.key, e.ts_ms, e.id)] = e.payload


def model_read_known(
    written: Written, lookup: LogLookup, known: KnownPart | None, *, sees_part: bool
) -> LogRead:
    """What a lookup with a known part must find, by the docs' rule for known parts.

    `sees_part`: the backend checks the part itself (Redis, LMDB: `known` only when the
    first batch part met has the known time and length); otherwise (Cassandra, DynamoDB)
    it reads the entries after the known part's position and `known` means "no newer
    batch part".
    """
    dataset, key, lo, hi, limit = lookup
    lo, hi = max(lo, 0), min(hi, MAX_TS)
    if known is None or not lo <= known[0] <= hi:
        return model_read(written, lookup)
    if sees_part:
        full = model_read(written, lookup)
        if full.batch is not None and full.batch[0] == known[0] and len(full.batch[1]) == known[1]:
            return LogRead(None, full.events, False, True)
        return full
    after = sorted(
        ((ts, id, payload) for (d, k, ts, id), payload in written.items()
         if (d, k) == (dataset, key) and (ts, id) > (known[0], b"") and ts <= hi),
        reverse=True,
    )  # fmt: skip
    events: list[tuple[int, bytes, bytes]] = []
    for ts, id, payload in after:
        if not id:
            return LogRead((ts, payload), events, False)
        if len(events) == limit:
            return LogRead(None, events, True)
        events.append((ts, id, payload))
    return LogRead(None, events, False, True)
