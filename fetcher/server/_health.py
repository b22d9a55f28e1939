"""Readiness: grpc.health.v1 status from background store pings, never on the probe's path.

"" and fetcher.v1.FeatureService are SERVING only while the catalog is loaded and every
required store answered its last ping; a drain flips them to NOT_SERVING for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from grpc_health.v1 import health, health_pb2

from fetcher.metrics import Metrics
from kvstores import KVStore

log = logging.getLogger("fetcher.server.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True, slots=True)
class MonitoredStore:
    """A store the monitor pings; only required ones decide readiness."""

    store: KVStore
    required: bool


class HealthMonitor:
    """Pings stores every `interval_s` (each bounded by `timeout_s`) and sets health status."""

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        service_names: tuple[str, ...],
        stores: Mapping[str, MonitoredStore],
        metrics: Metrics,
        *,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self._servicer = servicer
        self._names = service_names
        self._stores = dict(stores)
        self._metrics = metrics
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._draining = False
        self._serving: bool | None = None
        self.catalog_loaded = False

    @property
    def serving(self) -> bool:
        """True while the last check reported SERVING."""
        return bool(self._serving)

    async def _ping(self, name: str, entry: MonitoredStore) -> bool:
        try:
            await asyncio.wait_for(entry.store.ping(), timeout=self._timeout_s)
        except Exception as exc:  # any failure means "down"; the reason is logged
            self._metrics.store_up.labels(name).set(0)
            reason = "no answer within timeout" if isinstance(exc, TimeoutError) else exc
            self._metrics.log_limited(log, f"ping:{name}", "store %s is down: %s", name, reason)
            return not entry.required
        self._metrics.store_up.labels(name).set(1)
        return True

    async def check(self) -> bool:
        """Ping every store once (concurrently) and publish the status; True when SERVING."""
        names = list(self._stores)
        results = await asyncio.gather(*(self._ping(n, self._stores[n]) for n in names))
        ok = self.catalog_loaded and all(results)
        down = [n for n, up in zip(names, results, strict=True) if not up]
        await self._publish(ok, down)
        return ok

    async def _publish(self, ok: bool, down: list[str]) -> None:
        if self._draining:
            return
        if ok != self._serving:
            why = f" (required stores down: {', '.join(down)})" if down else ""
            log.info("health: %s%s", "SERVING" if ok else "NOT_SERVING", why)
        self._serving = ok
        self._metrics.serving.set(1 if ok else 0)
        for name in self._names:
            await self._servicer.set(name, SERVING if ok else NOT_SERVING)

    async def publish_initial(self) -> None:
        """NOT_SERVING until the first check has run."""
        for name in self._names:
            await self._servicer.set(name, NOT_SERVING)
        self._metrics.serving.set(0)

    async def run(self) -> None:
        """Check now, then every interval until cancelled."""
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("health check failed")
            await asyncio.sleep(self._interval_s)

    async def drain(self) -> None:
        """NOT_SERVING for good: later checks no longer change the status."""
        self._draining = True
        self._serving = False
        self._metrics.serving.set(0)
        await self._servicer.enter_graceful_shutdown()
