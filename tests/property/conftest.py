"""Hostile-input fixtures: one real `fetcher serve` over the demo data in an LMDB file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fetcher.catalog._loader import load_catalog
from fetcher.demo._data import generate_demo_rows
from fetcher.demo._write import write_demo
from tests.e2e.conftest import CONFIG_DIR, RunningServer, free_port, serving, write_settings
from tests.e2e.truth import Truth

MAX_BATCH = 600


@dataclass(frozen=True)
class PropertyServer:
    """The running server, the truth of its data and the time the data was written at."""

    server: RunningServer
    truth: Truth
    now_ms: int


@pytest.fixture(scope="session")
def prop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PropertyServer]:
    """`fetcher serve` (one process) over the demo rows written at a fixed time."""
    workdir = tmp_path_factory.mktemp("property")
    port = free_port()
    settings = write_settings(workdir / "settings.toml", port=port,
                              store_url=f"embedded://{workdir}/demo.lmdb",
                              max_batch_entities=MAX_BATCH)
    now_ms = time.time_ns() // 1_000_000
    asyncio.run(write_demo(settings, now_ms=now_ms, env={}))
    catalog = load_catalog(CONFIG_DIR)
    truth = Truth(catalog, {name: generate_demo_rows(group, now_ms=now_ms)
                            for name, group in catalog.groups.items()})
    with serving("property", settings, port, workdir / "server.log") as server:
        yield PropertyServer(server, truth, now_ms)
