"""A checked expression compiled once into nested closures over whole columns.

Each closure takes the environment (name -> column, see _columns) and the row count and
returns the node's column: evaluating walks the tree once per batch, never once per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fetcher.expressions import _columns as k
from fetcher.expressions._ast import Binary, Call, Literal, Name, Node, Unary
from fetcher.expressions._check import ARITHMETIC, Type, Typed
from fetcher.expressions._columns import Program
from fetcher.types import FeatureType

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

        def retyped(env: k.Env, n: int) -> k.Col:
            st = inner(env, n)[1]
            return [fill] * n, st if st is not None else bytes([k.NULL]) * n
        return retyped
    if isinstance(node, Literal) and want is _D and own is _I:
        return _constant(float(node.value), _D)  # type: ignore[arg-type]
    program = _node(node, types, own)
    return k.to_double(program) if want is _D and own is _I else program


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
        return k.UNARY[(node.op, t)](_build(node.operand, types, _B if node.op == "not" else t))
    if isinstance(node, Binary):
        return _binary(node, types, t)
    return _call(node, types, t)


def _binary(node: Binary, types: Mapping[int, Type], t: FeatureType) -> Program:
    op = node.op
    if op in ("and", "or"):
        return k.logic(_build(node.left, types, _B), _build(node.right, types, _B), op == "or")
    if op not in ARITHMETIC:  # comparisons: int64 and double compared as they are, exactly
        return k.BINARY[(op, _B)](_build(node.left, types, None),
                                  _build(node.right, types, None))
    t = _D if op == "/" else t
    if t is not _D:
        return k.BINARY[(op, t)](_build(node.left, types, t), _build(node.right, types, t))
    # Python converts an int operand of a float operation to the nearest double itself;
    # only int / int (which Python divides exactly) is converted here.
    ints = types[id(node.left)] is not _D and types[id(node.right)] is not _D
    return k.BINARY[(op, _D)](_build(node.left, types, _D if ints and op == "/" else None),
                              _build(node.right, types, None))


def _call(node: Call, types: Mapping[int, Type], t: FeatureType) -> Program:
    func, args = node.func, node.args
    if func == "is_null":
        return k.is_null(_build(args[0], types, None))
    if func == "if":
        return k.if_(_build(args[0], types, _B), _build(args[1], types, t),
                     _build(args[2], types, t))
    if func == "coalesce":
        return k.coalesce([_build(a, types, t) for a in args])
    if func in ("min", "max"):
        combine = k.BINARY[(func, t)]
        program = _build(args[0], types, t)
        for other in args[1:]:
            program = combine(program, _build(other, types, t))
        return program
    if func == "pow":
        return k.BINARY[("pow", _D)](_build(args[0], types, _D), _build(args[1], types, _D))
    t = _D if func in _TO_DOUBLE else t
    return k.UNARY[(func, t)](_build(args[0], types, t))
