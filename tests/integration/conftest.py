"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.integration.test_store_contract import RedisServer
from tests.servers import free_port

if TYPE_CHECKING:
    from tests.integration.feast_support import World


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own (a free port), to stop, freeze, restart or flush."""
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["redis", "redis_cluster"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The Feast repo of one backend, filled by the real Feast, and both sides' answers
    (tests/integration/feast_support.py); shared by the Feast tests of every module."""
    from tests.integration.feast_support import build_world

    return build_world(request.param, tmp_path_factory.mktemp(f"feast-{request.param}"))
