"""Stage 1, schema: each definition on its own (names, types, keys, operations, windows),
and the output names of each join after prefixes. Builds the models later stages read."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fetcher.catalog import NAME_RE
from fetcher.compiler._aggregations import aggregation_features
from fetcher.compiler._derived import check_context, check_declared, derive
from fetcher.compiler._discover import Definition
from fetcher.compiler._model import FeatureModel, GroupModel, JoinModel, PartModel, SourceModel
from fetcher.compiler._problems import Problem, ProblemSink, Stage
from fetcher.compiler._refs import References
from fetcher.compiler._sources import is_source, resolve_source
from fetcher.compiler._types import KEY_TYPES, normalize_type, parse_duration
from fetcher.compiler._versions import parse_version
from fetcher.definitions import Accuracy, AvroSchema, Cache, GroupBy, Join, JoinPart

AVRO_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AVRO_NAMESPACE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True, slots=True)
class SchemaResult:
    """Stage 1's models (of the definitions without errors) and its problems; `later`: the
    derivations' unknown names and cycles, which stage 3 reports."""

    groups: dict[str, GroupModel]
    joins: dict[str, JoinModel]
    problems: list[Problem]
    later: list[Problem] = field(default_factory=list)


def _sink(d: Definition) -> ProblemSink:
    return ProblemSink(Stage.SCHEMA, d.file, d.line, d.name)


def _names(definitions: Sequence[Definition], problems: list[Problem]) -> None:
    seen: dict[tuple[str, str], Definition] = {}
    for d in definitions:
        sink = _sink(d)
        if not NAME_RE.match(d.name):
            sink.error("name", f"{d.name!r} has characters other than letters, digits, _ . -",
                       "rename the variable or pass name= with letters, digits, _ . and -")
        other = seen.setdefault((d.kind, d.name), d)
        if other is not d:
            sink.error("name", f"{d.kind} {d.name!r} is also defined at {other.file}:{other.line}",
                       "give each definition a unique name (name=... or another variable)")
        problems.extend(sink.items)


def _duration(value: object, field: str, sink: ProblemSink) -> int | None:
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is None:
        sink.error(field, f"{value!r:.20} is not a duration",
                   'write minutes, hours or days: "30m", "12h", "30d", or None')
    return seconds


def _common(obj: GroupBy | Join, sink: ProblemSink) -> None:
    for flag in ("online", "production"):
        if not isinstance(getattr(obj, flag), bool):
            sink.error(flag, f"{getattr(obj, flag)!r:.20} is not a bool", "write True or False")
    if not isinstance(obj.description, str):
        sink.error("description", "is not a string", "write a string")
    tags = obj.tags
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        sink.error("tags", f"{tags!r:.40} is not a mapping of strings", 'write {"team": "risk"}')
    if obj.version is not None and parse_version(obj.version) is None:
        sink.error("version", f"{obj.version!r:.20} is not a version",
                   'write MAJOR.MINOR.PATCH, e.g. "1.2.0" ("2" is "2.0.0"), or None to have it '
                   "computed")


def _group_keys(obj: GroupBy, sink: ProblemSink) -> list[str] | None:
    keys = obj.keys
    if isinstance(keys, str) or not isinstance(keys, Sequence) or not keys:
        sink.error("keys", f"{keys!r:.40} is not a non-empty list of key names",
                   'write keys=["user_id"]')
        return None
    if not all(isinstance(k, str) and k for k in keys):
        sink.error("keys", "has an entry that is not a name", "list key column names")
        return None
    dupes = sorted({k for k in keys if list(keys).count(k) > 1})
    if dupes:
        sink.error("keys", f"{', '.join(dupes)} listed twice", "list each key once")
        return None
    return list(keys)


def _sources(repo: Path, obj: GroupBy, keys: list[str], sink: ProblemSink) -> list[SourceModel]:
    raw = obj.sources
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw or is_source(raw):
        sink.error("sources", f"{raw!r:.40} is not a non-empty list of sources",
                   "write sources=[EventSource(...)]")
        return []
    models = [resolve_source(repo, s, f"sources[{i}]", sink) for i, s in enumerate(raw)]
    good = [m for m in models if m is not None]
    if len(good) < len(models):
        return []
    first = good[0]
    for i, m in enumerate(good):
        for key in keys:
            column = m.column(key)
            if column is None:
                sink.error(f"sources[{i}].query.selects", f"does not select the key {key!r}",
                           f"select {key!r} in every source")
            elif column.type not in KEY_TYPES:
                sink.error(f"sources[{i}].query.selects.{key}",
                           f"key {key!r} is {column.type}, not a key type",
                           "select the key as int64, string or bytes")
        if i == 0:
            continue
        mine, theirs = dict(m.columns), dict(first.columns)
        if set(mine) != set(theirs):
            sink.error(f"sources[{i}].query.selects",
                       f"selects {sorted(mine)} but sources[0] selects {sorted(theirs)}",
                       "select the same output columns in every source")
        for name in sorted(set(mine) & set(theirs)):
            if mine[name].type != theirs[name].type:
                sink.error(f"sources[{i}].query.selects.{name}",
                           f"is {mine[name].type} here and {theirs[name].type} in sources[0]",
                           "select it with the same type in every source")
    return good


def _plain_features(source: SourceModel, keys: list[str], sink: ProblemSink) -> list[FeatureModel]:
    out = [FeatureModel(n, c, n) for n, c in source.columns if n not in keys]
    if not out:
        sink.error("sources[0].query.selects", "selects only keys",
                   "select at least one column besides the keys, or add aggregations")
    return out


def _avro(obj: GroupBy, repo: Path, sink: ProblemSink) -> None:
    avro = obj.avro
    if avro is None:
        return
    if not isinstance(avro, AvroSchema):
        sink.error("avro", f"is {type(avro).__name__}, not AvroSchema",
                   "write avro=AvroSchema(...)")
        return
    if not isinstance(avro.namespace, str) or not AVRO_NAMESPACE_RE.match(avro.namespace):
        sink.error("avro.namespace", f"{avro.namespace!r:.40} is not an Avro namespace",
                   'write dotted names, e.g. "fetcher.features"')
    if avro.record is not None and (
        not isinstance(avro.record, str) or not AVRO_NAME_RE.match(avro.record)
    ):
        sink.error("avro.record", f"{avro.record!r:.40} is not an Avro record name",
                   "use letters, digits and _, not starting with a digit")
    if avro.doc is not None and not isinstance(avro.doc, str):
        sink.error("avro.doc", "is not a string", "write a string")
    previous = avro.previous
    if isinstance(previous, str) or not isinstance(previous, Sequence):
        sink.error("avro.previous", "is not a list of paths", 'write ("schemas/x.v1.avsc",)')
        return
    for i, path in enumerate(previous):
        if not isinstance(path, str) or not path.endswith(".avsc") or not (repo / path).is_file():
            sink.error(f"avro.previous[{i}]", f"{path!r:.60} is not an .avsc file (looked in "
                       f"{repo})", "give the path of an earlier schema, relative to the repository")


def _cache(cache: object, sink: ProblemSink) -> None:
    if cache is None:
        return
    if not isinstance(cache, Cache):
        sink.error("cache", f"is {type(cache).__name__}, not Cache", "write cache=Cache(...)")
        return
    for flag in ("l1", "l2"):
        if not isinstance(getattr(cache, flag), bool):
            sink.error(f"cache.{flag}", "is not a bool", "write True or False")
    for ttl in ("l1_ttl", "l2_ttl"):
        value = getattr(cache, ttl)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value < 0
        ):
            sink.error(f"cache.{ttl}", f"{value!r:.20} is not a number of seconds >= 0",
                       "write seconds, e.g. 5, or None for the settings' TTL")


def group_model(repo: Path, d: Definition, sink: ProblemSink) -> GroupModel | None:
    """Stage 1 of one GroupBy: its model, or None with the problems in `sink`."""
    obj = d.obj
    assert isinstance(obj, GroupBy)
    _common(obj, sink)
    if not isinstance(obj.accuracy, Accuracy):
        sink.error("accuracy", f"{obj.accuracy!r:.20} is not an Accuracy",
                   "use Accuracy.SNAPSHOT or Accuracy.TEMPORAL")
    if not isinstance(obj.store, str) or not NAME_RE.match(obj.store):
        sink.error("store", f"{obj.store!r:.40} is not a store name",
                   "name a [stores.<name>] of the settings, e.g. \"main\"")
    ttl_s = _duration(obj.ttl, "ttl", sink)
    max_age_s = _duration(obj.max_age, "max_age", sink)
    _cache(obj.cache, sink)
    _avro(obj, repo, sink)
    keys = _group_keys(obj, sink)
    sources = _sources(repo, obj, keys or [], sink) if keys is not None else []
    if keys is None or not sources:
        return None
    columns = dict(sources[0].columns)
    aggregated = obj.aggregations is not None
    longest: int | None = None
    if aggregated:
        features, longest = aggregation_features(obj.aggregations, columns, keys, sink,
                                                 online=obj.online is True)
        if obj.online is True and max_age_s is not None:
            sink.error("max_age", "an aggregation group's windows are as fresh as its log, so "
                       "it has no max age (the catalog refuses max_age_seconds for it)",
                       "remove max_age; a window's length bounds what it reads")
    else:
        features = _plain_features(sources[0], keys, sink)
    seen: set[str] = set()
    for f in features:
        if not AVRO_NAME_RE.match(f.name):
            sink.error(f"features.{f.name}", f"{f.name!r} is not a valid feature name",
                       "use letters, digits and _, not starting with a digit (rename the select)")
        elif f.name in seen:
            sink.error(f"features.{f.name}", f"feature {f.name!r} is produced twice",
                       "remove the duplicate aggregation or window")
        seen.add(f.name)
    if sink.items and any(not p.warning for p in sink.items):
        return None
    return GroupModel(d, obj, tuple((k, _key_type(sources[0], k)) for k in keys),
                      tuple(features), tuple(sources), aggregated, ttl_s, max_age_s, longest,
                      obj.accuracy)


def _key_type(source: SourceModel, key: str) -> str:
    column = source.column(key)
    assert column is not None
    return column.type


def _left(repo: Path, obj: Join, sink: ProblemSink) -> tuple[str, list[tuple[str, str]],
                                                              SourceModel | None] | None:
    left = obj.left
    if isinstance(left, Mapping):
        if not left:
            sink.error("left", "has no request keys", 'write {"user_id": "int64"}')
            return None
        keys: list[tuple[str, str]] = []
        for name, raw in left.items():
            kind = normalize_type(raw)
            if not isinstance(name, str) or not name:
                sink.error("left", f"{name!r:.40} is not a key name", "name each request key")
            elif kind not in KEY_TYPES:
                sink.error(f"left.{name}", f"{raw!r:.20} is not a key type",
                           "use int64, string or bytes")
            else:
                keys.append((name, kind))
        return ("keys", keys, None) if len(keys) == len(left) else None
    if not is_source(left):
        sink.error("left", f"is {type(left).__name__}, not request keys or a source",
                   'write {"user_id": "int64"} or an EventSource/EntitySource/JoinSource')
        return None
    model = resolve_source(repo, left, "left", sink)
    if model is None:
        return None
    return model.kind, [(n, c.type) for n, c in model.columns], model


def _parts(obj: Join, sink: ProblemSink) -> list[PartModel] | None:
    raw = obj.right_parts
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
        sink.error("right_parts", f"{raw!r:.40} is not a non-empty list of JoinPart",
                   "write right_parts=[JoinPart(group_by=...)]")
        return None
    parts: list[PartModel] = []
    for i, part in enumerate(raw):
        where = f"right_parts[{i}]"
        if not isinstance(part, JoinPart):
            sink.error(where, f"is {type(part).__name__}, not a JoinPart",
                       "write JoinPart(group_by=...)")
            continue
        if not isinstance(part.group_by, GroupBy | str) or part.group_by == "":
            sink.error(f"{where}.group_by", f"{part.group_by!r:.40} is not a GroupBy",
                       "give a GroupBy or its name")
            continue
        mapping = part.key_mapping or {}
        if not isinstance(mapping, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in mapping.items()
        ):
            sink.error(f"{where}.key_mapping", f"{mapping!r:.60} is not a mapping of names",
                       'write {"<left key>": "<group-by key>"}')
            continue
        prefix = part.prefix if part.prefix is not None else ""
        if not isinstance(prefix, str) or (prefix and not AVRO_NAME_RE.match(prefix)):
            sink.error(f"{where}.prefix", f"{prefix!r:.40} cannot start a feature name",
                       'use letters, digits and _, e.g. "user_"')
            continue
        parts.append(PartModel(i, part.group_by, tuple(mapping.items()), prefix))
    return parts if len(parts) == len(raw) else None


def join_model(repo: Path, d: Definition, sink: ProblemSink) -> JoinModel | None:
    """Stage 1 of one Join (without its parts' features, see `_outputs`)."""
    obj = d.obj
    assert isinstance(obj, Join)
    _common(obj, sink)
    sample = obj.sample_percent
    # 0 is allowed: the service is served but none of its vectors is logged.
    if not isinstance(sample, int | float) or isinstance(sample, bool) or not 0 <= sample <= 100:
        sink.error("sample_percent", f"{sample!r:.20} is not in [0, 100]",
                   "write a percentage such as 100.0 (0 logs none of its vectors)")
    declared = check_declared(obj, sink)
    context = check_context(obj, sink)
    left = _left(repo, obj, sink)
    parts = _parts(obj, sink)
    if left is None or parts is None or context is None or not declared or sink.items:
        return None
    kind, columns, source = left
    return JoinModel(d, obj, kind, tuple(columns), source, tuple(parts), context)


def _outputs(join: JoinModel, groups: dict[str, GroupModel], refs: References,
             sink: ProblemSink) -> None:
    """Feature names are unique across a join's parts after prefixes."""
    outputs: dict[str, str] = {}
    for part in join.parts:
        target = refs.resolve(part.group_by, "group_by")
        group = groups.get(target.name) if target is not None else None
        if group is None:
            continue  # unknown references are stage 3's; broken groups are reported
        clashes: dict[str, list[str]] = {}  # earlier part -> the names this part repeats
        for f in group.features:
            out = part.prefix + f.name
            if out in outputs:
                clashes.setdefault(outputs[out], []).append(out)
            else:
                outputs[out] = f"{group.name!r} (right_parts[{part.index}])"
        for other, names in clashes.items():
            shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
            sink.error(f"right_parts[{part.index}].prefix",
                       f"feature(s) {shown} of {group.name!r} clash with those of {other}",
                       "give the parts different prefixes")


def check_schema(repo: Path, definitions: tuple[Definition, ...], refs: References) -> SchemaResult:
    """Run stage 1 over every definition."""
    problems: list[Problem] = []
    _names(definitions, problems)
    groups: dict[str, GroupModel] = {}
    joins: dict[str, JoinModel] = {}
    for d in definitions:
        sink = _sink(d)
        if d.kind == "group_by":
            g = group_model(repo, d, sink)
            if g is not None:
                groups.setdefault(d.name, g)
        else:
            j = join_model(repo, d, sink)
            if j is not None:
                joins.setdefault(d.name, j)
        problems.extend(sink.items)
    later: list[Problem] = []
    for name, j in joins.items():
        sink = _sink(j.definition)
        _outputs(j, groups, refs, sink)
        joins[name] = dataclasses.replace(j, derivations=derive(j, groups, refs, sink, later))
        problems.extend(sink.items)
    return SchemaResult(groups, joins, problems, later)

