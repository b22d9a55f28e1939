"""rows.varint against protobuf's own encoder, across the fast paths' edges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.engine._rows import GroupRow, event_field, varint
from fetcher.v1 import feature_service_pb2 as pb


def _protobuf(value: int) -> bytes:
    # FeatureVector.event_timestamps_ms (field 8, packed int64) holding one value:
    # tag 0x42, the length (one byte: a varint has at most 10), the varint.
    wire = pb.FeatureVector(event_timestamps_ms=[value]).SerializeToString()
    assert wire[:1] == b"\x42"
    assert wire[1] == len(wire) - 2
    return wire[2:]


EDGES = sorted({
    edge + delta
    for edge in (0, 1 << 7, 1 << 14, 1 << 21, 1 << 28, 1 << 35, 1 << 42, 1 << 49, 1 << 56,
                 1 << 63, -(1 << 63), -(1 << 35), -(1 << 14))
    for delta in (-1, 0, 1)
    if -(1 << 63) <= edge + delta < 1 << 63
})  # fmt: skip


@pytest.mark.parametrize("value", EDGES)
def test_varint_at_every_length_edge(value: int) -> None:
    assert varint(value) == _protobuf(value)


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(1 << 35, (1 << 42) - 1),  # event times in ms (the six-byte path)
    st.integers(0, 0x3FFF),  # lengths (the one and two-byte path)
))  # fmt: skip
def test_varint_equals_protobufs(value: int) -> None:
    assert varint(value) == _protobuf(value)
    assert event_field(value) == b"\x40" + _protobuf(value)


def test_group_row_is_an_immutable_named_pair() -> None:
    row = GroupRow(5, b"\x40\x05")
    assert (row.event_ms, row.wire) == (5, b"\x40\x05")
    with pytest.raises(AttributeError):
        row.wire = b""  # type: ignore[misc]
