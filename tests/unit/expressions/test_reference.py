"""Every derived value and status against a plain per-row evaluation of docs/derivations.md.

Hypothesis builds random typed expression trees (over int64, double, bool, string and list
inputs and earlier derivations) and input columns with every status, zeros, halves, huge
doubles, NaN and int64's ends; `fetcher.expressions` evaluates the printed text column by
column, and `reference` below evaluates the tree row by row, written from the document
alone (Python's `**`, `decimal` rounding, `abs(a) % abs(b)` with a sign).
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.expressions import InputColumn, compile_derivations
from fetcher.types import FeatureType, Status

INT, DBL, BOOL, STR, LIST = "int64", "double", "bool", "string", "list"
TYPES = {INT: FeatureType.INT64, DBL: FeatureType.DOUBLE, BOOL: FeatureType.BOOL,
         STR: FeatureType.STRING, LIST: FeatureType.INT64_LIST}
INPUTS = {"i1": INT, "i2": INT, "d1": DBL, "d2": DBL, "b1": BOOL, "s1": STR, "l1": LIST}
MIN, MAX = -(2**63), 2**63 - 1

P, N, E = "P", "N", "E"  # a reference result: (P, value), (N, None), (E, None)


@dataclass(frozen=True)
class T:
    """A generated tree node: op, its type, children (or the leaf's value / name)."""

    op: str
    type: str | None  # None: the null literal
    args: tuple[Any, ...] = ()


ints = st.sampled_from([0, 1, -1, 2, -2, 3, 7, -7, 10, 3037000500, -3037000500, 2**62,
                        -(2**62), MAX, MIN, MAX - 1, MIN + 1, 2**53 + 1])
small_ints = st.integers(-20, 20)
doubles = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, 1e308, -1e308, 1e-308,
                           5e-324, 0.1, 1e16, 9007199254740992.0, 700.0, -1000.0])
any_doubles = st.one_of(doubles, st.floats(-1e6, 1e6, allow_nan=False))
strings = st.sampled_from(["", "a", "b", "web", "it's", 'q"', "back\\slash", "é"])


def literal(t: str) -> st.SearchStrategy[T]:
    if t == INT:
        return st.one_of(ints, small_ints).map(lambda v: T("lit", INT, (v,)))
    if t == DBL:
        return any_doubles.map(lambda v: T("lit", DBL, (v,)))
    if t == BOOL:
        return st.booleans().map(lambda v: T("lit", BOOL, (v,)))
    return strings.map(lambda v: T("lit", STR, (v,)))


NULL = T("null", None)


@st.composite
def tree(draw: st.DrawFn, t: str, depth: int, names: dict[str, str]) -> T:
    """A tree of type `t` (INT, DBL, BOOL, STR; LIST only as a leaf) at most `depth` deep."""
    leaves = [n for n, nt in names.items() if nt == t]
    if t == LIST:  # lists are only chosen between, or derived as they are
        leaf = T("name", LIST, (draw(st.sampled_from(leaves)),))
        choice = draw(st.sampled_from(["name", "if", "coalesce"])) if depth > 0 else "name"
        if choice == "if":
            return T("if", LIST, (draw(tree(BOOL, depth - 1, names)), leaf, NULL))
        if choice == "coalesce":
            return T("coalesce", LIST, (NULL, leaf, T("name", LIST, ("l1",))))
        return leaf
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        if leaves and draw(st.booleans()):
            return T("name", t, (draw(st.sampled_from(leaves)),))
        return draw(literal(t))
    sub = depth - 1

    def num(need_double: bool = False) -> tuple[T, T]:
        # Two numeric operands; one is double when the node must be double.
        if t == INT:
            return draw(tree(INT, sub, names)), draw(tree(INT, sub, names))
        kinds = draw(st.sampled_from([(DBL, DBL), (INT, DBL), (DBL, INT)]
                                     + ([] if need_double else [(INT, INT)])))
        return draw(tree(kinds[0], sub, names)), draw(tree(kinds[1], sub, names))

    if t in (INT, DBL):
        choice = draw(st.sampled_from(["arith", "neg", "if", "coalesce", "fn", "minmax",
                                       "nullop"] + (["div", "pow", "fn_d"] if t == DBL else [])))
        if choice == "arith":
            op = draw(st.sampled_from(["+", "-", "*", "%"]))
            return T(op, t, num(need_double=True))
        if choice == "nullop":  # null with an operand of the node's type: the node's type
            op = draw(st.sampled_from(["+", "-", "*", "%"]))
            other = draw(tree(t, sub, names))
            return T(op, t, (NULL, other) if draw(st.booleans()) else (other, NULL))
        if choice == "div":
            return T("/", DBL, (draw(tree(draw(st.sampled_from([INT, DBL])), sub, names)),
                                draw(tree(draw(st.sampled_from([INT, DBL])), sub, names))))
        if choice == "neg":
            return T("neg", t, (draw(tree(t, sub, names)),))
        if choice == "fn":
            return T(draw(st.sampled_from(["abs", "floor", "ceil", "round"])), t,
                     (draw(tree(t, sub, names)),))
        if choice == "fn_d":
            return T(draw(st.sampled_from(["sqrt", "log", "exp"])), DBL,
                     (draw(tree(draw(st.sampled_from([INT, DBL])), sub, names)),))
        if choice == "pow":
            return T("pow", DBL, num())
        if choice == "minmax":
            a, b = num(need_double=True)
            extra = [draw(tree(draw(st.sampled_from([INT, t])), sub, names))
                     for _ in range(draw(st.integers(0, 1)))]
            return T(draw(st.sampled_from(["min", "max"])), t, (a, b, *extra))
    if t == BOOL:
        choice = draw(st.sampled_from(["cmp", "cmp_s", "cmp_b", "logic", "not", "is_null",
                                       "is_null_list", "if", "coalesce"]))
        if choice == "cmp":
            op = draw(st.sampled_from(["=", "==", "!=", "<", "<=", ">", ">="]))
            a = draw(tree(draw(st.sampled_from([INT, DBL])), sub, names))
            b = draw(tree(draw(st.sampled_from([INT, DBL])), sub, names))
            return T(op, BOOL, (a, b))
        if choice == "cmp_s":
            op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
            return T(op, BOOL, (draw(tree(STR, sub, names)), draw(tree(STR, sub, names))))
        if choice == "cmp_b":
            op = draw(st.sampled_from(["=", "!="]))
            return T(op, BOOL, (draw(tree(BOOL, sub, names)), draw(tree(BOOL, sub, names))))
        if choice == "logic":
            op = draw(st.sampled_from(["and", "or"]))
            return T(op, BOOL, (draw(tree(BOOL, sub, names)), draw(tree(BOOL, sub, names))))
        if choice == "not":
            return T("not", BOOL, (draw(tree(BOOL, sub, names)),))
        if choice == "is_null":
            arg_type = draw(st.sampled_from([INT, DBL, BOOL, STR]))
            return T("is_null", BOOL, (draw(tree(arg_type, sub, names)),))
        if choice == "is_null_list":
            return T("is_null", BOOL, (T("name", LIST, ("l1",)),))
    # if / coalesce, of any type (numbers mixing)
    if draw(st.booleans()):
        cond = draw(tree(BOOL, sub, names))
        if draw(st.integers(0, 4)) == 0:
            branches = [draw(tree(t, sub, names)), NULL]
            if draw(st.booleans()):
                branches.reverse()
        elif t == DBL:
            a, b = num(need_double=True)
            branches = [a, b]
        else:
            branches = [draw(tree(t, sub, names)), draw(tree(t, sub, names))]
        return T("if", t, (cond, *branches))
    count = draw(st.integers(2, 3))
    if t == DBL:
        args = [*num(need_double=True)] + [draw(tree(draw(st.sampled_from([INT, DBL])), sub,
                                                     names)) for _ in range(count - 2)]
    else:
        args = [draw(tree(t, sub, names)) for _ in range(count)]
    if draw(st.integers(0, 3)) == 0:
        args.insert(draw(st.integers(0, len(args))), NULL)
    return T("coalesce", t, tuple(args))


def _literal_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    quote = "'" if "'" not in v else '"'
    return quote + v.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def text(node: T) -> str:
    """The tree printed: every operation in parentheses."""
    op, args = node.op, node.args
    if op == "lit":
        return _literal_text(args[0])
    if op == "null":
        return "null"
    if op == "name":
        return args[0] if args[0] != "b1" else "`b1`"  # one backquoted name
    if op == "neg":
        return f"(-{text(args[0])})"
    if op == "not":
        return f"(not {text(args[0])})"
    if op in ("+", "-", "*", "/", "%", "=", "==", "!=", "<", "<=", ">", ">=", "and", "or"):
        return f"({text(args[0])} {op} {text(args[1])})"
    return f"{op}({', '.join(text(a) for a in args)})"


# --- the reference: one row at a time, from docs/derivations.md -------------------------

def _int(v: int) -> tuple[str, Any]:
    return (P, v) if MIN <= v <= MAX else (E, None)


def _dbl(v: Any) -> tuple[str, Any]:
    if isinstance(v, complex) or not math.isfinite(v):
        return (E, None)
    return (P, float(v))


def _strict(results: list[tuple[str, Any]]) -> tuple[str, Any] | None:
    if any(r[0] == E for r in results):
        return (E, None)
    if any(r[0] == N for r in results):
        return (N, None)
    return None


def _as(node_type: str | None, r: tuple[str, Any]) -> tuple[str, Any]:
    # An int64 value meeting a double is converted.
    if r[0] == P and node_type == DBL and isinstance(r[1], int) and not isinstance(r[1], bool):
        return (P, float(r[1]))
    return r


def _round(x: float) -> float:
    d = decimal.Decimal(x).to_integral_value(rounding=decimal.ROUND_HALF_UP)
    return float(d)


def reference(node: T, row: dict[str, tuple[str, Any]]) -> tuple[str, Any]:
    op, t, args = node.op, node.type, node.args
    if op == "lit":
        return (P, args[0])
    if op == "null":
        return (N, None)
    if op == "name":
        return row[args[0]]
    if op in ("and", "or"):
        decisive = op == "or"
        a = reference(args[0], row)
        if a == (P, decisive):
            return a
        if a[0] == E:
            return a
        b = reference(args[1], row)
        if b[0] == E:
            return b
        if b == (P, decisive):
            return b
        if N in (a[0], b[0]):
            return (N, None)
        return (P, not decisive)
    if op == "if":
        c = reference(args[0], row)
        if c[0] != P:
            return c
        return _as(t, reference(args[1] if c[1] else args[2], row))
    if op == "coalesce":
        for a in args:
            r = reference(a, row)
            if r[0] != N:
                return _as(t, r)
        return (N, None)
    if op == "is_null":
        r = reference(args[0], row)
        return r if r[0] == E else (P, r[0] == N)
    # strict operations from here on
    child_types = [a.type for a in args]
    values = [reference(a, row) for a in args]
    bad = _strict(values)
    if bad is not None:
        return bad
    xs = [v for _, v in values]
    if op in ("=", "==", "!=", "<", "<=", ">", ">="):
        x, y = xs
        return (P, {"=": x == y, "==": x == y, "!=": x != y, "<": x < y, "<=": x <= y,
                    ">": x > y, ">=": x >= y}[op])
    if op == "not":
        return (P, not xs[0])
    is_int = t == INT and all(ct in (INT, None) for ct in child_types)
    if op in ("+", "-", "*"):
        if is_int:
            return _int({"+": xs[0] + xs[1], "-": xs[0] - xs[1], "*": xs[0] * xs[1]}[op]
                        if len(xs) == 2 else 0)
        a, b = float(xs[0]), float(xs[1])
        return _dbl({"+": a + b, "-": a - b, "*": a * b}[op])
    if op == "%":
        if xs[1] == 0:
            return (E, None)
        if is_int:
            r = abs(xs[0]) % abs(xs[1])
            return (P, -r if xs[0] < 0 else r)
        return _dbl(math.fmod(float(xs[0]), float(xs[1])))
    if op == "/":
        if xs[1] == 0:
            return (E, None)
        return _dbl(float(xs[0]) / float(xs[1]))
    if op == "neg":
        return _int(-xs[0]) if t == INT else (P, -xs[0])
    if op == "abs":
        return _int(abs(xs[0])) if t == INT else (P, abs(xs[0]))
    if op in ("floor", "ceil", "round"):
        if t == INT:
            return (P, xs[0])
        f = {"floor": math.floor, "ceil": math.ceil, "round": _round}[op]
        return (P, float(f(xs[0])))
    if op == "sqrt":
        return (E, None) if xs[0] < 0 else _dbl(math.sqrt(float(xs[0])))
    if op == "log":
        return (E, None) if xs[0] <= 0 else _dbl(math.log(float(xs[0])))
    if op == "exp":
        try:
            return _dbl(math.exp(float(xs[0])))
        except OverflowError:
            return (E, None)
    if op == "pow":
        try:
            return _dbl(float(xs[0]) ** float(xs[1]))
        except (ZeroDivisionError, OverflowError):
            return (E, None)
    if op in ("min", "max"):
        f = min if op == "min" else max
        return (P, f(xs)) if t == INT else (P, float(f(float(x) for x in xs)))
    raise AssertionError(op)


# --- inputs --------------------------------------------------------------------------------

STATUSES = st.sampled_from([Status.PRESENT] * 3 + [Status.NULL_VALUE, Status.NOT_FOUND,
                                                   Status.OUTSIDE_MAX_AGE, Status.ERROR])
VALUES = {
    INT: st.one_of(ints, small_ints),
    DBL: st.one_of(any_doubles, st.sampled_from([math.nan, math.inf, -math.inf])),
    BOOL: st.booleans(),
    STR: strings,
    LIST: st.lists(small_ints, max_size=3),
}


@st.composite
def columns(draw: st.DrawFn, rows: int) -> dict[str, tuple[list[Any], list[Status]]]:
    out: dict[str, tuple[list[Any], list[Status]]] = {}
    clean = draw(st.integers(0, 3)) == 0  # a batch where every input is PRESENT
    for name, t in INPUTS.items():
        statuses = [Status.PRESENT if clean else draw(STATUSES) for _ in range(rows)]
        values = [draw(VALUES[t]) if s is Status.PRESENT else None for s in statuses]
        if clean and t == DBL:
            values = [v if math.isfinite(v) else 1.0 for v in values]
        out[name] = (values, statuses)
    return out


def _input(t: str, value: Any, status: Status) -> tuple[str, Any]:
    if status is Status.ERROR:
        return (E, None)
    if status is not Status.PRESENT:
        return (N, None)
    if t == DBL and not math.isfinite(value):
        return (E, None)
    return (P, value)


@st.composite
def derivations(draw: st.DrawFn) -> list[tuple[str, str, T]]:
    names = dict(INPUTS)
    out: list[tuple[str, str, T]] = []
    for i in range(draw(st.integers(1, 3))):
        t = draw(st.sampled_from([INT, DBL, DBL, BOOL, STR] + ([LIST] if i == 0 else [])))
        node = draw(tree(t, draw(st.integers(1, 4)), names))
        if node.type is None:
            continue
        out.append((f"v{i}", t, node))
        names[f"v{i}"] = t
    return out


def _same(got: Any, want: Any) -> bool:
    return type(got) is type(want) and got == want


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(derivations(), st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), columns(n))),
       st.booleans())
def test_every_value_and_status_matches_the_reference(
    derived: list[tuple[str, str, T]],
    batch: tuple[int, dict[str, tuple[list[Any], list[Status]]]],
    as_bytes: bool,
) -> None:
    rows, cols = batch
    program = compile_derivations([(name, text(node)) for name, _, node in derived],
                                  {n: TYPES[t] for n, t in INPUTS.items()})
    assert program.types == {name: TYPES[t] for name, t, _ in derived}
    given_cols = {n: InputColumn(v, bytes(s) if as_bytes else s) for n, (v, s) in cols.items()}
    got = program.evaluate(given_cols)
    assert list(got) == [name for name, _, _ in derived]
    for r in range(rows):
        row = {n: _input(t, cols[n][0][r], cols[n][1][r]) for n, t in INPUTS.items()}
        for name, _, node in derived:
            want = reference(node, row)
            row[name] = want
            column = got[name]
            status = {P: Status.PRESENT, N: Status.NULL_VALUE, E: Status.ERROR}[want[0]]
            where = f"{name} = {text(node)} at row {r}: {want} vs {column.values[r]!r}"
            assert column.statuses[r] == status, where
            if want[0] == P:
                assert _same(column.values[r], want[1]), where
            else:
                assert column.values[r] is None, where
