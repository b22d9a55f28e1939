"""merge.merge_wires (the engine's join-by-join merge) gives exactly merge_vector's bytes,
and plans know when every join builds the same store key."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.api import encode_values
from fetcher.engine._merge import LookupResult, merge_vector, merge_wires
from fetcher.engine._plan import build_plans
from fetcher.types import Feature, FeatureService, FeatureType, Join, KeyColumn, KeyType, Status
from tests.unit.engine.test_plan_merge import PLACE, USER, _Codec, _group

# Same key as USER (one int64 column), no max age: a service over both shares its key.
USER_DOUBLES = _group(
    "user_doubles", (KeyColumn("user_id", KeyType.INT64),),
    (Feature("a", FeatureType.DOUBLE), Feature("b", FeatureType.DOUBLE)),
)  # fmt: skip
GROUPS = {"user": USER, "place": PLACE, "user_doubles": USER_DOUBLES}
SERVICES = {
    "user_place": FeatureService("user_place", (Join("user", prefix="u_"), Join("place"))),
    "users": FeatureService("users", (Join("user_doubles"), Join("user", prefix="u_"))),
}
PLANS = build_plans(GROUPS, SERVICES, {name: _Codec() for name in GROUPS}, encode_values)
TARGETS = [*PLANS.groups.values(), *PLANS.services.values()]
STATUSES = [int(Status.NOT_FOUND), int(Status.ERROR), Status.NOT_FOUND]
NOW_MS = 1_764_000_000_000


def _record(group: str, n: int) -> dict[str, Any]:
    if group == "user":
        return {"age": n, "score": None if n % 3 == 0 else n / 4, "country": "DE",
                "tags": [str(n)] * (n % 3), "active": n % 2 == 0, "spend": n / 8}
    if group == "place":
        return {"visits": n}
    return {"a": n / 2, "b": -n / 2}


@st.composite
def _case(draw: Any) -> tuple[Any, list[list[LookupResult]], list[int | None]]:
    plan = draw(st.sampled_from(TARGETS))
    count = draw(st.integers(1, 6))
    at_ms = draw(st.lists(
        st.one_of(st.none(), st.integers(NOW_MS - 200_000, NOW_MS)), min_size=count,
        max_size=count,
    ))  # fmt: skip
    columns: list[list[LookupResult]] = []
    for join in plan.joins:
        column: list[LookupResult] = []
        for _ in range(count):
            if draw(st.booleans()):
                column.append(draw(st.sampled_from(STATUSES)))
            else:
                # Event times around the max age of `user` (60 s) before the read time.
                event_ms = NOW_MS - draw(st.integers(-1_000, 200_000))
                record = _record(join.group.name, draw(st.integers(0, 50)))
                column.append(join.shape.to_row(record, event_ms))
        columns.append(column)
    return plan, columns, at_ms


@settings(max_examples=300, deadline=None)
@given(_case())
def test_merge_wires_equals_merge_vector(
    case: tuple[Any, list[list[LookupResult]], list[int | None]],
) -> None:
    plan, columns, at_ms = case
    expected = [
        merge_vector(
            plan, [column[i] for column in columns], NOW_MS if at is None else at
        ).wire
        for i, at in enumerate(at_ms)
    ]
    assert merge_wires(plan, columns, at_ms, NOW_MS) == expected


def test_shared_key_only_when_every_join_builds_the_same_key() -> None:
    assert PLANS.groups["user"].shared_key is PLANS.groups["user"].joins[0].entity_key
    assert PLANS.services["users"].shared_key is not None
    users = PLANS.services["users"]
    assert {users.shared_key([7])} == {join.entity_key([7]) for join in users.joins}
    # user_id vs (s2_cell_id, place_id): different keys, each join builds its own.
    assert PLANS.services["user_place"].shared_key is None
