"""Corrupt values in Cassandra and DynamoDB: that entity's group is ERROR, counted by cause.

The same corruptions as tests/faults/test_corrupt_values.py (Redis, LMDB), written straight
into the stores `fetcher serve` reads for mb_checkout (no proxy), one per kind, for users
1001.. (Cassandra) and merchants 2001.. (DynamoDB), outside the loaded range. One batch
mixes them with loaded entities: every other group and entity must be exact. Ports:
moto_server 8123 (the toxiproxy fault module uses 8120), server ports free ones.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetcher.catalog._loader import load_catalog
from fetcher.client import KeyInput
from fetcher.codec._keys import key_encoder
from kvstores import Row, open_store
from tests.e2e.conftest import E2EData, load_with_cli
from tests.e2e.multi_backend_support import (
    CASSANDRA_HOST,
    CASSANDRA_PORT,
    DEVICE,
    SERVICE,
    build_rows,
    drop_keyspace,
    entity,
    require_cassandra,
    write_data,
)
from tests.faults.backend_support import (
    GROUP_OF,
    LOCAL_GROUP,
    backend_server,
    fault_config_dir,
    moto_on,
    write_settings,
)
from tests.faults.harness import Caller, FaultServer, World
from tests.faults.report import record
from tests.faults.test_corrupt_values import CORRUPTIONS
from tests.faults.truth import ERROR_OUTCOME, ResponseChecker
from tests.servers import free_port

MOTO_PORT = 8123
KINDS = sorted(CORRUPTIONS)
# First corrupt key per backend; n % 100 stays below the loaded row counts (_valid's index).
FIRST_BAD_KEY = {"cassandra": 1001, "dynamodb": 2001}
KEY_FIELD = {"cassandra": "user_id", "dynamodb": "merchant_id"}
# The group CORRUPTIONS' "incompatible-schema" takes its bytes from (the demo catalog's).
OTHER_SCHEMA_GROUP = "place_visits"


@dataclass(frozen=True)
class Rig:
    """The running server, the world the corruptors read and the stores' URLs."""

    server: FaultServer
    world: World
    store_urls: dict[str, str]


def _corruption_world(workdir: Path, config_dir: Path, data: E2EData) -> World:
    """A World over the mb catalog for CORRUPTIONS' corruptors.

    Their incompatible-schema kind encodes with the demo group place_visits; here that
    name stands for the device group, whose schema the server has registered but which
    neither the user nor the merchant schema can read.
    """
    catalog = load_catalog(config_dir)
    rows = build_rows(data.now_ms)  # the rows write_data built for the same instant
    codecs = {**catalog.codecs, OTHER_SCHEMA_GROUP: catalog.codecs[DEVICE]}
    return World(
        config_dir=config_dir,
        catalog=dataclasses.replace(catalog, codecs=codecs),
        truth=data.truth,
        now_ms=data.now_ms,
        lmdb_path=workdir / "local.lmdb",
        rows={**rows, OTHER_SCHEMA_GROUP: rows[DEVICE]},
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """moto (8123), a keyspace and table prefix of this run, rows loaded, a server."""
    require_cassandra()
    workdir = tmp_path_factory.mktemp("faults-corrupt-cd")
    keyspace, prefix = f"faults_corrupt_{os.getpid()}", f"corrupt{os.getpid()}_"
    try:
        with moto_on(MOTO_PORT) as moto_url:
            data = write_data(workdir, time.time_ns() // 1_000_000)
            config_dir = fault_config_dir(workdir)
            port, metrics_port = free_port(), free_port()
            store_urls = {
                "cassandra": f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/{keyspace}",
                "dynamodb": f"dynamodb://us-east-1/{prefix}?endpoint_url={moto_url}",
                "local": f"embedded://{workdir / 'local.lmdb'}",
            }
            settings = write_settings(
                workdir / "settings.toml",
                config_dir=config_dir,
                port=port,
                metrics_port=metrics_port,
                store_urls=store_urls,
            )
            load_with_cli(settings, data)  # creates the keyspace and the tables
            world = _corruption_world(workdir, config_dir, data)
            with backend_server(workdir, settings, metrics_port, port) as server:
                yield Rig(server, world, store_urls)
    finally:
        drop_keyspace(keyspace)


async def _put_corrupt(rig: Rig, backend: str) -> dict[int, str]:
    """One corrupt value per kind, written directly into the store; key -> kind."""
    group = GROUP_OF[backend]
    spec = rig.world.catalog.groups[group]
    encode = key_encoder(spec.keys)
    bad = {FIRST_BAD_KEY[backend] + i: kind for i, kind in enumerate(KINDS)}
    rows = [
        Row(spec.dataset, encode([key]), CORRUPTIONS[kind][1](rig.world, group, key),
            rig.world.now_ms - 1000)
        for key, kind in bad.items()
    ]  # fmt: skip
    # Generous timeout: the first Cassandra call connects and prepares.
    store = open_store(rig.store_urls[backend], timeout_s=10.0)
    try:
        await store.multi_put(rows)
    finally:
        await store.close()
    return bad


def _batch(backend: str, bad: dict[int, str]) -> list[dict[str, KeyInput]]:
    """Corrupt entities (their other keys loaded) interleaved with loaded entities."""
    entities: list[dict[str, KeyInput]] = []
    for i, key in enumerate(bad, 1):
        entities.append({**entity(i), KEY_FIELD[backend]: key})
        entities.append(entity(i + 10))
    # Rows with no value (user 31, merchant 16, dev-999) next to the corrupt ones too.
    entities.append(entity(31))
    return entities


@pytest.mark.parametrize("backend", ["cassandra", "dynamodb"])
async def test_corrupt_values_are_error_for_that_group_only(rig: Rig, backend: str) -> None:
    group = GROUP_OF[backend]
    bad = await _put_corrupt(rig, backend)
    causes = collections.Counter(CORRUPTIONS[kind][0] for kind in bad.values())
    before = {
        c: rig.server.metric("fetcher_decode_errors_total", group=group, cause=c) for c in causes
    }
    entities = _batch(backend, bad)
    caller = Caller(rig.server.target)
    try:
        answer = await caller.call(Caller.batch(entities, rig.world.now_ms, service=SERVICE), 5.0)
    finally:
        await caller.close()
    assert answer.response is not None, f"{backend}: {answer.code} {answer.details}"
    checker = ResponseChecker(rig.world.truth)
    results = checker.check_response(
        answer.response, entities, rig.world.now_ms, service=SERVICE, may_fail=(group,)
    )
    other = GROUP_OF["dynamodb" if backend == "cassandra" else "cassandra"]
    for keys, outcome in zip(entities, results, strict=True):
        key = keys[KEY_FIELD[backend]]
        kind = bad.get(key) if isinstance(key, int) else None
        if kind is None:
            assert ERROR_OUTCOME not in outcome.values(), (backend, keys, outcome)
        else:
            assert outcome[group] == ERROR_OUTCOME, (backend, kind, keys, outcome)
            assert ERROR_OUTCOME not in (outcome[other], outcome[LOCAL_GROUP]), (kind, outcome)
    # Counted once per value read, under its cause (decode failures are never cached).
    await asyncio.sleep(0)
    moved = {
        c: rig.server.metric("fetcher_decode_errors_total", group=group, cause=c) - before[c]
        for c in causes
    }
    assert moved == dict(causes), (backend, moved, dict(causes))
    record(
        f"corrupt values in {backend} ({group})",
        kinds=len(bad),
        causes=dict(moved),
        entities=len(entities),
        other_entities_correct=len(entities) - len(bad),
        wrong_values=0,
    )
