"""The syntax tree of an expression; `pos` is the 0-based offset of the node in its text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: an int, a float, a str, a bool, or None for `null`."""

    value: int | float | str | bool | None
    pos: int


@dataclass(frozen=True, slots=True)
class Name:
    """A reference to an input (a feature, a request-time value) or another derivation."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Unary:
    """`-x` or `not x`."""

    op: str  # "-" or "not"
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Binary:
    """An operator between two operands: arithmetic, a comparison, `and`, `or`."""

    op: str  # + - * / % = != < <= > >= and or
    left: Node
    right: Node
    pos: int  # of the operator


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: `if(c, a, b)`, `coalesce(a, b)`, `sqrt(x)`..."""

    func: str
    args: tuple[Node, ...]
    pos: int


Node = Literal | Name | Unary | Binary | Call


def children(node: Node) -> tuple[Node, ...]:
    """The direct operands of `node`."""
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def names(node: Node) -> Iterator[Name]:
    """Every name `node` references, in the order written."""
    if isinstance(node, Name):
        yield node
    for child in children(node):
        yield from names(child)


def start(node: Node) -> int:
    """The offset where `node`'s text begins (a binary node's `pos` is its operator's)."""
    while isinstance(node, Binary):
        node = node.left
    return node.pos
