"""Stage 1 (schema): each check has a failing definition whose message is asserted and a
passing neighbour that differs only in the field at fault."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fetcher.catalog import load_catalog
from fetcher.compiler import Stage
from tests.unit.compiler.repo_support import JOIN, compile_files, line_of, one_error

FILE = "group_bys/risk/users.py"
OBJECT = "risk.users.user_profile"
TEMPLATE = """
user_profile = GroupBy(
    keys={keys},
    sources=[{source}],
    aggregations={aggs},
    online={online},
    {extra}
)
"""
SOURCE = """EventSource(
        table="events.users",
        query=Query(selects={selects}, time_column="ts"),
        columns={columns},
    )"""
COLUMNS = {"user_id": "int64", "age": "int64", "country": "string", "amount": "double"}
SELECTS = ["user_id", "age", "country", "amount"]


def group_text(**kw: object) -> str:
    """The template with `kw` overriding its parts."""
    source = SOURCE.format(selects=kw.pop("selects", SELECTS), columns=kw.pop("columns", COLUMNS))
    values = {"keys": ["user_id"], "source": source, "aggs": None, "online": True, "extra": ""}
    values.update(kw)
    return TEMPLATE.format(**values)


@dataclass(frozen=True)
class Case:
    """A failing group-by (`bad`) and its passing neighbour (`good`)."""

    id: str
    bad: dict[str, object]
    good: dict[str, object]
    field: str
    problem: str
    fix: str
    extra_files: dict[str, str] = field(default_factory=dict)


def agg(text: str) -> str:
    return f"[{text}]"


CASES = [
    Case("unsupported column type", {"columns": {**COLUMNS, "age": "int8"}},
         {"columns": {**COLUMNS, "age": "int32"}},
         "sources[0].columns.age", "unsupported column type 'int8'", "use one of int64"),
    Case("list of bytes", {"columns": {**COLUMNS, "age": "list<bytes>"}},
         {"columns": {**COLUMNS, "age": "list<bool>"}},
         "sources[0].columns.age", "unsupported column type", "list<T> of"),
    Case("key not selected", {"selects": ["age", "country"]}, {"selects": ["user_id", "age"]},
         "sources[0].query.selects", "does not select the key 'user_id'",
         "select 'user_id' in every source"),
    Case("key of a non-key type", {"columns": {**COLUMNS, "user_id": "double"}},
         {"columns": {**COLUMNS, "user_id": "string"}},
         "sources[0].query.selects.user_id", "key 'user_id' is double, not a key type",
         "int64, string or bytes"),
    Case("key typed differently by two sources",
         {"source": SOURCE.format(selects=SELECTS, columns=COLUMNS) + ", " + SOURCE.format(
             selects=SELECTS, columns={**COLUMNS, "user_id": "string"})},
         {"source": SOURCE.format(selects=SELECTS, columns=COLUMNS) + ", " + SOURCE.format(
             selects=SELECTS, columns=COLUMNS)},
         "sources[1].query.selects.user_id", "is string here and int64 in sources[0]",
         "same type in every source"),
    Case("sources select different columns",
         {"source": SOURCE.format(selects=SELECTS, columns=COLUMNS) + ", " + SOURCE.format(
             selects=["user_id", "age"], columns=COLUMNS)},
         {"source": SOURCE.format(selects=["user_id", "age"], columns=COLUMNS) + ", " +
          SOURCE.format(selects=["user_id", "age"], columns=COLUMNS)},
         "sources[1].query.selects", "but sources[0] selects",
         "select the same output columns in every source"),
    Case("untyped expression", {"selects": {"user_id": "user_id", "double_age": "age * 2"}},
         {"selects": {"user_id": "user_id", "double_age": "age * 2"},
          "columns": {**COLUMNS, "double_age": "int64"}},
         "sources[0].query.selects.double_age", "cannot tell the type of 'double_age'",
         "declare it in sources[0].columns"),
    Case("invalid feature name", {"selects": {"user_id": "user_id", "2age": "age"}},
         {"selects": {"user_id": "user_id", "age2": "age"}},
         "features.2age", "'2age' is not a valid feature name", "rename the select"),
    Case("only keys", {"selects": ["user_id"]}, {"selects": ["user_id", "age"]},
         "sources[0].query.selects", "selects only keys", "at least one column besides"),
    Case("invalid name", {"extra": 'name="bad name!",'}, {"extra": 'name="risk.good-name_1",'},
         "name", "has characters other than letters, digits", "pass name= with letters"),
    Case("bad max_age", {"extra": 'max_age="1w",'}, {"extra": 'max_age="7d",'},
         "max_age", "'1w' is not a duration", "minutes, hours or days"),
    Case("negative cache ttl", {"extra": "cache=Cache(l1_ttl=-1),"},
         {"extra": "cache=Cache(l1_ttl=0),"}, "cache.l1_ttl", "is not a number of seconds >= 0",
         "write seconds"),
    Case("sum of a string", {"aggs": agg('Aggregation("country", Operation.SUM)'), "online": False},
         {"aggs": agg('Aggregation("country", Operation.COUNT)'), "online": False},
         "aggregations[0].operation",
         "sum needs a numeric column (int64, int32, double, float); 'country' is string",
         "count fits any"),
    Case("average of a string",
         {"aggs": agg('Aggregation("country", Operation.AVERAGE)'), "online": False},
         {"aggs": agg('Aggregation("amount", Operation.AVERAGE)'), "online": False},
         "aggregations[0].operation", "average needs a numeric column", "pick an operation"),
    Case("stddev of a string",
         {"aggs": agg('Aggregation("country", Operation.STDDEV)'), "online": False},
         {"aggs": agg('Aggregation("age", Operation.STDDEV)'), "online": False},
         "aggregations[0].operation", "stddev needs a numeric column", "pick an operation"),
    Case("aggregating a key", {"aggs": agg('Aggregation("user_id", Operation.COUNT)'),
                               "online": False},
         {"aggs": agg('Aggregation("age", Operation.COUNT)'), "online": False},
         "aggregations[0].column", "'user_id' is a key", "aggregate one of age"),
    Case("last_k without k", {"aggs": agg('Aggregation("amount", Operation.LAST_K)'),
                              "online": False},
         {"aggs": agg('Aggregation("amount", Operation.LAST_K, k=3)'), "online": False},
         "aggregations[0].k", "last_k needs k > 0", "e.g. k=5"),
    Case("top_k with k=0", {"aggs": agg('Aggregation("amount", Operation.TOP_K, k=0)'),
                            "online": False},
         {"aggs": agg('Aggregation("amount", Operation.TOP_K, k=1)'), "online": False},
         "aggregations[0].k", "top_k needs k > 0, got 0", "set k"),
    Case("k on sum", {"aggs": agg('Aggregation("amount", Operation.SUM, k=3)'), "online": False},
         {"aggs": agg('Aggregation("amount", Operation.SUM)'), "online": False},
         "aggregations[0].k", "k is only for first_k", "remove k"),
    Case("percentile out of range",
         {"aggs": agg('Aggregation("amount", Operation.APPROX_PERCENTILE, percentiles=[1.5])'),
          "online": False},
         {"aggs": agg('Aggregation("amount", Operation.APPROX_PERCENTILE, percentiles=[0, 1])'),
          "online": False},
         "aggregations[0].percentiles", "percentiles in [0, 1], got [1.5]", "percentiles=(0.5"),
    Case("bad window", {"aggs": agg('Aggregation("amount", Operation.SUM, windows=["2w"])'),
                        "online": False},
         {"aggs": agg('Aggregation("amount", Operation.SUM, windows=["14d", "30m"])'),
          "online": False},
         "aggregations[0].windows", "'2w' is not a window", '"30m", "1h", "7d"'),
    Case("tile that does not divide the window",
         {"aggs": agg('Aggregation("amount", Operation.SUM, windows=["90m"], tile="1h")'),
          "online": False},
         {"aggs": agg('Aggregation("amount", Operation.SUM, windows=["90m"], tile="30m")'),
          "online": False},
         "aggregations[0].tile", "window 90m is not a whole number of 1h tiles",
         "pick a tile that divides"),
    Case("the same output twice",
         {"aggs": agg('Aggregation("amount", Operation.SUM, windows=["1d"]), '
                      'Aggregation("amount", Operation.SUM, windows=["1d"])'), "online": False},
         {"aggs": agg('Aggregation("amount", Operation.SUM, windows=["1d"]), '
                      'Aggregation("amount", Operation.SUM, windows=["7d"])'), "online": False},
         "features.amount_sum_1d", "'amount_sum_1d' is produced twice", "remove the duplicate"),
    Case("an online histogram",
         {"aggs": agg('Aggregation("country", Operation.HISTOGRAM, windows=["1d"])')},
         {"aggs": agg('Aggregation("country", Operation.HISTOGRAM, windows=["1d"])'),
          "online": False},
         "aggregations[0].operation", "histogram outputs a map, which no feature type holds: "
         "an online group-by cannot serve it", "use top_k or approx_percentile"),
    Case("an online aggregation group with a max age",
         {"aggs": agg('Aggregation("amount", Operation.SUM)'), "extra": 'max_age="1d",'},
         {"aggs": agg('Aggregation("amount", Operation.SUM)')},
         "max_age", "an aggregation group's windows are as fresh as its log, so it has no max "
         "age", "remove max_age"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_schema_check(tmp_path: Path, case: Case) -> None:
    bad = compile_files(tmp_path / "bad", {FILE: group_text(**case.bad)})
    problem = one_error(bad, Stage.SCHEMA)
    assert problem.file == FILE
    assert problem.line == line_of(tmp_path / "bad" / "repo", FILE, "user_profile =")
    expected_object = "risk.good-name_1" if "name=" in str(case.good.get("extra")) else OBJECT
    assert problem.definition in (OBJECT, "bad name!")
    assert problem.field == case.field
    assert case.problem in problem.problem
    assert case.fix in problem.fix
    rendered = problem.render()
    assert rendered.startswith(f"{FILE}:{problem.line}: {problem.definition}: {case.field}: ")
    good = compile_files(tmp_path / "good", {FILE: group_text(**case.good)})
    assert good.ok, [p.render() for p in good.errors]
    assert any(o.name == expected_object for o in good.objects)


def test_every_error_of_the_stage_is_reported_together(tmp_path: Path) -> None:
    text = group_text(columns={**COLUMNS, "age": "int8"}, extra='max_age="1w",')
    report = compile_files(tmp_path, {FILE: text})
    assert {p.field for p in report.errors} == {"sources[0].columns.age", "max_age"}
    assert report.stopped_at is Stage.SCHEMA


def test_duplicate_names(tmp_path: Path) -> None:
    text = group_text(extra='name="users",') + group_text(extra='name="users",').replace(
        "user_profile =", "other ="
    )
    report = compile_files(tmp_path, {FILE: text})
    problem = one_error(report, Stage.SCHEMA)
    assert problem.line == line_of(tmp_path / "repo", FILE, "other =")
    assert problem.field == "name"
    assert f"group_by 'users' is also defined at {FILE}:" in problem.problem
    assert "unique name" in problem.fix


JOIN_FILE = "joins/risk/scoring.py"


def test_join_outputs_unique_after_prefixes(tmp_path: Path) -> None:
    clash = JOIN.replace('right_parts=[JoinPart(user_profile, prefix="user_")]',
                         'right_parts=[JoinPart(user_profile, prefix="u_"), '
                         'JoinPart(user_profile, prefix="u_")]')
    report = compile_files(tmp_path / "bad", {FILE: group_text(), JOIN_FILE: clash})
    problem = one_error(report, Stage.SCHEMA)
    assert (problem.file, problem.definition) == (JOIN_FILE, "risk.scoring.scoring")
    assert problem.line == line_of(tmp_path / "bad" / "repo", JOIN_FILE, "scoring =")
    assert problem.field == "right_parts[1].prefix"
    assert problem.problem == (
        "feature(s) 'u_age', 'u_country', 'u_amount' of 'risk.users.user_profile' clash with "
        "those of 'risk.users.user_profile' (right_parts[0])"
    )
    assert problem.fix == "give the parts different prefixes"
    ok = clash.replace('prefix="u_")]', 'prefix="v_")]')
    assert compile_files(tmp_path / "good", {FILE: group_text(), JOIN_FILE: ok}).ok


def test_join_left_key_type_and_sample_percent(tmp_path: Path) -> None:
    bad = JOIN.replace('{"user_id": "int64"}', '{"user_id": "double"}').replace(
        "online=True,", "online=True, sample_percent=-1,")
    report = compile_files(tmp_path, {FILE: group_text(), JOIN_FILE: bad})
    fields = {p.field: p for p in report.errors}
    assert set(fields) == {"left.user_id", "sample_percent"}
    assert "'double' is not a key type" in fields["left.user_id"].problem
    assert "is not in [0, 100]" in fields["sample_percent"].problem


@pytest.mark.parametrize(("written", "expected"), [(None, None), ("100", None), ("25", 25.0),
                                                  ("0", 0.0), ("12.5", 12.5)])
def test_sample_percent_is_written_into_the_service_unless_100(
    tmp_path: Path, written: str | None, expected: float | None
) -> None:
    text = JOIN if written is None else JOIN.replace(
        "online=True,", f"online=True, sample_percent={written},")
    report = compile_files(tmp_path, {FILE: group_text(), JOIN_FILE: text})
    assert report.ok, [p.render() for p in report.errors]
    service = json.loads((tmp_path / "out/services/risk.scoring.scoring.json").read_text())
    assert service.get("sample_percent") == expected
    loaded = load_catalog(tmp_path / "out").services["risk.scoring.scoring"]
    assert loaded.sample_percent == (100.0 if expected is None else expected)
