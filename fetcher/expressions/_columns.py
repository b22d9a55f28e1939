"""Columnar kernels: one operation over whole columns of N rows.

A column here is `(values, statuses)`: `statuses` is None when every row is present, else
bytes of PRESENT (0), NULL (1) or ERROR (2) per row. A row that is not present still holds
a value of the column's type (a placeholder, or what the operation made of placeholders),
so each kernel first runs one list comprehension over every row; when that fails (an
exception, an int64 overflow, a double that is not finite, a zero divisor) on any row,
present or not, it computes row by row, skipping the rows that are not present, and turns
the rows that fail into ERROR.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

from fetcher.types import FeatureType

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
PRESENT, NULL, ERROR = 0, 1, 2
Col = tuple[Sequence[Any], bytes | None]
Unary = Callable[[Col], Col]
Binary = Callable[[Col, Col], Col]
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
    return bytes(map(max, a, b))


def _int(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError("int64 overflow")
    return value


def _double(value: float) -> float:
    if not math.isfinite(value):
        raise OverflowError("not finite")
    return value


def _ints(out: list[int]) -> list[int] | None:
    return None if out and (max(out) > INT64_MAX or min(out) < INT64_MIN) else out


def _doubles(out: list[float]) -> list[float] | None:
    # A sum is finite only if every term is (it may overflow: then the slow path decides).
    return out if math.isfinite(sum(out)) else None


def _rows1(row: Callable[[Any], Any], xs: Sequence[Any], st: bytes | None, fill: Any) -> Col:
    n = len(xs)
    out = [fill] * n
    new = bytearray(n) if st is None else bytearray(st)
    for i in range(n):
        if new[i] == PRESENT:
            try:
                out[i] = row(xs[i])
            except ROW_ERRORS:
                new[i] = ERROR
    return out, (bytes(new) if new.count(PRESENT) != n else None)


def _rows2(row: Callable[[Any, Any], Any], xs: Sequence[Any], ys: Sequence[Any],
           st: bytes | None, fill: Any) -> Col:
    n = len(xs)
    out = [fill] * n
    new = bytearray(n) if st is None else bytearray(st)
    for i in range(n):
        if new[i] == PRESENT:
            try:
                out[i] = row(xs[i], ys[i])
            except ROW_ERRORS:
                new[i] = ERROR
    return out, (bytes(new) if new.count(PRESENT) != n else None)


def strict1(fast: Callable[[Sequence[Any]], list[Any] | None], row: Callable[[Any], Any],
            fill: Any) -> Unary:
    """A kernel of one operand whose null or error is the result's."""
    def kernel(a: Col) -> Col:
        xs, st = a
        try:
            out = fast(xs)
        except ROW_ERRORS:
            out = None
        return (out, st) if out is not None else _rows1(row, xs, st, fill)
    return kernel


def strict2(fast: Callable[[Sequence[Any], Sequence[Any]], list[Any] | None],
            row: Callable[[Any, Any], Any], fill: Any) -> Binary:
    """A kernel of two operands: a null or an error in either is the result's (error wins)."""
    def kernel(a: Col, b: Col) -> Col:
        (xs, sa), (ys, sb) = a, b
        st = merge(sa, sb)
        try:
            out = fast(xs, ys)
        except ROW_ERRORS:
            out = None
        return (out, st) if out is not None else _rows2(row, xs, ys, st, fill)
    return kernel


def _tmod(x: int, y: int) -> int:
    # Truncated: the sign of the dividend, as in SQL, C and Java (Python's % floors).
    r = x % y
    return r - y if r and (x < 0) != (y < 0) else r


def round_half_away(x: float) -> float:
    """x rounded to a whole number, halves away from zero (2.5 -> 3, -2.5 -> -3)."""
    r = math.floor(x)
    d = x - r  # exact: the fraction of a double is a double
    return float(r + 1 if d > 0.5 or (d == 0.5 and x > 0) else r)


def _same(xs: Sequence[Any]) -> list[Any] | None:
    return xs if isinstance(xs, list) else list(xs)


_I, _D, _B = FeatureType.INT64, FeatureType.DOUBLE, FeatureType.BOOL
ARITHMETIC: dict[tuple[str, FeatureType], Binary] = {
    ("+", _I): strict2(lambda xs, ys: _ints([x + y for x, y in zip(xs, ys, strict=True)]),
                       lambda x, y: _int(x + y), FILL[_I]),
    ("-", _I): strict2(lambda xs, ys: _ints([x - y for x, y in zip(xs, ys, strict=True)]),
                       lambda x, y: _int(x - y), FILL[_I]),
    ("*", _I): strict2(lambda xs, ys: _ints([x * y for x, y in zip(xs, ys, strict=True)]),
                       lambda x, y: _int(x * y), FILL[_I]),
    ("%", _I): strict2(lambda xs, ys: None if 0 in ys else list(map(_tmod, xs, ys)),
                       _tmod, FILL[_I]),
    ("+", _D): strict2(lambda xs, ys: _doubles([x + y for x, y in zip(xs, ys, strict=True)]),
                       lambda x, y: _double(x + y), FILL[_D]),
    ("-", _D): strict2(lambda xs, ys: _doubles([x - y for x, y in zip(xs, ys, strict=True)]),
                       lambda x, y: _double(x - y), FILL[_D]),
    ("*", _D): strict2(lambda xs, ys: _doubles([x * y for x, y in zip(xs, ys, strict=True)]),
                       lambda x, y: _double(x * y), FILL[_D]),
    ("/", _D): strict2(lambda xs, ys: None if 0 in ys else _doubles(
                           [x / y for x, y in zip(xs, ys, strict=True)]),
                       lambda x, y: _double(x / y), FILL[_D]),
    ("%", _D): strict2(lambda xs, ys: None if 0 in ys else _doubles(
                           list(map(math.fmod, xs, ys))),
                       lambda x, y: _double(math.fmod(x, y)), FILL[_D]),
    ("min", _I): strict2(lambda xs, ys: list(map(min, xs, ys)), min, FILL[_I]),
    ("max", _I): strict2(lambda xs, ys: list(map(max, xs, ys)), max, FILL[_I]),
    ("min", _D): strict2(lambda xs, ys: list(map(min, xs, ys)), min, FILL[_D]),
    ("max", _D): strict2(lambda xs, ys: list(map(max, xs, ys)), max, FILL[_D]),
    ("pow", _D): strict2(lambda xs, ys: _doubles(list(map(math.pow, xs, ys))),
                         lambda x, y: _double(math.pow(x, y)), FILL[_D]),
}
_COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge}
COMPARISONS: dict[str, Binary] = {
    op: strict2(lambda xs, ys, f=f: list(map(f, xs, ys)), f, False)  # type: ignore[misc]
    for op, f in _COMPARE.items()
}


def _floor(x: float) -> float:
    return float(math.floor(x))


def _ceil(x: float) -> float:
    return float(math.ceil(x))


UNARY: dict[tuple[str, FeatureType], Unary] = {
    ("-", _I): strict1(lambda xs: _ints([-x for x in xs]), lambda x: _int(-x), FILL[_I]),
    ("-", _D): strict1(lambda xs: [-x for x in xs], operator.neg, FILL[_D]),
    ("not", _B): strict1(lambda xs: [not x for x in xs], operator.not_, False),
    ("abs", _I): strict1(lambda xs: _ints(list(map(abs, xs))), lambda x: _int(abs(x)),
                         FILL[_I]),
    ("abs", _D): strict1(lambda xs: list(map(abs, xs)), abs, FILL[_D]),
    ("floor", _I): strict1(_same, int, FILL[_I]),
    ("ceil", _I): strict1(_same, int, FILL[_I]),
    ("round", _I): strict1(_same, int, FILL[_I]),
    ("floor", _D): strict1(lambda xs: list(map(_floor, xs)), _floor, FILL[_D]),
    ("ceil", _D): strict1(lambda xs: list(map(_ceil, xs)), _ceil, FILL[_D]),
    ("round", _D): strict1(lambda xs: list(map(round_half_away, xs)), round_half_away,
                           FILL[_D]),
    ("sqrt", _D): strict1(lambda xs: list(map(math.sqrt, xs)), math.sqrt, FILL[_D]),
    ("log", _D): strict1(lambda xs: list(map(math.log, xs)), math.log, FILL[_D]),
    ("exp", _D): strict1(lambda xs: list(map(math.exp, xs)), math.exp, FILL[_D]),
}


def to_double(a: Col) -> Col:
    """An int64 column as doubles (exact below 2**53, the nearest double above)."""
    return list(map(float, a[0])), a[1]


def _logic(a: Col, b: Col, decisive: bool) -> Col:
    """`and` (decisive False) or `or` (decisive True): SQL's three-valued logic, left to
    right: a present decisive left operand is the result, whatever the right one is."""
    (xs, sa), (ys, sb) = a, b
    n = len(xs)
    if sa is None and sb is None:
        return ([x or y for x, y in zip(xs, ys, strict=True)] if decisive
                else [x and y for x, y in zip(xs, ys, strict=True)]), None
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


def and_(a: Col, b: Col) -> Col:
    """`a and b`: false and anything is false; true and null is null."""
    return _logic(a, b, False)


def or_(a: Col, b: Col) -> Col:
    """`a or b`: true or anything is true; false or null is null."""
    return _logic(a, b, True)


def if_(c: Col, a: Col, b: Col) -> Col:
    """`if(c, a, b)`: a where c is true, b where it is false; null or error where c is."""
    (cv, cs), (av, sa), (bv, sb) = c, a, b
    values = [x if k else y for k, x, y in zip(cv, av, bv, strict=True)]
    if cs is None and sa is None and sb is None:
        return values, None
    n = len(cv)
    cs = cs if cs is not None else bytes(n)
    sa = sa if sa is not None else bytes(n)
    sb = sb if sb is not None else bytes(n)
    st = bytes(s or (p if k else q) for s, k, p, q in zip(cs, cv, sa, sb, strict=True))
    return values, (st if st.count(PRESENT) != n else None)


def coalesce(cols: Sequence[Col]) -> Col:
    """The first argument that is not null, row by row; an error before it is the result."""
    values, st = cols[0]
    if st is None or NULL not in st:
        return values, st
    out = list(values)
    new = bytearray(st)
    for xs, sx in cols[1:]:
        for i, s in enumerate(new):
            if s == NULL:
                out[i] = xs[i]
                new[i] = sx[i] if sx is not None else PRESENT
        if NULL not in new:
            break
    return out, (bytes(new) if new.count(PRESENT) != len(new) else None)


def is_null(a: Col) -> Col:
    """True where `a` is null, false where present; error where it is."""
    xs, st = a
    if st is None:
        return [False] * len(xs), None
    return [s == NULL for s in st], (st.translate(_ERRORS_ONLY) if ERROR in st else None)
