"""Prometheus metrics of one process, on a registry of its own (no global state).

Counters the request path updates live here; cache counters are not counted twice:
`CacheCollector` reads the caches' own counters (L1Cache.stats(), L2Cache attributes)
when /metrics is scraped, so the hot path pays nothing for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Sub-millisecond buckets: the fetch path is expected to answer in about a millisecond.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)


class CacheCollector(Collector):  # type: ignore[misc,unused-ignore]
    """Reads L1 and L2 cache counters at scrape time (the caches count; we only look)."""

    def __init__(self, l1: Any, l2: Any | None, parts: Any | None = None) -> None:
        self._l1 = l1  # fetcher.cache.L1Cache
        self._l2 = l2  # fetcher.cache.L2Cache or None
        self._parts = parts  # fetcher.cache.PartCache or None

    def collect(self) -> Iterator[Any]:
        """One family per counter, labelled by tier."""
        stats = self._l1.stats()
        hits = CounterMetricFamily("fetcher_cache_hits", "Cache hits by tier", labels=["tier"])
        misses = CounterMetricFamily(
            "fetcher_cache_misses", "Cache misses by tier", labels=["tier"]
        )
        hits.add_metric(["l1"], stats.hits)
        misses.add_metric(["l1"], stats.misses)
        evictions = CounterMetricFamily(
            "fetcher_cache_evictions", "Live L1 entries pushed out by the size bound",
            labels=["tier"],
        )
        evictions.add_metric(["l1"], stats.evictions)
        expirations = CounterMetricFamily(
            "fetcher_cache_expirations", "L1 entries dropped after their TTL", labels=["tier"]
        )
        expirations.add_metric(["l1"], stats.expirations)
        size = GaugeMetricFamily("fetcher_cache_entries", "Entries held", labels=["tier"])
        size.add_metric(["l1"], stats.size)
        capacity = GaugeMetricFamily(
            "fetcher_cache_capacity_entries", "Most entries held", labels=["tier"]
        )
        capacity.add_metric(["l1"], stats.maxsize)
        families: list[Any] = [hits, misses, evictions, expirations, size, capacity]
        if self._l2 is not None:
            hits.add_metric(["l2"], self._l2.hits)
            misses.add_metric(["l2"], self._l2.misses)
            errors = CounterMetricFamily(
                "fetcher_cache_errors", "L2 calls that failed and were served as misses",
                labels=["tier"],
            )
            errors.add_metric(["l2"], self._l2.errors)
            skipped = CounterMetricFamily(
                "fetcher_cache_skipped", "L2 calls skipped while backing off after an error",
                labels=["tier"],
            )
            skipped.add_metric(["l2"], self._l2.skipped)
            families += [errors, skipped]
        parts = self._parts
        if parts is not None:
            # Tier "batch_part": hits are log reads the store answered without the cached
            # part's payload, misses the parts read with it.
            hits.add_metric(["batch_part"], parts.hits)
            misses.add_metric(["batch_part"], parts.misses)
            evictions.add_metric(["batch_part"], parts.evictions)
            expirations.add_metric(["batch_part"], parts.expirations)
            size.add_metric(["batch_part"], len(parts))
            held = GaugeMetricFamily("fetcher_cache_bytes", "Bytes held", labels=["tier"])
            held.add_metric(["batch_part"], parts.bytes)
            bound = GaugeMetricFamily(
                "fetcher_cache_capacity_bytes", "Most bytes held", labels=["tier"]
            )
            bound.add_metric(["batch_part"], parts.max_bytes)
            families += [held, bound]
        yield from families



class LimitedLog:
    """Warnings at most once per `every_s` per topic, each saying how many like it were
    held back since the last one (a failing store or broker is no log storm)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, logger: logging.Logger, topic: str, message: str, *args: object,
             every_s: float = 10.0) -> None:
        """Log `message % args` as a warning unless `topic` logged less than `every_s` ago."""
        now = time.monotonic()
        last = self._last.get(topic)
        if last is not None and now - last < every_s:
            self._held[topic] = self._held.get(topic, 0) + 1
            return
        self._last[topic] = now
        held = self._held.pop(topic, 0)
        suffix = f" ({held} more like it in the last {every_s:.0f} s)" if held else ""
        logger.warning(message + suffix, *args)


class Metrics:
    """The counters and histograms of one server process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rpc_latency = Histogram(
            "fetcher_rpc_duration_seconds", "RPC latency by method and status code",
            ["method", "code"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.entities = Counter(
            "fetcher_entities_served_total", "Entities served", ["target"], registry=r
        )
        self.store_requests = Counter(
            "fetcher_store_requests_total", "multi_get calls per store", ["store"], registry=r
        )
        self.store_errors = Counter(
            "fetcher_store_errors_total",
            "Failed multi_get calls per store; kind=timeout counts the timeouts",
            ["store", "kind"], registry=r,
        )
        self.store_latency = Histogram(
            "fetcher_store_duration_seconds", "multi_get latency per store", ["store"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.decode_errors = Counter(
            "fetcher_decode_errors_total", "Stored values that did not decode",
            ["group", "cause"], registry=r,
        )
        self.pushed_events = Counter(
            "fetcher_pushed_events_total",
            "Events pushed to aggregation groups by outcome: accepted, late (older than "
            "their key's batch end), failed (the store failed)", ["group", "outcome"],
            registry=r,
        )
        self.malformed_requests = Counter(
            "fetcher_malformed_requests_total",
            "Requests whose body did not parse as the method's message, answered "
            "INVALID_ARGUMENT", ["method", "cause"], registry=r,
        )
        self.config_version = Gauge(
            "fetcher_config_info", "Loaded config version (value is 1)", ["version"], registry=r
        )
        self.reloads = Counter(
            "fetcher_config_reloads_total", "Config reloads by result (ok, failed)", ["result"],
            registry=r,
        )
        self.serving = Gauge(
            "fetcher_serving", "1 while health reports SERVING, else 0", registry=r
        )
        self.store_up = Gauge(
            "fetcher_store_up", "1 when the store answered its last ping, else 0", ["store"],
            registry=r,
        )
        # The feature log (fetcher.featurelog): counted by its writer, not the request path,
        # except a drop, which the request path counts.
        self.feature_log_records = Counter(
            "fetcher_feature_log_records_total",
            "Served entity vectors written to the feature log", ["service"], registry=r,
        )
        self.feature_log_dropped = Counter(
            "fetcher_feature_log_dropped_total",
            "Served entity vectors the feature log did not keep: queue_full (its queue was "
            "full; sampling not yet decided for a batch), error (the sink failed), malformed; "
            "the Kafka sink's: delivery (not acknowledged in time or refused), sink_full (its "
            "producer's queue was full)",
            ["service", "reason"], registry=r,
        )
        self.feature_log_files = Counter(
            "fetcher_feature_log_files_total", "Feature log files closed (made visible)",
            registry=r,
        )
        self.feature_log_queue = Gauge(
            "fetcher_feature_log_queue_records",
            "Entity vectors waiting in the feature log's queue", registry=r,
        )
        self._version = ""
        self._limited = LimitedLog()

    def set_config_version(self, version: str) -> None:
        """Show `version` as the one loaded config (the previous one's series is dropped)."""
        if self._version and self._version != version:
            self.config_version.remove(self._version)
        self._version = version
        self.config_version.labels(version).set(1)

    def watch_caches(self, l1: Any, l2: Any | None, parts: Any | None = None) -> None:
        """Export the caches' own counters, read at each scrape."""
        self.registry.register(CacheCollector(l1, l2, parts))

    def store_failed(self, store: str, timed_out: bool, seconds: float) -> None:
        """Count a failed multi_get."""
        self.store_requests.labels(store).inc()
        self.store_errors.labels(store, "timeout" if timed_out else "error").inc()
        self.store_latency.labels(store).observe(seconds)

    def decode_failed(self, group: str, cause: str) -> None:
        """Count a value that did not decode."""
        self.decode_errors.labels(group, cause).inc()

    def log_limited(
        self, logger: logging.Logger, topic: str, message: str, *args: object,
        every_s: float = 10.0,
    ) -> None:
        """Log a warning at most once per `every_s` per topic (a failing store is no log storm)."""
        self._limited.warn(logger, topic, message, *args, every_s=every_s)
