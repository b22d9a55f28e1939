"""A join's request-time values (`context`) and derivations: checked with fetcher.expressions.

Stage 1 checks the declarations, parses each expression and type-checks it over the join's
output features (after prefixes) and context values; a name that is none of those, and
derivations that use each other, are stage 3's (dependencies), so they are kept aside for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from fetcher.compiler._model import DerivedModel, GroupModel, JoinModel
from fetcher.compiler._problems import Problem, ProblemSink, Stage
from fetcher.compiler._refs import References
from fetcher.compiler._types import feature_type, normalize_type
from fetcher.definitions import Join
from fetcher.expressions import analyze_derivations
from fetcher.types import FeatureType

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The column type a derivation's FeatureType is written as (lineage, manifest).
COLUMN_TYPES: dict[FeatureType, str] = {
    FeatureType.DOUBLE: "double",
    FeatureType.INT64: "int64",
    FeatureType.STRING: "string",
    FeatureType.BOOL: "bool",
    FeatureType.BYTES: "bytes",
    FeatureType.DOUBLE_LIST: "list<double>",
    FeatureType.INT64_LIST: "list<int64>",
    FeatureType.STRING_LIST: "list<string>",
    FeatureType.BOOL_LIST: "list<bool>",
}
_LATER = frozenset({"unknown", "cycle"})  # the kinds of problem stage 3 reports


def check_context(obj: Join, sink: ProblemSink) -> tuple[tuple[str, str], ...] | None:
    """The declared request-time values (name -> column type), or None after problems."""
    raw = obj.context
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        sink.error("context", f"{raw!r:.40} is not a mapping of names to types",
                   'write context={"amount": "double"}')
        return None
    out: list[tuple[str, str]] = []
    for name, declared in raw.items():
        kind = normalize_type(declared)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            sink.error("context", f"{name!r:.40} is not a request-time value name",
                       "use letters, digits and _, not starting with a digit")
        elif kind is None or feature_type(kind) is None:
            sink.error(f"context.{name}", f"{declared!r:.30} is not a type",
                       "use int64, double, string, bool, bytes or list<T>")
        else:
            out.append((name, kind))
    return tuple(out) if len(out) == len(raw) else None


def check_declared(obj: Join, sink: ProblemSink) -> bool:
    """`derivations` is None or a mapping of names to expression strings."""
    raw = obj.derivations
    if raw is None:
        return True
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        sink.error("derivations", f"{raw!r:.60} is not a mapping of names to expressions",
                   'write derivations={"ratio": "user_spend / user_orders"}')
        return False
    return True


def _inputs(join: JoinModel, groups: Mapping[str, GroupModel],
            refs: References) -> dict[str, FeatureType] | None:
    """The join's features (after prefixes), then its context values; None when a part
    does not resolve to a checked group-by (stage 3, or its own problems, say why)."""
    inputs: dict[str, FeatureType] = {}
    for part in join.parts:
        target = refs.resolve(part.group_by, "group_by")
        group = groups.get(target.name) if target is not None else None
        if group is None:
            return None
        for f in group.features:
            t = feature_type(f.column.type)
            if t is not None:
                inputs.setdefault(part.prefix + f.name, t)
    return inputs


def derive(join: JoinModel, groups: Mapping[str, GroupModel], refs: References,
           sink: ProblemSink, later: list[Problem]) -> tuple[DerivedModel, ...]:
    """Stage 1 of a join's derivations: their models; stage 3's problems go to `later`."""
    features = _inputs(join, groups, refs)
    context = {name: feature_type(kind) for name, kind in join.context}
    for name in context:
        if features is not None and name in features:
            sink.error(f"context.{name}", "has the name of a feature of the join",
                       "rename the request-time value (or the part's prefix)")
    raw = join.obj.derivations or {}
    if not raw:
        return ()
    inputs = {**(features or {}), **{n: t for n, t in context.items() if t is not None}}
    analysis = analyze_derivations(dict(raw), inputs)
    stage3 = ProblemSink(Stage.DEPENDENCIES, sink.file, sink.line, sink.definition)
    for p in analysis.problems:
        if p.kind == "unknown" and features is None:
            continue  # a part that does not resolve is reported; its features are unknown
        target = stage3 if p.kind in _LATER else sink
        target.error(f"derivations.{p.derivation}", p.message, p.hint)
    later.extend(stage3.items)
    return tuple(DerivedModel(name, raw[name], COLUMN_TYPES[t], analysis.uses[name])
                 for name, t in analysis.types.items())
