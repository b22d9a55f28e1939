"""RedisStore's reads (MGET of latest keys, EVALSHA of the read script) and write script.

The contract suite covers the results; these tests cover what only this layout does:
chunking inside one write, the fallback from latest keys to the versions, the latest
copy under out-of-order writes, loading scripts when Redis lacks them, error replies,
and agreement with the GET / ZRANGE commands the cluster store sends.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
import redis

from kvstores import Lookup, RedisStore, Row, StoreError
from kvstores.redis import _READ_SHA, _WRITE_SHA, BaseRedisStore
from tests.integration.test_store_contract import RedisServer
from tests.servers import spy_redis_read_writes


def _commandstats(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        return dict(client.info("commandstats"))
    finally:
        client.close()


async def test_large_batch_is_one_write_of_mgets_and_scripts(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0)
    # Versions 10 and 20 of every key, but only 20 of every third one; lookups ask
    # for the latest and for times before and between.
    await store.multi_put(
        [Row("d", b"%d" % i, b"v%d-%d" % (i, ts), ts)
         for i in range(1201) for ts in (10, 20) if ts == 20 or i % 3]
    )  # fmt: skip
    await store.multi_get([("d", b"warm-up", 1)])  # connection, and the read script loaded
    connects = store._reads.connects
    sends = spy_redis_read_writes(monkeypatch)
    before = _commandstats(clean_redis)

    at = [None, 15, 9, 20]
    lookups: list[Lookup] = [("d", b"%d" % i, at[i % 4]) for i in range(1201)]
    got = await store.multi_get(lookups)

    # 301 latest lookups: one MGET; 900 with a time: two scripts (500, 400); one write.
    assert len(sends) == 1
    assert store._reads.connects == connects  # and no new connection
    after = _commandstats(clean_redis)
    assert after["cmdstat_mget"]["calls"] - before.get("cmdstat_mget", {}).get("calls", 0) == 1
    assert after["cmdstat_evalsha"]["calls"] - before["cmdstat_evalsha"]["calls"] == 2
    expected: list[tuple[bytes, int] | None] = []
    for i in range(1201):
        ts = {None: 20, 15: 10, 9: None, 20: 20}[at[i % 4]]
        missing = ts is None or (ts == 10 and i % 3 == 0)
        expected.append(None if missing else (b"v%d-%d" % (i, ts), ts))
    assert got == expected
    await store.close()


async def test_latest_reads_fall_back_to_the_versions(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows written by a job that keeps only the sorted sets (docs/storage-layout.md
    # before latest keys) are still read, with a second round trip for those only.
    raw = redis.Redis.from_url(clean_redis)
    store = RedisStore(clean_redis, timeout_s=2.0)
    await store.multi_put([Row("d", b"new", b"n", 5)])
    raw.zadd(store.redis_key("d", b"old"), {struct.pack(">q", 3) + b"o": 3})
    await store.multi_get([("d", b"warm-up", 1)])
    sends = spy_redis_read_writes(monkeypatch)
    reads: list[tuple[list[Lookup], bool]] = []
    real_read = store._read

    async def spy_read(lookups: list[Lookup], latest_keys: bool) -> list[bytes | None]:
        reads.append((list(lookups), latest_keys))
        return await real_read(lookups, latest_keys)

    monkeypatch.setattr(store, "_read", spy_read)
    lookups: list[Lookup] = [("d", b"new", None), ("d", b"old", None), ("d", b"none", None)]
    assert await store.multi_get(lookups) == [(b"n", 5), (b"o", 3), None]
    # Two round trips; the second asked the versions for the two misses only.
    assert len(sends) == 2
    assert reads == [(lookups, True), (lookups[1:], False)]

    sends.clear()
    strict = RedisStore(clean_redis, timeout_s=2.0, latest_fallback=False)
    assert await strict.multi_get(lookups) == [(b"n", 5), None, None]
    assert await strict.multi_get([("d", b"old", 4)]) == [(b"o", 3)]  # times read the versions
    raw.close()
    await store.close()
    await strict.close()


async def test_latest_copy_follows_the_newest_version(clean_redis: str) -> None:
    raw = redis.Redis.from_url(clean_redis)
    store = RedisStore(clean_redis, timeout_s=2.0, max_versions=2)
    latest = store.latest_key("d", b"k")
    assert latest == store.redis_key("d", b"k") + b":latest"

    def copy() -> bytes | None:
        value: bytes | None = raw.get(latest)  # type: ignore[assignment]
        return value

    await store.multi_put([Row("d", b"k", b"b", 20, ttl_s=100)])
    assert copy() == struct.pack(">q", 20) + b"b"
    await store.multi_put([Row("d", b"k", b"a", 10, ttl_s=200)])  # older, arrives later
    assert copy() == struct.pack(">q", 20) + b"b"
    assert 100 < raw.ttl(latest) <= 200 and 100 < raw.ttl(store.redis_key("d", b"k")) <= 200
    await store.multi_put([Row("d", b"k", b"B", 20)])  # same event time: replaced, no TTL
    assert copy() == struct.pack(">q", 20) + b"B"
    assert raw.ttl(latest) == -1 and raw.ttl(store.redis_key("d", b"k")) == -1
    # Trimmed to the 2 newest: 5 is dropped at once; the copy stays the newest.
    await store.multi_put([Row("d", b"k", b"c", 5), Row("d", b"k", b"d", 30)])
    assert copy() == struct.pack(">q", 30) + b"d"
    assert raw.zcard(store.redis_key("d", b"k")) == 2
    assert await store.multi_get([("d", b"k", None), ("d", b"k", 25)]) == [(b"d", 30), (b"B", 20)]

    # A store without latest keys deletes the copy it would not keep up to date.
    plain = RedisStore(clean_redis, timeout_s=2.0, latest_keys=False)
    await plain.multi_put([Row("d", b"k", b"e", 40)])
    assert copy() is None
    assert await store.multi_get([("d", b"k", None)]) == [(b"e", 40)]  # found by the fallback
    assert await plain.multi_get([("d", b"k", None)]) == [(b"e", 40)]
    raw.close()
    await store.close()
    await plain.close()


async def test_scripts_are_loaded_again_after_a_flush(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout_s=2.0)
    raw = redis.Redis.from_url(own_redis.url)
    assert raw.script_exists(_READ_SHA.decode(), _WRITE_SHA) == [False, False]  # a new Redis

    await store.multi_put([Row("d", b"k", b"v", 1)])
    assert await store.multi_get([("d", b"k", 2)] * 600) == [(b"v", 1)] * 600
    assert raw.script_exists(_READ_SHA.decode(), _WRITE_SHA) == [True, True]
    raw.script_flush()  # what a Redis restart does to the script cache
    await store.multi_put([Row("d", b"k", b"w", 2)])
    assert await store.multi_get([("d", b"k", 2), ("d", b"x", 2)]) == [(b"w", 2), None]
    assert raw.script_exists(_READ_SHA.decode(), _WRITE_SHA) == [True, True]
    stats = raw.info("commandstats")
    # Each script: one EVALSHA refused, SCRIPT LOAD, the EVALSHA again; twice.
    assert stats["cmdstat_script|load"]["calls"] == 4
    raw.close()
    await store.close()


async def test_error_reply_is_a_store_error_and_the_connection_stays_usable(
    clean_redis: str,
) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0)
    await store.multi_put([Row("d", b"ok", b"v", 5)])
    raw = redis.Redis.from_url(clean_redis)
    raw.set(store.redis_key("d", b"string"), b"not a sorted set")
    # The bad key sits in the first of two scripts: the second reply must still be read.
    lookups: list[Lookup] = [("d", b"string", 9), *[("d", b"ok", 9)] * 700]
    with pytest.raises(StoreError, match=r"multi_get failed.*WRONGTYPE"):
        await store.multi_get(lookups)
    # A latest lookup of it: no latest key, and the fallback script fails the same way.
    with pytest.raises(StoreError, match=r"multi_get failed.*WRONGTYPE"):
        await store.multi_get([("d", b"ok", None), ("d", b"string", None)])
    for _ in range(3):
        assert await store.multi_get([("d", b"ok", None)] * 700) == [(b"v", 5)] * 700
        assert await store.multi_get([("d", b"ok", 9)] * 700) == [(b"v", 5)] * 700
    raw.close()
    await store.close()


async def test_malformed_member_names_the_key(clean_redis: str) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0)
    raw = redis.Redis.from_url(clean_redis)
    raw.zadd(store.redis_key("d", b"short"), {b"1234567": 1})  # 7 bytes: no event time
    raw.set(store.latest_key("d", b"copy"), b"123")
    for bad, size in ((b"short", 7), (b"copy", 3)):
        message = rf"malformed member in b'ft:d:\{{{bad.decode()}\}}' \(or its latest copy\)"
        with pytest.raises(StoreError, match=rf"{message}: {size} bytes"):
            await store.multi_get([("d", b"fine", None), ("d", bad, None)])
    raw.close()
    await store.close()


async def test_every_read_path_agrees(clean_redis: str) -> None:
    # Latest keys (MGET), the read script and the cluster store's GET / ZRANGE
    # commands (BaseRedisStore._read) must agree exactly, on odd keys and times.
    rng = random.Random(7)
    keys = [
        b"",
        b"\x00",
        b"}",
        b"{x}",
        b"\r\n$3",
        b":latest",
        b"\xff" * 40,
        *(struct.pack(">q", i) for i in range(60)),
    ]
    times = [-(2**53), -5, 0, 1, 999, 2**40, 2**53]
    store = RedisStore(clean_redis, timeout_s=2.0, max_versions=None)
    await store.multi_put(
        [
            Row(dataset, key, rng.randbytes(rng.randrange(0, 300)), ts)
            for dataset in ("a", "b.c")
            for key in keys
            for ts in rng.sample(times, rng.randrange(0, 4))
        ]
    )
    lookups: list[Lookup] = [
        (
            rng.choice(("a", "b.c", "none")),
            rng.choice(keys),
            rng.choice([None, None, -(2**60), *times, 2**62]),
        )
        for _ in range(1500)
    ]
    members = await store._read(lookups, True)
    assert members == await store._read(lookups, False)
    assert members == await BaseRedisStore._read(store, lookups, True)
    assert members == await BaseRedisStore._read(store, lookups, False)
    found = await store.multi_get(lookups)
    assert found == await BaseRedisStore.multi_get(store, lookups)
    assert any(f is not None for f in found) and None in found
    await store.close()


async def test_latest_copy_equals_the_newest_version_after_random_writes(
    clean_redis: str,
) -> None:
    # Versions in any order, replaced, trimmed, in batches: after every batch each
    # entity's latest key is its sorted set's newest member, and both read paths agree.
    rng = random.Random(11)
    raw = redis.Redis.from_url(clean_redis)
    store = RedisStore(clean_redis, timeout_s=2.0, max_versions=3)
    versions = RedisStore(clean_redis, timeout_s=2.0, latest_keys=False)  # reads only
    keys = [b"k%d" % i for i in range(6)]
    for _ in range(40):
        batch = [
            Row("d", rng.choice(keys), rng.randbytes(rng.randrange(0, 20)), rng.randrange(-5, 30),
                ttl_s=rng.choice([None, 100]))
            for _ in range(rng.randrange(1, 12))
        ]  # fmt: skip
        await store.multi_put(batch)
        for key in keys:
            newest = raw.zrange(store.redis_key("d", key), -1, -1)
            assert [raw.get(store.latest_key("d", key))] == (newest or [None])
        lookups: list[Lookup] = [("d", key, None) for key in keys]
        assert await store.multi_get(lookups) == await versions.multi_get(lookups)
    raw.close()
    await store.close()
    await versions.close()
