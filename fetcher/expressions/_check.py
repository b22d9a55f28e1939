"""The type checker: each node's type from the inputs' FeatureTypes, or an ExpressionError.

Values are double, int64, string and bool; bytes and lists may only be tested with
is_null, chosen by coalesce and if, or derived as they are. `null` has a type of its own
(None here) that takes the type of what it meets: `if(c, x, null)` is x's type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fetcher.expressions._ast import Binary, Call, Literal, Name, Node, Unary, start
from fetcher.expressions._errors import ExpressionError
from fetcher.types import FeatureType

Type = FeatureType | None  # None: the type of the literal `null`
NUMERIC = frozenset({FeatureType.INT64, FeatureType.DOUBLE})
SCALAR = NUMERIC | {FeatureType.STRING, FeatureType.BOOL}
ARITHMETIC = frozenset({"+", "-", "*", "/", "%"})
ORDERING = frozenset({"<", "<=", ">", ">="})
# name -> (fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "ceil": (1, 1),
    "coalesce": (2, None),
    "exp": (1, 1),
    "floor": (1, 1),
    "if": (3, 3),
    "is_null": (1, 1),
    "log": (1, 1),
    "max": (2, None),
    "min": (2, None),
    "pow": (2, 2),
    "round": (1, 1),
    "sqrt": (1, 1),
}
_SAME_TYPE = frozenset({"abs", "ceil", "floor", "round"})  # int64 -> int64, double -> double
_TO_DOUBLE = frozenset({"exp", "log", "pow", "sqrt"})


def type_name(t: Type) -> str:
    """`double`, `int64_list`... as the catalog spells types; `null` for the null literal."""
    return "null" if t is None else t.name.lower()


@dataclass(frozen=True, slots=True)
class Typed:
    """A checked expression: its result type and the type of every node (by id)."""

    root: Node
    type: FeatureType
    types: Mapping[int, Type]


def _unify(a: Type, b: Type) -> Type | str:
    """The common type of two branches, or the reason there is none."""
    if a is None:
        return b
    if b is None or a is b:
        return a
    if a in NUMERIC and b in NUMERIC:
        return FeatureType.DOUBLE
    return f"{type_name(a)} and {type_name(b)}"


class _Checker:
    def __init__(self, inputs: Mapping[str, FeatureType]) -> None:
        self.inputs = inputs
        self.types: dict[int, Type] = {}

    def check(self, node: Node) -> Type:
        t = self._check(node)
        self.types[id(node)] = t
        return t

    def _check(self, node: Node) -> Type:
        if isinstance(node, Literal):
            return _literal_type(node.value)
        if isinstance(node, Name):
            if node.name not in self.inputs:
                raise ExpressionError(f"unknown name {node.name!r}", node.pos)
            return self.inputs[node.name]
        if isinstance(node, Unary):
            t = self.check(node.operand)
            if node.op == "not":
                self.need(node.operand, t, {FeatureType.BOOL}, "not needs a bool")
                return FeatureType.BOOL
            self.need(node.operand, t, NUMERIC, "- needs a number")
            return t
        if isinstance(node, Binary):
            return self.binary(node)
        return self.call(node)

    def need(self, node: Node, t: Type, accepted: frozenset[FeatureType] | set[FeatureType],
             what: str) -> None:
        """`t` (null is fine: it stays null) must be one of `accepted`."""
        if t is not None and t not in accepted:
            raise ExpressionError(f"{what}{_described(node, t)}", start(node))

    def binary(self, node: Binary) -> Type:
        left, right = self.check(node.left), self.check(node.right)
        op = node.op
        if op in ("and", "or"):
            self.need(node.left, left, {FeatureType.BOOL}, f"{op} needs bools")
            self.need(node.right, right, {FeatureType.BOOL}, f"{op} needs bools")
            return FeatureType.BOOL
        if op in ARITHMETIC:
            self.need(node.left, left, NUMERIC, f"{op} needs numbers")
            self.need(node.right, right, NUMERIC, f"{op} needs numbers")
            if op == "/":
                return FeatureType.DOUBLE
            unified = _unify(left, right)
            assert not isinstance(unified, str)
            return unified
        for side, t in ((node.left, left), (node.right, right)):
            if t is None:
                hint = {"=": ": write is_null(x)", "!=": ": write not is_null(x)"}.get(op, "")
                raise ExpressionError(f"comparing with null is always null{hint}", start(side))
            self.need(side, t, SCALAR, f"{op} compares numbers, strings or bools")
        if op in ORDERING and FeatureType.BOOL in (left, right):
            raise ExpressionError(f"bools are not ordered: {op} compares numbers or strings "
                                  "(use = or != for bools)", node.pos)
        if not (left in NUMERIC and right in NUMERIC) and left is not right:
            raise ExpressionError(f"{op} compares values of one type, not "
                                  f"{type_name(left)} and {type_name(right)}", node.pos)
        return FeatureType.BOOL

    def call(self, node: Call) -> Type:
        func = node.func
        if func not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"unknown function {func!r:.40} (known: {known})", node.pos)
        fewest, most = FUNCTIONS[func]
        count = len(node.args)
        if count < fewest or (most is not None and count > most):
            wanted = (f"{fewest}" if fewest == most else f"at least {fewest}")
            raise ExpressionError(f"{func}() takes {wanted} argument(s), not {count}", node.pos)
        types = [self.check(a) for a in node.args]
        if func == "is_null":
            return FeatureType.BOOL
        if func == "if":
            self.need(node.args[0], types[0], {FeatureType.BOOL}, "if()'s condition must be a bool")
            return self.unify_all(node, node.args[1:], types[1:])
        if func == "coalesce":
            return self.unify_all(node, node.args, types)
        for arg, t in zip(node.args, types, strict=True):
            self.need(arg, t, NUMERIC, f"{func}() needs numbers")
        if func in _TO_DOUBLE:
            return FeatureType.DOUBLE
        if func in _SAME_TYPE:
            return types[0]
        return self.unify_all(node, node.args, types)  # min, max

    def unify_all(self, node: Call, args: tuple[Node, ...], types: list[Type]) -> Type:
        result: Type = None
        for arg, t in zip(args, types, strict=True):
            unified = _unify(result, t)
            if isinstance(unified, str):
                raise ExpressionError(f"the values {node.func}() chooses between have different "
                                      f"types: {unified}", start(arg))
            result = unified
        return result


def _literal_type(value: object) -> Type:
    if value is None:
        return None
    if isinstance(value, bool):
        return FeatureType.BOOL
    if isinstance(value, int):
        return FeatureType.INT64
    if isinstance(value, float):
        return FeatureType.DOUBLE
    return FeatureType.STRING


def _described(node: Node, t: Type) -> str:
    what = f": {node.name!r:.60} is {type_name(t)}" if isinstance(node, Name) else (
        f", not {type_name(t)}")
    if t not in SCALAR:
        what += " (bytes and lists can only be given to is_null, coalesce and if)"
    return what


def check(root: Node, inputs: Mapping[str, FeatureType], text: str = "") -> Typed:
    """Type `root` over `inputs` (name -> type); ExpressionError names the position.

    An expression that is always null (`null`, `null + null`) has no type: an error.
    """
    checker = _Checker(inputs)
    try:
        t = checker.check(root)
        if t is None:
            raise ExpressionError("the expression is always null, so it has no type",
                                  start(root))
    except ExpressionError as exc:
        raise exc.with_text(text) from None
    return Typed(root, t, checker.types)
