"""The bench's world: its redis-server, data, servers and where each runs.

One Lab per bench run. Everything it starts is recorded and stopped by close(), also
when a step fails. The Redis and every server listen on 127.0.0.1 only, on ports
from `base_port` up (default 6450 for the Redis, never the test Redis on 6390).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.data import GROUPS, DataSet, write_group_csv
from bench.procs import BenchError, Proc, port_open, run

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "bench" / "config" / "bench.toml"

#: Offsets from the base port.
PORTS = {
    "redis": 0, "fetcher_cold": 1, "fetcher_warm": 2, "ceiling": 3, "feast_grpc": 4,
    "feast_http": 5, "workers": 6, "rss": 7, "fetcher_feast": 8, "fetcher_feast_http": 9,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cores:
    """taskset CPU lists: servers (and Redis) on one core, load generators on another."""

    server: str | None
    load: str | None
    all: str | None

    @classmethod
    def detect(cls) -> Cores:
        """Core 0 / core 1 of the usable CPUs; no pinning on a one-core machine."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None, None)
        return cls(str(cpus[0]), str(cpus[1]), ",".join(map(str, cpus[:2])))


class Lab:
    """Starts and stops the bench processes and holds where they listen."""

    def __init__(self, build: Path, base_port: int, data: DataSet, cores: Cores) -> None:
        self.build = build
        self.base_port = base_port
        self.data = data
        self.cores = cores
        self.logs = build / "logs"
        self._procs: list[Proc] = []
        self.python = Path(sys.executable)
        self.fetcher_bin = self.python.parent / "fetcher"

    def port(self, name: str) -> int:
        """The port of one process of the bench."""
        return self.base_port + PORTS[name]

    @property
    def redis_url(self) -> str:
        """URL of the bench's own redis-server."""
        return f"redis://127.0.0.1:{self.port('redis')}/0"

    def close(self) -> None:
        """Stop every process this lab started, newest first."""
        while self._procs:
            self._procs.pop().stop()

    def stop(self, proc: Proc) -> None:
        """Stop one process now."""
        proc.stop()
        if proc in self._procs:
            self._procs.remove(proc)

    def _start(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        cpus: str | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout_s: float = 60.0,
    ) -> Proc:
        if port_open(port):
            raise BenchError(
                f"port {port} (for {name}) is already in use: stop what listens there or "
                "pass --base-port"
            )
        proc = Proc(name, argv, self.logs / f"{name}.log", cpus=cpus, env=env, cwd=cwd)
        self._procs.append(proc)
        proc.wait_port(port, timeout_s)
        return proc

    def start_redis(self) -> Proc:
        """A fresh, memory-only redis-server for this run (pinned with the servers)."""
        server = shutil.which("redis-server")
        if server is None:
            raise BenchError("redis-server not found: run `make setup`")
        port = self.port("redis")
        proc = self._start("redis", [
            server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "yes",
        ], port, cpus=self.cores.server)  # fmt: skip
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushall()
        finally:
            client.close()
        return proc

    def fetcher_env(self, port: int, *, l1_cold: bool) -> dict[str, str]:
        """Env overrides of bench.toml for one fetcher server."""
        env = {
            "FETCHER__SERVER__LISTEN": f"127.0.0.1:{port}",
            "FETCHER__STORES__BENCH__URL": self.redis_url,
            # No metrics endpoint: several bench servers run at once (and 9100 may be taken).
            "FETCHER__SERVER__METRICS_LISTEN": "",
            "FETCHER__LOG__LEVEL": "WARNING",
        }
        if l1_cold:
            # L1 off: every request reads Redis (cache.l1_max_entries = 0 turns L1 off).
            env["FETCHER__CACHE__L1_MAX_ENTRIES"] = "0"
        return env

    def load_fetcher_rows(self) -> None:
        """Write the CSVs and load them with `fetcher load` (the fetcher's own bulk path)."""
        files = self.build / "files"
        files.mkdir(parents=True, exist_ok=True)
        env = {"FETCHER__STORES__BENCH__URL": self.redis_url}
        for group in GROUPS:
            path = write_group_csv(files / f"{group}.csv", self.data, group)
            run(
                [
                    str(self.fetcher_bin),
                    "load",
                    "--settings",
                    str(SETTINGS),
                    "--group",
                    group,
                    str(path),
                ],
                f"fetcher load --group {group}",
                env=env,
                cwd=ROOT,
            )

    def start_fetcher(
        self, name: str, *, l1_cold: bool, workers: int = 1, cpus: str | None = None
    ) -> Proc:
        """`fetcher serve --workers N` on the port named `name`."""
        port = self.port(name)
        return self._start(
            name,
            [
                str(self.fetcher_bin),
                "serve",
                "--settings",
                str(SETTINGS),
                "--workers",
                str(workers),
            ],
            port,
            cpus=cpus or self.cores.server,
            env=self.fetcher_env(port, l1_cold=l1_cold),
            cwd=ROOT,
        )

    def start_fetcher_feast(self, repo: Path) -> Proc:
        """`fetcher serve` over Feast's repo ([feast]): Feast's gRPC services on the port
        "fetcher_feast", its HTTP API on "fetcher_feast_http"; L1 off, as Feast has none."""
        port = self.port("fetcher_feast")
        env = self.fetcher_env(port, l1_cold=True)
        env["FETCHER__FEAST__REPO"] = str(repo / "feature_store.yaml")
        env["FETCHER__FEAST__HTTP_LISTEN"] = f"127.0.0.1:{self.port('fetcher_feast_http')}"
        env["FETCHER__FEAST__WATCH_REGISTRY"] = "false"
        return self._start(
            "fetcher_feast",
            [str(self.fetcher_bin), "serve", "--settings", str(SETTINGS), "--workers", "1"],
            port, cpus=self.cores.server, env=env, cwd=ROOT,
        )

    def start_ceiling(self) -> Proc:
        """The bare grpc.aio server of bench/ceiling.py."""
        port = self.port("ceiling")
        return self._start("ceiling", [
            str(self.python), "-m", "bench.ceiling", "--port", str(port),
            "--event-ms", str(self.data.event_ms),
        ], port, cpus=self.cores.server, cwd=ROOT)  # fmt: skip

    def setup_feast(self, feast_python: Path) -> Path:
        """Feast's repo (registry, rows in the same Redis) and its protoset; the repo dir."""
        repo = self.build / "feast"
        run(
            [
                str(feast_python),
                "-m",
                "bench.feast_repo",
                "setup",
                "--dir",
                str(repo),
                "--redis",
                f"127.0.0.1:{self.port('redis')}",
                "--users",
                str(self.data.users),
                "--event-ms",
                str(self.data.event_ms),
            ],
            "Feast setup",
            cwd=ROOT,
            timeout_s=900,
        )
        run(
            [
                str(feast_python),
                "-m",
                "bench.feast_repo",
                "protoset",
                "--out",
                str(self.build / "feast.protoset"),
            ],
            "Feast protoset",
            cwd=ROOT,
        )
        return repo

    def start_feast(self, feast_python: Path, repo: Path) -> tuple[Proc, Proc]:
        """`feast listen` (gRPC) and `feast serve` (HTTP, one worker) over the bench repo."""
        feast = str(feast_python.parent / "feast")
        grpc_port, http_port = self.port("feast_grpc"), self.port("feast_http")
        # Registry refreshes every 600 s (not every 5 s / 60 s): no refresh during a run.
        listen = self._start("feast-grpc", [
            feast, "listen", "--address", f"127.0.0.1:{grpc_port}", "--registry_ttl_sec", "600",
        ], grpc_port, cpus=self.cores.server, cwd=repo, timeout_s=120)  # fmt: skip
        # --max-requests: gunicorn's default restarts the worker every ~1000 requests.
        serve = self._start("feast-http", [
            feast, "serve", "--host", "127.0.0.1", "--port", str(http_port), "--workers", "1",
            "--no-access-log", "--max-requests", "1000000000", "--registry_ttl_sec", "600",
        ], http_port, cpus=self.cores.server, cwd=repo, timeout_s=120)  # fmt: skip
        time.sleep(1.0)  # gunicorn's worker binds after the master: let it settle
        return listen, serve
