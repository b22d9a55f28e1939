"""The type checker: result types, int64/double mixing, null, and errors with positions."""

from __future__ import annotations

import pytest

from fetcher.expressions import ExpressionError, check, parse
from fetcher.types import FeatureType

D, INT, S, B = FeatureType.DOUBLE, FeatureType.INT64, FeatureType.STRING, FeatureType.BOOL
INPUTS = {"i": INT, "j": INT, "d": D, "s": S, "b": B, "by": FeatureType.BYTES,
          "li": FeatureType.INT64_LIST, "ls": FeatureType.STRING_LIST}


def type_of(text: str) -> FeatureType:
    return check(parse(text), INPUTS, text).type


@pytest.mark.parametrize(("text", "expected"), [
    ("i + j", INT), ("i * 2 - j % 3", INT), ("-i", INT), ("i / j", D), ("i + d", D), ("d % 2", D),
    ("1 + 1", INT), ("1 + 1.0", D), ("i = d", B), ("s < 'm'", B), ("b = true", B),
    ("b and not b or i > 0", B), ("if(b, i, j)", INT), ("if(b, i, d)", D), ("if(b, s, 'x')", S),
    ("if(b, i, null)", INT), ("if(b, null, d)", D), ("coalesce(i, 0)", INT),
    ("coalesce(i, d, 0)", D), ("coalesce(null, s)", S), ("is_null(i)", B), ("is_null(li)", B),
    ("is_null(null)", B), ("coalesce(li, li)", FeatureType.INT64_LIST),
    ("li", FeatureType.INT64_LIST),
    ("if(b, by, null)", FeatureType.BYTES), ("abs(i)", INT), ("abs(d)", D), ("floor(i)", INT),
    ("round(d)", D), ("ceil(1)", INT), ("sqrt(i)", D), ("log(2)", D), ("exp(d)", D),
    ("pow(i, 2)", D), ("min(i, j)", INT), ("max(i, j, d)", D), ("min(1, 2, 3)", INT),
    ("null + i", INT), ("i + null", INT), ("-null + 1.5", D), ("null / null + 1", D),
    ("coalesce(null + null, 1)", INT), ("not null", B), ("null and b", B),
])
def test_result_types(text: str, expected: FeatureType) -> None:
    assert type_of(text) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("i + s", "column 5: + needs numbers: 's' is string"),
    ("s * 2", "column 1: * needs numbers: 's' is string"),
    ("(i > 0) + 1", "column 2: + needs numbers, not bool"),
    ("-s", "column 2: - needs a number: 's' is string"),
    ("not i", "column 5: not needs a bool: 'i' is int64"),
    ("i and b", "column 1: and needs bools: 'i' is int64"),
    ("b or 1", "column 6: or needs bools, not int64"),
    ("i = s", "column 3: = compares values of one type, not int64 and string"),
    ("b < true", "column 3: bools are not ordered: < compares numbers or strings"),
    ("i = null", "column 5: comparing with null is always null: write is_null(x)"),
    ("null != i", "column 1: comparing with null is always null: write not is_null(x)"),
    ("i < null", "column 5: comparing with null is always null"),
    ("li = li", "column 1: = compares numbers, strings or bools: 'li' is int64_list (bytes "
                "and lists can only be given to is_null, coalesce and if)"),
    ("by + 1", "column 1: + needs numbers: 'by' is bytes"),
    ("if(i, 1, 2)", "column 4: if()'s condition must be a bool: 'i' is int64"),
    ("if(b, 1, 's')", "column 10: the values if() chooses between have different types: "
                      "int64 and string"),
    ("coalesce(li, ls)", "column 14: the values coalesce() chooses between have different "
                         "types: int64_list and string_list"),
    ("coalesce(i)", "column 1: coalesce() takes at least 2 argument(s), not 1"),
    ("if(b, 1)", "column 1: if() takes 3 argument(s), not 2"),
    ("sqrt(1, 2)", "column 1: sqrt() takes 1 argument(s), not 2"),
    ("min(i)", "column 1: min() takes at least 2 argument(s), not 1"),
    ("sqrt(s)", "column 6: sqrt() needs numbers: 's' is string"),
    ("max(i, b)", "column 8: max() needs numbers: 'b' is bool"),
    ("sqr(i)", "column 1: unknown function 'sqr' (known: abs, ceil, coalesce, exp, floor, if, "
               "is_null, log, max, min, pow, round, sqrt)"),
    ("nope + 1", "column 1: unknown name 'nope'"),
    ("null", "column 1: the expression is always null, so it has no type"),
    ("-null", "column 1: the expression is always null"),
    ("null + null", "column 1: the expression is always null"),
    ("if(b, null, null)", "column 1: the expression is always null"),
])
def test_type_errors_name_the_position(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        check(parse(text), INPUTS, text)
    assert str(caught.value).startswith(message), str(caught.value)
