"""The LRU both L1 caches build on: it tells size evictions from expired entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cachetools import LRUCache

K = TypeVar("K")
V = TypeVar("V")


class CountingLRU(LRUCache[K, V]):
    """An LRU whose entries expire at `expires_at(value)` (a monotonic time); counts what
    the size bound pushes out: `evictions` (still live) and `expirations` (already dead,
    reclaimed by the bound rather than by a read)."""

    def __init__(self, maxsize: int, timer: Callable[[], float],
                 expires_at: Callable[[V], float],
                 getsizeof: Callable[[V], int] | None = None) -> None:
        super().__init__(maxsize, getsizeof=getsizeof)
        self.timer = timer
        self._expires_at = expires_at
        self.evictions = 0
        self.expirations = 0

    def popitem(self) -> tuple[K, V]:
        """Drop the least recently used entry; called by the size bound on insert."""
        key, value = super().popitem()
        if self.timer() < self._expires_at(value):
            self.evictions += 1
        else:
            self.expirations += 1
        return key, value

