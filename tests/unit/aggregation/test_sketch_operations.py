"""Sketch operations over tiles merged in random orders, within their documented bounds."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right

import datasketches as ds
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.aggregation import Window, operator_for
from tests.unit.aggregation.oracle_support import covered, via_tiles

HOP = 1000
PERCENTILES = (0.0, 0.1, 0.5, 0.9, 0.99, 1.0)
# KLL's normalized rank error for k = 200 (99% confidence, one quantile): about 1.33%.
RANK_EPS = ds.kll_doubles_sketch.get_normalized_rank_error(200, False)


def _rank_ok(q: float, sorted_values: list[float], p: float, eps: float) -> bool:
    """Whether `q` is a value whose ranks [lo, hi] come within eps of percentile p."""
    n = len(sorted_values)
    lo, hi = bisect_left(sorted_values, q) / n, bisect_right(sorted_values, q) / n
    return hi > lo and lo - eps - 1 / n <= p <= hi + eps + 1 / n


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(st.tuples(st.one_of(st.none(), st.integers(-20, 20), st.text(max_size=3)),
                              st.integers(0, 12 * HOP)), max_size=60),
    length=st.one_of(st.none(), st.integers(1, 10).map(lambda n: n * HOP)),
    at=st.integers(0, 13 * HOP),
    rnd=st.randoms(use_true_random=False),
)
def test_approx_unique_count_within_its_bounds(
    events: list[tuple[object, int]], length: int | None, at: int, rnd: random.Random
) -> None:
    window = Window.of(length, HOP)
    op = operator_for("approx_unique_count", "string")
    state = via_tiles(op, events, window, at, rnd)
    true = len({(type(v), v) for v, _ in covered(events, window, at)})
    # Few values are nearly exact, but two can share a sparse coupon (17 bits at lg_k 11:
    # about n**2 / 2**18 of the time), which loses one: hypothesis has found such a pair.
    assert abs(op.result(state) - true) <= 1 + 0.05 * true


def test_approx_unique_count_at_scale() -> None:
    op = operator_for("approx_unique_count", "int64")
    tiles = []
    for t in range(10):
        s = op.empty()
        for v in range(t * 10_000, t * 10_000 + 15_000):  # overlapping tiles
            s = op.update(s, v, t)
        tiles.append(op.decode(op.encode(s)))
    merged = op.empty()
    for s in tiles[::-1]:
        merged = op.merge(merged, s)
    assert abs(op.result(merged) - 105_000) / 105_000 < 0.04  # lg_k 11: RSE about 1.3%


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(st.tuples(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False),
                                        st.integers(-100, 100)),
                              st.integers(0, 12 * HOP)), max_size=80),
    length=st.one_of(st.none(), st.integers(1, 10).map(lambda n: n * HOP)),
    at=st.integers(0, 13 * HOP),
    rnd=st.randoms(use_true_random=False),
)
def test_approx_percentile_within_rank_error(
    events: list[tuple[object, int]], length: int | None, at: int, rnd: random.Random
) -> None:
    window = Window.of(length, HOP)
    op = operator_for("approx_percentile", "double", percentiles=PERCENTILES)
    got = op.result(via_tiles(op, events, window, at, rnd))
    values = sorted(float(v) for v, _ in covered(events, window, at))  # type: ignore[arg-type]
    if not values:
        assert got is None
        return
    assert got is not None and len(got) == len(PERCENTILES)
    assert got == sorted(got)
    for p, q in zip(PERCENTILES, got, strict=True):
        assert _rank_ok(q, values, p, 0.0), (p, q)  # below k values KLL is exact


def test_approx_percentile_at_scale() -> None:
    op = operator_for("approx_percentile", "double", percentiles=PERCENTILES)
    rnd = random.Random(14)
    values = [rnd.gauss(0, 1) for _ in range(100_000)]
    tiles = []
    for t in range(20):
        s = op.empty()
        for v in values[t * 5000 : (t + 1) * 5000]:
            s = op.update(s, v, t)
        tiles.append(op.decode(op.encode(s)))
    rnd.shuffle(tiles)
    merged = tiles[0]
    for s in tiles[1:]:
        merged = op.merge(merged, s)
    got = op.result(merged)
    assert got is not None
    values.sort()
    for p, q in zip(PERCENTILES, got, strict=True):
        assert _rank_ok(q, values, p, 2 * RANK_EPS), (p, q)


def test_empty_cpc_state_read_back_then_updated_is_finite() -> None:
    # datasketches 5.2 estimates infinity for an empty sketch deserialized then updated.
    op = operator_for("approx_unique_count", "string")
    state = op.decode(op.encode(op.empty()))
    state = op.update(state, "a", 1)
    assert op.result(state) == 1
