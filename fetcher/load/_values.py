"""Value conversion for `fetcher load`: file cells and JSON/Parquet values -> Avro-ready values.

Two flavours per feature type: *text* (CSV cells, always strings) and *native*
(JSON and Parquet values, already typed). Both are strict: a value of the wrong
type raises `RowRejected` naming the column, so a bad row is reported, never
silently coerced. Converters are built once per group, not per row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from fetcher.codec import INT64_MAX, INT64_MIN, KeyValue, parse_key_text
from fetcher.types import Feature, FeatureType, KeyColumn, KeyType

Converter = Callable[[Any], Any]

# Epoch-ms bounds for event times. Below 1e11 ms (1973) a value is far more likely
# to be in seconds than a real event time; above year 9999 it is micro- or nanoseconds.
MIN_EVENT_MS = 10**11
MAX_EVENT_MS = 253_402_300_799_999


class RowRejected(ValueError):
    """A row does not fit the group: `field` names the column ("" for the whole row)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_int64(name: str, value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise RowRejected(name, f"{value} is outside the int64 range")
    return value


def text_to_bytes(text: str) -> bytes:
    """Bytes given as text: "0x" + hex digits, otherwise the UTF-8 bytes (as for key columns)."""
    if text.startswith("0x"):
        return bytes.fromhex(text[2:])
    return text.encode("utf-8")


# --- native values (JSON, Parquet) -------------------------------------------------------


def _native_scalar(name: str, ftype: FeatureType) -> Converter:
    if ftype in (FeatureType.DOUBLE, FeatureType.DOUBLE_LIST):

        def to_double(v: Any) -> float:
            if isinstance(v, float):
                return v
            if isinstance(v, int) and not isinstance(v, bool):
                return float(v)
            raise RowRejected(name, f"expects a double, got {_type_name(v)} {v!r}")

        return to_double
    if ftype in (FeatureType.INT64, FeatureType.INT64_LIST):

        def to_long(v: Any) -> int:
            if isinstance(v, int) and not isinstance(v, bool):
                return _check_int64(name, v)
            raise RowRejected(name, f"expects an int64, got {_type_name(v)} {v!r}")

        return to_long
    if ftype in (FeatureType.BOOL, FeatureType.BOOL_LIST):

        def to_bool(v: Any) -> bool:
            if isinstance(v, bool):
                return v
            raise RowRejected(name, f"expects a boolean, got {_type_name(v)} {v!r}")

        return to_bool
    if ftype is FeatureType.BYTES:

        def to_bytes(v: Any) -> bytes:
            if isinstance(v, bytes | bytearray):
                return bytes(v)
            if isinstance(v, str):
                try:
                    return text_to_bytes(v)
                except ValueError:
                    raise RowRejected(name, f"{v!r} is not valid 0x-prefixed hex") from None
            raise RowRejected(name, f"expects bytes, got {_type_name(v)}")

        return to_bytes

    def to_string(v: Any) -> str:
        if isinstance(v, str):
            return v
        raise RowRejected(name, f"expects a string, got {_type_name(v)} {v!r}")

    return to_string


_LIST_TYPES = frozenset(
    {
        FeatureType.DOUBLE_LIST,
        FeatureType.INT64_LIST,
        FeatureType.STRING_LIST,
        FeatureType.BOOL_LIST,
    }
)


def _list_of(name: str, element: Converter) -> Converter:
    def to_list(v: Any) -> list[Any]:
        if not isinstance(v, list | tuple):
            raise RowRejected(name, f"expects an array, got {_type_name(v)} {v!r}")
        # None elements are passed on: only the Avro schema knows whether items are nullable,
        # and the codec rejects them (naming the field) when they are not.
        return [None if item is None else element(item) for item in v]

    return to_list


def native_converter(feature: Feature) -> Converter:
    """Converter for a JSON/Parquet value of `feature` (None handled by the caller)."""
    scalar = _native_scalar(feature.name, feature.type)
    if feature.type in _LIST_TYPES:
        return _list_of(feature.name, scalar)
    return scalar


# --- text cells (CSV) ---------------------------------------------------------------------


def text_converter(feature: Feature) -> Converter:
    """Converter for a non-empty CSV cell of `feature`: numbers, true/false/1/0, JSON arrays."""
    name, ftype = feature.name, feature.type
    if ftype in _LIST_TYPES:
        as_list = _list_of(name, _native_scalar(name, ftype))

        def list_cell(text: str) -> list[Any]:
            try:
                parsed = json.loads(text)
            except ValueError:
                raise RowRejected(name, f"expects a JSON array, got {text!r}") from None
            result: list[Any] = as_list(parsed)
            return result

        return list_cell
    if ftype is FeatureType.DOUBLE:

        def double_cell(text: str) -> float:
            try:
                return float(text)
            except ValueError:
                raise RowRejected(name, f"expects a double, got {text!r}") from None

        return double_cell
    if ftype is FeatureType.INT64:

        def long_cell(text: str) -> int:
            try:
                value = int(text)
            except ValueError:
                raise RowRejected(name, f"expects an int64, got {text!r}") from None
            return _check_int64(name, value)

        return long_cell
    if ftype is FeatureType.BOOL:

        def bool_cell(text: str) -> bool:
            lowered = text.strip().lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise RowRejected(name, f"expects true/false/1/0, got {text!r}")

        return bool_cell
    return _native_scalar(name, ftype)  # string and bytes cells are text already


# --- keys and event times -----------------------------------------------------------------


def key_converter(column: KeyColumn, *, text: bool) -> Callable[[Any], KeyValue]:
    """Converter for a key column value; int64 range is checked here so errors name the key."""
    name = column.name

    def from_text(v: Any) -> KeyValue:
        if not isinstance(v, str):
            raise RowRejected(name, f"expects text, got {_type_name(v)}")
        try:
            value = parse_key_text(column, v)
        except ValueError as exc:
            raise RowRejected(name, str(exc)) from None
        if isinstance(value, int):
            _check_int64(name, value)
        return value

    if text:
        return from_text
    if column.type is KeyType.INT64:

        def from_native_int(v: Any) -> KeyValue:
            if isinstance(v, int) and not isinstance(v, bool):
                return _check_int64(name, v)
            raise RowRejected(name, f"key expects an int64, got {_type_name(v)} {v!r}")

        return from_native_int
    if column.type is KeyType.BYTES:

        def from_native_bytes(v: Any) -> KeyValue:
            if isinstance(v, bytes | bytearray):
                return bytes(v)
            return from_text(v)

        return from_native_bytes

    def from_native_str(v: Any) -> KeyValue:
        if isinstance(v, str):
            return v
        raise RowRejected(name, f"key expects a string, got {_type_name(v)} {v!r}")

    return from_native_str


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime_ms(dt: datetime) -> int:
    # A timestamp without a zone is taken as UTC: files written by Spark/pandas usually are.
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH  # integer arithmetic: a float of seconds loses the milliseconds
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def event_time_ms(name: str, value: Any) -> int:
    """Event time as epoch ms from an int/integral float (ms), ISO-8601 text or a datetime."""
    ms: int
    if isinstance(value, bool):
        raise RowRejected(name, f"expects epoch ms or ISO-8601, got {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise RowRejected(name, f"expects whole epoch milliseconds, got {value!r}")
        ms = int(value)
    elif isinstance(value, datetime):
        ms = _datetime_ms(value)
    elif isinstance(value, date):
        ms = _datetime_ms(datetime.combine(value, time()))
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            ms = int(text)
        else:
            try:
                ms = _datetime_ms(datetime.fromisoformat(text))
            except ValueError:
                raise RowRejected(
                    name, f"expects epoch ms or an ISO-8601 time, got {value!r}"
                ) from None
    else:
        raise RowRejected(name, f"expects epoch ms or ISO-8601, got {_type_name(value)}")
    if ms < MIN_EVENT_MS:
        raise RowRejected(name, f"{ms} is before 1973: epoch seconds instead of milliseconds?")
    if ms > MAX_EVENT_MS:
        raise RowRejected(name, f"{ms} is after year 9999: micro- or nanoseconds instead of ms?")
    return ms
