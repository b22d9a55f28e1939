"""The process: settings in, the App (grpc.aio server, health, reflection, TLS and
authorization, the per-RPC context, metrics endpoint, reload, signals), workers, JSON logs.

The top of the serving stack: imports every layer below it; holds no request logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fetcher.lazy import lazy_getattr
from fetcher.server._workers import run_serve

if TYPE_CHECKING:
    from fetcher.server._app import App, StartupError, serve

# Imported on first use: the App imports grpc, which a supervisor must not load before it
# forks its workers (fetcher.server._workers imports the App in each worker).
_LAZY = {name: "fetcher.server._app" for name in ("App", "StartupError", "serve")}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["App", "StartupError", "run_serve", "serve"]
