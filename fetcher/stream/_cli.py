"""`fetcher stream --group G`: settings, catalog, store and topics around StreamConsumer.

Exit codes: 0 stopped by SIGTERM/SIGINT with every applied offset committed; 1 stopped
without committing what it read (store down past kafka.stop_timeout_s, a fatal Kafka
error); 2 nothing could start (settings, catalog, group, store, topic).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fetcher.catalog import CatalogError, load_catalog
from fetcher.config import KafkaSettings, Settings
from fetcher.load import EventWriter
from fetcher.stream._consumer import StreamConfig, StreamConsumer, StreamStopped
from fetcher.stream._decode import event_schema
from fetcher.stream._metrics import StreamMetrics
from fetcher.types import FeatureGroup
from kvstores import StoreError, open_store

EXIT_OK = 0
EXIT_STOPPED = 1
EXIT_SETUP = 2
_ADMIN_TIMEOUT_S = 15.0

log = logging.getLogger("fetcher.stream")


class StreamSetupError(Exception):
    """The stream cannot start; the message names the setting or object and the fix."""


def stream_config(kafka: KafkaSettings, group: str, args: argparse.Namespace) -> StreamConfig:
    """The consumer's config: [kafka] settings, then the command line's overrides."""
    topic = args.topic or kafka.topic.format(group=group)
    return StreamConfig(
        bootstrap_servers=args.bootstrap or kafka.bootstrap_servers,
        topic=topic,
        group_id=args.group_id or kafka.group_id.format(group=group),
        dead_letter_topic=(args.dead_letter_topic
                           or kafka.dead_letter_topic.format(group=group, topic=topic)),
        value_format=args.format or kafka.value_format,
        event_time_field=kafka.event_time_field,
        id_field=kafka.id_field,
        batch_size=args.batch_size if args.batch_size is not None else kafka.batch_size,
        linger_s=(args.linger_ms if args.linger_ms is not None else kafka.linger_ms) / 1000,
        session_timeout_ms=kafka.session_timeout_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        retry_backoff_max_s=kafka.retry_backoff_max_s,
        stop_timeout_s=kafka.stop_timeout_s,
        client_id=f"fetcher-stream-{group}",
    )


def _aggregation_group(settings: Settings, name: str) -> FeatureGroup:
    try:
        catalog = load_catalog(settings.server.config_dir, settings.stores.keys())
    except CatalogError as exc:
        raise StreamSetupError(str(exc)) from exc
    group = catalog.groups.get(name)
    if group is None or group.aggregation is None:
        known = ", ".join(sorted(n for n, g in catalog.groups.items()
                                 if g.aggregation is not None)) or "(none)"
        what = "unknown group" if group is None else "not an aggregation group:"
        raise StreamSetupError(f"--group: {what} {name!r} in {settings.server.config_dir} "
                               f"(aggregation groups: {known}); `fetcher stream` applies the "
                               "events of a group with aggregations")
    return group


def check_topics(config: StreamConfig) -> int:
    """The topic's partition count; creates the dead-letter topic when it is missing."""
    admin = AdminClient({"bootstrap.servers": config.bootstrap_servers, "log_level": 0})
    try:
        meta = admin.list_topics(timeout=_ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise StreamSetupError(f"kafka.bootstrap_servers: no broker answered at "
                               f"{config.bootstrap_servers!r} within {_ADMIN_TIMEOUT_S:.0f} s "
                               f"({exc}); check the address or start the broker") from None
    found = meta.topics.get(config.topic)
    if found is None or found.error is not None:
        raise StreamSetupError(
            f"kafka.topic: topic {config.topic!r} does not exist on "
            f"{config.bootstrap_servers}; create it (its partitions are how the work spreads "
            "over consumers) or pass --topic")
    if config.dead_letter_topic not in meta.topics:
        futures = admin.create_topics([NewTopic(config.dead_letter_topic, 1)])
        try:
            futures[config.dead_letter_topic].result(_ADMIN_TIMEOUT_S)
            log.info("created the dead-letter topic %s", config.dead_letter_topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another consumer won
                raise StreamSetupError(
                    f"kafka.dead_letter_topic: cannot create {config.dead_letter_topic!r}: "
                    f"{exc}; create it or grant the consumer CreateTopics") from None
    return len(found.partitions)


async def run_stream(settings: Settings, args: argparse.Namespace) -> int:
    """`fetcher stream --group G`: consume until SIGTERM/SIGINT."""
    err = sys.stderr
    # The handlers go in first: a signal during the setup below stops the consumer before
    # its first poll (exit 0, nothing consumed) instead of killing the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        group = _aggregation_group(settings, args.group)
    except StreamSetupError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_SETUP
    config = stream_config(settings.kafka, group.name, args)
    if config.value_format not in ("json", "avro"):
        err.write(f"error: --format: {config.value_format!r} is not a value format; use json "
                  "or avro\n")
        return EXIT_SETUP
    if config.batch_size <= 0 or config.linger_s <= 0:
        err.write("error: --batch-size and --linger-ms must be > 0\n")
        return EXIT_SETUP
    if args.print_schema:
        print(json.dumps(event_schema(group, event_time_field=config.event_time_field,
                                      id_field=config.id_field), indent=2))
        return EXIT_OK
    try:
        partitions = await asyncio.to_thread(check_topics, config)
    except StreamSetupError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_SETUP
    conf = settings.stores[group.store]
    try:
        store = open_store(conf.url, timeout_s=conf.timeout_ms / 1000)
    except (StoreError, ValueError) as exc:
        err.write(f"error: store {conf.name!r}: {exc}\n")
        return EXIT_SETUP
    try:
        try:
            await store.create()
        except StoreError as exc:
            err.write(f"error: store {conf.name!r}: cannot create its tables: {exc}\n")
            return EXIT_SETUP
        metrics = StreamMetrics(group.name)
        if args.metrics_port is not None:
            try:
                metrics.serve(args.metrics_port, args.metrics_host)
            except OSError as exc:
                err.write(f"error: --metrics-port {args.metrics_port}: {exc.strerror}\n")
                return EXIT_SETUP
        consumer = StreamConsumer(EventWriter(group, store), config, metrics)
        log.info("streaming %s (%d partitions, %s) into group %s as consumer group %s; "
                 "dead letters to %s", config.topic, partitions, config.value_format,
                 group.name, config.group_id, config.dead_letter_topic)
        try:
            await consumer.run(stop)
        except StreamStopped as exc:
            err.write(f"error: stopped without committing: {exc}\n")
            return EXIT_STOPPED
        finally:
            # Stopping: a second signal must not kill the exit that follows (closing the
            # loop would put the default handlers back).
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_IGN)
        t = consumer.totals
        log.info("stopped: offsets committed; %d messages consumed, %d events applied (%d "
                 "late), %d dead-lettered", t.consumed, t.applied, t.late, t.dead_lettered)
        return EXIT_OK
    finally:
        await store.close()
