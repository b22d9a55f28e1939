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
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from fetcher.codec import KeyValue
from fetcher.engine import SLOT_OF_TYPE, FetchEngine, Plans, TargetPlan
from fetcher.feast._registry import FeastCatalog
from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.feast.proto.types import value_pb2
from fetcher.quoting import quoted
from fetcher.types import KeyType, Status
from fetcher.v1 import feature_service_pb2 as fpb

VT = value_pb2.ValueType
Value = value_pb2.Value
FeatureVectorOut = sv.GetOnlineFeaturesResponse.FeatureVector

#: Our status -> Feast's FieldStatus (Feast has no ERROR: a row that did not decode, or a
#: store that failed, is INVALID, Feast's "status unset").
FIELD_STATUS = {
    Status.PRESENT: sv.PRESENT,
    Status.NOT_FOUND: sv.NOT_FOUND,
    Status.NULL_VALUE: sv.NULL_VALUE,
    Status.OUTSIDE_MAX_AGE: sv.OUTSIDE_MAX_AGE,
    Status.ERROR: sv.INVALID,
}
_STATUS_LIST = [FIELD_STATUS.get(Status(s), sv.INVALID) if s else sv.INVALID
                for s in range(max(Status) + 1)]
# Our vector's field of each slot (fetcher.engine SLOT_*).
_SLOT_FIELDS = ("double_values", "int64_values", "string_values", "bool_values",
                "bytes_values", "list_values")
_LIST_ITEMS: dict[int, str] = {
    VT.BYTES_LIST: "bytes_values", VT.STRING_LIST: "string_values",
    VT.INT32_LIST: "int64_values", VT.INT64_LIST: "int64_values",
    VT.UNIX_TIMESTAMP_LIST: "int64_values", VT.DOUBLE_LIST: "double_values",
    VT.FLOAT_LIST: "double_values", VT.BOOL_LIST: "bool_values",
}
# The Value member each Feast type is answered in (the type the view declares, as Feast).
_MEMBER: dict[int, str] = {
    VT.BYTES: "bytes_val", VT.STRING: "string_val", VT.INT32: "int32_val",
    VT.INT64: "int64_val", VT.DOUBLE: "double_val", VT.FLOAT: "float_val",
    VT.BOOL: "bool_val", VT.UNIX_TIMESTAMP: "unix_timestamp_val",
}
_LIST_MESSAGE: dict[int, tuple[str, Any]] = {
    VT.BYTES_LIST: ("bytes_list_val", value_pb2.BytesList),
    VT.STRING_LIST: ("string_list_val", value_pb2.StringList),
    VT.INT32_LIST: ("int32_list_val", value_pb2.Int32List),
    VT.INT64_LIST: ("int64_list_val", value_pb2.Int64List),
    VT.UNIX_TIMESTAMP_LIST: ("unix_timestamp_list_val", value_pb2.Int64List),
    VT.DOUBLE_LIST: ("double_list_val", value_pb2.DoubleList),
    VT.FLOAT_LIST: ("float_list_val", value_pb2.FloatList),
    VT.BOOL_LIST: ("bool_list_val", value_pb2.BoolList),
}
# Request key type -> the Value members accepted for it.
_KEY_MEMBERS = {
    KeyType.INT64: ("int64_val", "int32_val", "unix_timestamp_val"),
    KeyType.STRING: ("string_val",),
    KeyType.BYTES: ("bytes_val",),
}
_EMPTY = Value()
_NO_TIME = Timestamp()
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
class _Column:
    """One response column: a feature of a read's plan."""

    name: str
    feature: int  # index in the plan's features
    slot: int
    position: int  # within the slot
    join: int
    member: str  # the Value member it is answered in
    items: str | None  # list features: the ListValue field of the items
    list_message: Any


@dataclass(frozen=True, slots=True)
class _Read:
    """One engine read of a request: a plan and the response columns it fills."""

    plan: TargetPlan
    columns: tuple[_Column, ...]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request's reads and names, resolved once per snapshot."""

    reads: tuple[_Read, ...]
    # Request key -> its type: the entity columns a request must send.
    keys: tuple[tuple[str, KeyType], ...]
    names: tuple[str, ...]  # the feature columns, in response order


def _columns(plan: TargetPlan, wanted: Sequence[tuple[str, str, int]]) -> tuple[_Column, ...]:
    """(plan feature name, response name, Feast value type) -> columns of `plan`."""
    positions: list[int] = []
    seen = [0] * len(_SLOT_FIELDS)
    for kind in plan.feature_types:
        slot = SLOT_OF_TYPE[kind]
        positions.append(seen[slot])
        seen[slot] += 1
    index = {name: i for i, name in enumerate(plan.feature_names)}
    out = []
    for feature, name, value_type in wanted:
        i = index[feature]
        member, message = _LIST_MESSAGE.get(value_type, (_MEMBER.get(value_type, ""), None))
        out.append(_Column(
            name=name, feature=i, slot=SLOT_OF_TYPE[plan.feature_types[i]],
            position=positions[i], join=plan.feature_joins[i], member=member,
            items=_LIST_ITEMS.get(value_type), list_message=message,
        ))
    return tuple(out)


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
            reads=(_Read(plan, _columns(plan, wanted)),),
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
                    not_found=True, feast_class="FeatureNotFoundException")
            out = f"{view_name}__{feature}" if full else feature
            by_view.setdefault(view_name, []).append((feature, out, types[feature]))
        names = [w[1] for wanted in by_view.values() for w in wanted]
        self._collisions(names, "features")
        reads = []
        keys: dict[str, KeyType] = {}
        for view_name, wanted in by_view.items():
            plan = self.plans.groups[view_name]
            reads.append(_Read(plan, _columns(plan, wanted)))
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


def _timestamp(ms: int, cache: dict[int, Any]) -> Any:
    found = cache.get(ms)
    if found is None:
        found = cache[ms] = Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)
    return found


def _fill(read: _Read, wires: Sequence[bytes], results: list[Any]) -> None:
    """Append one FeatureVector per column of `read` from the engine's vectors."""
    vectors = [fpb.FeatureVector.FromString(w) for w in wires]
    times: dict[int, Any] = {0: _NO_TIME}
    statuses = [bytes(v.statuses) for v in vectors]
    stamps = [[_timestamp(t, times) for t in v.event_timestamps_ms] for v in vectors]
    slots: dict[int, list[Any]] = {}
    status_of = _STATUS_LIST
    present = Status.PRESENT
    for column in read.columns:
        array = slots.get(column.slot)
        if array is None:
            array = slots[column.slot] = [getattr(v, _SLOT_FIELDS[column.slot]) for v in vectors]
        f, pos, member = column.feature, column.position, column.member
        values: list[Any] = []
        append = values.append
        for row, s in enumerate(statuses):
            if s[f] != present:
                append(_EMPTY)
            elif column.items is not None:
                items = getattr(array[row][pos], column.items)
                append(Value(**{member: column.list_message(val=items)}))
            else:
                append(Value(**{member: array[row][pos]}))
        results.append(FeatureVectorOut(
            values=values,
            statuses=[status_of[s[f]] for s in statuses],
            event_timestamps=[row[column.join] for row in stamps],
        ))


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

    async def read(self, request: Any, resolved: Resolved, deadline: float | None) -> Any:
        """The GetOnlineFeaturesResponse of a resolved request."""
        count, keys, echoed = _entity_rows(resolved, request.entities, self._max_rows)
        ats: list[int | None] = [None] * count
        fetches = []
        for read in resolved.reads:
            columns = [keys[k.name] for k in read.plan.request_keys]
            entities = list(zip(*columns, strict=True))
            fetches.append(self._engine.fetch_wires(read.plan, entities, ats, deadline))
        wires = [await fetches[0]] if len(fetches) == 1 else list(await asyncio.gather(*fetches))
        response = sv.GetOnlineFeaturesResponse()
        names = response.metadata.feature_names.val
        names.extend(echoed)
        names.extend(resolved.names)
        results = response.results
        present = [sv.PRESENT] * count
        no_times = [_NO_TIME] * count
        for name in echoed:
            results.add(values=request.entities[name].val, statuses=present,
                        event_timestamps=no_times)
        built: list[Any] = []
        for read, read_wires in zip(resolved.reads, wires, strict=True):
            _fill(read, read_wires, built)
        results.extend(built)
        return response


def serving_info_version() -> str:
    """What GetFeastServingInfo answers as its version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"feature-fetcher {version('feature-fetcher')}"
    except PackageNotFoundError:
        return "feature-fetcher"


__all__ = ["FIELD_STATUS", "FeastReader", "FeastRequestError", "FeastSnapshot", "Resolved",
           "serving_info_version"]
