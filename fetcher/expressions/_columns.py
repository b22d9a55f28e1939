"""Columnar operations: each computes one node of an expression over whole columns of N rows.

A column here is `(values, statuses)`: `statuses` is None when every row is present, else
bytes of PRESENT (0), NULL (1) or ERROR (3) per row (so that OR is "error over null over
present", one big-integer operation for a batch). A row that is not present still holds
a value of the column's type (a placeholder, or what the operation made of placeholders),
so each operation first runs one `map` over every row (C code, no Python frame per row);
when that fails on any row, present or not (an exception, an int64 overflow, a double
that is not finite, a division by zero), it computes row by row, skipping the rows that are
not present, and turns the rows that fail into ERROR.

The operations are combinators: given the programs of their operands (closures of the
environment, name -> column, and the row count), they return their own program.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fetcher.types import FeatureType

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
PRESENT, NULL, ERROR = 0, 1, 3
Col = tuple[Sequence[Any], bytes | None]
Env = Mapping[str, Col]
# A compiled node: the environment (name -> column) and the row count -> its column.
Program = Callable[[Env, int], Col]
ROW_ERRORS = (ArithmeticError, ValueError)

# Placeholders: 1 rather than 0, so a divisor or a logarithm at a null row does not fail.
FILL: dict[FeatureType, Any] = {
    FeatureType.INT64: 1,
    FeatureType.DOUBLE: 1.0,
    FeatureType.STRING: "",
    FeatureType.BOOL: False,
}


def _table(mapping: dict[int, int], default: int) -> bytes:
    return bytes(mapping.get(i, default) for i in range(256))


# fetcher.types.Status -> ours: PRESENT 1; NOT_FOUND 2, NULL_VALUE 3, OUTSIDE_MAX_AGE 4 are
# null; ERROR 5 (and anything else) is an error.
STATUS_IN = _table({1: PRESENT, 2: NULL, 3: NULL, 4: NULL}, ERROR)
STATUS_OUT = _table({PRESENT: 1, NULL: 3, ERROR: 5}, 5)
_ERRORS_ONLY = _table({PRESENT: PRESENT, NULL: PRESENT}, ERROR)


def merge(a: bytes | None, b: bytes | None) -> bytes | None:
    """The statuses of a strict operation: ERROR over NULL over PRESENT, row by row."""
    if a is None:
        return b
    if b is None:
        return a
    return (int.from_bytes(a) | int.from_bytes(b)).to_bytes(len(a))


def _rows1(func: Callable[[Any], Any], check: int, xs: Sequence[Any], st: bytes | None,
           fill: Any) -> Col:
    n = len(xs)
    out = [fill] * n
    new = bytearray(n) if st is None else bytearray(st)
    for i in range(n):
        if new[i] == PRESENT:
            try:
                out[i] = _checked(func(xs[i]), check)
            except ROW_ERRORS:
                new[i] = ERROR
    return out, (bytes(new) if new.count(PRESENT) != n else None)


def _rows2(func: Callable[[Any, Any], Any], check: int, xs: Sequence[Any], ys: Sequence[Any],
           st: bytes | None, fill: Any) -> Col:
    n = len(xs)
    out = [fill] * n
    new = bytearray(n) if st is None else bytearray(st)
    for i in range(n):
        if new[i] == PRESENT:
            try:
                out[i] = _checked(func(xs[i], ys[i]), check)
            except ROW_ERRORS:
                new[i] = ERROR
    return out, (bytes(new) if new.count(PRESENT) != n else None)


def _checked(value: Any, check: int) -> Any:
    if check == INT and not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError("int64 overflow")
    if check == DOUBLE and not math.isfinite(value):
        raise OverflowError("not finite")
    return value


# The check of a result: none, the int64 range, finite. The programs below inline it: a
# sum is finite only if every term is (if it overflows, the row-by-row path decides).
ANY, INT, DOUBLE = 0, 1, 2


def strict1(func: Callable[[Any], Any], check: int, fill: Any) -> Callable[[Program], Program]:
    """An operation of one operand whose null or error is the result's, as a combinator:
    given the operand's program, the operation's."""
    def make(arg: Program) -> Program:
        def program(env: Env, n: int) -> Col:
            xs, st = arg(env, n)
            try:
                out = list(map(func, xs))
                if not check or (
                        (not out or (max(out) <= INT64_MAX and min(out) >= INT64_MIN))
                        if check == INT else math.isfinite(sum(out))):
                    return out, st
            except ROW_ERRORS:
                pass
            return _rows1(func, check, xs, st, fill)
        return program
    return make


def strict2(func: Callable[[Any, Any], Any], check: int,
            fill: Any) -> Callable[[Program, Program], Program]:
    """An operation of two operands: a null or an error in either is the result's (error
    wins). A zero divisor raises (ZeroDivisionError, or fmod's ValueError): that row fails."""
    def make(left: Program, right: Program) -> Program:
        def program(env: Env, n: int) -> Col:
            xs, sa = left(env, n)
            ys, sb = right(env, n)
            st = sa if sb is None else sb if sa is None else merge(sa, sb)
            try:
                out = list(map(func, xs, ys))
                if not check or (
                        (not out or (max(out) <= INT64_MAX and min(out) >= INT64_MIN))
                        if check == INT else math.isfinite(sum(out))):
                    return out, st
            except ROW_ERRORS:
                pass
            return _rows2(func, check, xs, ys, st, fill)
        return program
    return make


def _tmod(x: int, y: int) -> int:
    # Truncated: the sign of the dividend, as in SQL, C and Java (Python's % floors).
    r = x % y
    return r - y if r and (x < 0) != (y < 0) else r


def _fmod(x: float, y: float) -> float:
    return math.fmod(x, y)


def round_half_away(x: float) -> float:
    """x rounded to a whole number, halves away from zero (2.5 -> 3, -2.5 -> -3)."""
    r = math.floor(x)
    d = x - r  # exact: the fraction of a double is a double
    return float(r + 1 if d > 0.5 or (d == 0.5 and x > 0) else r)


def _floor(x: float) -> float:
    return float(math.floor(x))


def _ceil(x: float) -> float:
    return float(math.ceil(x))


_I, _D, _B = FeatureType.INT64, FeatureType.DOUBLE, FeatureType.BOOL
BINARY: dict[tuple[str, FeatureType], Callable[[Program, Program], Program]] = {
    ("+", _I): strict2(operator.add, INT, FILL[_I]),
    ("-", _I): strict2(operator.sub, INT, FILL[_I]),
    ("*", _I): strict2(operator.mul, INT, FILL[_I]),
    ("%", _I): strict2(_tmod, ANY, FILL[_I]),
    ("+", _D): strict2(operator.add, DOUBLE, FILL[_D]),
    ("-", _D): strict2(operator.sub, DOUBLE, FILL[_D]),
    ("*", _D): strict2(operator.mul, DOUBLE, FILL[_D]),
    ("/", _D): strict2(operator.truediv, DOUBLE, FILL[_D]),
    ("%", _D): strict2(_fmod, DOUBLE, FILL[_D]),
    ("min", _I): strict2(min, ANY, FILL[_I]),
    ("max", _I): strict2(max, ANY, FILL[_I]),
    ("min", _D): strict2(min, ANY, FILL[_D]),
    ("max", _D): strict2(max, ANY, FILL[_D]),
    ("pow", _D): strict2(math.pow, DOUBLE, FILL[_D]),
    ("=", _B): strict2(operator.eq, ANY, False),
    ("!=", _B): strict2(operator.ne, ANY, False),
    ("<", _B): strict2(operator.lt, ANY, False),
    ("<=", _B): strict2(operator.le, ANY, False),
    (">", _B): strict2(operator.gt, ANY, False),
    (">=", _B): strict2(operator.ge, ANY, False),
}
UNARY: dict[tuple[str, FeatureType], Callable[[Program], Program]] = {
    ("-", _I): strict1(operator.neg, INT, FILL[_I]),
    ("-", _D): strict1(operator.neg, ANY, FILL[_D]),
    ("not", _B): strict1(operator.not_, ANY, False),
    ("abs", _I): strict1(abs, INT, FILL[_I]),
    ("abs", _D): strict1(abs, ANY, FILL[_D]),
    ("floor", _I): lambda arg: arg,  # an int64 is whole already
    ("ceil", _I): lambda arg: arg,
    ("round", _I): lambda arg: arg,
    ("floor", _D): strict1(_floor, ANY, FILL[_D]),
    ("ceil", _D): strict1(_ceil, ANY, FILL[_D]),
    ("round", _D): strict1(round_half_away, ANY, FILL[_D]),
    ("sqrt", _D): strict1(math.sqrt, ANY, FILL[_D]),
    ("log", _D): strict1(math.log, ANY, FILL[_D]),
    ("exp", _D): strict1(math.exp, ANY, FILL[_D]),
}


def to_double(arg: Program) -> Program:
    """An int64 operand as doubles (exact below 2**53, the nearest double above)."""
    def program(env: Env, n: int) -> Col:
        xs, st = arg(env, n)
        return list(map(float, xs)), st
    return program


def _logic(xs: Sequence[Any], sa: bytes | None, ys: Sequence[Any], sb: bytes | None,
           decisive: bool) -> Col:
    n = len(xs)
    if sa is None and sb is None:
        return list(map(operator.or_ if decisive else operator.and_, xs, ys)), None
    sa = sa if sa is not None else bytes(n)
    sb = sb if sb is not None else bytes(n)
    out = [not decisive] * n
    st = bytearray(n)
    for i in range(n):
        p = sa[i]
        if p == PRESENT and xs[i] == decisive:
            out[i] = decisive
        elif p == ERROR or sb[i] == ERROR:
            st[i] = ERROR
        elif sb[i] == PRESENT and ys[i] == decisive:
            out[i] = decisive
        elif p == NULL or sb[i] == NULL:
            st[i] = NULL
    return out, (bytes(st) if st.count(PRESENT) != n else None)


def logic(left: Program, right: Program, decisive: bool) -> Program:
    """`and` (decisive False) or `or` (decisive True): SQL's three-valued logic, left to
    right: a present decisive left operand is the result, whatever the right one is."""
    def program(env: Env, n: int) -> Col:
        xs, sa = left(env, n)
        ys, sb = right(env, n)
        return _logic(xs, sa, ys, sb, decisive)
    return program


def if_(cond: Program, then: Program, other: Program) -> Program:
    """`if(c, a, b)`: a where c is true, b where it is false; null or error where c is."""
    def program(env: Env, n: int) -> Col:
        cv, cs = cond(env, n)
        av, sa = then(env, n)
        bv, sb = other(env, n)
        values = [x if k else y for k, x, y in zip(cv, av, bv, strict=True)]
        if cs is None and sa is None and sb is None:
            return values, None
        cs = cs if cs is not None else bytes(n)
        sa = sa if sa is not None else bytes(n)
        sb = sb if sb is not None else bytes(n)
        st = bytes([s or (p if k else q) for s, k, p, q in zip(cs, cv, sa, sb, strict=True)])
        return values, (st if st.count(PRESENT) != n else None)
    return program


def coalesce(args: Sequence[Program]) -> Program:
    """The first argument that is not null, row by row; an error before it is the result.
    An argument is computed only for batches where the ones before it leave a null."""
    first, rest = args[0], args[1:]

    def program(env: Env, n: int) -> Col:
        values, st = first(env, n)
        if st is None or NULL not in st:
            return values, st
        out = list(values)
        new = bytearray(st)
        for arg in rest:
            xs, sx = arg(env, n)
            for i, s in enumerate(new):
                if s == NULL:
                    out[i] = xs[i]
                    new[i] = sx[i] if sx is not None else PRESENT
            if NULL not in new:
                break
        return out, (bytes(new) if new.count(PRESENT) != n else None)
    return program


def is_null(arg: Program) -> Program:
    """True where the operand is null, false where present; error where it is."""
    def program(env: Env, n: int) -> Col:
        st = arg(env, n)[1]
        if st is None:
            return [False] * n, None
        return [s == NULL for s in st], (st.translate(_ERRORS_ONLY) if ERROR in st else None)
    return program
