"""Helpers for the lifecycle e2e tests: the real `fetcher serve` process, a private
redis-server, a settings writer, a load thread and a metrics scraper.

Everything listens on 127.0.0.1; servers are stopped by the fixtures that start them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "config" / "demo"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "fetcher.v1.FeatureService"


def free_port(pairs: int = 1) -> int:
    """A port on 127.0.0.1 free right now (with `pairs` > 1: that many free in a row)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if all(_free(port + i) for i in range(1, pairs)):
            return port
    raise RuntimeError("no free port range found")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def copy_config(tmp: Path) -> Path:
    """A private copy of the demo config directory (tests edit it)."""
    target = tmp / "config"
    shutil.copytree(DEMO_CONFIG, target)
    return target


def write_settings(tmp: Path, text: str, *, store_url: str | None = None) -> Path:
    """Settings TOML: a [server] with free ports and short timings, then `text`.

    `text` may start with [server] keys (they replace the defaults), then other tables.
    """
    config_dir = tmp / "config"
    if not config_dir.exists():
        copy_config(tmp)
    url = store_url or f"embedded://{tmp / 'store.lmdb'}"
    server = {
        "listen": f'"127.0.0.1:{free_port()}"',
        "config_dir": f'"{config_dir}"',
        "metrics_listen": '""',
        "drain_delay_s": "0.2",
        "shutdown_grace_s": "3.0",
        "health_interval_s": "0.3",
        "health_timeout_s": "0.3",
        "workers": "1",
    }
    lines = text.splitlines()
    head = 0
    while head < len(lines) and not lines[head].startswith("["):
        key, _, value = lines[head].partition("=")
        if key.strip():
            server[key.strip()] = value.strip()
        head += 1
    body = (
        "[server]\n"
        + "".join(f"{k} = {v}\n" for k, v in server.items())
        + "\n".join(lines[head:])
        + f'\n[stores.main]\nurl = "{url}"\n'
    )
    path = tmp / "fetcher.toml"
    path.write_text(body)
    return path


def listen_of(settings: Path) -> str:
    """The server.listen value written by write_settings."""
    for line in settings.read_text().splitlines():
        if line.startswith("listen = "):
            return line.split('"')[1]
    raise AssertionError(f"no listen in {settings}")


@dataclass
class ServerProcess:
    """A running `fetcher serve`; its stderr (the JSON logs) goes to `log_path`."""

    proc: subprocess.Popen[bytes]
    target: str
    log_path: Path

    def logs(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(errors="replace")

    def health(self, service: str = "", timeout: float = 1.0, **kw: Any) -> int:
        """One grpc.health.v1 Check; raises grpc.RpcError when it cannot connect."""
        with channel(self.target, **kw) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            return int(stub.Check(health_pb2.HealthCheckRequest(service=service),
                                  timeout=timeout).status)

    def wait_health(self, status: int, timeout: float = 15.0, **kw: Any) -> None:
        """Poll Check until it reports `status` (for "" and the feature service)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if all(self.health(s, **kw) == status for s in ("", SERVICE)):
                    return
                last = "other status"
            except grpc.RpcError as exc:
                last = exc.code()
            time.sleep(0.1)
        raise AssertionError(f"health never became {status} (last: {last}):\n{self.logs()}")

    def signal(self, signum: int) -> None:
        """Send a signal to the server (the supervisor, with workers)."""
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit; its exit code."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Kill the server and its workers if still running."""
        if self.proc.poll() is None:
            for pid in child_pids(self.proc.pid):
                _kill(pid)
            _kill(self.proc.pid)
            self.proc.wait(timeout=10)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out.extend(int(p) for p in task.read_text().split())
    return sorted(out)


def start_server(
    tmp: Path, settings: Path, *, workers: int | None = None, env: Mapping[str, str] = (),
    **health_kw: Any,
) -> ServerProcess:
    """Start `fetcher serve` (no wait for readiness)."""
    args = [sys.executable, "-m", "fetcher.cli", "serve", "--settings", str(settings)]
    if workers is not None:
        args += ["--workers", str(workers)]
    log_path = tmp / f"server-{time.monotonic_ns()}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHER__")}
    full_env.update(dict(env))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env)
    return ServerProcess(proc, listen_of(settings), log_path)


def run_serve(settings: Path, env: Mapping[str, str] = ()) -> subprocess.CompletedProcess[str]:
    """Run `fetcher serve` expecting it to exit by itself (a startup failure)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHER__")}
    full_env.update(dict(env))
    return subprocess.run(
        [sys.executable, "-m", "fetcher.cli", "serve", "--settings", str(settings)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, env=full_env,
    )


def channel(target: str, *, credentials: grpc.ChannelCredentials | None = None,
            override: str | None = None) -> grpc.Channel:
    """A blocking channel, TLS when `credentials` are given."""
    if credentials is None:
        return grpc.insecure_channel(target)
    options = [("grpc.ssl_target_name_override", override)] if override else []
    return grpc.secure_channel(target, credentials, options=options)


def get_request(service: str = "user_merchant", user: int = 1) -> pb.GetFeaturesRequest:
    """A GetFeatures request for the demo config."""
    keys = {"user_id": pb.Value(int64_value=user), "merchant_id": pb.Value(int64_value=7)}
    if service == "user_merchant":
        return pb.GetFeaturesRequest(feature_service=service, keys=keys)
    return pb.GetFeaturesRequest(feature_group=service, keys={"user_id": keys["user_id"]})


def stub(ch: grpc.Channel) -> Any:
    """The FeatureService stub of a channel."""
    return pb_grpc.FeatureServiceStub(ch)


@dataclass
class Outcome:
    """One request of a load thread: when it started and ended, its code, config version."""

    started: float
    ended: float
    code: grpc.StatusCode
    version: str = ""
    details: str = ""


@dataclass
class LoadThread:
    """Issues requests back to back on `threads` threads until stopped; records each outcome."""

    target: str
    make_call: Callable[[Any], str] | None = None
    threads: int = 1
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _call(self, s: Any) -> str:
        if self.make_call is not None:
            return self.make_call(s)
        response = s.GetFeatures(get_request(), timeout=5)
        return str(response.metadata.config_version)

    def _run(self) -> None:
        with channel(self.target) as ch:
            s = stub(ch)
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    version = self._call(s)
                    outcome = Outcome(started, time.monotonic(), grpc.StatusCode.OK, version)
                except grpc.RpcError as exc:
                    outcome = Outcome(started, time.monotonic(), exc.code(), "", str(exc.details()))
                    time.sleep(0.01)  # the server is gone or going: no busy loop
                with self._lock:
                    self.outcomes.append(outcome)

    def __enter__(self) -> LoadThread:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        """Stop issuing and return every outcome, in end order."""
        self._stop.set()
        for t in self._workers:
            t.join(timeout=10)
        with self._lock:
            return sorted(self.outcomes, key=lambda o: o.ended)

    def wait_for(self, predicate: Callable[[list[Outcome]], bool], timeout: float) -> bool:
        """Poll the outcomes until `predicate` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.outcomes)):
                    return True
            time.sleep(0.05)
        return False


def scrape(port: int) -> dict[str, float]:
    """GET /metrics -> {"name{labels}": value} of every sample."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


class RedisServer:
    """A private redis-server on 127.0.0.1:`port` that tests stop and start again."""

    def __init__(self, port: int, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            raise AssertionError("redis-server not installed: run scripts/setup.sh")
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        self._proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self._workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """Stop it (SIGKILL: the store is gone at once)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None


def redis_on(port: int, workdir: Path) -> Iterator[RedisServer]:
    """Yield a stopped RedisServer on `port`; stops it afterwards (use in a fixture)."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        raise AssertionError(f"port {port} is in use (another redis-server?); it must be free")
    server = RedisServer(port, workdir)
    try:
        yield server
    finally:
        server.stop()
