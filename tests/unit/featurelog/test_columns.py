"""Vector wire bytes -> Arrow columns: every value, status and event time compared with
protobuf's own decoding of the same bytes (hypothesis), malformed vectors dropped alone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.featurelog import LogRow, log_schema, record_batch
from fetcher.featurelog._columns import _varint_array
from fetcher.types import Status
from fetcher.v1 import feature_service_pb2 as pb

# One feature of every type, over two joins (the last feature has no join's event time).
FEATURES = [("d", "double", 0), ("i", "int64", 0), ("s", "string", 1), ("b", "bool", 1),
            ("y", "bytes", 0), ("dl", "double_list", 1), ("il", "int64_list", 0),
            ("sl", "string_list", 1), ("bl", "bool_list", None), ("d2", "double", 1),
            ("i2", "int64", 1)]
DESCRIPTOR = {
    "log_format": 1, "service": "svc",
    "keys": [{"name": "user_id", "type": "int64"}, {"name": "place", "type": "string"}],
    "context": [{"name": "amount", "type": "double"}],
    "joins": [{"group": "g", "prefix": "", "event_time_field": "g"},
              {"group": "h", "prefix": "h_", "event_time_field": "h"}],
    "features": [{"name": n, "type": t, "join": j} for n, t, j in FEATURES],
}
SCHEMA = log_schema(DESCRIPTOR)
INT64 = st.integers(-(2**63), 2**63 - 1)
DOUBLE = st.floats(allow_nan=False)
LIST_FIELD = {"double_list": ("double_values", DOUBLE), "int64_list": ("int64_values", INT64),
              "string_list": ("string_values", st.text(max_size=5)),
              "bool_list": ("bool_values", st.booleans())}


@st.composite
def vectors(draw: Any) -> dict[str, Any]:
    """A vector of SCHEMA: per feature a status and a value (zero when not PRESENT)."""
    out: dict[str, Any] = {"statuses": [], "values": {}, "event": []}
    for name, kind, _ in FEATURES:
        status = draw(st.sampled_from(list(Status)))
        out["statuses"].append(int(status))
        if kind in LIST_FIELD:
            value = draw(st.lists(LIST_FIELD[kind][1], max_size=4))
        else:
            value = draw({"double": DOUBLE, "int64": INT64, "string": st.text(max_size=8),
                          "bool": st.booleans(), "bytes": st.binary(max_size=8)}[kind])
        out["values"][name] = value
    out["event"] = [draw(st.sampled_from([0, 1, 1_700_000_000_123, 2**40])) for _ in range(2)]
    return out


def _piece(v: dict[str, Any], first: int, last: int) -> pb.FeatureVector:
    msg = pb.FeatureVector(statuses=v["statuses"][first:last])
    for name, kind, _ in FEATURES[first:last]:
        value = v["values"][name]
        if kind in LIST_FIELD:
            msg.list_values.append(pb.ListValue(**{LIST_FIELD[kind][0]: value}))
        else:
            getattr(msg, {"double": "double_values", "int64": "int64_values",
                          "string": "string_values", "bool": "bool_values",
                          "bytes": "bytes_values"}[kind]).append(value)
    return msg


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def wire(v: dict[str, Any]) -> bytes:
    """The FeatureVector bytes of a drawn vector, as the engine sends them: one run per
    join (each a message of its own, concatenated), event times unpacked (tag 8, varint)."""
    half = len(FEATURES) // 2
    return b"".join(
        _piece(v, first, last).SerializeToString() + b"\x40" + _varint(event)
        for (first, last), event in zip(((0, half), (half, len(FEATURES))), v["event"],
                                        strict=True))


def row(i: int, data: bytes, context: list[Any] | None = None) -> LogRow:
    return LogRow(1_700_000_000_000 + i, f"req-{i}", i, "cfg1", None if i % 2 else 5 + i,
                  [i * 7 - 3, f"p{i}"], context, data)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


@settings(max_examples=60, deadline=None)
@given(drawn=st.lists(vectors(), min_size=1, max_size=12))
def test_every_value_status_and_event_time_matches_protobuf(drawn: list[dict[str, Any]]) -> None:
    wires = [wire(v) for v in drawn]
    rows = [row(i, w, [float(i)] if i % 3 else None) for i, w in enumerate(wires)]
    batch, malformed = record_batch(SCHEMA, rows)
    assert malformed == 0 and batch is not None
    assert batch.schema.equals(SCHEMA.arrow, check_metadata=True)
    for i, (rec, v) in enumerate(zip(batch.to_pylist(), drawn, strict=True)):
        parsed = pb.FeatureVector.FromString(wires[i])
        assert rec["request_id"] == f"req-{i}" and rec["entity"] == i
        assert rec["keys"] == {"user_id": i * 7 - 3, "place": f"p{i}"}
        assert rec["schema_hash"] == SCHEMA.hash and rec["config_version"] == "cfg1"
        assert rec["context"] == (None if i % 3 == 0 else {"amount": float(i)})
        assert (rec["at"] is None) == (i % 2 == 1)
        for j, (name, _, _) in enumerate(FEATURES):
            status = Status(parsed.statuses[j])
            assert rec["statuses"][name] == status.name
            got = rec["values"][name]
            if status is Status.PRESENT:
                assert same(got, v["values"][name]), (name, got, v["values"][name])
            else:
                assert got is None
        times = {k: (None if t is None else int(t.timestamp() * 1000))
                 for k, t in rec["event_times"].items()}
        assert times == {"g": v["event"][0] or None, "h": v["event"][1] or None}


def test_a_malformed_vector_is_dropped_alone() -> None:
    good = {"statuses": [1] * len(FEATURES), "event": [5, 6],
            "values": {n: ([] if k in LIST_FIELD else {"double": 1.5, "int64": -2, "string": "s",
                                                        "bool": True, "bytes": b"x"}[k])
                       for n, k, _ in FEATURES}}
    extra = pb.FeatureVector(double_values=[9.0]).SerializeToString()
    wires = [wire(good), wire(good) + extra, wire(good), b"\xff\xff"]
    batch, malformed = record_batch(SCHEMA, [row(i, w) for i, w in enumerate(wires)])
    assert malformed == 2 and batch is not None
    assert batch.column("request_id").to_pylist() == ["req-0", "req-2"]
    assert record_batch(SCHEMA, [row(0, b"\xff")]) == (None, 1)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(INT64, max_size=50))
def test_packed_varints_decode_like_protobuf(values: list[int]) -> None:
    payload = pb.FeatureVector(int64_values=values).SerializeToString()
    if values:  # strip the tag and length of field 3
        size, pos = 0, 1
        shift = 0
        while True:
            byte = payload[pos]
            size |= (byte & 0x7F) << shift
            pos += 1
            shift += 7
            if byte < 0x80:
                break
        payload = payload[pos:]
    assert _varint_array(payload).tolist() == values
    assert _varint_array(payload).dtype == np.int64
