"""The fetch-time merge (batch part suffix states + events after it) against brute force."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.aggregation import (
    INT64_MAX,
    EventValueError,
    GroupAggregator,
    StateDecodeError,
    operator_for,
)
from fetcher.types import (
    AggregateColumn,
    AggregateFeature,
    AggregateOperation,
    AggregationSpec,
)
from tests.unit.aggregation.log_model import (
    ApproxPercentiles,
    RawEvent,
    build_log,
    close,
    expected,
)

HOP = 10
COLUMNS = (
    AggregateColumn("amount", "int64"),
    AggregateColumn("x", "double"),
    AggregateColumn("s", "string"),
)
# (column, operation, k) served over windows 30 (hop 10), 100 (hop 10) and unbounded.
OPS: list[tuple[str, str, int | None]] = [
    ("amount", "count", None), ("amount", "sum", None), ("x", "sum", None),
    ("x", "average", None), ("x", "variance", None), ("amount", "min", None),
    ("s", "max", None), ("s", "first", None), ("x", "last", None), ("s", "last_k", 2),
    ("amount", "top_k", 3), ("s", "unique_count", None), ("amount", "first_k", 2),
    ("x", "bottom_k", 2), ("amount", "stddev", None), ("s", "approx_unique_count", None),
    ("x", "approx_percentile", None),
]
PERCENTILES = (0.0, 0.5, 0.9, 1.0)


def make_spec() -> AggregationSpec:
    operations: list[AggregateOperation] = []
    features: list[AggregateFeature] = []
    for column, name, k in OPS:
        pct = PERCENTILES if name == "approx_percentile" else None
        operations.append(AggregateOperation(column, name, HOP, 100, k=k, percentiles=pct))
        bounded = len(operations) - 1
        operations.append(AggregateOperation(column, name, 50, None, k=k, percentiles=pct))
        unbounded = len(operations) - 1
        features += [
            AggregateFeature(f"{column}_{name}_30", bounded, 30),
            AggregateFeature(f"{column}_{name}_100", bounded, 100),
            AggregateFeature(f"{column}_{name}", unbounded, None),
        ]
    return AggregationSpec(COLUMNS, tuple(operations), tuple(features))


SPEC = make_spec()


def make_aggregator(spec: AggregationSpec = SPEC) -> GroupAggregator:
    types = {c.name: c.type for c in spec.columns}
    return GroupAggregator(
        spec,
        [operator_for(o.operation, types[o.column], k=o.k, percentiles=o.percentiles)
         for o in spec.operations],
    )


AGG = make_aggregator()

values_st = st.fixed_dictionaries({}, optional={
    "amount": st.none() | st.integers(-1000, 1000),
    "x": st.none() | st.floats(-1e3, 1e3, allow_nan=False),
    "s": st.none() | st.sampled_from(["a", "b", "c", "dd"]),
})
event_st = st.tuples(st.integers(0, 400), st.sampled_from(["e1", "e2", "e3", "e4"]), values_st)


def check(events: list[RawEvent], batch_ends: list[int], at: int, limit: int = 10_000) -> None:
    log = build_log(AGG, events, batch_ends)
    batch, read, truncated = log.read(AGG.scan_start(at), at, limit)
    assert not truncated
    got = AGG.compute(batch, read, at)
    # A key with a batch part at or before `at` is found, even with empty windows.
    want = expected(SPEC, events, at, has_batch=batch is not None)
    if want is None:
        assert got is None
        return
    assert got is not None
    for feature, value, status, wanted in zip(SPEC.features, got.values, got.statuses, want,
                                              strict=True):
        if isinstance(wanted, int) and not -(2**63) <= wanted <= INT64_MAX:
            assert status == "error", feature.name
            continue
        if isinstance(wanted, ApproxPercentiles) and not wanted.values:
            wanted = None
        assert status == ("null" if wanted is None else "present"), (feature.name, value, wanted)
        assert close(value, wanted), (feature.name, value, wanted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(event_st, max_size=30),
    st.lists(st.integers(0, 400), max_size=2, unique=True),
    st.lists(st.integers(0, 500), min_size=1, max_size=4),
)
def test_served_values_equal_brute_force(
    events: list[RawEvent], batch_ends: list[int], reads: list[int]
) -> None:
    for at in reads:
        check(events, batch_ends, at)


@given(st.lists(event_st, max_size=20), st.integers(0, 400), st.integers(0, 500))
@settings(max_examples=100, deadline=None)
def test_retries_count_once(events: list[RawEvent], end: int, at: int) -> None:
    check(events + events, [end], at)


def test_read_at_the_batch_end_and_edges() -> None:
    events: list[RawEvent] = [(t, f"e{t}", {"amount": 1, "x": 1.0, "s": "a"})
                              for t in (0, 9, 10, 29, 30, 99, 100, 101)]
    for end in (0, 10, 30, 100, 101, 105):
        for at in range(end, 140, 7):
            check(events, [end], at)


def test_empty_window_with_batch_part_is_count_zero_and_null_sum() -> None:
    log = build_log(AGG, [(5, "a", {"amount": 3})], [10])
    at = 500  # every bounded window is past the event; the unbounded one still has it
    batch, events, _ = log.read(AGG.scan_start(at), at, 100)
    got = AGG.compute(batch, events, at)
    assert got is not None
    by_name = dict(zip((f.name for f in SPEC.features), zip(got.values, got.statuses,
                                                            strict=True), strict=True))
    assert by_name["amount_count_30"] == (0, "present")
    assert by_name["amount_sum_30"] == (None, "null")
    assert by_name["amount_count"] == (1, "present")
    assert by_name["amount_sum"] == (3, "present")


def test_no_batch_part_and_no_event_is_not_found() -> None:
    assert AGG.compute(None, [], 1000) is None


def test_events_at_the_read_time_are_out() -> None:
    log = build_log(AGG, [(50, "a", {"amount": 3})], [])
    batch, events, _ = log.read(AGG.scan_start(50), 50, 100)
    assert AGG.compute(batch, events, 50) is None


def test_sum_overflow_is_an_error_for_that_feature_only() -> None:
    events: list[RawEvent] = [(1, "a", {"amount": 2**62}), (2, "b", {"amount": 2**62}),
                              (3, "c", {"amount": 2**62})]
    spec = AggregationSpec(
        (AggregateColumn("amount", "int64"),),
        (AggregateOperation("amount", "sum", HOP, 100), AggregateOperation("amount", "count",
                                                                           HOP, 100)),
        (AggregateFeature("s", 0, 100), AggregateFeature("c", 1, 100)),
    )
    agg = make_aggregator(spec)
    log = build_log(agg, events, [2])
    batch, read, _ = log.read(agg.scan_start(10), 10, 100)
    got = agg.compute(batch, read, 10)
    assert got is not None
    assert got.statuses == ["error", "present"]
    assert got.values[1] == 3


@pytest.mark.parametrize("payload", [b"", b"\x02", b"\x01\x05", b"\x01" + b"\x00" * 40])
def test_batch_part_that_does_not_decode(payload: bytes) -> None:
    with pytest.raises(StateDecodeError):
        AGG.compute((10, payload), [], 20)


def _as_format_1(part: bytes) -> bytes:
    """A format-2 batch part rewritten in format 1 (varint headers), as older writers did."""
    from fetcher.aggregation._encoding import Reader, put_uvarint

    r = Reader(part)
    assert r.byte() == 2
    n = r.uvarint()
    directory = struct.unpack_from("<" + "QQII" * n, part, r.pos)
    pos = r.pos + 24 * n
    out = bytearray((1,))
    put_uvarint(out, n)
    for i in range(n):
        hop, s0, m, size = directory[4 * i : 4 * i + 4]
        for value in (hop, s0, m):
            put_uvarint(out, value)
        out += part[pos : pos + 4 * m + size]
        pos += 4 * m + size
    assert pos == len(part)
    return bytes(out)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_st, max_size=15), st.integers(1, 300), st.integers(0, 400))
def test_format_1_batch_parts_are_still_read(events: list[RawEvent], end: int, at: int) -> None:
    rows = [(ts, AGG.codec.values(values)) for ts, _, values in events]
    part = AGG.batch_part(rows, end)
    read_at = max(at, end)
    new = AGG.compute((end, part), [], read_at)
    old = AGG.compute((end, _as_format_1(part)), [], read_at)
    assert new is not None and old is not None
    assert new.statuses == old.statuses
    assert repr(new.values) == repr(old.values)


def test_a_batch_part_cut_or_padded_anywhere_does_not_decode() -> None:
    rows = [(ts, AGG.codec.values({"amount": ts, "x": ts / 3, "s": f"s{ts % 4}"}))
            for ts in range(0, 200, 7)]
    part = AGG.batch_part(rows, 150)
    assert part[0] == 2
    for cut in range(len(part)):
        with pytest.raises(StateDecodeError):
            AGG.compute((150, part[:cut]), [], 160)
    with pytest.raises(StateDecodeError):
        AGG.compute((150, part + b"\x00"), [], 160)
    # A directory whose sizes do not add up to the part.
    bad = bytearray(part)
    struct.pack_into("<I", bad, 2 + 20, struct.unpack_from("<I", part, 2 + 20)[0] + 1)
    with pytest.raises(StateDecodeError):
        AGG.compute((150, bytes(bad)), [], 160)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=30), values_st)
def test_event_payloads_decode_as_the_general_decoder_does(junk: bytes, values: Any) -> None:
    codec = AGG.codec
    good = codec.encode(codec.values(values))
    assert codec.decode(good) == codec._decode(good)
    for payload in (junk, b"\x01" + junk, good[:-1], good + junk[:1]):
        try:
            want: Any = codec._decode(payload)
        except StateDecodeError:
            want = StateDecodeError
        try:
            got: Any = codec.decode(payload)
        except StateDecodeError:
            got = StateDecodeError
        assert repr(got) == repr(want)


def test_event_payload_that_does_not_decode() -> None:
    with pytest.raises(StateDecodeError):
        AGG.compute(None, [(5, b"a", b"\x01\x09")], 20)


def test_batch_part_newer_than_the_read_is_refused() -> None:
    part = AGG.batch_part([], 30)
    with pytest.raises(StateDecodeError):
        AGG.compute((30, part), [], 20)


def test_event_values_are_checked_and_named() -> None:
    codec = AGG.codec
    assert codec.values({"amount": 3, "x": 2}) == (3, 2.0, None)
    for bad, where in (({"amount": 1.5}, "amount"), ({"amount": True}, "amount"),
                       ({"x": "no"}, "x"), ({"s": 4}, "s"), ({"nope": 1}, "nope"),
                       ({"amount": 2**63}, "amount")):
        with pytest.raises(EventValueError, match=where):
            codec.values(bad)


def test_payload_round_trip_and_nan_is_null() -> None:
    codec = AGG.codec
    values: tuple[Any, ...] = (-5, math.nan, "ü")
    assert codec.decode(codec.encode(values)) == (-5, None, "ü")


def test_batch_part_is_deterministic_and_rerun_replaces() -> None:
    rows = [(ts, AGG.codec.values({"amount": ts})) for ts in (3, 1, 2, 50)]
    assert AGG.batch_part(rows, 40) == AGG.batch_part(list(reversed(rows)), 40)


BOUNDED = AggregationSpec(
    COLUMNS,
    (AggregateOperation("amount", "sum", HOP, 100), AggregateOperation("amount", "count", 50, 200)),
    (AggregateFeature("sum_30", 0, 30), AggregateFeature("sum_100", 0, 100),
     AggregateFeature("count_200", 1, 200)),
)
BOUNDED_AGG = make_aggregator(BOUNDED)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(event_st, max_size=20),
    st.lists(st.integers(0, 400), max_size=2, unique=True),
    st.integers(0, 700),
)
def test_bounded_windows_read_only_what_they_cover(
    events: list[RawEvent], batch_ends: list[int], at: int
) -> None:
    log = build_log(BOUNDED_AGG, events, batch_ends)
    batch, read, _ = log.read(BOUNDED_AGG.scan_start(at), at, 10_000)
    got = BOUNDED_AGG.compute(batch, read, at)
    want = expected(BOUNDED, events, at, has_batch=True)
    assert want is not None
    if got is None:
        # NOT_FOUND only when nothing the windows cover exists: every window is empty.
        assert want == [None, None, 0]
        return
    assert got.values == want


def test_batch_part_of_another_hop_is_refused() -> None:
    from dataclasses import replace

    other = make_aggregator(replace(BOUNDED, operations=(
        replace(BOUNDED.operations[0], hop_ms=20), BOUNDED.operations[1])))
    part = other.batch_part([(5, BOUNDED_AGG.codec.values({"amount": 1}))], 40)
    with pytest.raises(StateDecodeError, match="hop"):
        BOUNDED_AGG.compute((40, part), [], 50)
