"""Soak fixtures: its own redis-server (6441) and proxy (21010); toxiproxy is shared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.conftest import toxiproxy
from tests.faults.harness import RedisServer, World, build_world, running_redis

__all__ = ["soak_redis", "soak_world", "toxiproxy"]


@pytest.fixture(scope="session")
def soak_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the soak's own on 6441."""
    yield from running_redis(6441, tmp_path_factory.mktemp("soak-redis"))


@pytest.fixture(scope="session")
def soak_world(soak_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Demo rows in the soak's Redis and LMDB file."""
    return build_world(tmp_path_factory.mktemp("soak-world"), soak_redis.url)
