"""Generated online aggregations compile into aggregation groups that load_catalog accepts,
and their operations are exactly the deduplication the slow obvious way gives: one per
(column, operation, k, percentiles, hop, unbounded), spanning the longest of its windows."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.aggregation import K_OPERATIONS, OPERATIONS, output_type, served_type, unfit
from fetcher.catalog import load_catalog
from fetcher.compiler import compile_repo
from fetcher.compiler._aggregations import default_tile
from fetcher.compiler._types import parse_duration
from tests.unit.compiler.repo_support import write_repo

COLUMNS = {"amount": "double", "count": "int32", "merchant": "string", "flag": "bool",
           "tags": "list<string>", "price": "float"}
WINDOWS = ("30m", "1h", "2h", "12h", "1d", "3d", "7d", "12d", "30d")
TILES = ("5m", "30m", "1h", "1d")
NAME = "risk.tx.tx"


@dataclass(frozen=True)
class Agg:
    """One generated Aggregation."""

    column: str
    operation: str
    k: int | None
    percentiles: tuple[float, ...] | None
    windows: tuple[str, ...] | None
    tile: str | None

    def source(self, i: int) -> str:
        op = f"Operation.{self.operation.upper()}"
        windows = "None" if self.windows is None else repr(list(self.windows))
        extra = "" if self.k is None else f", k={self.k}"
        if self.percentiles is not None:
            extra += f", percentiles={list(self.percentiles)!r}"
        if self.tile is not None:
            extra += f", tile={self.tile!r}"
        return f'Aggregation("{self.column}", {op}, windows={windows}{extra}, name="a{i}")'


@st.composite
def agg_st(draw: st.DrawFn) -> Agg:
    column = draw(st.sampled_from(sorted(COLUMNS)))
    fits = [op for op in OPERATIONS if op != "histogram" and unfit(op, COLUMNS[column]) is None]
    operation = draw(st.sampled_from(fits))
    k = draw(st.integers(1, 4)) if operation in K_OPERATIONS else None
    percentiles = (tuple(draw(st.lists(st.sampled_from((0.0, 0.5, 0.9, 1.0)), min_size=1,
                                       max_size=2)))
                   if operation == "approx_percentile" else None)
    windows = draw(st.none() | st.lists(st.sampled_from(WINDOWS), min_size=1, max_size=4,
                                        unique=True).map(tuple))
    seconds = [parse_duration(w) or 0 for w in windows or ()]
    tiles = [t for t in TILES if all(s % (parse_duration(t) or 1) == 0 for s in seconds)]
    tile = draw(st.none() | st.sampled_from(tiles)) if tiles else None
    return Agg(column, operation, k, percentiles, windows, tile)


def _file(aggs: list[Agg]) -> str:
    body = ",\n        ".join(a.source(i) for i, a in enumerate(aggs))
    return f"""
tx = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.tx",
        query=Query(selects={["user_id", *COLUMNS]!r}, time_column="ts"),
        columns={{"user_id": "int64", **{COLUMNS!r}}},
    )],
    aggregations=[
        {body},
    ],
    online=True,
)
"""


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(agg_st(), min_size=1, max_size=6))
def test_generated_aggregations_dedup_into_operations(aggs: list[Agg]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_repo(Path(tmp) / "repo", {"group_bys/risk/tx.py": _file(aggs)})
        report = compile_repo(repo, Path(tmp) / "out")
        assert report.ok, [e.render() for e in report.errors]
        group = load_catalog(Path(tmp) / "out").groups[NAME]
    spec = group.aggregation
    assert spec is not None
    # The oracle: every (aggregation, window) in order, its state's identity and window.
    expected: list[tuple[str, tuple[Any, ...], int | None]] = []
    for i, a in enumerate(aggs):
        for w in a.windows if a.windows is not None else (None,):
            window_s = parse_duration(w) if w is not None else None
            hop_s = parse_duration(a.tile) if a.tile is not None else default_tile(window_s)
            key = (a.column, a.operation, a.k, a.percentiles, hop_s * 1000, window_s is None)
            expected.append((f"a{i}" + (f"_{w}" if w else ""), key,
                             None if window_s is None else window_s * 1000))
    keys = list(dict.fromkeys(key for _, key, _ in expected))  # first-seen order
    assert len(spec.operations) == len(keys)
    for op, key in zip(spec.operations, keys, strict=True):
        assert (op.column, op.operation, op.k, op.percentiles, op.hop_ms,
                op.span_ms is None) == key
        windows = [w for _, k, w in expected if k == key]
        assert op.span_ms == (None if key[-1] else max(w for w in windows if w is not None))
    assert [(f.name, spec.operations[f.operation], f.window_ms) for f in spec.features] == [
        (name, spec.operations[keys.index(key)], w) for name, key, w in expected]
    for feature, served in zip(spec.features, group.features, strict=True):
        op = spec.operations[feature.operation]
        produced = output_type(op.operation, COLUMNS[op.column])
        assert produced is not None and served.type is served_type(produced)
    used = {op.column for op in spec.operations}
    assert [c.name for c in spec.columns] == [c for c in COLUMNS if c in used]
