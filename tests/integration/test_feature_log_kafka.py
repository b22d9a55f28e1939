"""The feature log's Kafka sink against the real broker (scripts/services.sh): the records
on the topic are the sampled entities, each equal to the response sent and readable with
only the schema topic; each schema is written once and before its records; `fetcher logs
read kafka://...` gives the file sink's Parquet for the same requests; a broker that is
down or stuck, or a topic that goes away, drops and counts records, never an answer."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from fastavro import parse_schema, schemaless_reader

from fetcher.cli import main
from fetcher.codec import key_encoder
from fetcher.featurelog import FileSink, LogBatch, read_logs, read_topic
from fetcher.featurelog._kafka import KafkaSink
from tests.e2e.stream_support import KAFKA, create_topic, require_kafka, wait_for
from tests.servers import free_port
from tests.unit.derive_support import derived_snapshot
from tests.unit.featurelog.support import (
    LogHarness,
    demo_snapshot_with,
    expected_record,
    oracle_kept,
    record_of,
)

SERVICE = "user_merchant"
DEADLINE_S = 60.0


@pytest.fixture
def topic() -> str:
    """A topic name of this test alone (the sink creates it and its schema topic)."""
    require_kafka()
    return f"fetcher.test.feature-log.{uuid.uuid4().hex[:10]}"


def messages(topic: str, bootstrap: str = KAFKA) -> list[Message]:
    """Every message of `topic` now, partition by partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        parts = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in parts}
        todo = {p for p in parts if ends[p] > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        out: list[Message] = []

        def read() -> bool:
            for m in consumer.consume(500, timeout=0.5):
                if m.error() is None:
                    out.append(m)
                    if (m.offset() or 0) + 1 >= ends[m.partition() or 0]:
                        todo.discard(m.partition() or 0)
            return not todo

        wait_for(read, f"every message of {topic}", DEADLINE_S)
        return out
    finally:
        consumer.close()


def _headers(message: Message) -> dict[str, bytes]:
    headers: Any = message.headers() or []
    return dict(headers)


def _sample(h: LogHarness, name: str, labels: dict[str, str]) -> float:
    return h.h.metrics.registry.get_sample_value(name, labels) or 0.0


def _kafka(h_root: Path, snapshot: Any, topic: str, bootstrap: str = KAFKA,
           **settings: Any) -> LogHarness:
    """A harness whose log has the Kafka sink of the settings (through open_sink)."""
    return LogHarness(h_root, snapshot, log_settings={
        "sink": "kafka", "kafka_bootstrap_servers": bootstrap, "kafka_topic": topic,
        "kafka_partitions": 2, "kafka_linger_ms": 5, **settings})


async def test_records_on_the_topic_are_the_served_ones_and_read_with_the_schema_topic(
    tmp_path: Path, topic: str,
) -> None:
    h = _kafka(tmp_path, demo_snapshot_with({SERVICE: 50.0}), topic)
    await h.log.start()
    await h.fill()
    sent: dict[tuple[str, int], tuple[dict[str, int], Any, Any]] = {}
    for i in range(200):
        keys = {"user_id": i % 75, "merchant_id": i % 35}
        response = await h.get(SERVICE, keys, f"r{i}")
        sent[(f"r{i}", 0)] = (keys, response.metadata, response.vector)
    entities = [{"user_id": u, "merchant_id": u % 9} for u in range(40)]
    batch = await h.batch(SERVICE, entities, "b")
    for i, e in enumerate(entities):
        sent[("b", i)] = (e, batch.metadata, batch.vectors[i])
    await h.close()

    (schema_message,) = messages(f"{topic}.schemas")  # once per hash
    digest = schema_message.key()
    assert digest is not None and schema_message.value() is not None
    avro = parse_schema(json.loads(schema_message.value() or b""))
    found = messages(topic)
    kept = {k for k, (keys, _, _) in sent.items()
            if oracle_kept(SERVICE, [("int64", keys["user_id"]), ("int64", keys["merchant_id"])],
                           50.0)}
    assert 90 < len(kept) < 150
    encode = key_encoder(h.h.snapshot.plans.services[SERVICE].request_keys)
    records = {}
    for m in found:
        assert _headers(m) == {"fetcher.schema_hash": digest, "fetcher.service": SERVICE.encode()}
        rec: Any = schemaless_reader(io.BytesIO(m.value() or b""), avro, None)
        records[(rec["request_id"], rec["entity"])] = rec
        assert m.key() == encode([rec["keys"]["user_id"], rec["keys"]["merchant_id"]])
        assert m.timestamp()[1] == int(rec["request_time"].timestamp() * 1000)
    assert len(found) == len(records) and set(records) == kept
    version = h.h.snapshot.catalog.version
    for key, rec in records.items():
        keys, meta, vector = sent[key]
        assert rec["keys"] == keys and rec["config_version"] == version and rec["at"] is None
        assert record_of(rec, meta.groups, meta.feature_groups) == expected_record(meta, vector)
    assert {s for r in records.values() for s in r["statuses"].values()} >= {
        "PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"}
    assert _sample(h, "fetcher_feature_log_records_total", {"service": SERVICE}) == len(kept)


class TeeSink:
    """Every batch to a file sink and a Kafka sink: the same records in both."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def write(self, batch: LogBatch) -> None:
        for sink in self.sinks:
            sink.write(batch)

    def tick(self) -> None:
        for sink in self.sinks:
            sink.tick()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


async def test_reading_the_topic_gives_the_file_sinks_parquet(
    tmp_path: Path, topic: str, capsys: pytest.CaptureFixture[str],
) -> None:
    files = tmp_path / "files"
    from fetcher.featurelog._kafka import KafkaLogConfig

    kafka = KafkaSink(KafkaLogConfig(KAFKA, topic, f"{topic}.schemas", partitions=3,
                                     linger_ms=5))
    sink = TeeSink(FileSink(files, max_file_bytes=1 << 30, max_file_seconds=3600), kafka)
    h = LogHarness(tmp_path, derived_snapshot(), sink=sink)
    await h.log.start()
    await h.fill(users=12, merchants=12)
    for i in range(30):  # request-time values, derived features, some not stored
        context = {"amount": 3.0 * i, "channel": "web" if i % 2 else "app"}
        await h.get(SERVICE, {"user_id": i % 15, "merchant_id": i % 13}, f"s{i}", context)
    await h.batch(SERVICE, [{"user_id": u, "merchant_id": 1} for u in range(20)], "big",
                  [{"amount": float(u), "channel": "x"} for u in range(20)])
    await h.close()

    from_files, from_topic = tmp_path / "files.parquet", tmp_path / "topic.parquet"
    read_logs(files, SERVICE, from_files, since_ms=0)
    url = f"kafka://{KAFKA}/{topic}"
    assert main(["logs", "read", url, "--service", SERVICE, "--since", "0",
                 "-o", str(from_topic)]) == 0
    assert "50 records of user_merchant from 50 message(s)" in capsys.readouterr().out
    a, b = (pq.read_table(p).sort_by([("request_id", "ascending"), ("entity", "ascending")])
            for p in (from_files, from_topic))
    assert a.num_rows == 50 and a.schema == b.schema and a.equals(b)
    # A time range: the same records as the files' range.
    times = sorted(a.column("request_time").cast("int64").to_pylist())
    since, until = times[10], times[40]
    read_logs(files, SERVICE, from_files, since_ms=since, until_ms=until)
    summary = read_topic(url, SERVICE, str(from_topic), since_ms=since, until_ms=until)
    a, b = (pq.read_table(p).sort_by([("request_id", "ascending"), ("entity", "ascending")])
            for p in (from_files, from_topic))
    assert summary.records == a.num_rows > 0 and a.equals(b)
    assert main(["logs", "read", url, "--service", "nope", "--since", "0",
                 "-o", str(tmp_path / "x.parquet")]) == 1
    assert "no record of service 'nope'" in capsys.readouterr().err


async def test_records_wait_for_their_schema_and_are_dropped_while_it_is_refused(
    tmp_path: Path, topic: str,
) -> None:
    # A schema topic that refuses the schema message (too large for it): no record of that
    # schema may be produced before its schema is on the topic.
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.create_topics([NewTopic(f"{topic}.schemas", 1, config={
        "cleanup.policy": "compact", "max.message.bytes": "64"})])[f"{topic}.schemas"].result(30)
    create_topic(topic, 1)
    h = _kafka(tmp_path, demo_snapshot_with({}), topic)
    await h.log.start()
    await h.fill(users=5, merchants=5)
    for i in range(20):
        response = await h.get(SERVICE, {"user_id": i % 5, "merchant_id": i % 5}, f"x{i}")
        assert len(response.vector.statuses) == 44
    await h.close()
    errors = {"service": SERVICE, "reason": "error"}
    assert _sample(h, "fetcher_feature_log_dropped_total", errors) == 20
    assert _sample(h, "fetcher_feature_log_records_total", {"service": SERVICE}) == 0
    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": "x"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30) == (0, 0)
    finally:
        consumer.close()


@contextmanager
def black_hole() -> Iterator[str]:
    """An address that accepts connections and never answers (a stuck broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("broker", ["refused", "stuck"])
async def test_a_broker_down_at_start_drops_and_counts_and_every_answer_comes(
    tmp_path: Path, broker: str,
) -> None:
    with black_hole() as stuck:
        address = stuck if broker == "stuck" else f"127.0.0.1:{free_port()}"
        h = _kafka(tmp_path, demo_snapshot_with({}), "fetcher.test.unreachable", address,
                   queue_size=10, kafka_close_timeout_s=2.0)
        await h.log.start()
        await h.fill(users=5, merchants=5)
        dropped = {"service": SERVICE, "reason": "queue_full"}
        sent = 0
        try:
            # The writer waits (bounded) for the broker: the queue fills and drops; the
            # answers never wait for it.
            while _sample(h, "fetcher_feature_log_dropped_total", dropped) == 0:
                response = await h.get(SERVICE, {"user_id": sent % 5, "merchant_id": 1},
                                       f"d{sent}")
                assert len(response.vector.statuses) == 44
                sent += 1
                assert sent < 100_000
                await asyncio.sleep(0)
        finally:
            await h.close()
    queue_full = _sample(h, "fetcher_feature_log_dropped_total", dropped)
    errors = _sample(h, "fetcher_feature_log_dropped_total",
                     {"service": SERVICE, "reason": "error"})
    assert queue_full > 0 and errors > 0 and queue_full + errors == sent
    assert _sample(h, "fetcher_feature_log_records_total", {"service": SERVICE}) == 0


async def test_a_topic_gone_mid_run_drops_and_counts_the_undelivered(
    tmp_path: Path, topic: str,
) -> None:
    h = _kafka(tmp_path, demo_snapshot_with({}), topic, kafka_delivery_timeout_ms=3000)
    await h.log.start()
    await h.fill(users=5, merchants=5)
    for i in range(10):
        await h.get(SERVICE, {"user_id": i % 5, "merchant_id": 2}, f"a{i}")
    await h.log.flush()
    wait_for(lambda: len(messages(topic)) == 10, "the first ten records on the topic")
    admin = AdminClient({"bootstrap.servers": KAFKA})
    admin.delete_topics([topic])[topic].result(30)
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, f"{topic} deleted")
    try:
        for i in range(15):
            response = await h.get(SERVICE, {"user_id": i % 5, "merchant_id": 3}, f"b{i}")
            assert len(response.vector.statuses) == 44
        await h.log.flush()
        delivery = {"service": SERVICE, "reason": "delivery"}
        # Refused, or not acknowledged within kafka_delivery_timeout_ms: counted either way.
        await asyncio.to_thread(
            wait_for, lambda: _sample(h, "fetcher_feature_log_dropped_total", delivery) == 15,
            "the fifteen records after the delete counted as not delivered")
    finally:
        await h.close()
    assert _sample(h, "fetcher_feature_log_records_total", {"service": SERVICE}) == 25
