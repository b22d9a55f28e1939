"""RedisStore's pipelined read connection on a real redis-server: sharing, order, failures.

The contract suite checks the values; these tests check what pipelining could get
wrong: a reply reaching the wrong request (after a cancellation, a lost connection, a
stuck server), the handshake (AUTH, SELECT, unix socket), and bytes that are not RESP.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import uvloop

from kvstores import Lookup, RedisStore, Row, StoreError
from kvstores.redis import _MIN_STALE_S, _STALE_TIMEOUTS
from kvstores.redis_pipeline import PipelinedConnection, RedisProtocolError
from tests.e2e.tls_certs import CertAuthority
from tests.integration.test_store_contract import RedisServer
from tests.servers import free_port, spy_redis_read_writes


async def _filled(url: str, users: int = 300, **options: float) -> RedisStore:
    store = RedisStore(url, **options)  # type: ignore[arg-type]
    await store.multi_put([Row("d", b"%d" % i, b"value-%d" % i, i) for i in range(users)])
    return store


def _expected(users: list[int]) -> list[tuple[bytes, int]]:
    return [(b"value-%d" % i, i) for i in users]


async def test_concurrent_reads_share_one_connection_and_each_gets_its_own_answer(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _filled(clean_redis, timeout_s=5.0)
    await store.multi_get([("d", b"0", None)])  # connected, the script loaded
    writes = spy_redis_read_writes(monkeypatch)
    batches = [[(i * 7 + j) % 300 for j in range(1 + i % 5)] for i in range(400)]

    async def read(users: list[int]) -> list[object]:
        return await store.multi_get([("d", b"%d" % u, None) for u in users])

    answers = await asyncio.gather(*(read(users) for users in batches))
    assert answers == [_expected(users) for users in batches]
    assert store._reads.connects == 1  # 400 concurrent calls, one connection...
    assert len(writes) == 400  # ...one write each
    await store.close()


async def test_a_cancelled_read_leaves_the_others_in_order(clean_redis: str) -> None:
    connection = PipelinedConnection(clean_redis, connect_timeout_s=2.0, stale_after_s=5.0)
    client = redis.Redis.from_url(clean_redis)
    client.set("x", b"x-value")
    # BLPOP on an empty list holds the connection for 0.3 s, then answers nil: the
    # GET and PING behind it wait, and must get their own replies, not BLPOP's.
    blocked = asyncio.ensure_future(
        connection.exchange(b"*3\r\n$5\r\nBLPOP\r\n$5\r\nempty\r\n$3\r\n0.3\r\n", 1)
    )
    await asyncio.sleep(0.05)
    after = asyncio.ensure_future(connection.exchange(b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n", 1))
    blocked.cancel()
    assert await after == [b"x-value"]
    assert await connection.exchange(b"*1\r\n$4\r\nPING\r\n", 1) == [b"PONG"]
    assert connection.connects == 1  # the cancellation cost no reconnection
    connection.close()
    client.close()


async def test_a_restarted_redis_fails_the_reads_in_flight_then_serves_again(
    own_redis: RedisServer,
) -> None:
    store = await _filled(own_redis.url, timeout_s=2.0)
    assert await store.multi_get([("d", b"1", None)]) == _expected([1])
    own_redis.stop()
    with pytest.raises(StoreError, match="multi_get failed"):
        await store.multi_get([("d", b"1", None)])
    own_redis.start()  # empty (no persistence): the script is gone too
    await store.multi_put([Row("d", b"1", b"value-1", 1)])
    assert await store.multi_get([("d", b"1", None)]) == _expected([1])
    assert store._reads.connects == 2
    await store.close()


async def test_a_briefly_frozen_redis_times_out_reads_then_serves_on_the_same_connection(
    own_redis: RedisServer,
) -> None:
    # 2 s: the read after the thaw must not race the timeout, and the freeze (about
    # one timeout) stays far below the stale limit, max(1 s, 4 timeouts) = 8 s.
    timeout_s = 2.0
    store = await _filled(own_redis.url, timeout_s=timeout_s)
    assert await store.multi_get([("d", b"2", None)]) == _expected([2])
    own_redis.freeze()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(store.multi_get([("d", b"%d" % i, None)]) for i in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreError) for r in results), results
        # Each bounded by the store timeout, side by side (one after the other: 5 timeouts).
        assert loop.time() - started < 2.5 * timeout_s
    finally:
        own_redis.thaw()
    # Frozen for less than the stale limit: the connection is kept; the five late
    # replies are read and dropped, never handed to this read.
    assert await store.multi_get([("d", b"3", None)]) == _expected([3])
    assert store._reads.connects == 1
    await store.close()


async def test_reads_cancelled_by_their_callers_do_not_wedge_a_stuck_connection(
    own_redis: RedisServer,
) -> None:
    # The engine cancels a read when the client's deadline is shorter than the store
    # timeout, so the store's own timeout never fires: the connection must still be
    # dropped once its oldest request is older than the stale limit. A 1 s store timeout
    # so that the read after the thaw, on a new connection, does not race it.
    timeout_s = 1.0
    stale_s = max(_MIN_STALE_S, _STALE_TIMEOUTS * timeout_s)
    store = await _filled(own_redis.url, timeout_s=timeout_s)
    assert await store.multi_get([("d", b"4", None)]) == _expected([4])
    own_redis.freeze()
    try:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await store.multi_get([("d", b"4", None)])
        await asyncio.sleep(stale_s + 0.05)
    finally:
        own_redis.thaw()
    assert await store.multi_get([("d", b"5", None)]) == _expected([5])
    assert store._reads.connects == 2
    await store.close()


async def test_password_and_database_from_the_url() -> None:
    server = RedisServer(free_port(), "--requirepass", "s3cret")
    server.start()
    try:
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        store = await _filled(url, users=3, timeout_s=2.0)
        assert await store.multi_get([("d", b"2", None)]) == _expected([2])
        # SELECT 3 reached the read connection: db 0 holds nothing.
        db0 = RedisStore(f"redis://:s3cret@127.0.0.1:{server.port}/0", timeout_s=2.0)
        assert await db0.multi_get([("d", b"2", None)]) == [None]
        wrong = RedisStore(f"redis://:wrong@127.0.0.1:{server.port}/3", timeout_s=2.0)
        with pytest.raises(StoreError, match="refused the connection"):
            await wrong.multi_get([("d", b"2", None)])
        for s in (store, db0, wrong):
            await s.close()
    finally:
        server.stop()


async def test_unix_socket_url(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    server = RedisServer(free_port(), "--unixsocket", str(path), "--unixsocketperm", "700")
    server.start()
    try:
        for _ in range(100):
            if path.exists():
                break
            await asyncio.sleep(0.02)
        store = await _filled(f"unix://{path}?db=0", users=3, timeout_s=2.0)
        assert await store.multi_get([("d", b"1", None), ("d", b"9", None)]) == [
            *_expected([1]),
            None,
        ]
        await store.close()
    finally:
        server.stop()


@pytest.fixture
async def fake_redis() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP server that answers every request with whatever the test queued."""
    answers: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            if answers:
                writer.write(answers.pop(0))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, answers
    server.close()


async def test_bytes_that_are_not_resp_fail_the_read_and_the_connection(
    fake_redis: tuple[int, list[bytes]],
) -> None:
    port, answers = fake_redis
    connection = PipelinedConnection(
        f"redis://127.0.0.1:{port}/0", connect_timeout_s=1.0, stale_after_s=1.0
    )
    answers.append(b"?garbage\r\n")
    with pytest.raises(RedisProtocolError, match="unreadable reply"):
        await connection.exchange(b"*1\r\n$4\r\nPING\r\n", 1)
    answers.append(b"+PONG\r\n")
    assert await connection.exchange(b"*1\r\n$4\r\nPING\r\n", 1) == [b"PONG"]
    assert connection.connects == 2
    connection.close()


async def test_a_reply_nobody_asked_for_fails_the_connection(
    fake_redis: tuple[int, list[bytes]],
) -> None:
    port, answers = fake_redis
    connection = PipelinedConnection(
        f"redis://127.0.0.1:{port}/0", connect_timeout_s=1.0, stale_after_s=1.0
    )
    answers.append(b"+PONG\r\n+EXTRA\r\n")
    # The extra reply arrives with the expected one: the request got its answer, and
    # the connection, now out of step, is closed rather than trusted.
    assert await connection.exchange(b"*1\r\n$4\r\nPING\r\n", 1) == [b"PONG"]
    await asyncio.sleep(0.05)
    answers.append(b"+PONG\r\n")
    assert await connection.exchange(b"*1\r\n$4\r\nPING\r\n", 1) == [b"PONG"]
    assert connection.connects == 2
    connection.close()


async def test_a_closed_store_refuses_reads(clean_redis: str) -> None:
    store = await _filled(clean_redis, users=1, timeout_s=1.0)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.multi_get([("d", b"0", None)])


def test_the_same_reads_on_uvloop(clean_redis: str) -> None:
    # The server runs on uvloop, whose transports are not asyncio's classes.
    async def main() -> None:
        store = await _filled(clean_redis, timeout_s=2.0)
        batches = [[(i * 11 + j) % 300 for j in range(1 + i % 3)] for i in range(200)]
        answers = await asyncio.gather(
            *(store.multi_get([("d", b"%d" % u, None) for u in users]) for users in batches)
        )
        assert answers == [_expected(users) for users in batches]
        assert store._reads.connects == 1
        await store.close()

    uvloop.run(main())


def test_nothing_listens_is_a_store_error() -> None:
    port = free_port()
    with socket.socket() as probe:  # the port is free: nothing answers there
        assert probe.connect_ex(("127.0.0.1", port)) != 0

    async def read() -> None:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
        lookups: list[Lookup] = [("d", b"1", None)]
        try:
            with pytest.raises(StoreError, match="multi_get failed"):
                await store.multi_get(lookups)
        finally:
            await store.close()

    asyncio.run(read())


async def test_tls_url_verifies_the_server(tmp_path: Path) -> None:
    authority = CertAuthority(tmp_path)
    cert = authority.issue("redis", "127.0.0.1", server=True)
    port = free_port()
    server = RedisServer(
        port, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert.cert_file),
        "--tls-key-file", str(cert.key_file), "--tls-ca-cert-file", str(authority.pem.cert_file),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    server.start()
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={authority.pem.cert_file}"
        store = await _filled(url, users=3, timeout_s=2.0)
        assert await store.multi_get([("d", b"2", None)]) == _expected([2])
        await store.close()
        # Another CA: the server's certificate is refused.
        (tmp_path / "other").mkdir()
        other = CertAuthority(tmp_path / "other")
        untrusted = RedisStore(
            f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={other.pem.cert_file}", timeout_s=2.0
        )
        with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.multi_get([("d", b"2", None)])
        await untrusted.close()
    finally:
        server.stop()
