"""Plans, row shaping and merging, on hand-built groups (no catalog files, no stores)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from fetcher.api import VectorView, encode_values
from fetcher.engine._merge import merge_vector
from fetcher.engine._plan import PlanError, build_plans
from fetcher.engine._rows import (
    SLOT_BOOL,
    SLOT_DOUBLE,
    SLOT_INT64,
    SLOT_LIST,
    SLOT_STRING,
    RowShape,
)
from fetcher.types import (
    Feature,
    FeatureGroup,
    FeatureService,
    FeatureType,
    Join,
    KeyColumn,
    KeyType,
    Status,
)
from fetcher.v1 import feature_service_pb2 as pb


class _Codec:
    fingerprint = b"\x01" * 8

    def decode(self, data: bytes) -> dict[str, Any]:
        raise AssertionError("not used")

    def double_layout(self) -> None:
        return None


def _group(
    name: str,
    keys: tuple[KeyColumn, ...],
    features: tuple[Feature, ...],
    max_age_s: int | None = None,
) -> FeatureGroup:
    return FeatureGroup(
        name=name,
        store="main",
        dataset=name,
        keys=keys,
        features=features,
        max_age_s=max_age_s,
        online=True,
        schema=None,
    )


USER = _group(
    "user",
    (KeyColumn("user_id", KeyType.INT64),),
    (
        Feature("age", FeatureType.INT64),
        Feature("score", FeatureType.DOUBLE, nullable=True),
        Feature("country", FeatureType.STRING),
        Feature("tags", FeatureType.STRING_LIST),
        Feature("active", FeatureType.BOOL),
        Feature("spend", FeatureType.DOUBLE),
    ),
    max_age_s=60,
)
PLACE = _group(
    "place",
    (KeyColumn("s2_cell_id", KeyType.INT64), KeyColumn("place_id", KeyType.STRING)),
    (Feature("visits", FeatureType.INT64),),
)


def _plans(services: dict[str, FeatureService]) -> Any:
    groups = {"user": USER, "place": PLACE}
    return build_plans(groups, services, {name: _Codec() for name in groups}, encode_values)


def test_row_shape_splits_by_type_and_marks_nulls() -> None:
    shape = RowShape(USER.features, encode_values)
    row = shape.to_row(
        {"age": 31, "score": None, "country": "FR", "tags": ["a"], "active": True, "spend": 2.5},
        1000,
    )
    # A row is its group's FeatureVector in wire form: read it back as the client would.
    vector = VectorView(row.wire)
    assert vector.values[SLOT_INT64] == [31]
    assert vector.values[SLOT_DOUBLE] == [0.0, 2.5]  # null score -> zero placeholder
    assert vector.values[SLOT_STRING] == ["FR"]
    assert vector.values[SLOT_LIST] == [["a"]]
    assert vector.values[SLOT_BOOL] == [True]
    assert vector.statuses == [1, int(Status.NULL_VALUE), 1, 1, 1, 1]
    assert vector.event_ms == [1000]
    assert row.event_ms == 1000


def test_row_shape_refuses_a_value_of_the_wrong_type() -> None:
    shape = RowShape(USER.features, encode_values)
    record = {"age": 31, "score": "high", "country": "FR", "tags": [], "active": True, "spend": 2.5}
    with pytest.raises(struct.error):
        shape.to_row(record, 1000)
    with pytest.raises(TypeError):
        shape.to_row({**record, "score": 1.0, "age": "old"}, 1000)


def test_service_plan_maps_keys_and_prefixes_names() -> None:
    service = FeatureService(
        "svc",
        (
            Join("user", key_mapping=(("buyer", "user_id"),), prefix="buyer_"),
            Join("place", prefix="p_"),
            Join("user", key_mapping=(("seller", "user_id"),), prefix="seller_"),
        ),
    )
    plan = _plans({"svc": service}).services["svc"]
    assert [k.name for k in plan.request_keys] == ["buyer", "s2_cell_id", "place_id", "seller"]
    assert plan.feature_names[0] == "buyer_age"
    assert plan.feature_names[6] == "p_visits"
    assert plan.feature_names[7] == "seller_age"
    assert plan.feature_joins == (0,) * 6 + (1,) + (2,) * 6
    keys = plan.entity_keys([7, 99, "cafe", 8])
    assert keys[0] == (7).to_bytes(8, "big", signed=True)
    assert keys[1] == (99).to_bytes(8, "big") + (4).to_bytes(4, "big") + b"cafe"
    assert keys[2] == (8).to_bytes(8, "big")


def test_plan_refuses_one_request_key_for_two_types() -> None:
    service = FeatureService(
        "bad", (Join("user"), Join("place", key_mapping=(("user_id", "place_id"),)))
    )
    with pytest.raises(PlanError):
        _plans({"bad": service})


def test_merge_concatenates_rows_and_applies_statuses() -> None:
    service = FeatureService("svc", (Join("user", prefix="u_"), Join("place")))
    plan = _plans({"svc": service}).services["svc"]
    user_row = plan.joins[0].shape.to_row(
        {"age": 40, "score": 1.5, "country": "DE", "tags": [], "active": False, "spend": 3.0},
        10_000,
    )
    vector = VectorView(merge_vector(plan, [user_row, int(Status.ERROR)], read_ms=20_000).wire)
    assert vector.statuses == [1] * 6 + [int(Status.ERROR)]
    assert vector.values[SLOT_INT64] == [40, 0]  # ERROR group holds a zero in its slot
    assert vector.values[SLOT_DOUBLE] == [1.5, 3.0]
    assert vector.event_ms == [10_000, 0]


def test_merge_marks_rows_past_max_age() -> None:
    plan = _plans({}).groups["user"]
    row = plan.joins[0].shape.to_row(
        {"age": 40, "score": 1.5, "country": "DE", "tags": ["x"], "active": True, "spend": 3.0},
        1_000,
    )
    fresh = VectorView(merge_vector(plan, [row], read_ms=1_000 + 60_000).wire)
    assert fresh.statuses == [1] * 6
    stale = VectorView(merge_vector(plan, [row], read_ms=1_000 + 60_001).wire)
    assert stale.statuses == [int(Status.OUTSIDE_MAX_AGE)] * 6
    assert stale.values[SLOT_INT64] == [0]  # stale values are not served
    assert stale.event_ms == [1_000]  # but the row's event time is reported
    missing = VectorView(merge_vector(plan, [int(Status.NOT_FOUND)], read_ms=5).wire)
    assert missing.statuses == [int(Status.NOT_FOUND)] * 6
    assert missing.values[SLOT_LIST] == [[]]
    assert missing.event_ms == [0]


def test_merged_rows_parse_as_one_vector_with_negative_and_large_values() -> None:
    plan = _plans({}).groups["user"]
    record = {
        "age": -(2**63),
        "score": -1.5e300,
        "country": "Ünïcode",
        "tags": ["a", "b"],
        "active": False,
        "spend": 2.0**-1074,
    }
    row = plan.joins[0].shape.to_row(record, -5)
    wire = merge_vector(plan, [row], read_ms=-5).wire
    assert VectorView(wire).event_ms == [-5]
    message = pb.FeatureVector.FromString(wire)
    assert list(message.int64_values) == [-(2**63)]
    assert list(message.double_values) == [-1.5e300, 2.0**-1074]
    assert list(message.string_values) == ["Ünïcode"]
    assert list(message.list_values[0].string_values) == ["a", "b"]
    assert list(message.bool_values) == [False]
