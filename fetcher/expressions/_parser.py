"""Tokenizer and recursive-descent parser: expression text -> syntax tree (never `eval`).

Precedence, loosest first: `or`, `and`, `not`, comparisons (which do not chain),
`+ -`, `* / %`, unary `-`, then literals, names, calls and parentheses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fetcher.expressions._ast import Binary, Call, Literal, Name, Node, Unary, children
from fetcher.expressions._errors import ExpressionError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
KEYWORDS = frozenset({"and", "or", "not", "true", "false", "null"})
_MAX_LENGTH = 10_000  # characters of one expression
# Parentheses, calls, `not` and unary `-` inside each other (the parser recurses on them),
# and operations inside each other in the tree (the checker and the compiler recurse).
_MAX_NESTING = 30
MAX_DEPTH = 64

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[A-Za-z0-9_.]*)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<quoted>`[^`\n]*`?)
    |(?P<string>'(?:[^'\\\n]|\\.)*'?|"(?:[^"\\\n]|\\.)*"?)
    |(?P<op>==|!=|<=|>=|[-+*/%()<>=,])
    """,
    re.VERBOSE,
)
_INT = re.compile(r"^[0-9]+$")
_DOUBLE = re.compile(r"^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Token:
    """One token: kind ("int", "double", "string", "name", "quoted", "op", "end"), its text."""

    kind: str
    text: str
    pos: int
    value: object = None


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    text = token.text if len(token.text) <= 20 else token.text[:17] + "..."
    return f"{text!r}"


def _string(text: str, pos: int) -> str:
    quote, body = text[0], text[1:]
    if len(body) == 0 or body[-1] != quote or (len(body) >= 2 and _odd_backslashes(body[:-1])):
        raise ExpressionError("unterminated string: close it with " + quote, pos)
    out: list[str] = []
    i, inner = 0, body[:-1]
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            nxt = inner[i + 1]
            if nxt not in _ESCAPES:
                raise ExpressionError(f"unknown escape \\{nxt} in a string (known: \\\\ \\' "
                                      '\\" \\n \\t)', pos + 1 + i)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _odd_backslashes(text: str) -> bool:
    # The closing quote was escaped when an odd number of backslashes precede it.
    count = len(text) - len(text.rstrip("\\"))
    return count % 2 == 1


def _number(text: str, pos: int) -> Token:
    if _INT.match(text):
        return Token("int", text, pos, int(text))
    if _DOUBLE.match(text):
        value = float(text)
        if not math.isfinite(value):
            raise ExpressionError(f"the number {text} is too large for a double", pos)
        return Token("double", text, pos, value)
    raise ExpressionError(f"{text!r:.30} is not a number (write 12, 1.5, 2e-3)", pos)


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an "end" token; ExpressionError on a bad character."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected character {text[pos]!r}", pos)
        kind, lexeme = m.lastgroup or "", m.group()
        if kind == "number":
            tokens.append(_number(lexeme, pos))
        elif kind == "string":
            tokens.append(Token("string", lexeme, pos, _string(lexeme, pos)))
        elif kind == "quoted":
            if len(lexeme) < 2 or not lexeme.endswith("`"):
                raise ExpressionError("unterminated `name`: close it with `", pos)
            if len(lexeme) == 2:
                raise ExpressionError("empty `name`", pos)
            tokens.append(Token("quoted", lexeme, pos, lexeme[1:-1]))
        elif kind != "space":
            tokens.append(Token(kind, lexeme, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = -1  # the whole expression is not nested

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at(self, kind: str, text: str) -> bool:
        token = self.peek
        return token.kind == kind and token.text == text

    def expect(self, text: str, what: str) -> Token:
        if not self.at("op", text):
            raise ExpressionError(f"expected {what}, found {_describe(self.peek)}", self.peek.pos)
        return self.take()

    def nested(self, pos: int) -> None:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise ExpressionError(f"nested more than {_MAX_NESTING} levels deep", pos)

    def expression(self) -> Node:
        self.nested(self.peek.pos)
        node = self.disjunction()
        self.depth -= 1
        return node

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.at("name", "or"):
            op = self.take()
            node = Binary("or", node, self.conjunction(), op.pos)
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.at("name", "and"):
            op = self.take()
            node = Binary("and", node, self.negation(), op.pos)
        return node

    def negation(self) -> Node:
        if self.at("name", "not"):
            op = self.take()
            self.nested(op.pos)
            node = Unary("not", self.negation(), op.pos)
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        token = self.peek
        if token.kind == "op" and (token.text in _COMPARISONS or token.text == "=="):
            self.take()
            op = "=" if token.text == "==" else token.text
            node = Binary(op, node, self.additive(), token.pos)
            after = self.peek
            if after.kind == "op" and (after.text in _COMPARISONS or after.text == "=="):
                raise ExpressionError("comparisons do not chain: write a < b and b < c",
                                      after.pos)
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek.kind == "op" and self.peek.text in ("+", "-"):
            op = self.take()
            node = Binary(op.text, node, self.multiplicative(), op.pos)
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.peek.kind == "op" and self.peek.text in ("*", "/", "%"):
            op = self.take()
            node = Binary(op.text, node, self.unary(), op.pos)
        return node

    def unary(self) -> Node:
        if self.at("op", "-"):
            op = self.take()
            number = self.peek
            if number.kind in ("int", "double"):
                # -9223372036854775808 is a literal although 9223372036854775808 is not.
                self.take()
                assert isinstance(number.value, int | float)
                return self.literal_number(number, -number.value, op.pos)
            self.nested(op.pos)
            node = Unary("-", self.unary(), op.pos)
            self.depth -= 1
            return node
        return self.primary()

    def literal_number(self, token: Token, value: int | float, pos: int) -> Literal:
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ExpressionError(f"the integer {token.text} does not fit in int64 (write a "
                                  "double, e.g. 1e19)", token.pos)
        return Literal(value, pos)

    def primary(self) -> Node:
        token = self.peek
        if token.kind in ("int", "double"):
            self.take()
            assert isinstance(token.value, int | float)
            return self.literal_number(token, token.value, token.pos)
        if token.kind == "string":
            self.take()
            assert isinstance(token.value, str)
            return Literal(token.value, token.pos)
        if token.kind == "quoted":
            self.take()
            assert isinstance(token.value, str)
            return Name(token.value, token.pos)
        if token.kind == "name":
            return self.name_or_call()
        if self.at("op", "("):
            self.take()
            node = self.expression()
            self.expect(")", "')' to close the '(' at column " + str(token.pos + 1))
            return node
        raise ExpressionError(f"expected a value, a name or '(', found {_describe(token)}",
                              token.pos)

    def name_or_call(self) -> Node:
        token = self.take()
        text = token.text
        if text in ("true", "false"):
            return Literal(text == "true", token.pos)
        if text == "null":
            return Literal(None, token.pos)
        if text in KEYWORDS:
            raise ExpressionError(f"expected a value, found the keyword {text!r} (a name "
                                  f"{text!r} is written `{text}`)", token.pos)
        if not self.at("op", "("):
            return Name(text, token.pos)
        self.take()
        args: list[Node] = []
        if not self.at("op", ")"):
            args.append(self.expression())
            while self.at("op", ","):
                self.take()
                args.append(self.expression())
        self.expect(")", f"',' or ')' in the arguments of {text}()")
        return Call(text, tuple(args), token.pos)


def parse(text: str) -> Node:
    """The syntax tree of `text`; ExpressionError (with the column) when it does not parse."""
    if len(text) > _MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {_MAX_LENGTH} characters", 0, "")
    try:
        if not text.strip():
            raise ExpressionError("the expression is empty", 0)
        parser = _Parser(tokenize(text))
        node = parser.expression()
        if parser.peek.kind != "end":
            raise ExpressionError(f"expected an operator or the end, found "
                                  f"{_describe(parser.peek)}", parser.peek.pos)
        _check_depth(node)
    except ExpressionError as exc:
        raise exc.with_text(text) from None
    return node


def _check_depth(root: Node) -> None:
    # Iterative: a chain like a + b + c + ... is as deep as it is long.
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(f"more than {MAX_DEPTH} operations inside each other: "
                                  "split it into several derivations", node.pos)
        stack.extend((child, depth + 1) for child in children(node))
