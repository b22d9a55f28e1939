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
import base64
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fetcher.codec import KeyValue
from fetcher.engine import SLOT_OF_TYPE, FetchEngine, Plans, TargetPlan, varint
from fetcher.feast._registry import FeastCatalog
from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.feast.proto.types import value_pb2
from fetcher.quoting import quoted
from fetcher.types import KeyType, Status
from fetcher.v1 import feature_service_pb2 as fpb

VT = value_pb2.ValueType
Value = value_pb2.Value

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
    items: str | None  # list features: the ListValue field of the items
    encoder: Callable[[Any], bytes]  # value -> its Value (in the view's member), wire bytes
    native: Callable[[Any], Any]  # value -> its JSON form


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
    # Echoed join keys (in request order) -> the response's metadata field, wire bytes.
    metadata: dict[tuple[str, ...], bytes] = field(default_factory=dict)


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
        listed = _LIST_MESSAGE.get(value_type)
        encoder = (_scalar_encoder(_MEMBER[value_type]) if listed is None
                   else _list_encoder(*listed))
        out.append(_Column(
            name=name, feature=i, slot=SLOT_OF_TYPE[plan.feature_types[i]],
            position=positions[i], join=plan.feature_joins[i],
            items=_LIST_ITEMS.get(value_type), encoder=encoder,
            native=_native_encoder(value_type),
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
                    not_found=True, feast_class="FeastObjectNotFoundException")
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


_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
_EMPTY_FIELD = b"\x0a\x00"  # an unset Value in FeatureVector.values (field 1)
_ZERO_TIME_FIELD = b"\x1a\x00"  # a zero Timestamp in FeatureVector.event_timestamps (3)


def _field(tag: bytes, inner: bytes) -> bytes:
    return tag + varint(len(inner)) + inner


def _scalar_encoder(member: str) -> Callable[[Any], bytes]:
    """value -> the FeatureVector.values field of a Value holding it in `member` (wire
    bytes built by hand: a message per cell cost most of a 100-entity answer)."""
    if member == "double_val":
        return lambda v: b"\x0a\x09\x29" + _DOUBLE(v)
    if member == "float_val":
        return lambda v: b"\x0a\x05\x35" + _FLOAT(v)
    if member in ("int64_val", "int32_val", "unix_timestamp_val"):
        tag = {"int64_val": b"\x20", "int32_val": b"\x18", "unix_timestamp_val": b"\x40"}[member]
        return lambda v: _field(b"\x0a", tag + varint(v))
    if member == "bool_val":
        return lambda v: b"\x0a\x02\x38\x01" if v else b"\x0a\x02\x38\x00"
    if member == "string_val":
        return lambda v: _field(b"\x0a", _field(b"\x12", v.encode()))
    if member == "bytes_val":
        return lambda v: _field(b"\x0a", _field(b"\x0a", v))
    raise ValueError(member)


def _list_encoder(member: str, message: Any) -> Callable[[Any], bytes]:
    def encode(items: Any) -> bytes:
        return _field(b"\x0a", Value(**{member: message(val=items)}).SerializeToString())

    return encode


def _time_field(ms: int) -> bytes:
    seconds, nanos = divmod(ms, 1000)
    inner = (b"\x08" + varint(seconds) if seconds else b"") + (
        b"\x10" + varint(nanos * 1_000_000) if nanos else b"")
    return _field(b"\x1a", inner)


@dataclass(frozen=True, slots=True)
class FeatureColumn:
    """One feature column of an answer: values (None where not PRESENT), Feast statuses,
    event times in ms, one per entity row."""

    column: _Column
    values: list[Any]
    statuses: bytes
    times: list[int]


class FeastAnswer:
    """A GetOnlineFeatures answer, as Feast's wire bytes (gRPC) or `feast serve`'s JSON."""

    __slots__ = ("count", "entities", "features", "metadata", "names")

    def __init__(self, names: list[str], metadata: bytes, entities: list[tuple[str, Any]],
                 features: list[FeatureColumn], count: int) -> None:
        self.names = names
        self.metadata = metadata  # the response's metadata field, wire bytes
        self.entities = entities  # (join key, the request's RepeatedValue)
        self.features = features
        self.count = count

    def wire(self) -> bytes:
        """GetOnlineFeaturesResponse wire bytes."""
        count = self.count
        parts = [self.metadata]
        present = _field(b"\x12", bytes([sv.PRESENT]) * count)
        no_times = _ZERO_TIME_FIELD * count
        for _, repeated in self.entities:
            # RepeatedValue.val is field 1 of Values, as FeatureVector.values is.
            parts.append(_field(b"\x12", repeated.SerializeToString() + present + no_times))
        times: dict[int, bytes] = {0: _ZERO_TIME_FIELD}
        for feature in self.features:
            column = feature.column
            encode = column.encoder
            values = [_EMPTY_FIELD if v is None else encode(v) for v in feature.values]
            stamps = []
            for ms in feature.times:
                field = times.get(ms)
                if field is None:
                    field = times[ms] = _time_field(ms)
                stamps.append(field)
            vector = b"".join(values) + _field(b"\x12", feature.statuses) + b"".join(stamps)
            parts.append(_field(b"\x12", vector))
        return b"".join(parts)

    def json(self) -> dict[str, Any]:
        """The JSON `feast serve` answers (Feast's convert_response_to_dict)."""
        results: list[dict[str, Any]] = []
        zero = [_ZERO_TIME_TEXT] * self.count
        present = ["PRESENT"] * self.count
        for _, repeated in self.entities:
            results.append({"values": [_native_key(v) for v in repeated.val],
                            "statuses": present, "event_timestamps": zero})
        texts: dict[int, str] = {0: _ZERO_TIME_TEXT}
        for feature in self.features:
            native = feature.column.native
            stamps = []
            for ms in feature.times:
                text = texts.get(ms)
                if text is None:
                    text = texts[ms] = _time_text(ms)
                stamps.append(text)
            results.append({
                "values": [None if v is None else native(v) for v in feature.values],
                "statuses": [_STATUS_NAMES[s] for s in feature.statuses],
                "event_timestamps": stamps,
            })
        return {"metadata": {"feature_names": self.names}, "results": results}


_STATUS_NAMES = {v: sv.FieldStatus.Name(v) for v in sv.FieldStatus.values()}
_ZERO_TIME_TEXT = "1970-01-01T00:00:00Z"


def _time_text(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


def _finite(f: float) -> float | str:
    if math.isfinite(f):
        return f
    return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _native_encoder(value_type: int) -> Callable[[Any], Any]:
    """A served value -> its JSON form in `feast serve`'s answers."""
    if value_type in (VT.DOUBLE, VT.FLOAT):
        return _finite
    if value_type == VT.BYTES:
        return _b64
    if value_type == VT.BYTES_LIST:
        return lambda items: [_b64(b) for b in items]
    if value_type in (VT.DOUBLE_LIST, VT.FLOAT_LIST):
        return lambda items: [_finite(f) for f in items]
    if value_type in _LIST_ITEMS:
        return list
    return lambda v: v


def _native_key(value: Any) -> Any:
    member = value.WhichOneof("val")
    if member is None:
        return None
    got = getattr(value, member)
    return _b64(got) if member == "bytes_val" else got


def _fill(read: _Read, wires: Sequence[bytes], out: list[FeatureColumn]) -> None:
    """The feature columns of `read` from the engine's vectors."""
    vectors = [fpb.FeatureVector.FromString(w) for w in wires]
    statuses = [bytes(v.statuses) for v in vectors]
    stamps = [v.event_timestamps_ms for v in vectors]
    slots: dict[int, list[Any]] = {}
    status_of = _STATUS_LIST
    present = int(Status.PRESENT)
    for column in read.columns:
        array = slots.get(column.slot)
        if array is None:
            array = slots[column.slot] = [getattr(v, _SLOT_FIELDS[column.slot]) for v in vectors]
        f, pos, items = column.feature, column.position, column.items
        own = [s[f] for s in statuses]
        if items is None:
            values = [row[pos] if s == present else None
                      for row, s in zip(array, own, strict=True)]
        else:
            values = [getattr(row[pos], items) if s == present else None
                      for row, s in zip(array, own, strict=True)]
        join = column.join
        out.append(FeatureColumn(
            column, values, bytes([status_of[s] for s in own]), [t[join] for t in stamps]))


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
            _fill(read, read_wires, features)
        names = [*echoed, *resolved.names]
        metadata = resolved.metadata.get(tuple(echoed))
        if metadata is None:  # once per order of the join keys sent
            metadata = resolved.metadata[tuple(echoed)] = _field(
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


__all__ = ["FIELD_STATUS", "FeastAnswer", "FeastReader", "FeastRequestError", "FeastSnapshot",
           "Resolved", "serving_info_version"]
