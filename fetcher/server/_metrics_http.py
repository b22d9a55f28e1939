"""The /metrics HTTP endpoint of one process (prometheus-client's threaded server).

With several workers each serves its own registry on port + worker index: the cache
collectors read live objects at scrape time, which prometheus-client's multiprocess
mode (files aggregated by another process) cannot do; see docs/operations.md.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger("fetcher.server.metrics_http")


class MetricsListenError(OSError):
    """The metrics address cannot be bound; the message names server.metrics_listen."""


@dataclass(slots=True)
class MetricsServer:
    """A running /metrics endpoint; `port` is the bound port."""

    port: int
    _httpd: Any
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def metrics_address(listen: str, worker_index: int) -> tuple[str, int]:
    """(host, port) for worker `worker_index`: the configured port plus the index (0 stays 0)."""
    host, _, port_text = listen.rpartition(":")
    port = int(port_text)
    if port:
        port += worker_index
    return host.strip("[]"), port


def start_metrics_server(
    listen: str, registry: CollectorRegistry, worker_index: int = 0
) -> MetricsServer:
    """Serve `registry` at http://listen/metrics (port + worker_index) in a daemon thread."""
    host, port = metrics_address(listen, worker_index)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsListenError(
            f"server.metrics_listen: cannot bind {host}:{port} (worker {worker_index}): "
            f"{exc.strerror or exc}. Fix: pick a free port or set it empty to disable metrics"
        ) from None
    bound = int(httpd.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound, extra={"metrics_port": bound})
    return MetricsServer(bound, httpd, thread)
