"""Aggregation core: operation states, their byte encodings and the window arithmetic.

Pure: imports only fetcher.types and datasketches. The engine (fetch-time merge) and the
writers (tiles, batch parts) both build on it; docs/aggregations.md has the semantics. The
rules of which operation fits which column (`unfit`, `output_type`) are here too, so the
compiler and the catalog check definitions and aggregation groups with the same ones.
"""

from __future__ import annotations

from typing import Any

from fetcher.aggregation._collections import Histogram, KeepK, UniqueCount
from fetcher.aggregation._decoded import DecodedStates
from fetcher.aggregation._encoding import FORMAT_VERSION, StateDecodeError
from fetcher.aggregation._operations import (
    INT64_MAX,
    INT64_MIN,
    AggregateOverflowError,
    Count,
    Extreme,
    FirstLast,
    MomentsOperator,
    Sum,
)
from fetcher.aggregation._operator import Operator
from fetcher.aggregation._rules import (
    COLUMN_TYPES,
    INTEGER,
    K_OPERATIONS,
    LIST_ITEMS,
    NUMERIC,
    OPERATIONS,
    ORDERED,
    SCALAR_COLUMNS,
    is_list,
    list_of,
    output_type,
    served_type,
    unfit,
)
from fetcher.aggregation._serving import (
    Computed,
    EventCodec,
    EventValueError,
    GroupAggregator,
    check_value,
)
from fetcher.aggregation._sketches import ApproxPercentile, ApproxUniqueCount
from fetcher.aggregation._windows import (
    Window,
    default_hop_ms,
    read_tiles,
    tile_start,
    window_start,
)
from fetcher.types import AggregationSpec

DEFAULT_LIMIT = 10_000
"""The most distinct values unique_count and histogram keep before reporting NULL."""


def aggregator_for(spec: AggregationSpec) -> GroupAggregator:
    """The aggregator of a validated spec: one operator per operation."""
    types = {c.name: c.type for c in spec.columns}
    operators = [
        operator_for(op.operation, types[op.column], k=op.k, percentiles=op.percentiles)
        for op in spec.operations
    ]
    return GroupAggregator(spec, operators)


def operator_for(
    operation: str,
    column_type: str,
    *,
    k: int | None = None,
    percentiles: tuple[float, ...] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Operator[Any]:
    """The operator of `operation` (an Operation's value) over a column of `column_type`.

    The compiler and the catalog have already checked that they fit (`unfit`); this raises
    ValueError when they do not.
    """
    if operation == "count":
        return Count()
    if operation == "sum":
        return Sum(column_type in INTEGER)
    if operation in ("average", "variance", "stddev"):
        return MomentsOperator(operation)
    if operation in ("min", "max"):
        return Extreme(operation == "max")
    if operation in ("first", "last"):
        return FirstLast(operation == "last")
    if operation in ("first_k", "last_k", "top_k", "bottom_k"):
        if k is None:
            raise ValueError(f"{operation} needs k")
        return KeepK(operation, k)
    if operation == "unique_count":
        return UniqueCount(limit)
    if operation == "histogram":
        return Histogram(limit)
    if operation == "approx_unique_count":
        return ApproxUniqueCount()
    if operation == "approx_percentile":
        if percentiles is None:
            raise ValueError("approx_percentile needs percentiles")
        return ApproxPercentile(tuple(float(p) for p in percentiles))
    raise ValueError(f"{operation!r:.40} is not an aggregation operation")


__all__ = [
    "COLUMN_TYPES",
    "DEFAULT_LIMIT",
    "FORMAT_VERSION",
    "INT64_MAX",
    "INT64_MIN",
    "INTEGER",
    "K_OPERATIONS",
    "LIST_ITEMS",
    "NUMERIC",
    "OPERATIONS",
    "ORDERED",
    "SCALAR_COLUMNS",
    "AggregateOverflowError",
    "ApproxPercentile",
    "ApproxUniqueCount",
    "Computed",
    "Count",
    "DecodedStates",
    "EventCodec",
    "EventValueError",
    "Extreme",
    "FirstLast",
    "GroupAggregator",
    "Histogram",
    "KeepK",
    "MomentsOperator",
    "Operator",
    "StateDecodeError",
    "Sum",
    "UniqueCount",
    "Window",
    "aggregator_for",
    "check_value",
    "default_hop_ms",
    "is_list",
    "list_of",
    "operator_for",
    "output_type",
    "read_tiles",
    "served_type",
    "tile_start",
    "unfit",
    "window_start",
]
