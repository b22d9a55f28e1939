"""The real server over Redis (store and L2 cache): the same core checks as the embedded one.

The data is loaded into the test Redis with `fetcher load` by the `redis_server` fixture.
"""

from __future__ import annotations

import pytest

from fetcher.client import FeatureClient
from tests.e2e.conftest import E2EData, RunningServer
from tests.e2e.core import CoreChecks, now_ms


@pytest.fixture(scope="module")
def server(redis_server: RunningServer) -> RunningServer:
    """This module's server: the Redis-backed one."""
    return redis_server


class TestRedisCore(CoreChecks):
    """The core checks against the Redis-backed server."""


def test_repeated_reads_stay_exact(client: FeatureClient, e2e_data: E2EData) -> None:
    """The second and third reads come from L2 (merchant_stats has l2: true): still exact."""
    for _ in range(3):
        for keys in ({"user_id": 42, "merchant_id": 7}, {"user_id": 9991, "merchant_id": 1001}):
            read = now_ms()
            row = client.get(service="user_merchant", keys=keys)
            e2e_data.truth.check(row, keys, read, service="user_merchant")
