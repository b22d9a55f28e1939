"""E2E fixtures: demo files loaded with the real `fetcher load`, real `fetcher serve` processes.

One server per backend: the embedded (LMDB) one lives for the session, the Redis
one for its module (the shared test Redis is flushed by other suites). The truth
every response is checked against is the rows written to the load files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fetcher.catalog._loader import load_catalog
from fetcher.client import FeatureClient
from fetcher.demo._data import DemoRow, generate_demo_rows
from fetcher.demo._write import write_demo_files
from tests.e2e.extras import EXTRA_FILES, extra_rows
from tests.e2e.truth import Truth
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config" / "demo"
TOOLS_BIN = REPO / ".tools" / "bin"
# The venv that runs pytest is the one whose `fetcher` entry point is under test.
FETCHER = Path(sys.executable).parent / "fetcher"
# The CLI of the code in this checkout: the entry point above imports wherever the venv's
# editable install points, which is another checkout when a worktree shares the venv.
FETCHER_MODULE = (sys.executable, "-m", "fetcher.cli")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def tool(name: str) -> Path:
    """A Go tool installed by scripts/setup.sh into .tools/bin; fails (never skips) without it."""
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: run `scripts/setup.sh` (or `make setup`) to install it")
    return path


def fetcher_env() -> dict[str, str]:
    """The environment for `fetcher` subprocesses: no FETCHER__ overrides leak in from ours."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("FETCHER")}


def run_fetcher(
    *args: str, timeout_s: float = 60.0, command: Sequence[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `fetcher` command from the repo root; output captured as text.

    `command` runs instead of the venv's `fetcher` (e.g. FETCHER_MODULE: this checkout's code).
    """
    if command is None:
        if not os.access(FETCHER, os.X_OK):
            pytest.fail(f"{FETCHER} not found: run `scripts/setup.sh` (pip install -e '.[dev]')")
        command = (str(FETCHER),)
    return subprocess.run(
        [*command, *args],
        cwd=REPO,
        env=fetcher_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def write_settings(
    path: Path,
    *,
    port: int,
    store_url: str,
    l2_url: str | None = None,
    cache: Mapping[str, Any] | None = None,
    max_batch_entities: int = 600,
    workers: int = 1,
    config_dir: Path = CONFIG_DIR,
) -> Path:
    """A settings TOML for one e2e server (small batch limit: the limit is tested).

    No metrics endpoint: its fixed default port would clash between servers.
    """
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f"config_dir = {json.dumps(str(config_dir))}",
        f"max_batch_entities = {max_batch_entities}",
        f"workers = {workers}",
        'metrics_listen = ""',
        "drain_delay_s = 0.0",  # no load balancer to wait for: stop at once
        "shutdown_grace_s = 2.0",
        "",
        "[cache]",
    ]
    if l2_url is not None:
        lines.append(f"l2_url = {json.dumps(l2_url)}")
    for key, value in (cache or {}).items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += ["", "[stores.main]", f"url = {json.dumps(store_url)}", "timeout_ms = 2000", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass(frozen=True)
class E2EData:
    """The load files and the truth built from the same rows."""

    now_ms: int
    files: Mapping[str, Sequence[Path]]  # group -> files, loaded in this order
    row_counts: Mapping[str, int]
    truth: Truth


@pytest.fixture(scope="session")
def e2e_data(tmp_path_factory: pytest.TempPathFactory) -> E2EData:
    """Demo rows (CSV, JSONL, Parquet) at a fixed `now`, plus extra JSONL rows at known times."""
    now_ms = time.time_ns() // 1_000_000
    out = tmp_path_factory.mktemp("e2e-files")
    catalog = load_catalog(CONFIG_DIR)
    demo_paths = write_demo_files(out, CONFIG_DIR, now_ms=now_ms)
    rows: dict[str, list[DemoRow]] = {
        name: generate_demo_rows(group, now_ms=now_ms) for name, group in catalog.groups.items()
    }
    files: dict[str, list[Path]] = {name: [path] for name, path in demo_paths.items()}
    for group_name, extras in extra_rows(now_ms).items():
        path = out / EXTRA_FILES[group_name]
        with open(path, "w", encoding="utf-8") as fh:
            for row in extras:
                keys = dict(zip([c.name for c in catalog.groups[group_name].keys], row.keys,
                                strict=True))
                fh.write(json.dumps({**keys, "event_time": row.event_ms, **row.record}) + "\n")
        files[group_name].append(path)
        rows[group_name] += extras
    return E2EData(
        now_ms=now_ms,
        files=files,
        row_counts={name: len(group_rows) for name, group_rows in rows.items()},
        truth=Truth(catalog, rows),
    )


def load_with_cli(settings: Path, data: E2EData) -> None:
    """`fetcher load` every group's files (one process per group, all at once); no rejects."""
    loads = {
        group_name: subprocess.Popen(
            [str(FETCHER), "load", "--settings", str(settings), "--group", group_name,
             *map(str, paths)],
            cwd=REPO,
            env=fetcher_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group_name, paths in sorted(data.files.items())
    }
    for group_name, process in loads.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, f"fetcher load {group_name}:\n{stdout}{stderr}"
        # Each file's last status line counts it (a slow load also prints progress lines
        # every few seconds, with the counts so far).
        last: dict[str, tuple[int, int]] = {}
        for path, done, rejected in re.findall(
                r"^(.+?): [\d,]+ read, ([\d,]+) written, ([\d,]+) rejected", stderr, re.M):
            last[path] = (int(done.replace(",", "")), int(rejected.replace(",", "")))
        assert sorted(last) == sorted(map(str, data.files[group_name])), stderr
        assert sum(done for done, _ in last.values()) == data.row_counts[group_name], stderr
        assert all(rejected == 0 for _, rejected in last.values()), stderr


@dataclass(frozen=True)
class RunningServer:
    """A `fetcher serve` process that answers health checks."""

    name: str
    port: int
    settings: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def target(self) -> str:
        """host:port for clients."""
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the server's output."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _probe(port: int) -> bool:
    result = subprocess.run(
        [str(tool("grpc_health_probe")), f"-addr=127.0.0.1:{port}",
         "-connect-timeout=1s", "-rpc-timeout=1s"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


@contextmanager
def serving(
    name: str, settings: Path, port: int, log: Path, *, command: Sequence[str] = ()
) -> Iterator[RunningServer]:
    """Start `fetcher serve`, wait for SERVING, yield; then SIGTERM and require exit code 0.

    `command` runs instead of the venv's `fetcher` (e.g. FETCHER_MODULE).
    """
    with open(log, "wb") as log_fh:
        process = subprocess.Popen(
            [*(command or [str(FETCHER)]), "serve", "--settings", str(settings)],
            cwd=REPO,
            env=fetcher_env(),
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(name, port, settings, log, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _probe(port):
            if process.poll() is not None:
                pytest.fail(f"{name} server exited with {process.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} server not SERVING after {START_TIMEOUT_S} s:\n"
                            f"{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"{name} server still running {STOP_TIMEOUT_S} s after SIGTERM:\n"
                        f"{server.log_tail()}")
    assert code == 0, f"{name} server exited with {code} after SIGTERM:\n{server.log_tail()}"


@pytest.fixture(scope="session")
def embedded_server(
    e2e_data: E2EData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The server over an embedded LMDB store, loaded with `fetcher load`."""
    workdir = tmp_path_factory.mktemp("embedded")
    port = free_port()
    settings = write_settings(
        workdir / "settings.toml",
        port=port,
        store_url=f"embedded://{workdir}/e2e.lmdb",
        workers=2,  # two processes on one port, each reading the LMDB file
    )
    load_with_cli(settings, e2e_data)
    with serving("embedded", settings, port, workdir / "server.log") as server:
        yield server


def flush_redis(url: str) -> None:
    """Empty the test Redis database (the shared one in CI: other suites do the same)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# Module scope, not session: other suites flush the shared test Redis, so the data must
# only be needed while the module that loaded it runs.
@pytest.fixture(scope="module")
def redis_server(
    e2e_data: E2EData, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The server over the test Redis (store and L2 cache), loaded with `fetcher load`."""
    flush_redis(redis_url)
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    settings = write_settings(
        workdir / "settings.toml",
        port=port,
        store_url=redis_url,
        l2_url=redis_url,
        # A (near) empty L1: repeated reads go through L2 and the store, not process memory.
        cache={"l1_max_entries": 0},
    )
    load_with_cli(settings, e2e_data)
    with serving("redis", settings, port, workdir / "server.log") as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, show the log of every server the test used."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed:
        servers = {
            id(v): v for v in getattr(item, "funcargs", {}).values() if isinstance(v, RunningServer)
        }
        for server in servers.values():
            if server.log.exists():
                report.sections.append((f"{server.name} server log", server.log_tail()))


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[FeatureClient]:
    """The project's client, connected to the module's `server`."""
    with FeatureClient(server.target, timeout_s=10.0) as feature_client:
        yield feature_client
