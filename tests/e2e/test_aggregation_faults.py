"""A store that fails during PushEvents: the client gets an error, a retry converges.

The server's Redis is a child of this test: frozen (SIGSTOP) while a push is in flight,
the push runs out of its deadline with an error; some of its writes may land when Redis
is thawed. Retrying the same events must leave exactly the brute-force values.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fetcher.client import FeatureClient
from fetcher.types import Status
from tests.e2e.aggregation_support import write_config
from tests.e2e.conftest import FETCHER_MODULE, RunningServer, serving, write_settings
from tests.e2e.test_aggregations import GROUP, SCALE, SPEC, _check_row
from tests.integration.test_store_contract import RedisServer
from tests.servers import free_port
from tests.unit.aggregation.log_model import expected


@pytest.fixture
def redis_and_server(tmp_path: Path) -> Iterator[tuple[RedisServer, RunningServer]]:
    redis = RedisServer(free_port())
    redis.start()
    try:
        config = write_config(tmp_path / "config", [(GROUP, "fault", SPEC)])
        port = free_port()
        settings = write_settings(tmp_path / "settings.toml", port=port, store_url=redis.url,
                                  config_dir=config)
        with serving("redis-fault", settings, port, tmp_path / "server.log",
                     command=FETCHER_MODULE) as server:
            yield redis, server
    finally:
        redis.stop()


def test_push_during_a_store_failure_errors_and_a_retry_converges(
    redis_and_server: tuple[RedisServer, RunningServer],
) -> None:
    redis, server = redis_and_server
    users = [1, 2, 3]
    events = {u: [((10 * n + u) * SCALE, f"e{n}", {"amount": n * u, "x": n / 3, "s": "ab"[n % 2]})
                  for n in range(20)] for u in users}
    with FeatureClient(server.target, timeout_s=30) as client:
        first = users[0]
        client.push(GROUP, [({"user_id": first}, ts, i, v) for ts, i, v in events[first]])
    failing = [({"user_id": u}, ts, i, v) for u in users for ts, i, v in events[u]]
    redis.freeze()
    try:
        with FeatureClient(server.target, timeout_s=2) as client, \
                pytest.raises(grpc.RpcError) as info:
            client.push(GROUP, failing)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                     grpc.StatusCode.DEADLINE_EXCEEDED), info.value
    finally:
        redis.thaw()
    at = 10_000 * SCALE
    with FeatureClient(server.target, timeout_s=30) as client:
        deadline = time.monotonic() + 60
        while True:  # the server's store connection recovers after the thaw
            try:
                response = client.push(GROUP, failing)
                break
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"pushes still fail after the thaw: {exc}") from exc
                time.sleep(0.5)
        assert response.accepted == len(failing) and response.late == 0
        rows = client.get_batch([{"user_id": u} for u in users], group=GROUP,
                                entity_at=[at] * len(users))
    for user, row in zip(users, rows, strict=True):
        assert Status.ERROR not in {f.status for f in row.values()}
        _check_row(row, expected(SPEC, events[user], at), f"user {user}")
