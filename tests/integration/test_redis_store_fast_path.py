"""RedisStore's script read (EVALSHA per 500 lookups, packed by the store) on a real Redis.

The contract suite covers the results; these tests cover what only this read path
does: chunking inside one write, loading the script when Redis lacks it, error replies,
and agreement with the ZRANGE pipeline the cluster store still sends.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
import redis

from kvstores import Lookup, RedisStore, Row, StoreError
from kvstores.redis import _READ_SHA, BaseRedisStore
from tests.integration.test_store_contract import RedisServer
from tests.servers import spy_redis_read_writes


def _commandstats(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        return dict(client.info("commandstats"))
    finally:
        client.close()


async def test_large_batch_is_one_write_of_several_scripts(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0)
    # Versions 10 and 20 of every third key; lookups ask for both, before and between.
    await store.multi_put(
        [Row("d", b"%d" % i, b"v%d-%d" % (i, ts), ts) for i in range(0, 1201, 3) for ts in (10, 20)]
    )
    await store.multi_get([("d", b"warm-up", None)])  # connection, and the script loaded
    connects = store._reads.connects
    sends = spy_redis_read_writes(monkeypatch)
    before = _commandstats(clean_redis).get("cmdstat_evalsha", {}).get("calls", 0)

    at = [None, 15, 9, 20]
    lookups: list[Lookup] = [("d", b"%d" % i, at[i % 4]) for i in range(1201)]
    got = await store.multi_get(lookups)

    assert len(sends) == 1  # 1201 lookups: three scripts (500, 500, 201), one write
    assert store._reads.connects == connects  # and no new connection
    assert _commandstats(clean_redis)["cmdstat_evalsha"]["calls"] - before == 3
    expected: list[tuple[bytes, int] | None] = []
    for i in range(1201):
        ts = {None: 20, 15: 10, 9: None, 20: 20}[at[i % 4]]
        expected.append(None if i % 3 or ts is None else (b"v%d-%d" % (i, ts), ts))
    assert got == expected
    await store.close()


async def test_script_is_loaded_again_after_a_flush(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout_s=2.0)
    await store.multi_put([Row("d", b"k", b"v", 1)])
    raw = redis.Redis.from_url(own_redis.url)
    store_sha = _READ_SHA.decode()
    assert raw.script_exists(store_sha)[0] is False  # a new Redis has no scripts

    assert await store.multi_get([("d", b"k", None)] * 600) == [(b"v", 1)] * 600
    assert raw.script_exists(store_sha)[0] is True
    raw.script_flush()  # what a Redis restart does to the script cache
    assert await store.multi_get([("d", b"k", None), ("d", b"x", None)]) == [(b"v", 1), None]
    assert raw.script_exists(store_sha)[0] is True
    stats = raw.info("commandstats")
    # Two lookups after the flush: one EVALSHA refused, SCRIPT LOAD, the EVALSHA again.
    assert stats["cmdstat_script|load"]["calls"] == 2
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
    lookups: list[Lookup] = [("d", b"string", None), *[("d", b"ok", None)] * 700]
    with pytest.raises(StoreError, match=r"multi_get failed.*WRONGTYPE"):
        await store.multi_get(lookups)
    for _ in range(3):
        assert await store.multi_get([("d", b"ok", None)] * 700) == [(b"v", 5)] * 700
    raw.close()
    await store.close()


async def test_malformed_member_names_the_key(clean_redis: str) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0)
    raw = redis.Redis.from_url(clean_redis)
    raw.zadd(store.redis_key("d", b"short"), {b"1234567": 1})  # 7 bytes: no event time
    with pytest.raises(StoreError, match=r"malformed member in b'ft:d:\{short\}': 7 bytes"):
        await store.multi_get([("d", b"fine", None), ("d", b"short", None)])
    raw.close()
    await store.close()


async def test_script_read_equals_the_zrange_pipeline(clean_redis: str) -> None:
    # The cluster store still reads with one ZRANGE per lookup: both must agree exactly.
    rng = random.Random(7)
    keys = [
        b"",
        b"\x00",
        b"}",
        b"{x}",
        b"\r\n$3",
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
            rng.choice([None, -(2**60), *times, 2**62]),
        )
        for _ in range(1500)
    ]
    fast = await store.multi_get(lookups)
    assert fast == await BaseRedisStore.multi_get(store, lookups)
    assert any(found is not None for found in fast) and None in fast
    await store.close()
