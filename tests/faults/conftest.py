"""Fault-test fixtures: toxiproxy-server, our own redis-server, the loaded world, a server.

Ports: redis-server 6440, toxiproxy API 18474, proxies 21000-21099. Never skips: a
missing tool fails with the command that installs it.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator

import pytest

from tests.faults.harness import (
    FaultServer,
    RedisServer,
    World,
    build_world,
    fault_server,
    running_redis,
)
from tests.faults.toxiproxy import Proxy, ToxiproxyApi, ToxiproxyError, start_toxiproxy
from tests.faults.truth import ResponseChecker

REDIS_PORT = 6440
PROXY_PORT = 21000


@pytest.fixture(scope="session")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyApi]:
    """toxiproxy-server on 127.0.0.1:18474, started for this session."""
    api = ToxiproxyApi()
    if api.up():  # started by the other suite's fixture in this session (tests/soak)
        yield api
        return
    log = tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log"
    try:
        process = start_toxiproxy(log)
    except ToxiproxyError as exc:
        pytest.fail(str(exc))
    yield api
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of our own on 6440 (others FLUSHDB the shared one)."""
    yield from running_redis(REDIS_PORT, tmp_path_factory.mktemp("fault-redis"))


@pytest.fixture(scope="session")
def world(fault_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Demo rows loaded into Redis (user_profile) and LMDB (the rest), with their truth."""
    return build_world(tmp_path_factory.mktemp("fault-world"), fault_redis.url)


@pytest.fixture(scope="session")
def redis_proxy(toxiproxy: ToxiproxyApi, fault_redis: RedisServer) -> Proxy:
    """127.0.0.1:21000 -> our redis-server; the fault server reads Redis through it."""
    return toxiproxy.proxy("fault_redis", PROXY_PORT, f"127.0.0.1:{fault_redis.port}")


@pytest.fixture
def proxy(redis_proxy: Proxy, fault_redis: RedisServer) -> Iterator[Proxy]:
    """The Redis proxy, clean before and after the test (and Redis running)."""
    redis_proxy.clear()
    yield redis_proxy
    redis_proxy.clear()
    if fault_redis.process is None:
        fault_redis.start()


@pytest.fixture(scope="session")
def server(
    world: World, redis_proxy: Proxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultServer]:
    """`fetcher serve` over Redis (through the proxy, 100 ms timeout) and LMDB."""
    workdir = tmp_path_factory.mktemp("fault-server")
    url = f"redis://127.0.0.1:{redis_proxy.listen_port}/0"
    with fault_server("faults", workdir, world, url) as running:
        yield running


@pytest.fixture
def checker(world: World) -> ResponseChecker:
    """The truth checker every response of a test goes through."""
    return ResponseChecker(world.truth)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source seeded by the test's name: a failure replays the same way."""
    return random.Random(request.node.nodeid)
