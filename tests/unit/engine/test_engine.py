"""FetchEngine over the demo catalog and a real EmbeddedStore: values, statuses, caching,
single-flight, failures and deadlines. Failure injection wraps the real store (ProbeStore)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fetcher.codec._avro import MARKER, GroupCodec
from fetcher.engine._fetch import FetchEngine, StoreHandle
from fetcher.types import Status
from kvstores import StoreError
from tests.unit.fetch_support import (
    CONFIG_DIR,
    DAY_MS,
    MINUTE_MS,
    FetchHarness,
    demo_snapshot,
    now_ms,
    record,
    vector_values,
)

PRESENT = int(Status.PRESENT)
NOT_FOUND = int(Status.NOT_FOUND)
NULL_VALUE = int(Status.NULL_VALUE)
STALE = int(Status.OUTSIDE_MAX_AGE)
ERROR = int(Status.ERROR)
USER_FEATURES = 22
MERCHANT_FEATURES = 22


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[FetchHarness]:
    harness = FetchHarness(tmp_path, demo_snapshot())
    yield harness
    await harness.close()


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[FetchHarness]:
    """merchant_stats moved to a second store ("side"); the rest stay on "main"."""
    harness = FetchHarness(
        tmp_path,
        demo_snapshot({"merchant_stats": "side"}),
        store_names=("main", "side"),
        timeout_s=0.1,
    )
    yield harness
    await harness.close()


async def put_user_and_merchant(h: FetchHarness, n: int, event_ms: int) -> None:
    await h.write("user_profile", [n], record(h.group("user_profile"), n), event_ms)
    await h.write("merchant_stats", [n], record(h.group("merchant_stats"), n + 1000), event_ms)


def prefixed(h: FetchHarness, group: str, n: int, prefix: str) -> dict[str, object]:
    return {prefix + k: v for k, v in record(h.group(group), n).items()}


def sample(h: FetchHarness, name: str, labels: dict[str, str]) -> float:
    return h.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_group_single_entity_serves_what_was_written(h: FetchHarness) -> None:
    written = now_ms() - MINUTE_MS
    rec = record(h.group("user_profile"), 7)
    await h.write("user_profile", [7], rec, written)
    (vector,) = await h.fetch("group", "user_profile", [[7]])
    assert vector.statuses == [PRESENT] * USER_FEATURES
    assert vector_values(h.plan("group", "user_profile"), vector) == rec
    assert vector.event_ms == [written]


async def test_service_batch_in_join_order_with_prefixes(h: FetchHarness) -> None:
    written = now_ms() - MINUTE_MS
    for n in (1, 2, 3):
        await put_user_and_merchant(h, n, written + n)
    plan = h.plan("service", "user_merchant")
    entities = [[3, 3], [1, 1], [2, 2]]
    vectors = await h.fetch("service", "user_merchant", entities)
    assert plan.feature_names[0] == "user_age"
    assert plan.feature_names[USER_FEATURES] == "merchant_category"
    for (n, _), vector in zip(entities, vectors, strict=True):
        want = prefixed(h, "user_profile", n, "user_") | prefixed(
            h, "merchant_stats", n + 1000, "merchant_"
        )
        assert vector_values(plan, vector) == want
        assert list(vector_values(plan, vector)) == list(plan.feature_names)
        assert vector.statuses == [PRESENT] * (USER_FEATURES + MERCHANT_FEATURES)
        assert vector.event_ms == [written + n, written + n]
    # Both groups live in "main": one multi_get for 3 entities x 2 groups.
    assert h.calls() == 1
    assert len(h.stores["main"].calls[0]) == 6


async def test_missing_entity_is_not_found_next_to_a_present_one(h: FetchHarness) -> None:
    await put_user_and_merchant(h, 1, now_ms())
    present, missing = await h.fetch("service", "user_merchant", [[1, 1], [1, 99]])
    assert present.statuses == [PRESENT] * 44
    assert missing.statuses == [PRESENT] * USER_FEATURES + [NOT_FOUND] * MERCHANT_FEATURES
    values = vector_values(h.plan("service", "user_merchant"), missing)
    assert values["merchant_category"] == ""
    assert values["merchant_rating"] == 0.0
    assert values["merchant_tags"] == []
    assert missing.event_ms[1] == 0


async def test_nullable_null_is_null_value_for_that_feature_only(h: FetchHarness) -> None:
    rec = record(h.group("user_profile"), 5) | {"churn_score": None, "loyalty_tier": None}
    await h.write("user_profile", [5], rec, now_ms())
    (vector,) = await h.fetch("group", "user_profile", [[5]])
    plan = h.plan("group", "user_profile")
    statuses = dict(zip(plan.feature_names, vector.statuses, strict=True))
    assert statuses.pop("churn_score") == NULL_VALUE
    assert statuses.pop("loyalty_tier") == NULL_VALUE
    assert set(statuses.values()) == {PRESENT}
    values = vector_values(plan, vector)
    assert (values["churn_score"], values["loyalty_tier"]) == (0.0, "")
    assert values["avg_session_minutes"] == rec["avg_session_minutes"]


async def test_row_past_max_age_is_outside_max_age_with_its_event_time(h: FetchHarness) -> None:
    old = now_ms() - 8 * DAY_MS  # user_profile: max_age_seconds = 7 days
    await h.write("user_profile", [4], record(h.group("user_profile"), 4), old)
    (vector,) = await h.fetch("group", "user_profile", [[4]])
    assert vector.statuses == [STALE] * USER_FEATURES
    values = vector_values(h.plan("group", "user_profile"), vector)
    assert values["age"] == 0 and values["country"] == "" and values["recent_categories"] == []
    assert vector.event_ms == [old]


async def test_point_in_time_reads_the_version_at_or_before(h: FetchHarness) -> None:
    t1, t2 = now_ms() - 3 * DAY_MS, now_ms() - DAY_MS
    group = h.group("user_profile")
    await h.write("user_profile", [1], record(group, 100), t1)
    await h.write("user_profile", [1], record(group, 200), t2)
    plan = h.plan("group", "user_profile")
    # "latest" first, so the point-in-time read below comes after a cached newer row.
    (latest,) = await h.fetch("group", "user_profile", [[1]])
    assert vector_values(plan, latest)["age"] == record(group, 200)["age"]
    between, before, exact = await h.fetch(
        "group", "user_profile", [[1], [1], [1]], at=[t1 + 1, t1 - 1, t2]
    )
    assert vector_values(plan, between) == record(group, 100)
    assert between.event_ms == [t1]
    assert before.statuses == [NOT_FOUND] * USER_FEATURES
    assert vector_values(plan, exact) == record(group, 200)
    # Max age is judged against the read time: 2 days before t2 is fresh at t2 + 1 day.
    (fresh,) = await h.fetch("group", "user_profile", [[1]], at=[t1 + 6 * DAY_MS])
    assert fresh.statuses == [PRESENT] * USER_FEATURES


async def test_one_store_call_per_request_whatever_the_fan_out(h: FetchHarness) -> None:
    cell = 123
    for n in range(1, 6):
        await h.write("user_profile", [n], record(h.group("user_profile"), n), now_ms())
        await h.write("place_visits", [cell, f"p{n}"], record(h.group("place_visits"), n), now_ms())
    entities = [[n, cell, f"p{n}"] for n in range(1, 6)]
    vectors = await h.fetch("service", "user_place", entities)
    assert h.calls() == 1
    assert len(h.stores["main"].calls[0]) == 10
    plan = h.plan("service", "user_place")
    for n, vector in enumerate(vectors, start=1):
        assert (
            vector_values(plan, vector)["place_visits_7d"]
            == record(h.group("place_visits"), n)["visits_7d"]
        )


async def test_duplicate_entities_make_one_lookup(h: FetchHarness) -> None:
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms())
    vectors = await h.fetch("group", "user_profile", [[1], [2], [1], [1]])
    assert [v.statuses[0] for v in vectors] == [PRESENT, NOT_FOUND, PRESENT, PRESENT]
    assert h.stores["main"].calls == [
        [
            ("user_profile", (1).to_bytes(8, "big"), None),
            ("user_profile", (2).to_bytes(8, "big"), None),
        ]
    ]


async def test_l1_serves_the_second_request_and_negatives_the_missing(
    tmp_path: Path,
) -> None:
    h = FetchHarness(tmp_path, demo_snapshot(), negative_ttl_s=0.2)
    try:
        await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms())
        first = await h.fetch("group", "user_profile", [[1], [2]])
        second = await h.fetch("group", "user_profile", [[1], [2]])
        assert h.calls() == 1
        assert [v.statuses for v in first] == [v.statuses for v in second]
        assert second[1].statuses == [NOT_FOUND] * USER_FEATURES
        # The negative entry lives negative_ttl_s; the row (l1_ttl_seconds = 5) stays.
        await asyncio.sleep(0.3)
        await h.fetch("group", "user_profile", [[1], [2]])
        assert h.calls() == 2
        assert h.stores["main"].calls[1] == [("user_profile", (2).to_bytes(8, "big"), None)]
    finally:
        await h.close()


async def test_l1_turned_off_in_settings_reads_the_store_every_time(tmp_path: Path) -> None:
    h = FetchHarness(tmp_path, demo_snapshot())
    h.tiers = dataclasses.replace(h.tiers, l1_enabled=False)
    h.engine = FetchEngine(
        {name: StoreHandle(name, store, 1.0) for name, store in h.stores.items()},
        h.tiers,
        h.metrics,
    )
    try:
        await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms())
        for _ in range(3):
            (vector,) = await h.fetch("group", "user_profile", [[1]])
            assert vector.statuses[0] == PRESENT
        assert h.calls() == 3
        assert len(h.tiers.l1) == 0
    finally:
        await h.close()


async def test_two_stores_are_read_in_parallel(two: FetchHarness) -> None:
    await put_user_and_merchant(two, 1, now_ms())
    two.set_timeout(5.0)
    for store in two.stores.values():
        store.delay_s = 0.2
    loop = asyncio.get_running_loop()
    started = loop.time()
    (vector,) = await two.fetch("service", "user_merchant", [[1, 1]])
    elapsed = loop.time() - started
    assert vector.statuses == [PRESENT] * 44
    (main_span,) = two.stores["main"].spans
    (side_span,) = two.stores["side"].spans
    # Overlapping calls: each started before the other ended.
    assert main_span[0] < side_span[1] and side_span[0] < main_span[1]
    assert elapsed < 0.4  # read one after the other they would take 0.2 + 0.2 s at least


async def test_single_flight_coalesces_concurrent_requests(h: FetchHarness) -> None:
    rec = record(h.group("user_profile"), 9)
    await h.write("user_profile", [9], rec, now_ms())
    h.stores["main"].delay_s = 0.05
    plan = h.plan("group", "user_profile")
    results = await asyncio.gather(*(h.fetch("group", "user_profile", [[9]]) for _ in range(50)))
    assert h.calls() == 1
    assert all(vector_values(plan, r[0]) == rec for r in results)
    assert h.tiers.flights.coalesced == 49
    assert len(h.tiers.flights) == 0


async def test_cancelled_owner_neither_strands_nor_misleads_waiters(h: FetchHarness) -> None:
    group = h.group("user_profile")
    await h.write("user_profile", [1], record(group, 1), now_ms())
    await h.write("user_profile", [2], record(group, 2), now_ms())
    store = h.stores["main"]
    store.gate = asyncio.Event()
    owner = asyncio.create_task(h.fetch("group", "user_profile", [[1], [2]]))
    await store.entered.wait()
    waiter = asyncio.create_task(h.fetch("group", "user_profile", [[2]]))
    await asyncio.sleep(0.01)  # the waiter claims key 2 and waits on the owner
    assert h.calls() == 1
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    store.gate.set()
    (vector,) = await asyncio.wait_for(waiter, 2.0)
    # The waiter fetched for itself: the right entity, never ERROR nor the owner's key 1.
    assert vector_values(h.plan("group", "user_profile"), vector) == record(group, 2)
    assert store.calls[1] == [("user_profile", (2).to_bytes(8, "big"), None)]
    assert len(h.tiers.flights) == 0


async def test_cancelled_waiter_does_not_disturb_the_owner(h: FetchHarness) -> None:
    await h.write("user_profile", [3], record(h.group("user_profile"), 3), now_ms())
    store = h.stores["main"]
    store.gate = asyncio.Event()
    owner = asyncio.create_task(h.fetch("group", "user_profile", [[3]]))
    await store.entered.wait()
    waiter = asyncio.create_task(h.fetch("group", "user_profile", [[3]]))
    await asyncio.sleep(0.01)
    waiter.cancel()
    store.gate.set()
    (vector,) = await owner
    assert vector.statuses == [PRESENT] * USER_FEATURES
    assert waiter.cancelled()


async def test_store_error_is_error_for_its_groups_only(two: FetchHarness) -> None:
    await put_user_and_merchant(two, 1, now_ms())
    two.stores["side"].error = StoreError("connection refused")
    (vector,) = await two.fetch("service", "user_merchant", [[1, 1]])
    assert vector.statuses == [PRESENT] * USER_FEATURES + [ERROR] * MERCHANT_FEATURES
    assert sample(two, "fetcher_store_errors_total", {"store": "side", "kind": "error"}) == 1
    # Errors are not cached: once the store is back the next request is served.
    two.stores["side"].error = None
    (vector,) = await two.fetch("service", "user_merchant", [[1, 1]])
    assert vector.statuses == [PRESENT] * 44


@pytest.mark.parametrize(
    "error", [ValueError("backend bug"), None], ids=["unexpected-exception", "short-answer"]
)
async def test_a_misbehaving_store_is_error_not_a_failed_request(
    two: FetchHarness, error: Exception | None
) -> None:
    await put_user_and_merchant(two, 1, now_ms())
    side = two.stores["side"]
    if error is not None:
        side.error = error
    else:

        async def short(lookups: object) -> list[object]:
            return []

        side.multi_get = short  # type: ignore[method-assign,assignment]
    (vector,) = await two.fetch("service", "user_merchant", [[1, 1]])
    assert vector.statuses == [PRESENT] * USER_FEATURES + [ERROR] * MERCHANT_FEATURES


async def test_store_slower_than_its_timeout_is_error(two: FetchHarness) -> None:
    await put_user_and_merchant(two, 1, now_ms())
    two.stores["side"].delay_s = 5.0  # timeout_s is 0.1
    loop = asyncio.get_running_loop()
    started = loop.time()
    (vector,) = await two.fetch("service", "user_merchant", [[1, 1]])
    assert loop.time() - started < 2.0  # bounded by the 0.1 s timeout, not the 5 s store
    assert vector.statuses == [PRESENT] * USER_FEATURES + [ERROR] * MERCHANT_FEATURES
    assert sample(two, "fetcher_store_errors_total", {"store": "side", "kind": "timeout"}) == 1


async def test_deadline_shorter_than_the_store_timeout_bounds_the_wait(h: FetchHarness) -> None:
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms())
    h.set_timeout(5.0)
    h.stores["main"].delay_s = 10.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    (vector,) = await h.fetch("group", "user_profile", [[1]], deadline=started + 0.1)
    assert loop.time() - started < 2.5  # bounded by the 0.1 s deadline, not the 5 s timeout
    assert vector.statuses == [ERROR] * USER_FEATURES


async def test_waiter_outlives_an_owner_whose_deadline_ran_out(h: FetchHarness) -> None:
    rec = record(h.group("user_profile"), 1)
    await h.write("user_profile", [1], rec, now_ms())
    store = h.stores["main"]
    store.delay_s = 0.2
    loop = asyncio.get_running_loop()
    hurried = asyncio.create_task(
        h.fetch("group", "user_profile", [[1]], deadline=loop.time() + 0.05)
    )
    await store.entered.wait()
    patient = asyncio.create_task(h.fetch("group", "user_profile", [[1]]))
    (short,), (long,) = await asyncio.gather(hurried, patient)
    assert short.statuses == [ERROR] * USER_FEATURES
    # Not the hurried owner's ERROR: the patient request fetched again under its own time.
    assert vector_values(h.plan("group", "user_profile"), long) == rec
    assert h.calls() == 2


@pytest.mark.parametrize(
    ("value", "cause"),
    [(b"not avro at all", "bad_marker"), (MARKER + b"\x01" * 8 + b"\x02", "unknown_schema"),
     (b"", "bad_marker")],
    ids=["bad-marker", "unknown-fingerprint", "empty"],
)
async def test_undecodable_value_is_error_for_that_entity_group_only(
    h: FetchHarness, value: bytes, cause: str
) -> None:
    await put_user_and_merchant(h, 1, now_ms())
    await put_user_and_merchant(h, 2, now_ms())
    await h.write_raw("user_profile", [1], value, now_ms())
    bad, good = await h.fetch("service", "user_merchant", [[1, 1], [2, 2]])
    assert bad.statuses == [ERROR] * USER_FEATURES + [PRESENT] * MERCHANT_FEATURES
    assert good.statuses == [PRESENT] * 44
    assert (
        sample(h, "fetcher_decode_errors_total", {"group": "user_profile", "cause": cause})
        == 1
    )
    # Not cached: the fixed row is served by the very next request.
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms())
    (fixed,) = await h.fetch("service", "user_merchant", [[1, 1]])
    assert fixed.statuses == [PRESENT] * 44


async def test_truncated_row_is_error(h: FetchHarness) -> None:
    good = h.snapshot.catalog.codecs["user_profile"].encode(record(h.group("user_profile"), 1))
    await h.write_raw("user_profile", [1], good[:-3], now_ms())
    (vector,) = await h.fetch("group", "user_profile", [[1]])
    assert vector.statuses == [ERROR] * USER_FEATURES


async def test_row_of_an_older_schema_reads_with_the_new_fields_default(
    h: FetchHarness,
) -> None:
    catalog = h.snapshot.catalog
    v1_text = (CONFIG_DIR / "groups" / "user_profile.v1.avsc").read_text()
    v1_fp = catalog.registry.register(json.loads(v1_text), "user_profile.v1.avsc")
    v1 = GroupCodec(catalog.registry, v1_fp)
    rec = record(h.group("user_profile"), 3)
    old_rec = {k: v for k, v in rec.items() if k != "referral_count"}
    await h.write("user_profile", [3], old_rec, now_ms(), codec=v1)
    (vector,) = await h.fetch("group", "user_profile", [[3]])
    assert vector.statuses == [PRESENT] * USER_FEATURES
    assert vector_values(h.plan("group", "user_profile"), vector) == old_rec | {"referral_count": 0}
