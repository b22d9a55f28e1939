"""Derived features in the engine: compiled once per snapshot, evaluated over the merged
vectors of a batch, appended after the joins' features with their own event time; inputs
that are missing, stale or ERROR, runtime errors per entity, and a failing evaluation."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fetcher.api import VectorView
from fetcher.engine import PlanError
from fetcher.engine._derive import DerivedPlan
from fetcher.types import Derivation, FeatureType, Status
from fetcher.v1 import feature_service_pb2 as pb
from kvstores import StoreError
from tests.unit.derive_support import (
    CONTEXT,
    DERIVATIONS,
    NAMES,
    derived_snapshot,
    expected,
)
from tests.unit.fetch_support import (
    DAY_MS,
    MINUTE_MS,
    FetchHarness,
    now_ms,
    record,
    vector_values,
)

USER_FEATURES = MERCHANT_FEATURES = 22
JOINED = USER_FEATURES + MERCHANT_FEATURES


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[FetchHarness]:
    harness = FetchHarness(tmp_path, derived_snapshot())
    yield harness
    await harness.close()


def served(h: FetchHarness, view: VectorView) -> dict[str, tuple[Status, Any]]:
    """The derived features of a vector: name -> (status, value; None unless PRESENT)."""
    plan = h.plan("service", "user_merchant")
    values = vector_values(plan, view)
    statuses = dict(zip(plan.feature_names, view.statuses, strict=True))
    return {
        name: (Status(statuses[name]),
               values[name] if statuses[name] == Status.PRESENT else None)
        for name in NAMES
    }


async def fetch(h: FetchHarness, entities: Sequence[Sequence[Any]],
                contexts: Sequence[Sequence[Any]] | None,
                at: Sequence[int | None] | None = None) -> list[VectorView]:
    plan = h.plan("service", "user_merchant")
    ats = list(at) if at is not None else [None] * len(entities)
    vectors = await h.engine.fetch(plan, entities, ats, None, contexts)
    return [VectorView(v.wire) for v in vectors]


def test_the_plan_appends_derived_features_in_declaration_order(h: FetchHarness) -> None:
    plan = h.plan("service", "user_merchant")
    assert plan.feature_names[JOINED:] == NAMES
    assert plan.feature_types[JOINED:] == tuple(d.type for d in DERIVATIONS)
    assert plan.feature_joins[JOINED:] == (2,) * len(NAMES)
    assert plan.groups == ("user_profile", "merchant_stats", "user_merchant")
    assert all(f.nullable for f in plan.features[JOINED:])
    assert plan.context == CONTEXT
    # Targets without derivations keep their shape.
    assert h.plan("service", "user_place").derived is None
    assert h.plan("service", "user_place").groups == ("user_profile", "place_visits")
    assert h.plan("group", "user_profile").context == ()


async def test_values_and_statuses_of_present_and_missing_inputs(h: FetchHarness) -> None:
    t = now_ms() - MINUTE_MS
    user, merchant = record(h.group("user_profile"), 1), record(h.group("merchant_stats"), 2)
    user["loyalty_tier"] = None  # a null input: coalesce takes the channel
    await h.write("user_profile", [1], user, t - 5)
    await h.write("merchant_stats", [2], merchant, t)
    entities = [[1, 2], [9, 2], [1, 9], [9, 9]]  # 9: no row
    contexts = [[120.0, "web"], [7.5, "app"], [0.0, "web"], [1e9, "x"]]
    rows = {1: user, 9: None}
    mrows = {2: merchant, 9: None}
    for view, (u, m), (amount, channel) in zip(
            await fetch(h, entities, contexts), entities, contexts, strict=True):
        assert served(h, view) == expected(rows[u], mrows[m], amount, channel), (u, m)
    # One entity (GetFeatures' path) gives the same as in a batch.
    (single,) = await fetch(h, [[1, 2]], [[120.0, "web"]])
    assert served(h, single) == expected(user, merchant, 120.0, "web")


async def test_every_type_is_encoded_as_protobuf_reads_it(h: FetchHarness) -> None:
    t = now_ms() - MINUTE_MS
    user, merchant = record(h.group("user_profile"), 3), record(h.group("merchant_stats"), 4)
    merchant["hourly_orders_24h"] = [-(2**63), 2**63 - 1, 0, -1]
    merchant["logo_hash"] = b"\x00\xff"
    merchant["tags"] = []
    await h.write("user_profile", [3], user, t)
    await h.write("merchant_stats", [4], merchant, t)
    (view,) = await fetch(h, [[3, 4]], [[-2.5, "web"]])
    got = served(h, view)
    assert got == expected(user, merchant, -2.5, "web")
    assert got["hours"] == (Status.PRESENT, [-(2**63), 2**63 - 1, 0, -1])
    assert got["tags"] == (Status.PRESENT, [])
    assert got["orders_gap"][1] < 0  # a negative int64, packed as ten bytes
    # The hand-written row parses to exactly what protobuf itself writes for those values.
    message = view.message
    canonical = pb.FeatureVector.FromString(pb.FeatureVector(
        statuses=message.statuses, double_values=message.double_values,
        int64_values=message.int64_values, string_values=message.string_values,
        bool_values=message.bool_values, bytes_values=message.bytes_values,
        list_values=message.list_values, event_timestamps_ms=message.event_timestamps_ms,
    ).SerializeToString())
    assert canonical == message


async def test_stale_and_failed_groups_are_null_and_error_inputs(h: FetchHarness) -> None:
    old = now_ms() - 30 * DAY_MS  # past user_profile's 7-day max age
    user, merchant = record(h.group("user_profile"), 5), record(h.group("merchant_stats"), 6)
    await h.write("user_profile", [5], user, old)
    await h.write("merchant_stats", [6], merchant, now_ms() - MINUTE_MS)
    (view,) = await fetch(h, [[5, 6]], [[10.0, "web"]])
    assert view.statuses[0] == Status.OUTSIDE_MAX_AGE
    assert served(h, view) == expected(None, merchant, 10.0, "web")
    assert view.event_ms[2] == max(view.event_ms[:2])  # a stale row keeps its event time
    # The store fails: every feature read from it is ERROR, and so is each derivation that
    # uses one of them; the derivations of request-time values alone are served.
    h.stores["main"].error = StoreError("down")
    (view,) = await fetch(h, [[7, 8]], [[10.0, "web"]])
    got = served(h, view)
    assert got["per_amount"] == (Status.PRESENT, 10.0)
    assert got["is_web"] == (Status.PRESENT, True)
    failed = set(NAMES) - {"per_amount", "is_web"}
    assert {name: got[name][0] for name in failed} == dict.fromkeys(failed, Status.ERROR)


async def test_a_runtime_error_is_error_in_its_entity_only(h: FetchHarness) -> None:
    contexts = [[5.0, "a"], [0.0, "a"], [-4.0, "a"], [math.nan, "a"], [math.inf, "a"]]
    views = await fetch(h, [[1, 2]] * 5, contexts)
    assert [served(h, v)["per_amount"] for v in views] == [
        (Status.PRESENT, 20.0), (Status.ERROR, None), (Status.PRESENT, -25.0),
        (Status.ERROR, None), (Status.ERROR, None)]  # a NaN or infinite input is ERROR
    assert {served(h, v)["is_web"] for v in views} == {(Status.PRESENT, False)}


async def test_the_derived_event_time_is_the_newest_read_join(h: FetchHarness) -> None:
    t = now_ms() - 10 * MINUTE_MS
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), t)
    await h.write("merchant_stats", [2], record(h.group("merchant_stats"), 2), t + 7)
    views = await fetch(h, [[1, 2], [1, 9], [9, 9]], [[1.0, "a"]] * 3)
    assert [v.event_ms for v in views] == [[t, t + 7, t + 7], [t, 0, t], [0, 0, 0]]
    # Derivations over one join (or none) take that join's time (or 0).
    only_user = derived_snapshot(derivations=(
        Derivation("age2", "user_age * 2", FeatureType.INT64),
        Derivation("twice", "amount * 2", FeatureType.DOUBLE)))
    h.snapshot = only_user
    views = await fetch(h, [[1, 2]], [[1.0, "a"]])
    assert views[0].event_ms == [t, t + 7, t]
    h.snapshot = derived_snapshot(derivations=(
        Derivation("twice", "amount * 2", FeatureType.DOUBLE),))
    views = await fetch(h, [[1, 2]], [[1.0, "a"]])
    assert views[0].event_ms == [t, t + 7, 0]


async def test_derived_rows_are_never_cached(h: FetchHarness) -> None:
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms() - 1000)
    first = await fetch(h, [[1, 2]], [[3.0, "web"]])
    again = await fetch(h, [[1, 2]], [[6.0, "app"]])  # the rows come from L1 now
    assert served(h, first[0])["per_amount"] == (Status.PRESENT, 100.0 / 3.0)
    assert served(h, again[0])["per_amount"] == (Status.PRESENT, 100.0 / 6.0)
    assert served(h, again[0])["is_web"] == (Status.PRESENT, False)


async def test_a_failing_evaluation_makes_the_batch_error_not_the_call(
        h: FetchHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    t = now_ms() - MINUTE_MS
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), t)

    def broken(self: DerivedPlan, *args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(DerivedPlan, "evaluate", broken)
    views = await fetch(h, [[1, 2], [1, 3]], [[1.0, "a"]] * 2)
    for view in views:
        assert view.statuses[:USER_FEATURES] == [Status.PRESENT] * USER_FEATURES
        assert view.statuses[JOINED:] == [Status.ERROR] * len(NAMES)
        assert view.event_ms == [t, 0, t]
    # Zero values in every slot, so the vector still reads.
    assert set(served(h, views[0]).values()) == {(Status.ERROR, None)}
    errors = h.metrics.decode_errors.labels("user_merchant", "derivations")._value.get()
    assert errors == 1
    # Without the request-time values the derivations read, the same.
    monkeypatch.undo()
    (view,) = await fetch(h, [[1, 2]], None)
    assert set(served(h, view).values()) == {(Status.ERROR, None)}


def test_a_snapshot_whose_derivations_do_not_compile_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="user_merchant"):
        derived_snapshot(derivations=(Derivation("x", "nope + 1", FeatureType.INT64),))


async def test_groups_and_services_without_derivations_serve_as_before(
        h: FetchHarness) -> None:
    await h.write("user_profile", [1], record(h.group("user_profile"), 1), now_ms() - 1000)
    vectors = await h.engine.fetch(h.plan("group", "user_profile"), [[1]], [None])
    view = VectorView(vectors[0].wire)
    assert view.statuses == [Status.PRESENT] * USER_FEATURES
    assert len(view.event_ms) == 1
