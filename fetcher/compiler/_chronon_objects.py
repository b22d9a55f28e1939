"""Chronon GroupBy and Join (thrift simple-JSON) -> fetcher.definitions GroupBy and Join.

Names: the Chronon name (`metaData.name`) is the object's name. A join part's prefix is
`<prefix>_<group-by name, cleaned>_` (or `<group-by name, cleaned>_` without a prefix), so
the served names are Chronon's: `<prefix>_<group-by>_<column>_<operation>_<window>`. An
embedded group-by (every Chronon join holds copies of its group-bys) is registered as a
definition of its own; the join refers to it by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fetcher.compiler._chronon_sources import (
    IGNORED_META,
    ChrononFile,
    clean_name,
    custom_json,
    flag,
    map_query,
    source_body,
    table_source,
)
from fetcher.definitions import (
    Accuracy,
    Aggregation,
    EntitySource,
    EventSource,
    GroupBy,
    Join,
    JoinPart,
    JoinSource,
    Operation,
)

OPERATIONS: dict[int, Operation] = {
    0: Operation.MIN, 1: Operation.MAX, 2: Operation.FIRST, 3: Operation.LAST,
    4: Operation.UNIQUE_COUNT, 5: Operation.APPROX_UNIQUE_COUNT, 6: Operation.COUNT,
    7: Operation.SUM, 8: Operation.AVERAGE, 9: Operation.VARIANCE,
    12: Operation.APPROX_PERCENTILE, 13: Operation.LAST_K, 14: Operation.FIRST_K,
    15: Operation.TOP_K, 16: Operation.BOTTOM_K, 17: Operation.HISTOGRAM,
}
# Chronon operations fetcher has no equivalent of, and why.
REFUSED_OPERATIONS: dict[int, str] = {
    10: "SKEW (third standardized moment): fetcher has no skew aggregation",
    11: "KURTOSIS (fourth standardized moment): fetcher has no kurtosis aggregation",
    18: "APPROX_HISTOGRAM_K (an approximate top-k histogram): fetcher's histogram is exact "
        "and unbounded, a different result",
    19: "BOUNDED_UNIQUE_COUNT (unique values counted up to k): fetcher's unique_count does "
        "not stop at k, a different result",
}
TIME_UNITS = {0: "h", 1: "d", 2: "m"}  # HOURS, DAYS, MINUTES (newer Chronon)
ACCURACY = {0: Accuracy.TEMPORAL, 1: Accuracy.SNAPSHOT}
_K_OPS = {Operation.FIRST_K: "first", Operation.LAST_K: "last", Operation.TOP_K: "top",
          Operation.BOTTOM_K: "bottom"}
_UNBOUNDED = 2**31 - 1  # Chronon's unbounded window length (Int.MaxValue)
_META = frozenset({"name", "online", "production", "team", "customJson", "deprecationDate",
                   "samplePercent"}) | IGNORED_META
_GROUP_BY = frozenset({"metaData", "sources", "keyColumns", "aggregations", "accuracy",
                       "backfillStartDate"})  # backfillStartDate: Chronon's backfill job
_JOIN = frozenset({"metaData", "left", "joinParts", "rowIds"})
_JOIN_REFUSED = {
    "onlineExternalParts": ("external parts are not supported (they call services outside "
                            "the feature store)",
                            "remove them or serve them beside the fetcher"),
    "derivations": ("Spark SQL derivations are not supported (fetcher serves the parts' "
                    "features as they are)",
                    "remove them and compute the derived values in the model server"),
    "labelPart": ("label parts are not supported (labels are joined offline into training "
                  "data, never served)", "remove labelPart; build labels with Chronon"),
    "bootstrapParts": ("bootstrap parts are not supported (they fill training data from "
                       "precomputed tables)", "remove bootstrapParts; bootstrap with Chronon"),
    "skewKeys": ("skew keys are not supported (they drop keys from Chronon's batch output)",
                 "remove skewKeys"),
}


def _meta(ctx: ChrononFile, where: str, raw: object) -> tuple[str, Mapping[str, Any]] | None:
    meta = raw if isinstance(raw, Mapping) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        ctx.error("", f"{where}metaData.name", "is missing", "recompile the config with Chronon")
        return None
    ctx.unknown(name, f"{where}metaData.", meta, _META)
    return name, meta


def _tags(ctx: ChrononFile, name: str, where: str, meta: Mapping[str, Any],
          key: str) -> dict[str, str]:
    tags = custom_json(ctx, name, f"{where}metaData.customJson", meta.get("customJson"), key)
    for field, tag in (("team", "team"), ("deprecationDate", "deprecation_date")):
        if isinstance(meta.get(field), str):
            tags[tag] = meta[field]
    return tags


def _windows(ctx: ChrononFile, name: str, where: str, raw: object) -> list[str] | None:
    if not isinstance(raw, list) or not raw:
        ctx.error(name, where, f"{raw!r:.40} is not a non-empty list of windows",
                  "leave windows out for an unbounded aggregation")
        return None
    out: list[str] = []
    for i, w in enumerate(raw):
        length = w.get("length") if isinstance(w, Mapping) else None
        code = w.get("timeUnit") if isinstance(w, Mapping) else None
        unit = TIME_UNITS.get(code) if isinstance(code, int) else None
        if not isinstance(length, int) or unit is None:
            ctx.error(name, f"{where}[{i}]", f"{w!r:.60} is not a window", "write "
                      '{"length": 7, "timeUnit": 1} (timeUnit: HOURS 0, DAYS 1, MINUTES 2)')
        elif length <= 0 or length == _UNBOUNDED:
            ctx.error(name, f"{where}[{i}]", "an unbounded window among bounded ones is not "
                      "supported", "make it a separate aggregation without windows")
        else:
            out.append(f"{length}{unit}")  # Chronon's name for it: 7d, 1h, 30m
    return out if len(out) == len(raw) else None


def _arg_map(ctx: ChrononFile, name: str, where: str, op: Operation,
             raw: object) -> tuple[int | None, tuple[float, ...] | None] | None:
    args = raw if isinstance(raw, Mapping) else {}
    k: int | None = None
    percentiles: tuple[float, ...] | None = None
    ok = True
    for key in sorted(set(args) - {"k", "percentiles"}):
        ctx.warn(name, f"{where}.{key}", "is not an argument this importer reads: it is not "
                 "carried", "remove it")
    if "k" in args:
        if op in _K_OPS:
            try:
                k = int(args["k"])
            except (TypeError, ValueError):
                ctx.error(name, f"{where}.k", f"{args['k']!r:.20} is not a whole number",
                          'write "k": "5"')
                ok = False
        else:
            ctx.warn(name, f"{where}.k", f"k={args['k']} (the sketch's size for "
                     f"{op.value}) is not carried: fetcher picks its sketches' accuracy",
                     "remove k, or ignore this")
    if "percentiles" in args:
        try:
            parsed = json.loads(args["percentiles"])
            percentiles = tuple(float(p) for p in parsed)
        except (TypeError, ValueError):
            ctx.error(name, f"{where}.percentiles", f"{args['percentiles']!r:.40} is not a "
                      "JSON list of numbers", 'write "percentiles": "[0.5, 0.9]"')
            ok = False
    return (k, percentiles) if ok else None


def _aggregation(ctx: ChrononFile, name: str, where: str, raw: object) -> Aggregation | None:
    if not isinstance(raw, Mapping):
        ctx.error(name, where, "is not an object", "recompile the config with Chronon")
        return None
    before = len(ctx.problems)
    ctx.unknown(name, f"{where}.", raw,
                frozenset({"inputColumn", "operation", "argMap", "windows", "buckets"}))
    code = raw.get("operation")
    op = OPERATIONS.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
    if op is None:
        why = REFUSED_OPERATIONS.get(code if isinstance(code, int) else -1,
                                     f"operation {code!r:.20} is not a Chronon operation "
                                     "this importer knows")
        ctx.error(name, f"{where}.operation", f"{why}; it is not supported", "remove the "
                  "aggregation, or use one fetcher has (docs/compiler.md, Chronon configs)")
    if raw.get("buckets"):
        ctx.error(name, f"{where}.buckets", "bucketed aggregations (a map per bucket value) "
                  "are not supported", "remove buckets, or key a group-by by the bucket column")
    column = raw.get("inputColumn")
    if not isinstance(column, str) or not column:
        ctx.error(name, f"{where}.inputColumn", "is missing", "name the aggregated column")
    windows = None if raw.get("windows") is None else _windows(
        ctx, name, f"{where}.windows", raw.get("windows"))
    args = _arg_map(ctx, name, f"{where}.argMap", op, raw.get("argMap")) if op else None
    if len(ctx.problems) > before and any(not p.warning for p in ctx.problems[before:]):
        return None
    assert op is not None and args is not None and isinstance(column, str)
    k, percentiles = args
    # Chronon names *_k features <column>_last<k> (last5), not <column>_last_k.
    base = f"{column}_{_K_OPS[op]}{k}" if op in _K_OPS and k is not None else None
    return Aggregation(column, op, windows=windows, k=k, percentiles=percentiles, name=base)


def map_source(ctx: ChrononFile, obj: str, where: str,
               raw: object) -> EventSource | EntitySource | JoinSource | None:
    """One Chronon Source (events, entities or joinSource) as ours."""
    found = source_body(ctx, obj, where, raw)
    if found is None:
        return None
    kind, body = found
    if kind != "joinSource":
        return table_source(ctx, obj, f"{where}.{kind}", kind, body)
    where = f"{where}.joinSource"
    ctx.unknown(obj, f"{where}.", body, frozenset({"join", "query"}))
    raw_join = body.get("join")
    if not isinstance(raw_join, Mapping):
        ctx.error(obj, f"{where}.join", "is missing", "give the join the source reads")
        return None
    joined = map_join(ctx, f"{where}.join.", raw_join)
    if joined is None or joined.name is None:
        return None
    meta = raw_join.get("metaData")
    namespace = meta.get("outputNamespace") if isinstance(meta, Mapping) else None
    # Its columns are those of the join's output table, <outputNamespace>.<cleanName>.
    table = f"{namespace}.{clean_name(joined.name)}" if namespace else clean_name(joined.name)
    mapped = map_query(ctx, obj, f"{where}.query", body.get("query"), table)
    if mapped is None:
        return None
    query, columns = mapped
    return JoinSource(join=joined.name, query=query, columns=columns)


def map_group_by(ctx: ChrononFile, where: str, raw: Mapping[str, Any]) -> GroupBy | None:
    """A Chronon GroupBy (top-level: where ""; embedded: its field path + ".") as ours."""
    found = _meta(ctx, where, raw.get("metaData"))
    if found is None:
        return None
    name, meta = found
    before = len(ctx.problems)
    ctx.unknown(name, where, raw, _GROUP_BY)
    keys = raw.get("keyColumns")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        ctx.error(name, f"{where}keyColumns", f"{keys!r:.40} is not a list of key columns",
                  "recompile the config with Chronon")
    raw_sources = raw.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        ctx.error(name, f"{where}sources", "is missing or empty", "give the group-by a source")
        raw_sources = []
    sources = [map_source(ctx, name, f"{where}sources[{i}]", s) for i, s in enumerate(raw_sources)]
    aggregations: list[Aggregation | None] | None = None
    raw_aggs = raw.get("aggregations")
    if raw_aggs is not None:
        if not isinstance(raw_aggs, list):
            ctx.error(name, f"{where}aggregations", "is not a list",
                      "recompile the config with Chronon")
            raw_aggs = []
        aggregations = [_aggregation(ctx, name, f"{where}aggregations[{i}]", a)
                        for i, a in enumerate(raw_aggs)]
    accuracy_code = raw.get("accuracy")
    if accuracy_code is None:  # Chronon infers it: TEMPORAL when a source has a topic
        topics = [s for s in sources if getattr(s, "topic", None) or
                  getattr(s, "mutation_topic", None)]
        accuracy = Accuracy.TEMPORAL if topics else Accuracy.SNAPSHOT
    elif accuracy_code in ACCURACY:
        accuracy = ACCURACY[accuracy_code]
    else:
        ctx.error(name, f"{where}accuracy", f"{accuracy_code!r:.20} is not an Accuracy",
                  "write 0 (TEMPORAL) or 1 (SNAPSHOT)")
        accuracy = Accuracy.SNAPSHOT
    tags = _tags(ctx, name, where, meta, "groupby_tags")
    if any(not p.warning for p in ctx.problems[before:]):
        return None
    assert isinstance(keys, list)
    group_by = GroupBy(
        keys=list(keys), sources=[s for s in sources if s is not None],
        aggregations=None if aggregations is None else [a for a in aggregations if a],
        online=flag(meta.get("online")), production=flag(meta.get("production")),
        accuracy=accuracy, tags=tags, name=name,
    )
    ctx.register(ctx, "group_by", name, group_by, where)
    return group_by


def _parts(ctx: ChrononFile, name: str, where: str, raw: object) -> list[JoinPart] | None:
    if not isinstance(raw, list) or not raw:
        ctx.error(name, f"{where}joinParts", "is empty: a join without group-bys has nothing "
                  "fetcher can serve", "add join parts, or drop the join")
        return None
    parts: list[JoinPart] = []
    for i, part in enumerate(raw):
        at = f"{where}joinParts[{i}]"
        if not isinstance(part, Mapping) or not isinstance(part.get("groupBy"), Mapping):
            ctx.error(name, f"{at}.groupBy", "is missing", "recompile the config with Chronon")
            continue
        ctx.unknown(name, f"{at}.", part, frozenset({"groupBy", "keyMapping", "prefix"}))
        group_by = map_group_by(ctx, f"{at}.groupBy.", part["groupBy"])
        mapping = part.get("keyMapping")
        if mapping is not None and not isinstance(mapping, Mapping):
            ctx.error(name, f"{at}.keyMapping", "is not a mapping", "write {left: key}")
            continue
        prefix = part.get("prefix")
        if group_by is None or group_by.name is None:
            continue
        # Chronon: <prefix>_<group-by cleanName>_<feature>; our prefix is prepended as it is.
        full = "_".join(p for p in (prefix, clean_name(group_by.name)) if p) + "_"
        parts.append(JoinPart(group_by.name, dict(mapping) if mapping else None, full))
    return parts if len(parts) == len(raw) else None


def map_join(ctx: ChrononFile, where: str, raw: Mapping[str, Any]) -> Join | None:
    """A Chronon Join (top-level: where ""; embedded in a joinSource: its path + ".")."""
    found = _meta(ctx, where, raw.get("metaData"))
    if found is None:
        return None
    name, meta = found
    before = len(ctx.problems)
    ctx.unknown(name, where, raw, _JOIN | frozenset(_JOIN_REFUSED))
    for field, (problem, fix) in _JOIN_REFUSED.items():
        value = raw.get(field)
        if field == "derivations" and _passthrough(value):
            continue  # only {"name": "*", "expression": "*"}: every feature as it is
        if value:
            ctx.error(name, f"{where}{field}", problem, fix)
    if raw.get("rowIds"):
        ctx.warn(name, f"{where}rowIds", "is not carried: it identifies left rows for "
                 "Chronon's bootstrap and logging jobs", "remove rowIds, or ignore this")
    left = map_source(ctx, name, f"{where}left", raw.get("left")) if raw.get("left") else None
    if left is None and not raw.get("left"):
        ctx.error(name, f"{where}left", "is missing", "give the join its left source")
    parts = _parts(ctx, name, where, raw.get("joinParts"))
    sample = meta.get("samplePercent", 100.0)
    if not isinstance(sample, int | float) or isinstance(sample, bool) or not 0 <= sample <= 100:
        ctx.error(name, f"{where}metaData.samplePercent", f"{sample!r:.20} is not in [0, 100] "
                  "(fetcher's sample_percent)", "set it between 0 (log none) and 100")
    tags = _tags(ctx, name, where, meta, "join_tags")
    if any(not p.warning for p in ctx.problems[before:]) or left is None or parts is None:
        return None
    join = Join(left=left, right_parts=parts, online=flag(meta.get("online")),
                production=flag(meta.get("production")), sample_percent=float(sample),
                tags=tags, name=name)
    ctx.register(ctx, "join", name, join, where)
    return join


def _passthrough(value: object) -> bool:
    return isinstance(value, Sequence) and len(value) == 1 and value[0] == {
        "name": "*", "expression": "*"}
