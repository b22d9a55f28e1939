"""FetchEngine with its L2 tier on the real test redis-server: rows and negative entries
survive the store going away, with the group's own L2 TTL; groups without L2 stay out."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from fetcher.api._snapshot import build_snapshot
from fetcher.cache import L2Cache
from fetcher.catalog._loader import load_catalog
from fetcher.codec._keys import key_encoder
from fetcher.types import Status
from tests.unit.fetch_support import (
    CONFIG_DIR,
    MINUTE_MS,
    FetchHarness,
    demo_snapshot,
    now_ms,
    record,
    vector_values,
)

pytestmark = pytest.mark.integration

PRESENT = int(Status.PRESENT)
NOT_FOUND = int(Status.NOT_FOUND)
ERROR = int(Status.ERROR)
DEFAULT_L2_TTL_S = 600.0  # settings' l2_ttl_s; merchant_stats overrides it with 60


@pytest.fixture
async def h(clean_redis: str, tmp_path: Path) -> AsyncIterator[FetchHarness]:
    l2 = L2Cache(clean_redis, key_prefix="engine-l2", timeout_s=1.0)
    harness = FetchHarness(
        tmp_path, demo_snapshot(), l2=l2, l2_ttl_s=DEFAULT_L2_TTL_S, negative_ttl_s=30.0
    )
    yield harness
    await harness.close()
    await l2.close()


def redis_ttl_ms(h: FetchHarness, url: str, group: str, key: int) -> int:
    join = h.plan("group", group).joins[0]
    assert h.tiers.l2 is not None
    name = h.tiers.l2.redis_key((join.l2_ns, key_encoder(join.group.keys)([key]), None))
    client = redis.Redis.from_url(url)
    try:
        return int(client.pttl(name))
    finally:
        client.close()


async def test_l2_serves_rows_after_the_store_is_gone(h: FetchHarness, clean_redis: str) -> None:
    written = now_ms() - MINUTE_MS
    merchant = record(h.group("merchant_stats"), 3)
    await h.write("merchant_stats", [3], merchant, written)
    await h.write("user_profile", [3], record(h.group("user_profile"), 3), written)
    (first,) = await h.fetch("service", "user_merchant", [[3, 3]])
    assert first.statuses == [PRESENT] * 44
    await h.engine.close()  # waits for the background L2 writes
    # The group's l2_ttl_seconds (60), not the settings' default.
    assert 0 < redis_ttl_ms(h, clean_redis, "merchant_stats", 3) <= 60_000
    # user_profile has cache.l2 = false: nothing of it went to Redis.
    assert redis_ttl_ms(h, clean_redis, "user_profile", 3) == -2
    h.tiers.l1.clear()
    await h.stores["main"].inner.close()  # every store read now fails
    (second,) = await h.fetch("service", "user_merchant", [[3, 3]])
    assert second.statuses == [ERROR] * 22 + [PRESENT] * 22
    assert second.event_ms == [0, written]
    plan = h.plan("service", "user_merchant")
    served = vector_values(plan, second)
    assert {k: served[f"merchant_{k}"] for k in merchant} == merchant
    (group_only,) = await h.fetch("group", "merchant_stats", [[3]])
    assert group_only.statuses == [PRESENT] * 22
    assert h.calls() == 2  # the first read, and the failed user_profile read


def evolved_catalog_dir(root: Path) -> Path:
    """config/demo with merchant_stats' schema grown by one field (default 7)."""
    target = root / "evolved"
    shutil.copytree(CONFIG_DIR, target)
    groups = target / "groups"
    shutil.copy(groups / "merchant_stats.avsc", groups / "merchant_stats.v1.avsc")
    schema = json.loads((groups / "merchant_stats.avsc").read_text())
    schema["fields"].append({"name": "returns_7d", "type": "long", "default": 7})
    (groups / "merchant_stats.avsc").write_text(json.dumps(schema))
    config = json.loads((groups / "merchant_stats.json").read_text())
    config["previous_schemas"] = ["merchant_stats.v1.avsc"]
    (groups / "merchant_stats.json").write_text(json.dumps(config))
    return target


async def test_l2_stays_warm_across_a_schema_change(
    h: FetchHarness, clean_redis: str, tmp_path: Path
) -> None:
    merchant = record(h.group("merchant_stats"), 8)
    await h.write("merchant_stats", [8], merchant, now_ms())
    await h.fetch("group", "merchant_stats", [[8]])
    await h.engine.close()
    # A reload with a new reader schema: new L1 namespace, same L2 entries.
    evolved = build_snapshot(load_catalog(evolved_catalog_dir(tmp_path)))
    assert evolved.plans.groups["merchant_stats"].joins[0].cache_ns != (
        h.plan("group", "merchant_stats").joins[0].cache_ns
    )
    l2 = L2Cache(clean_redis, key_prefix="engine-l2", timeout_s=1.0)
    reloaded = FetchHarness(tmp_path / "reloaded", evolved, l2=l2)
    try:
        (vector,) = await reloaded.fetch("group", "merchant_stats", [[8]])
        assert reloaded.calls() == 0  # served by L2: the empty store was never read
        plan = reloaded.plan("group", "merchant_stats")
        assert vector_values(plan, vector) == merchant | {"returns_7d": 7}
    finally:
        await reloaded.close()
        await l2.close()


async def test_l2_keeps_negative_entries_for_the_negative_ttl(
    h: FetchHarness, clean_redis: str
) -> None:
    (missing,) = await h.fetch("group", "merchant_stats", [[404]])
    assert missing.statuses == [NOT_FOUND] * 22
    await h.engine.close()
    assert 0 < redis_ttl_ms(h, clean_redis, "merchant_stats", 404) <= 30_000
    h.tiers.l1.clear()
    (again,) = await h.fetch("group", "merchant_stats", [[404]])
    assert again.statuses == [NOT_FOUND] * 22
    assert h.calls() == 1


async def test_a_down_l2_falls_back_to_the_store(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    l2 = L2Cache(f"redis://127.0.0.1:{port}/0", key_prefix="engine-l2", timeout_s=0.2)
    h = FetchHarness(tmp_path, demo_snapshot(), l2=l2)
    try:
        merchant = record(h.group("merchant_stats"), 1)
        await h.write("merchant_stats", [1], merchant, now_ms())
        (vector,) = await h.fetch("group", "merchant_stats", [[1]])
        assert vector.statuses == [PRESENT] * 22
        assert l2.errors >= 1
    finally:
        await h.close()
        await l2.close()
