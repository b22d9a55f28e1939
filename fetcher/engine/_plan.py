"""Query plans: built once per catalog snapshot, one per feature group and feature service.

A plan says which request keys a target needs, and for each of its joins how to
build the store key from them (key mapping, key encoder), where the rows live,
and how to shape them. At request time the planner only encodes keys and
deduplicates lookups.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fetcher.catalog import join_request_keys
from fetcher.codec import DoubleLayout, KeyValue, key_encoder
from fetcher.engine._aggregate import AggregateReader, spec_fingerprint
from fetcher.engine._derive import ColumnReader, DerivedPlan, derived_plan
from fetcher.engine._rows import RowReader, RowShape, ValuesEncoder, row_reader
from fetcher.expressions import DerivationError
from fetcher.types import (
    CachePolicy,
    ContextValue,
    Feature,
    FeatureGroup,
    FeatureService,
    FeatureType,
    Join,
    KeyColumn,
)


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """How one group of a target is read: store, dataset, key building, row shaping."""

    group: FeatureGroup
    store: str
    dataset: str
    # Position, in the target's request keys, of the value for each group key column.
    key_positions: tuple[int, ...]
    encode_key: Callable[[Sequence[KeyValue]], bytes]
    # The target's request key values -> this join's store key bytes (mapping and
    # encoding in one call, built once: the hot path builds no per-entity lists).
    entity_key: Callable[[Sequence[KeyValue]], bytes]
    shape: RowShape
    max_age_ms: int | None
    cache: CachePolicy
    prefix: str
    # Namespace of this group's cache keys: group name + reader schema fingerprint, so rows
    # shaped by an older schema are never served after a reload changes the schema.
    cache_ns: str
    # Namespace of this group's L2 entries: the stored bytes of (store, dataset), which
    # any reader schema resolves, so L2 stays warm across a reload that changes schemas.
    l2_ns: str
    decode: Callable[[bytes], dict[str, Any]]
    # Stored value, event time -> this group's row (`shape.to_row(decode(value), ms)`,
    # with a fast path for groups of doubles: rows.row_reader).
    to_row: RowReader
    # An aggregation group's log lookups and computed rows (then to_row is never called).
    aggregate: AggregateReader | None = None
    # The group brings its own key encoder (build_plans' key_encoders): its key bytes may
    # depend on more than the column types (Feast's hold the join key names).
    custom_key: bool = False


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """Everything needed to serve one feature group or feature service."""

    kind: str  # "feature_group" or "feature_service"
    name: str
    online: bool
    request_keys: tuple[KeyColumn, ...]
    joins: tuple[JoinPlan, ...]
    # Every feature in vector order: the joins' (prefixed), then the derived ones.
    feature_names: tuple[str, ...]
    feature_types: tuple[FeatureType, ...]
    # Index into `groups` of each feature: its join's, len(joins) for a derived one.
    feature_joins: tuple[int, ...]
    features: tuple[Feature, ...]
    description: str = ""
    # The one store key function of every join when they all build the same key bytes
    # (same request key positions, same column types: a service over groups of one
    # entity); None when the joins' keys differ. Lets a request encode each key once.
    shared_key: Callable[[Sequence[KeyValue]], bytes] | None = None
    # The store of every join when they share one (the usual case), else None.
    one_store: str | None = None
    # Whether some join is an aggregation group (its keys read logs, not versions).
    has_aggregates: bool = False
    # The request-time values a request must carry (a service's `context`), in order.
    context: tuple[ContextValue, ...] = ()
    # The service's derived features (appended after the joins' features), or None.
    derived: DerivedPlan | None = None

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups of the vector's event times: the joins', then the service itself
        when it has derived features (their pseudo group)."""
        names = tuple(join.group.name for join in self.joins)
        return (*names, self.name) if self.derived is not None else names

    def entity_keys(self, values: Sequence[KeyValue]) -> list[bytes]:
        """Store key bytes of each join for one entity's request key values (in request order)."""
        return [join.entity_key(values) for join in self.joins]


class Decoder(Protocol):
    """What a plan needs of a group's codec."""

    fingerprint: bytes

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one stored value into the group's current record."""
        ...

    def double_layout(self) -> DoubleLayout | None:
        """The fixed layout of the group's rows when its fields are all doubles, or None."""
        ...


def _entity_key(
    encode: Callable[[Sequence[KeyValue]], bytes], positions: tuple[int, ...]
) -> Callable[[Sequence[KeyValue]], bytes]:
    """Compose picking a join's key values out of the request's with encoding them."""
    if positions == tuple(range(len(positions))):
        # The join's columns are the request's first ones, in order (a feature group's
        # own plan, a service's first join): hand the values over as they are. A
        # one-column encoder reads values[0] only; the multi-column one zips strictly,
        # so it gets a slice when the request has more keys than the join.
        if len(positions) == 1:
            return encode
        width = len(positions)

        def leading(values: Sequence[KeyValue]) -> bytes:
            return encode(values if len(values) == width else values[:width])

        return leading
    pick = operator.itemgetter(*positions)
    if len(positions) == 1:

        def one(values: Sequence[KeyValue]) -> bytes:
            return encode((pick(values),))

        return one

    def many(values: Sequence[KeyValue]) -> bytes:
        return encode(pick(values))

    return many


class PlanError(ValueError):
    """A catalog that cannot be planned (it passed validation, so this is a bug to report)."""


#: A group's key values (in its key column order) -> its store key bytes.
KeyEncoder = Callable[[Sequence[KeyValue]], bytes]


def _join_plan(
    group: FeatureGroup,
    join: Join,
    request_keys: list[KeyColumn],
    shapes: dict[str, RowShape],
    codec: Decoder | None,
    encode_values: ValuesEncoder,
    encode: KeyEncoder | None = None,
) -> JoinPlan:
    positions = []
    for request_name, column in join_request_keys(group, join):
        for i, known in enumerate(request_keys):
            if known.name == request_name:
                if known.type is not column.type:
                    raise PlanError(
                        f"request key {request_name!r} feeds columns of different types"
                    )
                positions.append(i)
                break
        else:
            request_keys.append(KeyColumn(request_name, column.type))
            positions.append(len(request_keys) - 1)
    shape = shapes.get(group.name)
    if shape is None:
        shape = shapes[group.name] = RowShape(group.features, encode_values)
    custom_key = encode is not None
    if encode is None:
        encode = key_encoder(group.keys)
    common: dict[str, Any] = {
        "group": group, "store": group.store, "dataset": group.dataset,
        "key_positions": tuple(positions), "encode_key": encode,
        "entity_key": _entity_key(encode, tuple(positions)), "shape": shape,
        "prefix": join.prefix, "l2_ns": f"{group.store}/{group.dataset}",
        "custom_key": custom_key,
    }
    if group.aggregation is not None:
        return JoinPlan(
            **common,
            max_age_ms=None,
            # Computed rows never go to L2 (it holds stored values); L1 keeps them for
            # the group's l1 TTL, its freshness bound.
            cache=CachePolicy(group.cache.l1, False, group.cache.l1_ttl_s, None),
            cache_ns=f"{group.name}@agg:{spec_fingerprint(group.aggregation)}",
            decode=_no_decode,
            to_row=_no_row,
            aggregate=AggregateReader(group.store, group.dataset, group.aggregation, shape),
        )
    if codec is None:
        raise PlanError(f"group {group.name!r} has no codec")
    return JoinPlan(
        **common,
        max_age_ms=None if group.max_age_s is None else group.max_age_s * 1000,
        cache=group.cache,
        cache_ns=f"{group.name}@{codec.fingerprint.hex()}",
        decode=codec.decode,
        to_row=row_reader(shape, codec.decode, codec.double_layout()),
    )


def _no_decode(data: bytes) -> dict[str, Any]:
    raise PlanError("an aggregation group has no stored rows to decode")


def _no_row(value: bytes, event_ms: int) -> Any:
    raise PlanError("an aggregation group has no stored rows to decode")


def _target(
    kind: str,
    name: str,
    online: bool,
    joins: list[JoinPlan],
    keys: list[KeyColumn],
    description: str,
    service: FeatureService | None = None,
    read_columns: ColumnReader | None = None,
    encode_values: ValuesEncoder | None = None,
) -> TargetPlan:
    owners: list[int] = []
    features: list[Feature] = []
    for index, join in enumerate(joins):
        for feature in join.group.features:
            owners.append(index)
            features.append(
                Feature(join.prefix + feature.name, feature.type, feature.nullable,
                        feature.description)
            )
    derived = None
    if service is not None and service.derivations:
        assert encode_values is not None
        try:
            derived = derived_plan(service.derivations, service.context,
                                   list(zip(features, owners, strict=True)), read_columns,
                                   encode_values)
        except (DerivationError, ValueError) as exc:
            raise PlanError(f"service {name!r}: {exc}") from exc
    if derived is not None:
        owners += [len(joins)] * len(derived.features)
        features += derived.features
    first = joins[0] if joins else None
    # Joins with their own key encoders share a key only through the same encoder.
    shared = first is not None and all(
        join.key_positions == first.key_positions
        and [c.type for c in join.group.keys] == [c.type for c in first.group.keys]
        and join.custom_key == first.custom_key
        and (not join.custom_key or join.encode_key is first.encode_key)
        for join in joins
    )
    return TargetPlan(
        kind=kind,
        name=name,
        online=online,
        request_keys=tuple(keys),
        joins=tuple(joins),
        feature_names=tuple(f.name for f in features),
        feature_types=tuple(f.type for f in features),
        feature_joins=tuple(owners),
        features=tuple(features),
        description=description,
        shared_key=first.entity_key if shared and first is not None else None,
        one_store=joins[0].store if len({join.store for join in joins}) == 1 else None,
        has_aggregates=any(join.aggregate is not None for join in joins),
        context=service.context if service is not None else (),
        derived=derived,
    )


@dataclass(frozen=True, slots=True)
class Plans:
    """All plans of one catalog snapshot, by target kind and name."""

    groups: Mapping[str, TargetPlan]
    services: Mapping[str, TargetPlan]


def build_plans(
    groups: Mapping[str, FeatureGroup],
    services: Mapping[str, FeatureService],
    codecs: Mapping[str, Decoder | None],
    encode_values: ValuesEncoder,
    key_encoders: Mapping[str, KeyEncoder] | None = None,
    read_columns: ColumnReader | None = None,
) -> Plans:
    """Compile every group and service of a validated catalog into plans.

    `encode_values` serializes a row's non-double values (fetcher.api.encode_values).
    `key_encoders` gives groups whose store keys are not the fetcher's key encoding
    (fetcher.codec.key_encoder) their own (Feast's serialized entity keys, by group name).
    `read_columns` reads derivations' inputs back out of vectors (fetcher.api.read_columns),
    needed when a service has derivations (their programs are compiled here, once).
    """
    encoders = key_encoders or {}
    shapes: dict[str, RowShape] = {}
    group_plans: dict[str, TargetPlan] = {}
    for name, group in groups.items():
        keys: list[KeyColumn] = []
        join = _join_plan(
            group, Join(name), keys, shapes, codecs.get(name), encode_values, encoders.get(name)
        )
        group_plans[name] = _target(
            "feature_group", name, group.online, [join], keys, group.description
        )
    service_plans: dict[str, TargetPlan] = {}
    for name, service in services.items():
        keys = []
        joins = [
            _join_plan(
                groups[j.group], j, keys, shapes, codecs.get(j.group), encode_values,
                encoders.get(j.group),
            )
            for j in service.joins
        ]  # fmt: skip
        service_plans[name] = _target(
            "feature_service", name, service.online, joins, keys, service.description,
            service, read_columns, encode_values,
        )
    return Plans(groups=group_plans, services=service_plans)
