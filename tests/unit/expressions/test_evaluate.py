"""Evaluation over columns: the null and error rules of docs/derivations.md, case by case."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fetcher.expressions import INT64_MAX, INT64_MIN, InputColumn, compile_derivations
from fetcher.types import FeatureType, Status

D, INT, S, B = FeatureType.DOUBLE, FeatureType.INT64, FeatureType.STRING, FeatureType.BOOL
PRESENT, NULL, ERROR = Status.PRESENT, Status.NULL_VALUE, Status.ERROR
INPUTS = {"i": INT, "j": INT, "d": D, "e": D, "s": S, "b": B, "c": B, "li": FeatureType.INT64_LIST}


def run(text: str, **cols: list[Any]) -> list[tuple[Status, Any]]:
    """`text` over rows given per input as values (None: NULL_VALUE, "ERR": ERROR)."""
    program = compile_derivations({"x": text}, INPUTS)
    rows = len(next(iter(cols.values()))) if cols else 1
    given = {}
    for name in INPUTS:
        values = cols.get(name, [None] * rows)
        statuses = [ERROR if v == "ERR" else NULL if v is None else PRESENT for v in values]
        given[name] = InputColumn([None if v == "ERR" else v for v in values], statuses)
    out = program.evaluate(given)["x"]
    return [(Status(s), v) for s, v in zip(out.statuses, out.values, strict=True)]


def one(text: str, **values: Any) -> tuple[Status, Any]:
    """`text` over one row."""
    return run(text, **{k: [v] for k, v in values.items()})[0]


def P(value: Any) -> tuple[Status, Any]:
    return (PRESENT, value)


N, E = (NULL, None), (ERROR, None)


@pytest.mark.parametrize(("text", "values", "expected"), [
    ("i + j", {"i": INT64_MAX, "j": 1}, E),
    ("i - j", {"i": INT64_MIN, "j": 1}, E),
    ("i * j", {"i": 2**32, "j": 2**31}, E),
    ("i * j", {"i": 2**31, "j": 2**31}, P(2**62)),
    ("-i", {"i": INT64_MIN}, E),
    ("abs(i)", {"i": INT64_MIN}, E),
    ("-9223372036854775808 + 0", {}, P(INT64_MIN)),
    ("i / j", {"i": 1, "j": 0}, E),
    ("d / e", {"d": 1.0, "e": -0.0}, E),
    ("i % j", {"i": 1, "j": 0}, E),
    ("d % e", {"d": 1.5, "e": 0.0}, E),
    ("i % j", {"i": -7, "j": 2}, P(-1)),
    ("i % j", {"i": 7, "j": -2}, P(1)),
    ("i % j", {"i": -7, "j": -2}, P(-1)),
    ("d % e", {"d": -7.5, "e": 2.0}, P(-1.5)),
    ("i / j", {"i": 7, "j": 2}, P(3.5)),
    ("sqrt(d)", {"d": -1.0}, E),
    ("sqrt(i)", {"i": 9}, P(3.0)),
    ("log(d)", {"d": 0.0}, E),
    ("log(i)", {"i": -1}, E),
    ("exp(d)", {"d": 1000.0}, E),
    ("exp(d)", {"d": -1000.0}, P(0.0)),
    ("pow(-8, 1 / 3)", {}, E),
    ("pow(0, -1)", {}, E),
    ("pow(10, 400)", {}, E),
    ("pow(i, 2)", {"i": 3}, P(9.0)),
    ("d * 10", {"d": 1e308}, E),
    ("d - e", {"d": -1e308, "e": 1e308}, E),
    ("d + 0", {"d": math.nan}, E),
    ("d", {"d": math.inf}, E),
    ("is_null(d)", {"d": math.nan}, E),
    ("round(d)", {"d": 2.5}, P(3.0)),
    ("round(d)", {"d": -2.5}, P(-3.0)),
    ("round(d)", {"d": 0.49999999999999994}, P(0.0)),
    ("round(d)", {"d": -0.5}, P(-1.0)),
    ("round(i)", {"i": 7}, P(7)),
    ("floor(d)", {"d": -1.5}, P(-2.0)),
    ("ceil(d)", {"d": -1.5}, P(-1.0)),
    ("i > d", {"i": 2**53 + 1, "d": float(2**53)}, P(True)),
    ("i = d", {"i": 2**53 + 1, "d": float(2**53)}, P(False)),
    ("i + 0.0 = d", {"i": 2**53 + 1, "d": float(2**53)}, P(True)),  # converted: rounded
    ("s < 'b'", {"s": "a"}, P(True)),
    ("min(i, d)", {"i": 1, "d": 2.5}, P(1.0)),
    ("max(i, j, 0)", {"i": -1, "j": None}, N),
    ("max(i, j)", {"i": None, "j": "ERR"}, E),
    ("i + j", {"i": None, "j": "ERR"}, E),
    ("i + j", {"i": None, "j": 1}, N),
])
def test_runtime_rules(text: str, values: dict[str, Any], expected: tuple[Status, Any]) -> None:
    got = one(text, **values)
    assert got == expected and type(got[1]) is type(expected[1]), got


LOGIC = [(True, "T"), (False, "F"), (None, "N"), ("ERR", "E")]


@pytest.mark.parametrize("left", LOGIC, ids=lambda v: v[1])
@pytest.mark.parametrize("right", LOGIC, ids=lambda v: v[1])
def test_and_or_are_three_valued_left_to_right(left: tuple[Any, str],
                                              right: tuple[Any, str]) -> None:
    a, b = left[0], right[0]
    expected_and = {"F": P(False)}.get(left[1]) or (
        E if "E" in (left[1], right[1]) else P(False) if right[1] == "F" else
        N if "N" in (left[1], right[1]) else P(True))
    expected_or = {"T": P(True)}.get(left[1]) or (
        E if "E" in (left[1], right[1]) else P(True) if right[1] == "T" else
        N if "N" in (left[1], right[1]) else P(False))
    assert one("b and c", b=a, c=b) == expected_and
    assert one("b or c", b=a, c=b) == expected_or
    assert one("not b", b=a) == {"T": P(False), "F": P(True), "N": N, "E": E}[left[1]]


def test_if_uses_only_the_branch_it_takes() -> None:
    guarded = "if(j = 0, null, i / j)"
    assert run(guarded, i=[6, 6, None, 6], j=[0, 3, 3, "ERR"]) == [N, P(2.0), N, E]
    assert run("if(b, i, j)", b=[True, False, None, "ERR"], i=[1, "ERR", 1, 1],
               j=["ERR", 2, 2, 2]) == [P(1), P(2), N, E]
    assert one("if(b, i, d)", b=True, i=3) == P(3.0)  # the int64 branch converted


def test_coalesce_takes_the_first_non_null_but_never_hides_an_error() -> None:
    assert run("coalesce(i, j, 0)", i=[1, None, None, "ERR", None],
               j=["ERR", 2, None, 2, "ERR"]) == [P(1), P(2), P(0), E, E]
    assert run("coalesce(i, j)", i=[None], j=[None]) == [N]
    assert one("coalesce(i, d)", i=4) == P(4.0)
    assert run("coalesce(li, li)", li=[[1, 2], None]) == [P([1, 2]), N]


def test_is_null_and_input_statuses() -> None:
    assert run("is_null(i)", i=[1, None, "ERR"]) == [P(False), P(True), E]
    program = compile_derivations({"x": "coalesce(i, -1)"}, INPUTS)
    statuses = [Status.PRESENT, Status.NOT_FOUND, Status.NULL_VALUE, Status.OUTSIDE_MAX_AGE,
                Status.ERROR]
    out = program.evaluate({"i": InputColumn([5, 9, 9, 9, 9], statuses)})["x"]
    assert out.values == [5, -1, -1, -1, None]
    assert list(out.statuses) == [1, 1, 1, 1, 5]
    assert isinstance(out.statuses, bytes)


def test_failing_rows_only_fail_themselves_and_null_rows_never_fail() -> None:
    # A zero divisor at a null row, an overflow at one row: the other rows are computed.
    assert run("i / j", i=[None, 4, 1], j=[0, 2, 0]) == [N, P(2.0), E]
    assert run("i * 2", i=[1, INT64_MAX, None, 3]) == [P(2), E, N, P(6)]
    assert run("log(d) + 1", d=[1.0, 0.0, None]) == [P(1.0), E, N]


def test_derivations_use_each_other_in_dependency_order() -> None:
    program = compile_derivations(
        [("ratio_sq", "ratio * ratio"), ("ratio", "i / j"), ("big", "ratio_sq > 1")], INPUTS)
    assert program.names == ("ratio_sq", "ratio", "big")
    assert program.types == {"ratio_sq": D, "ratio": D, "big": B}
    assert program.inputs == {"i": INT, "j": INT}
    out = program.evaluate({"i": InputColumn([3, 1, 1], [1, 1, 3]),
                            "j": InputColumn([1, 0, 1], b"\x01\x01\x01")})
    assert out["ratio"].values == [3.0, None, None]
    assert out["ratio_sq"].values == [9.0, None, None]
    assert list(out["big"].statuses) == [1, 5, 3]


def test_an_all_present_batch_and_a_batch_with_nulls_agree() -> None:
    program = compile_derivations({"x": "if(i % 3 = 0, sqrt(d) * i, -d) + abs(i - 50)"}, INPUTS)
    ints, doubles = list(range(100)), [float(v) * 0.5 for v in range(100)]
    clean = program.evaluate({"i": InputColumn(ints, [1] * 100), "d": InputColumn(doubles,
                                                                                  [1] * 100)})
    holes = program.evaluate({"i": InputColumn(ints, [1, 3] * 50),
                              "d": InputColumn(doubles, [1] * 100)})
    assert holes["x"].values[::2] == clean["x"].values[::2]
    assert holes["x"].values[1::2] == [None] * 50
    assert set(clean["x"].statuses) == {1}


def test_constants_need_the_row_count_and_inputs_are_checked() -> None:
    program = compile_derivations({"k": "1 + 2", "t": "'web'"}, {})
    assert program.evaluate({}, rows=3)["k"] == ([3, 3, 3], b"\x01\x01\x01")
    assert program.evaluate({}, rows=2)["t"].values == ["web", "web"]
    program = compile_derivations({"x": "i + 1"}, INPUTS)
    with pytest.raises(ValueError, match="no column for the input 'i'"):
        program.evaluate({"j": InputColumn([1], [1])})
    with pytest.raises(ValueError, match="the column 'i' has 2 values and 1 statuses"):
        program.evaluate({"i": InputColumn([1, 2], [1])})
    assert program.evaluate({"i": InputColumn([], b"")})["x"] == ([], b"")
