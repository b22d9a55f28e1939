"""Helpers for tests/e2e/test_stream.py: the real Kafka broker of scripts/services.sh,
topics, producers, `fetcher stream` processes and the oracle of what they applied.

Every event a test produces is kept as the oracle's raw event (time, id, values); the
values the real server serves are compared with tests/unit/aggregation/log_model's
brute force over them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fetcher.client import FeatureClient
from tests.e2e.aggregation_support import SCALE, row_mismatches, scaled
from tests.e2e.conftest import FETCHER_MODULE, REPO, fetcher_env
from tests.servers import free_port
from tests.unit.aggregation.log_model import expected
from tests.unit.aggregation.test_serving import SPEC as UNIT_SPEC

KAFKA = os.environ.get("FETCHER_TEST_KAFKA_BOOTSTRAP",
                       f"127.0.0.1:{os.environ.get('FETCHER_TEST_KAFKA_PORT', '19092')}")
# Event times: real epoch ms (the stream refuses times before 1973; reads more than a day
# ahead are refused), a month ago, aligned to every hop.
T0 = (time.time_ns() // 1_000_000 - 30 * 86_400_000) // 100_000_000 * 100_000_000
DEADLINE_S = 120.0


SPEC = scaled(UNIT_SPEC)


def require_kafka(bootstrap: str = KAFKA) -> str:
    """The broker's address; fails (never skips) when nothing listens there."""
    host, _, port = bootstrap.partition(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), 2.0):
            return bootstrap
    except OSError:
        pytest.fail(f"Kafka not reachable at {bootstrap}: run `scripts/services.sh start kafka`")


def create_topic(name: str, partitions: int, bootstrap: str = KAFKA) -> None:
    """A new topic, waited for until the broker lists every partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(60)
    wait_for(lambda: len(getattr(admin.list_topics(name, timeout=10).topics.get(name),
                                 "partitions", {}) or {}) == partitions,
             f"topic {name} with {partitions} partitions")


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S,
             why: Callable[[], str] = lambda: "") -> Any:
    """Poll `check` until it returns something true; fail after a generous deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout_s:.0f} s: {what}\n{why()}")
        time.sleep(0.2)


@dataclass
class Oracle:
    """The distinct events produced per user: (ts, id, values), for brute force."""

    events: dict[int, list[tuple[int, str, dict[str, Any]]]] = field(default_factory=dict)

    def add(self, user: int, ts: int, ident: str, values: dict[str, Any]) -> None:
        self.events.setdefault(user, []).append((ts, ident, values))


class EventProducer:
    """Produces a group's events as JSON (or Avro) values keyed by user, keeping the oracle."""

    def __init__(self, topic: str, bootstrap: str = KAFKA, schema: Any = None) -> None:
        self.topic = topic
        self.oracle = Oracle()
        self.schema = schema
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                   "linger.ms": 5})
        self.produced = 0

    def raw(self, value: bytes | None, key: bytes | None = None,
            headers: Sequence[tuple[str, bytes]] | None = None) -> None:
        """A message the stream cannot apply (or any bytes)."""
        self._producer.produce(self.topic, value=value, key=key, headers=list(headers or []))
        self.produced += 1

    def event(self, user: int, ts: int, values: dict[str, Any], ident: str | None = None,
              *, oracle_id: str | None = None) -> None:
        """One event; without `ident` the stream names it by topic/partition/offset, so the
        oracle gets `oracle_id` (any id unique to it)."""
        record: dict[str, Any] = {"user_id": user, "event_time": ts, **values}
        if ident is not None:
            record["id"] = ident
        if self.schema is not None:
            from fastavro import schemaless_writer

            out = io.BytesIO()
            schemaless_writer(out, self.schema, {"id": None, **record})
            value = out.getvalue()
        else:
            value = json.dumps(record).encode()
        self._producer.produce(self.topic, value=value, key=str(user).encode())
        self.produced += 1
        name = ident if ident is not None else oracle_id
        assert name is not None
        if ident is None or all(i != ident or t != ts
                                for t, i, _ in self.oracle.events.get(user, [])):
            self.oracle.add(user, ts, name, values)

    def flush(self) -> None:
        """Wait until the broker acknowledged every message."""
        assert self._producer.flush(60) == 0, "the broker did not acknowledge every message"


def generated_events(producer: EventProducer, users: Sequence[int], per_user: int,
                     *, seed: int, start: int = 0) -> None:
    """Events with and without ids (some produced twice, as a producer's retry would)."""
    import random

    rng = random.Random(seed)
    for n in range(per_user):
        for user in users:
            ts = T0 + rng.randrange(0, 400) * SCALE
            values: dict[str, Any] = {}
            if rng.random() < 0.9:
                values["amount"] = rng.randrange(-1000, 1000)
            if rng.random() < 0.8:
                values["x"] = round(rng.uniform(-1e3, 1e3), 3)
            if rng.random() < 0.8:
                values["s"] = rng.choice(["a", "b", "c", "dd"])
            if rng.random() < 0.5:
                ident = f"e-{seed}-{start + n}-{user}"
                producer.event(user, ts, values, ident)
                if rng.random() < 0.2:
                    producer.event(user, ts, values, ident)  # the same event again
            else:
                producer.event(user, ts, values, oracle_id=f"o-{seed}-{start + n}-{user}")


def check_served(target: str, group: str, oracle: Oracle, at: int) -> list[str]:
    """Every feature of every user, served by the real server, against brute force;
    the mismatches (empty: all equal)."""
    users = sorted(oracle.events)
    with FeatureClient(target, timeout_s=30) as client:
        rows = client.get_batch([{"user_id": u} for u in users], group=group,
                                entity_at=[at] * len(users))
    wrong: list[str] = []
    for user, row in zip(users, rows, strict=True):
        wrong += row_mismatches(SPEC, row, expected(SPEC, oracle.events[user], at),
                                f"user {user}")
    return wrong


def committed(group_id: str, topic: str, partitions: int, bootstrap: str = KAFKA
              ) -> list[int]:
    """The consumer group's committed offset of each partition (-1001: none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                         "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                   timeout=30)
        return [tp.offset for tp in found]
    except KafkaException:
        return [-1001] * partitions
    finally:
        consumer.close()


def end_offsets(topic: str, partitions: int, bootstrap: str = KAFKA) -> list[int]:
    """The high watermark of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-probe"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(partitions)]
    finally:
        consumer.close()


@dataclass
class StreamProcess:
    """A running `fetcher stream` (or the crash harness) and its output file."""

    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def log_text(self) -> str:
        """Everything it printed."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def metric(self, name: str) -> float:
        """The sum of one metric's samples from /metrics (0 when not served yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def lag(self) -> dict[int, float]:
        """fetcher_stream_lag_messages by partition (the partitions this process owns)."""
        import re

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        out: dict[int, float] = {}
        for line in text.splitlines():
            found = re.match(r'fetcher_stream_lag_messages\{.*partition="(\d+)".*\} (\S+)$',
                             line)
            if found:
                out[int(found.group(1))] = float(found.group(2))
        return out

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"fetcher stream still running {timeout_s} s after SIGTERM:\n"
                        f"{self.log_text()[-4000:]}")


def start_stream(settings: Path, group: str, log: Path, *args: str,
                 command: Sequence[str] = FETCHER_MODULE) -> StreamProcess:
    """`fetcher stream --group G` with a metrics endpoint, output to `log`."""
    port = free_port()
    with open(log, "ab") as fh:
        process = subprocess.Popen(
            [*command, "stream", "--settings", str(settings), "--group", group,
             "--metrics-port", str(port), *args],
            cwd=REPO, env=fetcher_env(), stdout=fh, stderr=subprocess.STDOUT,
        )
    return StreamProcess(process, log, port)


def _serves_metrics(stream: StreamProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stream.metrics_port}/metrics",
                                    timeout=5):
            return True
    except OSError:
        return False


@contextmanager
def streaming(settings: Path, group: str, log: Path, *args: str) -> Iterator[StreamProcess]:
    """A `fetcher stream` that must exit 0 on SIGTERM at the end (sent once it serves its
    metrics: its signal handlers are in by then, a SIGTERM while Python starts kills it)."""
    stream = start_stream(settings, group, log, *args)
    try:
        wait_for(lambda: stream.process.poll() is not None or _serves_metrics(stream),
                 "fetcher stream serves its metrics", why=stream.log_text)
        yield stream
    finally:
        code = stream.stop()
    assert code == 0, f"fetcher stream exited {code}:\n{stream.log_text()[-4000:]}"


def write_stream_settings(path: Path, *, port: int, store_url: str, config_dir: Path,
                          bootstrap: str = KAFKA, batch_size: int = 50) -> Path:
    """Settings of the server and the stream: one store, the [kafka] section."""
    path.write_text("\n".join([
        "[server]", f'listen = "127.0.0.1:{port}"', f"config_dir = {json.dumps(str(config_dir))}",
        'metrics_listen = ""', "drain_delay_s = 0.0", "shutdown_grace_s = 2.0", "",
        "[stores.main]", f"url = {json.dumps(store_url)}", "timeout_ms = 5000", "",
        "[kafka]", f"bootstrap_servers = {json.dumps(bootstrap)}",
        f"batch_size = {batch_size}", "linger_ms = 200", "session_timeout_ms = 6000",
        "stop_timeout_s = 20.0", "",
    ]), encoding="utf-8")
    return path
