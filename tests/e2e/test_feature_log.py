"""The feature log through the real server: a thousand requests at 50% sampling over two
workers are exactly the records the documented rule selects, each equal to the response
sent (read back with `fetcher logs read`); SIGKILL mid-write leaves only whole files; the
Kafka sink's records, read back from the topic, are the rule's."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pyarrow.parquet as pq
import pytest

from fetcher.client import decode_vectors
from fetcher.featurelog import closed_files
from fetcher.v1 import feature_service_pb2 as pb
from tests.e2e.lifecycle_support import (
    ROOT,
    SERVING,
    LoadThread,
    child_pids,
    copy_config,
    free_port,
    run_serve,
    scrape,
    start_server,
    stub,
    write_settings,
)
from tests.unit.featurelog.support import oracle_kept

pytestmark = pytest.mark.e2e

SERVICE = "user_merchant"
FETCHER_MODULE = (sys.executable, "-m", "fetcher.cli")


def _fetcher(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FETCHER_MODULE, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def _setup(tmp: Path, log_settings: str, *, percent: float | None, workers: int,
           server_settings: str = "") -> Path:
    """Demo config (user_merchant at `percent`), demo rows, settings with the feature log."""
    config = copy_config(tmp)
    if percent is not None:
        path = config / "services" / f"{SERVICE}.json"
        service = json.loads(path.read_text())
        service["sample_percent"] = percent
        path.write_text(json.dumps(service))
    settings = write_settings(tmp, f"workers = {workers}\n{server_settings}"
                                   "[log.features]\nenabled = true\n"
                                   f'directory = "{tmp / "log"}"\n{log_settings}')
    demo = _fetcher("demo", "--settings", str(settings))
    assert demo.returncode == 0, demo.stderr
    return settings


def _wait_both_workers(metrics: int, server: Any) -> None:
    """Until each of the two workers serves (worker i's metrics port is base + i)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if all(scrape(metrics + i).get("fetcher_serving") == 1 for i in (0, 1)):
                assert len(child_pids(server.proc.pid)) == 2
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the two workers are not both serving:\n{server.logs()}")


def test_a_thousand_requests_at_50_percent_are_the_rules_records(tmp_path: Path) -> None:
    metrics = free_port(pairs=2)
    settings = _setup(tmp_path, "", percent=50.0, workers=2,
                      server_settings=f'metrics_listen = "127.0.0.1:{metrics}"\n')
    server = start_server(tmp_path, settings)
    sent: dict[str, tuple[dict[str, int], pb.GetFeaturesResponse]] = {}
    try:
        server.wait_health(SERVING, timeout=30)
        _wait_both_workers(metrics, server)
        rng = random.Random(17)
        # New connections are spread over the workers (SO_REUSEPORT): many channels, each
        # with its own connection (channels of one process share them by default).
        channels = [grpc.insecure_channel(server.target,
                                          options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(16)]
        try:
            for i in range(1000):
                # Users above 9999 and merchants above 999 are not in the demo data.
                keys = {"user_id": rng.randrange(0, 10_500), "merchant_id": rng.randrange(1_050)}
                request = pb.GetFeaturesRequest(
                    feature_service=SERVICE,
                    keys={k: pb.Value(int64_value=v) for k, v in keys.items()})
                rid = f"req-{i:04d}"
                response = stub(channels[i % 16]).GetFeatures(
                    request, timeout=10, metadata=[("x-request-id", rid)], wait_for_ready=True)
                sent[rid] = (keys, response)
        finally:
            for ch in channels:
                ch.close()
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.logs()
    finally:
        server.kill()
    log_dir = tmp_path / "log"
    files = closed_files(log_dir, SERVICE)
    writers = {f.path.name.split("-", 3)[3].rsplit("-", 1)[0] for f in files}
    assert len(writers) == 2, writers  # each worker wrote its own files
    assert not list(log_dir.rglob("*.tmp"))  # SIGTERM closed every file
    out = tmp_path / "served.parquet"
    read = _fetcher("logs", "read", str(log_dir), "--service", SERVICE, "--since", "0",
                    "--out", str(out))
    assert read.returncode == 0, read.stderr
    rows = {r["request_id"]: r for r in pq.read_table(out).to_pylist()}
    kept = {rid for rid, (keys, _) in sent.items()
            if oracle_kept(SERVICE, [("int64", keys["user_id"]), ("int64", keys["merchant_id"])],
                           50.0)}
    assert 400 < len(kept) < 600
    assert set(rows) == kept and f"{len(kept):,} records" in read.stdout
    statuses: set[str] = set()
    for rid, row in rows.items():
        keys, response = sent[rid]
        assert (row["user_id"], row["merchant_id"]) == (keys["user_id"], keys["merchant_id"])
        assert row["config_version"] == response.metadata.config_version
        assert row["entity"] == 0 and row["at"] is None
        (vector,) = decode_vectors(response.metadata, [response.vector])
        for name, fv in vector.items():
            status = fv.status.name
            statuses.add(status)
            assert row[f"{name}__status"] == status, (rid, name)
            assert row[name] == (fv.value if status == "PRESENT" else None), (rid, name)
            event = row[f"{name}__event_time"]
            assert (None if event is None else int(event.timestamp() * 1000)) == (
                fv.event_ms or None), (rid, name)
    assert {"PRESENT", "NOT_FOUND", "NULL_VALUE", "OUTSIDE_MAX_AGE"} <= statuses


def test_the_kafka_sink_through_the_server_and_fetcher_logs_read(tmp_path: Path) -> None:
    from tests.e2e.stream_support import KAFKA, require_kafka

    require_kafka()
    topic = f"fetcher.test.e2e-log.{uuid.uuid4().hex[:10]}"
    settings = _setup(tmp_path, f'sink = "kafka"\nkafka_topic = "{topic}"\n'
                                f'kafka_bootstrap_servers = "{KAFKA}"\n', percent=50.0,
                      workers=1)
    server = start_server(tmp_path, settings)
    sent: dict[str, dict[str, int]] = {}
    try:
        server.wait_health(SERVING, timeout=30)
        rng = random.Random(23)
        with grpc.insecure_channel(server.target) as channel:
            for i in range(200):
                keys = {"user_id": rng.randrange(0, 10_500), "merchant_id": rng.randrange(1_050)}
                request = pb.GetFeaturesRequest(
                    feature_service=SERVICE,
                    keys={k: pb.Value(int64_value=v) for k, v in keys.items()})
                stub(channel).GetFeatures(request, timeout=10,
                                          metadata=[("x-request-id", f"k-{i:03d}")])
                sent[f"k-{i:03d}"] = keys
        server.signal(signal.SIGTERM)  # the sink's last records are acknowledged first
        assert server.wait(30) == 0, server.logs()
    finally:
        server.kill()
    assert "feature log on: Kafka topic" in server.logs()
    out = tmp_path / "from-kafka.parquet"
    read = _fetcher("logs", "read", f"kafka://{KAFKA}/{topic}", "--service", SERVICE,
                    "--since", "0", "-o", str(out))
    assert read.returncode == 0, read.stderr
    kept = {rid for rid, keys in sent.items()
            if oracle_kept(SERVICE, [("int64", keys["user_id"]), ("int64", keys["merchant_id"])],
                           50.0)}
    rows = pq.read_table(out).to_pylist()
    assert {r["request_id"] for r in rows} == kept and len(rows) == len(kept) > 50
    for row in rows:
        keys = sent[row["request_id"]]
        assert (row["user_id"], row["merchant_id"]) == (keys["user_id"], keys["merchant_id"])


def _temp_files(log_dir: Path) -> list[Path]:
    return list(log_dir.rglob(".*.parquet.tmp"))


def test_sigkill_mid_write_leaves_only_files_a_reader_opens(tmp_path: Path) -> None:
    settings = _setup(tmp_path, "max_file_seconds = 0.5\n", percent=None, workers=1)
    server = start_server(tmp_path, settings)
    log_dir = tmp_path / "log"
    try:
        server.wait_health(SERVING, timeout=30)
        with LoadThread(server.target, threads=3) as load:
            deadline = time.monotonic() + 60
            # Killed while it writes: files already closed, and one open (its temp file).
            while not (len(closed_files(log_dir, SERVICE)) >= 2 and _temp_files(log_dir)):
                assert time.monotonic() < deadline, server.logs()
                time.sleep(0.05)
            server.proc.send_signal(signal.SIGKILL)
            assert server.wait(15) == -signal.SIGKILL
            outcomes: list[Any] = load.stop()
    finally:
        server.kill()
    assert sum(o.code == grpc.StatusCode.OK for o in outcomes) > 0
    files = closed_files(log_dir, SERVICE)
    total = 0
    for f in files:  # every visible file is whole
        table = pq.read_table(f.path)
        assert table.num_rows > 0
        total += table.num_rows
    out = tmp_path / "after-kill.parquet"
    read = _fetcher("logs", "read", str(log_dir), "--service", SERVICE, "--since", "0",
                    "--out", str(out))
    assert read.returncode == 0, read.stderr
    assert pq.read_table(out).num_rows == total
    for temp in _temp_files(log_dir):  # what SIGKILL left is hidden and not a Parquet file
        with pytest.raises(Exception):  # noqa: B017 (pyarrow raises ArrowInvalid or OSError)
            pq.read_table(temp)


def test_a_log_directory_that_cannot_be_made_stops_the_start_with_exit_2(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("")
    settings = write_settings(tmp_path, "[log.features]\nenabled = true\n"
                                        f'directory = "{tmp_path / "a-file" / "log"}"\n')
    result = run_serve(settings)
    assert result.returncode == 2, result.stderr
    assert "log.features.directory: cannot use" in result.stderr
    assert "Fix:" in result.stderr
