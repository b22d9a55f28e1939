"""`fetcher logs read kafka://HOST:PORT/TOPIC`: the Kafka sink's records -> the same flat
Parquet file as from the log's files (fetcher.featurelog._read.write_flat).

The schema topic is read whole first (key = hash, value = the Avro schema with its
descriptor; each checked against its hash). Then every partition of the record topic is
read from the first offset whose timestamp (the request time) is at or after --since up to
its end as it was when the read started; the records of the service (its header) are
decoded with their schema (the hash header) and spooled, per schema, to temporary Parquet
files of the files' own layout, which the flat output is then written from. Rows come in
schema, then partition order.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, TopicPartition

from fetcher.featurelog._avro import RecordDecoder, SchemaMismatch, schema_from_json
from fetcher.featurelog._kafka import HEADER_HASH, HEADER_SERVICE
from fetcher.featurelog._read import LogReadError, ReadSummary, write_flat
from fetcher.featurelog._schema import LogSchema

log = logging.getLogger("fetcher.featurelog.read")
KAFKA_SCHEME = "kafka://"
# Records decoded (and spooled) at once per schema.
DECODE_CHUNK = 10_000
# A read that makes no progress this long fails (broker gone mid-read).
STALL_S = 30.0


@dataclass(frozen=True, slots=True)
class TopicSource:
    """A `kafka://host:port[,host:port]/topic[?schemas=topic]` source."""

    bootstrap_servers: str
    topic: str
    schema_topic: str

    @classmethod
    def parse(cls, url: str, schema_topic: str | None = None) -> TopicSource:
        """The source of a kafka:// URL (LogReadError naming the fix when it is not one)."""
        parts = urlsplit(url)
        topic = parts.path.strip("/")
        if parts.scheme != "kafka" or not parts.netloc or not topic or "/" in topic:
            raise LogReadError(f"{url!r} is not a topic. Fix: write "
                               "kafka://host:port[,host:port...]/topic")
        query = parse_qs(parts.query).get("schemas", [])
        return cls(parts.netloc, topic, schema_topic or (query[0] if query
                                                         else f"{topic}.schemas"))


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"fetcher-logs-read-{secrets.token_hex(4)}",  # assign() only: no commits
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "enable.partition.eof": False, "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "logger": logging.getLogger("fetcher.featurelog.read.kafka"),
        "log.connection.close": False,
    })


def _partitions(consumer: Consumer, source: TopicSource, topic: str) -> list[int]:
    try:
        meta = consumer.list_topics(topic, timeout=STALL_S)
    except KafkaException as exc:
        raise LogReadError(f"no Kafka broker answered at {source.bootstrap_servers!r} "
                           f"({exc}). Fix: check the address, or start the broker") from None
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise LogReadError(f"topic {topic!r} does not exist on {source.bootstrap_servers}. "
                           "Fix: check the topic (log.features.kafka_topic; the schemas are "
                           "in kafka_schema_topic, default <topic>.schemas)")
    return sorted(found.partitions)


def _read_range(consumer: Consumer, topic: str, starts: dict[int, int],
                ends: dict[int, int]) -> Iterator[Message]:
    """Every message of `topic` at offsets [starts[p], ends[p]) of each partition p."""
    todo = {p: ends[p] for p in starts if starts[p] < ends[p]}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
    last_progress = time.monotonic()
    try:
        while todo:
            batch = consumer.consume(num_messages=1000, timeout=1.0)
            if batch:
                last_progress = time.monotonic()
            else:  # the last offsets may hold nothing to deliver (compacted away)
                for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                    if tp.offset >= todo[tp.partition]:
                        del todo[tp.partition]
            if not batch and todo and time.monotonic() - last_progress > STALL_S:
                raise LogReadError(f"reading {topic!r} made no progress for {STALL_S:.0f} s "
                                   f"(partitions {sorted(todo)} unfinished). Fix: check the "
                                   "broker and read again")
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise LogReadError(f"reading {topic!r}: {error}")
                    continue
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                end = todo.get(partition)
                if end is None or offset >= end:
                    continue
                if offset + 1 >= end:
                    del todo[partition]
                yield message
    finally:
        consumer.unassign()


def _watermarks(consumer: Consumer, topic: str,
                partitions: list[int]) -> dict[int, tuple[int, int]]:
    out = {}
    for p in partitions:
        try:
            out[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=STALL_S)
        except KafkaException as exc:
            raise LogReadError(f"cannot read the offsets of {topic!r} partition {p}: {exc}. "
                               "Fix: check the broker") from None
    return out


def read_schemas(consumer: Consumer, source: TopicSource) -> dict[str, LogSchema]:
    """Every schema of the schema topic, by hash (each checked against its hash)."""
    partitions = _partitions(consumer, source, source.schema_topic)
    marks = _watermarks(consumer, source.schema_topic, partitions)
    out: dict[str, LogSchema] = {}
    for message in _read_range(consumer, source.schema_topic,
                               {p: low for p, (low, _) in marks.items()},
                               {p: high for p, (_, high) in marks.items()}):
        key, value = message.key(), message.value()
        if not key or not value:
            continue
        digest = key.decode("ascii", "replace")
        try:
            out[digest] = schema_from_json(value, digest)
        except (SchemaMismatch, ValueError, KeyError) as exc:
            raise LogReadError(f"{source.schema_topic}: the schema of key {digest!r} "
                               f"(offset {message.offset()}) does not read: {exc}. Fix: "
                               "restore it from the log's backup") from None
    return out


def _header(message: Message, name: str) -> str | None:
    headers: Any = message.headers() or []
    for key, value in headers:
        if key == name and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None


class _Spool:
    """Decoded records per schema, in temporary Parquet files of the files' layout."""

    def __init__(self, directory: Path, schemas: dict[str, LogSchema]) -> None:
        self._dir = directory
        self._schemas = schemas
        self._pending: dict[str, list[bytes]] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._decoders: dict[str, RecordDecoder] = {}

    def add(self, digest: str, value: bytes) -> None:
        values = self._pending.setdefault(digest, [])
        values.append(value)
        if len(values) >= DECODE_CHUNK:
            self._flush(digest)

    def _flush(self, digest: str) -> None:
        values = self._pending.pop(digest, [])
        if not values:
            return
        decoder = self._decoders.get(digest)
        if decoder is None:
            decoder = self._decoders[digest] = RecordDecoder(self._schemas[digest])
        batch = decoder.decode(values)
        writer = self._writers.get(digest)
        if writer is None:
            writer = self._writers[digest] = pq.ParquetWriter(
                str(self._dir / f"{digest}.parquet"), batch.schema)
        writer.write_batch(batch)

    def parts(self) -> Iterator[tuple[str, pa.Table]]:
        """(hash, raw records) per row group of every spooled schema."""
        for digest in list(self._pending):
            self._flush(digest)
        for writer in self._writers.values():
            writer.close()
        for digest in self._writers:
            spooled = pq.ParquetFile(self._dir / f"{digest}.parquet")
            for i in range(spooled.num_row_groups):
                yield digest, spooled.read_row_group(i)

    def used(self) -> dict[str, LogSchema]:
        """The schemas with records."""
        return {d: self._schemas[d] for d in [*self._writers, *self._pending]}


def read_topic(
    url: str,
    service: str,
    out: str | os.PathLike[str],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    schema_hash: str | None = None,
    schema_topic: str | None = None,
) -> ReadSummary:
    """Write the records of `service` in the topic of `url` with since_ms <= request_time <
    until_ms to `out` (the columns of fetcher.featurelog.read_logs)."""
    source = TopicSource.parse(url, schema_topic)
    consumer = _consumer(source.bootstrap_servers)
    try:
        schemas = read_schemas(consumer, source)
        partitions = _partitions(consumer, source, source.topic)
        marks = _watermarks(consumer, source.topic, partitions)
        starts = {p: low for p, (low, _) in marks.items()}
        if since_ms:
            try:
                found = consumer.offsets_for_times(
                    [TopicPartition(source.topic, p, since_ms) for p in partitions],
                    timeout=STALL_S)
            except KafkaException as exc:
                raise LogReadError(f"cannot find the offsets of --since in {source.topic!r}: "
                                   f"{exc}. Fix: check the broker") from None
            for tp in found:  # OFFSET_END (-1): nothing at or after since
                starts[tp.partition] = (marks[tp.partition][1] if tp.offset in (OFFSET_END, -1)
                                        else max(tp.offset, marks[tp.partition][0]))
        with tempfile.TemporaryDirectory(prefix=".fetcher-logs-read-",
                                         dir=Path(out).resolve().parent) as spool_dir:
            spool = _Spool(Path(spool_dir), schemas)
            messages = 0
            for message in _read_range(consumer, source.topic, starts,
                                       {p: high for p, (_, high) in marks.items()}):
                messages += 1
                if _header(message, HEADER_SERVICE) != service:
                    continue
                _, at = message.timestamp()  # the request time: filtered before decoding
                if (since_ms is not None and at < since_ms) or (
                        until_ms is not None and at >= until_ms):
                    continue
                digest = _header(message, HEADER_HASH)
                value = message.value()
                if digest is None or value is None:
                    continue
                if schema_hash is not None and digest != schema_hash:
                    continue
                if digest not in schemas:
                    raise LogReadError(
                        f"{source.topic} partition {message.partition()} offset "
                        f"{message.offset()}: schema {digest} is not in "
                        f"{source.schema_topic}. Fix: give the schema topic (--schema-topic)")
                spool.add(digest, value)
            used = spool.used()
            if not used:
                raise LogReadError(
                    f"{url}: no record of service {service!r}"
                    f"{' with schema ' + schema_hash if schema_hash else ''} in that time "
                    f"range ({messages:,} message(s) read). Fix: check --service and --since")
            summary = write_flat(used, spool.parts(), out, since_ms=since_ms,
                                 until_ms=until_ms)
            summary.messages = messages
            return summary
    finally:
        consumer.close()
