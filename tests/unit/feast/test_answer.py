"""Feast answers built column by column (fetcher.feast._answer) against the obvious cell by
cell construction of the same answer from the same vectors: every served type, every
status, nulls, stale and missing rows, several event times (hypothesis)."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.api import encode_values
from fetcher.engine._merge import merge_wires
from fetcher.feast import FIELD_STATUS, FeastReader, FeastSnapshot, load_feast_repo
from fetcher.feast._answer import _native_encoder, _natives
from fetcher.feast.proto.core import registry_pb2 as r
from fetcher.feast.proto.core.entity_pb2 import Entity, EntitySpecV2
from fetcher.feast.proto.core.feature_pb2 import FeatureSpecV2
from fetcher.feast.proto.core.feature_service_pb2 import FeatureService, FeatureServiceSpec
from fetcher.feast.proto.core.feature_view_pb2 import FeatureView, FeatureViewSpec
from fetcher.feast.proto.core.feature_view_projection_pb2 import FeatureViewProjection
from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.feast.proto.types import value_pb2 as v
from fetcher.feast.proto.types.value_pb2 import ValueType as VT
from fetcher.types import FeatureType, Status
from fetcher.v1 import feature_service_pb2 as fpb

# Two views of one entity: every served type, and a view of doubles (a fixed layout).
MIXED = {"i32": VT.INT32, "i64": VT.INT64, "f32": VT.FLOAT, "f64": VT.DOUBLE,
         "s": VT.STRING, "b": VT.BYTES, "ok": VT.BOOL, "ts": VT.UNIX_TIMESTAMP,
         "i32s": VT.INT32_LIST, "i64s": VT.INT64_LIST, "f32s": VT.FLOAT_LIST,
         "f64s": VT.DOUBLE_LIST, "ss": VT.STRING_LIST, "bs": VT.BYTES_LIST,
         "oks": VT.BOOL_LIST, "tss": VT.UNIX_TIMESTAMP_LIST}  # fmt: skip
DOUBLES = {"d0": VT.DOUBLE, "d1": VT.DOUBLE, "d2": VT.FLOAT}
FLOATS = st.floats(width=32)
VALUES: dict[FeatureType, Any] = {
    FeatureType.DOUBLE: st.floats(),
    FeatureType.INT64: st.integers(-(2**31), 2**31 - 1),
    FeatureType.STRING: st.text(max_size=4),
    FeatureType.BOOL: st.booleans(),
    FeatureType.BYTES: st.binary(max_size=4),
    FeatureType.DOUBLE_LIST: st.lists(FLOATS, max_size=3),
    FeatureType.INT64_LIST: st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3),
    FeatureType.STRING_LIST: st.lists(st.text(max_size=3), max_size=3),
    FeatureType.BOOL_LIST: st.lists(st.booleans(), max_size=3),
    FeatureType.BYTES_LIST: st.lists(st.binary(max_size=3), max_size=3),
}
# Feast's float members hold float32s: a double that does not fit one cannot be answered.
FLOAT_TYPES = {VT.FLOAT, VT.FLOAT_LIST}
TIMES = st.sampled_from([0, 1_700_000_000_000, 1_700_000_000_123, 1_764_000_000_999])


def _view(name: str, features: dict[str, int]) -> FeatureView:
    return FeatureView(spec=FeatureViewSpec(
        name=name, entities=["user"], project="p", online=True,
        features=[FeatureSpecV2(name=f, value_type=t) for f, t in features.items()]))


def _snapshot(tmp: Path) -> FeastSnapshot:
    registry = r.Registry(
        entities=[Entity(spec=EntitySpecV2(name="user", join_key="user_id",
                                           value_type=VT.INT64, project="p"))],
        feature_views=[_view("mixed", MIXED), _view("doubles", DOUBLES)],
        feature_services=[FeatureService(spec=FeatureServiceSpec(
            name="both", project="p", features=[
                FeatureViewProjection(feature_view_name="mixed"),
                FeatureViewProjection(feature_view_name="doubles", feature_columns=[
                    FeatureSpecV2(name="d2"), FeatureSpecV2(name="d0")])]))],
    )  # fmt: skip
    registry.feature_views[1].spec.ttl.seconds = 60
    (tmp / "registry.db").write_bytes(registry.SerializeToString())
    (tmp / "feature_store.yaml").write_text(
        "project: p\nregistry: registry.db\nonline_store:\n  type: redis\n")
    catalog = load_feast_repo(tmp / "feature_store.yaml")
    return FeastSnapshot(catalog, catalog.plans(encode_values))


class _Engine:
    """fetch_wires answering the vectors a test drew."""

    def __init__(self, wires: list[list[bytes]]) -> None:
        self.wires = wires

    async def fetch_wires(self, plan: Any, entities: Any, ats: Any, deadline: Any) -> list[bytes]:
        return self.wires.pop(0)


@st.composite
def vectors(draw: Any, plan: Any, count: int) -> list[bytes]:
    """`count` vectors of `plan`: per join a row (values or nulls), missing, failed or stale."""
    columns = []
    for join in plan.joins:
        shape = join.shape
        floats = {f for f, t in {**MIXED, **DOUBLES}.items() if t in FLOAT_TYPES}
        column: list[Any] = []
        for _ in range(count):
            kind = draw(st.sampled_from(["row", "row", "row", "missing", "error"]))
            if kind == "missing":
                column.append(int(Status.NOT_FOUND))
            elif kind == "error":
                column.append(int(Status.ERROR))
            else:
                record = {}
                for feature in shape.features:
                    name = feature.name.split("__")[-1]
                    values = VALUES[feature.type]
                    if name in floats:
                        values = FLOATS if feature.type is FeatureType.DOUBLE else values
                    record[feature.name] = draw(st.one_of(st.none(), values))
                column.append(shape.to_row(record, draw(TIMES)))
        columns.append(column)
    # Read at a time past the doubles view's 60 s TTL for the rows of some times.
    return merge_wires(plan, columns, [None] * count, 1_700_000_030_000)


def _json_time(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


def _cells(read: Any, wires: list[bytes]) -> list[tuple[Any, list[tuple[int, Any, int]]]]:
    """Per column of `read`: (column, [(our status, value or None, event ms) per entity])."""
    vectors = [fpb.FeatureVector.FromString(w) for w in wires]
    slot_fields = ("double_values", "int64_values", "string_values", "bool_values",
                   "bytes_values", "list_values")
    out = []
    for column in read.columns:
        cells = []
        for vector in vectors:
            status = vector.statuses[column.feature]
            value = getattr(vector, slot_fields[column.slot])[column.position]
            if column.items is not None:
                value = list(getattr(value, column.items))
            present = status == Status.PRESENT
            ms = vector.event_timestamps_ms[column.join]
            cells.append((status, value if present else None, ms))
        out.append((column, cells))
    return out


def _expected_wire(
    request: Any, resolved: Any, wires: list[list[bytes]]
) -> sv.GetOnlineFeaturesResponse:
    """The answer built with protobuf's own messages, cell by cell."""
    names = ["user_id", *resolved.names]
    out = sv.GetOnlineFeaturesResponse()
    out.metadata.feature_names.val.extend(names)
    users = request.entities["user_id"].val
    key = out.results.add()
    key.values.extend(users)
    key.statuses.extend([sv.PRESENT] * len(users))
    for _ in users:
        key.event_timestamps.add()
    types = {**MIXED, **DOUBLES}
    for read, read_wires in zip(resolved.reads, wires, strict=True):
        for column, cells in _cells(read, read_wires):
            value_type = types[column.name.split("__")[-1]]
            vector = out.results.add()
            for status, value, ms in cells:
                vector.statuses.append(FIELD_STATUS.get(Status(status), sv.INVALID))
                stamp = vector.event_timestamps.add()
                stamp.seconds, millis = divmod(ms, 1000)
                stamp.nanos = millis * 1_000_000
                cell = vector.values.add()
                if value is not None:
                    member = VT.Enum.Name(value_type).lower() + "_val"  # type: ignore[attr-defined]
                    if member.endswith("_list_val"):
                        getattr(cell, member).val.extend(value)
                    else:
                        setattr(cell, member, value)
    return out


def _expected_json(request: Any, resolved: Any, wires: list[list[bytes]]) -> dict[str, Any]:
    users = [u.int64_val for u in request.entities["user_id"].val]
    results: list[dict[str, Any]] = [{
        "values": users, "statuses": ["PRESENT"] * len(users),
        "event_timestamps": ["1970-01-01T00:00:00Z"] * len(users)}]
    types = {**MIXED, **DOUBLES}
    for read, read_wires in zip(resolved.reads, wires, strict=True):
        for column, cells in _cells(read, read_wires):
            native = _native_encoder(types[column.name.split("__")[-1]]) or (lambda x: x)
            results.append({
                "values": [None if value is None else native(value) for _, value, _ in cells],
                "statuses": [sv.FieldStatus.Name(FIELD_STATUS.get(Status(s), sv.INVALID))
                             for s, _, _ in cells],
                "event_timestamps": [_json_time(ms) for _, _, ms in cells],
            })
    return {"metadata": {"feature_names": ["user_id", *resolved.names]}, "results": results}


def _same_json(value: Any) -> Any:
    """JSON values compared bit for bit (NaN equals NaN)."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, list):
        return [_same_json(item) for item in value]
    if isinstance(value, dict):
        return {k: _same_json(item) for k, item in value.items()}
    return value


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_answers_equal_the_cell_by_cell_answer(tmp_path: Path, data: Any) -> None:
    snapshot = _snapshot(tmp_path)
    by_service = data.draw(st.booleans())
    request = sv.GetOnlineFeaturesRequest(full_feature_names=data.draw(st.booleans()))
    if by_service:
        request.feature_service = "both"
    else:
        refs = data.draw(st.lists(st.sampled_from(
            [f"mixed:{f}" for f in MIXED] + [f"doubles:{f}" for f in DOUBLES]),
            min_size=1, max_size=8, unique=True))
        request.features.val.extend(refs)
    count = data.draw(st.integers(1, 12))
    request.entities["user_id"].val.extend(v.Value(int64_val=1000 + i) for i in range(count))
    resolved = snapshot.resolve(request)
    wires = [data.draw(vectors(read.plan, count)) for read in resolved.reads]
    reader = FeastReader(lambda: snapshot, _Engine(list(wires)), max_rows=100)  # type: ignore[arg-type]
    answer = asyncio.run(reader.read(request, resolved, None))
    got = sv.GetOnlineFeaturesResponse.FromString(answer.wire())
    assert got == _expected_wire(request, resolved, wires)
    assert _same_json(answer.json()) == _same_json(_expected_json(request, resolved, wires))


def test_json_forms() -> None:
    # A column without None: finite doubles as they are, the others as Feast writes them.
    assert _natives(VT.DOUBLE)([1.5, -0.0]) == [1.5, -0.0]
    assert _natives(VT.FLOAT)([1.5, math.nan, -math.inf]) == [1.5, "NaN", "-Infinity"]
    assert _natives(VT.DOUBLE)([None, math.inf]) == [None, "Infinity"]
    assert _native_encoder(VT.BYTES)(b"\x00") == base64.b64encode(b"\x00").decode()  # type: ignore[misc]
    assert _native_encoder(VT.DOUBLE)(math.nan) == "NaN"  # type: ignore[misc]
    assert _native_encoder(VT.INT64) is None
