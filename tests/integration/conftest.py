"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_store_contract import RedisServer
from tests.servers import free_port


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own (a free port), to stop, freeze, restart or flush."""
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()
