"""Prometheus metrics of one `fetcher stream` process, on a registry of its own."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                 30.0)


class StreamMetrics:
    """Counters, the lag per partition and the batch latency of one consumer process."""

    def __init__(self, group: str) -> None:
        self.registry = CollectorRegistry()
        self.group = group
        labels = ["group"]
        r = self.registry
        self.consumed = Counter("fetcher_stream_messages_consumed",
                                "Messages read from the topic", labels, registry=r).labels(group)
        self.applied = Counter("fetcher_stream_events_applied",
                               "Events written to the store (late ones included)", labels,
                               registry=r).labels(group)
        self.late = Counter("fetcher_stream_events_late",
                            "Events older than their key's batch end (written, read only "
                            "before the batch end)", labels, registry=r).labels(group)
        self.dead_lettered = Counter("fetcher_stream_messages_dead_lettered",
                                     "Messages sent to the dead-letter topic", labels,
                                     registry=r).labels(group)
        self.store_retries = Counter("fetcher_stream_store_retries",
                                     "Batch writes retried after a store error", labels,
                                     registry=r).labels(group)
        self.commit_failures = Counter("fetcher_stream_commit_failures",
                                       "Offset commits that failed (retried with the next)",
                                       labels, registry=r).labels(group)
        self.batches = Histogram("fetcher_stream_batch_seconds",
                                 "Time from a batch read to its offsets committed", labels,
                                 buckets=BATCH_BUCKETS, registry=r).labels(group)
        self._lag = Gauge("fetcher_stream_lag_messages",
                          "Messages in a partition after the consumer's position",
                          ["group", "topic", "partition"], registry=r)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """The lag of one assigned partition."""
        self._lag.labels(self.group, topic, str(partition)).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """A revoked partition: its lag is another consumer's to report."""
        with contextlib.suppress(KeyError):
            self._lag.remove(self.group, topic, str(partition))

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics on host:port (a daemon thread)."""
        start_http_server(port, addr=host, registry=self.registry)
