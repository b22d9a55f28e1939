"""Helpers for tests/e2e/test_multi_backend.py: one feature service over Cassandra,
DynamoDB and Redis, served by the real `fetcher serve`.

- the rows (and their load files) the server must answer with, and the checker for
  vectors where some groups are expected to be ERROR;
- a TCP proxy (its own event loop in a thread) that can add latency to replies and be
  stopped, which is what a slow or dead node looks like to a client;
- a private moto_server that a test may kill.

Everything listens on 127.0.0.1. The test servers come from scripts/services.sh, read
from the same environment variables as tests/integration (FETCHER_TEST_*).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fetcher.catalog._loader import load_catalog
from fetcher.client import FeatureValue, KeyInput
from fetcher.demo._data import DemoRow
from fetcher.types import Status
from tests.e2e.conftest import E2EData
from tests.e2e.truth import RowState, Truth
from tests.servers import dynamodb_answers, free_port

CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "multi_backend"
SERVICE = "mb_checkout"
USER, MERCHANT, DEVICE = "mb_user_cassandra", "mb_merchant_dynamodb", "mb_device_redis"
HOUR_MS = 3_600_000

CASSANDRA_HOST = "127.0.0.1"
CASSANDRA_PORT = int(os.environ.get("FETCHER_TEST_CASSANDRA_PORT", "9142"))
DYNAMODB_URL = os.environ.get("FETCHER_TEST_DYNAMODB_URL", "http://127.0.0.1:8100")
MOTO_SERVER = Path(sys.executable).parent / "moto_server"

_T = TypeVar("_T")

# -- the rows ----------------------------------------------------------------------

USERS = range(1, 31)  # user 31 has no row: NOT_FOUND
MERCHANTS = range(1, 16)  # merchant 16 has no row
DEVICES = [f"dev-{i:03d}" for i in range(1, 31)]  # "dev-999" has no row


def build_rows(now_ms: int) -> dict[str, list[DemoRow]]:
    """Every version of every group; some entities have an older version that must lose."""
    users: list[DemoRow] = []
    for u in USERS:
        record = {
            "age": 18 + u,
            "country": ("DE", "FR", "US", "BR")[u % 4],
            "churn_score": None if u % 5 == 0 else u / 64,
            "recent_categories": [f"cat-{u % 7}", f"cat-{u % 3}"][: 1 + u % 2],
        }
        users.append(DemoRow((u,), now_ms - u * 60_000, record))
        if u <= 10:  # an older version: the latest read must not return it
            users.append(DemoRow((u,), now_ms - 5 * HOUR_MS, {**record, "age": 1}))
    merchants = [
        DemoRow(
            (m,),
            now_ms - m * 90_000,
            {
                "rating": 2.5 + m / 8,
                "category": f"mcc-{5000 + m}",
                "is_active": m % 4 != 0,
                "daily_orders": [m, 2 * m, 3 * m],
            },
        )
        for m in MERCHANTS
    ]
    devices: list[DemoRow] = []
    for i, device in enumerate(DEVICES, 1):
        record = {"clicks_1h": 3 * i, "last_page": f"/checkout/{i}",
                  "trust": None if i % 6 == 0 else 1 / i}  # fmt: skip
        devices.append(DemoRow((device,), now_ms - i * 30_000, record))
        if i % 3 == 0:
            devices.append(DemoRow((device,), now_ms - 2 * HOUR_MS, {**record, "clicks_1h": -1}))
    return {USER: users, MERCHANT: merchants, DEVICE: devices}


def write_data(out: Path, now_ms: int) -> E2EData:
    """One JSONL load file per group and the Truth built from the same rows."""
    catalog = load_catalog(CONFIG_DIR)
    rows = build_rows(now_ms)
    files: dict[str, list[Path]] = {}
    for group_name, group_rows in rows.items():
        columns = [c.name for c in catalog.groups[group_name].keys]
        path = out / f"{group_name}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for row in group_rows:
                keys = dict(zip(columns, row.keys, strict=True))
                fh.write(json.dumps({**keys, "event_time": row.event_ms, **row.record}) + "\n")
        files[group_name] = [path]
    return E2EData(
        now_ms=now_ms,
        files=files,
        row_counts={name: len(group_rows) for name, group_rows in rows.items()},
        truth=Truth(catalog, rows),
    )


def entity(i: int) -> dict[str, KeyInput]:
    """Request keys of the i-th test entity (i from 1): users, merchants and devices cycle."""
    return {
        "user_id": (i - 1) % 31 + 1,  # 31: no row
        "merchant_id": (i - 1) % 16 + 1,  # 16: no row
        "device": "dev-999" if i % 31 == 0 else DEVICES[(i - 1) % len(DEVICES)],
    }


def check_vector(
    truth: Truth,
    row: Mapping[str, FeatureValue],
    keys: Mapping[str, KeyInput],
    read_ms: int,
    *,
    down: Collection[str] = (),
) -> dict[str, RowState | Status]:
    """Check one mb_checkout vector: groups in `down` must be ERROR, every other value exact.

    Returns each group's state (Status.ERROR for the down ones) so callers can assert it.
    """
    if not down:
        outcomes = truth.check(row, keys, read_ms, service=SERVICE)
        return {name: outcome.state for name, outcome in outcomes.items()}
    features, outcomes = truth.expected(keys, read_ms, service=SERVICE)
    assert list(row) == [f.name for f in features], f"{dict(keys)}: feature names"
    problems = []
    for want in features:
        got = row[want.name]
        if want.group in down:
            # ERROR carries the proto zero value and no event time.
            if got.status is not Status.ERROR or got.value or got.event_ms != 0:
                problems.append(f"{want.name}: got {got.status.name} {got.value!r} "
                                f"at {got.event_ms}, want ERROR")  # fmt: skip
            continue
        want_ms = outcomes[want.group].event_ms
        if (got.status, got.event_ms) != (want.status, want_ms) or not _same(got.value, want.value):
            problems.append(
                f"{want.name}: got {got.status.name} {got.value!r} at {got.event_ms}, "
                f"want {want.status.name} {want.value!r} at {want_ms}"
            )
    assert not problems, f"{dict(keys)} at {read_ms}:\n  " + "\n  ".join(problems)
    return {
        name: Status.ERROR if name in down else outcome.state for name, outcome in outcomes.items()
    }


def _same(got: Any, want: Any) -> bool:
    """Equal with the same Python types, list items included (no 1 == 1.0 == True)."""
    if isinstance(want, list):
        return (isinstance(got, list) and len(got) == len(want)
                and all(_same(g, w) for g, w in zip(got, want, strict=True)))  # fmt: skip
    return type(got) is type(want) and got == want


# -- reachability and cleanup of the shared test servers ------------------------------


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), 2.0):
            return True
    except OSError:
        return False


def drop_keyspace(keyspace: str) -> None:
    """DROP KEYSPACE on the test Cassandra (the tests' rows go with it)."""
    from cassandra.cluster import Cluster

    cluster = Cluster([CASSANDRA_HOST], port=CASSANDRA_PORT, protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        cluster.shutdown()


def drop_dynamodb_tables(url: str, prefix: str) -> None:
    """Delete the store's two tables under `prefix` (missing ones are fine)."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip
    for table in (f"{prefix}versions", f"{prefix}latest"):
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_table(TableName=table)


def delete_redis_keys(url: str, *patterns: bytes) -> int:
    """Delete the keys matching any glob pattern; how many were deleted."""
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                deleted += int(client.delete(*keys))
    finally:
        client.close()
    return deleted


def count_redis_keys(url: str, pattern: bytes) -> int:
    """How many keys match a glob pattern."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


# -- a private moto_server --------------------------------------------------------------


@contextlib.contextmanager
def private_moto() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto_server of our own on a free port (the test kills it); yields (url, process)."""
    if not os.access(MOTO_SERVER, os.X_OK):
        raise AssertionError(f"{MOTO_SERVER} not found: run scripts/setup.sh (moto[server])")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not dynamodb_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"moto_server on {url} did not start")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


# -- a TCP proxy with a latency knob and an off switch ---------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; replies can be delayed; stop() resets all."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        # Added to every reply chunk (upstream -> client); set from any thread.
        self.delay_s = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Close the port and reset every open connection, as a crashed node would."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _connected(self, client_r: asyncio.StreamReader,
                         client_w: asyncio.StreamWriter) -> None:  # fmt: skip
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, server_w))
        await asyncio.gather(self._pipe(client_r, server_w, delayed=False),
                             self._pipe(server_r, client_w, delayed=True),
                             return_exceptions=True)  # fmt: skip
        for writer in (client_w, server_w):
            writer.transport.abort()
            self._writers.discard(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, delayed: bool) -> None:  # fmt: skip
        # Each chunk is held until `delay_s` after it arrived, in arrival order, so a
        # burst of pipelined replies is delayed once, not once per reply.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.transport.abort()

        sender = loop.create_task(send())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + (self.delay_s if delayed else 0.0), data))
        finally:
            queue.put_nowait((0.0, b""))
            await sender


class ProxyHost:
    """Runs TcpProxy objects on an event loop in a daemon thread (the tests are blocking)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._proxies: list[TcpProxy] = []

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self, upstream: tuple[str, int]) -> TcpProxy:
        """A new listening proxy to `upstream`."""
        proxy = TcpProxy(upstream)
        self._run(proxy.start())
        self._proxies.append(proxy)
        return proxy

    def stop(self, proxy: TcpProxy) -> None:
        """Stop one proxy: refused connects, every open connection reset."""
        self._run(proxy.stop())

    def close(self) -> None:
        """Stop every proxy and the loop."""
        for proxy in self._proxies:
            self._run(proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextlib.contextmanager
def proxy_host() -> Iterator[ProxyHost]:
    """A ProxyHost, closed afterwards."""
    host = ProxyHost()
    try:
        yield host
    finally:
        host.close()


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an http:// or redis:// URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def require_cassandra() -> None:
    """Fail (never skip) with the start command when the test Cassandra is not up."""
    import pytest

    if not port_open(CASSANDRA_HOST, CASSANDRA_PORT):
        pytest.fail(
            f"Cassandra not reachable at {CASSANDRA_HOST}:{CASSANDRA_PORT}: "
            "run `scripts/services.sh start cassandra`"
        )
