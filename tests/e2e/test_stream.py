"""`fetcher stream` against the real Kafka broker (scripts/services.d/kafka.sh) into Redis,
every served value (the real `fetcher serve`, GetBatchFeatures) against brute force.

At least once delivery, exactly once effect: a consumer SIGKILLed between a batch's write
and its commit, then restarted, counts nothing twice; a broker restart mid-stream loses
and doubles nothing; poison messages go to the dead-letter topic with their reason while
the rest is applied; two consumers of one group share the partitions, each served once;
SIGTERM commits and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from fetcher.catalog import load_catalog
from fetcher.stream import event_schema
from tests.e2e.aggregation_support import new_tag, write_config
from tests.e2e.conftest import REPO, RunningServer, fetcher_env, serving
from tests.e2e.multi_backend_support import delete_redis_keys
from tests.e2e.stream_support import (
    KAFKA,
    SPEC,
    T0,
    EventProducer,
    check_served,
    committed,
    create_topic,
    end_offsets,
    generated_events,
    require_kafka,
    start_stream,
    streaming,
    wait_for,
    write_stream_settings,
)
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
NAMES = ("kill", "poison", "pair", "term", "restart")
# After every event: all windows cover everything (and the oracle reads the same way).
AT = T0 + 1_000_000 * 1000
# A broker of its own for the restart test, so the shared one never goes away.
RESTART_PORT = int(os.environ.get("FETCHER_TEST_KAFKA_RESTART_PORT", "19192"))


@dataclass
class Setup:
    """The module's server, settings and group names (unique to this run)."""

    server: RunningServer
    settings: Path
    groups: dict[str, str]
    workdir: Path

    def topic(self, name: str) -> str:
        """The group's topic by the default naming rule (kafka.topic)."""
        return f"fetcher.events.{self.groups[name]}"


@pytest.fixture(scope="module")
def setup(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_kafka()
    workdir = tmp_path_factory.mktemp("stream")
    tag = new_tag()
    groups = {name: f"stream_{name}_{tag}" for name in NAMES}
    config = write_config(workdir / "config", [(g, f"{g}_ds", SPEC) for g in groups.values()])
    own = redis_url.rsplit("/", 1)[0] + "/12"  # a database of its own
    prefix = f"stream{tag}"
    port = free_port()
    settings = write_stream_settings(workdir / "settings.toml", port=port,
                                     store_url=f"{own}?key_prefix={prefix}", config_dir=config)
    try:
        with serving("stream", settings, port, workdir / "server.log",
                     command=(sys.executable, "-m", "fetcher.cli")) as server:
            yield Setup(server, settings, groups, workdir)
    finally:
        delete_redis_keys(own, f"{prefix}:*".encode())


def _served_equal(setup: Setup, name: str, producer: EventProducer, why: object = "") -> None:
    # Called once every offset is committed: a commit follows its batch's write, and the
    # group is not cached, so the values served now are final.
    wrong = check_served(setup.server.target, setup.groups[name], producer.oracle, AT)
    assert not wrong, "\n".join(wrong[:20]) + f"\n{why}"


def _all_committed(group_id: str, topic: str, partitions: int) -> bool:
    return committed(group_id, topic, partitions) == end_offsets(topic, partitions)


def test_sigkill_between_write_and_commit_counts_nothing_twice(setup: Setup) -> None:
    topic, group = setup.topic("kill"), setup.groups["kill"]
    create_topic(topic, 3)
    producer = EventProducer(topic)
    generated_events(producer, list(range(1, 13)), 30, seed=1)
    producer.flush()
    log = setup.workdir / "kill.log"
    crash = start_stream(setup.settings, group, log, "--batch-size", "40",
                         command=(sys.executable, "-m", "tests.e2e.stream_crash", "3"))
    code = crash.process.wait(DEADLINE)
    assert code == -9, f"the harness did not SIGKILL itself (exit {code}):\n{crash.log_text()}"
    assert "SIGKILL before committing batch 3" in crash.log_text()
    group_id = f"fetcher-stream-{group}"
    before = committed(group_id, topic, 3)
    assert sum(max(o, 0) for o in before) < producer.produced, before
    # Restarted: the uncommitted batch (already written) is read and applied again.
    with streaming(setup.settings, group, log, "--batch-size", "40") as stream:
        wait_for(lambda: _all_committed(group_id, topic, 3), "every offset committed",
                 why=stream.log_text)
        redelivered = stream.metric("fetcher_stream_messages_consumed_total")
        assert redelivered == producer.produced - sum(max(o, 0) for o in before)
        _served_equal(setup, "kill", producer, stream.log_text())


def _dead_letters(topic: str, count: int) -> list[tuple[bytes | None, dict[str, bytes]]]:
    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": f"dlq-reader-{new_tag()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while len(out) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            out.append((message.value(), {k: v for k, v in (message.headers() or [])}))
    finally:
        consumer.close()
    return out


def test_poison_messages_go_to_the_dead_letter_topic_and_the_rest_is_applied(
    setup: Setup,
) -> None:
    topic, group = setup.topic("poison"), setup.groups["poison"]
    create_topic(topic, 2)
    producer = EventProducer(topic)
    poison = [
        (b"{not json", "value"),
        (b"[1, 2]", "value"),
        (b'{"event_time": %d, "amount": 1}' % T0, "keys.user_id"),
        (b'{"user_id": "seven", "event_time": %d}' % T0, "keys.user_id"),
        (b'{"user_id": 7, "event_time": %d, "amount": 1.5}' % T0, "values.amount"),
        (b'{"user_id": 7, "event_time": %d, "nope": 1}' % T0, "values.'nope'"),
        (b'{"user_id": 7, "event_time": "yesterday"}', "event_time"),
        (b'{"user_id": 7, "event_time": %d, "id": ""}' % T0, "id"),
        (None, "value"),
    ]
    generated_events(producer, [1, 2, 3], 10, seed=2)
    for value, _ in poison:
        producer.raw(value, key=b"poison")
    generated_events(producer, [1, 2, 3, 4], 10, seed=3, start=10)
    producer.flush()
    with streaming(setup.settings, group, setup.workdir / "poison.log") as stream:
        wait_for(lambda: _all_committed(f"fetcher-stream-{group}", topic, 2),
                 "every offset committed", why=stream.log_text)
        assert stream.metric("fetcher_stream_messages_dead_lettered_total") == len(poison)
        _served_equal(setup, "poison", producer, stream.log_text())
        assert "Traceback" not in stream.log_text()
    letters = _dead_letters(f"{topic}.dlq", len(poison))
    assert len(letters) == len(poison)
    by_value = {value: headers for value, headers in letters}
    for value, field in poison:
        headers = by_value[value]
        assert headers["fetcher.error.field"].decode() == field, (value, headers)
        assert headers["fetcher.error"].decode().startswith(field + ": "), headers
        assert headers["fetcher.group"].decode() == group
        assert headers["fetcher.source.topic"].decode() == topic
        assert int(headers["fetcher.source.offset"]) >= 0


def test_two_consumers_share_the_partitions_each_served_once(setup: Setup) -> None:
    topic, group = setup.topic("pair"), setup.groups["pair"]
    partitions = 4
    create_topic(topic, partitions)
    group_id = f"fetcher-stream-{group}"
    producer = EventProducer(topic)
    generated_events(producer, list(range(1, 17)), 10, seed=4)
    producer.flush()
    logs = [setup.workdir / f"pair-{n}.log" for n in (1, 2)]
    with streaming(setup.settings, group, logs[0], "--batch-size", "20") as one, \
            streaming(setup.settings, group, logs[1], "--batch-size", "20") as two:
        admin = AdminClient({"bootstrap.servers": KAFKA})

        def assignment() -> list[list[int]] | None:
            found = admin.describe_consumer_groups([group_id])[group_id].result(30)
            members = [sorted(tp.partition for tp in m.assignment.topic_partitions)
                       for m in found.members]
            if len(members) == 2 and all(members) and \
                    sorted(p for m in members for p in m) == list(range(partitions)):
                return members
            return None

        members = wait_for(assignment, "two members, each partition assigned once",
                           why=lambda: one.log_text()[-2000:] + two.log_text()[-2000:])
        generated_events(producer, list(range(1, 17)), 10, seed=5, start=10)
        producer.flush()
        wait_for(lambda: _all_committed(group_id, topic, partitions), "every offset committed",
                 why=lambda: one.log_text()[-2000:] + two.log_text()[-2000:])
        _served_equal(setup, "pair", producer)

        def lags() -> bool:
            # Each process reports the lag of the partitions it owns: together each
            # partition once, all caught up.
            mine = [s.lag() for s in (one, two)]
            owned = sorted(p for lag in mine for p in lag)
            return owned == list(range(partitions)) and \
                all(v == 0 for lag in mine for v in lag.values())

        wait_for(lags, "the lag gauges: each partition once, 0",
                 why=lambda: f"{one.lag()} {two.lag()}")
        consumed = [s.metric("fetcher_stream_messages_consumed_total") for s in (one, two)]
        # Each message read once in all (no rebalance after the split above moved any).
        assert members == assignment()
        assert sum(consumed) >= producer.produced
        assert all(c > 0 for c in consumed), consumed


def test_sigterm_finishes_the_batch_commits_and_exits_0(setup: Setup) -> None:
    """Avro values this time (the group's event schema, plain binary)."""
    topic, group = setup.topic("term"), setup.groups["term"]
    create_topic(topic, 2)
    settings_group = load_catalog(setup.settings.parent / "config").groups[group]
    from fastavro import parse_schema

    producer = EventProducer(topic, schema=parse_schema(event_schema(settings_group)))
    generated_events(producer, list(range(1, 9)), 25, seed=6)
    producer.flush()
    stream = start_stream(setup.settings, group, setup.workdir / "term.log", "--format", "avro",
                          "--batch-size", "10", "--linger-ms", "50")
    wait_for(lambda: stream.metric("fetcher_stream_events_applied_total") > 0,
             "the stream applies events", why=stream.log_text)
    code = stream.stop()
    assert code == 0, stream.log_text()
    group_id = f"fetcher-stream-{group}"
    found = re.search(r"stopped: offsets committed; (\d+) messages consumed", stream.log_text())
    assert found, stream.log_text()
    # Everything it read (and applied) is committed: a second run reads only the rest.
    first = committed(group_id, topic, 2)
    assert sum(max(o, 0) for o in first) == int(found.group(1)) > 0, (first, found.group(0))
    with streaming(setup.settings, group, setup.workdir / "term.log", "--format", "avro") as s:
        wait_for(lambda: _all_committed(group_id, topic, 2), "every offset committed",
                 why=s.log_text)
        assert s.metric("fetcher_stream_messages_consumed_total") == \
            producer.produced - sum(max(o, 0) for o in first)
        _served_equal(setup, "term", producer, s.log_text())


def _services(action: str) -> None:
    env = {**fetcher_env(), "FETCHER_TEST_KAFKA_PORT": str(RESTART_PORT),
           "KAFKA_KEEP_DATA": "1" if action == "restart" else ""}
    result = subprocess.run(["bash", "scripts/services.sh",
                             "start" if action != "stop" else "stop", "kafka"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, f"services.sh {action} kafka:\n{result.stdout}{result.stderr}"


def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(setup: Setup) -> None:
    bootstrap = f"127.0.0.1:{RESTART_PORT}"
    topic, group = setup.topic("restart"), setup.groups["restart"]
    group_id = f"fetcher-stream-{group}"
    _services("start")
    try:
        create_topic(topic, 2, bootstrap)
        producer = EventProducer(topic, bootstrap)
        generated_events(producer, list(range(1, 9)), 15, seed=7)
        producer.flush()
        with streaming(setup.settings, group, setup.workdir / "restart.log", "--bootstrap",
                       bootstrap, "--batch-size", "20") as stream:
            wait_for(lambda: committed(group_id, topic, 2, bootstrap)
                     == end_offsets(topic, 2, bootstrap), "the first half committed",
                     why=stream.log_text)
            _services("stop")
            _services("restart")
            assert stream.process.poll() is None, stream.log_text()
            generated_events(producer, list(range(1, 9)), 15, seed=8, start=15)
            producer.flush()
            wait_for(lambda: committed(group_id, topic, 2, bootstrap)
                     == end_offsets(topic, 2, bootstrap), "the second half committed",
                     why=stream.log_text)
            _served_equal(setup, "restart", producer, stream.log_text())
    finally:
        _services("stop")


DEADLINE = 180.0


def test_setup_errors_exit_2_naming_the_setting(setup: Setup) -> None:
    from tests.e2e.conftest import run_fetcher

    def stream(*args: str) -> subprocess.CompletedProcess[str]:
        return run_fetcher("stream", "--settings", str(setup.settings), *args,
                           command=(sys.executable, "-m", "fetcher.cli"))

    unknown = stream("--group", "no_such_group")
    assert unknown.returncode == 2 and "--group: unknown group 'no_such_group'" in \
        unknown.stderr, unknown.stderr
    missing = stream("--group", setup.groups["kill"], "--topic", f"absent-{new_tag()}")
    assert missing.returncode == 2 and "kafka.topic: topic 'absent-" in missing.stderr, \
        missing.stderr
    schema = stream("--group", setup.groups["kill"], "--print-schema")
    assert schema.returncode == 0, schema.stderr
    assert json.loads(schema.stdout)["name"] == f"{setup.groups['kill']}_event"
