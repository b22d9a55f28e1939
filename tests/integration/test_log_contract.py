"""The aggregation-log contract against all five stores, plus what each promises of its own.

The contract (tests/integration/log_contract.py) runs on EmbeddedStore, RedisStore,
RedisClusterStore, CassandraStore and DynamoDBStore on the servers scripts/services.sh
starts. Nothing is flushed: each test writes under its own key prefix, dataset, keyspace
or table prefix and removes it afterwards. The rest checks the documented bytes
(docs/storage-layout.md, "the log"), round trips and what a dead backend answers.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from cassandra.cluster import Cluster, Session
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from kvstores import (
    CassandraStore,
    DynamoDBStore,
    EmbeddedStore,
    KVStore,
    LogEntry,
    LogRead,
    RedisClusterStore,
    RedisStore,
    Row,
    StoreError,
    open_store,
)
from kvstores.redis_log import READ_LOG_SCRIPT, WRITE_LOG_SCRIPT
from tests.integration.log_contract import LogContract, StoreOpener
from tests.integration.test_cassandra_store import HOST, PORT, SLOW_S, START
from tests.integration.test_dynamodb_store import Sent, dynamodb_url  # noqa: F401 (fixture)
from tests.integration.test_redis_cluster_store import cluster_url  # noqa: F401 (fixture)
from tests.integration.test_store_contract import RedisServer
from tests.log_model import MAX_TS
from tests.servers import free_port, spy_redis_read_writes

ROOT = Path(__file__).resolve().parents[2]
ANSWER_TIMEOUT_S = 2.0  # a store's first call connects: never race a sub-second timer


# -- the contract on every backend -------------------------------------------------------


class TestEmbeddedLog(LogContract):
    """The log contract on EmbeddedStore (expiry in ms: a short TTL is exact)."""

    ttl_s = 1
    ttl_gone_s = 1.3
    model_examples = 30

    @pytest.fixture
    def open_log_store(self, tmp_path: Path) -> StoreOpener:
        async def open_() -> KVStore:
            return EmbeddedStore(tmp_path / "log.lmdb", map_size=64 << 20)

        return open_


def _delete_redis_keys(client: Any, prefix: str) -> None:
    for key in list(client.scan_iter(match=prefix + ":*", count=1_000)):
        client.delete(key)


class TestRedisLog(LogContract):
    """The log contract on RedisStore (EXPIRE is exact to the ms)."""

    ttl_s = 1
    ttl_gone_s = 1.5

    @pytest.fixture
    def open_log_store(self, redis_url: str) -> Iterator[StoreOpener]:
        prefix = f"lt{uuid.uuid4().hex[:10]}"

        async def open_() -> KVStore:
            return RedisStore(redis_url, timeout_s=ANSWER_TIMEOUT_S, key_prefix=prefix)

        yield open_
        client = redis.Redis.from_url(redis_url)
        _delete_redis_keys(client, prefix)
        client.close()


def _cluster_client(url: str) -> redis.RedisCluster:
    host, _, port = url.partition("://")[2].split(",")[0].rpartition(":")
    return redis.RedisCluster(host=host, port=int(port), socket_timeout=5)


class TestRedisClusterLog(LogContract):
    """The log contract on RedisClusterStore."""

    ttl_s = 1
    ttl_gone_s = 1.5

    @pytest.fixture
    def open_log_store(self, cluster_url: str) -> Iterator[StoreOpener]:  # noqa: F811
        prefix = f"lt{uuid.uuid4().hex[:10]}"

        async def open_() -> KVStore:
            return open_store(f"{cluster_url}?key_prefix={prefix}", timeout_s=ANSWER_TIMEOUT_S)

        yield open_
        client = _cluster_client(cluster_url)
        for node in client.get_primaries():
            _delete_redis_keys(client.get_redis_connection(node), prefix)
        client.close()


def _cql_session() -> tuple[Cluster, Session]:
    cluster = Cluster([HOST], port=PORT, protocol_version=5)
    return cluster, cluster.connect()


@pytest.fixture(scope="session")
def log_keyspace() -> Iterator[str]:
    """A keyspace made by CassandraStore.create() (run twice: idempotent); dropped at the end."""
    try:
        socket.create_connection((HOST, PORT), 2.0).close()
    except OSError:
        pytest.fail(f"Cassandra not reachable at {HOST}:{PORT}: run `{START}`")
    keyspace = f"fetcher_log_test_{os.getpid()}"

    async def create() -> None:
        store = CassandraStore(HOST, PORT, keyspace, timeout_s=SLOW_S)
        try:
            await store.create()
            await store.create()
        finally:
            await store.close()

    asyncio.run(create())
    yield keyspace
    cluster, session = _cql_session()
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=SLOW_S)
    finally:
        cluster.shutdown()


class TestCassandraLog(LogContract):
    """The log contract on CassandraStore (TTLs count whole seconds: one may end early)."""

    ttl_s = 2
    ttl_gone_s = 2.6
    sees_known_part = False  # a known part is left out by the slice: never read

    @pytest.fixture
    def open_log_store(self, log_keyspace: str) -> StoreOpener:
        async def open_() -> KVStore:
            return CassandraStore(HOST, PORT, log_keyspace, timeout_s=SLOW_S,
                                  write_timeout_s=SLOW_S)  # fmt: skip

        return open_


# moto's TransactWriteItems is not thread-safe: it deep-copies the table for its rollback
# while another transaction on that table writes it, and answers 500 ("dictionary changed
# size during iteration"). DynamoDB has no such limit; these stores send one request at a
# time so that moto holds (test_dynamodb_read_logs_queries_in_parallel checks reads).
MOTO_SAFE = {"max_pool_connections": 1}


def _boto(url: str) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=url,
                        aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip


class TestDynamoDBLog(LogContract):
    """The log contract on DynamoDBStore (moto): expires_at is rounded up to a second.

    A Query is read-committed, not isolated from a transaction in progress: a read while
    a key is written may see part of it (the write itself is still all or nothing).
    """

    ttl_s = 1
    ttl_gone_s = 2.6
    isolated_reads = False
    model_examples = 6
    long_scan = 600  # still more than one Query page (500)
    many_keys = 30
    sees_known_part = False  # a known part's sort key is below the Query's range

    @pytest.fixture
    def open_log_store(self, dynamodb_url: str) -> Iterator[StoreOpener]:  # noqa: F811
        prefix = f"t{uuid.uuid4().hex[:12]}_"

        async def open_() -> KVStore:
            store = DynamoDBStore(prefix, endpoint_url=dynamodb_url, timeout_s=30.0,
                                  write_timeout_s=90.0, **MOTO_SAFE)  # fmt: skip
            await store.create()
            return store

        yield open_
        client = _boto(dynamodb_url)
        tables = set(client.list_tables()["TableNames"])
        for suffix in ("versions", "latest", "log"):
            if prefix + suffix in tables:
                client.delete_table(TableName=prefix + suffix)


# -- what a dead backend answers -----------------------------------------------------------


def _dead_stores() -> list[KVStore]:
    port = free_port()  # nothing listens
    return [
        RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=1.0),
        RedisClusterStore([("127.0.0.1", port)], timeout_s=1.0),
        CassandraStore("127.0.0.1", port, "ks", timeout_s=1.0, connect_timeout_s=1.0),
        DynamoDBStore("x_", endpoint_url=f"http://127.0.0.1:{port}", timeout_s=1.0,
                      write_timeout_s=1.0, max_attempts=1),
    ]  # fmt: skip


async def test_a_dead_backend_answers_empty_calls_and_fails_the_others() -> None:
    for store in _dead_stores():
        # Nothing to do: no request, so no error.
        assert await store.read_logs([]) == []
        await store.append_log([])
        assert await store.read_logs([("d", b"k", 5, 1, 10)]) == [LogRead(None, [], False)]
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"read_logs|connect") as info:
            await store.read_logs([("d", b"k", 0, 10, 10)])
        assert info.value.__cause__ is not None
        with pytest.raises(StoreError):
            await store.append_log([LogEntry("d", b"k", 1, b"e", b"p")])
        assert time.monotonic() - started < 30, store.kind  # bounded, not hung
        await store.close()


# -- Redis: the documented bytes, the scripts, one round trip --------------------------


def _lua_statements(text: str) -> list[str]:
    lines = (line.split("--", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_redis_log_scripts_in_the_docs_are_the_stores() -> None:
    docs = (ROOT / "docs" / "storage-layout.md").read_text()
    section = docs[docs.index("## Aggregation groups: the log") :]
    blocks = re.findall(r"```lua\n(.*?)```", section, re.S)
    assert [_lua_statements(b) for b in blocks] == [
        _lua_statements(WRITE_LOG_SCRIPT.decode()), _lua_statements(READ_LOG_SCRIPT.decode()),
    ]  # fmt: skip


def _member(ts: int, id: bytes, payload: bytes) -> bytes:
    # docs/storage-layout.md: ts_ms (8 bytes BE) + id with 00 -> 00 01 + 00 00 + payload.
    return struct.pack(">Q", ts) + id.replace(b"\x00", b"\x00\x01") + b"\x00\x00" + payload


async def test_redis_log_layout_matches_the_docs(redis_url: str) -> None:
    prefix = f"lt{uuid.uuid4().hex[:10]}"
    raw = redis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, timeout_s=ANSWER_TIMEOUT_S, key_prefix=prefix)
    try:
        # What a job writes per the docs, the store reads...
        key = f"{prefix}:clicks:{{".encode() + b"\x00\x07}:log"
        raw.zadd(key, {_member(10, b"", b"part"): 10, _member(20, b"a\x00b", b"ev"): 20})
        got = await store.read_logs([("clicks", b"\x00\x07", 0, 100, 10)])
        assert got == [LogRead((10, b"part"), [(20, b"a\x00b", b"ev")], False)]
        # ...and what the store writes is that layout, the key in the versions key's slot.
        await store.append_log([LogEntry("clicks", b"}x", 5, b"\x00", b"p", ttl_s=100),
                                LogEntry("clicks", b"}x", 5, b"", b"q", ttl_s=50)])  # fmt: skip
        log_key = f"{prefix}:clicks:{{}}x}}:log".encode()
        assert log_key == store.log_key("clicks", b"}x")
        assert raw.zrange(log_key, 0, -1, withscores=True) == [
            (_member(5, b"", b"q"), 5.0), (_member(5, b"\x00", b"p"), 5.0),
        ]  # fmt: skip
        assert 50 < raw.ttl(log_key) <= 100  # the call's longest TTL
        assert key_slot(store.log_key("d", b"k")) == key_slot(store.redis_key("d", b"k"))
        await store.append_log([LogEntry("clicks", b"}x", 6, b"e", b"forever")])
        assert raw.ttl(log_key) == -1  # an entry without TTL: the key is kept for good
        # A member a reader cannot parse is a StoreError naming the key, not garbage.
        raw.zadd(log_key, {struct.pack(">Q", 7) + b"no end": 7})
        with pytest.raises(StoreError, match="malformed member"):
            await store.read_logs([("clicks", b"}x", 0, 100, 10)])
    finally:
        _delete_redis_keys(raw, prefix)
        raw.close()
        await store.close()


async def test_redis_read_logs_is_one_round_trip(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"lt{uuid.uuid4().hex[:10]}"
    store = RedisStore(redis_url, timeout_s=ANSWER_TIMEOUT_S, key_prefix=prefix)
    try:
        await store.append_log([LogEntry("d", b"%d" % k, ts, b"e", b"v")
                                for k in range(300) for ts in range(3)])  # fmt: skip
        await store.read_logs([("d", b"warm-up", 0, 10, 1)])  # connection, script
        sends = spy_redis_read_writes(monkeypatch)
        connects = store._reads.connects
        got = await store.read_logs([("d", b"%d" % k, 0, 10, 10) for k in range(300)])
        assert len(sends) == 1 and store._reads.connects == connects
        assert got == [LogRead(None, [(ts, b"e", b"v") for ts in (2, 1, 0)], False)] * 300
    finally:
        client = redis.Redis.from_url(redis_url)
        _delete_redis_keys(client, prefix)
        client.close()
        await store.close()


async def test_redis_scripts_are_loaded_again_after_a_flush(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout_s=ANSWER_TIMEOUT_S)
    await store.append_log([LogEntry("d", b"k", 1, b"e", b"p")])
    found = await store.read_logs([("d", b"k", 0, 9, 9)])
    assert found == [LogRead(None, [(1, b"e", b"p")], False)]
    raw = redis.Redis.from_url(own_redis.url)
    raw.script_flush()
    await store.append_log([LogEntry("d", b"k", 2, b"", b"part")])
    assert await store.read_logs([("d", b"k", 0, 9, 9)]) == [LogRead((2, b"part"), [], False)]
    # A key of another type is the store's error to report, not a crash.
    raw.set(store.log_key("d", b"str"), b"x")
    with pytest.raises(StoreError, match="read_logs failed"):
        await store.read_logs([("d", b"str", 0, 9, 9)])
    raw.close()
    await store.close()


async def test_redis_cluster_read_logs_is_one_round_trip_per_node(
    cluster_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"lt{uuid.uuid4().hex[:10]}"
    store = open_store(f"{cluster_url}?key_prefix={prefix}", timeout_s=ANSWER_TIMEOUT_S)
    assert isinstance(store, RedisClusterStore)
    client = _cluster_client(cluster_url)
    try:
        keys = [b"%d" % k for k in range(300)]
        await store.append_log([LogEntry("d", key, 1, b"e", key) for key in keys])
        await store.read_logs([("d", key, 0, 9, 9) for key in keys[:50]])  # warm-up
        owners = {client.get_node_from_key(store.log_key("d", key)).port for key in keys}
        assert len(owners) >= 3
        writes: dict[int, int] = {}
        real_send = Connection.send_packed_command

        async def counting_send(self: Connection, command: Any, check_health: bool = True) -> None:
            writes[int(self.port)] = writes.get(int(self.port), 0) + 1
            await real_send(self, command, check_health)

        monkeypatch.setattr(Connection, "send_packed_command", counting_send)
        got = await store.read_logs([("d", key, 0, 9, 9) for key in keys])
        assert writes == {port: 1 for port in owners}
        assert got == [LogRead(None, [(1, b"e", key)], False) for key in keys]
    finally:
        for node in client.get_primaries():
            _delete_redis_keys(client.get_redis_connection(node), prefix)
        client.close()
        await store.close()


# -- Cassandra: plain CQL, TTL per entry, a keyspace without the log table --------------


async def test_cassandra_log_rows_written_with_plain_cql_are_read(log_keyspace: str) -> None:
    cluster, session = _cql_session()
    dataset = f"cql{uuid.uuid4().hex[:8]}"
    store = CassandraStore(HOST, PORT, log_keyspace, timeout_s=SLOW_S, write_timeout_s=SLOW_S)
    try:
        insert = (f"INSERT INTO {log_keyspace}.log (dataset, key, ts_ms, id, payload) "
                  "VALUES (%s, %s, %s, %s, %s) USING TTL %s")  # fmt: skip
        session.execute(insert, (dataset, b"\x07", 10, b"", b"part", 0))
        session.execute(insert, (dataset, b"\x07", 20, b"ev", b"p", 3_600))
        got = await store.read_logs([(dataset, b"\x07", 0, 100, 10)])
        assert got == [LogRead((10, b"part"), [(20, b"ev", b"p")], False)]
        await store.append_log([LogEntry(dataset, b"\x08", 5, b"e", b"p", ttl_s=100),
                                LogEntry(dataset, b"\x08", 6, b"f", b"q")])  # fmt: skip
        rows = session.execute(
            f"SELECT ts_ms, id, payload, TTL(payload) FROM {log_keyspace}.log "
            "WHERE dataset = %s AND key = %s", (dataset, b"\x08"),
        )  # fmt: skip
        ttls = {(ts, id, payload): ttl for ts, id, payload, ttl in rows}
        assert ttls.keys() == {(5, b"e", b"p"), (6, b"f", b"q")}
        assert 90 <= ttls[(5, b"e", b"p")] <= 100 and ttls[(6, b"f", b"q")] is None
    finally:
        cluster.shutdown()
        await store.close()


async def test_cassandra_keyspace_without_the_log_table_still_serves_versions() -> None:
    keyspace = f"fetcher_nolog_{os.getpid()}"
    cluster, session = _cql_session()
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}", timeout=SLOW_S)
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.versions (dataset text, key blob, "
                    "event_ms bigint, value blob, PRIMARY KEY ((dataset, key), event_ms)) "
                    "WITH CLUSTERING ORDER BY (event_ms DESC)", timeout=SLOW_S)  # fmt: skip
    store = CassandraStore(HOST, PORT, keyspace, timeout_s=SLOW_S, write_timeout_s=SLOW_S)
    try:
        await store.multi_put([Row("d", b"k", b"v", 1)])
        with pytest.raises(StoreError, match="create_schema"):
            await store.read_logs([("d", b"k", 0, 10, 10)])
        assert await store.multi_get([("d", b"k", None)]) == [(b"v", 1)]
        await store.create()  # adds the log table to the existing keyspace
        await store.append_log([LogEntry("d", b"k", 3, b"", b"part")])
        assert await store.read_logs([("d", b"k", 0, 10, 10)]) == [LogRead((3, b"part"), [], False)]
    finally:
        await store.close()
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=SLOW_S)
        cluster.shutdown()


# -- DynamoDB: the table, the documented items, the requests ---------------------------


@pytest.fixture
async def dynamodb_log_store(dynamodb_url: str) -> AsyncIterator[DynamoDBStore]:  # noqa: F811
    store = DynamoDBStore(f"t{uuid.uuid4().hex[:12]}_", endpoint_url=dynamodb_url,
                          timeout_s=30.0, write_timeout_s=90.0, **MOTO_SAFE)  # fmt: skip
    await store.create_tables()
    await store.create_tables()  # tables that exist are kept
    yield store
    for table in (store.versions_table, store.latest_table, store.log_table):
        await store.client.delete_table(TableName=table)
    await store.close()


async def test_dynamodb_log_items_match_the_docs(dynamodb_log_store: DynamoDBStore) -> None:
    store = dynamodb_log_store
    ttl = await store.client.describe_time_to_live(TableName=store.log_table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    pk = b"\x06clicks\x00\x07"
    item = {"pk": {"B": pk}, "sk": {"B": struct.pack(">Q", 10)}, "p": {"B": b"part"}}
    await store.client.put_item(TableName=store.log_table, Item=item)
    item = {"pk": {"B": pk}, "sk": {"B": struct.pack(">Q", 20) + b"ev"}, "p": {"B": b"p"},
            "expires_at": {"N": str(int(time.time()) + 3_600)}}  # fmt: skip
    await store.client.put_item(TableName=store.log_table, Item=item)
    got = await store.read_logs([("clicks", b"\x00\x07", 0, MAX_TS, 10)])
    assert got == [LogRead((10, b"part"), [(20, b"ev", b"p")], False)]

    before = time.time()
    await store.append_log([LogEntry("clicks", b"\x08", 5, b"e\x00", b"q", ttl_s=100)])
    reply = await store.client.get_item(
        TableName=store.log_table, ConsistentRead=True,
        Key={"pk": {"B": b"\x06clicks\x08"}, "sk": {"B": struct.pack(">Q", 5) + b"e\x00"}},
    )  # fmt: skip
    written = reply["Item"]
    assert written["p"] == {"B": b"q"}
    assert before + 100 <= int(written["expires_at"]["N"]) <= time.time() + 101


async def test_dynamodb_writes_transactions_of_100_and_queries_newest_first(
    dynamodb_log_store: DynamoDBStore,
) -> None:
    store = dynamodb_log_store
    sent = Sent(store)
    await store.append_log([LogEntry("d", b"k", ts, b"e", b"p") for ts in range(250)]
                           + [LogEntry("d", b"j", 1, b"e", b"p")])  # fmt: skip
    transactions = sent.bodies["TransactWriteItems"]
    assert sorted(len(body["TransactItems"]) for body in transactions) == [1, 50, 100, 100]
    got = await store.read_logs([("d", b"k", 0, MAX_TS, 1_000), ("d", b"j", 0, MAX_TS, 0)])
    assert got == [LogRead(None, [(ts, b"e", b"p") for ts in range(249, -1, -1)], False),
                   LogRead(None, [], True)]  # fmt: skip
    queries = sent.bodies["Query"]
    assert {q["TableName"] for q in queries} == {store.log_table}
    assert all(q["ScanIndexForward"] is False for q in queries)
    # A scan asks for no more items than it may take: limit + 1.
    assert sorted(q["Limit"] for q in queries) == [1, 500]


async def test_dynamodb_read_logs_queries_in_parallel(dynamodb_log_store: DynamoDBStore) -> None:
    store = dynamodb_log_store
    await store.append_log([LogEntry("d", b"%d" % k, 1, b"e", b"p") for k in range(40)])
    reader = DynamoDBStore(store.table_prefix, endpoint_url=store.endpoint_url, timeout_s=30.0,
                           max_pool_connections=8)  # fmt: skip
    await reader.start()
    sent = Sent(reader)
    got = await reader.read_logs([("d", b"%d" % k, 0, 10, 10) for k in range(40)])
    assert got == [LogRead(None, [(1, b"e", b"p")], False)] * 40
    assert len(sent.bodies["Query"]) == 40
    assert sent.max_in_flight >= 2  # the queries were in flight together
    await reader.close()
