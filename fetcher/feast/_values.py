"""Feast's value types in the fetcher: which are served as what, and the row decoder.

A served Feast type maps to one fetcher FeatureType (INT32 and UNIX_TIMESTAMP are served
as INT64, FLOAT as DOUBLE, and so their lists); the decoder reads a StoredRow (what
kvstores.feast_redis returns) into {feature: value}, an unset Value as None: by hand for
the usual shapes (fetcher.feast._by_hand), through protobuf for the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from fetcher.codec import DoubleLayout
from fetcher.feast._by_hand import RowByHand, double_layout
from fetcher.feast.proto import stored_row_pb2
from fetcher.feast.proto.types import value_pb2
from fetcher.types import FeatureType, KeyType

VT = value_pb2.ValueType

#: Served Feast value type -> the fetcher's feature type.
FEATURE_TYPES: dict[int, FeatureType] = {
    VT.BYTES: FeatureType.BYTES,
    VT.STRING: FeatureType.STRING,
    VT.INT32: FeatureType.INT64,
    VT.INT64: FeatureType.INT64,
    VT.DOUBLE: FeatureType.DOUBLE,
    VT.FLOAT: FeatureType.DOUBLE,
    VT.BOOL: FeatureType.BOOL,
    VT.UNIX_TIMESTAMP: FeatureType.INT64,
    VT.BYTES_LIST: FeatureType.BYTES_LIST,
    VT.STRING_LIST: FeatureType.STRING_LIST,
    VT.INT32_LIST: FeatureType.INT64_LIST,
    VT.INT64_LIST: FeatureType.INT64_LIST,
    VT.DOUBLE_LIST: FeatureType.DOUBLE_LIST,
    VT.FLOAT_LIST: FeatureType.DOUBLE_LIST,
    VT.BOOL_LIST: FeatureType.BOOL_LIST,
    VT.UNIX_TIMESTAMP_LIST: FeatureType.INT64_LIST,
}

#: Feast value types an entity key may have (those Feast's key serialization writes) ->
#: the fetcher's key type.
KEY_TYPES: dict[int, KeyType] = {
    VT.STRING: KeyType.STRING,
    VT.BYTES: KeyType.BYTES,
    VT.INT32: KeyType.INT64,
    VT.INT64: KeyType.INT64,
    VT.UNIX_TIMESTAMP: KeyType.INT64,
}

#: Feast's null unix timestamp: what it writes for a missing datetime (its Python SDK
#: reads it back as None).
NULL_TIMESTAMP = -(2**63)

# The Value member each served type is written in; a member of another type served as
# the same fetcher type is read too (a view whose Int32 became Int64 keeps its old rows).
_MEMBER: dict[int, str] = {
    VT.BYTES: "bytes_val",
    VT.STRING: "string_val",
    VT.INT32: "int32_val",
    VT.INT64: "int64_val",
    VT.DOUBLE: "double_val",
    VT.FLOAT: "float_val",
    VT.BOOL: "bool_val",
    VT.UNIX_TIMESTAMP: "unix_timestamp_val",
    VT.BYTES_LIST: "bytes_list_val",
    VT.STRING_LIST: "string_list_val",
    VT.INT32_LIST: "int32_list_val",
    VT.INT64_LIST: "int64_list_val",
    VT.DOUBLE_LIST: "double_list_val",
    VT.FLOAT_LIST: "float_list_val",
    VT.BOOL_LIST: "bool_list_val",
    VT.UNIX_TIMESTAMP_LIST: "unix_timestamp_list_val",
}
_LISTS = {member for vt, member in _MEMBER.items() if FEATURE_TYPES[vt].name.endswith("_LIST")}


def value_type_name(value_type: int) -> str:
    """The name of a Feast value type ("INT64"), or its number when Feast has none."""
    try:
        return str(VT.Enum.Name(value_type))
    except ValueError:
        return str(value_type)


def supported_feature_types() -> str:
    """The served Feast value types, for error messages."""
    return ", ".join(value_type_name(vt) for vt in FEATURE_TYPES)


Reader = Callable[[Any], Any]


def _reader(name: str, value_type: int) -> Reader:
    """feast.types.Value -> the feature's value (None for an unset Value)."""
    served = FEATURE_TYPES[value_type]
    accepted = frozenset(m for vt, m in _MEMBER.items() if FEATURE_TYPES[vt] is served)
    timestamp = value_type == VT.UNIX_TIMESTAMP

    def read(value: Any) -> Any:
        member = value.WhichOneof("val")
        if member is None or member == "null_val":
            return None
        if member not in accepted:
            raise ValueError(
                f"feature {name!r} ({value_type_name(value_type)}): the stored value is a "
                f"{member}"
            )
        got = getattr(value, member)
        if member in _LISTS:
            return list(got.val)
        if timestamp and got == NULL_TIMESTAMP:
            return None
        return got

    return read


def _parsed(read: Reader, parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """Value bytes -> `read` of the parsed Value."""
    return lambda data: read(parse(data))


class FeastRowCodec:
    """Decodes the rows of one group (a feature view's features, maybe a subset) read from
    Feast's Redis layout; what the engine's plans need of a codec (fetcher.engine)."""

    __slots__ = ("_by_hand", "_layout", "_names", "_readers", "fingerprint")

    def __init__(self, dataset: str, features: Sequence[tuple[str, int]]) -> None:
        """`features`: (name, Feast value type) in the dataset's order; all served types."""
        self._names = tuple(name for name, _ in features)
        self._readers = tuple(_reader(name, vt) for name, vt in features)
        parse = value_pb2.Value.FromString
        self._by_hand = RowByHand(
            self._names,
            [vt for _, vt in features],
            [_parsed(read, parse) for read in self._readers],
            NULL_TIMESTAMP,
        )
        self._layout = double_layout(self._names, [vt for _, vt in features])
        # The cache namespace of the group's rows: a reload that changes what is read or
        # how it is typed never serves rows decoded the old way.
        described = json.dumps([dataset, [vt for _, vt in features]]).encode()
        self.fingerprint = hashlib.sha256(described).digest()[:8]

    def decode(self, data: bytes) -> dict[str, Any]:
        """A StoredRow's values by feature name; raises ValueError when they do not fit."""
        by_hand = self._by_hand.read(data)
        if by_hand is not None:
            return by_hand
        return self.decode_by_protobuf(data)

    def decode_by_protobuf(self, data: bytes) -> dict[str, Any]:
        """decode() with every value read by protobuf: what the by-hand reading must equal."""
        values = stored_row_pb2.StoredRow.FromString(data).values
        if len(values) != len(self._readers):
            raise ValueError(
                f"row holds {len(values)} values for {len(self._readers)} features"
            )
        return {
            name: read(value)
            for name, read, value in zip(self._names, self._readers, values, strict=True)
        }

    def double_layout(self) -> DoubleLayout | None:
        """The fixed layout of the rows when every feature is a double or a float."""
        return self._layout
