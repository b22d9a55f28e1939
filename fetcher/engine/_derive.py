"""Derived features of a feature service: its derivations compiled once per snapshot, then
evaluated column by column over a batch's merged vectors and appended to each vector as one
more row (docs/derivations.md, "Serving").

The inputs are read back out of the merged vectors (the statuses the client is sent: a
missing row is NOT_FOUND, a stale one OUTSIDE_MAX_AGE) with the api layer's reader, so the
engine stays free of protobuf types; the derived row is written here, columnar: doubles,
int64s and bools by hand, the rarer strings, bytes and lists through the api's encoder.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

from fetcher.engine._rows import (
    LIST_FIELD,
    SLOT_OF_TYPE,
    GroupRow,
    ValuesEncoder,
    event_field,
    varint,
)
from fetcher.expressions import CompiledDerivations, DerivedColumn, InputColumn, compile_derivations
from fetcher.types import ContextValue, Derivation, Feature, FeatureType, Status


class Pick(NamedTuple):
    """Where one input feature sits in a merged vector."""

    feature: int  # its position among the vector's features (and statuses)
    field: str  # the FeatureVector field of its value ("double_values", ...)
    position: int  # its index in that field
    items: str | None  # for a list feature, the ListValue field of its items


#: Reads input columns back out of vectors' wire bytes (the api layer provides it:
#: fetcher.api.read_columns): wires, picks -> one (values, statuses) column per pick, the
#: values in the type's Python form (lists as lists), the statuses as bytes.
ColumnReader = Callable[[Sequence[bytes], Sequence[Pick]], list[tuple[list[Any], bytes]]]

_FIELD_OF_SLOT = ("double_values", "int64_values", "string_values", "bool_values",
                  "bytes_values", "list_values")
_ZERO: dict[FeatureType, Any] = {
    FeatureType.DOUBLE: 0.0, FeatureType.INT64: 0, FeatureType.STRING: "",
    FeatureType.BOOL: False, FeatureType.BYTES: b"",
}
_TAG_STATUSES = b"\x0a"
_TAG_DOUBLES = b"\x12"
_TAG_INT64S = b"\x1a"
_TAG_BOOLS = b"\x2a"
_PRESENT = bytes([Status.PRESENT])
_ERROR = int(Status.ERROR)


class DerivedPlan:
    """One service's derivations, compiled once per snapshot, and how its vectors feed them.

    `rows` computes the derived row of every entity of a batch; a row that fails in a
    derivation (a division by zero...) is ERROR in that derivation only.
    """

    __slots__ = ("_body", "_context_inputs", "_error_body", "_event_joins", "_picks", "_read",
                 "_status_head", "compiled", "context", "expressions", "features")

    def __init__(
        self,
        derivations: Sequence[Derivation],
        context: Sequence[ContextValue],
        vector_features: Sequence[tuple[Feature, int]],
        read_columns: ColumnReader,
        encode_values: ValuesEncoder,
    ) -> None:
        """`vector_features`: the service's features in vector order, each with the index of
        the join it comes from (prefixes applied)."""
        inputs: dict[str, FeatureType] = {f.name: f.type for f, _ in vector_features}
        inputs.update((c.name, c.type) for c in context)
        self.compiled: CompiledDerivations = compile_derivations(
            [(d.name, d.expression) for d in derivations], inputs)
        self.context = tuple(context)
        self.features = tuple(Feature(d.name, d.type, nullable=True) for d in derivations)
        # Derived feature name -> its expression (for listings).
        self.expressions = {d.name: d.expression for d in derivations}
        self._read = read_columns
        # Where each input the derivations read comes from: a vector pick or a context value.
        picks: list[tuple[str, Pick]] = []
        joins: set[int] = set()
        counts = [0] * len(_FIELD_OF_SLOT)
        for index, (feature, join) in enumerate(vector_features):
            slot = SLOT_OF_TYPE[feature.type]
            if feature.name in self.compiled.inputs:
                picks.append((feature.name, Pick(index, _FIELD_OF_SLOT[slot], counts[slot],
                                                 LIST_FIELD.get(feature.type))))
                joins.add(join)
            counts[slot] += 1
        self._picks = tuple(picks)
        self._context_inputs = tuple(
            (c.name, i) for i, c in enumerate(self.context) if c.name in self.compiled.inputs)
        # The joins whose event times make the derived row's: those of the features read.
        self._event_joins = tuple(sorted(joins))
        self._status_head = _TAG_STATUSES + varint(len(self.features))
        self._body = _BodyWriter(self.features, encode_values)
        self._error_body = self._body.zero_row()

    def event_times(self, found: Sequence[Any], width: int, n: int) -> list[int]:
        """Each entity's derived event time: the newest of the read joins' rows (0: none).

        `found[i * width + j]` is join j's lookup result for entity i.
        """
        columns = [
            [r[0] if r.__class__ is GroupRow else 0 for r in found[j::width]]
            for j in self._event_joins
        ]
        if not columns:
            return [0] * n
        if len(columns) == 1:
            return columns[0]
        return list(map(max, *columns))

    def evaluate(self, wires: Sequence[bytes],
                 contexts: Sequence[Sequence[Any]] | None) -> dict[str, DerivedColumn]:
        """Every derivation over the entities of `wires` (their merged vectors) with their
        request-time values (`contexts[i]`: entity i's, in `self.context` order)."""
        n = len(wires)
        columns: dict[str, InputColumn] = {}
        if self._picks:
            read = self._read(wires, [pick for _, pick in self._picks])
            for (name, _), (values, statuses) in zip(self._picks, read, strict=True):
                columns[name] = InputColumn(values, statuses)
        if self._context_inputs:
            if contexts is None or len(contexts) != n:
                raise ValueError(f"{n} entities need {n} rows of request-time values")
            present = _PRESENT * n
            for name, position in self._context_inputs:
                columns[name] = InputColumn(list(map(operator.itemgetter(position), contexts)),
                                            present)
        return self.compiled.evaluate(columns, n)

    def rows(self, wires: Sequence[bytes], contexts: Sequence[Sequence[Any]] | None,
             event_ms: Sequence[int]) -> list[bytes]:
        """The derived row of each entity as FeatureVector wire bytes (append it to the
        entity's merged vector). Raises only on a bug (then use `error_rows`)."""
        n = len(wires)
        derived = self.evaluate(wires, contexts)
        columns = [derived[f.name] for f in self.features]
        head = self._status_head
        present = _PRESENT * n
        statuses: Iterable[bytes]
        if all(c.statuses == present for c in columns):
            statuses = repeat(head + _PRESENT * len(columns), n)  # the usual batch
        else:
            statuses = [head + bytes(row) for row in zip(*(c.statuses for c in columns),
                                                         strict=True)]
        bodies = self._body.rows(columns, n)
        # Rows of one batch job share their event times: one varint per distinct time.
        fields = {ms: event_field(ms) for ms in set(event_ms)}
        events = map(fields.__getitem__, event_ms)
        return list(map(b"".join, zip(statuses, bodies, events, strict=True)))

    def error_rows(self, event_ms: Sequence[int]) -> list[bytes]:
        """Every derived feature ERROR (zero values): the rows of a batch that failed."""
        start = self._status_head + bytes([_ERROR] * len(self.features)) + self._error_body
        return [start + event_field(ms) for ms in event_ms]


class _BodyWriter:
    """The value fields of derived rows, written for a whole batch at once."""

    __slots__ = ("_bools", "_count", "_doubles", "_encode", "_int64s", "_others", "_pack")

    def __init__(self, features: Sequence[Feature], encode_values: ValuesEncoder) -> None:
        self._encode = encode_values
        self._doubles = tuple(i for i, f in enumerate(features) if f.type is FeatureType.DOUBLE)
        self._int64s = tuple(i for i, f in enumerate(features) if f.type is FeatureType.INT64)
        self._bools = tuple(i for i, f in enumerate(features) if f.type is FeatureType.BOOL)
        # Strings, bytes and lists: FeatureVector field -> (feature index, ListValue field).
        others: dict[str, list[tuple[int, str | None, Any]]] = {}
        for i, f in enumerate(features):
            if f.type in (FeatureType.DOUBLE, FeatureType.INT64, FeatureType.BOOL):
                continue
            items = LIST_FIELD.get(f.type)
            others.setdefault(_FIELD_OF_SLOT[SLOT_OF_TYPE[f.type]], []).append(
                (i, items, () if items is not None else _ZERO[f.type]))
        self._others = tuple((field, tuple(specs)) for field, specs in others.items())
        pack = struct.Struct(f"<{len(self._doubles)}d").pack
        head = _TAG_DOUBLES + varint(8 * len(self._doubles))
        self._pack: Callable[..., bytes] = lambda *values: head + pack(*values)
        self._count = len(features)

    def zero_row(self) -> bytes:
        """The body of one row whose every value is not PRESENT."""
        columns = [DerivedColumn([None], b"") for _ in range(self._count)]
        return self.rows(columns, 1)[0]

    def rows(self, columns: Sequence[DerivedColumn], n: int) -> list[bytes]:
        """Each row's value fields (None, where not PRESENT, is written as the zero value)."""
        parts: list[Sequence[bytes]] = []
        if self._doubles:
            parts.append(list(map(self._pack, *(
                _filled(columns[i].values, 0.0) for i in self._doubles))))
        if self._int64s:
            encoded = [list(map(varint, _filled(columns[i].values, 0))) for i in self._int64s]
            parts.append([_TAG_INT64S + varint(len(body)) + body
                          for body in map(b"".join, zip(*encoded, strict=True))])
        if self._bools:
            head = _TAG_BOOLS + varint(len(self._bools))
            parts.append([head + bytes(row) for row in zip(
                *(_filled(columns[i].values, False) for i in self._bools), strict=True)])
        if self._others:
            parts.append(self._other_rows(columns, n))
        if not parts:
            return [b""] * n
        if len(parts) == 1:
            return list(parts[0])
        return list(map(b"".join, zip(*parts, strict=True)))

    def _other_rows(self, columns: Sequence[DerivedColumn], n: int) -> list[bytes]:
        out: list[bytes] = []
        for row in range(n):
            fields: dict[str, Any] = {}
            for field, specs in self._others:
                values: list[Any] = []
                for index, items, zero in specs:
                    value = columns[index].values[row]
                    if items is not None:
                        values.append((items, () if value is None else value))
                    else:
                        values.append(zero if value is None else value)
                fields[field] = values
            out.append(self._encode(fields))
        return out


def _filled(values: list[Any], zero: Any) -> list[Any]:
    """`values` with `zero` where not PRESENT (None); as they are when all are."""
    if None not in values:
        return values
    return [zero if v is None else v for v in values]


def derived_plan(
    derivations: Sequence[Derivation],
    context: Sequence[ContextValue],
    vector_features: Sequence[tuple[Feature, int]],
    read_columns: ColumnReader | None,
    encode_values: ValuesEncoder,
) -> DerivedPlan | None:
    """The DerivedPlan of a service, None when it has no derivations."""
    if not derivations:
        return None
    if read_columns is None:
        raise ValueError("a service with derivations needs the api layer's column reader")
    return DerivedPlan(derivations, context, vector_features, read_columns, encode_values)


__all__ = ["ColumnReader", "DerivedPlan", "Pick", "derived_plan"]
