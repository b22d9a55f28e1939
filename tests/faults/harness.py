"""The fault-test world: a redis-server of our own behind toxiproxy, an embedded store, demo
data loaded into both, and real `fetcher serve` processes over them.

The catalog is config/demo with user_profile moved to the Redis store ("redis", through
a proxy) and the other groups in an embedded LMDB store ("local"), so feature service
user_merchant joins a group that the faults hit and one they never touch.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from fetcher.catalog._loader import Catalog, load_catalog
from fetcher.client import KeyInput, key_value, timestamp
from fetcher.demo._data import DemoRow, generate_demo_rows
from fetcher.demo._write import write_demo_rows
from fetcher.load._rows import RowPreparer
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc
from kvstores import EmbeddedStore, KVStore, RedisStore
from tests.e2e.conftest import CONFIG_DIR, RunningServer, serving
from tests.e2e.truth import Truth
from tests.servers import free_port

REDIS_GROUP = "user_profile"
LOCAL_GROUPS = ("merchant_stats", "place_visits")
SERVICE = "user_merchant"
STORE_TIMEOUT_MS = 100


class RedisServer:
    """A redis-server process of our own that keeps its data across a stop and start (RDB)."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of the server itself (not the proxy)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING (loading the RDB file if one exists)."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not installed: run `scripts/setup.sh`")
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - child keeps it
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--dbfilename",
             f"dump-{self.port}.rdb", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 15
        while not self._ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start; is the port"
                                   f" free? log: {self.workdir}/redis-{self.port}.log")
            time.sleep(0.05)

    def _ping(self) -> bool:
        result = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                timeout=5, check=False)
        return result.stdout.strip() == b"PONG"

    def stop(self, *, save: bool = True) -> None:
        """SHUTDOWN (SAVE: the next start has the same data) and wait for the process."""
        if self.process is None:
            return
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "save" if save else
                        "nosave"], capture_output=True, timeout=10, check=False)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def clients(self) -> int:
        """Connected clients right now (INFO clients), our redis-cli included."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "info", "clients"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        for line in out.splitlines():
            if line.startswith("connected_clients:"):
                return int(line.split(":")[1])
        raise AssertionError(f"no connected_clients in INFO: {out}")


def fault_config_dir(out: Path) -> Path:
    """config/demo with user_profile in store "redis" and every other group in "local"."""
    target = out / "config"
    shutil.copytree(CONFIG_DIR, target)
    for path in (target / "groups").glob("*.json"):
        spec = json.loads(path.read_text(encoding="utf-8"))
        spec["store"] = "redis" if spec["name"] == REDIS_GROUP else "local"
        path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return target


@dataclass(frozen=True)
class World:
    """Catalog, truth and where the data lives."""

    config_dir: Path
    catalog: Catalog
    truth: Truth
    now_ms: int
    lmdb_path: Path
    rows: Mapping[str, Sequence[DemoRow]]


async def _load(catalog: Catalog, stores: Mapping[str, KVStore], now_ms: int
                ) -> dict[str, list[DemoRow]]:
    rows: dict[str, list[DemoRow]] = {}
    for name, group in sorted(catalog.groups.items()):
        rows[name] = generate_demo_rows(group, now_ms=now_ms)
        preparer = RowPreparer(group, catalog.codecs[name], text=False)
        await write_demo_rows(group, preparer, stores[group.store], rows[name])
    for store in stores.values():
        await store.close()
    return rows


def running_redis(port: int, state_dir: Path) -> Iterator[RedisServer]:
    """A redis-server of a test package's own for a session fixture; fails, never skips."""
    import pytest

    server = RedisServer(port, state_dir)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop(save=False)


def build_world(workdir: Path, redis_url: str) -> World:
    """Write the config and load the demo rows straight into Redis and the LMDB file."""
    config_dir = fault_config_dir(workdir)
    catalog = load_catalog(config_dir)
    now_ms = time.time_ns() // 1_000_000
    lmdb_path = workdir / "local.lmdb"
    stores: dict[str, KVStore] = {
        "redis": RedisStore(redis_url, timeout_s=5.0),
        "local": EmbeddedStore(lmdb_path, sync=False),
    }
    rows = asyncio.run(_load(catalog, stores, now_ms))
    return World(config_dir, catalog, Truth(catalog, rows), now_ms, lmdb_path, rows)


def write_settings(
    path: Path, world: World, *, port: int, metrics_port: int, redis_url: str,
    server: Mapping[str, Any] | None = None, redis_store: Mapping[str, Any] | None = None,
) -> Path:
    """Settings for one fault-test server: tiny L1 (every read reaches the stores), no L2."""
    server_keys = {
        "listen": f"127.0.0.1:{port}", "config_dir": str(world.config_dir), "workers": 1,
        "metrics_listen": f"127.0.0.1:{metrics_port}", "drain_delay_s": 0.0,
        "shutdown_grace_s": 2.0, "health_interval_s": 0.5, "max_batch_entities": 600,
        **(server or {}),
    }
    redis_keys = {
        "url": redis_url, "timeout_ms": STORE_TIMEOUT_MS, "required": False,
        "breaker_failures": 5, "breaker_cooldown_s": 0.3, "max_in_flight": 32,
        **(redis_store or {}),
    }
    lines = ["[server]", *(f"{k} = {json.dumps(v)}" for k, v in server_keys.items()),
             "", "[cache]", "l1_max_entries = 1", "",
             "[stores.redis]", *(f"{k} = {json.dumps(v)}" for k, v in redis_keys.items()),
             "", "[stores.local]", f"url = {json.dumps(f'embedded://{world.lmdb_path}')}",
             "timeout_ms = 1000", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass(frozen=True)
class FaultServer:
    """A running server and how to watch it."""

    server: RunningServer
    metrics_port: int

    @property
    def target(self) -> str:
        """host:port for clients."""
        return self.server.target

    @property
    def pid(self) -> int:
        """The serving process."""
        return self.server.process.pid

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics: (name, sorted labels) -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value (0 when absent)."""
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def rss_kb(self) -> int:
        """Resident memory of the server process."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        """Open file descriptors of the server process."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))


@contextmanager
def fault_server(name: str, workdir: Path, world: World, redis_url: str,
                 **options: Any) -> Iterator[FaultServer]:
    """Start a `fetcher serve` for the world (options: server=..., redis_store=...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    settings = write_settings(workdir / "settings.toml", world, port=port,
                              metrics_port=metrics_port, redis_url=redis_url, **options)
    with serving(name, settings, port, workdir / "server.log") as server:
        yield FaultServer(server, metrics_port)


@dataclass(frozen=True)
class Answer:
    """One RPC's outcome as a client saw it."""

    code: grpc.StatusCode
    details: str
    response: Any
    seconds: float


class Caller:
    """An asyncio gRPC client of the fetcher for tests: raw responses and status codes."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = pb_grpc.FeatureServiceStub(self.channel)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    @staticmethod
    def single(keys: Mapping[str, KeyInput], at_ms: int | None,
               service: str = SERVICE) -> pb.GetFeaturesRequest:
        """A GetFeaturesRequest for a feature service."""
        request = pb.GetFeaturesRequest(feature_service=service)
        for name, value in keys.items():
            request.keys[name].CopyFrom(key_value(value))
        if at_ms is not None:
            request.at.CopyFrom(timestamp(at_ms))
        return request

    @staticmethod
    def batch(entities: Sequence[Mapping[str, KeyInput]], at_ms: int | None,
              service: str = SERVICE) -> pb.GetBatchFeaturesRequest:
        """A GetBatchFeaturesRequest for a feature service."""
        request = pb.GetBatchFeaturesRequest(feature_service=service)
        for keys in entities:
            entity = request.entities.add()
            for name, value in keys.items():
                entity.keys[name].CopyFrom(key_value(value))
        if at_ms is not None:
            request.at.CopyFrom(timestamp(at_ms))
        return request

    async def call(self, request: Any, timeout_s: float) -> Answer:
        """Send one request (single or batch by its type); never raises for a status."""
        method = (self.stub.GetBatchFeatures if isinstance(request, pb.GetBatchFeaturesRequest)
                  else self.stub.GetFeatures)
        started = time.perf_counter()
        try:
            response = await method(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return Answer(exc.code(), exc.details() or "", None,
                          time.perf_counter() - started)
        return Answer(grpc.StatusCode.OK, "", response, time.perf_counter() - started)
