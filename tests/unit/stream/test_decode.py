"""fetcher.stream's message decoding (JSON and plain Avro) and its [kafka] settings."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from fetcher.catalog import load_catalog
from fetcher.config import SettingsError, load_settings
from fetcher.load import EventRejected, EventWriter
from fetcher.stream import EventDecoder, event_schema
from fetcher.types import AggregateColumn, AggregateFeature, AggregateOperation, AggregationSpec
from tests.e2e.aggregation_support import write_config

T = 1_790_000_000_000
SPEC = AggregationSpec(
    (AggregateColumn("amount", "int64"), AggregateColumn("blob", "bytes"),
     AggregateColumn("tags", "list<string>")),
    (AggregateOperation("amount", "sum", 60_000, None),
     AggregateOperation("blob", "count", 60_000, None),
     AggregateOperation("tags", "count", 60_000, None)),
    (AggregateFeature("amount_sum", 0, None), AggregateFeature("blob_count", 1, None),
     AggregateFeature("tags_count", 2, None)),
)


class _NoStore:
    """Decoding never touches the store."""


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory) -> EventWriter:
    config = write_config(tmp_path_factory.mktemp("stream") / "config", [("g", "g", SPEC)])
    return EventWriter(load_catalog(config).groups["g"], _NoStore())  # type: ignore[arg-type]


def _json(**record: Any) -> bytes:
    return json.dumps(record).encode()


def test_json_event_with_its_own_time_and_id(writer: EventWriter) -> None:
    decoder = EventDecoder(writer, value_format="json")
    event = decoder.decode(_json(user_id=7, event_time=T, id="e1", amount=3,
                                 blob=base64.b64encode(b"\x00\xff").decode(), tags=["a"]),
                           T + 5, "t/0/9")
    assert (event.key, event.ts_ms, event.id) == (writer.key_bytes([7]), T, b"e1")
    codec = writer.aggregator.codec
    assert codec.decode(event.payload) == (3, b"\x00\xff", ["a"])


def test_json_event_without_time_or_id_takes_the_message_timestamp_and_offset(
    writer: EventWriter,
) -> None:
    event = EventDecoder(writer, value_format="json").decode(_json(user_id=7), T + 5, "t/0/9")
    assert (event.ts_ms, event.id) == (T + 5, b"t/0/9")
    iso = EventDecoder(writer, value_format="json").decode(
        _json(user_id=7, event_time="2026-09-22T00:00:00Z"), None, "t/0/9")
    assert iso.ts_ms == 1_790_035_200_000


@pytest.mark.parametrize(("value", "field"), [
    (b"\xff\xfe", "value"),
    (b"{", "value"),
    (b"3", "value"),
    (None, "value"),
    (_json(event_time=T), "keys.user_id"),
    (_json(user_id=True, event_time=T), "keys.user_id"),
    (_json(user_id=2**63, event_time=T), "keys.user_id"),
    (_json(user_id=1, event_time=12), "event_time"),
    (_json(user_id=1, event_time=[1]), "event_time"),
    (_json(user_id=1, event_time=T, id=5), "id"),
    (_json(user_id=1, event_time=T, id="x" * 129), "id"),
    (_json(user_id=1, event_time=T, amount="3"), "values.amount"),
    (_json(user_id=1, event_time=T, blob="not base64!"), "values.blob"),
    (_json(user_id=1, event_time=T, tags=["a", None]), "values.tags[1]"),
    (_json(user_id=1, event_time=T, other=1), "values.'other'"),
    (_json(user_id=1), "event_time"),  # no event time and no message timestamp
])
def test_bad_values_are_rejected_naming_the_field(writer: EventWriter, value: bytes | None,
                                                  field: str) -> None:
    with pytest.raises(EventRejected) as info:
        EventDecoder(writer, value_format="json").decode(value, None, "t/0/1")
    assert info.value.field == field, info.value
    assert len(str(info.value)) < 300


def _avro(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), record)
    return out.getvalue()


def test_avro_events_with_the_groups_schema(writer: EventWriter) -> None:
    schema = event_schema(writer.group)
    assert [f["name"] for f in schema["fields"]] == ["user_id", "event_time", "id", "amount",
                                                     "blob", "tags"]
    decoder = EventDecoder(writer, value_format="avro")
    value = _avro(schema, {"user_id": 7, "event_time": T, "id": None, "amount": 4,
                           "blob": b"\x01", "tags": ["x", "y"]})
    event = decoder.decode(value, T + 1, "t/1/2")
    assert (event.key, event.ts_ms, event.id) == (writer.key_bytes([7]), T, b"t/1/2")
    assert writer.aggregator.codec.decode(event.payload) == (4, b"\x01", ["x", "y"])
    sparse = decoder.decode(_avro(schema, {"user_id": 8}), T + 1, "t/1/3")
    assert sparse.ts_ms == T + 1
    with pytest.raises(EventRejected) as info:
        decoder.decode(value + b"\x00", None, "t/1/4")
    assert info.value.field == "value" and "bytes after" in info.value.message
    with pytest.raises(EventRejected) as info:
        decoder.decode(value[:3], None, "t/1/5")
    assert info.value.field == "value"


def test_kafka_settings_are_checked_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[kafka]\nvalue_format = "xml"\ntopic = "{nope}"\nbatch_size = 0\n'
                    'bootstrap_servers = " "\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path, env={})
    text = str(info.value)
    for key in ("kafka.value_format", "kafka.topic", "kafka.batch_size",
                "kafka.bootstrap_servers"):
        assert key in text, (key, text)
    settings = load_settings(None, env={"FETCHER__KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
                                        "FETCHER__KAFKA__BATCH_SIZE": "20"})
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert settings.kafka.batch_size == 20
    assert settings.kafka.topic.format(group="clicks") == "fetcher.events.clicks"
