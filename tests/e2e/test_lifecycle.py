"""The real `fetcher serve` process: startup errors, health from store pings, drain, signals,
structured logs."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.lifecycle_support import (
    NOT_SERVING,
    SERVICE,
    SERVING,
    LoadThread,
    RedisServer,
    channel,
    get_request,
    redis_on,
    run_serve,
    start_server,
    stub,
    write_settings,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis_6430(tmp_path: Path) -> Iterator[RedisServer]:
    yield from redis_on(6430, tmp_path)


@pytest.mark.parametrize(
    ("extra", "broken_group", "needles"),
    [
        ('listen_x = "1"\n', False, ["server.listen_x", "unknown key", "Fix:"]),
        ("max_batch_entities = 0\n", False, ["server.max_batch_entities", "must be > 0"]),
        ("[tracing]\nenabled = true\n", False, ["tracing.enabled", "opentelemetry", "Fix:"]),
        ("", True, ["user_profile.json", "problem"]),
    ],
)
def test_bad_settings_or_catalog_exit_2_without_traceback(
    tmp_path: Path, extra: str, broken_group: bool, needles: list[str]
) -> None:
    settings = write_settings(tmp_path, extra)
    if broken_group:
        (tmp_path / "config" / "groups" / "user_profile.json").write_text("{not json")
    result = run_serve(settings)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def _watch(target: str, seen: list[int], stop: threading.Event) -> None:
    with channel(target) as ch:
        stream = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=30
        )
        try:
            for response in stream:
                seen.append(int(response.status))
                if stop.is_set():
                    break
        except grpc.RpcError:
            pass
        finally:
            stream.cancel()


def test_health_follows_a_required_store_check_and_watch(
    tmp_path: Path, redis_6430: RedisServer
) -> None:
    # The store is down at start: the server still starts, and reports NOT_SERVING.
    settings = write_settings(tmp_path, "", store_url=redis_6430.url)
    server = start_server(tmp_path, settings)
    seen: list[int] = []
    stop = threading.Event()
    try:
        server.wait_health(NOT_SERVING)
        watcher = threading.Thread(target=_watch, args=(server.target, seen, stop), daemon=True)
        watcher.start()
        # A request while the store is down is still answered (its features are ERROR).
        with channel(server.target) as ch:
            assert stub(ch).GetFeatures(get_request(), timeout=5).metadata.config_version
        redis_6430.start()
        server.wait_health(SERVING, timeout=10)
        redis_6430.stop()
        server.wait_health(NOT_SERVING, timeout=10)
        # Liveness never follows the stores: a store outage must not restart the pod.
        assert server.health("liveness") == SERVING
        redis_6430.start()
        server.wait_health(SERVING, timeout=10)
        deadline = time.monotonic() + 5
        while seen[-1:] != [SERVING] and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        # Watch streamed every flip: down, up, down, up.
        flips = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
        assert flips == [NOT_SERVING, SERVING, NOT_SERVING, SERVING], seen
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        stop.set()
        server.kill()


# Long enough that, on a busy machine, a health check sees NOT_SERVING within it and
# calls started in its second half are still accepted.
DRAIN_DELAY_S = 3.0


def test_sigterm_drains_under_load_and_exits_0(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, f"drain_delay_s = {DRAIN_DELAY_S}\n")
    server = start_server(tmp_path, settings)
    try:
        server.wait_health(SERVING)
        with LoadThread(server.target, threads=3) as load:
            assert load.wait_for(lambda o: len(o) >= 50, timeout=10)
            sigterm_at = time.monotonic()
            server.signal(signal.SIGTERM)
            # NOT_SERVING at once, while requests are still accepted during the drain delay.
            server.wait_health(NOT_SERVING, timeout=DRAIN_DELAY_S)
            assert load.wait_for(
                lambda o: any(x.code == grpc.StatusCode.UNAVAILABLE for x in o), timeout=10
            )
            code = server.wait(timeout=10)
            outcomes = load.stop()
        assert code == 0, server.logs()
        ok = [o for o in outcomes if o.code == grpc.StatusCode.OK]
        refused = [o for o in outcomes if o.code != grpc.StatusCode.OK]
        # Requests keep being accepted during the drain delay...
        assert any(o.started >= sigterm_at + DRAIN_DELAY_S / 2 for o in ok), (
            "nothing accepted while draining"
        )
        # ...then are refused with UNAVAILABLE. A call racing the final close may instead be
        # CANCELLED by the gRPC core, which never ran it; never one started before the gate
        # (less 1 s: a call's way from the client to the server on a busy machine).
        for o in refused:
            assert o.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), o
            assert o.started >= sigterm_at + DRAIN_DELAY_S - 1.0, o
        first_refused = min(o.ended for o in refused)
        assert not [o for o in ok if o.started > first_refused]
        # None lost: every RPC the server answered OK reached the client, and none was cancelled.
        stopped = [json.loads(line) for line in server.logs().splitlines()
                   if "rpcs_served_ok" in line]
        assert len(stopped) == 1, server.logs()
        assert stopped[0]["rpcs_cancelled"] == 0
        assert stopped[0]["rpcs_served_ok"] == len(ok)
    finally:
        server.kill()


def test_second_signal_exits_at_once_non_zero(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, "drain_delay_s = 30.0\n")
    server = start_server(tmp_path, settings)
    try:
        server.wait_health(SERVING)
        server.signal(signal.SIGTERM)
        server.wait_health(NOT_SERVING, timeout=2)
        started = time.monotonic()
        server.signal(signal.SIGINT)
        code = server.wait(timeout=20)
        assert code != 0
        assert time.monotonic() - started < 15  # at once: not after the 30 s drain delay
    finally:
        server.kill()


def test_json_logs_carry_the_request_id_and_no_secret(
    tmp_path: Path, redis_6430: RedisServer
) -> None:
    # Store "main" is a down redis with a password in its URL: every request logs a store
    # failure (rate-limited) from inside the request, so that line must carry the id.
    token = "tok-Sup3rSecretValue"
    settings = write_settings(
        tmp_path,
        "[log]\nrequests = true\n"
        "[authz.clients.ranker]\ntoken_env = \"RANKER_TOKEN\"\nservices = [\"*\"]\n",
        store_url="redis://:hunter2pass@127.0.0.1:6430/0",
    )
    server = start_server(tmp_path, settings, env={"RANKER_TOKEN": token})
    try:
        server.wait_health(NOT_SERVING)
        with channel(server.target) as ch:
            s = stub(ch)
            metadata = (("x-request-id", "req-abc-123"), ("authorization", f"Bearer {token}"))
            s.GetFeatures(get_request(), metadata=metadata, timeout=5)
            with pytest.raises(grpc.RpcError) as err:
                s.GetFeatures(get_request(), metadata=(("authorization", "Bearer wrong"),),
                              timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        text = server.logs()
    finally:
        server.kill()
    assert "hunter2pass" not in text and token not in text
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys(), record
    ours = [r for r in records if r.get("request_id") == "req-abc-123"]
    loggers = {r["logger"] for r in ours}
    assert "fetcher.engine" in loggers and "fetcher.rpc" in loggers, ours
    assert any("redis://:***@127.0.0.1:6430/0" in r["msg"] for r in records)
