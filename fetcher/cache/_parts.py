"""The L1 cache of aggregation groups' batch parts, bounded by bytes, with one TTL.

A key's batch part is rewritten only by a batch run (a new batch end, or a rerun of the
same one), so a server keeps the newest part it read per (group, entity key) and asks
the store for the log with that part "known" (kvstores.KnownPart): the store answers
without the payload while the part is still the newest one in the range. The bound is
on bytes, not entries: one part is tens of KB where a cached row is a few hundred bytes.
An entry lives `ttl_s` from the read that brought its bytes (a confirmation does not
extend it), so a part rewritten under the same batch end is served at most that long.
An entry also keeps the suffix states reads decoded from it (fetcher.aggregation
DecodedStates), so a warm read decodes none; their estimated bytes are counted once a
read has added them (`recount`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import attrgetter

from fetcher.aggregation import DecodedStates
from fetcher.cache._lru import CountingLRU

__all__ = ["CachedPart", "PartCache", "PartKey"]

#: (the group's part namespace, entity key bytes).
PartKey = tuple[str, bytes]
# Bytes counted per entry besides the payload and the key: the entry, its tuple key and
# the decoded directory (measured with sys.getsizeof: ~250 bytes, plus ~100 per operation).
_ENTRY_OVERHEAD = 256
_PER_OPERATION = 104


class CachedPart:
    """One cached batch part: its time (the batch end), payload, decoded directory and the
    suffix states reads have decoded (filled by the reads; counted by `PartCache.recount`)."""

    __slots__ = ("base_size", "expires_at", "index", "payload", "size", "states", "ts_ms")

    def __init__(
        self, ts_ms: int, payload: bytes, index: list[tuple[int, int, int, int]], size: int,
        expires_at: float,
    ) -> None:
        self.ts_ms = ts_ms
        self.payload = payload
        # Per operation (s0, m, offsets position, states position) into `payload`.
        self.index = index
        self.states = DecodedStates()
        # Bytes counted without the decoded states; `size` is what the bound counts now.
        self.base_size = size
        self.size = size
        self.expires_at = expires_at


class PartCache:
    """Batch parts by (namespace, entity key), at most `max_bytes` of them, each `ttl_s`.

    Not thread-safe: one event loop. `hits` counts reads the store answered without the
    payload (the cached part was still the newest), `misses` the parts read with it.
    """

    __slots__ = ("_lru", "_timer", "hits", "misses", "ttl_s")

    def __init__(
        self, max_bytes: int, ttl_s: float, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"batch part cache max_bytes must be >= 1, got {max_bytes}")
        if ttl_s <= 0:
            raise ValueError(f"batch part cache ttl_s must be > 0, got {ttl_s}")
        self._timer = timer
        self._lru: CountingLRU[PartKey, CachedPart] = CountingLRU(
            max_bytes, timer, attrgetter("expires_at"), getsizeof=attrgetter("size"))
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    def get(self, key: PartKey) -> CachedPart | None:
        """The live part cached for `key` (marked recently used), or None."""
        part = self._lru.get(key)
        if part is None:
            return None
        if self._timer() < part.expires_at:
            return part
        del self._lru[key]
        self._lru.expirations += 1
        return None

    def put(
        self, key: PartKey, ts_ms: int, payload: bytes, index: list[tuple[int, int, int, int]]
    ) -> CachedPart | None:
        """Cache a part just read from the store, replacing the key's entry; its entry, or
        None when it is larger than the whole bound (not cached; the older entry dropped)."""
        size = len(payload) + len(key[1]) + _ENTRY_OVERHEAD + _PER_OPERATION * len(index)
        if size > self._lru.maxsize:
            self._lru.pop(key, None)
            return None
        part = self._lru[key] = CachedPart(ts_ms, payload, index, size,
                                           self._timer() + self.ttl_s)
        return part

    def recount(self, key: PartKey, part: CachedPart) -> None:
        """Count the decoded states `part` gained since it was put (or last counted).

        Called after a read used the part: the entry's size grows with its states and the
        bound may push out other entries (or this one, past the whole bound). A part no
        longer the key's entry (replaced, pushed out) is left alone.
        """
        size = part.base_size + part.states.bytes
        if size == part.size or self._lru.get(key) is not part:
            return
        part.size = size
        if size > self._lru.maxsize:
            del self._lru[key]
            return
        self._lru[key] = part  # cachetools recounts an entry set again

    def discard(self, key: PartKey) -> None:
        """Drop `key`'s entry (absent: nothing)."""
        self._lru.pop(key, None)

    def clear(self) -> None:
        """Drop every entry; the counters are kept."""
        self._lru.clear()

    @property
    def evictions(self) -> int:
        """Live entries pushed out by the byte bound."""
        return self._lru.evictions

    @property
    def expirations(self) -> int:
        """Entries dropped after their TTL (on read or when pushed out)."""
        return self._lru.expirations

    @property
    def bytes(self) -> int:
        """Bytes counted for the entries held."""
        return int(self._lru.currsize)

    @property
    def max_bytes(self) -> int:
        """The most bytes held."""
        return int(self._lru.maxsize)

    def __len__(self) -> int:
        """Entries held, including expired ones not yet reclaimed."""
        return len(self._lru)
