"""Feast's entity keys (serialization version 3), byte for byte with what Feast 0.67 wrote."""

from __future__ import annotations

import struct

import pytest

from fetcher.codec import KeyValueError
from fetcher.feast import feast_key_encoder
from fetcher.feast.proto.types.value_pb2 import ValueType as VT

# Keys Feast 0.67.0 wrote to Redis (write_to_online_store, project "fxexp").
ONE_INT64 = (
    b"\x01\x00\x00\x00\x02\x00\x00\x00\x07\x00\x00\x00user_id"
    b"\x04\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00fxexp"
)
TWO_KEYS = (
    b"\x02\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00city\x02\x00\x00\x00\t\x00\x00\x00"
    b"driver_id\x02\x00\x00\x00\x05\x00\x00\x00paris\x04\x00\x00\x00\x08\x00\x00\x00"
    b"\x07\x00\x00\x00\x00\x00\x00\x00fxexp"
)


def test_the_keys_feast_wrote() -> None:
    assert feast_key_encoder([("user_id", VT.INT64)], "fxexp")([3]) == ONE_INT64
    # Join keys are sorted by name, values follow in that order, whatever the view's order.
    two = feast_key_encoder([("driver_id", VT.INT64), ("city", VT.STRING)], "fxexp")
    assert two([7, "paris"]) == TWO_KEYS


def test_every_key_type() -> None:
    encode = feast_key_encoder(
        [("d", VT.INT32), ("c", VT.BYTES), ("b", VT.UNIX_TIMESTAMP), ("a", VT.STRING)], "p"
    )
    key = encode([-2, b"\x00\xff", 1_700_000_000, "é"])
    head = struct.pack("<I", 4) + b"".join(
        struct.pack("<II", VT.STRING, 1) + name for name in (b"a", b"b", b"c", b"d")
    )
    values = (
        struct.pack("<II", VT.STRING, 2) + "é".encode()
        + struct.pack("<IIq", VT.UNIX_TIMESTAMP, 8, 1_700_000_000)
        + struct.pack("<II", VT.BYTES, 2) + b"\x00\xff"
        + struct.pack("<IIi", VT.INT32, 4, -2)
    )  # fmt: skip
    assert key == head + values + b"p"


@pytest.mark.parametrize(
    ("value_type", "value", "message"),
    [
        (VT.INT32, 2**31, "expects an integer in"),
        (VT.INT64, -(2**63) - 1, "expects an integer in"),
        (VT.INT64, True, "expects an integer in"),
        (VT.INT64, "1", "expects an integer in"),
        (VT.STRING, 1, "expects a string"),
        (VT.BYTES, "x", "expects bytes"),
    ],
)
def test_values_that_do_not_fit(value_type: int, value: object, message: str) -> None:
    encode = feast_key_encoder([("k", value_type)], "p")
    with pytest.raises(KeyValueError, match=message):
        encode([value])  # type: ignore[list-item]


def test_keys_feast_cannot_serialize() -> None:
    with pytest.raises(ValueError, match="cannot serialize a DOUBLE key"):
        feast_key_encoder([("k", VT.DOUBLE)], "p")
    encode = feast_key_encoder([("a", VT.INT64), ("b", VT.INT64)], "p")
    with pytest.raises(KeyValueError, match="expected 2 key values"):
        encode([1])
