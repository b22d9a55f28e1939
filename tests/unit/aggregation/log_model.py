"""An in-memory aggregation log (docs/storage-layout.md "the log") and the brute-force
answer of every feature, shared by the unit oracle and the end-to-end oracle tests."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fetcher.aggregation import GroupAggregator, tile_start
from fetcher.aggregation._encoding import value_bytes
from fetcher.types import AggregationSpec
from tests.unit.aggregation.oracle_support import brute, is_null


@dataclass(frozen=True)
class ApproxUnique:
    """approx_unique_count's truth: the exact distinct count (CPC: within 1 + 5%)."""

    true: int

    def accepts(self, got: Any) -> bool:
        return isinstance(got, int) and abs(got - self.true) <= 1 + 0.05 * self.true


@dataclass(frozen=True)
class ApproxPercentiles:
    """approx_percentile's truth: the sorted values (KLL k 200: exact below 200 values)."""

    values: tuple[float, ...]
    percentiles: tuple[float, ...]

    def accepts(self, got: Any) -> bool:
        if not self.values:
            return got is None
        n = len(self.values)
        eps = 0.0 if n < 200 else 2 * 0.0133
        if not isinstance(got, list) or len(got) != len(self.percentiles):
            return False
        for q, p in zip(got, self.percentiles, strict=True):
            lo = bisect_left(self.values, q) / n
            hi = bisect_right(self.values, q) / n
            if not (hi > lo and lo - eps - 1 / n <= p <= hi + eps + 1 / n):
                return False
        return True

# (ts, id, values by column name)
RawEvent = tuple[int, str, dict[str, Any]]


def dedupe(events: Sequence[RawEvent]) -> list[RawEvent]:
    """One event per (ts, id): the last one written wins, as in every store."""
    by_identity: dict[tuple[int, str], RawEvent] = {}
    for event in events:
        by_identity[(event[0], event[1])] = event
    return list(by_identity.values())


class LogModel:
    """One key's log: events and batch parts, read as the stores read it."""

    def __init__(self) -> None:
        # (ts, id bytes) -> payload
        self.entries: dict[tuple[int, bytes], bytes] = {}

    def put(self, ts: int, ident: bytes, payload: bytes) -> None:
        self.entries[(ts, ident)] = payload

    def read(
        self, lo: int, hi: int, limit: int
    ) -> tuple[tuple[int, bytes] | None, list[tuple[int, bytes, bytes]], bool]:
        events: list[tuple[int, bytes, bytes]] = []
        for (ts, ident), payload in sorted(self.entries.items(), reverse=True):
            if ts > hi or ts < lo:
                continue
            if not ident:
                return (ts, payload), events, False
            if len(events) == limit:
                return None, events, True
            events.append((ts, ident, payload))
        return None, events, False


def expected(
    spec: AggregationSpec, events: Sequence[RawEvent], at: int, *, has_batch: bool = False
) -> list[Any] | None:
    """Every feature's value at `at` by brute force over the (deduplicated) raw events;
    None (NOT_FOUND) when the key has no event before `at` and no batch part."""
    events = dedupe(events)
    if not has_batch and not any(ts < at for ts, _, _ in events):
        return None
    out: list[Any] = []
    for feature in spec.features:
        op = spec.operations[feature.operation]
        if feature.window_ms is None:
            start = 0
        else:
            start = tile_start(max(at - feature.window_ms, 0), op.hop_ms)
        covered = [
            (values.get(op.column), ts)
            for ts, _, values in events
            if start <= ts < at and not is_null(values.get(op.column))
        ]
        if op.operation == "approx_unique_count":
            out.append(ApproxUnique(len({value_bytes(v) for v, _ in covered})))
        elif op.operation == "approx_percentile":
            out.append(ApproxPercentiles(tuple(sorted(float(v) for v, _ in covered)),
                                         op.percentiles or ()))
        else:
            out.append(brute(op.operation, covered, k=op.k or 0, limit=10_000))
    return out


def close(got: Any, want: Any) -> bool:
    """Equal, but doubles within the documented relative error (sketches: their bounds)."""
    if isinstance(want, ApproxUnique | ApproxPercentiles):
        return want.accepts(got)
    if isinstance(want, float) and isinstance(got, float):
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if hasattr(want, "numerator") and not isinstance(want, int):  # Fraction
        return isinstance(got, float) and math.isclose(got, float(want), rel_tol=1e-9,
                                                       abs_tol=1e-9)
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(close(g, w) for g, w in zip(got, want, strict=True))
    return bool(got == want)


def build_log(
    agg: GroupAggregator, pushed: Sequence[RawEvent], batch_ends: Sequence[int]
) -> LogModel:
    """The log after pushing `pushed` (retries included) and batch runs at `batch_ends`,
    each computed from every event before its end (the batch source holds them all)."""
    log = LogModel()
    codec = agg.codec
    for ts, ident, values in pushed:
        log.put(ts, ident.encode(), codec.encode(codec.values(values)))
    unique = dedupe(pushed)
    for end in batch_ends:
        rows = [(ts, codec.values(values)) for ts, _, values in unique]
        log.put(end, b"", agg.batch_part(rows, end))
    return log
