"""The batch part L1 a server builds from [cache], and what /metrics shows of it."""

from __future__ import annotations

from prometheus_client import generate_latest

from fetcher.cache import L1Cache, PartCache
from fetcher.config import CacheSettings
from fetcher.metrics import Metrics
from fetcher.server._app import _part_cache


def test_the_settings_size_the_part_cache_and_can_turn_it_off() -> None:
    parts = _part_cache(CacheSettings())
    assert parts is not None
    assert (parts.max_bytes, parts.ttl_s) == (64 * 1024 * 1024, 60.0)
    sized = _part_cache(CacheSettings(batch_part_max_bytes=1000, batch_part_ttl_s=5.0))
    assert sized is not None and (sized.max_bytes, sized.ttl_s) == (1000, 5.0)
    assert _part_cache(CacheSettings(batch_part_max_bytes=0)) is None
    assert _part_cache(CacheSettings(batch_part_ttl_s=0.0)) is None
    # L1 off is every in-process cache off.
    assert _part_cache(CacheSettings(l1_max_entries=0)) is None


def test_metrics_show_the_part_cache_as_a_tier() -> None:
    metrics = Metrics()
    parts = PartCache(10_000, 60.0)
    parts.put(("g", b"k"), 1, b"x" * 100, [(0, 1, 2, 6)])
    parts.hits, parts.misses = 3, 1
    metrics.watch_caches(L1Cache(10), None, parts)
    text = generate_latest(metrics.registry).decode()
    assert 'fetcher_cache_hits_total{tier="batch_part"} 3.0' in text
    assert 'fetcher_cache_misses_total{tier="batch_part"} 1.0' in text
    assert 'fetcher_cache_entries{tier="batch_part"} 1.0' in text
    assert f'fetcher_cache_bytes{{tier="batch_part"}} {float(parts.bytes)}' in text
    assert 'fetcher_cache_capacity_bytes{tier="batch_part"} 10000.0' in text
