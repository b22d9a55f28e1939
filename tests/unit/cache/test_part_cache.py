"""PartCache: the batch part L1, bounded by bytes, each entry living its TTL from its read."""

from __future__ import annotations

import pytest

from fetcher.cache import PartCache
from fetcher.cache._parts import _ENTRY_OVERHEAD, _PER_OPERATION


class FakeClock:
    """A clock the test moves by hand, so TTLs are deterministic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


INDEX = [(0, 1, 2, 6)]  # one operation's directory


def size_of(payload: bytes, key: bytes) -> int:
    return len(payload) + len(key) + _ENTRY_OVERHEAD + _PER_OPERATION * len(INDEX)


def test_put_get_replace_and_discard() -> None:
    cache = PartCache(1 << 20, 60.0, timer=FakeClock())
    assert cache.get(("g", b"k")) is None
    cache.put(("g", b"k"), 10, b"part10", INDEX)
    part = cache.get(("g", b"k"))
    assert part is not None and (part.ts_ms, part.payload, part.index) == (10, b"part10", INDEX)
    cache.put(("g", b"k"), 20, b"part20", INDEX)
    part = cache.get(("g", b"k"))
    assert part is not None and part.ts_ms == 20
    assert cache.get(("other", b"k")) is None  # namespaces are apart
    cache.discard(("g", b"k"))
    cache.discard(("g", b"absent"))
    assert cache.get(("g", b"k")) is None and len(cache) == 0 and cache.bytes == 0


def test_the_ttl_counts_from_the_read_that_brought_the_bytes() -> None:
    clock = FakeClock()
    cache = PartCache(1 << 20, 60.0, timer=clock)
    cache.put(("g", b"k"), 10, b"part", INDEX)
    clock.now += 59.0
    assert cache.get(("g", b"k")) is not None  # a use does not extend the entry's life
    clock.now += 1.0
    assert cache.get(("g", b"k")) is None
    assert cache.expirations == 1 and len(cache) == 0


def test_the_bound_is_on_bytes_least_recently_used_out_first() -> None:
    payload = b"x" * 1000
    one = size_of(payload, b"k0")
    cache = PartCache(3 * one, 60.0, timer=FakeClock())
    for n in range(3):
        cache.put(("g", b"k%d" % n), 1, payload, INDEX)
    assert cache.bytes == 3 * one and cache.max_bytes == 3 * one
    assert cache.get(("g", b"k0")) is not None  # k1 is now the least recently used
    cache.put(("g", b"k3"), 1, payload, INDEX)
    assert cache.get(("g", b"k1")) is None
    assert all(cache.get(("g", b"k%d" % n)) is not None for n in (0, 2, 3))
    assert cache.evictions == 1 and cache.bytes == 3 * one
    # A part larger than the whole bound is not kept, and the key's older one goes too.
    cache.put(("g", b"k0"), 2, b"y" * (3 * one), INDEX)
    assert cache.get(("g", b"k0")) is None and len(cache) == 2


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        PartCache(0, 60.0)
    with pytest.raises(ValueError, match="ttl_s"):
        PartCache(1 << 20, 0.0)


def test_decoded_states_are_counted_and_push_out_older_entries() -> None:
    payload = b"x" * 100
    one = size_of(payload, b"a")
    cache = PartCache(3 * one, 60.0, timer=FakeClock())
    for key in (b"a", b"b", b"c"):
        cache.put(("g", key), 10, payload, INDEX)
    assert cache.bytes == 3 * one and cache.evictions == 0
    part = cache.get(("g", b"c"))
    assert part is not None
    cache.recount(("g", b"c"), part)  # nothing decoded: nothing changes
    assert cache.bytes == 3 * one
    part.states.add((0, 0), {b"v"}, one // 2)
    grown = part.size + part.states.bytes
    cache.recount(("g", b"c"), part)
    assert part.size == grown and cache.evictions == 1  # "a", least recently used, is out
    assert cache.get(("g", b"a")) is None and cache.bytes == one + grown
    # An entry the key no longer holds is not counted again.
    cache.put(("g", b"c"), 20, payload, INDEX)
    part.states.add((0, 1), {b"w"}, 10)
    cache.recount(("g", b"c"), part)
    current = cache.get(("g", b"c"))
    assert current is not None and current is not part and current.size == one
    # States past the whole bound drop the entry.
    current.states.add((0, 0), None, 4 * one)
    cache.recount(("g", b"c"), current)
    assert cache.get(("g", b"c")) is None
