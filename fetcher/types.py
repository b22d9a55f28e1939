"""Domain types shared by the catalog, planner, cache, codec and merge layers.

Protobuf types never appear here: the service layer converts at the edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class FeatureType(enum.IntEnum):
    """Type of a feature value; numbers match fetcher.v1.FeatureType."""

    DOUBLE = 1
    INT64 = 2
    STRING = 3
    BOOL = 4
    BYTES = 5
    DOUBLE_LIST = 6
    INT64_LIST = 7
    STRING_LIST = 8
    BOOL_LIST = 9
    BYTES_LIST = 10


class KeyType(enum.IntEnum):
    """Type of an entity key column; numbers match fetcher.v1.KeyType."""

    INT64 = 1
    STRING = 2
    BYTES = 3


class Status(enum.IntEnum):
    """Per-feature status; numbers match fetcher.v1.FeatureStatus."""

    PRESENT = 1
    NOT_FOUND = 2
    NULL_VALUE = 3
    OUTSIDE_MAX_AGE = 4
    ERROR = 5


@dataclass(frozen=True, slots=True)
class KeyColumn:
    """One column of an entity key (a group may have several: s2_cell_id + place_id)."""

    name: str
    type: KeyType


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature of a group: a field of the group's Avro record."""

    name: str
    type: FeatureType
    nullable: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How a group's rows are cached; the TTLs come from settings when None."""

    l1: bool = True
    l2: bool = False
    l1_ttl_s: float | None = None
    l2_ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class AggregateColumn:
    """One input column of an aggregation group's events (its values are pushed/loaded)."""

    name: str
    # A column type of the compiler: int64, int32, double, float, string, bool, bytes, or
    # list<...> of a scalar type.
    type: str


@dataclass(frozen=True, slots=True)
class AggregateOperation:
    """One aggregation state kept per key: an operation over a column at one hop.

    Every window of the same (column, operation, k, percentiles, hop) shares it; `span_ms`
    is the longest of those windows, None for the unbounded window (which has an
    operation of its own: one state of everything before the batch end).
    """

    column: str
    operation: str  # an Operation value: "sum", "approx_percentile", ...
    hop_ms: int
    span_ms: int | None
    k: int | None = None
    percentiles: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class AggregateFeature:
    """One served feature of an aggregation group: an operation read over one window."""

    name: str
    operation: int  # index into AggregationSpec.operations
    window_ms: int | None  # None: unbounded


@dataclass(frozen=True, slots=True)
class AggregationSpec:
    """How an aggregation group's features are computed from its log (docs/aggregations.md)."""

    columns: tuple[AggregateColumn, ...]
    operations: tuple[AggregateOperation, ...]
    # In the order of FeatureGroup.features (same names).
    features: tuple[AggregateFeature, ...]
    # The most events a fetch reads per key after the batch end; past it the group is ERROR.
    max_events: int = 10_000


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    """A compiled feature group: where its rows live and what they hold."""

    name: str
    store: str  # name of a store in the settings
    dataset: str  # namespace / table inside the store
    keys: tuple[KeyColumn, ...]
    features: tuple[Feature, ...]
    # Rows whose event time is older than this (relative to the read time) are OUTSIDE_MAX_AGE;
    # None: rows never go stale.
    max_age_s: int | None
    online: bool
    # Parsed fastavro reader schema (the group's current schema); built once at load.
    schema: Any = field(repr=False, compare=False)
    # Store-side retention of the entity's data written by `fetcher load`; None: forever.
    ttl_s: int | None = None
    cache: CachePolicy = CachePolicy()
    description: str = ""
    # Where the config came from, for error messages.
    source: str = ""
    # Windowed aggregations: the group's features are computed from its log at fetch time
    # (then `schema` is None). None: a group of stored rows.
    aggregation: AggregationSpec | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """One group inside a feature service: key mapping and name prefix (a Chronon join part)."""

    group: str
    # request key name -> group key column name; a group key not mapped is read
    # from the request key of the same name.
    key_mapping: tuple[tuple[str, str], ...] = ()
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class ContextValue:
    """A request-time value a service reads: a value only the caller knows (docs/derivations.md)."""

    name: str
    type: FeatureType


@dataclass(frozen=True, slots=True)
class Derivation:
    """A feature a service computes at request time: `name = expression` (docs/derivations.md)."""

    name: str
    expression: str
    type: FeatureType  # the expression's type, as the compiler and the catalog check it


@dataclass(frozen=True, slots=True)
class FeatureService:
    """A named join of several groups, returned as one vector in join order."""

    name: str
    joins: tuple[Join, ...]
    online: bool = True
    description: str = ""
    source: str = ""
    # Request-time values every request must carry (its derivations read them), and the
    # derivations, served after the joins' features (docs/derivations.md, "Serving").
    context: tuple[ContextValue, ...] = ()
    derivations: tuple[Derivation, ...] = ()
    # Percent of entities whose served vectors the feature log keeps (Chronon's Join
    # sample_percent): 0 to 100, decided by entity key (fetcher.featurelog's sampling rule).
    sample_percent: float = 100.0
