"""Prometheus metrics of one process, on a registry of its own (no global state)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond buckets: the fetch path is expected to answer in about a millisecond.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)


class Metrics:
    """The counters and histograms the fetch path updates."""

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
            "fetcher_store_errors_total", "Failed multi_get calls per store (timeouts included)",
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
        self.cache_hits = Counter(
            "fetcher_cache_hits_total", "Cache hits by tier", ["tier"], registry=r
        )
        self.cache_misses = Counter(
            "fetcher_cache_misses_total", "Cache misses by tier", ["tier"], registry=r
        )
        self.config_version = Gauge(
            "fetcher_config_info", "Loaded config version (value is 1)", ["version"], registry=r
        )
        self._last_log: dict[str, float] = {}

    def l1_lookups(self, total: int, hits: int) -> None:
        """Count one request's L1 lookups."""
        if hits:
            self.cache_hits.labels("l1").inc(hits)
        if total - hits:
            self.cache_misses.labels("l1").inc(total - hits)

    def store_ok(self, store: str, seconds: float) -> None:
        """Count a successful multi_get."""
        self.store_requests.labels(store).inc()
        self.store_latency.labels(store).observe(seconds)

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
        now = time.monotonic()
        last = self._last_log.get(topic)
        if last is None or now - last >= every_s:
            self._last_log[topic] = now
            logger.warning(message, *args)
