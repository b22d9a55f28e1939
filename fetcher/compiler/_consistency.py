"""Stage 2, consistency: how definitions fit each other and their own sources.

Online and production joins use only online and production group-bys; every key
mapping names existing columns of one type and every group-by key is fed; accuracy fits
the join's context (the temporal semantics mismatch, docs/compiler.md); windows and
TEMPORAL accuracy have event times; a TTL is not shorter than the longest window.
"""

from __future__ import annotations

from fetcher.compiler._model import GroupModel, JoinModel, PartModel
from fetcher.compiler._problems import Problem, ProblemSink, Stage
from fetcher.compiler._refs import References
from fetcher.compiler._types import format_duration
from fetcher.definitions import Accuracy, EntitySource


def _sink(model: GroupModel | JoinModel) -> ProblemSink:
    d = model.definition
    return ProblemSink(Stage.CONSISTENCY, d.file, d.line, d.name)


def _where(g: GroupModel) -> str:
    return f"{g.definition.file}:{g.definition.line}"


def _context(join: JoinModel) -> str:
    """"snapshot" (only day-end lookups), "temporal" (only point-in-time), or "any"."""
    left = join.left
    if left is None:
        return "any"  # request keys: read as of the request time
    if left.kind == "entities" or left.time_column is None:
        return "snapshot"
    if left.kind == "events" and left.topic is not None:
        return "temporal"
    return "any"


def _flags(join: JoinModel, part: PartModel, g: GroupModel, sink: ProblemSink) -> None:
    field = f"right_parts[{part.index}].group_by"
    for flag in ("online", "production"):
        if getattr(join.obj, flag) is True and getattr(g.obj, flag) is not True:
            sink.error(field, f"a {flag} join uses {g.name!r}, which is not {flag}",
                       f"set {flag}=True on {g.name} ({_where(g)}) or {flag}=False on the join")


def _keys(join: JoinModel, part: PartModel, g: GroupModel, sink: ProblemSink) -> set[str]:
    """Check the key mapping; return the left columns the part reads."""
    where = f"right_parts[{part.index}].key_mapping"
    left = dict(join.left_columns)
    keys = dict(g.keys)
    fed: dict[str, str] = {}
    used: set[str] = set()
    reported = len(sink.items)
    for left_key, group_key in part.key_mapping:
        if left_key not in left:
            sink.error(f"{where}.{left_key}", f"the left has no column {left_key!r}",
                       f"map one of {', '.join(left) or '(none)'}")
        elif group_key not in keys:
            sink.error(f"{where}.{left_key}", f"{g.name!r} has no key {group_key!r}",
                       f"map to one of {', '.join(keys)}")
        elif left[left_key] != keys[group_key]:
            sink.error(f"{where}.{left_key}",
                       f"left {left_key!r} is {left[left_key]} but key {group_key!r} of "
                       f"{g.name!r} is {keys[group_key]}", "map columns of the same type")
        elif group_key in fed:
            sink.error(f"{where}.{left_key}",
                       f"key {group_key!r} is already fed by {fed[group_key]!r}",
                       "feed each group-by key from one left column")
        else:
            fed[group_key] = left_key
            used.add(left_key)
    if len(sink.items) > reported:
        return used  # a wrong mapping: "not fed" would only repeat it
    for group_key, kind in g.keys:
        if group_key in fed:
            continue
        if group_key not in left:
            sink.error(where, f"key {group_key!r} of {g.name!r} is not fed: the left has no "
                       f"{group_key!r}", f'map it: key_mapping={{"<left key>": "{group_key}"}}')
        elif left[group_key] != kind:
            sink.error(where, f"key {group_key!r} of {g.name!r} is {kind} but the left's "
                       f"{group_key!r} is {left[group_key]}",
                       "map it from a left column of the same type")
        else:
            used.add(group_key)
    return used


def _accuracy(join: JoinModel, part: PartModel, g: GroupModel, sink: ProblemSink) -> None:
    context = _context(join)
    field = f"right_parts[{part.index}].group_by"
    if context == "snapshot" and g.accuracy is Accuracy.TEMPORAL:
        sink.error(field, f"temporal semantics mismatch: {g.name!r} is TEMPORAL but the left "
                   "has no event time (an EntitySource, or no time_column), so its values can "
                   "only be looked up as of the end of a day",
                   f"set accuracy=Accuracy.SNAPSHOT on {g.name} or give the left a time_column")
    elif context == "temporal" and g.accuracy is Accuracy.SNAPSHOT:
        sink.error(field, f"temporal semantics mismatch: {g.name!r} is SNAPSHOT but the left "
                   "is a stream (an EventSource with a topic) whose events are scored as they "
                   "happen, and would get values as of the last day's end",
                   f"set accuracy=Accuracy.TEMPORAL on {g.name} or drop the left's topic")


def check_join(join: JoinModel, groups: dict[str, GroupModel], refs: References,
               sink: ProblemSink) -> None:
    """Stage 2 of one join against the group-bys it uses."""
    used: set[str] = set()
    for part in join.parts:
        target = refs.resolve(part.group_by, "group_by")
        g = groups.get(target.name) if target is not None else None
        if g is None:
            continue  # unknown: stage 3
        _flags(join, part, g, sink)
        used |= _keys(join, part, g, sink)
        _accuracy(join, part, g, sink)
    if join.left_kind == "keys":
        for name, _ in join.left_columns:
            if name not in used:
                sink.warn(f"left.{name}", f"request key {name!r} feeds no group-by",
                          "remove it from left or map it in a part's key_mapping")


def check_group(g: GroupModel, sink: ProblemSink) -> None:
    """Stage 2 of one group-by against its sources."""
    windowed = g.longest_window_s is not None
    for i, (raw, source) in enumerate(zip(g.obj.sources, g.sources, strict=True)):
        needs = ("TEMPORAL accuracy" if g.accuracy is Accuracy.TEMPORAL
                 else "windowed aggregations" if windowed else None)
        if needs is None:
            continue
        if source.time_column is None:
            fix = "set query.time_column to the event time column"
            sink.error(f"sources[{i}].query.time_column", f"event times are needed for {needs}, "
                       "but the source has no time_column",
                       fix + (" or use Accuracy.SNAPSHOT" if not windowed else ""))
        elif isinstance(raw, EntitySource) and raw.mutation_table is None:
            sink.error(f"sources[{i}].mutation_table", f"{needs} over an EntitySource are "
                       "computed from its mutations", "give mutation_table, or use an EventSource")
    if g.ttl_s is not None and g.longest_window_s is not None and g.ttl_s < g.longest_window_s:
        sink.error("ttl", f"ttl {g.obj.ttl} is shorter than the longest window "
                   f"{format_duration(g.longest_window_s)}: its events would be gone before "
                   "the window closes", f"set ttl to {format_duration(g.longest_window_s)} or "
                   "more, or shorten the window")


def check_consistency(groups: dict[str, GroupModel], joins: dict[str, JoinModel],
                      refs: References) -> list[Problem]:
    """Run stage 2 over every model."""
    problems: list[Problem] = []
    for g in groups.values():
        sink = _sink(g)
        check_group(g, sink)
        problems.extend(sink.items)
    for j in joins.values():
        sink = _sink(j)
        check_join(j, groups, refs, sink)
        problems.extend(sink.items)
    return problems
