"""The checks every backend must pass, inherited by one Test* class per server.

Each test reads through the project's FeatureClient and checks every value of every
vector against the loaded rows (tests.e2e.truth); the asserts on `.state` say what
the case is about, so a checker that agreed with a wrong server could not pass.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Mapping
from typing import Any

from fetcher.client import FeatureClient, KeyInput, decode_vectors
from fetcher.demo._data import demo_cell_id
from fetcher.types import Status
from tests.e2e.conftest import E2EData
from tests.e2e.extras import DAY_MS, HOUR_MS, USER_STALE, USER_VERSIONS, version_times
from tests.e2e.truth import RowState

P, NF, OLD = RowState.PRESENT, RowState.NOT_FOUND, RowState.OUTSIDE_MAX_AGE


def now_ms() -> int:
    """Wall clock in epoch ms: the read time of a request without `at` (taken before it)."""
    return time.time_ns() // 1_000_000


def place_keys(i: int) -> dict[str, KeyInput]:
    """place_visits keys of demo place i."""
    return {"s2_cell_id": demo_cell_id(i % 64), "place_id": f"place-{i:05d}"}


def user_place_keys(user: int, place: int, cell_of: int | None = None) -> dict[str, KeyInput]:
    """user_place request keys; `cell_of` takes the cell of another place (a key mismatch)."""
    cell = demo_cell_id((place if cell_of is None else cell_of) % 64)
    return {"user_id": user, "cell_id": cell, "place_id": f"place-{place:05d}"}


def _states(outcomes: Mapping[str, Any]) -> tuple[RowState, ...]:
    return tuple(o.state for o in outcomes.values())


class CoreChecks:
    """GetFeatures / GetBatchFeatures for groups and services, point in time, missing, stale."""

    def test_group_reads(self, client: FeatureClient, e2e_data: E2EData) -> None:
        cases: list[tuple[str, dict[str, KeyInput], RowState]] = []
        for u, s in ((1, P), (10, P), (42, P), (9990, P), (9991, OLD), (10000, OLD), (10001, NF),
                     (USER_VERSIONS, P), (USER_STALE, OLD)):
            cases.append(("user_profile", {"user_id": u}, s))
        for m, s in ((1, P), (7, P), (990, P), (991, OLD), (1000, OLD), (1001, NF)):
            cases.append(("merchant_stats", {"merchant_id": m}, s))
        for i, s in ((1, P), (64, P), (1990, P), (1991, OLD), (2000, OLD), (2001, NF)):
            cases.append(("place_visits", place_keys(i), s))
        for group, keys, state in cases:
            read = now_ms()
            row = client.get(group=group, keys=keys)
            outcome = e2e_data.truth.check(row, keys, read, group=group)
            assert outcome[group].state is state, (group, keys)

    def test_user_merchant_single(self, client: FeatureClient, e2e_data: E2EData) -> None:
        for user, merchant, states in (
            (42, 7, (P, P)),
            (10, 10, (P, P)),
            (9991, 7, (OLD, P)),
            (10001, 1001, (NF, NF)),
            (USER_VERSIONS, 995, (P, OLD)),
            (USER_STALE, 1001, (OLD, NF)),
        ):
            keys: dict[str, KeyInput] = {"user_id": user, "merchant_id": merchant}
            read = now_ms()
            response = client.get_raw(keys=keys, service="user_merchant")
            assert list(response.metadata.groups) == ["user_profile", "merchant_stats"]
            row = decode_vectors(response.metadata, [response.vector])[0]
            outcome = e2e_data.truth.check(row, keys, read, service="user_merchant")
            assert _states(outcome) == states, keys

    def test_user_place_single_maps_cell_id(
        self, client: FeatureClient, e2e_data: E2EData
    ) -> None:
        listing = client.describe("user_place")
        assert [k.name for k in listing.services[0].keys] == ["user_id", "cell_id", "place_id"]
        for keys, states in (
            (user_place_keys(42, 5), (P, P)),
            (user_place_keys(20, 70), (P, P)),
            # Both key columns of the place matter: the right id in another cell is no row.
            (user_place_keys(42, 5, cell_of=6), (P, NF)),
            (user_place_keys(10001, 1991), (NF, OLD)),
        ):
            read = now_ms()
            row = client.get(service="user_place", keys=keys)
            assert next(iter(row)).startswith("user_") and "place_visits_1d" in row
            outcome = e2e_data.truth.check(row, keys, read, service="user_place")
            assert _states(outcome) == states, keys

    def test_batch_of_500_with_missing_and_duplicates(
        self, client: FeatureClient, e2e_data: E2EData
    ) -> None:
        rng = random.Random(500)
        users = [*range(1, 10003), USER_VERSIONS, USER_STALE]  # 10001, 10002 do not exist
        entities: list[dict[str, KeyInput]] = [
            {"user_id": u, "merchant_id": m}
            for u, m in ((10001, 1001), (9991, 991), (USER_VERSIONS, 1), (USER_STALE, 5),
                         (10, 10), (10002, 3), (42, 1002), (1, 1))
        ]
        entities += [
            {"user_id": rng.choice(users), "merchant_id": rng.randint(1, 1003)}
            for _ in range(462)
        ]
        entities += [dict(entities[i]) for i in (0, 4, 8, 13, 21, 34, 55, 89, 144, 233)] * 3
        rng.shuffle(entities)
        assert len(entities) == 500
        read = now_ms()
        response = client.get_batch_raw(entities, service="user_merchant")
        rows = decode_vectors(response.metadata, response.vectors)
        assert len(rows) == 500
        seen_states: set[RowState] = set()
        seen_statuses: set[Status] = set()
        for keys, row in zip(entities, rows, strict=True):
            outcome = e2e_data.truth.check(row, keys, read, service="user_merchant")
            seen_states.update(_states(outcome))
            seen_statuses.update(v.status for v in row.values())
        # The batch exercises every case, so a checker bug cannot hide behind one shape.
        assert seen_states == {P, NF, OLD}
        assert Status.NULL_VALUE in seen_statuses
        repeats = ({"user_id": 10001, "merchant_id": 1001}, {"user_id": 10, "merchant_id": 10})
        for repeated in repeats:
            dupes = [i for i, e in enumerate(entities) if e == repeated]
            assert len(dupes) >= 4, repeated
            assert all(response.vectors[i] == response.vectors[dupes[0]] for i in dupes)

    def test_point_in_time(self, client: FeatureClient, e2e_data: E2EData) -> None:
        truth, now = e2e_data.truth, e2e_data.now_ms
        t1, t2, t3 = version_times(now)
        user = "user_profile"

        def read(user_id: int, at: Any, read_ms: int) -> tuple[RowState, int]:
            keys: dict[str, KeyInput] = {"user_id": user_id}
            row = client.get(group=user, keys=keys, at=at)
            outcome = truth.check(row, keys, read_ms, group=user)[user]
            return outcome.state, outcome.event_ms

        older_user_10 = now - 3 * DAY_MS
        assert read(10, now - 2 * HOUR_MS, now - 2 * HOUR_MS) == (P, older_user_10)
        assert read(10, now - 4 * DAY_MS, now - 4 * DAY_MS) == (NF, 0)
        assert read(USER_VERSIONS, t1 - 1, t1 - 1) == (NF, 0)
        assert read(USER_VERSIONS, t1, t1) == (P, t1)
        assert read(USER_VERSIONS, t2 - 1, t2 - 1) == (P, t1)
        assert read(USER_VERSIONS, t2, t2) == (P, t2)
        # The same instant as an aware datetime: the client converts it to the exact ms.
        at_t2 = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=t2)
        assert read(USER_VERSIONS, at_t2, t2) == (P, t2)
        assert read(USER_VERSIONS, now - 30 * 60_000, now - 30 * 60_000) == (P, t2)
        assert read(USER_VERSIONS, None, now_ms()) == (P, t3)
        # Stale today, fresh as of two days ago.
        assert read(USER_STALE, None, now_ms()) == (OLD, now - 8 * DAY_MS)
        assert read(USER_STALE, now - 2 * DAY_MS, now - 2 * DAY_MS) == (P, now - 8 * DAY_MS)

        keys: dict[str, KeyInput] = {"user_id": 10, "merchant_id": 10}
        at = now - 2 * HOUR_MS
        row = client.get(service="user_merchant", keys=keys, at=at)
        outcome = truth.check(row, keys, at, service="user_merchant")
        assert outcome["user_profile"].event_ms == now - 3 * DAY_MS
        assert outcome["merchant_stats"].event_ms == now - DAY_MS

    def test_batch_with_per_entity_at(self, client: FeatureClient, e2e_data: E2EData) -> None:
        now = e2e_data.now_ms
        t1, t2, t3 = version_times(now)
        two_hours_ago = now - 2 * HOUR_MS
        plan: list[tuple[int, int, int | None, tuple[RowState, RowState]]] = [
            (10, 10, None, (P, P)),  # the request's `at`: both older versions
            (42, 7, None, (NF, NF)),  # newest versions are younger than the request's `at`
            (USER_VERSIONS, 10, t2, (P, P)),  # merchant 10's older version is 1 day old
            (USER_VERSIONS, 10, t2 - 1, (P, P)),
            (USER_VERSIONS, 10, t1 - 1, (NF, P)),
            (USER_STALE, 20, now - 2 * DAY_MS, (P, NF)),
            (10, 10, now - 4 * DAY_MS, (NF, NF)),
            (USER_VERSIONS, 7, now, (P, P)),
        ]
        entities: list[dict[str, KeyInput]] = [
            {"user_id": u, "merchant_id": m} for u, m, _, _ in plan
        ]
        entity_at = [at for _, _, at, _ in plan]
        for request_at in (two_hours_ago, None):
            read = now_ms()
            rows = client.get_batch(
                entities, service="user_merchant", at=request_at, entity_at=entity_at
            )
            for (_, _, at, states), keys, row in zip(plan, entities, rows, strict=True):
                effective = at if at is not None else request_at
                outcome = e2e_data.truth.check(
                    row, keys, read if effective is None else effective, service="user_merchant"
                )
                if request_at is not None:
                    assert _states(outcome) == states, (keys, at)
                elif at is None:
                    assert _states(outcome) == (P, P), keys
        # The per-entity times picked the versions they name.
        rows = client.get_batch(entities[2:5], service="user_merchant", entity_at=entity_at[2:5])
        assert [r["user_age"].event_ms for r in rows] == [t2, t1, 0]
        assert t3 > t2

    def test_missing_and_stale_entities(self, client: FeatureClient, e2e_data: E2EData) -> None:
        missing = client.get(group="user_profile", keys={"user_id": 10001})
        assert {v.status for v in missing.values()} == {Status.NOT_FOUND}
        assert {v.event_ms for v in missing.values()} == {0}
        stale = client.get(group="merchant_stats", keys={"merchant_id": 995})
        assert {v.status for v in stale.values()} == {Status.OUTSIDE_MAX_AGE}
        # The stale row's event time is reported: merchants 991-1000 are max age + 1 day old.
        stale_ms = e2e_data.now_ms - 2 * DAY_MS - DAY_MS
        assert {v.event_ms for v in stale.values()} == {stale_ms}
        read = now_ms()
        e2e_data.truth.check(missing, {"user_id": 10001}, read, group="user_profile")
        e2e_data.truth.check(stale, {"merchant_id": 995}, read, group="merchant_stats")

