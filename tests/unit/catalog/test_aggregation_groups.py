"""Aggregation groups in the catalog: the documented example, and one bad file per rule,
each problem naming the file, the field path and a fix."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fetcher.catalog import CatalogError, load_catalog
from fetcher.types import (
    AggregateColumn,
    AggregateFeature,
    AggregateOperation,
    AggregationSpec,
    CachePolicy,
    Feature,
    FeatureType,
    KeyColumn,
    KeyType,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
F = "groups/user_transactions.json"
A = "aggregations"

BASE: dict[str, Any] = {
    "name": "user_transactions",
    "store": "main",
    "dataset": "user_transactions",
    "keys": [{"name": "user_id", "type": "int64"}],
    "ttl_seconds": 1209600,
    "online": True,
    "aggregations": {
        "columns": [
            {"name": "amount", "type": "double"},
            {"name": "merchant", "type": "string"},
            {"name": "quantity", "type": "int32"},
            {"name": "tags", "type": "list<string>"},
        ],
        "operations": [
            {"column": "amount", "operation": "sum", "hop_seconds": 300, "span_seconds": 3600},
            {"column": "merchant", "operation": "last_k", "hop_seconds": 3600,
             "span_seconds": 86400, "k": 3},
            {"column": "amount", "operation": "approx_percentile", "hop_seconds": 86400,
             "span_seconds": None, "percentiles": [0.5, 0.99]},
            {"column": "quantity", "operation": "max", "hop_seconds": 3600,
             "span_seconds": 604800},
            {"column": "tags", "operation": "count", "hop_seconds": 300, "span_seconds": 3600},
        ],
        "features": [
            {"name": "amount_sum_1h", "type": "double", "operation": 0, "window_seconds": 3600},
            {"name": "merchant_last_k_1d", "type": "string_list", "operation": 1,
             "window_seconds": 86400},
            {"name": "amount_p", "type": "double_list", "operation": 2, "window_seconds": None},
            {"name": "quantity_max_7d", "type": "int64", "operation": 3,
             "window_seconds": 604800},
            {"name": "tags_count_30m", "type": "int64", "operation": 4, "window_seconds": 1800},
        ],
    },
}


def _write(root: Path, data: Any, name: str = "user_transactions") -> Path:
    (root / "groups").mkdir(parents=True, exist_ok=True)
    (root / "groups" / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def test_the_documented_example_loads(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("### Aggregation group"):]
    example = re.search(r"```json\n(.*?)```", section, re.S)
    assert example is not None
    catalog = load_catalog(_write(tmp_path, json.loads(example.group(1))), {"main"})
    group = catalog.groups["user_transactions"]
    assert group.schema is None and group.max_age_s is None
    assert "user_transactions" not in catalog.codecs
    assert group.aggregation == AggregationSpec(
        columns=(AggregateColumn("amount", "double"),),
        operations=(
            AggregateOperation("amount", "sum", 300_000, 3_600_000),
            AggregateOperation("amount", "sum", 3_600_000, 604_800_000),
            AggregateOperation("amount", "approx_percentile", 86_400_000, None,
                               percentiles=(0.5, 0.99)),
        ),
        features=(
            AggregateFeature("amount_sum_1h", 0, 3_600_000),
            AggregateFeature("amount_sum_1d", 1, 86_400_000),
            AggregateFeature("amount_sum_7d", 1, 604_800_000),
            AggregateFeature("amount_approx_percentile", 2, None),
        ),
        max_events=10_000,
    )
    assert [(f.name, f.type) for f in group.features] == [
        ("amount_sum_1h", FeatureType.DOUBLE), ("amount_sum_1d", FeatureType.DOUBLE),
        ("amount_sum_7d", FeatureType.DOUBLE),
        ("amount_approx_percentile", FeatureType.DOUBLE_LIST),
    ]
    assert all(f.nullable for f in group.features)


def test_a_group_of_every_kind_of_operation_loads(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, BASE))
    group = catalog.groups["user_transactions"]
    assert group.keys == (KeyColumn("user_id", KeyType.INT64),)
    assert group.features == (
        Feature("amount_sum_1h", FeatureType.DOUBLE, True),
        Feature("merchant_last_k_1d", FeatureType.STRING_LIST, True),
        Feature("amount_p", FeatureType.DOUBLE_LIST, True),
        Feature("quantity_max_7d", FeatureType.INT64, True),  # int32 is served as INT64
        Feature("tags_count_30m", FeatureType.INT64, True),
    )
    spec = group.aggregation
    assert spec is not None
    assert spec.operations[1].k == 3 and spec.operations[1].percentiles is None
    assert spec.features[4] == AggregateFeature("tags_count_30m", 4, 1_800_000)
    assert group.cache == CachePolicy(l1=False, l2=False)  # the default of aggregation groups
    assert group.ttl_s == 1209600 and group.online


def _with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def test_cache_is_off_unless_the_file_turns_it_on(tmp_path: Path) -> None:
    data = _with(lambda d: d.update(cache={"l2": True, "l2_ttl_seconds": 5}))
    group = load_catalog(_write(tmp_path, data)).groups["user_transactions"]
    assert group.cache == CachePolicy(l1=False, l2=True, l2_ttl_s=5)
    data = _with(lambda d: d.update(cache={"l1": True, "l1_ttl_seconds": 1}))
    group = load_catalog(_write(tmp_path, data)).groups["user_transactions"]
    assert group.cache == CachePolicy(l1=True, l2=False, l1_ttl_s=1)


def test_max_events_is_read(tmp_path: Path) -> None:
    data = _with(lambda d: d[A].update(max_events=50))
    spec = load_catalog(_write(tmp_path, data)).groups["user_transactions"].aggregation
    assert spec is not None and spec.max_events == 50


def test_a_service_joins_an_aggregation_group(tmp_path: Path) -> None:
    root = _write(tmp_path, BASE)
    (root / "services").mkdir()
    (root / "services" / "risk.json").write_text(json.dumps(
        {"name": "risk", "joins": [{"group": "user_transactions", "prefix": "tx_"}]}))
    catalog = load_catalog(root)
    assert catalog.services["risk"].joins[0].group == "user_transactions"


def _op(i: int, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d[A]["operations"][i].update(values)


def _feature(i: int, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d[A]["features"][i].update(values)


def _column(i: int, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d[A]["columns"][i].update(values)


def _drop(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        target: Any = d
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


def _append_op(op: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda d: d[A]["operations"].append(op)


OPS = f"{A}.operations"
FEATS = f"{A}.features"
COLS = f"{A}.columns"
CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str, str]] = [
    # label, change, field, part of the problem, part of the fix
    ("schema too", lambda d: d.update(schema="x.avsc"), "schema", "has no Avro schema",
     "remove schema"),
    ("previous schemas", lambda d: d.update(previous_schemas=[]), "previous_schemas",
     "has no Avro schema", "remove schema and previous_schemas"),
    ("max age", lambda d: d.update(max_age_seconds=60), "max_age_seconds",
     "must be null or absent for an aggregation group", "remove max_age_seconds"),
    ("unknown top field", lambda d: d.update(schemas=1), "schemas", "unknown field", "known:"),
    ("aggregations not an object", lambda d: d.update(aggregations=[]), A, "wrong type",
     "columns, operations and features"),
    ("unknown aggregations field", lambda d: d[A].update(max_event=3), f"{A}.max_event",
     "unknown field", "did you mean 'max_events'"),
    ("missing operations", _drop(A, "operations"), OPS, "is missing", "add it"),
    ("max events zero", lambda d: d[A].update(max_events=0), f"{A}.max_events",
     "0 is not positive", "10000"),
    ("max events float", lambda d: d[A].update(max_events=1.5), f"{A}.max_events",
     "wrong type", "positive whole number"),
    ("no columns", lambda d: d[A].update(columns=[]), COLS, "is empty", "input columns"),
    ("column not an object", lambda d: d[A]["columns"].append("x"), f"{COLS}[4]",
     "not an object", "JSON object"),
    ("column twice", _column(1, name="amount"), f"{COLS}[1].name", "'amount' is listed twice",
     "remove the duplicate"),
    ("column is a key", _column(0, name="user_id"), f"{COLS}[0].name", "is a key column",
     "remove it"),
    ("column type", _column(0, type="decimal"), f"{COLS}[0].type", "'decimal' is not a column "
     "type", "list<string>"),
    ("column of list<bytes>", _column(3, type="list<bytes>"), f"{COLS}[3].type",
     "is not a column type", "int64, int32"),
    ("no operations", lambda d: d[A].update(operations=[]), OPS, "is empty", "states kept"),
    ("unknown operation", _op(0, operation="summ"), f"{OPS}[0].operation",
     "'summ' is not an operation", "did you mean 'sum'"),
    ("histogram", _op(1, operation="histogram", k=None), f"{OPS}[1].operation",
     "no feature type holds", "top_k"),
    ("operation unfit for the column", _op(0, column="merchant"), f"{OPS}[0].operation",
     "sum needs a numeric column (int64, int32, double, float); 'merchant' is string",
     "pick an operation that fits"),
    ("operation over a list column", _op(3, column="tags", operation="last"),
     f"{FEATS}[3].type", "last of 'tags' (list<string>) outputs string_list", "string_list"),
    ("min of a list column", _op(3, column="tags"), f"{OPS}[3].operation",
     "max needs a numeric or string column", "fits the column"),
    ("unknown column", _op(0, column="amout"), f"{OPS}[0].column",
     "'amout' is not one of aggregations.columns", "amount, merchant"),
    ("hop zero", _op(0, hop_seconds=0), f"{OPS}[0].hop_seconds", "0 is not positive",
     "tile size"),
    ("hop float", _op(0, hop_seconds=0.5), f"{OPS}[0].hop_seconds", "wrong type",
     "whole number of seconds"),
    ("span missing", _drop(A, "operations", 0, "span_seconds"), f"{OPS}[0].span_seconds",
     "is missing", "null for the unbounded window"),
    ("span negative", _op(0, span_seconds=-5), f"{OPS}[0].span_seconds", "-5 is not positive",
     "longest window"),
    ("k missing", _drop(A, "operations", 1, "k"), f"{OPS}[1].k", "last_k needs k > 0, got None",
     "number of values to keep"),
    ("k zero", _op(1, k=0), f"{OPS}[1].k", "last_k needs k > 0, got 0", "e.g. 5"),
    ("k on sum", _op(0, k=3), f"{OPS}[0].k", "k is only for first_k, last_k, top_k, bottom_k, "
     "not sum", "remove k"),
    ("percentiles missing", _drop(A, "operations", 2, "percentiles"), f"{OPS}[2].percentiles",
     "approx_percentile needs a non-empty list of numbers in [0, 1], got null", "[0.5, 0.9"),
    ("percentiles empty", _op(2, percentiles=[]), f"{OPS}[2].percentiles", "got []", "0.99"),
    ("percentile above 1", _op(2, percentiles=[0.5, 1.5]), f"{OPS}[2].percentiles",
     "got [0.5, 1.5]", "[0.5"),
    ("percentile a bool", _op(2, percentiles=[True]), f"{OPS}[2].percentiles", "got [True]",
     "[0.5"),
    ("percentiles on sum", _op(0, percentiles=[0.5]), f"{OPS}[0].percentiles",
     "only for approx_percentile, not sum", "remove percentiles"),
    ("duplicate operation", _append_op({"column": "amount", "operation": "sum",
                                        "hop_seconds": 300, "span_seconds": 7200}),
     f"{OPS}[5]", "is the same state as operations[0] (sum of 'amount' at hop 300 s)",
     "give operations[0] the longer span"),
    ("no features", lambda d: d[A].update(features=[]), FEATS, "is empty", "served features"),
    ("feature name", _feature(0, name="amount-sum"), f"{FEATS}[0].name",
     "'amount-sum' is not a feature name", "letters, digits and _"),
    ("feature named like a key", _feature(0, name="user_id"), f"{FEATS}[0].name",
     "has the name of a key column", "rename the feature"),
    ("feature twice", _feature(1, name="amount_sum_1h"), f"{FEATS}[1].name",
     "'amount_sum_1h' is listed twice", "its own name"),
    ("feature type unknown", _feature(0, type="float"), f"{FEATS}[0].type",
     "'float' is not a feature type", "double_list"),
    ("feature type not the output", _feature(0, type="int64"), f"{FEATS}[0].type",
     "is int64, but sum of 'amount' (double) outputs double", 'set type to "double"'),
    ("int32 max is served as int64", _feature(3, type="int32"), f"{FEATS}[3].type",
     "'int32' is not a feature type", "int64"),
    ("operation index out of range", _feature(0, operation=5), f"{FEATS}[0].operation",
     "5 is not an index into aggregations.operations (5 of them)", "use 0 to 4"),
    ("operation index negative", _feature(0, operation=-1), f"{FEATS}[0].operation",
     "-1 is not an index", "use 0 to 4"),
    ("operation index a string", _feature(0, operation="0"), f"{FEATS}[0].operation",
     "wrong type", "an index into aggregations.operations"),
    ("window zero", _feature(0, window_seconds=0), f"{FEATS}[0].window_seconds",
     "0 is not positive", "null for the unbounded window"),
    ("window past the span", _feature(0, window_seconds=7200), f"{FEATS}[0].window_seconds",
     "7200 s is longer than the span of operations[0] (3600 s)", "span_seconds to 7200"),
    ("unbounded window of a bounded operation", _feature(0, window_seconds=None),
     f"{FEATS}[0].window_seconds", "null is the unbounded window, but operations[0] keeps "
     "only 3600 s", "at most the span"),
    ("bounded window of the unbounded operation", _feature(2, window_seconds=86400),
     f"{FEATS}[2].window_seconds", "operations[2] is unbounded (span_seconds null), so the "
     "window must be null, not 86400", "set window_seconds to null"),
    ("window missing", _drop(A, "features", 0, "window_seconds"), f"{FEATS}[0].window_seconds",
     "is missing", "the window in seconds"),
    ("unknown feature field", _feature(0, description="x"), f"{FEATS}[0].description",
     "unknown field", "known: name, type, operation, window_seconds"),
]


@pytest.mark.parametrize(("label", "change", "field", "problem", "fix"), CASES,
                         ids=[c[0] for c in CASES])
def test_a_bad_aggregation_group_names_file_field_and_fix(
    tmp_path: Path, label: str, change: Callable[[dict[str, Any]], None], field: str,
    problem: str, fix: str,
) -> None:
    with pytest.raises(CatalogError) as err:
        load_catalog(_write(tmp_path, _with(change)))
    mine = [p for p in err.value.problems if p.startswith(f"{F}: {field}: ")]
    assert mine, f"{label}: no problem of {field} in\n{err.value}"
    assert any(problem in p and fix in p.split(". Fix: ", 1)[1] for p in mine), (
        f"{label}: {problem!r} / {fix!r} not in\n{err.value}")
    assert all(". Fix: " in p for p in err.value.problems)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d.update(max_age_seconds=5, schema="x.avsc")
        d[A]["operations"][0].update(hop_seconds=0)
        d[A]["operations"][1].update(k=0)
        d[A]["features"][4].update(type="double")

    with pytest.raises(CatalogError) as err:
        load_catalog(_write(tmp_path, _with(change)))
    fields = [p.split(": ")[1] for p in err.value.problems]
    assert fields == ["schema", "max_age_seconds", f"{OPS}[0].hop_seconds", f"{OPS}[1].k",
                      f"{FEATS}[4].type"]


def test_the_operators_are_built_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule the catalog accepts but fetcher.aggregation cannot build is refused at load."""
    import fetcher.catalog._aggregations as agg

    def refuse(operation: str, column_type: str, **_: Any) -> Any:
        raise ValueError(f"{operation} is not built here")

    monkeypatch.setattr(agg, "operator_for", refuse)
    with pytest.raises(CatalogError) as err:
        load_catalog(_write(tmp_path, BASE))
    assert f"{F}: {OPS}[0]: fetcher.aggregation has no operator for it: sum is not built " \
           "here. Fix: report it" in str(err.value)


def test_a_group_without_schema_or_aggregations_says_which(tmp_path: Path) -> None:
    data = _with(lambda d: d.pop(A))
    with pytest.raises(CatalogError) as err:
        load_catalog(_write(tmp_path, data))
    assert f"{F}: schema: is missing" in str(err.value)
