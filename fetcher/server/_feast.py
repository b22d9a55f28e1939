"""Feast's APIs in the server process ([feast] settings): the repo loaded at start, its
store opened beside ours, Feast's gRPC services on our gRPC server, Feast's HTTP API on a
port of its own, and the registry reloaded when its files change.

The reload follows our catalog's rules (fetcher.server._reload): the new feature_store.yaml
and registry.db are read off the event loop and validated (load_feast_repo refuses a repo
with any problem), then the snapshot is swapped whole; a refused repo leaves the old one
serving. A reload that moves the online store is refused too: the store is opened at start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from fetcher.api import encode_values
from fetcher.config import FeastSettings, TlsSettings
from fetcher.feast import FeastCatalog, FeastError, FeastSnapshot, load_feast_repo
from fetcher.metrics import Metrics
from fetcher.quoting import quoted
from fetcher.server._security import Authorizer

log = logging.getLogger("fetcher.server.feast")

Signature = tuple[tuple[str, int, int], ...]


def feast_snapshot(catalog: FeastCatalog) -> FeastSnapshot:
    """Plans and the resolution caches of one loaded repo."""
    return FeastSnapshot(catalog, catalog.plans(encode_values))


def repo_signature(catalog: FeastCatalog) -> Signature:
    """(path, mtime_ns, size) of feature_store.yaml and registry.db."""
    out = []
    for path in (catalog.config.path, catalog.config.registry_path):
        try:
            stat = os.stat(path)
        except OSError:
            out.append((str(path), -1, -1))
        else:
            out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


class FeastRepo:
    """The Feast snapshot being served and its reload."""

    def __init__(self, settings: FeastSettings, metrics: Metrics) -> None:
        self.settings = settings
        self._metrics = metrics
        self.current = feast_snapshot(load_feast_repo(settings.repo))
        self._signature = repo_signature(self.current.catalog)
        self._lock = asyncio.Lock()

    def snapshot(self) -> FeastSnapshot:
        """The snapshot a request is served from (one attribute read)."""
        return self.current

    async def reload(self) -> bool:
        """Read the repo again; swap when it is valid and on the same store."""
        async with self._lock:
            old = self.current
            try:
                catalog = await asyncio.to_thread(load_feast_repo, self.settings.repo)
                if catalog.config.store_url != old.catalog.config.store_url:
                    raise FeastError(catalog.config.path, [
                        "online_store: changed while serving; restart the server to serve "
                        "another store"])
                fresh = await asyncio.to_thread(feast_snapshot, catalog)
            except FeastError as exc:
                self._metrics.reloads.labels("failed").inc()
                log.error("Feast registry reload failed, still serving %s: %s", old.version, exc,
                          extra={"feast_registry_version": old.version})
                return False
            except Exception as exc:  # a bug, or a file replaced mid-read: keep serving
                self._metrics.reloads.labels("failed").inc()
                log.exception("Feast registry reload failed, still serving %s: %r",
                              old.version, exc)
                return False
            self.current = fresh
            self._metrics.reloads.labels("ok").inc()
            log.info("reloaded Feast registry %s -> %s", old.version, fresh.version,
                     extra={"feast_registry_version": fresh.version})
            return True

    async def watch(self) -> None:
        """Poll the repo's files until cancelled; reload when they change."""
        interval = self.settings.watch_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                current = await asyncio.to_thread(repo_signature, self.current.catalog)
            except Exception as exc:  # pragma: no cover - stat does not raise past OSError
                log.warning("Feast registry watch: %r", exc)
                continue
            if current != self._signature:
                log.info("Feast registry watch: %s changed, reloading",
                         self.current.catalog.config.registry_path)
                await self.reload()
                self._signature = current


def grpc_authorize(authorizer: Authorizer) -> Callable[[Any, str, Sequence[str]], Any]:
    """The Feast servicer's check: the call's client may read every view (group) or the
    service it names; else UNAUTHENTICATED / PERMISSION_DENIED."""

    async def authorize(context: Any, kind: str, names: Sequence[str]) -> None:
        grant = authorizer.authenticate(context)
        if grant is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "no known client identity: present a client certificate the server trusts "
                "or an `authorization: Bearer <token>` header")
            return
        for name in names:
            if not grant.allows(kind, name):
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client {grant.client!r} may not read feature {kind} {quoted(name)} "
                    f"(authz.clients.{grant.client}.{kind}s)")

    return authorize


def http_authorize(
    authorizer: Authorizer,
) -> Callable[[str | None, str, list[str]], tuple[int, str] | None]:
    """The HTTP API's check, by bearer token only (401 / 403)."""

    def authorize(header: str | None, kind: str, names: list[str]) -> tuple[int, str] | None:
        grant = authorizer.authenticate_header(header)
        if grant is None:
            return 401, "no known client: send an `Authorization: Bearer <token>` header"
        for name in names:
            if not grant.allows(kind, name):
                return 403, (f"client {grant.client!r} may not read feature {kind} "
                             f"{quoted(name)} (authz.clients.{grant.client}.{kind}s)")
        return None

    return authorize


def http_ssl_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """The HTTP API's TLS, from server.tls (the same certificate, CA and client rule)."""
    if tls.cert_file is None or tls.key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context
