"""A real TCP fault injector: toxiproxy-server (Shopify/toxiproxy v2) and its HTTP API.

scripts/setup.sh installs it as .tools/bin/server (the name `go install` gives the
module's cmd/server package). The tests start their own instance on 127.0.0.1:18474
and create proxies on 127.0.0.1:21000-21099 in front of the stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOXIPROXY_BIN = REPO / ".tools" / "bin" / "server"
API_PORT = 18474
API_TIMEOUT_S = 60.0
SETUP_HINT = "run `scripts/setup.sh` (installs toxiproxy-server as .tools/bin/server)"


class ToxiproxyError(Exception):
    """The toxiproxy API refused a call; the message has its answer."""


@dataclass(frozen=True)
class Proxy:
    """One proxy: clients connect to `listen`, toxiproxy forwards to `upstream`."""

    api: ToxiproxyApi
    name: str
    listen_port: int
    upstream: str

    def add(self, kind: str, attributes: dict[str, Any], *, stream: str = "downstream",
            name: str | None = None, toxicity: float = 1.0) -> str:
        """Add a toxic (latency, bandwidth, timeout, reset_peer, limit_data, ...); its name."""
        toxic = name or f"{kind}_{stream}"
        self.api.call("POST", f"/proxies/{self.name}/toxics", {
            "name": toxic, "type": kind, "stream": stream, "toxicity": toxicity,
            "attributes": attributes,
        })
        return toxic

    def remove(self, toxic: str) -> None:
        """Remove one toxic."""
        self.api.call("DELETE", f"/proxies/{self.name}/toxics/{toxic}")

    def clear(self) -> None:
        """Remove every toxic and enable the proxy."""
        for toxic in self.api.call("GET", f"/proxies/{self.name}/toxics") or []:
            self.remove(toxic["name"])
        self.enable(True)

    def enable(self, on: bool) -> None:
        """Disabled: listening closed and every connection through it dropped."""
        self.api.call("POST", f"/proxies/{self.name}", {"enabled": on})


class ToxiproxyApi:
    """The HTTP API of one toxiproxy-server."""

    def __init__(self, port: int = API_PORT) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; the decoded JSON answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            # Generous: removing a bandwidth toxic waits for the data it holds back to drain,
            # which a busy machine stretches past a few seconds (seen: 5 s timed out).
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as reply:
                text = reply.read()
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(f"{method} {path}: {exc.code} {exc.read()!r}") from None
        return json.loads(text) if text.strip() else None

    def up(self) -> bool:
        """True when the API answers."""
        try:
            self.call("GET", "/version")
        except (OSError, ToxiproxyError):
            return False
        return True

    def proxy(self, name: str, listen_port: int, upstream: str) -> Proxy:
        """Create (or replace) a proxy 127.0.0.1:listen_port -> upstream, enabled, no toxics."""
        with contextlib.suppress(ToxiproxyError):  # none of that name yet
            self.call("DELETE", f"/proxies/{name}")
        self.call("POST", "/proxies", {"name": name, "listen": f"127.0.0.1:{listen_port}",
                                       "upstream": upstream, "enabled": True})
        return Proxy(self, name, listen_port, upstream)


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_toxiproxy(log: Path, port: int = API_PORT) -> subprocess.Popen[bytes]:
    """Start toxiproxy-server on 127.0.0.1:port and wait for its API; raises when it cannot."""
    if not os.access(TOXIPROXY_BIN, os.X_OK):
        raise ToxiproxyError(f"{TOXIPROXY_BIN} not found: {SETUP_HINT}")
    if not port_free(port):
        raise ToxiproxyError(f"127.0.0.1:{port} is taken: stop what listens there")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(TOXIPROXY_BIN), "-host", "127.0.0.1", "-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    api = ToxiproxyApi(port)
    deadline = time.monotonic() + 15
    while not api.up():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ToxiproxyError(f"toxiproxy-server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return process
