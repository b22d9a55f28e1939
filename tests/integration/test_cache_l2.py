"""L2Cache against a real redis-server: encoding, TTLs, one round trip, Redis going away."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from fetcher.cache import CacheKey, L2Cache, Negative
from kvstores.base import StoreError

pytestmark = pytest.mark.integration

OWN_REDIS_PORTS = range(6393, 6396)
# The cache's timeout where a test needs Redis to answer: L2Cache's default (50 ms) is
# for serving; a test's calls, a first connect included, must not race it on a busy
# machine.
ANSWER_TIMEOUT_S = 2.0


def key(n: int, at_ms: int | None = None, dataset: str = "users") -> CacheKey:
    return (dataset, n.to_bytes(8, "big"), at_ms)


@pytest.fixture
async def l2(clean_redis: str) -> AsyncIterator[L2Cache]:
    cache = L2Cache(clean_redis, key_prefix="test-l2", timeout_s=ANSWER_TIMEOUT_S)
    yield cache
    await cache.close()


def command_calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


def reads_processed(client: redis.Redis) -> int:
    return int(client.info("stats")["total_reads_processed"])


async def test_round_trip_rows_negatives_and_absent_keys(l2: L2Cache) -> None:
    rows = {
        key(1): (b"\x00\x01avro", 1_700_000_000_123),
        key(2): (b"", 0),  # empty value: still 8 bytes in Redis, never the negative marker
        key(3): (b"\x00", -5),  # one zero byte, like the marker, plus a pre-epoch time
    }
    await l2.put_many([*rows.items(), (key(4), None)], ttl_s=60, negative_ttl_s=60)
    got = await l2.get_many([key(1), key(2), key(3), key(4), key(5)])
    assert got == [rows[key(1)], rows[key(2)], rows[key(3)], Negative, None]
    assert (l2.hits, l2.misses, l2.errors) == (4, 1, 0)
    assert await l2.get_many([]) == []


async def test_keys_are_unambiguous(l2: L2Cache) -> None:
    await l2.put_many([(("ab", b"c", None), (b"value", 1))], ttl_s=60, negative_ttl_s=60)
    got = await l2.get_many([("a", b"bc", None), ("ab", b"c", 0), ("ab", b"c", None)])
    assert got == [None, None, (b"value", 1)]
    assert len({l2.redis_key(k) for k in [("a", b"bc", None), ("ab", b"c", None)]}) == 2


async def test_point_in_time_read_never_returns_the_newer_cached_latest(l2: L2Cache) -> None:
    await l2.put_many([(key(7), (b"new", 2000))], ttl_s=60, negative_ttl_s=60)
    assert await l2.get_many([key(7, at_ms=1500)]) == [None]


async def test_entries_expire_with_their_ttl(l2: L2Cache) -> None:
    # 1 s: the first read must come before the short TTLs end, however busy the machine.
    await l2.put_many([(key(1), (b"v", 1)), (key(2), None)], ttl_s=60, negative_ttl_s=1.0)
    await l2.put_many([(key(3), (b"w", 2))], ttl_s=1.0, negative_ttl_s=60)
    assert await l2.get_many([key(1), key(2), key(3)]) == [(b"v", 1), Negative, (b"w", 2)]
    await asyncio.sleep(1.5)
    assert await l2.get_many([key(1), key(2), key(3)]) == [(b"v", 1), None, None]


async def test_non_positive_ttl_skips_the_write(l2: L2Cache) -> None:
    await l2.put_many([(key(1), (b"v", 1)), (key(2), None)], ttl_s=0, negative_ttl_s=-1)
    assert await l2.get_many([key(1), key(2)]) == [None, None]


async def test_500_keys_are_one_round_trip_each_way(l2: L2Cache, clean_redis: str) -> None:
    admin = redis.Redis.from_url(clean_redis)
    try:
        await l2.ping()  # connect first: the handshake is not part of the batch
        keys = [key(n) for n in range(500)]
        items = [(k, (b"x" * 30, n) if n % 3 else None) for n, k in enumerate(keys)]

        sets, reads = command_calls(admin, "set"), reads_processed(admin)
        await l2.put_many(items, ttl_s=60, negative_ttl_s=60)
        assert command_calls(admin, "set") - sets == 500
        # 500 SETs sent one by one would be >= 500 reads on the server; one pipeline
        # is a few socket reads (its ~40 KB may span buffers) plus our INFO calls.
        assert reads_processed(admin) - reads < 10

        mgets, gets = command_calls(admin, "mget"), command_calls(admin, "get")
        got = await l2.get_many(keys)
        assert command_calls(admin, "mget") - mgets == 1
        assert command_calls(admin, "get") - gets == 0
        assert got == [found if found is not None else Negative for _, found in items]
    finally:
        admin.close()


class OwnRedis:
    """A redis-server this test starts, stops, pauses and restarts on one port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # in case it is paused
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    port = next((p for p in OWN_REDIS_PORTS if not _listening(p)), None)
    if port is None:
        pytest.fail(f"no free port in {OWN_REDIS_PORTS} for a test redis-server")
    server = OwnRedis(port)
    try:
        yield server
    finally:
        server.stop()


async def test_redis_down_is_a_miss_and_recovers_without_a_new_cache(
    own_redis: OwnRedis,
) -> None:
    # Built while Redis is down: construction neither blocks nor fails.
    l2 = L2Cache(own_redis.url, timeout_s=ANSWER_TIMEOUT_S, backoff_s=0)
    try:
        started = time.monotonic()
        assert await l2.get_many([key(1), key(2)]) == [None, None]
        await l2.put_many([(key(1), (b"v", 1))], ttl_s=60, negative_ttl_s=60)
        assert time.monotonic() - started < ANSWER_TIMEOUT_S  # refused at once, no retries
        assert l2.errors == 2
        with pytest.raises(StoreError, match=str(own_redis.port)):
            await l2.ping()

        own_redis.start()
        await l2.put_many([(key(1), (b"v", 1))], ttl_s=60, negative_ttl_s=60)
        assert await l2.get_many([key(1)]) == [(b"v", 1)]

        own_redis.stop()
        assert await l2.get_many([key(1)]) == [None]
        await l2.put_many([(key(2), None)], ttl_s=60, negative_ttl_s=60)
        assert l2.errors == 4

        own_redis.start()  # same port, empty: a fresh server
        await l2.ping()
        await l2.put_many([(key(2), None)], ttl_s=60, negative_ttl_s=60)
        assert await l2.get_many([key(1), key(2)]) == [None, Negative]
        assert l2.errors == 4
    finally:
        await l2.close()


async def test_hung_redis_times_out_then_is_left_alone_for_the_backoff(
    own_redis: OwnRedis,
) -> None:
    own_redis.start()
    # A backoff long enough that the two calls right after the timeout fall within it
    # on a busy machine; the sleep after resume() outlasts it.
    l2 = L2Cache(own_redis.url, timeout_s=1.0, backoff_s=2.0)
    try:
        await l2.put_many([(key(1), (b"v", 1))], ttl_s=60, negative_ttl_s=60)
        assert l2.errors == 0
        own_redis.pause()
        started = time.monotonic()
        assert await l2.get_many([key(1)]) == [None]
        assert time.monotonic() - started < 1.0 + 5  # bounded by timeout_s, not a hang
        assert l2.errors == 1
        # Within the backoff Redis is not asked at all.
        assert await l2.get_many([key(1)]) == [None]
        await l2.put_many([(key(2), None)], ttl_s=60, negative_ttl_s=60)
        assert (l2.errors, l2.skipped) == (1, 2)
        own_redis.resume()
        await asyncio.sleep(2.2)
        assert await l2.get_many([key(1)]) == [(b"v", 1)]
    finally:
        await l2.close()


async def test_errors_are_logged_at_most_once_per_interval(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    l2 = L2Cache(own_redis.url, backoff_s=0, log_every_s=60)
    try:
        with caplog.at_level(logging.WARNING, logger="fetcher.cache.l2"):
            for _ in range(20):
                await l2.get_many([key(1)])
                await l2.put_many([(key(1), None)], ttl_s=1, negative_ttl_s=1)
        assert l2.errors == 40
        records = [r for r in caplog.records if r.name == "fetcher.cache.l2"]
        assert len(records) == 1
        assert str(own_redis.port) in records[0].getMessage()
    finally:
        await l2.close()


async def test_url_password_stays_out_of_errors(own_redis: OwnRedis) -> None:
    l2 = L2Cache(f"redis://:s3cret@127.0.0.1:{own_redis.port}/0")
    try:
        with pytest.raises(StoreError) as info:
            await l2.ping()
        assert "s3cret" not in str(info.value)
    finally:
        await l2.close()
