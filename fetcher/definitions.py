"""Feature definitions in Python: sources, aggregations, group-bys and joins.

The user-facing API of `fetcher compile` (docs/compiler.md). The objects here only hold
what a definition file says: they check nothing when built, so that one compile reports
every problem of every definition at once; `fetcher.compiler` validates and compiles them.

A definition repository has `group_bys/<team>/<module>.py` and `joins/<team>/<module>.py`;
an object bound to a module-level variable is named `<team>.<module>.<variable>` unless it
is given `name=`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET  # a Column without a default


class Operation(enum.Enum):
    """What an Aggregation computes over a column's values in a window."""

    COUNT = "count"
    SUM = "sum"
    AVERAGE = "average"
    MIN = "min"
    MAX = "max"
    VARIANCE = "variance"
    STDDEV = "stddev"
    FIRST = "first"
    LAST = "last"
    FIRST_K = "first_k"
    LAST_K = "last_k"
    TOP_K = "top_k"
    BOTTOM_K = "bottom_k"
    UNIQUE_COUNT = "unique_count"
    APPROX_UNIQUE_COUNT = "approx_unique_count"
    APPROX_PERCENTILE = "approx_percentile"
    HISTOGRAM = "histogram"


class Accuracy(enum.Enum):
    """TEMPORAL: values as of each event's time; SNAPSHOT: values as of the end of a day."""

    TEMPORAL = "temporal"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class Column:
    """A declared source column: its type (`int64`, `list<string>`...), doc and nullability.

    `default` is the Avro default of the feature the column becomes (a nullable column's
    default is null unless given).
    """

    type: str
    doc: str = ""
    nullable: bool = False
    default: Any = UNSET


# A declared column: "int64", ("int64", "Age in years") or Column("int64", nullable=True).
ColumnDeclaration = str | tuple[str, str] | Column


@dataclass(frozen=True, slots=True)
class Query:
    """What a source contributes: output column -> source column or expression.

    A plain list of names selects each column under its own name.
    """

    selects: Mapping[str, str] | Sequence[str]
    wheres: Sequence[str] = ()
    time_column: str | None = None
    start_partition: str | None = None

    def select_map(self) -> dict[str, str]:
        """The selects as output name -> expression, in the order written."""
        if isinstance(self.selects, Mapping):
            return dict(self.selects)
        return {name: name for name in self.selects}


@dataclass(frozen=True, slots=True)
class EventSource:
    """Events: a table (or a path to files) of rows with an event time, optionally a topic.

    Column types come from `columns` and/or the Parquet file `parquet_schema` (a path
    relative to the definition repository); declared `columns` win over the Parquet schema.
    """

    table: str
    query: Query
    topic: str | None = None
    columns: Mapping[str, ColumnDeclaration] | None = None
    parquet_schema: str | None = None


@dataclass(frozen=True, slots=True)
class EntitySource:
    """Entities: a daily snapshot table, optionally with a mutation table and topic."""

    snapshot_table: str
    query: Query
    mutation_table: str | None = None
    mutation_topic: str | None = None
    columns: Mapping[str, ColumnDeclaration] | None = None
    parquet_schema: str | None = None


@dataclass(frozen=True, slots=True)
class JoinSource:
    """The output of a Join used as a source (by object or by name); its columns are declared."""

    join: Join | str
    query: Query
    columns: Mapping[str, ColumnDeclaration] | None = None


Source = EventSource | EntitySource | JoinSource


@dataclass(frozen=True, slots=True)
class Aggregation:
    """One aggregation of a column over each window; `windows=None` is unbounded.

    Windows are durations such as "30m", "1h", "7d"; `tile` overrides the hop size; `name`
    overrides the features' name before the window (default `<column>_<operation>`).
    """

    column: str
    operation: Operation
    windows: Sequence[str] | None = ("1h", "1d", "7d")
    k: int | None = None
    percentiles: Sequence[float] | None = None
    tile: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Cache:
    """How the served group is cached: L1 and L2 switches, TTLs in seconds (None: settings)."""

    l1: bool = True
    l2: bool = False
    l1_ttl: float | None = None
    l2_ttl: float | None = None


@dataclass(frozen=True, slots=True)
class AvroSchema:
    """The served group's Avro record: namespace, record name and doc, earlier schemas.

    `previous` lists .avsc files (relative to the repository) rows may still be written
    with; they are copied into the catalog byte for byte, their fingerprints address data.
    """

    namespace: str = "fetcher.features"
    record: str | None = None  # default: the group's name in CamelCase
    doc: str | None = None  # default: the group's description
    previous: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class GroupBy:
    """Features of one entity: selected columns, or aggregations of them, keyed by `keys`."""

    keys: Sequence[str]
    sources: Sequence[Source]
    aggregations: Sequence[Aggregation] | None = None
    online: bool = False
    production: bool = False
    accuracy: Accuracy = Accuracy.SNAPSHOT
    store: str = "main"
    ttl: str | None = None  # store-side retention, e.g. "30d"; None: forever
    max_age: str | None = None  # older rows are served as OUTSIDE_MAX_AGE; None: never
    cache: Cache | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    version: str | None = None
    avro: AvroSchema | None = None


@dataclass(frozen=True, slots=True)
class JoinPart:
    """One group-by of a join: left key -> group-by key mapping and the features' prefix."""

    group_by: GroupBy | str
    key_mapping: Mapping[str, str] | None = None
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Group-bys joined on the left's keys: request keys with their types, or a source.

    `context` declares request-time values (name -> type, e.g. {"amount": "double"}): values
    the caller sends with the request; `derivations` are features computed at request time,
    name -> expression over the join's features (after prefixes), the context values and
    the other derivations (docs/derivations.md).
    """

    left: Mapping[str, str] | EventSource | EntitySource | JoinSource
    right_parts: Sequence[JoinPart]
    online: bool = False
    production: bool = False
    sample_percent: float = 100.0
    derivations: Mapping[str, str] | None = None
    context: Mapping[str, str] | None = None
    name: str | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None


__all__ = [
    "UNSET",
    "Accuracy",
    "Aggregation",
    "AvroSchema",
    "Cache",
    "Column",
    "ColumnDeclaration",
    "EntitySource",
    "EventSource",
    "GroupBy",
    "Join",
    "JoinPart",
    "JoinSource",
    "Operation",
    "Query",
    "Source",
]
