"""The cache layer: L1 (in process), L2 (Redis) and single-flight for concurrent misses.

Every tier is keyed by CacheKey = (dataset, entity key bytes, at_ms or None); the batch
parts of aggregation groups have a byte-bounded L1 of their own (PartCache). The fetch
engine composes them; this package knows nothing of protobuf or the catalog.
"""

from __future__ import annotations

from fetcher.cache._keys import CacheKey
from fetcher.cache._l1 import L1Cache, L1Stats
from fetcher.cache._l2 import L2Cache, Negative, NegativeEntry
from fetcher.cache._parts import CachedPart, PartCache, PartKey
from fetcher.cache._singleflight import FetchAbandoned, SingleFlight

__all__ = [
    "CacheKey",
    "CachedPart",
    "FetchAbandoned",
    "L1Cache",
    "L1Stats",
    "L2Cache",
    "Negative",
    "NegativeEntry",
    "PartCache",
    "PartKey",
    "SingleFlight",
]
