"""Request-time values (a feature service's `context`): the requests' EventValue maps ->
each entity's values in the service's order, with ContextError naming the field for a
missing, unknown or mistyped one (docs/derivations.md, "Serving").

No grpc here: snapshots (and their target views) are built by a supervisor before it forks
its workers, when grpc must not be loaded; the service turns a ContextError into
INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fetcher.engine import TargetPlan
from fetcher.expressions import type_name
from fetcher.quoting import quoted, quoted_list
from fetcher.types import FeatureType

_LIST_FIELDS = ("double_values", "int64_values", "string_values", "bool_values", "bytes_values")
# The EventValue kind (or ListValue field) each type takes.
_SCALAR_KIND = {
    FeatureType.DOUBLE: "double_value",
    FeatureType.INT64: "int64_value",
    FeatureType.STRING: "string_value",
    FeatureType.BOOL: "bool_value",
    FeatureType.BYTES: "bytes_value",
}
_LIST_ITEMS = {
    FeatureType.DOUBLE_LIST: "double_values",
    FeatureType.INT64_LIST: "int64_values",
    FeatureType.STRING_LIST: "string_values",
    FeatureType.BOOL_LIST: "bool_values",
    FeatureType.BYTES_LIST: "bytes_values",
}
_KIND_NAME = {
    "double_value": "double", "int64_value": "int64", "string_value": "string",
    "bool_value": "bool", "bytes_value": "bytes",
}
_ITEMS_NAME = {
    "double_values": "double_list", "int64_values": "int64_list",
    "string_values": "string_list", "bool_values": "bool_list", "bytes_values": "bytes_list",
}


class ContextError(ValueError):
    """Request-time values a target refuses: the message names the field (INVALID_ARGUMENT)."""


def _refuse(field: str, message: str) -> ContextError:
    return ContextError(f"{field}: {message}")


def _list_items(value: Any, field: str) -> tuple[str | None, list[Any]]:
    """The ListValue field holding a list value's items (None: empty) and the items."""
    lists = value.list_value
    filled = [name for name in _LIST_FIELDS if len(getattr(lists, name))]
    if len(filled) > 1:
        raise _refuse(f"{field}.list_value",
                      f"items in {' and '.join(filled)}; a list has one item type")
    if not filled:
        return None, []
    return filled[0], list(getattr(lists, filled[0]))


def context_value(value: Any, t: FeatureType, field: str) -> Any:
    """One EventValue as a value of type `t`; an int64 is taken for a double (and int64
    items for a double list), converted to the nearest double."""
    kind = value.WhichOneof("kind")
    items = _LIST_ITEMS.get(t)
    if items is None:
        expected = _SCALAR_KIND[t]
        if kind == expected:
            return getattr(value, kind)
        if t is FeatureType.DOUBLE and kind == "int64_value":
            return float(value.int64_value)
        got = _KIND_NAME.get(kind or "", "no value")
        if kind == "list_value":
            got = _ITEMS_NAME.get(_list_items(value, field)[0] or "", "a list")
        raise _refuse(field, f"expected {type_name(t)}, got {got}")
    if kind == "list_value":
        found, values = _list_items(value, field)
        if found is None or found == items:
            return values
        if t is FeatureType.DOUBLE_LIST and found == "int64_values":
            return [float(v) for v in values]
        raise _refuse(field, f"expected {type_name(t)}, got {_ITEMS_NAME[found]}")
    raise _refuse(field, f"expected {type_name(t)}, got {_KIND_NAME.get(kind or '', 'no value')}")


class ContextReader:
    """Built once per target: checks requests' request-time values against the ones it
    declares, and returns each entity's in declaration order."""

    __slots__ = ("_names", "_specs", "_what", "declares")

    def __init__(self, plan: TargetPlan) -> None:
        self._specs = tuple((c.name, c.type) for c in plan.context)
        self._names = frozenset(name for name, _ in self._specs)
        self.declares = bool(self._specs)
        target = f"{plan.kind.replace('_', ' ')} {plan.name!r}"
        self._what = (
            f"{target} reads " + ", ".join(f"{n}:{type_name(t)}" for n, t in self._specs)
            if self._specs else f"{target} reads no request-time values"
        )

    def refuse_any(self, values: Any, field: str) -> None:
        """Raise when `values` (an EventValue map) is not empty: for a target without context."""
        if len(values):
            raise _refuse(field, f"{self._what}; remove {quoted_list(sorted(values))}")

    def _unknown(self, values: Any, field: str) -> None:
        extra = sorted(name for name in values if name not in self._names)
        if extra:
            raise _refuse(field, f"unknown request-time value(s) {quoted_list(extra)}; "
                          f"{self._what}")

    def one(self, values: Any, field: str = "context") -> list[Any]:
        """One entity's values (GetFeatures); none for a target that declares none."""
        if not self.declares:
            self.refuse_any(values, field)
            return []
        out: list[Any] = []
        for name, t in self._specs:
            value = values.get(name)
            if value is None:
                self._unknown(values, field)
                raise _refuse(field, f"missing {quoted(name)}; {self._what}")
            out.append(context_value(value, t, f"{field}[{quoted(name)}]"))
        if len(values) != len(out):
            self._unknown(values, field)
        return out

    def many(self, defaults: Any, entities: Sequence[Any]) -> list[list[Any]] | None:
        """Each entity's values (GetBatchFeatures): its own `context` over the request's,
        name by name. None for a target that declares none (having checked none is sent)."""
        if not self.declares:
            self.refuse_any(defaults, "context")
            for index, entity in enumerate(entities):
                self.refuse_any(entity.context, f"entities[{index}].context")
            return None
        self._unknown(defaults, "context")
        shared: dict[str, Any] = {
            name: context_value(defaults[name], t, f"context[{quoted(name)}]")
            for name, t in self._specs if name in defaults
        }
        complete = [shared[name] for name, _ in self._specs] if len(shared) == len(
            self._specs) else None
        out: list[list[Any]] = []
        for index, entity in enumerate(entities):
            own = entity.context
            if not own and complete is not None:
                out.append(complete)  # read only: every such entity shares it
                continue
            field = f"entities[{index}].context"
            row: list[Any] = []
            matched = 0
            for name, t in self._specs:
                value = own.get(name)
                if value is not None:
                    matched += 1
                    row.append(context_value(value, t, f"{field}[{quoted(name)}]"))
                elif name in shared:
                    row.append(shared[name])
                else:
                    self._unknown(own, field)
                    raise _refuse(field, f"missing {quoted(name)} (set it in the entity's or "
                                  f"the request's context); {self._what}")
            if matched != len(own):
                self._unknown(own, field)
            out.append(row)
        return out
