"""The Kafka sink's record format: the columnar encoder writes exactly fastavro's bytes for
every record (hypothesis), fastavro reads them back with only the schema topic's JSON, and
the decoder gives back the writer's record batch."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pyarrow as pa
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.featurelog import (
    LogRow,
    avro_schema,
    avro_schema_json,
    encode_records,
    log_schema,
    record_batch,
    schema_from_json,
)
from fetcher.featurelog._avro import RecordDecoder, SchemaMismatch, avro_names
from tests.unit.featurelog.test_columns import DESCRIPTOR, SCHEMA, vectors, wire

T0 = 1_764_547_200_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
KEYS = st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(max_size=6))
CONTEXT = st.one_of(st.none(), st.tuples(st.one_of(st.none(), st.floats(allow_nan=False))))
ROW = st.tuples(vectors(), KEYS, CONTEXT, st.one_of(st.none(), st.integers(0, 2**42)),
                st.text(max_size=12), st.integers(0, 2**31 - 1),
                st.integers(0, 2**41))


def _rows(drawn: list[Any]) -> list[LogRow]:
    return [LogRow(T0 + t, rid, entity, "cfg-1", at, list(keys),
                   None if ctx is None else list(ctx), wire(vec))
            for vec, keys, ctx, at, rid, entity, t in drawn]


def _ms(value: Any) -> int | None:
    """A timestamp's epoch ms, exactly (a float's product loses ms beyond 2**42)."""
    return None if value is None else (value - EPOCH) // dt.timedelta(milliseconds=1)


def _fastavro_bytes(record: dict[str, Any]) -> bytes:
    """The record as fastavro writes it with the schema (timestamps as epoch ms)."""
    plain = dict(record)
    del plain["schema_hash"]
    plain["request_time"] = _ms(plain["request_time"])
    plain["at"] = _ms(plain["at"])
    plain["event_times"] = {k: _ms(v) for k, v in plain["event_times"].items()}
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(_without_logical(avro_schema(SCHEMA))), plain)
    return out.getvalue()


def _without_logical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_logical(v) for k, v in value.items() if k != "logicalType"}
    if isinstance(value, list):
        return [_without_logical(v) for v in value]
    return value


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=12))
def test_every_record_is_fastavros_bytes_and_decodes_back(drawn: list[Any]) -> None:
    batch, malformed = record_batch(SCHEMA, _rows(drawn))
    assert batch is not None and malformed == 0
    values = encode_records(SCHEMA, batch)
    records = batch.to_pylist()
    assert len(values) == len(records)
    for value, record in zip(values, records, strict=True):
        assert value == _fastavro_bytes(record), record
    back = RecordDecoder(SCHEMA).decode(values)
    assert back.schema == SCHEMA.arrow
    assert back.to_pylist() == records
    # A read-back batch (its status dictionary in first-seen order) encodes the same.
    assert encode_records(SCHEMA, back) == values


def test_a_reader_with_only_the_schema_topic_json_reads_every_field() -> None:
    batch, _ = record_batch(SCHEMA, _rows([
        ({"statuses": [1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 4], "values": {
            "d": 0.25, "i": -3, "s": "é", "b": True, "y": b"\x00", "dl": [1.5], "il": [2**62],
            "sl": ["a", ""], "bl": [True, False], "d2": 9.0, "i2": 7}, "event": [T0, 0]},
         (-1, "p"), (2.5,), None, "rid", 3, 5)]))
    assert batch is not None
    (value,) = encode_records(SCHEMA, batch)
    # What a reader years later has: the schema topic's value, any Avro library.
    schema_json = json.loads(avro_schema_json(SCHEMA))
    record: Any = schemaless_reader(io.BytesIO(value), parse_schema(schema_json), None)
    assert record["request_id"] == "rid" and record["entity"] == 3
    assert record["keys"] == {"user_id": -1, "place": "p"}
    assert record["context"] == {"amount": 2.5}
    assert record["values"]["s"] == "é" and record["values"]["il"] == [2**62]
    assert record["values"]["d"] == 0.25 and record["values"]["i"] is None  # NOT_FOUND
    assert record["statuses"]["i"] == "NOT_FOUND" and record["statuses"]["i2"] == "OUTSIDE_MAX_AGE"
    assert _ms(record["event_times"]["g"]) == T0 and record["event_times"]["h"] is None
    assert _ms(record["request_time"]) == T0 + 5 and record["at"] is None
    assert schema_json["fetcher.schema_hash"] == SCHEMA.hash
    assert schema_from_json(avro_schema_json(SCHEMA), SCHEMA.hash) == SCHEMA


def test_the_schema_json_is_checked_against_its_hash() -> None:
    with pytest.raises(SchemaMismatch, match="hashes to"):
        schema_from_json(avro_schema_json(SCHEMA), "0" * 16)
    tampered = json.loads(avro_schema_json(SCHEMA))
    tampered["fields"] = tampered["fields"][:-1]
    with pytest.raises(SchemaMismatch, match="not this version's form"):
        schema_from_json(json.dumps(tampered).encode())
    with pytest.raises(SchemaMismatch, match=r"no fetcher\.log_schema"):
        schema_from_json(b'{"type": "record", "name": "x", "fields": []}')


def test_names_that_are_not_avro_names_are_made_into_distinct_ones() -> None:
    assert avro_names(["a", "g#1", "g_1", "1st", "x.y-z", "a"]) == [
        "a", "g_1", "g_1_1", "_1st", "x_y_z", "a_1"]
    descriptor = json.loads(json.dumps(DESCRIPTOR))
    descriptor["joins"] = [{"group": "g.v2", "prefix": "", "event_time_field": "g.v2#0"},
                           {"group": "g.v2", "prefix": "h_", "event_time_field": "g.v2#1"}]
    schema = log_schema(descriptor)
    avro = avro_schema(schema)
    parse_schema(avro)  # a valid Avro schema
    times = next(f for f in avro["fields"] if f["name"] == "event_times")["type"]["fields"]
    assert [(f["name"], f["fetcher.name"]) for f in times] == [
        ("g_v2_0", "g.v2#0"), ("g_v2_1", "g.v2#1")]
    batch, _ = record_batch(schema, _rows([
        ({"statuses": [1] * 11, "values": {
            "d": 1.0, "i": 1, "s": "s", "b": False, "y": b"", "dl": [], "il": [], "sl": [],
            "bl": [], "d2": 2.0, "i2": 2}, "event": [T0, T0 + 1]}, (1, "k"), None, T0, "r", 0,
         0)]))
    assert batch is not None
    back = RecordDecoder(schema).decode(encode_records(schema, batch))
    assert back.to_pylist() == batch.to_pylist()


def test_large_values_encode_in_parts_with_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = [({"statuses": [1] * 11, "values": {
        "d": float(i), "i": i, "s": "x" * (i * 50), "b": True, "y": b"y" * i, "dl": [0.5] * i,
        "il": [i], "sl": ["s"], "bl": [True], "d2": 1.0, "i2": -i}, "event": [T0, T0]},
        (i, "k" * i), None, None, f"r{i}", 0, i) for i in range(9)]
    batch, _ = record_batch(SCHEMA, _rows(drawn))
    assert batch is not None
    whole = encode_records(SCHEMA, batch)
    monkeypatch.setattr("fetcher.featurelog._avro_encode.MAX_PADDED_BYTES", 64)
    assert encode_records(SCHEMA, batch) == whole
    assert encode_records(SCHEMA, batch.slice(3, 4)) == whole[3:7]
    assert encode_records(SCHEMA, pa.RecordBatch.from_pylist([], schema=SCHEMA.arrow)) == []
