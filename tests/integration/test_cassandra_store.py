"""CassandraStore against the real Apache Cassandra started by scripts/services.sh.

One keyspace per test session (created with create_schema, dropped at the end),
the table truncated before every test. Outages are made with a TCP proxy in front
of the same Cassandra: stopping the proxy is what a dead node looks like to the
driver (refused connects, reset connections), freezing it is a hung node, and
both take milliseconds where restarting Cassandra takes tens of seconds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy

from kvstores import CassandraStore, Row, StoreError, open_store
from tests.integration.store_contract import StoreContract
from tests.servers import free_port

HOST = "127.0.0.1"
PORT = int(os.environ.get("FETCHER_TEST_CASSANDRA_PORT", "9142"))
START = "scripts/services.sh start cassandra"
# Generous: the CI machine has 2 shared cores; speed is measured in bench/, not here.
SLOW_S = 60.0


def _cluster() -> Cluster:
    policy = DCAwareRoundRobinPolicy()
    profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=SLOW_S)
    return Cluster([HOST], port=PORT, protocol_version=5,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile})  # fmt: skip


@pytest.fixture(scope="session")
def cassandra_keyspace() -> Iterator[str]:
    """A fresh keyspace with the store's schema, made by create_schema(); dropped at the end."""
    try:
        socket.create_connection((HOST, PORT), 2.0).close()
    except OSError:
        pytest.fail(f"Cassandra not reachable at {HOST}:{PORT}: run `{START}`")
    keyspace = f"fetcher_test_{os.getpid()}"

    async def create() -> None:
        store = CassandraStore(HOST, PORT, keyspace, timeout_s=SLOW_S)
        try:
            await store.create_schema()
            await store.create_schema()  # IF NOT EXISTS: running it again is harmless
        finally:
            await store.close()

    asyncio.run(create())
    yield keyspace
    cluster = _cluster()
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=SLOW_S)
    finally:
        cluster.shutdown()


@pytest.fixture(scope="session")
def cql(cassandra_keyspace: str) -> Iterator[Session]:
    """A plain driver session on the test keyspace, as a batch job writing rows would use."""
    cluster = _cluster()
    try:
        yield cluster.connect(cassandra_keyspace)
    finally:
        cluster.shutdown()


@pytest.fixture
def keyspace(cassandra_keyspace: str, cql: Session) -> str:
    """The test keyspace with its table emptied."""
    cql.execute("TRUNCATE versions", timeout=SLOW_S)
    return cassandra_keyspace


@pytest.fixture
async def store(keyspace: str) -> AsyncIterator[CassandraStore]:
    """A store on the empty test table."""
    store = CassandraStore(HOST, PORT, keyspace, timeout_s=SLOW_S, write_timeout_s=SLOW_S)
    yield store
    await store.close()


class TestCassandraStoreContract(StoreContract):
    """The shared contract against CassandraStore (uses the `store` fixture above)."""


# -- layout: what a job writing with plain CQL sees --------------------------------


async def test_rows_written_with_plain_cql_are_read(store: CassandraStore, cql: Session) -> None:
    insert = "INSERT INTO versions (dataset, key, event_ms, value) VALUES (%s, %s, %s, %s)"
    cql.execute(insert, ("user_profile", b"\x00" * 7 + b"\x07", 1_700_000_000_000, b"\xc3\x01a"))
    cql.execute(insert, ("user_profile", b"\x00" * 7 + b"\x07", 1_600_000_000_000, b"\xc3\x01b"))
    got = await store.multi_get(
        [("user_profile", b"\x00" * 7 + b"\x07", None),
         ("user_profile", b"\x00" * 7 + b"\x07", 1_650_000_000_000)]
    )  # fmt: skip
    assert got == [(b"\xc3\x01a", 1_700_000_000_000), (b"\xc3\x01b", 1_600_000_000_000)]


async def test_writes_use_ttl_per_version(store: CassandraStore, cql: Session) -> None:
    # A TTL of 3 s leaves the SELECT below time to see the row on a busy machine.
    await store.multi_put([Row("d", b"k", b"old", 1_000), Row("d", b"k", b"new", 2_000, ttl_s=3)])
    rows = cql.execute("SELECT event_ms, TTL(value) FROM versions WHERE dataset='d' AND key=0x6b")
    ttls = {event_ms: ttl for event_ms, ttl in rows}
    assert ttls[1_000] is None and ttls[2_000] in (0, 1, 2, 3)  # USING TTL 3 on the new one only
    await asyncio.sleep(4.2)
    # The expired version is gone; the older one without TTL is the latest again.
    assert await store.multi_get([("d", b"k", None)]) == [(b"old", 1_000)]


async def test_batch_of_1000_lookups_with_a_small_in_flight_bound(keyspace: str) -> None:
    store = CassandraStore(HOST, PORT, keyspace, timeout_s=SLOW_S, write_timeout_s=SLOW_S,
                           max_in_flight=8)  # fmt: skip
    rows = [Row("d", b"k%04d" % (i // 2), b"v%d" % i, i) for i in range(1_000)]
    await store.multi_put(rows)
    lookups: list[tuple[str, bytes, int | None]] = []
    expected: list[tuple[bytes, int] | None] = []
    for i in range(1_000):
        key = b"k%04d" % (i % 600)  # keys 500..599 were never written
        lookups.append(("d", key, None if i % 3 else 2 * (i % 600)))
        if i % 600 >= 500:
            expected.append(None)
        elif i % 3:
            expected.append((b"v%d" % (2 * (i % 600) + 1), 2 * (i % 600) + 1))
        else:
            expected.append((b"v%d" % (2 * (i % 600)), 2 * (i % 600)))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    got = await store.multi_get(lookups)
    ticks_while_waiting = ticks
    ticking.cancel()
    assert got == expected
    # The loop kept running other tasks while the 1000 queries were out.
    assert ticks_while_waiting > 1
    await store.close()


async def test_consistency_per_call_and_per_url(store: CassandraStore, keyspace: str) -> None:
    await store.multi_put([Row("d", b"k", b"v", 1)], consistency="ONE")
    assert await store.multi_get([("d", b"k", None)], consistency="ALL") == [(b"v", 1)]
    # One replica (replication_factor 1) cannot satisfy TWO: Cassandra says Unavailable.
    with pytest.raises(StoreError, match=r"Unavailable|Cannot achieve consistency"):
        await store.multi_get([("d", b"k", None)], consistency="TWO")
    strict = open_store(f"cassandra://{HOST}:{PORT}/{keyspace}?consistency=TWO&timeout_s=30")
    assert isinstance(strict, CassandraStore)
    with pytest.raises(StoreError, match=r"Unavailable|Cannot achieve consistency"):
        await strict.multi_get([("d", b"k", None)])
    await strict.close()
    with pytest.raises(ValueError, match="consistency 'MOST'"):
        await store.multi_get([("d", b"k", None)], consistency="MOST")


async def test_missing_table_says_how_to_create_it() -> None:
    store = CassandraStore(HOST, PORT, "no_such_keyspace_here", timeout_s=SLOW_S)
    with pytest.raises(StoreError, match="create_schema"):
        await store.multi_get([("d", b"k", None)])
    await store.close()


def test_url_options_reach_the_store() -> None:
    store = open_store(
        f"cassandra://10.0.0.1,10.0.0.2:{PORT}/features?consistency=local_quorum"
        "&max_in_flight=64&timeout_s=0.2&replication=dc1:3,dc2:2&local_dc=dc1"
    )
    assert isinstance(store, CassandraStore)
    assert (store.contact_points, store.port, store.keyspace) == (
        ["10.0.0.1", "10.0.0.2"], PORT, "features",
    )  # fmt: skip
    assert (store.max_in_flight, store.timeout_s, store.local_dc) == (64, 0.2, "dc1")
    assert store.replication == {"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 2}
    with pytest.raises(ValueError, match="unknown option 'retries'"):
        open_store("cassandra://h/ks?retries=3")
    with pytest.raises(ValueError, match="keyspace"):
        open_store("cassandra://h/")


# -- outages: a TCP proxy in front of the test Cassandra ---------------------------


class CassandraProxy:
    """Forwards a free local port to the test Cassandra; can stop, start and freeze."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, HOST, self.port)

    async def stop(self) -> None:
        """Close the port and reset every open connection, as a crashed node would."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def freeze(self) -> None:
        """Hold every byte in either direction: a node that accepts but never answers."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def _connected(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(HOST, PORT)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, server_w))
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w),
                             return_exceptions=True)  # fmt: skip
        for writer in (client_w, server_w):
            writer.transport.abort()
            self._writers.discard(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@pytest.fixture
async def proxy() -> AsyncIterator[CassandraProxy]:
    proxy = CassandraProxy()
    yield proxy
    proxy.thaw()
    await proxy.stop()


async def _until_answers(store: CassandraStore, within_s: float = 30.0) -> None:
    """Poll until the store answers again (it must recover without help)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await store.ping()
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_nothing_listening_is_a_store_error_and_construction_is_lazy(keyspace: str) -> None:
    store = CassandraStore(HOST, free_port(), keyspace, timeout_s=2.0)  # nothing listens
    calls: list[Callable[[], Awaitable[object]]] = [
        store.ping,
        lambda: store.multi_get([("d", b"k", None)]),
        lambda: store.multi_put([Row("d", b"k", b"v", 1)]),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreError, match="connect") as info:
            await call()
        assert info.value.__cause__ is not None
        assert time.monotonic() - started < 10.0  # fails, does not hang
    await store.close()


async def test_store_built_while_down_recovers_when_cassandra_appears(
    keyspace: str, proxy: CassandraProxy
) -> None:
    store = CassandraStore(HOST, proxy.port, keyspace, timeout_s=5.0, retry_connect_s=0.2)
    with pytest.raises(StoreError):
        await store.multi_get([("d", b"k", None)])
    await proxy.start()
    await _until_answers(store)
    await store.multi_put([Row("d", b"k", b"v", 1)])
    assert await store.multi_get([("d", b"k", None)]) == [(b"v", 1)]
    await store.close()


async def test_node_lost_then_back_same_store(keyspace: str, proxy: CassandraProxy) -> None:
    await proxy.start()
    store = CassandraStore(HOST, proxy.port, keyspace, timeout_s=5.0)
    await store.multi_put([Row("d", b"k", b"v", 1)])
    await proxy.stop()
    with pytest.raises(StoreError) as info:
        await store.multi_get([("d", b"k", None)])
    assert info.value.__cause__ is not None
    with pytest.raises(StoreError):
        await store.multi_put([Row("d", b"k", b"v2", 2)])
    await proxy.start()
    await _until_answers(store)  # the driver reconnects by itself
    assert await store.multi_get([("d", b"k", None)]) == [(b"v", 1)]
    await store.close()


async def test_hung_node_times_out_then_recovers(keyspace: str, proxy: CassandraProxy) -> None:
    await proxy.start()
    # Frozen: a timeout; thawed: ample time on a busy machine.
    store = CassandraStore(HOST, proxy.port, keyspace, timeout_s=2.0)
    await store.multi_put([Row("d", b"k", b"v", 1)])
    proxy.freeze()
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.multi_get([("d", b"k", None), ("d", b"x", None)]),
            store.ping,
        ]
        for call in calls:
            with pytest.raises(StoreError, match=r"Timeout|OperationTimedOut|no answer") as info:
                await call()
            assert info.value.__cause__ is not None
    finally:
        proxy.thaw()
    # Late answers to the timed-out requests must not leak into later calls.
    for _ in range(3):
        assert await store.multi_get([("d", b"k", None), ("d", b"x", None)]) == [(b"v", 1), None]
    await store.close()


async def test_close_releases_the_driver(keyspace: str) -> None:
    store = CassandraStore(HOST, PORT, keyspace, timeout_s=SLOW_S)
    await store.ping()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.ping()
