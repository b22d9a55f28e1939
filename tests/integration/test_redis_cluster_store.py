"""RedisClusterStore against a real three-master Redis Cluster.

The contract and round-trip tests use the cluster `scripts/services.sh start
redis_cluster` runs (FETCHER_TEST_REDIS_CLUSTER_URL, default 127.0.0.1:7001-7003).
Tests that stop nodes start their own cluster on free ports with the same script.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from kvstores import Row, StoreError, open_store
from kvstores.redis_cluster import RedisClusterStore
from tests.integration.store_contract import StoreContract

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_URL = os.environ.get(
    "FETCHER_TEST_REDIS_CLUSTER_URL",
    "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
)
START_HINT = "run `scripts/services.sh start redis_cluster`"


def _open(url: str, **options: Any) -> RedisClusterStore:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    store = open_store(url + ("?" + query if query else ""), timeout_s=2.0)
    assert isinstance(store, RedisClusterStore)
    return store


def _seeds(url: str) -> list[tuple[str, int]]:
    """(host, port) of the nodes a redis+cluster:// URL lists."""
    netloc = url.partition("://")[2].partition("?")[0].partition("/")[0].rpartition("@")[2]
    return [(host, int(port)) for host, _, port in (n.rpartition(":") for n in netloc.split(","))]


def _node(port: int, host: str = "127.0.0.1") -> redis.Redis:
    return redis.Redis(host=host, port=port, socket_timeout=2)


def _masters(host: str, port: int) -> dict[int, list[tuple[int, int]]]:
    """port -> slot ranges, for every master, as the node at host:port sees the cluster."""
    client = _node(port, host)
    try:
        owners: dict[int, list[tuple[int, int]]] = {}
        for first, last, master, *_ in client.execute_command("CLUSTER SLOTS"):
            owners.setdefault(int(master[1]), []).append((int(first), int(last)))
        return owners
    finally:
        client.close()


def _owner(owners: dict[int, list[tuple[int, int]]], redis_key: bytes) -> int:
    slot = key_slot(redis_key)
    return next(p for p, ranges in owners.items() if any(a <= slot <= b for a, b in ranges))


@pytest.fixture(scope="session")
def cluster_url() -> str:
    """URL of the test cluster; fails (never skips) unless every node says cluster_state:ok."""
    for host, port in _seeds(CLUSTER_URL):
        try:
            client = _node(port, host)
            state = client.cluster("INFO")["cluster_state"]
            client.close()
        except (redis.RedisError, OSError) as exc:
            pytest.fail(f"redis cluster node {host}:{port} not reachable ({exc}): {START_HINT}")
        if state != "ok":
            pytest.fail(
                f"redis cluster node {host}:{port} says cluster_state:{state}: {START_HINT}"
            )
    return CLUSTER_URL


@pytest.fixture
def clean_cluster(cluster_url: str) -> Iterator[str]:
    """The cluster URL with every master flushed before the test."""
    host, port = _seeds(cluster_url)[0]
    for master in _masters(host, port):
        client = _node(master, host)
        client.flushall()
        client.close()
    yield cluster_url


class TestRedisClusterStoreContract(StoreContract):
    """The contract against RedisClusterStore on the test cluster."""

    @pytest.fixture
    async def store(self, clean_cluster: str) -> AsyncIterator[RedisClusterStore]:
        store = _open(clean_cluster)
        yield store
        await store.close()


# -- One round trip per node ----------------------------------------------------------


class NodeCounters:
    """Per-node server counters, read over one connection per node opened up front."""

    def __init__(self, ports: list[int]) -> None:
        self.clients = {port: _node(port) for port in ports}

    def calls(self, command: str) -> dict[int, int]:
        """port -> calls of `command` so far (INFO commandstats)."""
        return {
            port: int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
            for port, client in self.clients.items()
        }

    def connections(self) -> dict[int, int]:
        """port -> connections accepted so far (INFO stats)."""
        return {
            port: int(client.info("stats")["total_connections_received"])
            for port, client in self.clients.items()
        }

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _delta(after: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {port: after[port] - before[port] for port in after}


async def test_batch_over_all_nodes_is_one_round_trip_per_node(
    clean_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _open(clean_cluster)
    host, port = store.nodes[0]
    owners = _masters(host, port)
    assert len(owners) >= 3, f"expected at least 3 masters, got {sorted(owners)}"
    keys = [b"%d" % i for i in range(3000)]
    per_node = {p: sum(_owner(owners, store.redis_key("d", k)) == p for k in keys) for p in owners}
    assert all(count > 0 for count in per_node.values()), per_node
    rows = [Row("d", key, b"v" + key, 7) for key in keys[:900]]  # one write chunk
    # Warm up: the slot map, and one connection per node on both clients.
    await store.multi_put([Row("d", b"%d" % i, b"warm", 1) for i in range(3000, 3100)])
    await store.multi_get([("d", b"%d" % i, None) for i in range(3000, 3100)])

    writes: dict[int, int] = {}
    real_send = Connection.send_packed_command

    async def counting_send(self: Connection, command: Any, check_health: bool = True) -> None:
        writes[int(self.port)] = writes.get(int(self.port), 0) + 1
        await real_send(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting_send)
    counters = NodeCounters(sorted(owners))
    script_before, get_before = counters.calls("evalsha"), counters.calls("get")
    connections_before = counters.connections()

    await store.multi_put(rows)
    assert writes == {p: 1 for p in owners}  # one write per node for 900 rows
    written = _delta(counters.calls("evalsha"), script_before)
    assert written == {p: sum(_owner(owners, store.redis_key("d", r.key)) == p for r in rows)
                       for p in owners}  # fmt: skip

    writes.clear()
    zrange_before = counters.calls("zrange")
    got = await store.multi_get([("d", key, None) for key in keys])
    # One write per node carried every lookup that node owns: one round trip each;
    # the 2,100 keys without a latest copy are asked again of their versions, one
    # more round trip per node.
    assert writes == {p: 2 for p in owners}
    assert _delta(counters.calls("get"), get_before) == per_node
    missed = {p: sum(_owner(owners, store.redis_key("d", k)) == p for k in keys[900:])
              for p in owners}  # fmt: skip
    assert _delta(counters.calls("zrange"), zrange_before) == missed
    # No new connection either, whose handshake would be more round trips.
    assert _delta(counters.connections(), connections_before) == {p: 0 for p in owners}
    counters.close()
    assert got == [(b"v" + key, 7) if i < 900 else None for i, key in enumerate(keys)]
    await store.close()


async def test_layout_matches_the_single_node_store(clean_cluster: str) -> None:
    # The same bytes as RedisStore: a job writing per docs/storage-layout.md with a
    # cluster client is read back, and the store writes those bytes.
    store = _open(clean_cluster, key_prefix="lay", max_versions=2)
    host, port = store.nodes[0]
    raw = redis.RedisCluster(host=host, port=port)
    key = b"lay:users:{\x00\x00\x00\x00\x00\x00\x00\x07}"
    raw.zadd(key, {(1_000).to_bytes(8, "big") + b"old": 1_000})
    assert await store.multi_get([("users", (7).to_bytes(8, "big"), None)]) == [(b"old", 1_000)]
    await store.multi_put([Row("users", (7).to_bytes(8, "big"), b"v%d" % t, t) for t in (2, 3)])
    assert raw.zrange(key, 0, -1) == [(3).to_bytes(8, "big") + b"v3",
                                      (1_000).to_bytes(8, "big") + b"old"]  # fmt: skip
    # The latest copy, in the same slot, is still the newest version.
    assert raw.get(key + b":latest") == (1_000).to_bytes(8, "big") + b"old"
    await store.multi_put([Row("users", (7).to_bytes(8, "big"), b"new", 2_000)])
    assert await store.multi_get([("users", (7).to_bytes(8, "big"), None)]) == [(b"new", 2_000)]
    assert raw.get(key + b":latest") == (2_000).to_bytes(8, "big") + b"new"
    raw.close()
    await store.close()


# -- A cluster of our own, to stop and freeze nodes ------------------------------------


def _free_cluster_ports(count: int = 3) -> list[int]:
    """Ports p with p and its cluster bus port p + 10000 both free."""
    ports: list[int] = []
    start = 20000 + (os.getpid() * 7) % 9000
    for port in range(start, 30000):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
        if len(ports) == count:
            return ports
    pytest.fail("no free ports for a test Redis Cluster in 20000-29999")


class OwnCluster:
    """A three-master cluster started, restarted and stopped by scripts/services.sh."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        self.env = {**os.environ, "FETCHER_TEST_REDIS_CLUSTER_PORTS": ",".join(map(str, ports))}

    def services(self, action: str) -> None:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts/services.sh"), action, "redis_cluster"],
            env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"services.sh {action} redis_cluster:\n{done.stderr}"

    def start(self) -> None:
        """services.sh start (new cluster or restarted nodes), then wait_ready()."""
        self.services("start")
        self.wait_ready()

    def wait_ready(self, within_s: float = 60.0) -> None:
        """Wait until a client's first call finds what it needs on whichever node it asks.

        services.sh waits for cluster_state:ok and every node known on every node; a
        store's first call also asks one seed node (at random) for the whole slot map and
        then opens a connection to every master, so every node must also answer on a new
        connection, see every other node connected and not failing, and give the same
        map of all 16384 slots.
        """
        deadline = time.monotonic() + within_s
        while (problem := self._not_ready()) is not None:
            if time.monotonic() > deadline:
                pytest.fail(f"own cluster {self.ports} not ready after {within_s:.0f} s: {problem}")
            time.sleep(0.1)

    def _not_ready(self) -> str | None:
        maps: dict[int, list[tuple[int, int, int]]] = {}
        for port in self.ports:
            client = _node(port)
            try:
                if client.ping() is not True:
                    return f"node {port}: no PONG"
                info = client.cluster("INFO")
                if info["cluster_state"] != "ok":
                    return f"node {port}: cluster_state:{info['cluster_state']}"
                peers = client.execute_command("CLUSTER NODES")
                if len(peers) != len(self.ports):
                    return f"node {port} knows {len(peers)} nodes"
                for address, peer in peers.items():
                    flags = set(peer["flags"].split(","))
                    if not peer["connected"] or flags & {"fail", "fail?", "handshake", "noaddr"}:
                        state = "connected" if peer["connected"] else "not connected"
                        return f"node {port} sees {address} as {peer['flags']}, {state}"
                maps[port] = sorted(
                    (int(first), int(last), int(master[1]))
                    for first, last, master, *_ in client.execute_command("CLUSTER SLOTS")
                )
            except (redis.RedisError, OSError) as exc:
                return f"node {port}: {exc!r}"
            finally:
                client.close()
        first = maps[self.ports[0]]
        if sum(last - start + 1 for start, last, _ in first) != 16384:
            return f"slot map of node {self.ports[0]} covers not all 16384 slots: {first}"
        if any(other != first for other in maps.values()):
            return f"nodes disagree on the slot map: {maps}"
        return None

    def pid(self, port: int) -> int:
        return int((ROOT / f"build/services/redis-cluster/{port}/redis.pid").read_text())

    def kill(self, port: int) -> None:
        pid = self.pid(port)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Only a refused connection means down: a connect that timed out on a
            # busy machine says nothing.
            try:
                with socket.create_connection(("127.0.0.1", port), 2.0):
                    time.sleep(0.05)
            except ConnectionRefusedError:
                return
            except OSError:
                continue
        pytest.fail(f"cluster node {port} still answers after SIGKILL")


@pytest.fixture
def own_cluster() -> Iterator[OwnCluster]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on PATH: run scripts/setup.sh")
    cluster = OwnCluster(_free_cluster_ports())
    yield cluster
    for port in cluster.ports:  # a frozen node cannot shut down
        with contextlib.suppress(OSError, ValueError):
            os.kill(cluster.pid(port), signal.SIGCONT)
    cluster.services("stop")
    for port in cluster.ports:
        shutil.rmtree(ROOT / f"build/services/redis-cluster/{port}", ignore_errors=True)


# The store's timeout in the test below. Its successful calls include cold ones (the
# first after the cluster starts fetches the slot map and connects to every node; the
# first after a restart reconnects), which must not race a sub-second timer on a busy
# machine.
STORE_TIMEOUT_S = 2.0


async def _fails_fast(call: Any) -> StoreError:
    """The call fails on the refused connection: at once, not by waiting out a timeout."""
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await call
    assert time.monotonic() - started < STORE_TIMEOUT_S  # no retry, no backoff
    assert info.value.__cause__ is not None
    assert "timeout" not in repr(info.value.__cause__).lower()
    return info.value


async def _times_out(call: Any) -> StoreError:
    """The call fails by the store timeout (not the cluster's 15 s node timeout, nor never)."""
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await call
    assert time.monotonic() - started < STORE_TIMEOUT_S + 10.0
    assert "timeout" in repr(info.value.__cause__).lower()
    return info.value


async def test_lazy_start_node_down_frozen_and_restarted_same_store(
    own_cluster: OwnCluster,
) -> None:
    # Built while nothing listens: constructing is fine, calls fail fast, and the
    # slot map is fetched again on the next call.
    store = _open(own_cluster.url, timeout_s=STORE_TIMEOUT_S)
    await _fails_fast(store.multi_get([("d", b"k", None)]))
    await _fails_fast(store.ping())
    await _fails_fast(store.multi_put([Row("d", b"k", b"v", 1)]))
    own_cluster.start()

    owners = _masters("127.0.0.1", own_cluster.ports[0])
    keys = [b"%d" % i for i in range(60)]
    by_port = {p: [k for k in keys if _owner(owners, store.redis_key("d", k)) == p] for p in owners}
    await store.multi_put([Row("d", k, b"v" + k, 1) for k in keys])
    assert await store.multi_get([("d", k, None) for k in keys]) == [(b"v" + k, 1) for k in keys]
    await store.ping()

    down, *up = own_cluster.ports
    own_cluster.kill(down)
    error = await _fails_fast(store.multi_get([("d", k, None) for k in keys]))
    assert "multi_get failed" in str(error)
    await _fails_fast(store.multi_put([Row("d", by_port[down][0], b"x", 2)]))
    await _fails_fast(store.ping())
    # Nodes that are up keep serving the keys they own.
    rest = [k for p in up for k in by_port[p]]
    assert await store.multi_get([("d", k, None) for k in rest]) == [(b"v" + k, 1) for k in rest]

    own_cluster.start()  # restarts the node from its nodes.conf, data gone
    lookups = [("d", k, None) for k in keys]
    expected = [None if k in by_port[down] else (b"v" + k, 1) for k in keys]
    assert await store.multi_get(lookups) == expected
    await store.multi_put([Row("d", k, b"again", 3) for k in by_port[down]])
    await store.ping()

    # Restarted between two calls: the idle connections to it are stale, not reused.
    own_cluster.kill(down)
    own_cluster.start()
    await asyncio.sleep(0.05)  # the loop sees the closed sockets, as a server's would
    assert await store.multi_get(lookups) == [
        None if k in by_port[down] else (b"v" + k, 1) for k in keys
    ]
    await store.multi_put([Row("d", k, b"again", 3) for k in by_port[down]])
    expected = [(b"again", 3) if k in by_port[down] else (b"v" + k, 1) for k in keys]
    assert await store.multi_get(lookups) == expected

    # Frozen (hung) node: a timeout, and its late replies never leak into later calls.
    os.kill(own_cluster.pid(down), signal.SIGSTOP)
    try:
        await _times_out(store.multi_get(lookups))
    finally:
        os.kill(own_cluster.pid(down), signal.SIGCONT)
    for _ in range(3):
        assert await store.multi_get(lookups) == expected
    await store.close()


# -- The URL (no network: constructing connects nothing) --------------------------------


async def test_cluster_urls_and_options() -> None:
    store = _open("rediss+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001,h3/0", max_connections=8)
    assert store.nodes == (("10.0.0.1", 7000), ("::1", 7001), ("h3", 6379))
    assert (store.username, store.password, store.ssl) == ("app", "p@ss", True)
    assert (store.timeout_s, store.max_connections) == (2.0, 8)
    assert store.url == "rediss+cluster://10.0.0.1:7000,[::1]:7001,h3:6379"  # no password
    assert store.redis_key("d", b"k") == b"ft:d:{k}"
    assert (store.latest_keys, store.latest_fallback) == (True, True)
    await store.close()
    plain = _open("redis+cluster://h:1", latest_keys="off", latest_fallback="false")
    assert (plain.latest_keys, plain.latest_fallback) == (False, False)
    await plain.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "no nodes"),
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster://h:1,h:x", "bad node 'h:x'"),
        ("redis+cluster://h:1,,h:2", "bad node ''"),
        ("redis+cluster://h:1?map_size_mb=1", "unknown option 'map_size_mb'"),
    ],
)
def test_bad_cluster_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)
