"""Feast's GetOnlineFeatures over a FeastCatalog and the fetch engine.

A request (by `view:feature` references or by feature service) is resolved once per
snapshot into reads: the engine plan of each view's group (a feature list) or of the
service, and which of its features go to which response column, under which name, as
which Feast Value member. The entity columns come first, as Feast answers; each feature
column has a value, a status and an event time per entity row. Statuses are the engine's
(the view's TTL applied at read time): stricter than Feast's Python server, which marks
every Redis read PRESENT (docs/feast.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fetcher.codec import KeyValue
from fetcher.engine import FetchEngine, Plans, TargetPlan
from fetcher.feast._answer import (
    Column,
    FeastAnswer,
    FeatureColumn,
    answer_columns,
    fill,
    wire_field,
)
from fetcher.feast._registry import FeastCatalog
from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.quoting import quoted
from fetcher.types import KeyType

# Request key type -> the Value members accepted for it.
_KEY_MEMBERS = {
    KeyType.INT64: ("int64_val", "int32_val", "unix_timestamp_val"),
    KeyType.STRING: ("string_val",),
    KeyType.BYTES: ("bytes_val",),
}
# Resolved feature lists kept per snapshot (clients repeat the same few lists).
_MAX_RESOLVED = 1024


class FeastRequestError(ValueError):
    """A request Feast's API refuses: `field` names what is wrong; `not_found` for an
    unknown view, feature or service (gRPC NOT_FOUND, HTTP 404), else INVALID_ARGUMENT
    (HTTP 422). `feast_class` is the exception Feast's own server raises for it."""

    def __init__(self, field: str, message: str, *, not_found: bool = False,
                 feast_class: str = "") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.not_found = not_found
        self.feast_class = feast_class


@dataclass(frozen=True, slots=True)
class _Read:
    """One engine read of a request: a plan and the response columns it fills."""

    plan: TargetPlan
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request's reads and names, resolved once per snapshot."""

    reads: tuple[_Read, ...]
    # Request key -> its type: the entity columns a request must send.
    keys: tuple[tuple[str, KeyType], ...]
    names: tuple[str, ...]  # the feature columns, in response order
    # Echoed join keys (in request order) -> the response's metadata field, wire bytes.
    metadata: dict[tuple[str, ...], bytes] = field(default_factory=dict)



class FeastSnapshot:
    """What one Feast request is served from: the catalog, its plans, resolved requests."""

    def __init__(self, catalog: FeastCatalog, plans: Plans) -> None:
        self.catalog = catalog
        self.plans = plans
        self._lists: dict[tuple[tuple[str, ...], bool], Resolved] = {}
        self._services: dict[tuple[str, bool], Resolved] = {}

    @property
    def version(self) -> str:
        """The catalog's content hash."""
        return self.catalog.version

    def resolve(self, request: Any) -> Resolved:
        """The reads of a GetOnlineFeaturesRequest; FeastRequestError naming the field."""
        full = bool(request.full_feature_names)
        which = request.WhichOneof("kind")
        if which == "feature_service":
            key = (request.feature_service, full)
            found = self._services.get(key)
            if found is None:
                found = self._services[key] = self._service(request.feature_service, full)
            return found
        if which is None or not request.features.val:
            raise FeastRequestError(
                "features", "set feature_service or features (a list of "
                "'<feature view>:<feature>' references)")
        refs = tuple(request.features.val)
        found = self._lists.get((refs, full))
        if found is None:
            found = self._list(refs, full)
            if len(self._lists) >= _MAX_RESOLVED:
                self._lists.clear()
            self._lists[(refs, full)] = found
        return found

    def _service(self, name: str, full: bool) -> Resolved:
        plan = self.plans.services.get(name)
        if plan is None:
            known = ", ".join(sorted(self.plans.services)[:20]) or "none"
            raise FeastRequestError(
                "feature_service",
                f"{quoted(name)} is not a served feature service of project "
                f"{self.catalog.config.project!r} (registry version {self.version}; "
                f"known: {known})",
                not_found=True, feast_class="FeatureServiceNotFoundException")
        wanted = []
        for projection in self.catalog.projections[name]:
            types = dict(self.catalog.views[projection.view].features)
            for feature in projection.features:
                out = f"{projection.alias}__{feature}" if full else feature
                wanted.append((f"{projection.alias}__{feature}", out, types[feature]))
        self._collisions([w[1] for w in wanted], "feature_service")
        return Resolved(
            reads=(_Read(plan, answer_columns(plan, wanted)),),
            keys=tuple((k.name, k.type) for k in plan.request_keys),
            names=tuple(w[1] for w in wanted),
        )

    def _list(self, refs: Sequence[str], full: bool) -> Resolved:
        by_view: dict[str, list[tuple[str, str, int]]] = {}
        for i, ref in enumerate(refs):
            field = f"features.val[{i}]"
            view_name, sep, feature = ref.partition(":")
            if not sep or not view_name or not feature:
                raise FeastRequestError(
                    field, f"{quoted(ref)} is not a '<feature view>:<feature>' reference")
            view = self.catalog.views.get(view_name)
            if view is None:
                known = ", ".join(sorted(self.catalog.views)[:20]) or "none"
                raise FeastRequestError(
                    field, f"feature view {quoted(view_name)} is not served from project "
                    f"{self.catalog.config.project!r} (known: {known})",
                    not_found=True, feast_class="FeatureViewNotFoundException")
            types = dict(view.features)
            if feature not in types:
                raise FeastRequestError(
                    field, f"feature view {view_name!r} has no feature {quoted(feature)} "
                    f"(it has: {', '.join(types)})",
                    not_found=True, feast_class="FeastObjectNotFoundException")
            out = f"{view_name}__{feature}" if full else feature
            by_view.setdefault(view_name, []).append((feature, out, types[feature]))
        names = [w[1] for wanted in by_view.values() for w in wanted]
        self._collisions(names, "features")
        reads = []
        keys: dict[str, KeyType] = {}
        for view_name, wanted in by_view.items():
            plan = self.plans.groups[view_name]
            reads.append(_Read(plan, answer_columns(plan, wanted)))
            for k in plan.request_keys:
                keys.setdefault(k.name, k.type)
        return Resolved(reads=tuple(reads), keys=tuple(keys.items()), names=tuple(names))

    @staticmethod
    def _collisions(names: Sequence[str], field: str) -> None:
        seen: set[str] = set()
        twice = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
        if twice:
            raise FeastRequestError(
                field, f"feature name(s) {', '.join(twice)} requested more than once (two "
                "views share a feature name: set full_feature_names)",
                feast_class="FeatureNameCollisionError")


def _entity_rows(
    resolved: Resolved, entities: Any, max_rows: int
) -> tuple[int, dict[str, list[KeyValue]], list[str]]:
    """(row count, request key -> its values, the entity columns echoed in request order)."""
    wanted = dict(resolved.keys)
    missing = [k for k in wanted if k not in entities]
    if missing:
        raise FeastRequestError(
            "entities", f"missing join key(s) {', '.join(map(quoted, missing))} (the request "
            f"reads {', '.join(map(quoted, wanted))})")
    count = -1
    columns: dict[str, list[KeyValue]] = {}
    echoed: list[str] = []
    for name in entities:
        key_type = wanted.get(name)
        if key_type is None:
            continue  # Feast skips what is not a join key of the request
        values = entities[name].val
        field = f"entities[{quoted(name)}]"
        if count < 0:
            count = len(values)
        elif len(values) != count:
            raise FeastRequestError(
                field, f"{len(values)} values where the other join keys have {count}")
        accepted = _KEY_MEMBERS[key_type]
        out: list[KeyValue] = []
        for i, value in enumerate(values):
            member = value.WhichOneof("val")
            if member not in accepted:
                raise FeastRequestError(
                    f"{field}[{i}]", f"expected {' or '.join(accepted)} for a "
                    f"{key_type.name} join key, got {member or 'no value'}")
            out.append(getattr(value, member))
        columns[name] = out
        echoed.append(name)
    if count == 0:
        raise FeastRequestError("entities", "no entity rows; send at least one")
    if count > max_rows:
        raise FeastRequestError(
            "entities", f"{count} entity rows is above the limit of {max_rows} per request "
            "(server.max_batch_entities); split the request")
    return count, columns, echoed




class FeastReader:
    """GetOnlineFeatures answered from the current Feast snapshot through the engine."""

    def __init__(self, snapshot: Callable[[], FeastSnapshot], engine: FetchEngine,
                 *, max_rows: int) -> None:
        self._snapshot = snapshot
        self._engine = engine
        self._max_rows = max_rows

    def snapshot(self) -> FeastSnapshot:
        """The snapshot a request is served from."""
        return self._snapshot()

    def prepare(self, request: Any) -> tuple[FeastSnapshot, Resolved]:
        """Resolve a request (FeastRequestError when it is refused)."""
        snap = self._snapshot()
        return snap, snap.resolve(request)

    async def read(
        self, request: Any, resolved: Resolved, deadline: float | None
    ) -> FeastAnswer:
        """The answer to a resolved request."""
        count, keys, echoed = _entity_rows(resolved, request.entities, self._max_rows)
        ats: list[int | None] = [None] * count
        fetches = []
        for read in resolved.reads:
            columns = [keys[k.name] for k in read.plan.request_keys]
            entities = list(zip(*columns, strict=True))
            fetches.append(self._engine.fetch_wires(read.plan, entities, ats, deadline))
        wires = [await fetches[0]] if len(fetches) == 1 else list(await asyncio.gather(*fetches))
        features: list[FeatureColumn] = []
        for read, read_wires in zip(resolved.reads, wires, strict=True):
            fill(read.columns, read_wires, features)
        names = [*echoed, *resolved.names]
        metadata = resolved.metadata.get(tuple(echoed))
        if metadata is None:  # once per order of the join keys sent
            metadata = resolved.metadata[tuple(echoed)] = wire_field(
                b"\x0a", sv.GetOnlineFeaturesResponseMetadata(
                    feature_names=sv.FeatureList(val=names)).SerializeToString())
        return FeastAnswer(
            names, metadata,
            [(name, request.entities[name]) for name in echoed],
            features, count,
        )


def serving_info_version() -> str:
    """What GetFeastServingInfo answers as its version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"feature-fetcher {version('feature-fetcher')}"
    except PackageNotFoundError:
        return "feature-fetcher"


__all__ = ["FeastReader", "FeastRequestError", "FeastSnapshot", "Resolved",
           "serving_info_version"]
