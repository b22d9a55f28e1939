"""Aggregations: output names, types and tiles, and the compile of offline ones into the
metadata only (online ones: test_aggregation_groups.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetcher.aggregation import COLUMN_TYPES, OPERATIONS, operator_for, unfit
from fetcher.catalog import load_catalog
from fetcher.compiler._aggregations import default_tile, output_type
from fetcher.definitions import Operation
from tests.unit.compiler.repo_support import compile_files

FILE = "group_bys/risk/payments.py"
PAYMENTS = """
payments = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.payments",
        query=Query(selects=["user_id", "amount", "count", "merchant"], time_column="ts"),
        columns={"user_id": "int64", "amount": "double", "count": "int32",
                 "merchant": "string"},
    )],
    aggregations=[
        Aggregation("amount", Operation.SUM, windows=["30m", "1d", "7d", "30d"]),
        Aggregation("count", Operation.SUM, windows=None),
        Aggregation("merchant", Operation.LAST_K, k=3, windows=["1d"]),
        Aggregation("amount", Operation.APPROX_PERCENTILE, percentiles=[0.5], windows=["1d"]),
        Aggregation("amount", Operation.AVERAGE, windows=["12h"], tile="30m"),
    ],
    ttl="30d",
)
"""


@pytest.mark.parametrize(
    ("op", "column", "expected"),
    [
        (Operation.COUNT, "string", "int64"),
        (Operation.COUNT, "list<double>", "int64"),
        (Operation.SUM, "int64", "int64"),
        (Operation.SUM, "int32", "int64"),
        (Operation.SUM, "double", "double"),
        (Operation.SUM, "float", "double"),
        (Operation.AVERAGE, "int64", "double"),
        (Operation.VARIANCE, "int64", "double"),
        (Operation.STDDEV, "float", "double"),
        (Operation.MIN, "string", "string"),
        (Operation.MAX, "int32", "int32"),
        (Operation.FIRST, "bool", "bool"),
        (Operation.LAST, "bytes", "bytes"),
        (Operation.FIRST_K, "int64", "list<int64>"),
        (Operation.LAST_K, "string", "list<string>"),
        (Operation.TOP_K, "double", "list<double>"),
        (Operation.BOTTOM_K, "int32", "list<int32>"),
        (Operation.UNIQUE_COUNT, "string", "int64"),
        (Operation.APPROX_UNIQUE_COUNT, "int64", "int64"),
        (Operation.APPROX_PERCENTILE, "int64", "list<double>"),
        (Operation.HISTOGRAM, "string", None),
    ],
)
def test_output_types(op: Operation, column: str, expected: str | None) -> None:
    assert output_type(op, column) == expected


def test_the_operations_are_the_definitions_operations_in_tag_order() -> None:
    assert tuple(op.value for op in Operation) == OPERATIONS
    assert [operator_for(op, "int64", k=1, percentiles=(0.5,)).tag for op in OPERATIONS] == list(
        range(1, len(OPERATIONS) + 1))


def test_every_fitting_operation_has_an_operator() -> None:
    for op in OPERATIONS:
        for column in COLUMN_TYPES:
            if unfit(op, column) is None:
                assert operator_for(op, column, k=2, percentiles=(0.5,)) is not None


@pytest.mark.parametrize(
    ("window_s", "tile_s"),
    [(60, 300), (11 * 3600, 300), (12 * 3600, 3600), (11 * 86400, 3600), (12 * 86400, 86400),
     (None, 86400)],
)
def test_chronon_tiles(window_s: int | None, tile_s: int) -> None:
    assert default_tile(window_s) == tile_s


def test_offline_aggregations_compile_into_the_metadata_only(tmp_path: Path) -> None:
    report = compile_files(tmp_path, {FILE: PAYMENTS})
    assert report.ok, [p.render() for p in report.errors]
    out = tmp_path / "out"
    assert not (out / "groups" / "risk.payments.payments.json").exists()
    assert load_catalog(out).groups == {}
    lineage = json.loads((out / "metadata" / "lineage.json").read_text())
    group = lineage["group_bys"]["risk.payments.payments"]
    assert group["served"] is False
    features = group["features"]
    assert list(features) == sorted([
        "amount_sum_30m", "amount_sum_1d", "amount_sum_7d", "amount_sum_30d", "count_sum",
        "merchant_last_k_1d", "amount_approx_percentile_1d", "amount_average_12h",
    ])
    assert features["amount_sum_7d"] == {
        "column": "amount", "operation": "sum", "window": "7d", "tile": "1h", "type": "double",
        "sources": [{"table": "events.payments", "expression": "amount"}],
    }
    assert (features["amount_sum_30m"]["tile"], features["amount_sum_30d"]["tile"]) == ("5m", "1d")
    assert (features["count_sum"]["type"], features["count_sum"]["window"]) == ("int64", None)
    assert features["count_sum"]["tile"] == "1d"
    assert features["merchant_last_k_1d"]["type"] == "list<string>"
    assert features["amount_approx_percentile_1d"]["type"] == "list<double>"
    assert features["amount_average_12h"]["tile"] == "30m"
    manifest = json.loads((out / "metadata" / "version_manifest.json").read_text())
    assert manifest["group_bys"]["risk.payments.payments"]["served"] is False
    assert [o.served for o in report.objects] == [False]


def test_histogram_warns_and_strict_makes_it_an_error(tmp_path: Path) -> None:
    text = PAYMENTS.replace(
        'Aggregation("amount", Operation.AVERAGE, windows=["12h"], tile="30m"),',
        'Aggregation("merchant", Operation.HISTOGRAM, windows=["1d"]),')
    report = compile_files(tmp_path / "lax", {FILE: text})
    assert report.ok
    assert [w.field for w in report.warnings] == ["aggregations[4].operation"]
    assert "outputs a map" in report.warnings[0].problem
    strict = compile_files(tmp_path / "strict", {FILE: text}, strict=True)
    assert [e.field for e in strict.errors] == ["aggregations[4].operation"]
    assert not strict.warnings
