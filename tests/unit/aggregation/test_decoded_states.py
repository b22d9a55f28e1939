"""Decoded suffix states kept with a batch part (DecodedStates): reads that reuse them
answer what a cold read answers, and never change them, for every operation, including
those whose merge changes its first state in place (unique_count, histogram,
approx_percentile)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.aggregation import ApproxPercentile, DecodedStates, GroupAggregator, operator_for
from fetcher.types import AggregateColumn, AggregateFeature, AggregateOperation, AggregationSpec
from tests.unit.aggregation.log_model import RawEvent, build_log

HOP = 10
COLUMNS = (AggregateColumn("amount", "int64"), AggregateColumn("x", "double"),
           AggregateColumn("s", "string"))
OPS: list[tuple[str, str, int | None]] = [
    ("s", "unique_count", None), ("s", "histogram", None), ("x", "approx_percentile", None),
    ("s", "approx_unique_count", None), ("s", "last_k", 2), ("amount", "top_k", 3),
    ("amount", "sum", None), ("x", "variance", None), ("s", "first", None),
]
PERCENTILES = (0.0, 0.5, 1.0)


def _spec() -> AggregationSpec:
    operations: list[AggregateOperation] = []
    features: list[AggregateFeature] = []
    for column, name, k in OPS:
        pct = PERCENTILES if name == "approx_percentile" else None
        operations.append(AggregateOperation(column, name, HOP, 100, k=k, percentiles=pct))
        operations.append(AggregateOperation(column, name, 50, None, k=k, percentiles=pct))
        bounded, unbounded = len(operations) - 2, len(operations) - 1
        features += [AggregateFeature(f"{column}_{name}_30", bounded, 30),
                     AggregateFeature(f"{column}_{name}_100", bounded, 100),
                     AggregateFeature(f"{column}_{name}", unbounded, None)]
    return AggregationSpec(COLUMNS, tuple(operations), tuple(features))


SPEC = _spec()
TYPES = {c.name: c.type for c in COLUMNS}
# A histogram and unique_count limit the events can pass, so the past-the-limit state
# (None) is cached too.
AGG = GroupAggregator(SPEC, [
    operator_for(o.operation, TYPES[o.column], k=o.k, percentiles=o.percentiles, limit=3)
    for o in SPEC.operations
])

values_st = st.fixed_dictionaries({
    "amount": st.none() | st.integers(-50, 50),
    "x": st.none() | st.floats(-1e3, 1e3, allow_nan=False),
    "s": st.none() | st.sampled_from(["a", "b", "c", "dd", "e"]),
})


def _canonical(operation: int, state: Any) -> Any:
    """What a state holds: its encoding, but for a KLL sketch its items and weights in
    order (a quantile query sorts a sketch's level 0 in place, and the encoding carries
    that order: the same sketch, a cold read's fresh copy is sorted the same way)."""
    operator = AGG.operators[operation]
    if isinstance(operator, ApproxPercentile):
        return state.n, sorted(state)
    return operator.encode(state)


def _from_bytes(payload: bytes, key: tuple[int, int]) -> Any:
    """The state at `key` decoded afresh from the part's bytes, canonical."""
    operation, j = key
    _, _, offsets, states = AGG.batch_index(payload)[operation]
    lo = int.from_bytes(payload[offsets + 4 * (j - 1) : offsets + 4 * j], "little") if j else 0
    hi = int.from_bytes(payload[offsets + 4 * j : offsets + 4 * j + 4], "little")
    state = AGG.operators[operation].decode(payload[states + lo : states + hi])
    return _canonical(operation, state)


def _unchanged(payload: bytes, cached: DecodedStates) -> None:
    for key, state in cached.states.items():
        assert _canonical(key[0], state) == _from_bytes(payload, key), key


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 10**6), values_st), max_size=40),
    st.integers(0, 300),
    st.lists(st.integers(0, 400), min_size=1, max_size=12),
)
def test_warm_reads_equal_cold_reads_and_never_change_the_cached_states(
    raw: list[tuple[int, int, dict[str, Any]]], end: int, reads: list[int]
) -> None:
    events: list[RawEvent] = [(ts, f"e{ident}", values) for ts, ident, values in raw]
    log = build_log(AGG, events, [end])
    cached = DecodedStates()
    # Every read twice: the second one reuses every state the first decoded.
    for at in [t for read_at in reads for t in (read_at, read_at)]:
        batch, read, _ = log.read(AGG.scan_start(at), at, 10_000)
        cold = AGG.compute(batch, read, at)
        warm = AGG.compute(batch, read, at, None, cached if batch is not None else None)
        assert (cold is None) == (warm is None)
        if cold is None or warm is None:
            continue
        assert warm.values == cold.values
        assert warm.statuses == cold.statuses
        assert warm.event_ms == cold.event_ms
        if batch is not None:
            # Every state kept is still the state of the bytes it was decoded from.
            _unchanged(batch[1], cached)


def test_states_decoded_once_are_reused_and_their_bytes_counted() -> None:
    events: list[RawEvent] = [(t, f"e{t}", {"amount": t % 7, "x": float(t), "s": "abcde"[t % 5]})
                              for t in range(0, 200, 3)]
    log = build_log(AGG, events, [150])
    batch, read, _ = log.read(AGG.scan_start(160), 160, 10_000)
    assert batch is not None
    cached = DecodedStates()
    want = AGG.compute(batch, read, 160)
    assert want is not None
    got = AGG.compute(batch, read, 160, None, cached)
    assert got is not None and got.values == want.values
    # One state per operation and window start before the batch end: the 30 window
    # starts at 130 and the 100 one at 60 (bounded operations), the unbounded at 0.
    assert len(cached) == 3 * len(OPS)
    counted = cached.bytes
    assert counted > 0
    for _ in range(20):
        again = AGG.compute(batch, read, 160, None, cached)
        assert again is not None and again.values == want.values
    assert len(cached) == 3 * len(OPS) and cached.bytes == counted
    _unchanged(batch[1], cached)
