"""The server process: settings -> stores, catalog, cache, engine -> grpc.aio server.

Owns the event loop (uvloop), health and reflection services, the background
store checks and the signal handling; no request logic lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fetcher.cache import L1Cache, L2Cache, SingleFlight
from fetcher.catalog import load_catalog
from fetcher.engine import CacheTiers, FetchEngine, StoreHandle
from fetcher.metrics import Metrics
from fetcher.service import FeatureServicer
from fetcher.settings import Settings
from fetcher.snapshot import Snapshot, build_snapshot
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc
from kvstores import KVStore, StoreError, open_store

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FeatureService"].full_name
HEALTH_CHECK_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class _Store:
    settings_name: str
    store: KVStore
    required: bool


class App:
    """Everything one server process builds at start; the only mutable state it keeps."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._stores: dict[str, _Store] = {}
        self._snapshot: Snapshot | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._l2: L2Cache | None = None
        self._engine: FetchEngine | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.port = 0

    @property
    def snapshot(self) -> Snapshot:
        """The catalog snapshot requests are served from."""
        assert self._snapshot is not None, "App.start() first"
        return self._snapshot

    def load(self) -> None:
        """Validate the catalog and open the stores (lazily: nothing blocks on a down store)."""
        catalog = load_catalog(self.settings.server.config_dir, set(self.settings.stores))
        self._snapshot = build_snapshot(catalog)
        self.metrics.config_version.labels(catalog.version).set(1)
        used = {g.store for g in catalog.groups.values()}
        for name, store_settings in self.settings.stores.items():
            if name not in used and not store_settings.required:
                continue
            self._stores[name] = _Store(
                name,
                open_store(store_settings.url, timeout_s=store_settings.timeout_ms / 1000),
                store_settings.required,
            )

    async def start(self) -> int:
        """Build the engine and serve; returns the bound port."""
        if self._snapshot is None:
            self.load()
        cache_settings = self.settings.cache
        if cache_settings.l2_url:
            self._l2 = L2Cache(cache_settings.l2_url)
        tiers = CacheTiers(
            l1=L1Cache(cache_settings.l1_max_entries),
            flights=SingleFlight(),
            l2=self._l2,
            default_l1_ttl_s=cache_settings.l1_ttl_s,
            default_l2_ttl_s=cache_settings.l2_ttl_s,
            negative_ttl_s=cache_settings.negative_ttl_s,
        )
        handles = {
            name: StoreHandle(name, s.store, self.settings.stores[name].timeout_ms / 1000)
            for name, s in self._stores.items()
        }
        self._engine = FetchEngine(handles, tiers, self.metrics)
        servicer = FeatureServicer(
            lambda: self.snapshot,
            self._engine,
            self.metrics,
            max_batch_entities=self.settings.server.max_batch_entities,
        )
        limit = self.settings.server.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_FeatureServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.port = server.add_insecure_port(self.settings.server.listen)
        if self.port == 0:
            raise OSError(f"server.listen: cannot bind {self.settings.server.listen!r}")
        await server.start()
        self._server = server
        await self._check_stores()
        self._tasks.append(asyncio.create_task(self._health_loop()))
        log.info(
            "serving config %s on %s (port %d)",
            self.snapshot.catalog.version, self.settings.server.listen, self.port,
        )
        return self.port

    async def _check_stores(self) -> None:
        ok = True
        for name, entry in self._stores.items():
            try:
                await asyncio.wait_for(entry.store.ping(), timeout=1.0)
            except (StoreError, TimeoutError, OSError) as exc:
                if entry.required:
                    ok = False
                self.metrics.log_limited(log, f"ping:{name}", "store %s is down: %s", name, exc)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok and not self._stopping.is_set()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set("", status)
        await self._health.set(SERVICE_NAME, status)

    async def _health_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(HEALTH_CHECK_INTERVAL_S)
            await self._check_stores()

    async def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish within the grace, close everything."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with contextlib.suppress(Exception):
            await self._health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            grace = self.settings.server.shutdown_grace_s if grace_s is None else grace_s
            await self._server.stop(grace)
        if self._engine is not None:
            await self._engine.close()
        for entry in self._stores.values():
            with contextlib.suppress(Exception):
                await entry.store.close()
        if self._l2 is not None:
            await self._l2.close()

    async def wait_closed(self) -> None:
        """Return when the server has stopped."""
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; the first signal drains, a second one exits at once."""
    app = App(settings)
    app.load()
    await app.start()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop_requested.is_set():
            log.warning("second signal %d: exiting now", signum)
            os._exit(1)
        log.info("signal %d: draining", signum)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop_requested.wait()
    await app.stop()
