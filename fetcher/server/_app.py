"""The server process: settings -> stores, catalog, cache, engine -> grpc.aio server.

Owns the event loop, health (fetcher.server._health), reflection, TLS, the per-RPC
context (fetcher.server._rpc_context), metrics endpoint, reload and the signal handling;
no request logic lives here. Lifecycle: docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fetcher.api import Admission, FeatureServicer, Snapshot
from fetcher.api import add_to_server as add_feature_service
from fetcher.cache import L1Cache, L2Cache, PartCache, SingleFlight
from fetcher.catalog import CatalogError
from fetcher.config import CacheSettings, ServerSettings, Settings, SettingsError, mask_url
from fetcher.engine import CacheTiers, FetchEngine, StoreHandle
from fetcher.feast import FEAST_STORE, FeastError
from fetcher.metrics import Metrics
from fetcher.server._health import HealthMonitor, MonitoredStore
from fetcher.server._logging_json import Redactor, request_id
from fetcher.server._metrics_http import MetricsListenError, MetricsServer, start_metrics_server
from fetcher.server._reload import ConfigWatcher, load_snapshot
from fetcher.server._rpc_context import RpcContextInterceptor
from fetcher.server._security import Authorizer, server_credentials
from fetcher.server._tracing import load_tracer
from fetcher.v1 import feature_service_pb2 as pb
from kvstores import KVStore, StoreError, open_store

if TYPE_CHECKING:
    from fetcher.feast import FeastHttp
    from fetcher.featurelog import FeatureLog
    from fetcher.server._feast import FeastRepo

log = logging.getLogger("fetcher.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FeatureService"].full_name
# Health name for liveness probes: SERVING while the process runs, whatever its stores do, so
# a store outage makes pods unready (readiness on "" or SERVICE_NAME) but never restarts them.
LIVENESS_SERVICE = "liveness"


def _part_cache(cache: CacheSettings) -> PartCache | None:
    """The batch part L1 of the settings; None when it (or L1 as a whole) is off."""
    if cache.l1_max_entries <= 0 or cache.batch_part_max_bytes <= 0 or cache.batch_part_ttl_s <= 0:
        return None
    return PartCache(cache.batch_part_max_bytes, cache.batch_part_ttl_s)


class StartupError(SettingsError):
    """The server cannot start with these settings; `fetcher serve` exits 2 with the message."""


def server_options(server: ServerSettings, *, reuse_port: bool) -> list[tuple[str, int]]:
    """grpc.aio server channel args: message limits, streams, keepalive, SO_REUSEPORT."""
    limit = server.max_message_bytes
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.keepalive_time_ms", server.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", server.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(server.keepalive_permit_without_calls)),
        # The server-side policy: client pings closer together than this are strikes.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", server.min_ping_interval_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", server.min_ping_interval_ms),
    ]
    for key, value in (
        ("grpc.max_concurrent_streams", server.max_concurrent_streams),
        ("grpc.max_connection_idle_ms", server.max_connection_idle_ms),
        ("grpc.max_connection_age_ms", server.max_connection_age_ms),
        ("grpc.max_connection_age_grace_ms", server.max_connection_age_grace_ms),
    ):
        if value > 0:  # 0 means "gRPC's default": no limit
            options.append((key, value))
    return options


class App:
    """Everything one server process builds at start; the only mutable state it keeps."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker_index: int = 0,
        reuse_port: bool = False,
        redactor: Redactor | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.worker_index = worker_index
        self.metrics = Metrics()
        self.redactor = redactor or Redactor()
        self._env = os.environ if env is None else env
        self._reuse_port = reuse_port
        self._stores: dict[str, MonitoredStore] = {}
        self._snapshot: Snapshot | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._monitor: HealthMonitor | None = None
        self._l2: L2Cache | None = None
        self._engine: FetchEngine | None = None
        self._authorizer: Authorizer | None = None
        self._tracer: Any | None = None
        self._metrics_server: MetricsServer | None = None
        self._rpc: RpcContextInterceptor | None = None
        self._feature_log: FeatureLog | None = None
        self._feast: FeastRepo | None = None
        self._feast_http: FeastHttp | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self._stopping = False
        self.port = 0
        self.metrics_port = 0
        self.feast_http_port = 0

    @property
    def snapshot(self) -> Snapshot:
        """The catalog snapshot requests are served from (one attribute read: atomic)."""
        assert self._snapshot is not None, "App.load() first"
        return self._snapshot

    def _set_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self.metrics.set_config_version(snapshot.catalog.version)

    def load(self) -> None:
        """Validate the catalog, open every store (lazily: a down store never blocks)."""
        self._set_snapshot(load_snapshot(self.settings.server.config_dir, self.settings.stores))
        # Every configured store is opened, so a reload may move a group to any of them.
        for name, store_settings in self.settings.stores.items():
            try:
                store: KVStore = open_store(
                    store_settings.url, timeout_s=store_settings.timeout_ms / 1000
                )
            except (ValueError, StoreError) as exc:
                raise StartupError(
                    f"stores.{name}.url: cannot open {mask_url(store_settings.url)}: {exc}. "
                    "Fix: correct the URL or its options"
                ) from None
            self._stores[name] = MonitoredStore(store, store_settings.required)
        if self.settings.feast.repo:
            self._load_feast()
        if self.settings.authz:
            self._authorizer = Authorizer(self.settings.authz, self._env, self.redactor)
            self._warn_unknown_grants()
        self._tracer = load_tracer(self.settings.tracing)

    def _warn_unknown_grants(self) -> None:
        """Log authz rules naming groups or services neither catalog has (ours, Feast's)."""
        if self._authorizer is None:
            return
        catalog = self.snapshot.catalog
        groups, services = set(catalog.groups), set(catalog.services)
        if self._feast is not None:
            groups |= set(self._feast.current.catalog.views)
            services |= set(self._feast.current.catalog.services)
        self._authorizer.warn_unknown(groups, services)

    def _load_feast(self) -> None:
        """[feast]: the repo's catalog and its online store (the store named "feast")."""
        from fetcher.server._feast import FeastRepo

        feast = self.settings.feast
        if FEAST_STORE in self.settings.stores:
            raise StartupError(
                f"stores.{FEAST_STORE}: the name is the Feast repo's store when feast.repo is "
                "set. Fix: rename the store")
        try:
            self._feast = FeastRepo(feast, self.metrics)
        except FeastError as exc:
            raise StartupError(f"feast.repo: {exc}") from None
        url = self._feast.current.catalog.config.store_url
        try:
            store = open_store(url, timeout_s=feast.timeout_ms / 1000)
        except (ValueError, StoreError) as exc:
            raise StartupError(
                f"feast.repo: cannot open its online store {mask_url(url)}: {exc}") from None
        self._stores[FEAST_STORE] = MonitoredStore(store, True)

    def _store_handle(self, name: str, store: KVStore) -> StoreHandle:
        if name == FEAST_STORE and self._feast is not None:
            feast = self.settings.feast
            return StoreHandle(name, store, feast.timeout_ms / 1000,
                               max_in_flight=feast.max_in_flight)
        s = self.settings.stores[name]
        return StoreHandle(
            name, store, s.timeout_ms / 1000, max_in_flight=s.max_in_flight,
            breaker_failures=s.breaker_failures, breaker_cooldown_s=s.breaker_cooldown_s,
        )

    def _add_feast(self, server: grpc.aio.Server, admission: Admission) -> tuple[str, ...]:
        """Feast's gRPC services on `server`; their names (none without [feast])."""
        if self._feast is None or self._engine is None:
            return ()
        from fetcher.feast import FeastReader, FeastServicer, add_feast_services
        from fetcher.server._feast import grpc_authorize

        reader = FeastReader(self._feast.snapshot, self._engine,
                             max_rows=self.settings.server.max_batch_entities)
        servicer = FeastServicer(
            reader, self.metrics,
            default_deadline_s=self.settings.server.default_deadline_ms / 1000,
            admission=admission,
            authorize=None if self._authorizer is None else grpc_authorize(self._authorizer),
        )
        return add_feast_services(servicer, server)

    async def _start_feast_http(self) -> None:
        """Feast's HTTP API on feast.http_listen, when set."""
        listen = self.settings.feast.http_listen
        if self._feast is None or self._engine is None or not listen:
            return
        from fetcher.feast import FeastHttp, FeastReader
        from fetcher.server._feast import http_authorize, http_ssl_context

        reader = FeastReader(self._feast.snapshot, self._engine,
                             max_rows=self.settings.server.max_batch_entities)
        latency = self.metrics.rpc_latency

        def observe(status: str, seconds: float) -> None:
            latency.labels("Feast/HTTP", status).observe(seconds)

        monitor = self._monitor
        assert monitor is not None
        http = FeastHttp(
            reader, default_deadline_s=self.settings.server.default_deadline_ms / 1000,
            authorize=None if self._authorizer is None else http_authorize(self._authorizer),
            observe=observe,
            ready=lambda: monitor.serving,
        )
        host, _, port = listen.rpartition(":")
        try:
            self.feast_http_port = await http.start(
                host.strip("[]"), int(port), reuse_port=self._reuse_port,
                ssl_context=http_ssl_context(self.settings.server.tls))
        except OSError as exc:
            raise StartupError(
                f"feast.http_listen: cannot serve on {listen!r}: {exc}. Fix: pick a free "
                "address") from None
        self._feast_http = http

    async def start(self) -> int:
        """Build the engine, bind and serve; returns the bound port. Health starts NOT_SERVING."""
        if self._snapshot is None:
            self.load()
        cache_settings = self.settings.cache
        if cache_settings.l2_url:
            self._l2 = L2Cache(cache_settings.l2_url)
        # cachetools needs maxsize >= 1; l1_max_entries = 0 turns L1 off in the engine instead.
        l1 = L1Cache(max(1, cache_settings.l1_max_entries))
        tiers = CacheTiers(
            l1=l1,
            flights=SingleFlight(),
            l2=self._l2,
            default_l1_ttl_s=cache_settings.l1_ttl_s,
            default_l2_ttl_s=cache_settings.l2_ttl_s,
            negative_ttl_s=cache_settings.negative_ttl_s,
            l1_enabled=cache_settings.l1_max_entries > 0,
            parts=_part_cache(cache_settings),
        )
        self.metrics.watch_caches(l1, self._l2, tiers.parts)
        handles = {name: self._store_handle(name, s.store) for name, s in self._stores.items()}
        self._engine = FetchEngine(handles, tiers, self.metrics)
        self._feature_log = await self._start_feature_log()
        admission = Admission(
            self.settings.server.max_inflight_rpcs, self.settings.server.max_queued_rpcs,
            self.metrics.registry,
        )
        servicer = FeatureServicer(
            lambda: self.snapshot,
            self._engine,
            self.metrics,
            max_batch_entities=self.settings.server.max_batch_entities,
            default_deadline_s=self.settings.server.default_deadline_ms / 1000,
            admission=admission,
            served_log=self._feature_log,
        )
        server_settings = self.settings.server
        interceptor = RpcContextInterceptor(
            self.metrics, self._authorizer, self._tracer, self.settings.log.requests
        )
        self._rpc = interceptor
        server = grpc.aio.server(
            interceptors=[interceptor],
            options=server_options(server_settings, reuse_port=self._reuse_port),
        )
        add_feature_service(servicer, server)
        feast_services = self._add_feast(server, admission)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, *feast_services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.port = self._bind(server, server_settings)
        self._monitor = HealthMonitor(
            self._health, ("", SERVICE_NAME), self._stores, self.metrics,
            interval_s=server_settings.health_interval_s,
            timeout_s=server_settings.health_timeout_s,
        )
        await self._monitor.publish_initial()
        if server_settings.metrics_listen:
            try:
                self._metrics_server = start_metrics_server(
                    server_settings.metrics_listen, self.metrics.registry, self.worker_index
                )
            except MetricsListenError as exc:
                raise StartupError(str(exc)) from None
            self.metrics_port = self._metrics_server.port
        await self._start_feast_http()
        await server.start()
        self._server = server
        await self._health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self._monitor.catalog_loaded = True
        # The first check runs in the background: a down store must not delay serving.
        self._tasks.append(asyncio.create_task(self._monitor.run()))
        if server_settings.watch_config:
            watcher = ConfigWatcher(
                server_settings.config_dir, server_settings.watch_interval_s, self.reload
            )
            self._tasks.append(asyncio.create_task(watcher.run()))
        if self._feast is not None and self.settings.feast.watch_registry:
            self._tasks.append(asyncio.create_task(self._feast.watch()))
        log.info(
            "serving config %s on %s (port %d)", self.snapshot.catalog.version,
            server_settings.listen, self.port,
            extra={"port": self.port, "config_version": self.snapshot.catalog.version,
                   "tls": server_settings.tls.enabled},
        )
        return self.port

    async def _start_feature_log(self) -> FeatureLog | None:
        """The feature log of [log.features] when enabled (docs/operations.md), running."""
        settings = self.settings.log.features
        if not settings.enabled:
            return None
        # Imported only when on: it brings pyarrow and numpy.
        from fetcher.featurelog import FeatureLog

        try:
            feature_log = FeatureLog(settings, self.metrics, request_id=request_id.get)
        except OSError as exc:
            if settings.sink == "kafka":
                raise StartupError(f"log.features: cannot start the Kafka sink: {exc}. Fix: "
                                   "check the kafka_* settings") from None
            raise StartupError(
                f"log.features.directory: cannot use {settings.directory!r}: {exc}. Fix: "
                "create it or give a directory this process may write"
            ) from None
        await feature_log.start()
        if settings.sink == "kafka":
            # The broker may be down: records are dropped and counted until it answers.
            log.info("feature log on: Kafka topic %s at %s", settings.kafka_topic,
                     settings.kafka_bootstrap_servers,
                     extra={"feature_log_topic": settings.kafka_topic})
        else:
            log.info("feature log on: %s", settings.directory,
                     extra={"feature_log_directory": settings.directory})
        return feature_log

    def _bind(self, server: grpc.aio.Server, settings: ServerSettings) -> int:
        try:
            if settings.tls.enabled:
                port = server.add_secure_port(settings.listen, server_credentials(settings.tls))
            else:
                port = server.add_insecure_port(settings.listen)
        except (RuntimeError, OSError, ValueError) as exc:
            # grpc raises RuntimeError for a bind failure and ValueError for bad PEM data.
            raise StartupError(
                f"server.listen: cannot serve on {settings.listen!r}: {exc}. Fix: pick a free "
                "address (and check server.tls files are PEM)"
            ) from None
        if port == 0:
            raise StartupError(
                f"server.listen: cannot bind {settings.listen!r}. Fix: pick a free address"
            )
        return int(port)

    async def reload(self) -> bool:
        """Load the config directory (and the Feast repo) again; swap each snapshot only
        when it is valid."""
        if self._snapshot is None:
            return False  # not loaded yet: the start will read the current files anyway
        if self._feast is not None:
            await self._feast.reload()
        async with self._reload_lock:
            directory = self.settings.server.config_dir
            try:
                snapshot = await asyncio.to_thread(
                    load_snapshot, directory, self.settings.stores
                )
            except CatalogError as exc:
                self.metrics.reloads.labels("failed").inc()
                log.error(
                    "reload failed, still serving config %s: %s",
                    self.snapshot.catalog.version, exc,
                    extra={"config_version": self.snapshot.catalog.version},
                )
                return False
            except Exception as exc:  # a bug, or a file that vanished mid-read: keep serving
                self.metrics.reloads.labels("failed").inc()
                log.exception("reload failed, still serving config %s: %r",
                              self.snapshot.catalog.version, exc)
                return False
            old = self.snapshot.catalog.version
            self._set_snapshot(snapshot)
            self.metrics.reloads.labels("ok").inc()
            self._warn_unknown_grants()
            log.info(
                "reloaded config %s -> %s", old, snapshot.catalog.version,
                extra={"config_version": snapshot.catalog.version},
            )
            return True

    async def stop(self, grace_s: float | None = None, drain_delay_s: float | None = None) -> None:
        """NOT_SERVING at once; keep accepting for the drain delay; then stop and close all."""
        if self._stopping:
            return
        self._stopping = True
        settings = self.settings.server
        if self._monitor is not None:
            await self._monitor.drain()
        delay = settings.drain_delay_s if drain_delay_s is None else drain_delay_s
        if self._server is not None and delay > 0:
            log.info("draining: NOT_SERVING, still accepting for %.1f s", delay)
            await asyncio.sleep(delay)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None and self._rpc is not None:
            grace = settings.shutdown_grace_s if grace_s is None else grace_s
            # Refuse new RPCs with UNAVAILABLE ourselves and let the running ones finish
            # before the gRPC core stops: the core would answer calls it had received but
            # not yet dispatched with CANCELLED, which clients do not retry.
            self._rpc.close_gate()
            log.info("stopped accepting (UNAVAILABLE); waiting up to %.1f s for %d in-flight "
                     "RPCs", grace, self._rpc.inflight)
            started = asyncio.get_running_loop().time()
            idle = await self._rpc.wait_idle(grace)
            left = max(0.0, grace - (asyncio.get_running_loop().time() - started))
            await self._server.stop(left if not idle else min(left, 0.5))
            log.info(
                "server stopped: %d feature RPCs served OK, %d cancelled by the stop",
                self._rpc.served_ok, self._rpc.cancelled,
                extra={"rpcs_served_ok": self._rpc.served_ok,
                       "rpcs_cancelled": self._rpc.cancelled},
            )
        if self._feast_http is not None:
            await self._feast_http.stop()
        if self._feature_log is not None:
            # After the last RPC: what it served is written, its files closed (visible).
            await self._feature_log.close()
        if self._engine is not None:
            await self._engine.close()
        for entry in self._stores.values():
            with contextlib.suppress(Exception):
                await entry.store.close()
        if self._l2 is not None:
            await self._l2.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        log.info("stopped")

    async def wait_closed(self) -> None:
        """Return when the server has stopped."""
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(
    settings: Settings,
    *,
    worker_index: int = 0,
    reuse_port: bool = False,
    redactor: Redactor | None = None,
) -> int:
    """Run until SIGTERM or SIGINT (drain, then exit 0); a second one exits at once (1).

    SIGHUP reloads the config directory.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    app = App(settings, worker_index=worker_index, reuse_port=reuse_port, redactor=redactor)
    reloads: set[asyncio.Task[bool]] = set()

    def on_stop(signum: int) -> None:
        if stop_requested.is_set():
            log.warning("second signal %s: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(1)
        log.info("signal %s: draining", signal.Signals(signum).name)
        stop_requested.set()

    def on_hup() -> None:
        log.info("signal SIGHUP: reloading %s", settings.server.config_dir)
        task = loop.create_task(app.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    app.load()
    await app.start()
    await stop_requested.wait()
    await app.stop()
    return 0
