"""`fetcher serve --workers 2`: both share one port; a killed worker is replaced while
requests keep succeeding; SIGTERM stops all and exits 0."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from tests.e2e.lifecycle_support import (
    SERVING,
    channel,
    child_pids,
    free_port,
    get_request,
    scrape,
    start_server,
    stub,
    write_settings,
)

pytestmark = pytest.mark.e2e


def _request_ok(target: str) -> None:
    # A fresh channel each time: new connections spread over the workers (SO_REUSEPORT).
    with channel(target) as ch:
        stub(ch).GetFeatures(get_request(), timeout=5, wait_for_ready=True)


def test_two_workers_restart_after_kill_and_stop_on_sigterm(tmp_path: Path) -> None:
    metrics = free_port(pairs=2)
    settings = write_settings(
        tmp_path, f'metrics_listen = "127.0.0.1:{metrics}"\nworker_restart_backoff_s = 0.2\n'
    )
    server = start_server(tmp_path, settings, workers=2)
    try:
        server.wait_health(SERVING)
        deadline = time.monotonic() + 15
        # Both workers serve: each has its metrics port (base + index) up and SERVING.
        while time.monotonic() < deadline:
            try:
                if all(scrape(metrics + i).get("fetcher_serving") == 1 for i in (0, 1)):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        workers = child_pids(server.proc.pid)
        assert len(workers) == 2, server.logs()

        os.kill(workers[0], signal.SIGKILL)
        for _ in range(20):  # requests keep succeeding while the worker is replaced
            _request_ok(server.target)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            now = child_pids(server.proc.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.1)
        replaced = child_pids(server.proc.pid)
        assert len(replaced) == 2 and workers[0] not in replaced and workers[1] in replaced
        assert "worker 0 died" in server.logs() or "worker 1 died" in server.logs()
        # The new worker serves too: its metrics port answers SERVING once it is up.
        index = 0 if f'"worker_pid": {workers[0]}, "worker_index": 0' in server.logs() else 1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if scrape(metrics + index).get("fetcher_serving") == 1:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert scrape(metrics + index).get("fetcher_serving") == 1
        for _ in range(20):
            _request_ok(server.target)

        server.signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0, server.logs()
        for pid in replaced:
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
        with pytest.raises(grpc.RpcError) as err, channel(server.target) as ch:
            stub(ch).GetFeatures(get_request(), timeout=1)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.kill()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
