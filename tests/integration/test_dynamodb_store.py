"""DynamoDBStore against a real DynamoDB-compatible server: moto in server mode.

The shared server is started by `scripts/services.sh start` (127.0.0.1:8100; another
via FETCHER_TEST_DYNAMODB_URL). Each test gets its own table prefix, so tests never see
each other's rows. Tests that stop a server start their own moto_server on a spare port.
Requests are observed through botocore's event hooks on the store's real client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest

from kvstores import DynamoDBStore, Row, StoreError, open_store
from tests.integration.store_contract import StoreContract
from tests.servers import dynamodb_answers

DYNAMODB_URL = os.environ.get("FETCHER_TEST_DYNAMODB_URL", "http://127.0.0.1:8100")
# Ports for the servers these tests stop and restart; 8100 is the shared one.
SPARE_PORTS = range(8102, 8106)
MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@pytest.fixture(scope="session")
def dynamodb_url() -> str:
    """Endpoint of the shared test server; fails (never skips) when it is down."""
    if not dynamodb_answers(DYNAMODB_URL):
        pytest.fail(
            f"DynamoDB-compatible server not reachable at {DYNAMODB_URL}: "
            "run `scripts/services.sh start dynamodb`"
        )
    return DYNAMODB_URL


async def _drop_tables(url: str, store: DynamoDBStore) -> None:
    # A client of its own: the test may have closed the store.
    session = aioboto3.Session("x", "x")
    async with session.client("dynamodb", "us-east-1", endpoint_url=url) as client:
        for table in (store.versions_table, store.latest_table, store.log_table):
            await client.delete_table(TableName=table)


@pytest.fixture
async def dynamodb_store(dynamodb_url: str) -> AsyncIterator[DynamoDBStore]:
    """A store with fresh tables; generous timeouts, moto being slow on a busy machine."""
    store = DynamoDBStore(
        f"t{uuid.uuid4().hex[:12]}_", endpoint_url=dynamodb_url,
        timeout_s=30.0, write_timeout_s=90.0,
    )  # fmt: skip
    await store.create_tables()
    yield store
    await _drop_tables(dynamodb_url, store)
    await store.close()


class TestDynamoDBStoreContract(StoreContract):
    """The contract against DynamoDBStore on the shared moto server."""

    @pytest.fixture
    def store(self, dynamodb_store: DynamoDBStore) -> DynamoDBStore:
        return dynamodb_store

    # moto takes ~6 ms per conditional put: 1,500 rows are 60 BatchWriteItem calls of 25
    # and 30 BatchGetItem calls of 100 (5,000 took 30 s of the test run).
    large_batch_rows = 1_500


class Sent:
    """Every HTTP request the store's real client sends, by operation, with its JSON body."""

    def __init__(self, store: DynamoDBStore) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        events = store.client.meta.events
        events.register("before-send.dynamodb", self._sent)
        events.register("after-call.dynamodb", self._answered)

    def _sent(self, request: Any, **_: Any) -> None:
        operation = request.headers["X-Amz-Target"]
        if isinstance(operation, bytes):
            operation = operation.decode()
        self.bodies.setdefault(operation.rpartition(".")[2], []).append(json.loads(request.body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _answered(self, **_: Any) -> None:
        self.in_flight -= 1


def _keys_sent(body: dict[str, Any], table: str) -> list[str]:
    return [key["pk"]["B"] for key in body["RequestItems"][table]["Keys"]]


async def test_250_latest_lookups_are_three_parallel_batch_gets(
    dynamodb_store: DynamoDBStore,
) -> None:
    store = dynamodb_store
    await store.multi_put([Row("c", b"k%03d" % i, b"v%d" % i, i) for i in range(0, 250, 2)])
    sent = Sent(store)
    lookups = [("c", b"k%03d" % i, None) for i in range(250)]
    lookups += [("c", b"k000", None), ("c", b"k100", 150)]  # a duplicate, a point in time
    got = await store.multi_get(lookups)

    expected = [(b"v%d" % i, i) if i % 2 == 0 else None for i in range(250)]
    assert got == [*expected, (b"v0", 0), (b"v100", 100)]
    gets = sent.bodies["BatchGetItem"]
    assert sorted(len(_keys_sent(body, store.latest_table)) for body in gets) == [50, 100, 100]
    keys = [key for body in gets for key in _keys_sent(body, store.latest_table)]
    assert len(set(keys)) == 250  # each distinct key asked for once
    assert sent.max_in_flight >= 2  # the chunks were in flight together
    [query] = sent.bodies["Query"]
    assert (query["Limit"], query["ScanIndexForward"]) == (1, False)
    assert query["KeyConditionExpression"] == "pk = :k AND event_ms <= :t"


async def test_unprocessed_keys_of_the_16mb_limit_are_asked_again(
    dynamodb_store: DynamoDBStore,
) -> None:
    # A BatchGetItem answer holds at most 16 MB; the server returns the rest as
    # UnprocessedKeys, exactly as when it throttles. 45 values of 380 kB are 17 MB.
    store = dynamodb_store
    rows = [Row("big", b"%02d" % i, bytes([i]) * 380_000, 7) for i in range(45)]
    await store.multi_put(rows)
    sent = Sent(store)
    got = await store.multi_get([("big", row.key, None) for row in rows])

    assert got == [(row.value, 7) for row in rows]
    gets = sent.bodies["BatchGetItem"]
    first, *retries = (_keys_sent(body, store.latest_table) for body in gets)
    assert len(first) == 45 and retries, "the server answered everything at once"
    assert all(len(again) < 45 for again in retries)


def _throttle(store: DynamoDBStore, rounds: int | None) -> list[int]:
    """Rewrite the next `rounds` (None: all) parsed BatchGetItem answers as throttled.

    The real server answers; the hook then moves the items of every other requested
    key (every key when rounds is None) into UnprocessedKeys, which is the shape of a
    throttled answer. Returns the number of keys requested per attempt.
    """
    table = store.latest_table
    requested: list[int] = []

    def rewrite(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name != "BatchGetItem":
            return
        items = parsed["Responses"][table]
        requested.append(len(items))
        if rounds is not None and len(requested) > rounds:
            return
        held = items if rounds is None else items[::2]
        parsed["Responses"][table] = [item for item in items if item not in held]
        keys = [{"pk": item["pk"]} for item in held]
        parsed["UnprocessedKeys"] = {table: {"Keys": keys, "ConsistentRead": False}}

    store.client.meta.events.register("after-call.dynamodb.BatchGetItem", rewrite)
    return requested


async def test_throttled_keys_are_retried_until_found(dynamodb_store: DynamoDBStore) -> None:
    store = dynamodb_store
    await store.multi_put([Row("d", b"%d" % i, b"v%d" % i, i) for i in range(60)])
    requested = _throttle(store, rounds=2)
    got = await store.multi_get([("d", b"%d" % i, None) for i in range(60)])
    assert got == [(b"v%d" % i, i) for i in range(60)]
    assert requested == [60, 30, 15]  # each retry asked only for what was left


async def test_throttled_until_the_deadline_is_a_store_error(dynamodb_url: str) -> None:
    store = DynamoDBStore(f"t{uuid.uuid4().hex[:12]}_", endpoint_url=dynamodb_url, timeout_s=0.5)
    await store.create_tables()
    await store.multi_put([Row("d", b"k", b"v", 1)])
    requested = _throttle(store, rounds=None)
    started = time.monotonic()
    # Given up in a backoff pause, or cut off while a retry was in flight.
    with pytest.raises(StoreError, match=r"unprocessed.*deadline|no answer within 0\.5 s"):
        await store.multi_get([("d", b"k", None)])
    assert time.monotonic() - started < 3.0
    assert len(requested) >= 2  # retried, with backoff, before giving up
    await _drop_tables(dynamodb_url, store)
    await store.close()


async def _raw_item(store: DynamoDBStore, table: str, key: dict[str, Any]) -> dict[str, Any]:
    reply = await store.client.get_item(TableName=table, Key=key, ConsistentRead=True)
    return dict(reply.get("Item", {}))


async def test_ttl_is_enabled_and_reads_skip_expired_items(dynamodb_store: DynamoDBStore) -> None:
    store = dynamodb_store
    for table in (store.versions_table, store.latest_table):
        ttl = await store.client.describe_time_to_live(TableName=table)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    before = time.time()
    await store.multi_put([Row("d", b"k", b"old", 1_000), Row("d", b"k", b"new", 2_000, ttl_s=1)])
    pk = {"B": b"\x01dk"}
    latest = await _raw_item(store, store.latest_table, {"pk": pk})
    assert before + 1 <= int(latest["expires_at"]["N"]) <= time.time() + 2
    old = await _raw_item(store, store.versions_table, {"pk": pk, "event_ms": {"N": "1000"}})
    assert "expires_at" not in old

    await asyncio.sleep(2.2)
    # The server deletes expired items lazily (moto never): they are still there...
    assert await _raw_item(store, store.latest_table, {"pk": pk})
    # ...and invisible. A latest read is the newest version or nothing (see the docs);
    # a point-in-time read falls back to the newest live version.
    lookups = [("d", b"k", None), ("d", b"k", 5_000), ("d", b"k", 2_000)]
    assert await store.multi_get(lookups) == [None, (b"old", 1_000), (b"old", 1_000)]
    # An expired latest item counts as absent: an older event may replace it.
    await store.multi_put([Row("d", b"k", b"older", 500)])
    assert await store.multi_get([("d", b"k", None)]) == [(b"older", 500)]


async def test_concurrent_writers_keep_the_newest_as_latest(
    dynamodb_store: DynamoDBStore, dynamodb_url: str
) -> None:
    other = DynamoDBStore(dynamodb_store.table_prefix, endpoint_url=dynamodb_url, timeout_s=30.0)
    keys = [b"%d" % i for i in range(40)]
    await asyncio.gather(
        dynamodb_store.multi_put([Row("d", k, b"new", 2_000) for k in keys]),
        other.multi_put([Row("d", k, b"old", 1_000) for k in keys]),
    )
    assert await other.multi_get([("d", k, None) for k in keys]) == [(b"new", 2_000)] * 40
    await other.close()


async def test_layout_matches_the_docs(dynamodb_store: DynamoDBStore) -> None:
    # What docs/storage-layout.md tells a batch job to write, the store must read.
    store = dynamodb_store
    pk = {"B": b"\x05users" + b"\x00" * 7 + b"\x07"}
    for ts, value in ((1_000, b"old"), (2_000, b"new")):
        item = {"pk": pk, "event_ms": {"N": str(ts)}, "v": {"B": value}}
        await store.client.put_item(TableName=store.versions_table, Item=item)
    await store.client.put_item(TableName=store.latest_table, Item=item)
    key = b"\x00" * 7 + b"\x07"
    lookups = [("users", key, None), ("users", key, 1_500)]
    assert await store.multi_get(lookups) == [(b"new", 2_000), (b"old", 1_000)]

    # And what the store writes is exactly that layout.
    await store.multi_put([Row("items", b"\x01", b"val", 42, ttl_s=100)])
    written = await _raw_item(store, store.latest_table, {"pk": {"B": b"\x05items\x01"}})
    assert written.pop("expires_at")["N"].isdigit()
    assert written == {"pk": {"B": b"\x05items\x01"}, "event_ms": {"N": "42"}, "v": {"B": b"val"}}
    version_key = {"pk": {"B": b"\x05items\x01"}, "event_ms": {"N": "42"}}
    assert (await _raw_item(store, store.versions_table, version_key))["v"] == {"B": b"val"}


async def test_bad_rows_and_lookups_raise_before_any_request(dynamodb_url: str) -> None:
    store = DynamoDBStore("never_created_", endpoint_url=dynamodb_url, timeout_s=5.0)
    with pytest.raises(ValueError, match="not int64"):
        await store.multi_put([Row("d", b"k", b"v", 2**63)])
    with pytest.raises(ValueError, match="at most 2042"):
        await store.multi_get([("dname", b"k" * 2043, None)])
    with pytest.raises(ValueError, match="holds 409600 bytes"):
        await store.multi_put([Row("d", b"k", b"v" * 409_600, 1)])
    with pytest.raises(StoreError, match="create_tables"):  # the tables do not exist
        await store.multi_get([("d", b"k", None)])
    await store.close()


# -- a server of our own, to stop, freeze and restart ---------------------------------


class MotoServer:
    """A moto_server child process on a spare port (in-memory: a restart empties it)."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not dynamodb_answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                pytest.fail(f"moto_server did not start on {self.port}:\n{self.log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot exit
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    """An own moto_server, not yet started, on the first free port of 8102-8105."""
    for port in SPARE_PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        server = MotoServer(port, tmp_path / "moto.log")
        yield server
        server.stop()
        return
    pytest.fail(f"ports {SPARE_PORTS.start}-{SPARE_PORTS.stop - 1} are all in use")


async def _fails_in_time(call: Any, limit_s: float) -> StoreError:
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await call
    assert time.monotonic() - started < limit_s
    return info.value


# The store's timeouts in the test below: its calls after moto (a Python server) starts
# again connect first, which must not race a sub-second timer on a busy machine. A
# failing call ends within its timeout plus this (its one retry's backoff included).
DOWN_READ_TIMEOUT_S = 2.0
DOWN_WRITE_TIMEOUT_S = 5.0
IN_TIME_SLACK_S = 3.0
READ_IN_TIME_S = DOWN_READ_TIMEOUT_S + IN_TIME_SLACK_S


async def test_down_server_raises_in_time_and_the_same_store_recovers(moto: MotoServer) -> None:
    # Built while nothing listens: construction and start() do not touch the network.
    store = DynamoDBStore(
        "down_", endpoint_url=moto.url,
        timeout_s=DOWN_READ_TIMEOUT_S, write_timeout_s=DOWN_WRITE_TIMEOUT_S,
    )  # fmt: skip
    await store.start()
    await _fails_in_time(store.ping(), READ_IN_TIME_S)
    await _fails_in_time(store.multi_get([("d", b"k", None)]), READ_IN_TIME_S)

    moto.start()
    await store.create_tables()
    await store.multi_put([Row("d", b"k", b"v", 1)])
    assert await store.multi_get([("d", b"k", None), ("d", b"k", 1)]) == [(b"v", 1)] * 2

    moto.stop()
    await _fails_in_time(store.multi_get([("d", b"k", None), ("d", b"k", 1)]), READ_IN_TIME_S)
    await _fails_in_time(store.ping(), READ_IN_TIME_S)
    await _fails_in_time(
        store.multi_put([Row("d", b"k", b"w", 2)]), DOWN_WRITE_TIMEOUT_S + IN_TIME_SLACK_S
    )

    moto.start()  # empty again: the store says what to do, then works once it is done
    error = await _fails_in_time(store.multi_get([("d", b"k", None)]), READ_IN_TIME_S)
    assert "create_tables" in str(error)
    await store.create_tables()
    await store.multi_put([Row("d", b"k", b"again", 2)])
    assert await store.multi_get([("d", b"k", None)]) == [(b"again", 2)]

    moto.signal(signal.SIGSTOP)  # hung: accepts connections, never answers
    try:
        error = await _fails_in_time(store.multi_get([("d", b"k", None)]), READ_IN_TIME_S)
        assert f"no answer within {DOWN_READ_TIMEOUT_S:g} s" in str(error)
    finally:
        moto.signal(signal.SIGCONT)
    for _ in range(3):  # late answers of the hung requests must not leak into these
        assert await store.multi_get([("d", b"k", None), ("d", b"x", 1)]) == [(b"again", 2), None]
    await store.close()


# -- URLs -------------------------------------------------------------------------------


async def test_open_store_dynamodb_urls() -> None:
    store = open_store(
        "dynamodb://eu-west-1/feat_?endpoint_url=http://127.0.0.1:8100&max_pool_connections=8"
        "&write_timeout_s=9&connect_timeout_s=0.3&max_attempts=1&consistent_read=true",
        timeout_s=0.05,
    )
    assert isinstance(store, DynamoDBStore)
    assert (store.region, store.endpoint_url) == ("eu-west-1", "http://127.0.0.1:8100")
    assert (store.versions_table, store.latest_table) == ("feat_versions", "feat_latest")
    assert (store.timeout_s, store.write_timeout_s, store.connect_timeout_s) == (0.05, 9.0, 0.3)
    assert (store.max_pool_connections, store.max_attempts, store.consistent_read) == (8, 1, True)
    await store.close()

    default = open_store("dynamodb://us-east-1?timeout_s=0.2")
    assert isinstance(default, DynamoDBStore)
    assert (default.table_prefix, default.endpoint_url) == ("fetcher_", None)
    assert default.timeout_s == 0.2
    await default.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dynamodb:///x_", "no region"),
        ("dynamodb://us-east-1/bad prefix", "table_prefix"),
        ("dynamodb://us-east-1/x_?max_pool_connections=0", "option 'max_pool_connections'"),
        ("dynamodb://us-east-1/x_?endpoint_url=localhost:8100", "endpoint_url"),
        ("dynamodb://us-east-1/x_?max_connections=3", "unknown option 'max_connections'"),
    ],
)
def test_bad_dynamodb_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_store(url)
    assert "store URL" in str(info.value)
