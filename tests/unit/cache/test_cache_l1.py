"""L1Cache: hits and misses, per-entry TTLs, the size bound and its counters."""

from __future__ import annotations

import dataclasses

import pytest

from fetcher.cache import CacheKey, L1Cache, Negative


class FakeClock:
    """A clock the test moves by hand, so TTLs are deterministic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(n: int, at_ms: int | None = None, dataset: str = "users") -> CacheKey:
    return (dataset, n.to_bytes(8, "big"), at_ms)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> L1Cache:
    return L1Cache(100, timer=clock)


def test_miss_then_hit_counts_both(cache: L1Cache) -> None:
    assert cache.get(key(1)) is None
    value = object()
    cache.put(key(1), value, ttl_s=10)
    assert cache.get(key(1)) is value
    assert (cache.hits, cache.misses) == (1, 1)


def test_get_many_keeps_order_and_counts(cache: L1Cache) -> None:
    for n in range(0, 10, 2):
        cache.put(key(n), f"v{n}", ttl_s=10)
    got = cache.get_many([key(n) for n in range(10)])
    assert got == ["v0", None, "v2", None, "v4", None, "v6", None, "v8", None]
    assert (cache.hits, cache.misses) == (5, 5)
    assert cache.get_many([]) == []


def test_each_entry_has_its_own_ttl(cache: L1Cache, clock: FakeClock) -> None:
    cache.put(key(1), "long", ttl_s=60)
    cache.put(key(2), Negative, ttl_s=1)  # negative entries live shortly
    clock.now += 0.999
    assert cache.get_many([key(1), key(2)]) == ["long", Negative]
    clock.now += 0.001  # exactly at expiry: expired
    assert cache.get(key(2)) is None
    assert cache.get_many([key(1), key(2)]) == ["long", None]
    clock.now += 60
    assert cache.get(key(1)) is None
    assert cache.expirations == 2
    assert cache.evictions == 0


def test_hit_never_returns_an_expired_entry_even_if_not_reclaimed(
    cache: L1Cache, clock: FakeClock
) -> None:
    cache.put(key(1), "v", ttl_s=5)
    clock.now += 5
    assert len(cache) == 1  # reclaimed lazily...
    assert cache.get_many([key(1)]) == [None]  # ...but never served
    assert len(cache) == 0  # and dropped when read


def test_put_again_replaces_value_and_ttl(cache: L1Cache, clock: FakeClock) -> None:
    cache.put(key(1), "old", ttl_s=1)
    cache.put(key(1), "new", ttl_s=10)
    clock.now += 5
    assert cache.get(key(1)) == "new"


def test_non_positive_ttl_drops_the_entry(cache: L1Cache) -> None:
    cache.put(key(1), "v", ttl_s=10)
    cache.put(key(1), "w", ttl_s=0)
    assert cache.get(key(1)) is None
    cache.put_many([(key(2), "v")], ttl_s=10)
    cache.put_many([(key(2), "w")], ttl_s=-1)
    assert cache.get(key(2)) is None
    assert len(cache) == 0


def test_none_is_not_a_value(cache: L1Cache) -> None:
    with pytest.raises(ValueError, match="None"):
        cache.put(key(1), None, ttl_s=1)
    with pytest.raises(ValueError, match="None"):
        cache.put_many([(key(1), None)], ttl_s=1)


def test_size_bound_evicts_least_recently_used(clock: FakeClock) -> None:
    cache = L1Cache(3, timer=clock)
    for n in range(3):
        cache.put(key(n), n, ttl_s=10)
    assert cache.get(key(0)) == 0  # key 1 is now the least recently used
    cache.put(key(3), 3, ttl_s=10)
    assert cache.get_many([key(0), key(1), key(2), key(3)]) == [0, None, 2, 3]
    assert cache.evictions == 1
    assert cache.expirations == 0
    assert len(cache) == 3


def test_expired_entry_pushed_out_is_an_expiration_not_an_eviction(clock: FakeClock) -> None:
    cache = L1Cache(2, timer=clock)
    cache.put(key(1), 1, ttl_s=1)
    cache.put(key(2), 2, ttl_s=100)
    clock.now += 2
    cache.put(key(3), 3, ttl_s=100)  # pushes out key 1, which had expired
    assert (cache.evictions, cache.expirations) == (0, 1)
    cache.put(key(4), 4, ttl_s=100)  # pushes out key 2, still live
    assert (cache.evictions, cache.expirations) == (1, 1)


def test_point_in_time_read_never_returns_the_newer_cached_latest(cache: L1Cache) -> None:
    # The latest version (event time 2000) is cached; a read as of t=1500 must
    # not see it: it has its own key, so it misses and goes to the store.
    latest = (b"balance=200", 2000)
    cache.put(key(7), latest, ttl_s=60)
    assert cache.get(key(7, at_ms=1500)) is None
    older = (b"balance=100", 1000)
    cache.put(key(7, at_ms=1500), older, ttl_s=60)
    assert cache.get_many([key(7), key(7, at_ms=1500), key(7, at_ms=2500)]) == [
        latest,
        older,
        None,
    ]


def test_datasets_and_keys_do_not_collide(cache: L1Cache) -> None:
    cache.put(("a", b"1", None), "a1", ttl_s=10)
    assert cache.get(("b", b"1", None)) is None
    assert cache.get(("a", b"1", 0)) is None
    assert cache.get(("a", b"1", None)) == "a1"


def test_clear_and_stats(cache: L1Cache) -> None:
    cache.put_many([(key(n), n) for n in range(5)], ttl_s=10)
    cache.get_many([key(0), key(9)])
    cache.clear()
    assert len(cache) == 0
    assert cache.get(key(0)) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size, stats.maxsize) == (1, 2, 0, 100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.hits = 0  # type: ignore[misc]


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        L1Cache(0)
