"""Proto pieces built once per catalog snapshot: response metadata and listings.

The per-target metadata (feature names and types) is identical for every
response of a snapshot, so it is built the first time a target is served and
reused; a vector is then one parse of the merged rows' wire bytes (fetcher.engine._rows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from fetcher.api._context import ContextReader
from fetcher.engine import Plans, TargetPlan, varint
from fetcher.types import Feature, FeatureGroup, KeyColumn, KeyType
from fetcher.v1 import feature_service_pb2 as pb

# GetBatchFeaturesResponse.vectors and GetFeaturesResponse.vector: both field 2,
# length-delimited.
_TAG_VECTORS = b"\x12"
# The most vector lengths a TargetView keeps the prefix of.
_MAX_HEADS = 256

# The Value oneof field that carries each key type.
KEY_FIELD = {
    KeyType.INT64: "int64_value",
    KeyType.STRING: "string_value",
    KeyType.BYTES: "bytes_value",
}
# The longest string key (in characters) whose UTF-8 form is sure to fit 64 KiB.
_SURELY_SHORT_STRING = 64 * 1024 // 4
_SURELY_SHORT_BYTES = 64 * 1024

#: A request's key map -> its values in plan order, or None: see key_reader.
KeyReader = Callable[[Any], "list[Any] | None"]


def key_reader(columns: tuple[KeyColumn, ...]) -> KeyReader:
    """Build, once per target, the fast reader of a request's key map.

    It returns the values in column order when the map holds exactly the columns, each
    set to its type's field and short enough to need no length check; otherwise None,
    and the caller runs the full validation (service.entity_values), which names the
    problem or returns the same values.
    """
    specs = tuple((c.name, KEY_FIELD[c.type]) for c in columns)
    count = len(specs)
    if count == 1 and specs[0][1] == "int64_value":
        ((only, _),) = specs

        def one_int64(keys: Any) -> list[Any] | None:
            if len(keys) == 1:
                value = keys.get(only)
                if value is not None and value.WhichOneof("kind") == "int64_value":
                    return [value.int64_value]
            return None

        return one_int64

    def general(keys: Any) -> list[Any] | None:
        if len(keys) != count:
            return None
        values: list[Any] = []
        for name, field in specs:
            value = keys.get(name)
            if value is None or value.WhichOneof("kind") != field:
                return None
            item = getattr(value, field)
            if field == "string_value" and len(item) > _SURELY_SHORT_STRING:
                return None
            if field == "bytes_value" and len(item) > _SURELY_SHORT_BYTES:
                return None
            values.append(item)
        return values

    return general


class TargetView:
    """Proto metadata of one target, and the builder of its vectors."""

    __slots__ = ("_heads", "_metadata_wire", "context", "metadata", "read_keys")

    def __init__(self, plan: TargetPlan, config_version: str) -> None:
        self.metadata = pb.ResponseMetadata(
            config_version=config_version,
            feature_names=plan.feature_names,
            feature_types=cast(Any, [int(t) for t in plan.feature_types]),
            groups=list(plan.groups),
            feature_groups=plan.feature_joins,
        )
        # The responses' metadata (field 1 of both) as wire bytes, for the *_wire builders.
        body = self.metadata.SerializeToString()
        self._metadata_wire = b"\x0a" + varint(len(body)) + body
        self.read_keys = key_reader(plan.request_keys)
        self.context = ContextReader(plan)
        # Vector length -> its tag and length prefix: the vectors of a target are mostly
        # of a few lengths (all of one length for groups of numbers). Bounded below.
        self._heads: dict[int, bytes] = {}

    def response_wire(self, wire: bytes) -> bytes:
        """A whole GetFeaturesResponse (metadata + the vector `wire`) as wire bytes."""
        return b"".join((self._metadata_wire, _TAG_VECTORS, varint(len(wire)), wire))

    def batch_response_wire(self, wires: Sequence[bytes]) -> bytes:
        """A whole GetBatchFeaturesResponse (metadata + the vectors' wire bytes) as wire bytes.

        Valid protobuf, but not the canonical serialization: each vector's repeated fields
        come in one run per join (parsers append them) and its event times unpacked.
        """
        heads = self._heads
        parts = [self._metadata_wire]
        append = parts.append
        for wire in wires:
            size = len(wire)
            head = heads.get(size)
            if head is None:
                if len(heads) >= _MAX_HEADS:
                    heads.clear()
                head = heads[size] = _TAG_VECTORS + varint(size)
            append(head)
            append(wire)
        return b"".join(parts)


def _keys(columns: tuple[KeyColumn, ...]) -> list[pb.KeyColumn]:
    return [pb.KeyColumn(name=k.name, type=cast(Any, int(k.type))) for k in columns]


def _features(
    features: tuple[Feature, ...], expressions: Mapping[str, str] | None = None
) -> list[pb.FeatureInfo]:
    expressions = expressions or {}
    return [
        pb.FeatureInfo(
            name=f.name, type=cast(Any, int(f.type)), description=f.description,
            nullable=f.nullable, expression=expressions.get(f.name, ""),
        )
        for f in features
    ]


def _service_info(name: str, plan: TargetPlan) -> pb.FeatureServiceInfo:
    derived = plan.derived
    return pb.FeatureServiceInfo(
        name=name,
        keys=_keys(plan.request_keys),
        features=_features(plan.features, derived.expressions if derived is not None else None),
        groups=[j.group.name for j in plan.joins],
        online=plan.online,
        description=plan.description,
        context=[pb.ContextInfo(name=c.name, type=cast(Any, int(c.type))) for c in plan.context],
    )


class ProtoViews:
    """Per-snapshot cache of TargetViews, plus the ListFeatureGroups answers."""

    def __init__(self, version: str, groups: Mapping[str, FeatureGroup], plans: Plans) -> None:
        self._version = version
        self._views: dict[int, TargetView] = {}
        self._plans = plans
        self._group_infos = {
            name: pb.FeatureGroupInfo(
                name=name,
                keys=_keys(g.keys),
                features=_features(g.features),
                store=g.store,
                max_age_seconds=g.max_age_s or 0,
                online=g.online,
                description=g.description,
            )
            for name, g in sorted(groups.items())
        }
        self._service_infos = {
            name: _service_info(name, p) for name, p in sorted(plans.services.items())
        }

    def target(self, plan: TargetPlan) -> TargetView:
        """The view of `plan`, built on first use (plans live as long as their snapshot)."""
        view = self._views.get(id(plan))
        if view is None:
            view = self._views[id(plan)] = TargetView(plan, self._version)
        return view

    def listing(self, name: str) -> pb.ListFeatureGroupsResponse | None:
        """Everything (empty name), one group or service by name, or None when unknown."""
        if not name:
            return pb.ListFeatureGroupsResponse(
                config_version=self._version,
                groups=list(self._group_infos.values()),
                services=list(self._service_infos.values()),
            )
        group = self._group_infos.get(name)
        service = self._service_infos.get(name)
        if group is None and service is None:
            return None
        return pb.ListFeatureGroupsResponse(
            config_version=self._version,
            groups=[group] if group is not None else [],
            services=[service] if service is not None else [],
        )
