"""The Kafka sink: each logged record one message of a topic, each schema once in a
compacted schema topic before any record of it (docs/operations.md, "Kafka sink").

A message: key = the entity's request key bytes (the sampling rule's key_bytes, so an
entity's records stay in one partition, in order), value = the record as Avro binary
(fetcher.featurelog._avro; no framing), timestamp = the request time, headers
`fetcher.schema_hash` (16 hex digits) and `fetcher.service`. The schema topic holds one
message per hash: key = the hash, value = the Avro schema's JSON, which carries the
descriptor it was made from.

Everything runs in the log's writer thread and nothing in it waits on the broker except
the first record of a schema (its schema message is acknowledged first, within
SCHEMA_WAIT_S) and the topic check (bounded, retried every TOPICS_RETRY_S): a broker that
is down makes the records drop and be counted, the queue in front drop, never a request
wait. The producer's own queue is bounded (`kafka_queue_records`, `kafka_queue_bytes`);
records that do not fit are dropped and counted (`sink_full`), records the broker did not
acknowledge within `kafka_delivery_timeout_ms` too (`delivery`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fetcher.codec import key_encoder
from fetcher.config import FeatureLogSettings
from fetcher.featurelog._avro import avro_schema_json
from fetcher.featurelog._avro_encode import encode_records
from fetcher.featurelog._schema import LogSchema
from fetcher.featurelog._sink import LogBatch
from fetcher.metrics import LimitedLog

log = logging.getLogger("fetcher.featurelog.kafka")

HEADER_HASH = "fetcher.schema_hash"
HEADER_SERVICE = "fetcher.service"
SCHEMA_WAIT_S = 5.0
TOPICS_RETRY_S = 10.0
ADMIN_TIMEOUT_S = 5.0
# One warning per kind of problem per this many seconds (a broker down is not a log storm).
WARN_EVERY_S = 10.0

#: (service, reason, records): records the sink lost after taking them.
LostCallback = Callable[[str, str, int], None]


@dataclass(frozen=True, slots=True)
class KafkaLogConfig:
    """Where and how the Kafka sink produces (from [log.features] kafka_* settings)."""

    bootstrap_servers: str
    topic: str
    schema_topic: str
    partitions: int = 3
    queue_records: int = 100_000
    queue_bytes: int = 64 * 1024 * 1024
    linger_ms: int = 50
    compression: str = "zstd"
    delivery_timeout_ms: int = 120_000
    close_timeout_s: float = 10.0
    schema_wait_s: float = SCHEMA_WAIT_S

    @classmethod
    def from_settings(cls, settings: FeatureLogSettings) -> KafkaLogConfig:
        """The config of validated settings (an empty schema topic: `<topic>.schemas`)."""
        return cls(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topic=settings.kafka_topic,
            schema_topic=settings.kafka_schema_topic or f"{settings.kafka_topic}.schemas",
            partitions=settings.kafka_partitions,
            queue_records=settings.kafka_queue_records,
            queue_bytes=settings.kafka_queue_bytes,
            linger_ms=settings.kafka_linger_ms,
            compression=settings.kafka_compression,
            delivery_timeout_ms=settings.kafka_delivery_timeout_ms,
            close_timeout_s=settings.kafka_close_timeout_s,
        )


class _Warnings:
    """This sink's rate-limited warnings (fetcher.metrics.LimitedLog, every WARN_EVERY_S)."""

    def __init__(self) -> None:
        self._limited = LimitedLog()

    def warn(self, kind: str, message: str, *args: object) -> None:
        self._limited.warn(log, kind, message, *args, every_s=WARN_EVERY_S)


class _ClientLog:
    """librdkafka's own log lines (a broker down logs every reconnect), rate limited."""

    def __init__(self, warnings: _Warnings) -> None:
        self._warnings = warnings

    def log(self, level: int, fmt: str, *args: object) -> None:
        if level >= logging.WARNING:
            self._warnings.warn(f"client.{args[0] if args else fmt}", "kafka: " + fmt, *args)
        else:
            log.log(level, fmt, *args)


class KafkaSink:
    """Logged records to a Kafka topic, schemas to a compacted topic (a LogSink)."""

    def __init__(self, config: KafkaLogConfig, *, lost: LostCallback | None = None,
                 client_id: str | None = None) -> None:
        """`lost(service, reason, records)` is called for records taken and then lost:
        `delivery` (not acknowledged in time, or refused) or `sink_full`."""
        self.config = config
        self._lost = lost
        self._warnings = _Warnings()
        name = client_id or f"fetcher-feature-log-{os.getpid()}"
        base: dict[str, Any] = {
            "bootstrap.servers": config.bootstrap_servers,
            "error_cb": self._on_error,
            "logger": _ClientLog(self._warnings),
            "log.connection.close": False,
        }
        producer: dict[str, Any] = {
            **base, "acks": "all", "enable.idempotence": True,
            "message.timeout.ms": config.delivery_timeout_ms,
        }
        self._base = base
        # Records: failures only reach Python (a Python call per record would cost about
        # as much as encoding it), to the callback of the record's service (a delivery
        # report carries no headers).
        self._producer = Producer({
            **producer, "client.id": name,
            "queue.buffering.max.messages": config.queue_records,
            "queue.buffering.max.kbytes": max(1, config.queue_bytes // 1024),
            "linger.ms": config.linger_ms, "compression.type": config.compression,
            "delivery.report.only.error": True,
        })
        # Schemas: a producer of their own, whose every delivery is reported: a record is
        # produced only once its schema is acknowledged.
        self._schema_producer = Producer({**producer, "client.id": f"{name}-schemas"})
        self._admin: AdminClient | None = None
        self._topics_ready = False
        self._topics_next_try = 0.0
        # hash -> True (acknowledged) or the monotonic deadline of its first wait.
        self._schemas: dict[str, bool | float] = {}
        self._headers: dict[str, list[tuple[str, str | bytes | None]]] = {}
        self._keys: dict[str, Callable[[Any], bytes]] = {}
        self._failed: dict[str, Callable[[KafkaError | None, Message], None]] = {}
        self.produced = 0  # records handed to the producer (for tests and tools)

    # -- the LogSink methods ------------------------------------------------------------

    def write(self, batch: LogBatch) -> None:
        """Produce the records of `batch` (OSError: none of them could be, e.g. the broker
        is unreachable or their schema is not acknowledged yet)."""
        if batch.records.num_rows == 0:
            return
        schema = batch.schema
        self._producer.poll(0)
        self._ensure_topics()
        self._ensure_schema(schema)
        decoded, malformed = batch.decoded()
        if malformed:
            self._lose(schema.service, "malformed", malformed)
            self._warnings.warn("malformed", "feature log: %d vector(s) of %s do not match "
                                "schema %s", malformed, schema.service, schema.hash)
        if decoded is None:
            return
        records = decoded.combine_chunks().to_batches()[0]
        values = encode_records(schema, records)
        keys = self._key_bytes(schema, records)
        times: Any = records.column("request_time").cast(pa.int64()).to_pylist()
        headers = self._headers_of(schema)
        failed = self._failed.get(schema.service)
        if failed is None:
            failed = self._failed[schema.service] = self._on_failed(schema.service)
        produce = self._producer.produce
        topic = self.config.topic
        full = refused = 0
        for value, key, at in zip(values, keys, times, strict=True):
            try:
                produce(topic, value=value, key=key, headers=headers, timestamp=at,
                        on_delivery=failed)
            except BufferError:
                full += 1
            except KafkaException as exc:  # e.g. a record larger than message.max.bytes
                refused += 1
                self._warnings.warn("refused", "feature log: Kafka refused a record of %s: %s",
                                    schema.service, exc)
        self.produced += len(values) - full - refused
        if full:
            self._lose(schema.service, "sink_full", full)
            self._warnings.warn(
                "full", "feature log: the Kafka producer's queue is full (broker slow or "
                "down): %d record(s) of %s dropped (fetcher_feature_log_dropped_total"
                '{reason="sink_full"})', full, schema.service)
        if refused:
            self._lose(schema.service, "delivery", refused)

    def tick(self) -> None:
        """Serve the producers' callbacks (failed deliveries, schema acknowledgements)."""
        self._producer.poll(0)
        self._schema_producer.poll(0)

    def close(self) -> None:
        """Wait up to close_timeout_s for every record to be acknowledged; drop (and
        count) what is still not."""
        deadline = time.monotonic() + self.config.close_timeout_s
        left = self._producer.flush(self.config.close_timeout_s)
        if left:
            # Purged records are reported as failed: counted by service like any other.
            self._producer.purge()
            self._producer.flush(1.0)
            log.warning("feature log: %d record(s) not acknowledged by Kafka within "
                        "kafka_close_timeout_s (%.1f s): dropped", left,
                        self.config.close_timeout_s)
        self._schema_producer.flush(max(0.1, deadline - time.monotonic()))

    # -- topics and schemas -------------------------------------------------------------

    def _ensure_topics(self) -> None:
        """Create the record and schema topics when missing (once; retried while the
        broker cannot be reached, at most every TOPICS_RETRY_S)."""
        if self._topics_ready:
            return
        now = time.monotonic()
        if now < self._topics_next_try:
            raise OSError(f"Kafka at {self.config.bootstrap_servers} did not answer (the "
                          "topics are checked again shortly)")
        self._topics_next_try = now + TOPICS_RETRY_S
        if self._admin is None:
            self._admin = AdminClient({**self._base, "client.id": "fetcher-feature-log-admin"})
        try:
            found = self._admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        except KafkaException as exc:
            raise OSError(f"Kafka at {self.config.bootstrap_servers} did not answer: "
                          f"{exc}") from None
        wanted = []
        if self.config.topic not in found:
            wanted.append(NewTopic(self.config.topic, self.config.partitions))
        if self.config.schema_topic not in found:
            wanted.append(NewTopic(self.config.schema_topic, 1,
                                   config={"cleanup.policy": "compact"}))
        if wanted:
            futures = self._admin.create_topics(wanted, operation_timeout=ADMIN_TIMEOUT_S)
            for name, future in futures.items():
                try:
                    future.result(ADMIN_TIMEOUT_S)
                    log.info("feature log: created Kafka topic %s", name)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise OSError(f"cannot create Kafka topic {name!r}: {exc}. Fix: "
                                      "create it, or grant this client CreateTopics") from None
        self._topics_ready = True

    def _ensure_schema(self, schema: LogSchema) -> None:
        """Produce `schema`'s schema message once, and return once it is acknowledged."""
        state = self._schemas.get(schema.hash)
        if state is True:
            return
        if state is None or state is False:
            state = self._schemas[schema.hash] = time.monotonic() + self.config.schema_wait_s
            self._schema_producer.produce(
                self.config.schema_topic, key=schema.hash.encode("ascii"),
                value=avro_schema_json(schema),
                on_delivery=lambda err, _msg: self._on_schema(schema.hash, err))
        # Waited for once: later batches of a schema still unacknowledged drop at once;
        # a refused one (False) is produced again with the next batch.
        while (isinstance(self._schemas.get(schema.hash), float)
               and time.monotonic() < state):
            self._schema_producer.poll(0.05)
        self._schema_producer.poll(0)
        if self._schemas.get(schema.hash) is not True:
            raise OSError(f"schema {schema.hash} of {schema.service} is not acknowledged by "
                          f"Kafka topic {self.config.schema_topic!r} yet: its records are "
                          "dropped until it is")

    def _on_schema(self, digest: str, err: KafkaError | None) -> None:
        if err is None:
            self._schemas[digest] = True
            return
        self._schemas[digest] = False  # produced again with its next records
        self._warnings.warn("schema", "feature log: schema %s not delivered to Kafka: %s",
                            digest, err)

    # -- records ------------------------------------------------------------------------

    def _headers_of(self, schema: LogSchema) -> list[tuple[str, str | bytes | None]]:
        headers = self._headers.get(schema.hash)
        if headers is None:
            headers = self._headers[schema.hash] = [
                (HEADER_HASH, schema.hash.encode("ascii")),
                (HEADER_SERVICE, schema.service.encode("utf-8"))]
        return headers

    def _key_bytes(self, schema: LogSchema, records: pa.RecordBatch) -> list[bytes]:
        encode = self._keys.get(schema.hash)
        if encode is None:
            encode = self._keys[schema.hash] = key_encoder(schema.keys)
        keys: Any = records.column("keys")
        columns = [c.to_pylist() for c in keys.flatten()]
        return [encode(values) for values in zip(*columns, strict=True)]

    def _on_failed(self, service: str) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of one service's records (called for failures only)."""

        def failed(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                return
            self._lose(service, "delivery", 1)
            if err.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
                self._warnings.warn(
                    "delivery", "feature log: a record of %s was not delivered to Kafka: %s "
                    '(fetcher_feature_log_dropped_total{reason="delivery"})', service, err)

        return failed

    def _on_error(self, err: KafkaError) -> None:
        self._warnings.warn(f"error.{err.code()}", "feature log: kafka: %s", err)

    def _lose(self, service: str, reason: str, count: int) -> None:
        if self._lost is not None and count:
            self._lost(service, reason, count)
