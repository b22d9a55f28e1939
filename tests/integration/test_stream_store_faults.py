"""StreamConsumer on the real broker while its Redis store stops answering: the batch is
retried with backoff, no offset is committed past it, and once the store answers the log
holds each event once (tests/log_model's reading rule over what was produced)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fetcher.catalog import load_catalog
from fetcher.load import EventWriter
from fetcher.stream import StreamConfig, StreamConsumer, StreamMetrics
from kvstores import LogEntry, open_store
from tests.e2e.aggregation_support import new_tag, write_config
from tests.e2e.stream_support import (
    KAFKA,
    SPEC,
    EventProducer,
    committed,
    create_topic,
    end_offsets,
    generated_events,
    require_kafka,
)
from tests.integration.test_store_contract import RedisServer
from tests.log_model import MAX_TS, Written, model_read, remember

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def _until(check: object, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.2)


async def test_a_store_outage_is_retried_and_nothing_is_committed_past_it(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    require_kafka()
    tag = new_tag()
    group = load_catalog(write_config(tmp_path / "config", [(f"sf_{tag}", "sf", SPEC)])
                         ).groups[f"sf_{tag}"]
    topic = f"fetcher.events.{group.name}"
    create_topic(topic, 2)
    store = open_store(own_redis.url, timeout_s=1.0)
    config = StreamConfig(bootstrap_servers=KAFKA, topic=topic, group_id=f"sf-{tag}",
                          dead_letter_topic=f"{topic}.dlq", batch_size=25, linger_s=0.1,
                          retry_backoff_max_s=0.5, session_timeout_ms=6000)
    metrics = StreamMetrics(group.name)
    consumer = StreamConsumer(EventWriter(group, store), config, metrics)
    producer = EventProducer(topic)
    generated_events(producer, list(range(1, 7)), 10, seed=11)
    producer.flush()
    await consumer.start()
    try:
        async def all_committed() -> bool:
            await consumer.step()
            return committed(config.group_id, topic, 2) == end_offsets(topic, 2)

        await _until(all_committed, "the first events applied and committed")
        before = committed(config.group_id, topic, 2)
        own_redis.freeze()  # every store call now times out
        generated_events(producer, list(range(1, 7)), 10, seed=12, start=10)
        producer.flush()
        step = asyncio.create_task(consumer.step())

        async def retried() -> bool:
            value = metrics.registry.get_sample_value("fetcher_stream_store_retries_total",
                                                      {"group": group.name})
            return (value or 0) >= 2

        await _until(retried, "the batch write retried")
        assert not step.done()
        assert committed(config.group_id, topic, 2) == before
        own_redis.thaw()
        outcome = await asyncio.wait_for(step, 120)
        assert outcome.applied > 0

        async def rest_committed() -> bool:
            await consumer.step()
            return committed(config.group_id, topic, 2) == end_offsets(topic, 2)

        await _until(rest_committed, "the rest applied and committed")
    finally:
        await consumer.close()
    # The store's log against the model of the events produced (each once).
    written: Written = {}
    encode = consumer.writer.key_bytes
    codec = consumer.writer.aggregator.codec
    for user, events in producer.oracle.events.items():
        remember(written, [LogEntry(group.dataset, encode([user]), ts, ident.encode(),
                                    codec.encode(codec.values(values)), None)
                           for ts, ident, values in events])
    try:
        for user in producer.oracle.events:
            lookup = (group.dataset, encode([user]), 0, MAX_TS, 10_000)
            got = (await store.read_logs([lookup]))[0]
            want = model_read(written, lookup)
            # Events without an id are named topic/partition/offset by the stream: compare
            # times and payloads, and the ids given.
            assert sorted((ts, p) for ts, _, p in got.events) == \
                sorted((ts, p) for ts, _, p in want.events), user
            given = {i for _, i, _ in want.events if i.startswith(b"e-")}
            assert given <= {i for _, i, _ in got.events}
    finally:
        await store.close()
