"""Stage 3, dependencies: every reference names a collected definition, and none is circular.

Edges point from a definition to what it uses: a join to the group-bys of its parts and
to the join of a JoinSource left, a group-by to the join of a JoinSource source.
"""

from __future__ import annotations

from dataclasses import dataclass

from fetcher.compiler._discover import Definition
from fetcher.compiler._problems import Problem, ProblemSink, Stage
from fetcher.compiler._refs import References, describe
from fetcher.definitions import GroupBy, Join, JoinPart, JoinSource


@dataclass(frozen=True, slots=True)
class Edge:
    """`source` uses `target` through `field` (e.g. right_parts[0].group_by)."""

    source: Definition
    target: Definition
    field: str
    kind: str  # "part", "left" or "source"


def _references(d: Definition) -> list[tuple[str, object, str, str]]:
    """(field, reference, kind it must resolve to, edge kind) of one definition."""
    out: list[tuple[str, object, str, str]] = []
    if isinstance(d.obj, GroupBy):
        for i, s in enumerate(d.obj.sources):
            if isinstance(s, JoinSource):
                out.append((f"sources[{i}].join", s.join, "join", "source"))
    elif isinstance(d.obj, Join):
        if isinstance(d.obj.left, JoinSource):
            out.append(("left.join", d.obj.left.join, "join", "left"))
        for i, part in enumerate(d.obj.right_parts):
            if isinstance(part, JoinPart):
                out.append((f"right_parts[{i}].group_by", part.group_by, "group_by", "part"))
    return out


def _unknown(sink: ProblemSink, field: str, ref: object, kind: str, known: list[str]) -> None:
    folder = "group_bys" if kind == "group_by" else "joins"
    if isinstance(ref, str):
        sink.error(field, f"unknown {kind} {ref!r}",
                   f"define it in {folder}/ or use one of {', '.join(known) or '(none)'}")
    else:
        sink.error(field, f"{describe(ref)} is not bound to a module-level variable under "
                   f"{folder}/", f"define it in {folder}/<team>/<module>.py and import it")


def edges(
    definitions: tuple[Definition, ...], refs: References
) -> tuple[list[Edge], list[Problem]]:
    """Every resolved reference as an edge, and the unresolved ones as problems."""
    found: list[Edge] = []
    problems: list[Problem] = []
    for d in definitions:
        sink = ProblemSink(Stage.DEPENDENCIES, d.file, d.line, d.name)
        for field, ref, kind, edge_kind in _references(d):
            target = refs.resolve(ref, kind)
            if target is None:
                known = sorted(x.name for x in definitions if x.kind == kind)
                _unknown(sink, field, ref, kind, known)
            else:
                found.append(Edge(d, target, field, edge_kind))
        problems.extend(sink.items)
    return found, problems


def _cycles(found: list[Edge]) -> list[list[Edge]]:
    out: dict[tuple[str, ...], list[Edge]] = {}
    by_source: dict[int, list[Edge]] = {}
    for e in found:
        by_source.setdefault(id(e.source), []).append(e)
    state: dict[int, int] = {}  # 1: on the path, 2: done
    path: list[Edge] = []

    def visit(d: Definition) -> None:
        state[id(d)] = 1
        for e in by_source.get(id(d), ()):
            if state.get(id(e.target)) == 1:
                start = next(i for i, p in enumerate(path) if p.source is e.target) if any(
                    p.source is e.target for p in path) else len(path)
                cycle = [*path[start:], e]
                names = [f"{c.source.kind}:{c.source.name}" for c in cycle]
                turn = names.index(min(names))
                cycle = cycle[turn:] + cycle[:turn]
                out.setdefault(tuple(sorted(names)), cycle)
            elif id(e.target) not in state:
                path.append(e)
                visit(e.target)
                path.pop()
        state[id(d)] = 2

    roots = sorted({id(e.source): e.source for e in found}.values(),
                   key=lambda d: (d.kind, d.name))
    for d in roots:
        if id(d) not in state:
            visit(d)
    return [out[k] for k in sorted(out)]


def check_dependencies(definitions: tuple[Definition, ...],
                       refs: References) -> tuple[list[Edge], list[Problem]]:
    """Run stage 3: unknown references, then cycles printed as `a -> b -> a`."""
    found, problems = edges(definitions, refs)
    for cycle in _cycles(found):
        first = cycle[0].source
        text = " -> ".join([c.source.name for c in cycle] + [first.name])
        problems.append(Problem(Stage.DEPENDENCIES, first.file, first.line, first.name,
                                cycle[0].field, f"circular dependency: {text}",
                                "break the cycle by removing one dependency"))
    return found, problems
