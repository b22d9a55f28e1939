"""Config reload on the real server: SIGHUP and file watch swap the snapshot under load with
zero errors; a broken config leaves the old version serving."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import pytest

from tests.e2e.lifecycle_support import (
    SERVING,
    LoadThread,
    channel,
    free_port,
    get_request,
    scrape,
    start_server,
    stub,
    write_settings,
)

pytestmark = pytest.mark.e2e


def _edit_description(config: Path, text: str) -> None:
    path = config / "groups" / "merchant_stats.json"
    data = json.loads(path.read_text())
    data["description"] = text
    path.write_text(json.dumps(data, indent=2))


def _version(target: str) -> str:
    with channel(target) as ch:
        return str(stub(ch).GetFeatures(get_request(), timeout=5).metadata.config_version)


def test_sighup_reload_under_load_then_broken_config_keeps_old(tmp_path: Path) -> None:
    port = free_port()
    settings = write_settings(tmp_path, f'metrics_listen = "127.0.0.1:{port}"\n')
    server = start_server(tmp_path, settings)
    config = tmp_path / "config"
    try:
        server.wait_health(SERVING)
        old = _version(server.target)
        with LoadThread(server.target, threads=2) as load:
            assert load.wait_for(lambda o: len(o) >= 20, timeout=10)
            _edit_description(config, "reloaded under load")
            server.signal(signal.SIGHUP)
            assert load.wait_for(lambda o: sum(x.version not in ("", old) for x in o) >= 20,
                                 timeout=10), server.logs()
            outcomes = load.stop()
        assert all(o.code == grpc.StatusCode.OK for o in outcomes), {o.code for o in outcomes}
        new = outcomes[-1].version
        assert new != old and {o.version for o in outcomes} == {old, new}
        # Each thread switched once: after its first new-version response, no old one.
        switched = min(o.ended for o in outcomes if o.version == new)
        assert not [o for o in outcomes if o.version == old and o.started > switched]

        (config / "groups" / "user_profile.json").write_text("{broken")
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload failed" not in server.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reload failed" in server.logs() and "user_profile.json" in server.logs()
        assert _version(server.target) == new
        samples = scrape(port)
        assert samples['fetcher_config_reloads_total{result="ok"}'] == 1
        assert samples['fetcher_config_reloads_total{result="failed"}'] == 1
        assert samples[f'fetcher_config_info{{version="{new}"}}'] == 1
        assert f'fetcher_config_info{{version="{old}"}}' not in samples
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()


def test_file_watch_reloads_without_a_signal(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, "watch_config = true\nwatch_interval_s = 0.2\n")
    server = start_server(tmp_path, settings)
    try:
        server.wait_health(SERVING)
        old = _version(server.target)
        # The watcher's first poll only records the state, and nothing outside shows
        # when it has run: an edit before it would be taken for the start state. So
        # the file is edited again (new text) when no reload followed within 10 watch
        # intervals; a reload must follow one of these edits.
        deadline = time.monotonic() + 30
        edits = 0
        while _version(server.target) == old and time.monotonic() < deadline:
            edits += 1
            _edit_description(tmp_path / "config", f"changed on disk (edit {edits})")
            edited_at = time.monotonic()
            while _version(server.target) == old and time.monotonic() < edited_at + 2.0:
                time.sleep(0.1)
        assert _version(server.target) != old, server.logs()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
