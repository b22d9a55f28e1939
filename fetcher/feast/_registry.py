"""A Feast repo (feature_store.yaml + its local registry.db) read into the fetcher's catalog types.

- Every online, enabled feature view with entities becomes a FeatureGroup named after the
  view, on the store FEAST_STORE, keyed by its join keys, with every feature; its TTL is
  the group's max age (0: never stale).
- Every feature service becomes a FeatureService: one join per projection, prefixed with
  "<view or alias>__" (Feast's full feature names), its join key map as the join's key
  mapping. A projection of a subset of a view's features (or of them in another order)
  reads its own group, "<service>/<view or alias>", whose dataset holds only those fields.

What cannot be served is refused (FeastError, every problem at once): value types outside
FEATURE_TYPES, key types Feast cannot serialize, TTLs of a fraction of a second, services
using views that are not served. Views that are not served (online: false, disabled,
without entities) and on demand or stream feature views are listed in `skipped`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetcher.codec import KeyValue
from fetcher.engine import Plans, ValuesEncoder, build_plans
from fetcher.feast._config import FeastConfig, read_feature_store_yaml
from fetcher.feast._errors import FeastError
from fetcher.feast._keys import feast_key_encoder
from fetcher.feast._values import (
    FEATURE_TYPES,
    KEY_TYPES,
    FeastRowCodec,
    supported_feature_types,
    value_type_name,
)
from fetcher.feast.proto.core import registry_pb2
from fetcher.types import Feature, FeatureGroup, FeatureService, Join, KeyColumn
from kvstores.feast_redis import feast_dataset

#: The store name every Feast group reads from (the store FeastCatalog.config.store_url opens).
FEAST_STORE = "feast"
# Feast's stand-in entity of views declared without entities.
_DUMMY_ENTITY = "__dummy"

KeyEncoder = Callable[[Sequence[KeyValue]], bytes]


@dataclass(frozen=True, slots=True)
class FeastView:
    """What the fetcher serves of a Feast feature view, with Feast's own types."""

    name: str
    entities: tuple[str, ...]
    # (join key, Feast value type), in the view's entity order.
    join_keys: tuple[tuple[str, int], ...]
    # (feature, Feast value type), in the view's order.
    features: tuple[tuple[str, int], ...]
    ttl_s: int | None


@dataclass(frozen=True, slots=True)
class FeastProjection:
    """One view of a feature service, as Feast's projection says."""

    view: str
    alias: str  # the name its full feature names start with: the alias, or the view's
    features: tuple[str, ...]
    # View join key -> request key.
    join_key_map: tuple[tuple[str, str], ...]
    group: str  # the fetcher group it reads


@dataclass(frozen=True, slots=True)
class FeastCatalog:
    """One immutable snapshot of a Feast repo, in the fetcher's catalog types."""

    config: FeastConfig
    # Content hash of feature_store.yaml and registry.db.
    version: str
    groups: Mapping[str, FeatureGroup]
    services: Mapping[str, FeatureService]
    codecs: Mapping[str, FeastRowCodec]
    key_encoders: Mapping[str, KeyEncoder]
    views: Mapping[str, FeastView]
    projections: Mapping[str, tuple[FeastProjection, ...]]  # by service
    # Objects of the registry that are not served, each with the reason.
    skipped: tuple[str, ...]

    def plans(self, encode_values: ValuesEncoder) -> Plans:
        """The engine's plans of every group and service (fetcher.api.encode_values)."""
        return build_plans(
            self.groups, self.services, self.codecs, encode_values, self.key_encoders
        )


def _ttl_seconds(view: str, ttl: Any, problems: list[str]) -> int | None:
    if ttl.nanos or ttl.seconds < 0:
        problems.append(
            f"feature view {view!r}: ttl {ttl.seconds}s {ttl.nanos}ns: only a whole number of "
            "seconds >= 0 is supported"
        )
        return None
    return int(ttl.seconds) or None


class _Reader:
    """Builds the catalog of one registry; collects problems and skipped objects."""

    def __init__(self, config: FeastConfig, registry: Any) -> None:
        self.config = config
        self.registry = registry
        self.problems: list[str] = []
        self.skipped: list[str] = []
        project = config.project
        self.entities = {
            e.spec.name: e.spec for e in registry.entities if e.spec.project in ("", project)
        }
        self.groups: dict[str, FeatureGroup] = {}
        self.codecs: dict[str, FeastRowCodec] = {}
        self.encoders: dict[str, KeyEncoder] = {}
        self.views: dict[str, FeastView] = {}
        # One encoder per distinct join key set: joins over the same keys share key bytes.
        self._key_cache: dict[tuple[tuple[str, int], ...], KeyEncoder] = {}
        self.not_served: dict[str, str] = {}  # view name -> why
        self.kinds: dict[str, str] = {}  # on demand or stream view name -> what it is
        self.descriptions: dict[str, dict[str, str]] = {}  # view -> feature -> description

    def mine(self, spec: Any) -> bool:
        return spec.project in ("", self.config.project)

    def join_keys(self, name: str, spec: Any) -> tuple[tuple[str, int], ...] | None:
        columns = {c.name: c.value_type for c in spec.entity_columns}
        keys: list[tuple[str, int]] = []
        for entity_name in spec.entities:
            entity = self.entities.get(entity_name)
            if entity is None:
                self.problems.append(
                    f"feature view {name!r}: entity {entity_name!r} is not in the registry"
                )
                return None
            join_key = entity.join_key or entity.name
            value_type = columns.get(join_key) or entity.value_type
            if value_type not in KEY_TYPES:
                self.problems.append(
                    f"feature view {name!r}: join key {join_key!r} of entity {entity_name!r} "
                    f"has type {value_type_name(value_type)}: Feast serializes keys of "
                    f"{', '.join(value_type_name(t) for t in KEY_TYPES)} only"
                )
                return None
            keys.append((join_key, value_type))
        return tuple(keys)

    def view(self, proto: Any) -> None:
        spec = proto.spec
        name = spec.name
        if not spec.online or spec.disabled:
            why = "online is false" if not spec.online else "disabled"
            self.not_served[name] = why
            self.skipped.append(f"feature view {name!r}: not served ({why})")
            return
        if not spec.entities or list(spec.entities) == [_DUMMY_ENTITY]:
            self.not_served[name] = "it has no entities"
            self.skipped.append(f"feature view {name!r}: not served yet (it has no entities)")
            return
        problems = len(self.problems)
        keys = self.join_keys(name, spec)
        features: list[tuple[str, int]] = []
        for feature in spec.features:
            if feature.value_type not in FEATURE_TYPES:
                self.problems.append(
                    f"feature view {name!r}, feature {feature.name!r}: value type "
                    f"{value_type_name(feature.value_type)} is not supported (supported: "
                    f"{supported_feature_types()})"
                )
            features.append((feature.name, feature.value_type))
        if not features:
            self.problems.append(f"feature view {name!r}: no features")
        ttl_s = _ttl_seconds(name, spec.ttl, self.problems)
        if len(self.problems) > problems or keys is None:
            return
        self.views[name] = FeastView(
            name=name,
            entities=tuple(spec.entities),
            join_keys=keys,
            features=tuple(features),
            ttl_s=ttl_s,
        )
        descriptions = self.descriptions[name] = {f.name: f.description for f in spec.features}
        self.add_group(name, self.views[name], features, spec.description, descriptions)

    def add_group(
        self,
        group_name: str,
        view: FeastView,
        features: Sequence[tuple[str, int]],
        description: str,
        descriptions: Mapping[str, str],
    ) -> None:
        dataset = feast_dataset(view.name, [f for f, _ in features])
        self.groups[group_name] = FeatureGroup(
            name=group_name,
            store=FEAST_STORE,
            dataset=dataset,
            keys=tuple(KeyColumn(k, KEY_TYPES[vt]) for k, vt in view.join_keys),
            features=tuple(
                Feature(f, FEATURE_TYPES[vt], nullable=True, description=descriptions.get(f, ""))
                for f, vt in features
            ),
            max_age_s=view.ttl_s,
            online=True,
            schema=None,
            description=description,
            source=f"{self.config.registry_path}: feature view {view.name}",
        )
        self.codecs[group_name] = FeastRowCodec(dataset, features)
        encoder = self._key_cache.get(view.join_keys)
        if encoder is None:
            encoder = feast_key_encoder(view.join_keys, self.config.project)
            self._key_cache[view.join_keys] = encoder
        self.encoders[group_name] = encoder

    def projection(self, service: str, proto: Any, used: set[str]) -> FeastProjection | None:
        name = proto.feature_view_name
        where = f"feature service {service!r}, feature view {name!r}"
        view = self.views.get(name)
        if view is None:
            why = self.not_served.get(name) or self.kinds.get(name) or "not in the registry"
            self.problems.append(f"{where}: the view is not served ({why})")
            return None
        if proto.HasField("version_tag"):
            self.problems.append(f"{where}: versioned references are not supported yet")
            return None
        known = dict(view.features)
        wanted = [f.name for f in proto.feature_columns] or list(known)
        missing = [f for f in wanted if f not in known]
        keys = dict(view.join_keys)
        mapping = dict(proto.join_key_map)
        strangers = [k for k in mapping if k not in keys]
        if missing or strangers:
            if missing:
                self.problems.append(f"{where}: no feature(s) {', '.join(missing)} in the view")
            if strangers:
                self.problems.append(
                    f"{where}: join_key_map maps {', '.join(strangers)}, which are not join "
                    f"keys of the view ({', '.join(keys)})"
                )
            return None
        alias = proto.feature_view_name_alias or name
        group = name
        if wanted != [f for f, _ in view.features]:
            group = f"{service}/{alias}"
            while group in used or group in self.groups:
                group += "_"
            self.add_group(
                group, view, [(f, known[f]) for f in wanted], "", self.descriptions[name]
            )
        used.add(group)
        return FeastProjection(
            view=name,
            alias=alias,
            features=tuple(wanted),
            join_key_map=tuple(sorted(mapping.items())),
            group=group,
        )

    def service(self, proto: Any) -> tuple[FeatureService, tuple[FeastProjection, ...]] | None:
        spec = proto.spec
        used: set[str] = set()
        projections: list[FeastProjection] = []
        failed = False
        for item in spec.features:
            projection = self.projection(spec.name, item, used)
            if projection is None:
                failed = True
            else:
                projections.append(projection)
        if failed:
            return None
        request_types: dict[str, tuple[str, Any]] = {}
        for p in projections:
            mapping = dict(p.join_key_map)
            for key, value_type in self.views[p.view].join_keys:
                request = mapping.get(key, key)
                kind = KEY_TYPES[value_type]
                seen = request_types.setdefault(request, (p.view, kind))
                if seen[1] is not kind:
                    self.problems.append(
                        f"feature service {spec.name!r}: request key {request!r} is "
                        f"{seen[1].name} for view {seen[0]!r} but {kind.name} for view "
                        f"{p.view!r}"
                    )
                    return None
        joins = tuple(
            Join(
                group=p.group,
                key_mapping=tuple((request, key) for key, request in p.join_key_map),
                prefix=f"{p.alias}__",
            )
            for p in projections
        )
        service = FeatureService(
            name=spec.name,
            joins=joins,
            online=True,
            description=spec.description,
            source=f"{self.config.registry_path}: feature service {spec.name}",
        )
        return service, tuple(projections)

    def read(self) -> tuple[dict[str, FeatureService], dict[str, tuple[FeastProjection, ...]]]:
        registry = self.registry
        for odfv in registry.on_demand_feature_views:
            if self.mine(odfv.spec):
                self.kinds[odfv.spec.name] = "an on demand feature view"
                self.skipped.append(
                    f"on demand feature view {odfv.spec.name!r}: not served (transformations "
                    "run in Feast)"
                )
        for sfv in registry.stream_feature_views:
            if self.mine(sfv.spec):
                self.kinds[sfv.spec.name] = "a stream feature view"
                self.skipped.append(f"stream feature view {sfv.spec.name!r}: not served yet")
        for view in registry.feature_views:
            if self.mine(view.spec):
                self.view(view)
        services: dict[str, FeatureService] = {}
        projections: dict[str, tuple[FeastProjection, ...]] = {}
        for proto in registry.feature_services:
            if not self.mine(proto.spec):
                continue
            built = self.service(proto)
            if built is not None:
                services[proto.spec.name] = built[0]
                projections[proto.spec.name] = built[1]
        return services, projections


def load_feast_repo(feature_store_yaml: str | Path) -> FeastCatalog:
    """Read feature_store.yaml and its registry into a FeastCatalog; FeastError lists every
    problem (nothing is served from a repo with problems)."""
    config = read_feature_store_yaml(feature_store_yaml)
    try:
        data = Path(config.registry_path).read_bytes()
    except OSError as exc:
        raise FeastError(
            config.path, [f"registry {config.registry_path}: cannot read it: {exc}"]
        ) from None
    try:
        registry = registry_pb2.Registry.FromString(data)
    except Exception as exc:  # protobuf's DecodeError, or a bad UTF-8 string
        raise FeastError(
            config.path,
            [f"registry {config.registry_path}: not a Feast registry file ({exc})"],
        ) from None
    reader = _Reader(config, registry)
    services, projections = reader.read()
    if reader.problems:
        raise FeastError(config.path, reader.problems)
    digest = hashlib.sha256(Path(config.path).read_bytes() + b"\0" + data)
    return FeastCatalog(
        config=config,
        version=digest.hexdigest()[:12],
        groups=reader.groups,
        services=services,
        codecs=reader.codecs,
        key_encoders=reader.encoders,
        views=reader.views,
        projections=projections,
        skipped=tuple(reader.skipped),
    )
