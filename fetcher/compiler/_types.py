"""The column type vocabulary of definitions and its Avro and serving forms; durations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fetcher.aggregation import LIST_ITEMS, SCALAR_COLUMNS, is_list, list_of, served_type
from fetcher.types import FeatureType, KeyType

# Column type -> Avro type. int32 and float exist so a definition can say exactly what
# an Avro schema holds (the served types are INT64 and DOUBLE either way). The vocabulary
# (and which types are numeric, ordered...) is fetcher.aggregation's, shared with the catalog.
_SCALARS: dict[str, str] = {
    "int64": "long",
    "int32": "int",
    "double": "double",
    "float": "float",
    "string": "string",
    "bool": "boolean",
    "bytes": "bytes",
}
assert tuple(_SCALARS) == SCALAR_COLUMNS
SUPPORTED = ", ".join(_SCALARS) + ", list<T> of " + "/".join(LIST_ITEMS)
KEY_TYPES: dict[str, KeyType] = {
    "int64": KeyType.INT64,
    "string": KeyType.STRING,
    "bytes": KeyType.BYTES,
}
_LIST_RE = re.compile(r"^list<\s*([a-z0-9]+)\s*>$")
_DURATION_RE = re.compile(r"^([1-9][0-9]*)([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def normalize_type(text: object) -> str | None:
    """The canonical spelling of a column type (`list<int64>`), or None if unsupported."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    if t in _SCALARS:
        return t
    m = _LIST_RE.match(t)
    if m and m.group(1) in LIST_ITEMS:
        return f"list<{m.group(1)}>"
    return None


def feature_type(column_type: str) -> FeatureType | None:
    """The served FeatureType of a column type (None for types that cannot be served)."""
    return served_type(column_type)


def avro_type(column_type: str) -> Any:
    """The Avro type of a (supported) column type: "long", {"type": "array", ...}."""
    if is_list(column_type):
        return {"type": "array", "items": _SCALARS[column_type[5:-1]]}
    return _SCALARS[column_type]


def parse_duration(text: object) -> int | None:
    """Seconds of "30m", "1h", "7d" (minutes, hours, days), or None if it does not parse."""
    if not isinstance(text, str):
        return None
    m = _DURATION_RE.match(text.strip())
    return int(m.group(1)) * _UNIT_S[m.group(2)] if m else None


def format_duration(seconds: int) -> str:
    """The shortest "<n><unit>" spelling of a whole number of minutes."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    raise ValueError(f"{seconds} s is not a whole number of minutes")



@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """A source column as the compiler knows it: type, doc, nullability, Avro default."""

    type: str
    doc: str = ""
    nullable: bool = False
    has_default: bool = False
    default: Any = None


# Avro's numeric promotions form one chain: int -> long -> float -> double.
_WIDENING = ("int32", "int64", "float", "double")
_FROM_AVRO = {avro: column for column, avro in _SCALARS.items()}


@dataclass(frozen=True, slots=True)
class Signature:
    """A feature's type as versions and diffs compare it: the column type and nullability."""

    type: str
    nullable: bool = False

    def render(self) -> str:
        """`int64`, or `int64 (nullable)`."""
        return f"{self.type} (nullable)" if self.nullable else self.type

    def widens_to(self, new: Signature) -> bool:
        """True when rows of this type read as `new` without loss: the same type, a numeric
        promotion (int32 -> int64 -> float -> double, also of list items), or made nullable."""
        return widens(self.type, new.type) and (new.nullable or not self.nullable)


def widens(old: str, new: str) -> bool:
    """True when column type `old` is `new` or is promoted to it by Avro resolution."""
    if old == new:
        return True
    if is_list(old) and is_list(new):
        return widens(old[5:-1], new[5:-1])
    return old in _WIDENING and new in _WIDENING and _WIDENING.index(old) < _WIDENING.index(new)


def avro_signature(avro: Any) -> Signature | None:
    """The column type of an Avro field type the compiler writes (None: another Avro type)."""
    nullable = False
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(avro) != 2 or len(branches) != 1:
            return None
        nullable, avro = True, branches[0]
    if isinstance(avro, dict):
        if "logicalType" in avro:
            return None
        if avro.get("type") == "array":
            item = avro_signature(avro.get("items"))
            if item is None or item.nullable or list_of(item.type) is None:
                return None
            return Signature(f"list<{item.type}>", nullable)
        avro = avro.get("type")
    if isinstance(avro, str) and avro in _FROM_AVRO:
        return Signature(_FROM_AVRO[avro], nullable)
    return None
