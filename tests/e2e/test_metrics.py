"""The real server's /metrics endpoint: counters move with requests; no per-request log line."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from fetcher.v1 import feature_service_pb2 as pb
from tests.e2e.lifecycle_support import (
    SERVING,
    channel,
    free_port,
    get_request,
    scrape,
    start_server,
    stub,
    write_settings,
)

pytestmark = pytest.mark.e2e


def test_scrape_shows_counters_moving(tmp_path: Path) -> None:
    port = free_port()
    settings = write_settings(tmp_path, f'metrics_listen = "127.0.0.1:{port}"\n')
    server = start_server(tmp_path, settings)
    try:
        server.wait_health(SERVING)
        before = scrape(port)
        with channel(server.target) as ch:
            s = stub(ch)
            for _ in range(10):
                s.GetFeatures(get_request(), timeout=5)
            entities = [pb.Entity(keys=get_request(user=u).keys) for u in range(2, 7)]
            s.GetBatchFeatures(
                pb.GetBatchFeaturesRequest(feature_service="user_merchant", entities=entities),
                timeout=5,
            )
        after = scrape(port)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('fetcher_entities_served_total{target="user_merchant"}') == 15
    assert delta('fetcher_rpc_duration_seconds_count{code="OK",method="GetFeatures"}') == 10
    assert delta('fetcher_store_requests_total{store="main"}') >= 2
    # 6 distinct users + 1 merchant missed L1 once; repeats hit (cached negative entries).
    assert delta('fetcher_cache_misses_total{tier="l1"}') == 7
    assert delta('fetcher_cache_hits_total{tier="l1"}') >= 1
    assert after['fetcher_cache_entries{tier="l1"}'] > 0
    assert after["fetcher_serving"] == 1
    assert after['fetcher_store_up{store="main"}'] == 1
    assert any(k.startswith("fetcher_config_info{") for k in after)
    assert 'fetcher_store_duration_seconds_count{store="main"}' in after
    # No log line per successful request by default.
    assert '"logger": "fetcher.rpc"' not in server.logs()
