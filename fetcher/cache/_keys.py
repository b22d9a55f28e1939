"""The key every cache tier (L1, L2, single-flight) is addressed by.

A cache key is the store lookup itself: (dataset, entity key bytes, at_ms). A
point-in-time read (at_ms set) therefore has its own entry and can never be
answered by a cached "latest" value, which may be newer than at_ms.
"""

from __future__ import annotations

# (dataset, entity key bytes, at_ms or None for "latest"); the same shape as
# kvstores.base.Lookup so a miss is handed to a store without conversion.
CacheKey = tuple[str, bytes, int | None]
