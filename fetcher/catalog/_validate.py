"""Parsing and validation of catalog files into domain types, collecting every problem.

fetcher.catalog._loader drives it; each function here reads one file's JSON (or checks one
cross-file rule) and reports problems as `<file>: <field>: <problem>. Fix: <fix>`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from fetcher.catalog._aggregations import parse_aggregations
from fetcher.catalog._fields import MISSING, Problems, Spec, check_fields, read_json
from fetcher.codec import GroupCodec, SchemaError, SchemaRegistry, avro_to_features
from fetcher.types import (
    CachePolicy,
    ContextValue,
    Derivation,
    FeatureGroup,
    FeatureService,
    FeatureType,
    Join,
    KeyColumn,
    KeyType,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
KEY_TYPES = {"int64": KeyType.INT64, "string": KeyType.STRING, "bytes": KeyType.BYTES}
_NUMBER = (int, float)

GROUP_SPEC: Spec = {
    "name": ((str,), True, None, "the file name without .json"),
    "description": ((str,), False, "", "a string"),
    "store": ((str,), True, None, "the name of a store in the settings"),
    "dataset": ((str,), True, None, "the table/namespace in the store, e.g. the group name"),
    "keys": ((list,), True, None, 'a list like [{"name": "user_id", "type": "int64"}]'),
    "schema": ((str,), True, None, 'the Avro schema file next to it, e.g. "<name>.avsc"'),
    "previous_schemas": ((list,), False, (), "a list of older .avsc file names"),
    "max_age_seconds": ((int, None), False, None, "a whole number of seconds, or null"),
    "ttl_seconds": ((int, None), False, None, "a whole number of seconds, or null"),
    "online": ((bool,), False, True, "true or false"),
    "cache": ((dict,), False, None, 'an object like {"l1": true, "l2": false}'),
}
# A group with windowed aggregations: no schema, its features are computed from its log.
AGGREGATION_GROUP_SPEC: Spec = {
    **{k: v for k, v in GROUP_SPEC.items() if k not in ("schema", "previous_schemas")},
    "aggregations": ((dict,), True, None, "an object with columns, operations and features "
                     "(docs/configuration.md)"),
}
CACHE_SPEC: Spec = {
    "l1": ((bool,), False, True, "true or false"),
    "l2": ((bool,), False, False, "true or false"),
    "l1_ttl_seconds": ((*_NUMBER, None), False, None, "a number of seconds, or null"),
    "l2_ttl_seconds": ((*_NUMBER, None), False, None, "a number of seconds, or null"),
}
SERVICE_SPEC: Spec = {
    "name": ((str,), True, None, "the file name without .json"),
    "description": ((str,), False, "", "a string"),
    "online": ((bool,), False, True, "true or false"),
    "joins": ((list,), True, None, 'a list like [{"group": "user_profile", "prefix": "user_"}]'),
    "context": ((list,), False, (), 'a list like [{"name": "amount", "type": "double"}]'),
    "derivations": ((list,), False, (), 'a list like [{"name": "r", "expression": "a / b", '
                    '"type": "double"}]'),
    "sample_percent": ((*_NUMBER,), False, 100.0, "a percentage from 0 to 100, e.g. 10.0"),
}
JOIN_SPEC: Spec = {
    "group": ((str,), True, None, "the name of a feature group"),
    "prefix": ((str,), False, "", 'a string such as "user_"'),
    "key_mapping": ((dict,), False, None, 'an object {"<request key>": "<group key column>"}'),
}


def _name_ok(value: str, file: str, field: str, p: Problems) -> bool:
    if NAME_RE.match(value):
        return True
    p.add(
        file,
        field,
        f"{value!r} has characters other than letters, digits, _ . -",
        "rename it using only letters, digits, _ . and -",
    )
    return False


def _register(
    path: Path, referrer: str, field: str, registry: SchemaRegistry, p: Problems
) -> bytes | None:
    # A missing schema file is reported against the group file that names it.
    file = f"groups/{path.name}"
    reported = len(p.items)
    text = read_json(path, file, p) if path.is_file() else MISSING
    if text is MISSING:
        p.add(
            referrer,
            field,
            f"schema file {path.name} does not exist",
            f"create {path.name} next to the group file or correct the file name",
        )
        return None
    if text is None and len(p.items) > reported:
        return None  # read_json said why; a file holding JSON null falls through
    if not isinstance(text, dict):
        p.add(file, "type", "the schema is not an Avro record", 'write {"type": "record", ...}')
        return None
    try:
        return registry.register(text, file)
    except SchemaError as exc:
        for where, problem in exc.problems:
            p.add(file, where or "(schema)", problem, "write a valid Avro record schema")
        return None


def _read_checked(path: Path, rel: str, spec: Spec, p: Problems) -> dict[str, Any] | None:
    """One config file read and its fields checked against `spec`; None once reported."""
    reported = len(p.items)
    data = read_json(path, rel, p)
    if data is None and len(p.items) > reported:
        return None  # read_json said why; JSON null goes on to check_fields, which says why
    return check_fields(data, spec, rel, "", p)


def _header(v: dict[str, Any], path: Path, rel: str, p: Problems, *,
            aggregation: bool) -> tuple[tuple[KeyColumn, ...] | None, CachePolicy | None]:
    """What both kinds of group share: the name, dataset, TTLs, keys and cache checked."""
    if v["name"] != path.stem:
        p.add(
            rel,
            "name",
            f"{v['name']!r} differs from the file name {path.stem!r}",
            f"rename the file to {v['name']}.json or set name to {path.stem!r}",
        )
    _name_ok(v["name"], rel, "name", p)
    _name_ok(v["dataset"], rel, "dataset", p)
    if aggregation and v["max_age_seconds"] is not None:
        p.add(rel, "max_age_seconds", "must be null or absent for an aggregation group: a "
              "window is as fresh as its log", "remove max_age_seconds")
    for key in ("ttl_seconds",) if aggregation else ("max_age_seconds", "ttl_seconds"):
        if v[key] is not None and v[key] <= 0:
            p.add(rel, key, f"{v[key]} is not positive", "use a positive number of seconds or null")
    # An aggregation group's cached vector is only as fresh as its cache TTL: off by default.
    return _parse_keys(v["keys"], rel, p), _parse_cache(v["cache"], rel, p,
                                                        cached=not aggregation)


def parse_group(
    path: Path, rel: str, registry: SchemaRegistry, p: Problems
) -> tuple[FeatureGroup, GroupCodec | None] | None:
    """Compile one groups/<name>.json (and its schemas) or report why it cannot be.

    An aggregation group (one with `aggregations`) has no schema, so no codec: None.
    """
    reported = len(p.items)
    data = read_json(path, rel, p)
    if data is None and len(p.items) > reported:
        return None  # read_json said why; JSON null goes on to check_fields, which says why
    if isinstance(data, dict) and "aggregations" in data:
        group = _parse_aggregation_group(path, rel, data, p)
        return None if group is None else (group, None)
    v = check_fields(data, GROUP_SPEC, rel, "", p)
    if v is None:
        return None
    before = len(p.items)
    keys, cache = _header(v, path, rel, p, aggregation=False)
    schema_rel = f"groups/{v['schema']}"
    fp = _register(path.parent / v["schema"], rel, "schema", registry, p)
    if fp is None:
        return None
    codec = GroupCodec(registry, fp)
    try:
        features = avro_to_features(codec.schema, schema_rel)
    except SchemaError as exc:
        for field, problem in exc.problems:
            p.add(
                schema_rel,
                f"fields.{field}" if field else "type",
                problem,
                "change the field's type or compute it as a supported type",
            )
        return None
    key_names = {k.name for k in keys or ()}
    for feature in features:
        if feature.name in key_names:
            p.add(
                schema_rel,
                f"fields.{feature.name}",
                "has the name of a key column",
                "rename the feature: a row's columns would feed both the key and the feature",
            )
    for i, prev in enumerate(v["previous_schemas"]):
        if not isinstance(prev, str):
            p.add(rel, f"previous_schemas[{i}]", "is not a file name", 'write "<name>.v1.avsc"')
            continue
        prev_fp = _register(path.parent / prev, rel, f"previous_schemas[{i}]", registry, p)
        if prev_fp is not None:
            for problem in codec.check_writer(prev_fp):
                p.add(
                    f"groups/{prev}",
                    "(schema)",
                    f"rows written with it cannot be read with {v['schema']}: {problem}",
                    "make the change backward compatible (new fields need a default)",
                )
    if len(p.items) > before or keys is None or cache is None:
        return None
    group = FeatureGroup(
        name=v["name"],
        store=v["store"],
        dataset=v["dataset"],
        keys=keys,
        features=features,
        max_age_s=v["max_age_seconds"],
        online=v["online"],
        schema=codec.schema,
        ttl_s=v["ttl_seconds"],
        cache=cache,
        description=v["description"],
        source=rel,
    )
    return group, codec


def _parse_aggregation_group(path: Path, rel: str, data: dict[str, Any],
                             p: Problems) -> FeatureGroup | None:
    """An aggregation group (docs/configuration.md "Aggregation group") or None once reported."""
    before = len(p.items)
    data = dict(data)
    for key in ("schema", "previous_schemas"):
        if key in data:
            p.add(rel, key, "an aggregation group has no Avro schema: its features are computed "
                  "from its log", "remove schema and previous_schemas (or remove aggregations "
                  "for a group of stored rows)")
            del data[key]
    v = check_fields(data, AGGREGATION_GROUP_SPEC, rel, "", p)
    if v is None:
        return None
    keys, cache = _header(v, path, rel, p, aggregation=True)
    parsed = parse_aggregations(v["aggregations"], {k.name for k in keys or ()}, rel, p)
    if len(p.items) > before or keys is None or cache is None or parsed is None:
        return None
    features, spec = parsed
    return FeatureGroup(
        name=v["name"],
        store=v["store"],
        dataset=v["dataset"],
        keys=keys,
        features=features,
        max_age_s=None,
        online=v["online"],
        schema=None,
        ttl_s=v["ttl_seconds"],
        cache=cache,
        description=v["description"],
        source=rel,
        aggregation=spec,
    )


def _parse_keys(raw: list[Any], rel: str, p: Problems) -> tuple[KeyColumn, ...] | None:
    if not raw:
        p.add(
            rel, "keys", "is empty", 'list at least one key, e.g. {"name": "id", "type": "int64"}'
        )
        return None
    keys: list[KeyColumn] = []
    spec: Spec = {
        "name": ((str,), True, None, "a column name"),
        "type": ((str,), True, None, "int64, string or bytes"),
    }
    for i, item in enumerate(raw):
        v = check_fields(item, spec, rel, f"keys[{i}].", p)
        if v is None:
            continue
        if not v["name"]:
            p.add(rel, f"keys[{i}].name", "is empty", "name the key column")
        elif v["name"] in {k.name for k in keys}:
            p.add(rel, f"keys[{i}].name", f"{v['name']!r} is listed twice", "remove the duplicate")
        elif v["type"] not in KEY_TYPES:
            p.add(
                rel,
                f"keys[{i}].type",
                f"{v['type']!r} is not a key type",
                "use int64, string or bytes",
            )
        else:
            keys.append(KeyColumn(v["name"], KEY_TYPES[v["type"]]))
    return tuple(keys) if len(keys) == len(raw) else None


def _parse_cache(
    raw: dict[str, Any] | None, rel: str, p: Problems, *, cached: bool = True
) -> CachePolicy | None:
    """The cache policy; `cached` False: L1 is off unless `raw` turns it on (as L2 is)."""
    if raw is None:
        return CachePolicy() if cached else CachePolicy(l1=False, l2=False)
    v = check_fields(raw, CACHE_SPEC, rel, "cache.", p)
    if v is None:
        return None
    for key in ("l1_ttl_seconds", "l2_ttl_seconds"):
        if v[key] is not None and v[key] < 0:
            p.add(rel, f"cache.{key}", "is negative", "use 0 or more seconds, or null")
            return None
    l1 = v["l1"] if cached or "l1" in raw else False
    return CachePolicy(l1, v["l2"], v["l1_ttl_seconds"], v["l2_ttl_seconds"])


def join_request_keys(group: FeatureGroup, join: Join) -> list[tuple[str, KeyColumn]]:
    """(request key name, group key column) for each key column of a join's group."""
    # key_mapping is request key -> group column; a column not mapped keeps its own name.
    source_of = {column: request for request, column in join.key_mapping}
    return [(source_of.get(col.name, col.name), col) for col in group.keys]


def parse_service(path: Path, rel: str, p: Problems) -> FeatureService | None:
    """Read one services/<name>.json (its groups are checked by check_service)."""
    v = _read_checked(path, rel, SERVICE_SPEC, p)
    if v is None:
        return None
    ok = _name_ok(v["name"], rel, "name", p)
    if v["name"] != path.stem:
        p.add(
            rel,
            "name",
            f"{v['name']!r} differs from the file name {path.stem!r}",
            f"rename the file to {v['name']}.json or set name to {path.stem!r}",
        )
        ok = False
    if not v["joins"]:
        p.add(rel, "joins", "is empty", "join at least one feature group")
        ok = False
    joins: list[Join] = []
    for i, raw in enumerate(v["joins"]):
        j = check_fields(raw, JOIN_SPEC, rel, f"joins[{i}].", p)
        if j is None:
            ok = False
            continue
        mapping = j["key_mapping"] or {}
        for request, column in mapping.items():
            if not request or not isinstance(column, str) or not column:
                p.add(
                    rel,
                    f"joins[{i}].key_mapping",
                    f"{request!r}: {column!r} is not a mapping of names",
                    'write {"<request key>": "<group key column>"}',
                )
                ok = False
        joins.append(Join(j["group"], tuple(mapping.items()), j["prefix"]))
    context = _parse_context(v["context"], rel, p)
    derivations = _parse_derivations(v["derivations"], rel, p)
    sample = float(v["sample_percent"])
    if not 0.0 <= sample <= 100.0:  # NaN fails too
        p.add(rel, "sample_percent", f"{v['sample_percent']!r:.20} is not in [0, 100]",
              "write a percentage from 0 (log none) to 100 (log every entity)")
        ok = False
    if not ok or context is None or derivations is None:
        return None
    return FeatureService(v["name"], tuple(joins), v["online"], v["description"], rel,
                          context, derivations, sample)


# BYTES_LIST only comes from Feast's views (docs/feast.md): no config declares it.
_TYPE_NAMES = {t.name.lower(): t for t in FeatureType if t is not FeatureType.BYTES_LIST}
_TYPE_FIX = ", ".join(_TYPE_NAMES)
CONTEXT_SPEC: Spec = {
    "name": ((str,), True, None, "the request-time value's name"),
    "type": ((str,), True, None, _TYPE_FIX),
}
DERIVATION_SPEC: Spec = {
    "name": ((str,), True, None, "the derived feature's name"),
    "expression": ((str,), True, None, "an expression (docs/derivations.md)"),
    "type": ((str,), True, None, f"its type: {_TYPE_FIX}"),
}


def _feature_type(value: str, rel: str, field: str, p: Problems) -> FeatureType | None:
    t = _TYPE_NAMES.get(value)
    if t is None:
        p.add(rel, field, f"{value!r:.30} is not a feature type", f"use one of {_TYPE_FIX}")
    return t


def _parse_context(raw: Any, rel: str, p: Problems) -> tuple[ContextValue, ...] | None:
    """A service's `context`: the request-time values its derivations read."""
    out: list[ContextValue] = []
    for i, item in enumerate(raw):
        v = check_fields(item, CONTEXT_SPEC, rel, f"context[{i}].", p)
        t = _feature_type(v["type"], rel, f"context[{i}].type", p) if v is not None else None
        if v is not None and t is not None:
            out.append(ContextValue(v["name"], t))
    return tuple(out) if len(out) == len(raw) else None


def _parse_derivations(raw: Any, rel: str, p: Problems) -> tuple[Derivation, ...] | None:
    """A service's `derivations` as written (their expressions are checked by
    fetcher.catalog._derived once the groups are known)."""
    out: list[Derivation] = []
    for i, item in enumerate(raw):
        v = check_fields(item, DERIVATION_SPEC, rel, f"derivations[{i}].", p)
        t = (_feature_type(v["type"], rel, f"derivations[{i}].type", p)
             if v is not None else None)
        if v is not None and t is not None:
            out.append(Derivation(v["name"], v["expression"], t))
    return tuple(out) if len(out) == len(raw) else None


def check_service(
    service: FeatureService,
    groups: Mapping[str, FeatureGroup],
    p: Problems,
    broken: Collection[str] = (),
) -> None:
    """Cross-file rules: known groups and key columns, key types, unique output names.

    `broken` names groups whose own files have problems (already reported): skipped here.
    """
    rel = service.source
    request_types: dict[str, tuple[KeyType, str]] = {}
    outputs: dict[str, str] = {}
    for i, join in enumerate(service.joins):
        where = f"joins[{i}]"
        group = groups.get(join.group)
        if group is None and join.group in broken:
            continue
        if group is None:
            p.add(
                rel,
                f"{where}.group",
                f"unknown group {join.group!r}",
                f"use one of {', '.join(sorted(groups)) or '(no groups)'}",
            )
            continue
        if service.online and not group.online:
            p.add(
                rel,
                f"{where}.group",
                f"online service uses offline group {group.name!r}",
                f"set online to true in {group.source} or make the service offline",
            )
        columns = {k.name for k in group.keys}
        targets: dict[str, str] = {}
        for request, column in join.key_mapping:
            if column not in columns:
                p.add(
                    rel,
                    f"{where}.key_mapping.{request}",
                    f"group {group.name!r} has no key column {column!r}",
                    f"map to one of {', '.join(k.name for k in group.keys)}",
                )
            elif column in targets:
                p.add(
                    rel,
                    f"{where}.key_mapping.{request}",
                    f"column {column!r} is already fed by request key {targets[column]!r}",
                    "map each group key column from one request key",
                )
            targets[column] = request
        for request, col in join_request_keys(group, join):
            seen = request_types.setdefault(request, (col.type, f"{group.name}.{col.name}"))
            if seen[0] is not col.type:
                p.add(
                    rel,
                    f"{where}.key_mapping",
                    f"request key {request!r} feeds {seen[1]} ({seen[0].name.lower()}) and "
                    f"{group.name}.{col.name} ({col.type.name.lower()})",
                    "map one of them from a differently named request key",
                )
        for feature in group.features:
            out = join.prefix + feature.name
            if out in outputs:
                p.add(
                    rel,
                    f"{where}.prefix",
                    f"feature {out!r} of group {group.name!r} clashes with {outputs[out]}",
                    "give the joins different prefixes",
                )
            else:
                outputs[out] = f"that of group {group.name!r} (joins[{i}])"
