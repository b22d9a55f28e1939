"""The store contract against EmbeddedStore and RedisStore, plus what only they promise.

Redis tests use the shared test server (`clean_redis`) or, when they must stop it,
a dedicated redis-server process on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kvstores import EmbeddedStore, RedisStore, Row, StoreError
from kvstores.redis import _WRITE_SCRIPT
from tests.integration.store_contract import StoreContract
from tests.servers import free_port, spy_redis_read_writes

ROOT = Path(__file__).resolve().parents[2]


class TestEmbeddedStoreContract(StoreContract):
    """The contract against EmbeddedStore in a temp dir."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
        store = EmbeddedStore(tmp_path / "store.lmdb", map_size=64 << 20)
        yield store
        await store.close()


class TestRedisStoreContract(StoreContract):
    """The contract against RedisStore on the shared test redis-server."""

    @pytest.fixture
    async def store(self, clean_redis: str) -> AsyncIterator[RedisStore]:
        store = RedisStore(clean_redis, timeout_s=2.0)
        yield store
        await store.close()


# -- Redis: a dedicated server we can stop, freeze and restart ------------------------


class RedisServer:
    """A redis-server child process on a fixed port, without persistence."""

    def __init__(self, port: int, *extra_args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH: run scripts/services.sh install")
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot exit
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


# The store timeout where calls must succeed after a (re)start: the first one connects,
# which must not race a sub-second timer on a busy machine.
ANSWER_TIMEOUT_S = 2.0


async def _raises_store_error_fast(store: RedisStore, within_s: float = 2.0) -> StoreError:
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await store.multi_get([("d", b"k", None)])
    assert time.monotonic() - started < within_s
    assert info.value.__cause__ is not None
    return info.value


async def test_redis_construction_is_lazy_and_ping_reports() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)  # nothing listens
    with pytest.raises(StoreError, match="ping failed"):
        await store.ping()
    await _raises_store_error_fast(store)
    with pytest.raises(StoreError):
        await store.multi_put([Row("d", b"k", b"v", 1)])
    await store.close()


async def test_redis_down_then_back_same_store(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout_s=ANSWER_TIMEOUT_S)
    await store.multi_put([Row("d", b"k", b"v", 1)])
    assert await store.multi_get([("d", b"k", None)]) == [(b"v", 1)]

    own_redis.stop()
    await _raises_store_error_fast(store)
    with pytest.raises(StoreError):
        await store.ping()

    own_redis.start()  # same port, empty (no persistence)
    assert await store.multi_get([("d", b"k", None)]) == [None]
    await store.multi_put([Row("d", b"k", b"again", 2)])
    assert await store.multi_get([("d", b"k", None)]) == [(b"again", 2)]

    # Restarted between two calls: the pooled connection is stale, not reused.
    # The loop must run once to see the closed socket, as it always does in a
    # server between a restart and the next request.
    own_redis.stop()
    await asyncio.sleep(0.05)
    own_redis.start()
    assert await store.multi_get([("d", b"k", None)]) == [None]
    await store.ping()
    await store.close()


async def test_redis_hung_server_times_out_then_recovers(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout_s=ANSWER_TIMEOUT_S)
    await store.multi_put([Row("d", b"k", b"v", 1)])
    own_redis.freeze()
    try:
        # At the store timeout, not a hang.
        error = await _raises_store_error_fast(store, within_s=ANSWER_TIMEOUT_S + 5.0)
        assert "timeout" in repr(error.__cause__).lower()
        with pytest.raises(StoreError):
            await store.ping()
    finally:
        own_redis.thaw()
    # The replies the frozen server sends late must not leak into later calls.
    for _ in range(3):
        assert await store.multi_get([("d", b"k", None), ("d", b"x", None)]) == [(b"v", 1), None]
    await store.close()


def _info(url: str, section: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        return dict(client.info(section))
    finally:
        client.close()


async def test_redis_multi_get_is_one_round_trip(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0)
    await store.multi_put([Row("d", b"%d" % i, b"v%d" % (i % 7), i % 5) for i in range(1000)])
    await store.multi_get([("d", b"warm-up", 1)])  # the connection, its handshake, the script

    # Count socket writes on the real connection (a spy, not a mock): one pipeline
    # is one write followed by reading all replies, i.e. one round trip.
    connects = store._reads.connects
    sends = spy_redis_read_writes(monkeypatch)
    before = _info(clean_redis, "commandstats")

    got = await store.multi_get([("d", b"%d" % i, None if i % 2 else 3) for i in range(1000)])

    after = _info(clean_redis, "commandstats")
    # One write, and no new connection (its handshake would be a write too)...
    assert len(sends) == 1
    assert store._reads.connects == connects
    # ...that carried every lookup to the server: 500 latest keys in one MGET, the
    # 500 lookups with a time in one script of 500 ZRANGEs.
    assert after["cmdstat_mget"]["calls"] - before.get("cmdstat_mget", {}).get("calls", 0) == 1
    assert after["cmdstat_zrange"]["calls"] - before["cmdstat_zrange"]["calls"] == 500
    assert got == [
        (b"v%d" % (i % 7), i % 5) if i % 2 or i % 5 <= 3 else None for i in range(1000)
    ]
    await store.close()


async def test_redis_layout_matches_the_docs(clean_redis: str) -> None:
    # What docs/storage-layout.md tells a Spark job to write, the store must read.
    raw = redis.Redis.from_url(clean_redis)
    key = b"ft:users:{\x00\x00\x00\x00\x00\x00\x00\x07}"
    for ts, value in ((1_000, b"old"), (2_000, b"new")):
        raw.zadd(key, {struct.pack(">q", ts) + value: ts})
    raw.expire(key, 3_600)
    store = RedisStore(clean_redis, timeout_s=2.0)
    lookups = [("users", struct.pack(">q", 7), None), ("users", struct.pack(">q", 7), 1_500)]
    assert await store.multi_get(lookups) == [(b"new", 2_000), (b"old", 1_000)]

    # And what the store writes is exactly that layout, with the latest copy.
    await store.multi_put([Row("items", b"\x01}", b"val", 42, ttl_s=100)])
    written = raw.zrange(b"ft:items:{\x01}}", 0, -1, withscores=True)
    assert written == [(struct.pack(">q", 42) + b"val", 42.0)]
    assert raw.get(b"ft:items:{\x01}}:latest") == struct.pack(">q", 42) + b"val"
    assert 0 < raw.ttl(b"ft:items:{\x01}}") <= 100
    assert 0 < raw.ttl(b"ft:items:{\x01}}:latest") <= 100
    # An entity key starting with "}" gets no latest copy (docs/storage-layout.md).
    await store.multi_put([Row("items", b"}\x02", b"v2", 43)])
    assert raw.exists(b"ft:items:{}\x02}", b"ft:items:{}\x02}:latest") == 1
    assert await store.multi_get([("items", b"}\x02", None)]) == [(b"v2", 43)]
    raw.close()
    await store.close()


def _lua_statements(text: str) -> list[str]:
    # Each line without its comment and blanks; empty lines dropped.
    lines = (line.split("--", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_redis_write_script_in_the_docs_is_the_stores() -> None:
    # docs/storage-layout.md gives jobs the write script; it must be the one the store runs.
    docs = (Path(__file__).resolve().parents[2] / "docs" / "storage-layout.md").read_text()
    block = re.search(r"```lua\n(.*?)```", docs, re.S)
    assert block is not None
    assert _lua_statements(block.group(1)) == _lua_statements(_WRITE_SCRIPT.decode())


async def test_redis_trims_versions_and_newest_write_sets_ttl(clean_redis: str) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0, max_versions=3, key_prefix="t")
    await store.multi_put([Row("d", b"k", b"v%d" % ts, ts, ttl_s=50) for ts in range(1, 7)])
    raw = redis.Redis.from_url(clean_redis)
    assert raw.zrange(b"t:d:{k}", 0, -1, withscores=True) == [
        (struct.pack(">q", ts) + b"v%d" % ts, float(ts)) for ts in (4, 5, 6)
    ]
    assert await store.multi_get([("d", b"k", 3)]) == [None]
    assert 0 < raw.ttl(b"t:d:{k}") <= 50
    await store.multi_put([Row("d", b"k", b"v7", 7)])  # no TTL: the entity is kept for good
    assert raw.ttl(b"t:d:{k}") == -1
    raw.close()
    await store.close()


async def test_redis_rejects_event_times_a_double_cannot_hold(clean_redis: str) -> None:
    store = RedisStore(clean_redis, timeout_s=2.0)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        await store.multi_put([Row("d", b"k", b"v", 2**53 + 1)])
    await store.close()


# -- Embedded: one writer process, other reader processes ----------------------------

_CHILD = """
import asyncio, json, sys
from kvstores import EmbeddedStore, Row

async def main(path, mode):
    store = EmbeddedStore(path, readonly=(mode == "read"))
    if mode == "write":
        rows = [Row("d", b"child-%d" % i, b"from child", 100 + i) for i in range(50)]
        await store.multi_put(rows)
    else:
        got = await store.multi_get([("d", b"parent-%d" % i, None) for i in range(50)])
        print(json.dumps([None if f is None else [f[0].decode(), f[1]] for f in got]))
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _child(path: Path, mode: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode],
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def test_embedded_reader_sees_rows_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "shared.lmdb"
    reader = EmbeddedStore(path)  # opened before the other process writes
    assert await reader.multi_get([("d", b"child-0", None)]) == [None]
    _child(path, "write")
    got = await reader.multi_get([("d", b"child-%d" % i, None) for i in range(50)])
    assert got == [(b"from child", 100 + i) for i in range(50)]
    await reader.close()


async def test_embedded_child_reader_sees_rows_this_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "shared.lmdb"
    writer = EmbeddedStore(path)
    await writer.multi_put([Row("d", b"parent-%d" % i, b"from parent", i) for i in range(0, 50, 2)])
    got = json.loads(_child(path, "read"))  # while this process keeps the env open
    assert got == [["from parent", i] if i % 2 == 0 else None for i in range(50)]
    await writer.close()
