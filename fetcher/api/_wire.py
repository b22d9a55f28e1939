"""Feature vectors on the wire: the encoder the engine writes row values with, the reader
of the columns a service's derivations read, and a reader of a vector's bytes for tests
and tools.

The engine builds FeatureVector bytes itself (statuses, packed doubles, event time) and
hands the other value arrays to `encode_values`, and reads derivations' inputs back with
`read_columns`, so protobuf types stay in this layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Any

from fetcher.engine import Pick
from fetcher.v1 import feature_service_pb2 as pb

_ListValue = pb.ListValue
_FeatureVector = pb.FeatureVector


def encode_values(fields: dict[str, Any]) -> bytes:
    """FeatureVector wire bytes of `fields` ({field: values}; `list_values` as (ListValue
    field, items) pairs). Takes ownership of `fields` (the caller builds it per row)."""
    lists = fields.get("list_values")
    if lists is not None:
        fields["list_values"] = [_ListValue(**{field: items}) for field, items in lists]
    return _FeatureVector(**fields).SerializeToString()


_statuses = attrgetter("statuses")


def read_columns(wires: Sequence[bytes], picks: Sequence[Pick]) -> list[tuple[list[Any], bytes]]:
    """The (values, statuses) column of each pick over the vectors `wires` (one parse each).

    Every vector of a target has its features in the same slots (a feature that is not
    PRESENT holds its zero value), so a column is one C-level map over the parsed vectors.
    """
    vectors = list(map(_FeatureVector.FromString, wires))
    statuses = list(map(_statuses, vectors))
    arrays: dict[str, list[Any]] = {}
    out: list[tuple[list[Any], bytes]] = []
    for pick in picks:
        array = arrays.get(pick.field)
        if array is None:
            array = arrays[pick.field] = list(map(attrgetter(pick.field), vectors))
        values = list(map(itemgetter(pick.position), array))
        if pick.items is not None:
            values = list(map(list, map(attrgetter(pick.items), values)))
        out.append((values, bytes(map(itemgetter(pick.feature), statuses))))
    return out


class VectorView:
    """One entity's vector bytes read back: statuses, values by slot and event times."""

    __slots__ = ("message",)

    def __init__(self, wire: bytes) -> None:
        self.message = pb.FeatureVector.FromString(wire)

    @property
    def statuses(self) -> list[int]:
        """One status per feature."""
        return list(self.message.statuses)

    @property
    def values(self) -> list[list[Any]]:
        """Values by slot (fetcher.engine._rows.SLOT_*), each slot in feature order."""
        msg = self.message
        lists = [
            list(
                v.double_values or v.int64_values or v.string_values or v.bool_values
                or v.bytes_values
            )
            for v in msg.list_values
        ]
        return [
            list(msg.double_values),
            list(msg.int64_values),
            list(msg.string_values),
            list(msg.bool_values),
            list(msg.bytes_values),
            lists,
        ]

    @property
    def event_ms(self) -> list[int]:
        """Event time of each join's row (0 when the join had no row)."""
        return list(self.message.event_timestamps_ms)
