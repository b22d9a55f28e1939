"""Avro single-object codec: framing, round trips, evolution, errors."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from fetcher.codec._avro import (
    MARKER,
    DecodeError,
    EncodeError,
    GroupCodec,
    SchemaError,
    SchemaRegistry,
    avro_to_features,
    schema_fingerprint,
)
from fetcher.types import Feature, FeatureType

ALL_TYPES: dict[str, Any] = {
    "type": "record",
    "name": "Row",
    "fields": [
        {"name": "d", "type": "double", "doc": "a double"},
        {"name": "f", "type": "float"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "s", "type": "string"},
        {"name": "b", "type": "boolean"},
        {"name": "y", "type": "bytes"},
        {"name": "dl", "type": {"type": "array", "items": "double"}},
        {"name": "ll", "type": {"type": "array", "items": "long"}},
        {"name": "sl", "type": {"type": "array", "items": "string"}},
        {"name": "bl", "type": {"type": "array", "items": "boolean"}},
        {"name": "n", "type": ["null", "long"], "default": None},
        {"name": "n2", "type": ["string", "null"]},
    ],
}
ROW: dict[str, Any] = {
    "d": 1.25, "f": 0.5, "i": -7, "l": 2**62, "s": "héllo", "b": True, "y": b"\x00\xff",
    "dl": [1.0, -2.5], "ll": [1, 2, 3], "sl": ["a", ""], "bl": [True, False], "n": None, "n2": "x",
}  # fmt: skip


def _rabin(data: bytes) -> int:
    """The Avro spec's reference CRC-64-AVRO, written out to check fastavro against it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def _codec(schema: Any) -> GroupCodec:
    registry = SchemaRegistry()
    return GroupCodec(registry, registry.register(schema, "test.avsc"))


def test_fingerprint_matches_spec_vector_little_endian() -> None:
    registry = SchemaRegistry()
    fp = registry.register('"null"', "null")
    # Avro's published fingerprint of "null" is 7195948357588979594 (as a signed long).
    assert struct.unpack("<q", fp)[0] == 7195948357588979594
    assert fp == struct.pack("<Q", _rabin(b'"null"'))
    record = registry.get(registry.register(ALL_TYPES, "x"))
    assert record is not None
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(record.parsed).encode()
    assert schema_fingerprint(record.parsed) == struct.pack("<Q", _rabin(canonical))


def test_round_trip_every_type_and_framing() -> None:
    codec = _codec(ALL_TYPES)
    data = codec.encode(ROW)
    assert data[:2] == MARKER and data[2:10] == codec.fingerprint
    assert codec.decode(data) == ROW
    assert codec.decode(codec.encode({**ROW, "n": 5, "n2": None})) | {} == {
        **ROW, "n": 5, "n2": None
    }  # fmt: skip


def test_avro_to_features_maps_types_nullability_and_docs() -> None:
    features = avro_to_features(ALL_TYPES)
    by_name = {f.name: f for f in features}
    assert by_name["d"] == Feature("d", FeatureType.DOUBLE, False, "a double")
    assert [by_name[n].type for n in ("f", "i", "l", "s", "b", "y")] == [
        FeatureType.DOUBLE, FeatureType.INT64, FeatureType.INT64,
        FeatureType.STRING, FeatureType.BOOL, FeatureType.BYTES,
    ]  # fmt: skip
    assert [by_name[n].type for n in ("dl", "ll", "sl", "bl")] == [
        FeatureType.DOUBLE_LIST, FeatureType.INT64_LIST,
        FeatureType.STRING_LIST, FeatureType.BOOL_LIST,
    ]  # fmt: skip
    assert by_name["n"] == Feature("n", FeatureType.INT64, True)
    assert by_name["n2"].nullable and by_name["n2"].type is FeatureType.STRING


def test_avro_to_features_rejects_unsupported_types_naming_each_field() -> None:
    schema = {
        "type": "record", "name": "R",
        "fields": [
            {"name": "ok", "type": "long"},
            {"name": "m", "type": {"type": "map", "values": "long"}},
            {"name": "u", "type": ["null", "long", "string"]},
        ],
    }  # fmt: skip
    with pytest.raises(SchemaError) as err:
        avro_to_features(schema)
    assert [f for f, _ in err.value.problems] == ["m", "u"]
    assert "supported: double" in str(err.value)
    with pytest.raises(SchemaError, match="must be an Avro record"):
        avro_to_features("long")


def test_bad_schema_names_source() -> None:
    with pytest.raises(SchemaError, match=r"bad\.avsc: not a valid Avro schema"):
        SchemaRegistry().register(
            {"type": "record", "name": "R", "fields": [{"name": "a", "type": "lung"}]}, "bad.avsc"
        )


def test_encode_error_names_field_and_expected_type() -> None:
    codec = _codec(ALL_TYPES)
    with pytest.raises(EncodeError) as err:
        codec.encode({**ROW, "l": "12"})
    assert err.value.field == "l" and err.value.expected == "long"
    assert "'l'" in str(err.value) and "expected long" in str(err.value)
    with pytest.raises(EncodeError) as err:
        codec.encode({**ROW, "dl": [1.0, "x"]})
    assert err.value.field == "dl" and err.value.expected == "array<double>"
    row = dict(ROW)
    del row["s"]
    with pytest.raises(EncodeError, match="'s' is missing") as err:
        codec.encode(row)
    assert err.value.field == "s"
    with pytest.raises(EncodeError, match=r"null\|long"):
        codec.encode({**ROW, "n": 1.5})


V1 = {"type": "record", "name": "U", "fields": [
    {"name": "a", "type": "long"}, {"name": "gone", "type": "string"},
    {"name": "x", "type": "int"},
]}  # fmt: skip
V2 = {"type": "record", "name": "U", "fields": [
    {"name": "a", "type": "long"}, {"name": "added", "type": "long", "default": 7},
    {"name": "x", "type": "double"},
]}  # fmt: skip


def test_schema_evolution_added_with_default_and_removed_field() -> None:
    registry = SchemaRegistry()
    old = GroupCodec(registry, registry.register(V1, "u.v1.avsc"))
    new = GroupCodec(registry, registry.register(V2, "u.avsc"))
    assert new.check_writer(old.fingerprint) == []
    data = old.encode({"a": 1, "gone": "bye", "x": 3})
    assert new.decode(data) == {"a": 1, "added": 7, "x": 3.0}
    assert new.decode(data) == {"a": 1, "added": 7, "x": 3.0}  # cached plan
    # The other way round: V1 cannot read V2 rows ("gone" has no default).
    problems = old.check_writer(new.fingerprint)
    assert problems and "'gone'" in problems[0]
    with pytest.raises(DecodeError, match="cannot be read"):
        old.decode(new.encode({"a": 1, "x": 2.0}))


def test_incompatible_types_reported() -> None:
    registry = SchemaRegistry()
    writer = [{"name": "a", "type": "string"}, {"name": "n", "type": ["null", "long"]}]
    reader = [{"name": "a", "type": "long"}, {"name": "n", "type": "long"}]
    w = registry.register({"type": "record", "name": "U", "fields": writer}, "w")
    r = GroupCodec(
        registry, registry.register({"type": "record", "name": "U", "fields": reader}, "r")
    )
    problems = r.check_writer(w)
    assert any("'a'" in p and "string" in p for p in problems)
    assert any("'n'" in p for p in problems)  # a null cannot be read as long


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: b"\x00\x01" + d[2:], "bad marker"),
        (lambda d: d[:2] + b"\x01" * 8 + d[10:], "unknown writer schema"),
        (lambda d: d[:5], "truncated header"),
        (lambda d: d[:-3], "corrupt or truncated"),
        (lambda d: d + b"\x00", "bytes left"),
        (lambda d: b"", "bad marker"),
    ],
)
def test_bad_bytes_raise_decode_error(mangle: Any, message: str) -> None:
    codec = _codec(ALL_TYPES)
    with pytest.raises(DecodeError, match=message):
        codec.decode(mangle(codec.encode(ROW)))


def test_corrupt_body_raises_decode_error() -> None:
    codec = _codec({"type": "record", "name": "R", "fields": [{"name": "s", "type": "string"}]})
    data = codec.encode({"s": "abc"})
    with pytest.raises(DecodeError):
        codec.decode(data[:10] + b"\x06\xff\xfe\xfd")  # invalid UTF-8
    with pytest.raises(DecodeError):
        codec.decode(data[:10] + b"\xff\xff\xff\xff\x0f")  # absurd length
