"""The aggregation log's LMDB layout: its keys and the newest-first scan of one key's log.

key   = 00 + len(dataset) (1 byte) + dataset UTF-8 + len(key) (2 bytes, big-endian)
        + key bytes + ts_ms (8 bytes big-endian) + id
value = expiry time in ms since the epoch (8 bytes big-endian, 0 = never) + payload

The leading 00 keeps log keys apart from version keys (those start with the dataset's
length, 1..255). Both lengths are in the prefix, so the keys starting with one entity's
prefix are exactly its log, sorted by (ts_ms, id) with a batch part (empty id) first.
"""

from __future__ import annotations

import struct
from typing import Any

from kvstores.base import EMPTY_LOG, KnownPart, LogRead
from kvstores.logs import LogScan

__all__ = ["LOG_MARK", "TS_SIZE", "scan_log"]

#: The first byte of every log key.
LOG_MARK = b"\x00"
#: Bytes of the entry time in a log key.
TS_SIZE = 8
_U64 = struct.Struct(">Q")


def scan_log(
    cursor: Any,
    prefix: bytes,
    bounds: tuple[int, int] | None,
    limit: int,
    known: KnownPart | None,
    now_ms: int,
) -> LogRead:
    """The entries of `prefix`'s log with lo <= ts_ms <= hi, newest first, by the read rule.

    `cursor` is an LMDB cursor (its transaction a consistent snapshot); expired entries
    are skipped. The `known` part, met with its length, ends the scan as `known`.
    """
    if bounds is None:
        return EMPTY_LOG
    lo, hi = bounds
    # Newest first: step back from the first key after every entry at hi (or the end).
    found = cursor.prev() if cursor.set_range(prefix + _U64.pack(hi + 1)) else cursor.last()
    scan = LogScan(limit, known)
    start = len(prefix)
    unpack, key_at, value_at, prev = _U64.unpack_from, cursor.key, cursor.value, cursor.prev
    while found:
        stored_key = key_at()
        if len(stored_key) < start + TS_SIZE or not stored_key.startswith(prefix):
            break
        ts_ms = unpack(stored_key, start)[0]
        if ts_ms < lo:
            break
        stored_value = value_at()
        expires_ms = unpack(stored_value)[0]
        if expires_ms == 0 or expires_ms > now_ms:
            if len(stored_key) == start + TS_SIZE and scan.is_known(ts_ms, len(stored_value) - 8):
                scan.reached = True  # the known part: its payload is not copied out
                break
            if scan.add(ts_ms, stored_key[start + TS_SIZE :], stored_value[8:]):
                break
        found = prev()
    return scan.result()
