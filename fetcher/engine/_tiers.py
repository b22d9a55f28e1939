"""What the fetch engine is built from: store handles and the cache tiers of a process."""

from __future__ import annotations

from dataclasses import dataclass

from fetcher.cache import L1Cache, L2Cache, PartCache, SingleFlight
from kvstores import KVStore


@dataclass(frozen=True, slots=True)
class StoreHandle:
    """A store as the engine uses it: the backend, its per-call timeout and its guards.

    max_in_flight 0 = unbounded; breaker_failures 0 = no breaker.
    """

    name: str
    store: KVStore
    timeout_s: float
    max_in_flight: int = 0
    breaker_failures: int = 0
    breaker_cooldown_s: float = 1.0


@dataclass(frozen=True, slots=True)
class CacheTiers:
    """The cache tiers of one process; L2 is optional."""

    l1: L1Cache
    flights: SingleFlight
    l2: L2Cache | None
    default_l1_ttl_s: float
    default_l2_ttl_s: float
    negative_ttl_s: float
    # False when settings turn L1 off (cache.l1_max_entries = 0), whatever the groups say.
    l1_enabled: bool = True
    # The batch parts of aggregation groups read by this process; None: not cached (each
    # fetch reads a key's part from the store).
    parts: PartCache | None = None
