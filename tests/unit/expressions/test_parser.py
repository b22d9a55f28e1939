"""The tokenizer and parser: precedence, literals, names, and errors with their column."""

from __future__ import annotations

import pytest

from fetcher.expressions import (
    INT64_MIN,
    Binary,
    Call,
    ExpressionError,
    Literal,
    Name,
    Node,
    Unary,
    parse,
)


def shape(node: Node) -> object:
    """The tree without positions, as nested tuples."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Unary):
        return (node.op, shape(node.operand))
    if isinstance(node, Binary):
        return (node.op, shape(node.left), shape(node.right))
    assert isinstance(node, Call)
    return (node.func, *[shape(a) for a in node.args])


@pytest.mark.parametrize(("text", "tree"), [
    ("a + b * c", ("+", "a", ("*", "b", "c"))),
    ("(a + b) * c", ("*", ("+", "a", "b"), "c")),
    ("a - b - c", ("-", ("-", "a", "b"), "c")),
    ("a / b % c", ("%", ("/", "a", "b"), "c")),
    ("-a * b", ("*", ("-", "a"), "b")),
    ("- -a", ("-", ("-", "a"))),
    ("a < b + 1", ("<", "a", ("+", "b", 1))),
    ("a == b", ("=", "a", "b")),
    ("a = b and c != d or e", ("or", ("and", ("=", "a", "b"), ("!=", "c", "d")), "e")),
    ("a or b and c", ("or", "a", ("and", "b", "c"))),
    ("not a = b", ("not", ("=", "a", "b"))),
    ("not not a and b", ("and", ("not", ("not", "a")), "b")),
    ("if(x > 0, x, -x)", ("if", (">", "x", 0), "x", ("-", "x"))),
    ("coalesce(a, b, 0)", ("coalesce", "a", "b", 0)),
    ("is_null(`not`)", ("is_null", "not")),
    ("`if`(1)", "if"),  # a backquoted name is never a call
    ("if", "if"),
    ("f()", ("f",)),
    ("\n a\n +\tb ", ("+", "a", "b")),
])
def test_precedence_and_grouping(text: str, tree: object) -> None:
    if text == "`if`(1)":
        with pytest.raises(ExpressionError, match="column 5: expected an operator or the end, "
                           "found '\\('"):
            parse(text)
        return
    assert shape(parse(text)) == tree


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42),
    ("-9223372036854775808", INT64_MIN),
    ("9223372036854775807", 2**63 - 1),
    ("1.5", 1.5),
    (".5", 0.5),
    ("3.", 3.0),
    ("2e-3", 0.002),
    ("1E+3", 1000.0),
    ("-0.0", -0.0),
    ("'web'", "web"),
    ('"it\'s"', "it's"),
    ("'a\\'b\\\\c\\n\\t\\\"'", "a'b\\c\n\t\""),
    ("''", ""),
    ("true", True),
    ("false", False),
    ("null", None),
])
def test_literals(text: str, value: object) -> None:
    node = parse(text)
    assert isinstance(node, Literal)
    assert node.value == value and type(node.value) is type(value)


@pytest.mark.parametrize(("text", "message"), [
    ("", "column 1: the expression is empty"),
    ("a +", "column 4: expected a value, a name or '(', found the end of the expression"),
    ("a * / 2", "column 5: expected a value, a name or '(', found '/'"),
    ("(a + b", "column 7: expected ')' to close the '(' at column 1, found the end"),
    ("a b", "column 3: expected an operator or the end, found 'b'"),
    ("a < b < c", "column 7: comparisons do not chain: write a < b and b < c"),
    ("a $ b", "column 3: unexpected character '$'"),
    ("'abc", "column 1: unterminated string: close it with '"),
    ("'abc\\'", "column 1: unterminated string"),
    ("'a\\qb'", "column 3: unknown escape \\q in a string"),
    ("`abc", "column 1: unterminated `name`"),
    ("``", "column 1: empty `name`"),
    ("9223372036854775808", "column 1: the integer 9223372036854775808 does not fit in int64"),
    ("-9223372036854775809", "column 2: the integer 9223372036854775809 does not fit"),
    ("1e999", "column 1: the number 1e999 is too large for a double"),
    ("2x", "column 1: '2x' is not a number"),
    ("1.2.3", "column 1: '1.2.3' is not a number"),
    ("a and", "column 6: expected a value"),
    ("a + and", "column 5: expected a value, found the keyword 'and' (a name 'and' is "
                "written `and`)"),
    ("f(a,)", "column 5: expected a value"),
    ("f(a b)", "column 5: expected ',' or ')' in the arguments of f(), found 'b'"),
    ("a\n  + * b", "line 2, column 5: expected a value"),
])
def test_syntax_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_nesting_and_length_are_bounded() -> None:
    parse("(" * 30 + "a" + ")" * 30)
    with pytest.raises(ExpressionError, match="nested more than 30 levels deep"):
        parse("(" * 31 + "a" + ")" * 31)
    parse(" + ".join(["a"] * 64))
    with pytest.raises(ExpressionError, match="more than 64 operations inside each other"):
        parse(" + ".join(["a"] * 66))
    with pytest.raises(ExpressionError, match="longer than 10000 characters"):
        parse("a" * 10_001)


def test_positions_point_at_the_node() -> None:
    node = parse("abc + sqrt(x)")
    assert isinstance(node, Binary) and node.pos == 4
    assert isinstance(node.right, Call) and node.right.pos == 6
    assert isinstance(node.right.args[0], Name) and node.right.args[0].pos == 11
