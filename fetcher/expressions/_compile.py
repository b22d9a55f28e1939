"""A checked expression compiled once into nested closures over whole columns.

Each closure takes the environment (name -> column, see _columns) and the row count and
returns the node's column: evaluating walks the tree once per batch, never once per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fetcher.expressions import _columns as k
from fetcher.expressions._ast import Binary, Call, Literal, Name, Node, Unary
from fetcher.expressions._check import ARITHMETIC, Type, Typed
from fetcher.types import FeatureType

Program = Callable[[Mapping[str, k.Col], int], k.Col]
_D, _I, _B = FeatureType.DOUBLE, FeatureType.INT64, FeatureType.BOOL
_TO_DOUBLE = frozenset({"exp", "log", "pow", "sqrt"})


def compile_typed(typed: Typed) -> Program:
    """The program of a checked expression; its column has the type `typed.type`."""
    return _build(typed.root, typed.types, typed.type)


def _build(node: Node, types: Mapping[int, Type], want: Type) -> Program:
    """`node`'s program, its values converted to `want` (an int64 node wanted as double)."""
    own = types[id(node)]
    if own is None:
        # Typed null: no row is present (each is null, or an error of an if's condition
        # inside), so it is computed as int64 and its placeholders made `want`'s.
        program = _node(node, types, _I)
        if want is None or want is _I:
            return program
        fill = k.FILL.get(want)
        inner = program

        def retyped(env: Mapping[str, k.Col], n: int) -> k.Col:
            st = inner(env, n)[1]
            return [fill] * n, st if st is not None else bytes([k.NULL]) * n
        return retyped
    if isinstance(node, Literal) and want is _D and own is _I:
        return _constant(float(node.value), _D)  # type: ignore[arg-type]
    program = _node(node, types, own)
    if want is _D and own is _I:
        inner = program
        return lambda env, n: k.to_double(inner(env, n))
    return program


def _constant(value: Any, t: FeatureType) -> Program:
    if value is None:
        fill = k.FILL.get(t)
        return lambda env, n: ([fill] * n, bytes([k.NULL]) * n)
    return lambda env, n: ([value] * n, None)


def _node(node: Node, types: Mapping[int, Type], t: FeatureType) -> Program:
    if isinstance(node, Literal):
        return _constant(node.value, t)
    if isinstance(node, Name):
        name = node.name
        return lambda env, n: env[name]
    if isinstance(node, Unary):
        operand = _build(node.operand, types, _B if node.op == "not" else t)
        unary = k.UNARY[(node.op, t)]
        return lambda env, n: unary(operand(env, n))
    if isinstance(node, Binary):
        return _binary(node, types, t)
    return _call(node, types, t)


def _binary(node: Binary, types: Mapping[int, Type], t: FeatureType) -> Program:
    if node.op in ("and", "or"):
        left, right = _build(node.left, types, _B), _build(node.right, types, _B)
        logic = k.and_ if node.op == "and" else k.or_
        return lambda env, n: logic(left(env, n), right(env, n))
    if node.op in ARITHMETIC:
        t = _D if node.op == "/" else t
        kernel = k.ARITHMETIC[(node.op, t)]
        left, right = _build(node.left, types, t), _build(node.right, types, t)
    else:  # comparisons: int64 and double compared as they are, exactly
        kernel = k.COMPARISONS[node.op]
        left, right = _build(node.left, types, None), _build(node.right, types, None)
    return lambda env, n: kernel(left(env, n), right(env, n))


def _call(node: Call, types: Mapping[int, Type], t: FeatureType) -> Program:
    func = node.func
    if func == "is_null":
        arg = _build(node.args[0], types, None)
        return lambda env, n: k.is_null(arg(env, n))
    if func == "if":
        c = _build(node.args[0], types, _B)
        a, b = _build(node.args[1], types, t), _build(node.args[2], types, t)
        return lambda env, n: k.if_(c(env, n), a(env, n), b(env, n))
    if func == "coalesce":
        args = [_build(a, types, t) for a in node.args]
        return lambda env, n: k.coalesce([a(env, n) for a in args])
    if func in ("min", "max"):
        kernel = k.ARITHMETIC[(func, t)]
        first, *rest = [_build(a, types, t) for a in node.args]

        def fold(env: Mapping[str, k.Col], n: int) -> k.Col:
            col = first(env, n)
            for other in rest:
                col = kernel(col, other(env, n))
            return col
        return fold
    if func == "pow":
        kernel = k.ARITHMETIC[("pow", _D)]
        x, y = _build(node.args[0], types, _D), _build(node.args[1], types, _D)
        return lambda env, n: kernel(x(env, n), y(env, n))
    t = _D if func in _TO_DOUBLE else t
    unary = k.UNARY[(func, t)]
    arg = _build(node.args[0], types, t)
    return lambda env, n: unary(arg(env, n))
