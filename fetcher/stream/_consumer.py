"""The Kafka consumer loop of one aggregation group: read a batch, decode, dead-letter what
does not fit, apply the rest through EventWriter.push, then commit the batch's offsets.

Delivery is at least once (offsets are committed only after the store acknowledged the
batch and the dead letters were acknowledged by Kafka); the effect is exactly once because
a redelivered message is the same event (its id, by default topic/partition/offset, and
time are the same) and the log counts each (time, id) once. docs/streaming.md.

confluent-kafka's calls block, so every call on the consumer and the producer runs on one
worker thread of our own (librdkafka's rebalance callbacks then run there too, between
batches); the store writes run on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from fetcher.load import EventRejected, EventWriter, PushEvent
from fetcher.stream._decode import EventDecoder
from fetcher.stream._metrics import StreamMetrics
from kvstores import StoreError

log = logging.getLogger("fetcher.stream")
_T = TypeVar("_T")
# One warning per kind of Kafka client error per this many seconds (a broker down would
# otherwise log every reconnect attempt).
_ERROR_LOG_INTERVAL_S = 10.0
_DLQ_FLUSH_S = 30.0


class StreamStopped(Exception):
    """The consumer stopped without committing what it read (store down past the stop
    timeout, or a fatal Kafka error); a restart reads those messages again."""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Where one consumer reads and how (from [kafka] settings and the command line)."""

    bootstrap_servers: str
    topic: str
    group_id: str
    dead_letter_topic: str
    value_format: str = "json"
    event_time_field: str = "event_time"
    id_field: str = "id"
    batch_size: int = 500
    linger_s: float = 0.1
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000
    retry_backoff_max_s: float = 10.0
    stop_timeout_s: float = 30.0
    client_id: str = "fetcher-stream"


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did (for tests and the log)."""

    consumed: int = 0
    applied: int = 0
    late: int = 0
    dead_lettered: int = 0


class _RateLimitedLog:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) >= _ERROR_LOG_INTERVAL_S:
            self._last[kind] = now
            log.warning(message, *args)


def _message_ms(message: Message) -> int | None:
    kind, ts = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else int(ts)


class StreamConsumer:
    """Consumes one group's topic into its store until `stop` is set."""

    def __init__(self, writer: EventWriter, config: StreamConfig, metrics: StreamMetrics
                 ) -> None:
        self.writer = writer
        self.config = config
        self.metrics = metrics
        self.decoder = EventDecoder(writer, value_format=config.value_format,
                                    event_time_field=config.event_time_field,
                                    id_field=config.id_field)
        self._errors = _RateLimitedLog()
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="kafka")
        # Offsets of applied messages not committed yet: (topic, partition) -> next offset.
        self._pending: dict[tuple[str, int], int] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._fatal: KafkaError | None = None
        self.totals = BatchOutcome()  # since start
        base = {"bootstrap.servers": config.bootstrap_servers, "client.id": config.client_id,
                "error_cb": self._on_error, "logger": logging.getLogger("fetcher.stream.kafka"),
                "log.connection.close": False}
        self._consumer = Consumer({
            **base,
            "group.id": config.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": config.session_timeout_ms,
            "max.poll.interval.ms": config.max_poll_interval_ms,
            "isolation.level": "read_committed",
        })
        self._producer = Producer({**base, "enable.idempotence": True, "linger.ms": 5})

    # -- Kafka calls, all on the one worker thread -----------------------------------------

    async def _k(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._kafka, lambda: fn(*args, **kwargs))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
            log.error("kafka: fatal error: %s", error)
            return
        self._errors.warning(str(error.code()), "kafka: %s (retrying)", error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        log.info("assigned partitions %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called inside consume(), between batches: what is pending was applied. Commit it
        # while the partitions are still ours; a failure only means a redelivery.
        revoked = {(p.topic, p.partition) for p in partitions}
        mine = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()
                if (t, p) in revoked]
        if mine:
            try:
                consumer.commit(offsets=mine, asynchronous=False)
            except KafkaException as exc:
                self.metrics.commit_failures.inc()
                log.warning("commit on revoke failed (those messages are redelivered to the "
                            "next owner and applied once): %s", exc)
        for key in revoked:
            self._pending.pop(key, None)
            self._assigned.discard(key)
            self.metrics.forget_partition(*key)
        log.info("revoked partitions %s", sorted(p.partition for p in partitions))

    def _subscribe(self) -> None:
        self._consumer.subscribe([self.config.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _commit_pending(self) -> bool:
        if not self._pending:
            return True
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.metrics.commit_failures.inc()
            self._errors.warning("commit", "offset commit failed (kept, retried with the next "
                                 "batch): %s", exc)
            return False
        for tp in offsets:
            if self._pending.get((tp.topic, tp.partition)) == tp.offset:
                del self._pending[(tp.topic, tp.partition)]
        return True

    def _update_lag(self) -> None:
        if not self._assigned:
            return
        parts = [TopicPartition(t, p) for t, p in self._assigned]
        for tp in self._consumer.position(parts):
            if tp.offset < 0:
                continue
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                self.metrics.set_lag(tp.topic, tp.partition, max(high - tp.offset, 0))

    def _dead_letter_sync(self, dead: Sequence[tuple[Message, EventRejected]]) -> int:
        """Produce the dead letters and wait for Kafka's acknowledgement; the failed count."""
        failed = 0

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            nonlocal failed
            if err is not None:
                failed += 1

        for message, reason in dead:
            headers: list[tuple[str, str | bytes | None]] = [
                ("fetcher.error", str(reason).encode()),
                ("fetcher.error.field", reason.field.encode()),
                ("fetcher.group", self.writer.group.name.encode()),
                ("fetcher.source.topic", (message.topic() or "").encode()),
                ("fetcher.source.partition", str(message.partition()).encode()),
                ("fetcher.source.offset", str(message.offset()).encode()),
            ]
            self._producer.produce(self.config.dead_letter_topic, value=message.value(),
                                   key=message.key(), headers=headers, on_delivery=delivered)
        left = self._producer.flush(_DLQ_FLUSH_S)
        return failed + left

    # -- the loop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the consumer group (partitions are assigned during the next steps)."""
        await self._k(self._subscribe)

    async def close(self) -> None:
        """Leave the group (its partitions move to the others at once) and stop."""
        await self._k(self._close)
        self._kafka.shutdown(wait=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then commit and leave the group; raises
        StreamStopped when it could not finish the batch it was in."""
        await self.start()
        try:
            while not stop.is_set():
                if self._fatal is not None:
                    raise StreamStopped(f"kafka: fatal error: {self._fatal}")
                await self.step(stop)
            if not await self.commit_at_stop():
                raise StreamStopped("the last offsets could not be committed within "
                                    f"{self.config.stop_timeout_s} s (they are applied: "
                                    "the next start reads them again and counts them once)")
        finally:
            await self.close()

    def _close(self) -> None:
        try:
            self._consumer.close()  # leaves the group: its partitions move at once
        except (KafkaException, RuntimeError) as exc:
            log.warning("kafka: close: %s", exc)
        self._producer.flush(5)

    async def commit_at_stop(self) -> bool:
        """Commit what is pending, retrying up to the stop timeout; False when it could not."""
        deadline = time.monotonic() + self.config.stop_timeout_s
        delay = 0.1
        while not await self._k(self._commit_pending):
            if time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        return True

    async def step(self, stop: asyncio.Event | None = None) -> BatchOutcome:
        """Read one batch (up to batch_size messages, waiting up to linger), apply it and
        commit its offsets."""
        cfg = self.config
        messages: list[Message] = await self._k(self._consumer.consume, cfg.batch_size,
                                                cfg.linger_s)
        outcome = BatchOutcome()
        started = time.perf_counter()
        events: list[PushEvent] = []
        dead: list[tuple[Message, EventRejected]] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    self._fatal = error
                else:
                    self._errors.warning(f"msg{error.code()}", "kafka: %s", error)
                continue
            topic, partition, offset = message.topic() or "", message.partition(), \
                message.offset()
            if partition is None or offset is None:
                continue
            offsets[(topic, partition)] = offset + 1
            outcome.consumed += 1
            try:
                events.append(self.decoder.decode(message.value(), _message_ms(message),
                                                  f"{topic}/{partition}/{offset}"))
            except EventRejected as exc:
                dead.append((message, exc))
        self.metrics.consumed.inc(outcome.consumed)
        if dead:
            await self._send_dead_letters(dead, stop)
            outcome.dead_lettered = len(dead)
            self.metrics.dead_lettered.inc(len(dead))
        if events:
            result = await self._push(events, stop)
            outcome.applied, outcome.late = len(events), result.late
            self.metrics.applied.inc(len(events))
            self.metrics.late.inc(result.late)
        if offsets:
            self._pending.update(offsets)
            await self._k(self._commit_pending)
            self.metrics.batches.observe(time.perf_counter() - started)
        await self._k(self._update_lag)
        for name in ("consumed", "applied", "late", "dead_lettered"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(outcome, name))
        return outcome

    def _give_up(self, stop: asyncio.Event | None, stopping_since: list[float]) -> bool:
        if stop is None or not stop.is_set():
            return False
        if not stopping_since:
            stopping_since.append(time.monotonic())
        return time.monotonic() - stopping_since[0] > self.config.stop_timeout_s

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.config.retry_backoff_max_s, 0.1 * 2 ** min(attempt, 16))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _push(self, events: list[PushEvent], stop: asyncio.Event | None) -> Any:
        attempt = 0
        stopping_since: list[float] = []
        while True:
            try:
                return await self.writer.push(events)
            except StoreError as exc:
                self.metrics.store_retries.inc()
                if self._give_up(stop, stopping_since):
                    raise StreamStopped(f"the store failed past the stop timeout: {exc}") \
                        from None
                self._errors.warning("store", "store write failed (retrying with backoff; "
                                     "nothing is committed past it): %s", exc)
                await self._backoff(attempt)
                attempt += 1

    async def _send_dead_letters(self, dead: list[tuple[Message, EventRejected]],
                                 stop: asyncio.Event | None) -> None:
        attempt = 0
        stopping_since: list[float] = []
        first, reason = dead[0]
        self._errors.warning("dead", "%d messages to %s, the first %s/%s/%s: %s", len(dead),
                             self.config.dead_letter_topic, first.topic(), first.partition(),
                             first.offset(), reason)
        while True:
            failed = await self._k(self._dead_letter_sync, dead)
            if not failed:
                return
            if self._give_up(stop, stopping_since):
                raise StreamStopped("the dead-letter topic did not acknowledge "
                                    f"{failed} messages past the stop timeout")
            self._errors.warning("dlq", "%d dead letters not acknowledged by %s (retrying)",
                                 failed, self.config.dead_letter_topic)
            await self._backoff(attempt)
            attempt += 1
