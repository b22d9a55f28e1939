"""An aggregation group's `aggregations` object (docs/configuration.md "Aggregation group"):
its columns, operations and features checked, and turned into an AggregationSpec.

The rules of which operation fits which column and what it outputs are
fetcher.aggregation's (the compiler checks definitions with the same ones); every accepted
operation gets its operator built here once, so a catalog that fetcher.aggregation cannot
serve is refused at load, not at the first fetch.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from typing import Any

from fetcher.aggregation import (
    COLUMN_TYPES,
    K_OPERATIONS,
    OPERATIONS,
    operator_for,
    output_type,
    served_type,
    unfit,
)
from fetcher.catalog._fields import Problems, Spec, check_fields
from fetcher.types import (
    AggregateColumn,
    AggregateFeature,
    AggregateOperation,
    AggregationSpec,
    Feature,
    FeatureType,
)

DEFAULT_MAX_EVENTS = 10_000
# A served feature name: an Avro name, as a plain group's features are.
FEATURE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# BYTES_LIST only comes from Feast's views (docs/feast.md).
_FEATURE_TYPES = {t.name.lower(): t for t in FeatureType if t is not FeatureType.BYTES_LIST}
_SERVABLE = tuple(op for op in OPERATIONS if op != "histogram")
_A = "aggregations."

AGGREGATIONS_SPEC: Spec = {
    "columns": ((list,), True, None, 'a list like [{"name": "amount", "type": "double"}]'),
    "operations": ((list,), True, None, 'a list like [{"column": "amount", "operation": "sum", '
                   '"hop_seconds": 3600, "span_seconds": 86400}]'),
    "features": ((list,), True, None, 'a list like [{"name": "amount_sum_1d", "type": "double", '
                 '"operation": 0, "window_seconds": 86400}]'),
    "max_events": ((int,), False, DEFAULT_MAX_EVENTS, "a positive whole number, e.g. 10000"),
}
_COLUMN_SPEC: Spec = {
    "name": ((str,), True, None, "the event column's name"),
    "type": ((str,), True, None, f"one of {', '.join(COLUMN_TYPES)}"),
}
_OPERATION_SPEC: Spec = {
    "column": ((str,), True, None, "the name of one of aggregations.columns"),
    "operation": ((str,), True, None, f"one of {', '.join(_SERVABLE)}"),
    "hop_seconds": ((int,), True, None, "the tile size, a positive whole number of seconds"),
    "span_seconds": ((int, None), True, None,
                     "the longest window it serves in seconds, or null for the unbounded window"),
    "k": ((int, None), False, None, "a positive whole number (first_k, last_k, top_k, bottom_k)"),
    "percentiles": ((list, None), False, None, "a list of numbers in [0, 1], e.g. [0.5, 0.99]"),
}
_FEATURE_SPEC: Spec = {
    "name": ((str,), True, None, "the served feature's name"),
    "type": ((str,), True, None, f"one of {', '.join(_FEATURE_TYPES)}"),
    "operation": ((int,), True, None, "an index into aggregations.operations"),
    "window_seconds": ((int, None), True, None,
                       "the window in seconds, or null for the unbounded window"),
}


def _is_number(x: Any) -> bool:
    return type(x) in (int, float)


def _columns(raw: list[Any], keys: Collection[str], rel: str,
             p: Problems) -> dict[str, AggregateColumn] | None:
    if not raw:
        p.add(rel, f"{_A}columns", "is empty",
              'list the events\' input columns, e.g. {"name": "amount", "type": "double"}')
        return None
    columns: dict[str, AggregateColumn] = {}
    ok = True
    for i, item in enumerate(raw):
        where = f"{_A}columns[{i}]"
        v = check_fields(item, _COLUMN_SPEC, rel, f"{where}.", p)
        if v is None:
            ok = False
        elif not v["name"]:
            p.add(rel, f"{where}.name", "is empty", "name the column")
            ok = False
        elif v["name"] in columns:
            p.add(rel, f"{where}.name", f"{v['name']!r} is listed twice", "remove the duplicate")
            ok = False
        elif v["name"] in keys:
            p.add(rel, f"{where}.name", f"{v['name']!r} is a key column",
                  "remove it: the key is not an input of the aggregations")
            ok = False
        elif v["type"] not in COLUMN_TYPES:
            p.add(rel, f"{where}.type", f"{v['type'][:40]!r} is not a column type",
                  f"use one of {', '.join(COLUMN_TYPES)}")
            ok = False
        else:
            columns[v["name"]] = AggregateColumn(v["name"], v["type"])
    return columns if ok else None


def _operation_name(value: str, where: str, rel: str, p: Problems) -> bool:
    if value == "histogram":
        p.add(rel, where, "histogram outputs a map of value -> count, which no feature type "
              "holds: an aggregation group cannot serve it",
              "use top_k (the k largest values) or approx_percentile for a servable summary")
        return False
    if value not in OPERATIONS:
        close = difflib.get_close_matches(value, OPERATIONS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        p.add(rel, where, f"{value[:40]!r} is not an operation",
              f"{hint}use one of {', '.join(_SERVABLE)}")
        return False
    return True


def _k_and_percentiles(v: dict[str, Any], op: str, where: str, rel: str,
                       p: Problems) -> bool:
    ok = True
    if op in K_OPERATIONS:
        if v["k"] is None or v["k"] <= 0:
            p.add(rel, f"{where}.k", f"{op} needs k > 0, got {v['k']}",
                  "set k to the number of values to keep, e.g. 5")
            ok = False
    elif v["k"] is not None:
        p.add(rel, f"{where}.k", f"k is only for first_k, last_k, top_k, bottom_k, not {op}",
              "remove k")
        ok = False
    ps = v["percentiles"]
    if op == "approx_percentile":
        if not ps or not all(_is_number(x) and 0 <= x <= 1 for x in ps):
            shown = "null" if ps is None else str(ps)[:40]
            p.add(rel, f"{where}.percentiles",
                  f"approx_percentile needs a non-empty list of numbers in [0, 1], got {shown}",
                  "write e.g. [0.5, 0.9, 0.99]")
            ok = False
    elif ps is not None:
        p.add(rel, f"{where}.percentiles",
              f"percentiles are only for approx_percentile, not {op}", "remove percentiles")
        ok = False
    return ok


def _operation(item: Any, i: int, columns: dict[str, AggregateColumn] | None, rel: str,
               p: Problems) -> AggregateOperation | None:
    where = f"{_A}operations[{i}]"
    v = check_fields(item, _OPERATION_SPEC, rel, f"{where}.", p)
    if v is None:
        return None
    op = v["operation"]
    ok = _operation_name(op, f"{where}.operation", rel, p)
    column = columns.get(v["column"]) if columns is not None else None
    if columns is not None and column is None:
        p.add(rel, f"{where}.column", f"{v['column'][:40]!r} is not one of aggregations.columns",
              f"use one of {', '.join(columns)}, or add the column")
        ok = False
    if ok and column is not None:
        why = unfit(op, column.type)
        if why is not None:
            p.add(rel, f"{where}.operation", f"{why}; {column.name!r} is {column.type}",
                  "pick an operation that fits the column (count fits any)")
            ok = False
    if v["hop_seconds"] <= 0:
        p.add(rel, f"{where}.hop_seconds", f"{v['hop_seconds']} is not positive",
              "use the tile size in seconds, e.g. 3600")
        ok = False
    span = v["span_seconds"]
    if span is not None and span <= 0:
        p.add(rel, f"{where}.span_seconds", f"{span} is not positive",
              "use the longest window in seconds, or null for the unbounded window")
        ok = False
    if op in OPERATIONS:
        ok = _k_and_percentiles(v, op, where, rel, p) and ok
    if not ok or column is None:
        return None
    percentiles = tuple(float(x) for x in v["percentiles"]) if v["percentiles"] else None
    try:
        operator_for(op, column.type, k=v["k"], percentiles=percentiles)
    except ValueError as exc:  # the catalog accepted what fetcher.aggregation cannot build
        p.add(rel, where, f"fetcher.aggregation has no operator for it: {exc}",
              "report it: the catalog's rules and fetcher.aggregation disagree")
        return None
    return AggregateOperation(column.name, op, v["hop_seconds"] * 1000,
                              None if span is None else span * 1000, v["k"], percentiles)


def _operations(raw: list[Any], columns: dict[str, AggregateColumn] | None, rel: str,
                p: Problems) -> list[AggregateOperation | None]:
    if not raw:
        p.add(rel, f"{_A}operations", "is empty", "list the states kept per key, e.g. "
              '{"column": "amount", "operation": "sum", "hop_seconds": 3600, '
              '"span_seconds": 86400}')
        return []
    out: list[AggregateOperation | None] = []
    seen: dict[tuple[Any, ...], int] = {}
    for i, item in enumerate(raw):
        op = _operation(item, i, columns, rel, p)
        out.append(op)
        if op is None:
            continue
        # Alike: the same state (a bounded one serves every window up to its span).
        alike = (op.column, op.operation, op.k, op.percentiles, op.hop_ms, op.span_ms is None)
        first = seen.setdefault(alike, i)
        if first != i:
            p.add(rel, f"{_A}operations[{i}]", f"is the same state as operations[{first}] "
                  f"({op.operation} of {op.column!r} at hop {op.hop_ms // 1000} s)",
                  f"remove it, give operations[{first}] the longer span, and point the "
                  f"features at operations[{first}]")
    return out


def _feature(item: Any, i: int, ops: list[AggregateOperation | None],
             columns: dict[str, AggregateColumn], keys: Collection[str], names: set[str],
             rel: str, p: Problems) -> tuple[Feature, AggregateFeature] | None:
    where = f"{_A}features[{i}]"
    v = check_fields(item, _FEATURE_SPEC, rel, f"{where}.", p)
    if v is None:
        return None
    ok = True
    name = v["name"]
    if not FEATURE_NAME_RE.match(name):
        p.add(rel, f"{where}.name", f"{name[:40]!r} is not a feature name",
              "use letters, digits and _, not starting with a digit")
        ok = False
    elif name in keys:
        p.add(rel, f"{where}.name", f"{name!r} has the name of a key column",
              "rename the feature: a vector's names and the key's must not clash")
        ok = False
    elif name in names:
        p.add(rel, f"{where}.name", f"{name!r} is listed twice", "give each feature its own name")
        ok = False
    names.add(name)
    kind = _FEATURE_TYPES.get(v["type"])
    if kind is None:
        p.add(rel, f"{where}.type", f"{v['type'][:40]!r} is not a feature type",
              f"use one of {', '.join(_FEATURE_TYPES)}")
        ok = False
    index = v["operation"]
    if not 0 <= index < len(ops):
        p.add(rel, f"{where}.operation", f"{index} is not an index into aggregations.operations "
              f"({len(ops)} of them)", f"use 0 to {len(ops) - 1}" if ops else "add operations")
        return None
    op = ops[index]
    window = v["window_seconds"]
    if op is None:
        return None  # its operation's problems are reported
    if window is not None and window <= 0:
        p.add(rel, f"{where}.window_seconds", f"{window} is not positive",
              "use the window in seconds, or null for the unbounded window")
        ok = False
    elif op.span_ms is None and window is not None:
        p.add(rel, f"{where}.window_seconds", f"operations[{index}] is unbounded (span_seconds "
              f"null), so the window must be null, not {window}",
              "set window_seconds to null, or point at an operation with a span")
        ok = False
    elif op.span_ms is not None and window is None:
        p.add(rel, f"{where}.window_seconds", f"null is the unbounded window, but "
              f"operations[{index}] keeps only {op.span_ms // 1000} s",
              "give the window in seconds (at most the span), or point at an unbounded "
              "operation (span_seconds null)")
        ok = False
    elif op.span_ms is not None and window is not None and window * 1000 > op.span_ms:
        p.add(rel, f"{where}.window_seconds", f"{window} s is longer than the span of "
              f"operations[{index}] ({op.span_ms // 1000} s)",
              f"raise that operation's span_seconds to {window}, or shorten the window")
        ok = False
    produced = output_type(op.operation, columns[op.column].type)
    served = served_type(produced) if produced is not None else None
    if kind is not None and served is not None and kind is not served:
        p.add(rel, f"{where}.type", f"is {v['type']}, but {op.operation} of {op.column!r} "
              f"({columns[op.column].type}) outputs {served.name.lower()}",
              f'set type to "{served.name.lower()}"')
        ok = False
    if not ok or kind is None:
        return None
    return (Feature(name, kind, nullable=True),
            AggregateFeature(name, index, None if window is None else window * 1000))


def parse_aggregations(raw: dict[str, Any], keys: Collection[str], rel: str,
                       p: Problems) -> tuple[tuple[Feature, ...], AggregationSpec] | None:
    """The served features and the spec of an `aggregations` object, or None once reported."""
    v = check_fields(raw, AGGREGATIONS_SPEC, rel, _A, p)
    if v is None:
        return None
    before = len(p.items)
    if v["max_events"] <= 0:
        p.add(rel, f"{_A}max_events", f"{v['max_events']} is not positive",
              f"use the most events one fetch reads per key, e.g. {DEFAULT_MAX_EVENTS}")
    columns = _columns(v["columns"], keys, rel, p)
    ops = _operations(v["operations"], columns, rel, p)
    features: list[tuple[Feature, AggregateFeature]] = []
    if not v["features"]:
        p.add(rel, f"{_A}features", "is empty", "list the served features, e.g. "
              '{"name": "amount_sum_1d", "type": "double", "operation": 0, '
              '"window_seconds": 86400}')
    names: set[str] = set()
    for i, item in enumerate(v["features"]):
        if columns is None:
            break  # every operation's column is unknown: its features cannot be checked
        parsed = _feature(item, i, ops, columns, keys, names, rel, p)
        if parsed is not None:
            features.append(parsed)
    if len(p.items) > before or columns is None:
        return None
    spec = AggregationSpec(
        columns=tuple(columns.values()),
        operations=tuple(op for op in ops if op is not None),
        features=tuple(f for _, f in features),
        max_events=v["max_events"],
    )
    return tuple(f for f, _ in features), spec
