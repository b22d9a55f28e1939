"""Shared fixtures: the real test servers started by scripts/services.sh.

Integration tests never skip: when a server is not reachable the test fails with
the command that starts it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

REDIS_URL = os.environ.get("FETCHER_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test redis-server; fails (never skips) when it is down."""
    if not _reachable(REDIS_URL):
        pytest.fail(f"redis-server not reachable at {REDIS_URL}: run `scripts/services.sh start`")
    return REDIS_URL


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The test redis URL with its database flushed before the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield redis_url
