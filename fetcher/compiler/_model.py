"""What stage 1 makes of a definition: resolved columns, keys, features; the later stages,
the output writer and the metadata read these, never the raw definitions again."""

from __future__ import annotations

from dataclasses import dataclass

from fetcher.compiler._discover import Definition
from fetcher.compiler._types import ColumnInfo
from fetcher.definitions import Accuracy, GroupBy, Join, JoinSource


@dataclass(frozen=True, slots=True)
class SourceModel:
    """A source with its selected columns typed: output name -> (expression, column)."""

    kind: str  # "events", "entities" or "join"
    table: str  # the table, the snapshot table, or "join:<ref>"
    selects: tuple[tuple[str, str], ...]  # output name -> expression, in order
    columns: tuple[tuple[str, ColumnInfo], ...]  # output name -> its column, in order
    time_column: str | None
    topic: str | None  # the event topic or the mutation topic
    join: JoinSource | None = None

    def column(self, name: str) -> ColumnInfo | None:
        """The selected column `name`, if the source selects it."""
        return dict(self.columns).get(name)


@dataclass(frozen=True, slots=True)
class FeatureModel:
    """One output feature of a group-by: a selected column or one window of an aggregation."""

    name: str
    column: ColumnInfo  # its type, doc, nullability and default as served
    source_column: str  # the selected column it comes from
    operation: str | None = None
    window: str | None = None  # None: the column itself, or an unbounded aggregation
    tile: str | None = None
    aggregation: int | None = None  # its index in GroupBy.aggregations; None: a column


@dataclass(frozen=True, slots=True)
class GroupModel:
    """A GroupBy after stage 1."""

    definition: Definition
    obj: GroupBy
    keys: tuple[tuple[str, str], ...]  # key name -> key type
    features: tuple[FeatureModel, ...]
    sources: tuple[SourceModel, ...]
    aggregated: bool  # windowed aggregations: an aggregation group if online, else metadata
    ttl_s: int | None
    max_age_s: int | None
    longest_window_s: int | None  # of the bounded windows; None: none
    accuracy: Accuracy

    @property
    def name(self) -> str:
        """The served name."""
        return self.definition.name

    @property
    def served(self) -> bool:
        """Written to the catalog: every group of stored rows, an aggregation group if online
        (an offline one with aggregations is compiled into the metadata only)."""
        return not self.aggregated or self.obj.online is True


@dataclass(frozen=True, slots=True)
class PartModel:
    """One right part of a join after stage 1."""

    index: int
    group_by: GroupBy | str
    key_mapping: tuple[tuple[str, str], ...]  # left key -> group-by key
    prefix: str


@dataclass(frozen=True, slots=True)
class DerivedModel:
    """A derivation of a join after stage 1: its expression type-checked."""

    name: str
    expression: str
    type: str  # a column type: "double", "int64", "list<int64>"...
    uses: tuple[str, ...]  # the features, context values and derivations it reads


@dataclass(frozen=True, slots=True)
class JoinModel:
    """A Join after stage 1; `left_columns` are the left's columns (request keys or selects)."""

    definition: Definition
    obj: Join
    left_kind: str  # "keys", "events", "entities" or "join"
    left_columns: tuple[tuple[str, str], ...]  # name -> column type
    left: SourceModel | None
    parts: tuple[PartModel, ...]
    context: tuple[tuple[str, str], ...] = ()  # request-time value -> column type
    derivations: tuple[DerivedModel, ...] = ()  # in declaration order

    @property
    def name(self) -> str:
        """The served name."""
        return self.definition.name
