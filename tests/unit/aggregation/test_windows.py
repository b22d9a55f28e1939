"""Window arithmetic: the hop rule, the edges of a window and the tiles a read needs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetcher.aggregation import Window, default_hop_ms, read_tiles, tile_start, window_start
from fetcher.compiler._aggregations import default_tile

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


@pytest.mark.parametrize(("window", "hop"), [
    (MIN, 5 * MIN), (12 * HOUR - 1, 5 * MIN), (12 * HOUR, HOUR), (12 * DAY - 1, HOUR),
    (12 * DAY, DAY), (30 * DAY, DAY), (None, DAY),
])
def test_hop_rule(window: int | None, hop: int) -> None:
    assert default_hop_ms(window) == hop
    assert Window.of(window).hop_ms == hop


def test_the_compiler_uses_the_same_rule() -> None:
    for seconds in (60, 43_199, 43_200, 1_036_799, 1_036_800, None):
        ms = None if seconds is None else seconds * 1000
        assert default_tile(seconds) * 1000 == default_hop_ms(ms)


def test_edges() -> None:
    w = Window.of(HOUR, 5 * MIN)
    at = 10 * HOUR + 7 * MIN  # window start: floor(9:07, 5 min) = 9:05
    assert w.start(at) == 9 * HOUR + 5 * MIN
    assert w.covers(9 * HOUR + 5 * MIN, at)  # at exactly the window start: in
    assert not w.covers(9 * HOUR + 5 * MIN - 1, at)
    assert w.covers(at - 1, at)
    assert not w.covers(at, at)  # at the read time: out
    assert list(w.tiles(at)) == [9 * HOUR + 5 * MIN + i * 5 * MIN for i in range(13)]
    assert list(w.tiles(10 * HOUR)) == [9 * HOUR + i * 5 * MIN for i in range(12)]


def test_unbounded_and_early_reads() -> None:
    assert window_start(123_456, None, DAY) == 0
    assert Window.of(None).covers(0, 1) and not Window.of(None).covers(1, 1)
    assert window_start(5 * MIN, HOUR, 5 * MIN) == 0  # a window reaching before 0 starts at 0
    assert list(read_tiles(0, HOUR, 5 * MIN)) == []  # a read at 0 covers nothing


def test_negative_times_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        tile_start(-1, MIN)
    with pytest.raises(ValueError, match=">= 0"):
        window_start(-1, HOUR, MIN)
    with pytest.raises(ValueError, match="positive"):
        tile_start(5, 0)
    with pytest.raises(ValueError, match="positive"):
        Window.of(0)


@given(
    at=st.integers(0, 40 * DAY),
    length=st.one_of(st.none(), st.integers(1, 20 * DAY)),
    hop=st.sampled_from([1, 7, MIN, 5 * MIN, HOUR, DAY]),
    ts=st.integers(0, 40 * DAY),
)
def test_tiles_hold_exactly_the_covered_events(
    at: int, length: int | None, hop: int, ts: int
) -> None:
    w = Window.of(length, hop)
    in_a_tile = tile_start(ts, hop) in w.tiles(at)
    # the tiles hold every covered event; a listed tile only holds extra events at >= at
    assert w.covers(ts, at) == (in_a_tile and ts < at)
    if length is not None:
        assert at - length - hop < w.start(at) <= max(at - length, 0)
