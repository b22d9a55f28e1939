"""Row preparation for `fetcher load`: a file row -> (key bytes, event ms, Avro bytes).

`RowPreparer` is built once per group and file: it resolves every column to its role
(key, event time, feature), picks the converter of each feature, and then turns rows
into store rows or raises `RowRejected` naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fetcher.codec import EncodeError, GroupCodec, KeyValue, KeyValueError, key_encoder
from fetcher.load._formats import LoadError
from fetcher.load._values import (
    Converter,
    RowRejected,
    event_time_ms,
    key_converter,
    native_converter,
    text_converter,
)
from fetcher.types import FeatureGroup, FeatureType

_MISSING: Any = object()

# What a feature absent from a row becomes.
_OMIT = 0  # left out of the record: the codec writes the schema's default
_NULL = 1  # None: the field is nullable and has no default
_REJECT = 2  # the row is rejected


def _fields_with_defaults(schema: Any) -> frozenset[str]:
    fields = schema.get("fields", ()) if isinstance(schema, Mapping) else ()
    return frozenset(f["name"] for f in fields if "default" in f)


class RowPreparer:
    """Turns one file's rows into store rows for `group`; built once per file."""

    def __init__(
        self,
        group: FeatureGroup,
        codec: GroupCodec,
        *,
        text: bool,
        event_time_column: str = "event_time",
        default_event_ms: int | None = None,
        ignore_unknown_columns: bool = False,
    ) -> None:
        """`text`: values are CSV cells (strings) rather than typed JSON/Parquet values."""
        self.group = group
        self._codec = codec
        self._text = text
        self._event_column = event_time_column
        if default_event_ms is not None:
            # Checked once here so a bad default fails the load up front, not every row.
            try:
                event_time_ms("default_event_ms", default_event_ms)
            except RowRejected as exc:
                raise LoadError(f"default event time: {exc.message}") from None
        self._default_event_ms = default_event_ms
        self._ignore_unknown = ignore_unknown_columns
        self._columns_checked = False
        self._keys = tuple((c.name, key_converter(c, text=text)) for c in group.keys)
        self._encode_key = key_encoder(group.keys)
        defaults = _fields_with_defaults(group.schema)
        self._features: tuple[tuple[str, Converter, int, bool], ...] = tuple(
            (
                f.name,
                text_converter(f) if text else native_converter(f),
                _OMIT if f.name in defaults else _NULL if f.nullable else _REJECT,
                f.nullable,
            )
            for f in group.features
        )
        self._strings = frozenset(
            f.name for f in group.features if f.type is FeatureType.STRING and not f.nullable
        )
        self.known_columns = frozenset(
            [c.name for c in group.keys] + [event_time_column] + [f.name for f in group.features]
        )

    def _describe_columns(self) -> str:
        keys = ", ".join(c.name for c in self.group.keys)
        features = ", ".join(f.name for f in self.group.features)
        return f"keys: {keys}; event time: {self._event_column}; features: {features}"

    def check_columns(self, columns: tuple[str, ...], where: str) -> None:
        """Reject a whole file (CSV header, Parquet schema) whose columns cannot fit the group.

        Every row of such a file would be rejected for the same reason, so it is
        reported once, before anything is written.
        """
        name = self.group.name
        # Every row has exactly these columns: prepare() need not look for unknown ones.
        self._columns_checked = True
        unknown = [c for c in columns if c not in self.known_columns]
        if unknown and not self._ignore_unknown:
            raise LoadError(
                f"{where}: unknown column(s) {', '.join(unknown)} for group {name!r} "
                f"({self._describe_columns()}); fix the name or pass ignore_unknown_columns"
            )
        present = set(columns)
        missing = [c.name for c in self.group.keys if c.name not in present]
        if self._event_column not in present and self._default_event_ms is None:
            missing.append(self._event_column)
        missing += [n for n, _, when, _ in self._features if when == _REJECT and n not in present]
        if missing:
            raise LoadError(
                f"{where}: missing column(s) {', '.join(missing)} for group {name!r} "
                f"({self._describe_columns()}); a missing event time column needs "
                "default_event_ms"
            )

    def prepare(self, values: Mapping[str, Any]) -> tuple[bytes, int, bytes]:
        """Key bytes, event time (epoch ms) and encoded value of one row; raises RowRejected."""
        if not (self._ignore_unknown or self._columns_checked):
            for column in values:
                if column not in self.known_columns:
                    raise RowRejected(
                        column,
                        f"unknown column {column!r} for group {self.group.name!r}; "
                        "fix the name or pass ignore_unknown_columns",
                    )
        # An empty CSV cell is the only way a CSV row says "no value".
        text = self._text
        key_values: list[KeyValue] = []
        for name, to_key in self._keys:
            raw = values.get(name)
            if raw is None or (text and raw == ""):
                raise RowRejected(name, f"key column {name!r} is missing or empty")
            key_values.append(to_key(raw))
        try:
            key = self._encode_key(key_values)
        except KeyValueError as exc:  # already checked per column; kept as a safety net
            raise RowRejected(self.group.keys[0].name, str(exc)) from None

        raw_time = values.get(self._event_column)
        if raw_time is None or (text and raw_time == ""):
            if self._default_event_ms is None:
                raise RowRejected(
                    self._event_column,
                    f"event time column {self._event_column!r} is missing or empty "
                    "(give epoch ms or ISO-8601, or a default event time)",
                )
            event_ms = self._default_event_ms
        else:
            event_ms = event_time_ms(self._event_column, raw_time)

        record: dict[str, Any] = {}
        for name, convert, when_absent, nullable in self._features:
            raw = values.get(name, _MISSING)
            if raw is _MISSING:
                if when_absent == _REJECT:
                    raise RowRejected(name, f"feature {name!r} is missing and not nullable")
                if when_absent == _NULL:
                    record[name] = None
                continue
            if raw is None or (text and raw == ""):
                if nullable:
                    record[name] = None
                elif raw == "" and name in self._strings:
                    record[name] = ""  # a non-nullable string: an empty cell is ""
                else:
                    raise RowRejected(name, f"feature {name!r} is empty but not nullable")
                continue
            record[name] = convert(raw)
        try:
            value = self._codec.encode(record)
        except EncodeError as exc:
            raise RowRejected(exc.field, str(exc)) from None
        return key, event_ms, value
