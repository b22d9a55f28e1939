"""An online group-by with aggregations as the catalog's `aggregations` object
(docs/configuration.md "Aggregation group"): its columns, operations and features.

One operation per distinct (column, operation, k, percentiles, hop) of the bounded windows,
its span the longest of them; the unbounded window has an operation of its own (span null).
Operations are numbered in the order their first feature is written (aggregations, then
windows), columns follow the source's select order: the same definitions give the same
object, which is also the layout stored batch parts and events are read by (stage 4).
"""

from __future__ import annotations

from typing import Any

from fetcher.compiler._model import GroupModel
from fetcher.compiler._types import feature_type, parse_duration

MAX_EVENTS = 10_000  # the catalog's default; definitions do not set it (yet)


def _seconds(text: str | None) -> int | None:
    return None if text is None else parse_duration(text)


def aggregations_object(g: GroupModel) -> dict[str, Any]:
    """The `aggregations` object of `g`'s group file (its features are all aggregations)."""
    aggs = list(g.obj.aggregations or ())
    operations: list[dict[str, Any]] = []
    index: dict[tuple[Any, ...], int] = {}
    features: list[dict[str, Any]] = []
    used: set[str] = set()
    for f in g.features:
        assert f.aggregation is not None and f.operation is not None and f.tile is not None
        agg = aggs[f.aggregation]
        window, hop = _seconds(f.window), _seconds(f.tile)
        k = agg.k
        percentiles = (tuple(float(p) for p in agg.percentiles)
                       if agg.percentiles is not None else None)
        key = (f.source_column, f.operation, k, percentiles, hop, window is None)
        at = index.get(key)
        if at is None:
            at = index[key] = len(operations)
            op: dict[str, Any] = {"column": f.source_column, "operation": f.operation,
                                  "hop_seconds": hop, "span_seconds": window}
            if k is not None:
                op["k"] = k
            if percentiles is not None:
                op["percentiles"] = list(percentiles)
            operations.append(op)
        elif window is not None:
            operations[at]["span_seconds"] = max(operations[at]["span_seconds"], window)
        used.add(f.source_column)
        served = feature_type(f.column.type)
        assert served is not None  # stage 1 refuses an online histogram
        features.append({"name": f.name, "type": served.name.lower(), "operation": at,
                         "window_seconds": window})
    columns = [{"name": n, "type": c.type} for n, c in g.sources[0].columns if n in used]
    return {"columns": columns, "operations": operations, "features": features,
            "max_events": MAX_EVENTS}


def layout(aggregations: dict[str, Any]) -> dict[str, Any]:
    """What stored data is laid out by: the columns (events) and operations (batch parts)."""
    return {"columns": aggregations["columns"], "operations": aggregations["operations"]}
