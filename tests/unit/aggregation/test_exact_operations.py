"""Oracle tests: every exact operation over tiles, merged in random orders, equals the slow
computation over the raw events the window covers."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.aggregation import (
    INT64_MAX,
    INT64_MIN,
    AggregateOverflowError,
    Window,
    operator_for,
)
from tests.unit.aggregation.oracle_support import Event, brute, covered, via_tiles

HOP = 1000
INT64 = st.integers(-(2**63), 2**63 - 1)
SMALL_INT = st.integers(-50, 50)  # many repeats: ties and duplicates
FLOAT = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
STRING = st.text(max_size=4)
LIST = st.lists(SMALL_INT, max_size=3)
COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "int64": st.one_of(INT64, SMALL_INT), "double": st.one_of(FLOAT, st.sampled_from([0.0, -0.0])),
    "string": STRING, "bool": st.booleans(), "bytes": st.binary(max_size=3),
    "list<int64>": LIST,
}
OPS: dict[str, tuple[str, ...]] = {
    "count": tuple(COLUMNS), "first": tuple(COLUMNS), "last": tuple(COLUMNS),
    "unique_count": tuple(COLUMNS),
    "sum": ("int64", "double"), "average": ("int64", "double"),
    "variance": ("int64", "double"), "stddev": ("int64", "double"),
    "min": ("int64", "double", "string"), "max": ("int64", "double", "string"),
    "first_k": ("int64", "double", "string", "bool"), "last_k": ("int64", "double", "string"),
    "top_k": ("int64", "double", "string"), "bottom_k": ("int64", "double", "string"),
    "histogram": ("int64", "string"),
}
CASES = [(op, col) for op, cols in OPS.items() for col in cols]


@st.composite
def scenario(draw: st.DrawFn, column: str) -> tuple[list[Event], Window, int]:
    """Events (some null) over a few tiles, a window and a read time."""
    values = st.one_of(COLUMNS[column], st.none(), st.just(math.nan))
    events = draw(st.lists(st.tuples(values, st.integers(0, 12 * HOP)), max_size=40))
    length = draw(st.one_of(st.none(), st.integers(1, 10).map(lambda n: n * HOP)))
    at = draw(st.integers(0, 13 * HOP))
    return events, Window.of(length, HOP), at


def _close(got: Any, want: Any, scale: float) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9 * scale)


@pytest.mark.parametrize(("name", "column"), CASES)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), rnd=st.randoms(use_true_random=False))
def test_tiles_merged_in_any_order_equal_the_raw_events(
    name: str, column: str, data: st.DataObject, rnd: random.Random
) -> None:
    events, window, at = data.draw(scenario(column))
    k = data.draw(st.integers(1, 5))
    limit = data.draw(st.integers(1, 8))
    op = operator_for(name, column, k=k, limit=limit)
    state = via_tiles(op, events, window, at, rnd)
    raw = covered(events, window, at)
    want = brute(name, raw, k=k, limit=limit)
    int_sum = name == "sum" and column == "int64" and want is not None
    if int_sum and not INT64_MIN <= want <= INT64_MAX:
        with pytest.raises(AggregateOverflowError):
            op.result(state)
        return
    got = op.result(state)
    if name == "sum" and column == "double":
        assert _close(got, want, sum(abs(v) for v, _ in raw))  # additions in another order
    elif name in ("average", "variance", "stddev"):
        biggest = max((abs(float(v)) for v, _ in raw), default=0.0)
        assert _close(got, want, biggest * biggest if name == "variance" else biggest)
    else:
        assert got == want
        if isinstance(want, list):
            assert [type(v) for v in got] == [type(v) for v in want]
        else:
            assert type(got) is type(want)


# Float states (double columns, average/variance/stddev) depend on the order of additions.
MOMENTS = ("average", "variance", "stddev")
ORDER_FREE = [c for c in CASES if c[1] != "double" and c[0] not in MOMENTS]


@pytest.mark.parametrize(("name", "column"), ORDER_FREE)
@settings(max_examples=30, deadline=None)
@given(data=st.data(), rnd=st.randoms(use_true_random=False))
def test_same_events_any_order_same_bytes(
    name: str, column: str, data: st.DataObject, rnd: random.Random
) -> None:
    values = st.one_of(COLUMNS[column], st.none())
    events = data.draw(st.lists(st.tuples(values, st.integers(0, 3)), max_size=20))
    op = operator_for(name, column, k=3, limit=6)
    encoded = set()
    for _ in range(3):
        rnd.shuffle(events)
        state = op.empty()
        for value, ts in events:
            state = op.update(state, value, ts)
        encoded.add(op.encode(state))
    assert len(encoded) == 1


def test_empty_windows() -> None:
    for name, column in CASES:
        op = operator_for(name, column, k=2)
        want = 0 if name in ("count", "unique_count") else None
        assert op.result(op.empty()) == want, name
        assert op.result(op.merge(op.empty(), op.empty())) == want, name


def test_ties_on_time_go_by_value_bytes_not_arrival() -> None:
    first, last = operator_for("first", "string"), operator_for("last", "string")
    for order in (["b", "a"], ["a", "b"]):
        f, l_ = first.empty(), last.empty()
        for v in order:
            f, l_ = first.update(f, v, 7), last.update(l_, v, 7)
        assert (first.result(f), last.result(l_)) == ("a", "b")


def test_sum_overflow_is_an_error_but_the_state_stays_exact() -> None:
    op = operator_for("sum", "int64")
    big = op.update(op.update(op.empty(), INT64_MAX, 0), 1, 0)
    with pytest.raises(AggregateOverflowError, match="int64"):
        op.result(big)
    back = op.update(op.decode(op.encode(big)), -2, 0)
    assert op.result(back) == INT64_MAX - 1


def test_unique_count_past_the_limit_is_null_and_stays_null() -> None:
    op = operator_for("unique_count", "int64", limit=2)
    s = op.empty()
    for v in (1, 2, 2, 1):
        s = op.update(s, v, 0)
    assert op.result(s) == 2
    s = op.update(s, 3, 0)
    assert op.result(s) is None
    assert op.result(op.merge(op.empty(), op.decode(op.encode(s)))) is None


def test_k_results_order() -> None:
    events = [(5, 3), (1, 1), (9, 2), (7, 4)]
    expect = {"first_k": [1, 9], "last_k": [7, 5], "top_k": [9, 7], "bottom_k": [1, 5]}
    for name, want in expect.items():
        op = operator_for(name, "int64", k=2)
        s = op.empty()
        for v, ts in events:
            s = op.update(s, v, ts)
        assert op.result(s) == want, name


def test_nulls_and_nan_are_skipped() -> None:
    op = operator_for("average", "double")
    s = op.empty()
    for v in (None, math.nan, 2.0, 4.0):
        s = op.update(s, v, 0)
    assert op.result(s) == 3.0
    count = operator_for("count", "double")
    assert count.result(count.update(count.empty(), None, 0)) == 0


def test_population_variance() -> None:
    op = operator_for("variance", "int64")
    s = op.empty()
    for v in (2, 4, 4, 4, 5, 5, 7, 9):
        s = op.update(s, v, 0)
    assert op.result(s) == 4.0
    assert operator_for("stddev", "int64").result(s) == 2.0
