"""Derivations of one service: `name = expression` checked together, ordered by their
dependencies, compiled once and evaluated over columns of N rows."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from fetcher.expressions import _columns as k
from fetcher.expressions._ast import Node, names
from fetcher.expressions._check import Typed, check
from fetcher.expressions._columns import Program
from fetcher.expressions._compile import compile_typed
from fetcher.expressions._errors import (
    DerivationError,
    DerivationProblem,
    ExpressionError,
    position,
    quote,
)
from fetcher.expressions._parser import parse
from fetcher.types import FeatureType

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Derivations = Mapping[str, str] | Sequence[tuple[str, str]]


class InputColumn(NamedTuple):
    """One input over N rows: its values and its fetcher.types.Status per row.

    A value must be of the input's type (float, or int, for DOUBLE; int for INT64; bool;
    str; bytes; a list) where the status is PRESENT; elsewhere it is not read.
    """

    values: Sequence[Any]
    statuses: bytes | Sequence[int]


class DerivedColumn(NamedTuple):
    """One derivation over N rows: values (None where not PRESENT) and statuses, bytes of
    fetcher.types.Status values (PRESENT, NULL_VALUE or ERROR)."""

    values: list[Any]
    statuses: bytes


@dataclass(frozen=True, slots=True)
class Analysis:
    """What checking a service's derivations found: the type of each derivation that
    checks (in declaration order), every problem, and the names each one uses."""

    types: dict[str, FeatureType]
    problems: tuple[DerivationProblem, ...]
    uses: dict[str, tuple[str, ...]]
    order: tuple[str, ...]  # the checked derivations in evaluation order
    typed: dict[str, Typed]


def _at(text: str, offset: int) -> str:
    return f"{position(text, offset)} of {quote(text)}"


def _declared(items: list[tuple[object, object]], inputs: Mapping[str, FeatureType],
              problems: list[DerivationProblem]) -> dict[str, object]:
    declared: dict[str, object] = {}
    for name, text in items:
        shown = str(name)[:60]
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.append(DerivationProblem(shown, "name", f"{name!r:.60} is not a feature "
                                              "name", "use letters, digits and _, not "
                                              "starting with a digit"))
        elif name in declared:
            problems.append(DerivationProblem(name, "name", "is declared twice",
                                              "give each derivation its own name"))
        elif name in inputs:
            problems.append(DerivationProblem(name, "name", "has the name of a feature or "
                                              "request-time value of the service",
                                              "give the derivation another name"))
        else:
            declared[name] = text
    return declared


def _unknown(name: str, text: str, tree: Node, known: set[str],
             problems: list[DerivationProblem]) -> bool:
    seen: set[str] = set()
    for ref in names(tree):
        if ref.name in known or ref.name in seen:
            continue
        seen.add(ref.name)
        close = difflib.get_close_matches(ref.name, sorted(known), n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + (
            "a derivation reads the service's features, its request-time values and its "
            "other derivations")
        problems.append(DerivationProblem(name, "unknown", f"{_at(text, ref.pos)}: unknown "
                                          f"name {ref.name!r:.60}", hint))
    return bool(seen)


def _order(uses: Mapping[str, tuple[str, ...]],
           problems: list[DerivationProblem]) -> tuple[list[str], set[str]]:
    """Derivations in dependency order (declaration order where free), and those on or
    behind a cycle; each cycle reported once, from its smallest name."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    order: list[str] = []
    blocked: set[str] = set()
    path: list[str] = []
    cycles: dict[frozenset[str], list[str]] = {}

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in uses[name]:
            if dep not in uses:
                continue  # an input, or a derivation that does not parse
            if state.get(dep) == 1:
                loop = path[path.index(dep):]
                turn = loop.index(min(loop))
                cycles.setdefault(frozenset(loop), loop[turn:] + loop[:turn])
                blocked.update(loop)
            elif dep not in state:
                visit(dep)
            if dep in blocked:
                blocked.add(name)
        path.pop()
        state[name] = 2
        if name not in blocked:
            order.append(name)

    for name in uses:
        if name not in state:
            visit(name)
    for loop in sorted(cycles.values()):
        text = " -> ".join([*loop, loop[0]])
        problems.append(DerivationProblem(loop[0], "cycle", f"circular derivations: {text}",
                                          "break the cycle: a derivation cannot use itself, "
                                          "directly or through other derivations"))
    return order, blocked


def analyze_derivations(derivations: Derivations,
                        inputs: Mapping[str, FeatureType]) -> Analysis:
    """Parse, order and type-check `derivations` (name -> expression, in order) over
    `inputs` (a service's features and request-time values, name -> type)."""
    items: list[tuple[object, object]] = list(
        derivations.items() if isinstance(derivations, Mapping) else derivations)
    problems: list[DerivationProblem] = []
    declared = _declared(items, inputs, problems)
    trees: dict[str, tuple[str, Node]] = {}
    for name, text in declared.items():
        if not isinstance(text, str):
            problems.append(DerivationProblem(name, "syntax", f"the expression is "
                                              f"{type(text).__name__}, not a string",
                                              'write it as a string, e.g. "a / b"'))
            continue
        try:
            trees[name] = (text, parse(text))
        except ExpressionError as exc:
            problems.append(DerivationProblem(name, "syntax",
                                              f"{_at(text, exc.offset)}: {exc.message}",
                                              "correct the expression (docs/derivations.md)"))
    known = set(inputs) | set(declared)
    uses = {name: tuple(dict.fromkeys(r.name for r in names(tree)))
            for name, (_, tree) in trees.items()}
    unknown = {name for name, (text, tree) in trees.items()
               if _unknown(name, text, tree, known, problems)}
    order, _ = _order(uses, problems)
    env: dict[str, FeatureType] = dict(inputs)
    typed: dict[str, Typed] = {}
    for name in order:
        if name in unknown or any(d in declared and d not in typed for d in uses[name]):
            continue  # its own problem, or that of a derivation it uses, is reported
        text, tree = trees[name]
        try:
            typed[name] = check(tree, env, text)
        except ExpressionError as exc:
            problems.append(DerivationProblem(name, "type",
                                              f"{_at(text, exc.offset)}: {exc.message}",
                                              "correct the expression (docs/derivations.md)"))
            continue
        env[name] = typed[name].type
    types = {name: typed[name].type for name in declared if name in typed}
    return Analysis(types, tuple(problems), uses,
                    tuple(n for n in order if n in typed), typed)


class CompiledDerivations:
    """A service's derivations, compiled once: `evaluate` computes them all over a batch."""

    __slots__ = ("_programs", "inputs", "names", "types")

    def __init__(self, analysis: Analysis, inputs: Mapping[str, FeatureType]) -> None:
        self.types: dict[str, FeatureType] = analysis.types
        self.names: tuple[str, ...] = tuple(analysis.types)
        read = {r for name in analysis.order for r in analysis.uses[name] if r in inputs}
        # The inputs the derivations read, name -> type (others in `columns` are ignored).
        self.inputs: dict[str, FeatureType] = {n: t for n, t in inputs.items() if n in read}
        self._programs: tuple[tuple[str, Program], ...] = tuple(
            (name, compile_typed(analysis.typed[name])) for name in analysis.order)

    def evaluate(self, columns: Mapping[str, InputColumn],
                 rows: int | None = None) -> dict[str, DerivedColumn]:
        """Every derivation over the N rows of `columns` (name -> InputColumn; each input
        in `self.inputs` is needed), in declaration order.

        A row that fails (a division by zero, an overflow...) is ERROR in that derivation;
        only a missing input or columns of different lengths raise (ValueError).
        """
        n = rows
        env: dict[str, k.Col] = {}
        for name, t in self.inputs.items():
            column = columns.get(name)
            if column is None:
                raise ValueError(f"no column for the input {name!r}")
            values, statuses = column
            if n is None:
                n = len(values)
            if len(values) != n or len(statuses) != n:
                raise ValueError(f"the column {name!r} has {len(values)} values and "
                                 f"{len(statuses)} statuses, not {n}")
            env[name] = _input(values, statuses, t)
        if n is None:
            n = len(next(iter(columns.values())).values) if columns else 0
        for name, program in self._programs:
            env[name] = program(env, n)
        return {name: _output(env[name]) for name in self.names}


def _input(values: Sequence[Any], statuses: bytes | Sequence[int], t: FeatureType) -> k.Col:
    st = bytes(statuses).translate(k.STATUS_IN)
    n = len(st)
    clean = st.count(k.PRESENT) == n
    fill = k.FILL.get(t)
    # Where not present, a placeholder of the type.
    filled = values if clean else [fill if s else v for v, s in zip(values, st, strict=True)]
    if t is not FeatureType.DOUBLE:
        return filled, (None if clean else st)
    try:
        floats = list(map(float, filled))
        if math.isfinite(sum(floats)):
            return floats, (None if clean else st)
    except (TypeError, ValueError):
        pass
    out: list[Any] = [fill] * n
    new = bytearray(st)
    for i in range(n):
        if new[i] == k.PRESENT:
            try:
                value = float(values[i])
            except (TypeError, ValueError):
                value = math.nan
            if math.isfinite(value):
                out[i] = value
            else:
                new[i] = k.ERROR  # NaN and infinities are not numbers a derivation reads
    return out, (bytes(new) if new.count(k.PRESENT) != n else None)


def _output(col: k.Col) -> DerivedColumn:
    values, st = col
    if st is None:
        return DerivedColumn(list(values), bytes([1]) * len(values))
    return DerivedColumn([None if s else v for v, s in zip(values, st, strict=True)],
                         st.translate(k.STATUS_OUT))


def compile_derivations(derivations: Derivations,
                        inputs: Mapping[str, FeatureType]) -> CompiledDerivations:
    """Check and compile `derivations` over `inputs`; DerivationError lists every problem."""
    analysis = analyze_derivations(derivations, inputs)
    if analysis.problems:
        raise DerivationError(list(analysis.problems))
    return CompiledDerivations(analysis, inputs)
