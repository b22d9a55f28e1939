"""Which operation fits which column, and what it outputs: the rules the compiler checks
definitions with and the catalog checks aggregation groups with (one copy of them).

Operations are named by their values ("sum", "first_k"), the values of
fetcher.definitions.Operation, which this layer does not import (the serving path imports
it, and never the definitions). Column types are the compiler's vocabulary: `int64`,
`int32`, `double`, `float`, `string`, `bool`, `bytes` and `list<T>` of all but bytes.
"""

from __future__ import annotations

from fetcher.types import FeatureType

# In the order of the state encodings' tags (docs/aggregations.md): count 1 ... histogram 17.
OPERATIONS = (
    "count", "sum", "average", "min", "max", "variance", "stddev", "first", "last",
    "first_k", "last_k", "top_k", "bottom_k", "unique_count", "approx_unique_count",
    "approx_percentile", "histogram",
)  # fmt: skip
K_OPERATIONS = frozenset({"first_k", "last_k", "top_k", "bottom_k"})

SCALAR_COLUMNS = ("int64", "int32", "double", "float", "string", "bool", "bytes")
# Item types a list column may have (FeatureType has no list of bytes).
LIST_ITEMS = ("int64", "int32", "double", "float", "string", "bool")
COLUMN_TYPES = (*SCALAR_COLUMNS, *(f"list<{t}>" for t in LIST_ITEMS))
INTEGER = frozenset({"int64", "int32"})
NUMERIC = INTEGER | {"double", "float"}
ORDERED = NUMERIC | {"string"}

_SERVED: dict[str, FeatureType] = {
    "int64": FeatureType.INT64,
    "int32": FeatureType.INT64,
    "double": FeatureType.DOUBLE,
    "float": FeatureType.DOUBLE,
    "string": FeatureType.STRING,
    "bool": FeatureType.BOOL,
    "bytes": FeatureType.BYTES,
    "list<int64>": FeatureType.INT64_LIST,
    "list<int32>": FeatureType.INT64_LIST,
    "list<double>": FeatureType.DOUBLE_LIST,
    "list<float>": FeatureType.DOUBLE_LIST,
    "list<string>": FeatureType.STRING_LIST,
    "list<bool>": FeatureType.BOOL_LIST,
}

_NUMERIC_OPS = frozenset({"sum", "average", "variance", "stddev", "approx_percentile"})
_DOUBLE_OPS = frozenset({"average", "variance", "stddev"})
_COUNT_OPS = frozenset({"count", "unique_count", "approx_unique_count"})
_ORDERED_OPS = frozenset({"min", "max", "top_k", "bottom_k"})
# Operations that take a list value whole (the others read scalars).
_WHOLE_VALUE_OPS = _COUNT_OPS | {"first", "last"}


def is_list(column_type: str) -> bool:
    """True for `list<T>` column types."""
    return column_type.startswith("list<")


def list_of(column_type: str) -> str | None:
    """`list<T>` for a scalar T that has a list type, else None."""
    return f"list<{column_type}>" if column_type in LIST_ITEMS else None


def served_type(column_type: str) -> FeatureType | None:
    """The FeatureType a value of `column_type` is served as (int32 -> INT64, float -> DOUBLE)."""
    return _SERVED.get(column_type)


def unfit(operation: str, column_type: str) -> str | None:
    """Why `operation` cannot aggregate a column of `column_type` (None: it can)."""
    if operation in _NUMERIC_OPS and column_type not in NUMERIC:
        return f"{operation} needs a numeric column (int64, int32, double, float)"
    if operation in _ORDERED_OPS and column_type not in ORDERED:
        return f"{operation} needs a numeric or string column"
    if operation in K_OPERATIONS and list_of(column_type) is None:
        return f"{operation} needs a scalar column other than bytes (its output is a list)"
    if operation == "histogram" and column_type not in ("string", "int64", "int32"):
        return "histogram needs a string or integer column"
    if operation not in _WHOLE_VALUE_OPS and is_list(column_type):
        return f"{operation} of a list column is not defined"
    return None


def output_type(operation: str, column_type: str) -> str | None:
    """The column type `operation` outputs over a column (None: histogram's map, no type)."""
    if operation in _COUNT_OPS:
        return "int64"
    if operation in _DOUBLE_OPS:
        return "double"
    if operation == "sum":
        return "int64" if column_type in INTEGER else "double"
    if operation in ("min", "max", "first", "last"):
        return column_type
    if operation in K_OPERATIONS:
        return list_of(column_type)
    if operation == "approx_percentile":
        return "list<double>"
    return None  # histogram: a map of value -> count
