"""Chronon -> definitions: enums, types files, refusals by field, usage errors of the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetcher.cli import main
from fetcher.compiler import CompileReport, Stage, UsageError, compile_chronon
from fetcher.compiler._chronon import read_chronon
from fetcher.compiler._chronon_objects import OPERATIONS, REFUSED_OPERATIONS
from fetcher.compiler._chronon_types import load_types
from fetcher.definitions import Accuracy, EventSource, GroupBy, Operation
from tests.unit.compiler.chronon_support import (
    TYPES,
    agg,
    events,
    group_by,
    join,
    write_configs,
    write_types,
)

GB = "group_bys/sample_team/sample_group_by.v1"
NAME = "sample_team.sample_group_by.v1"


def _compile(tmp_path: Path, configs: dict[str, dict[str, Any]], *,
             types: dict[str, dict[str, Any]] | None = None, strict: bool = False
             ) -> CompileReport:
    write_configs(tmp_path / "production", configs)
    return compile_chronon(tmp_path / "production",
                           str(write_types(tmp_path / "types.json", types or TYPES)),
                           tmp_path / "out", strict=strict)


def _group_by(tmp_path: Path, raw: dict[str, Any]) -> GroupBy:
    write_configs(tmp_path / "production", {GB: raw})
    found = read_chronon(tmp_path / "production", load_types(str(
        write_types(tmp_path / "types.json", TYPES))))
    assert not [p for p in found.problems if not p.warning], found.problems
    (definition,) = found.definitions
    assert isinstance(definition.obj, GroupBy)
    assert (definition.file, definition.line) == (GB, 1)
    return definition.obj


@pytest.mark.parametrize("code", sorted(OPERATIONS))
def test_every_served_operation_maps_to_ours(code: int, tmp_path: Path) -> None:
    args = {"k": "3"} if OPERATIONS[code].name.endswith("_K") else {}
    if OPERATIONS[code] is Operation.APPROX_PERCENTILE:
        args = {"percentiles": "[0.5]"}
    obj = _group_by(tmp_path, group_by(aggregations=[agg("amount", code, [(1, 1)], **args)]))
    assert obj.aggregations is not None
    assert obj.aggregations[0].operation is OPERATIONS[code]


def test_the_enum_integers_are_chronons() -> None:
    assert {c: o.name for c, o in OPERATIONS.items()} == {
        0: "MIN", 1: "MAX", 2: "FIRST", 3: "LAST", 4: "UNIQUE_COUNT", 5: "APPROX_UNIQUE_COUNT",
        6: "COUNT", 7: "SUM", 8: "AVERAGE", 9: "VARIANCE", 12: "APPROX_PERCENTILE",
        13: "LAST_K", 14: "FIRST_K", 15: "TOP_K", 16: "BOTTOM_K", 17: "HISTOGRAM"}
    assert sorted(REFUSED_OPERATIONS) == [10, 11, 18, 19]


@pytest.mark.parametrize("code", [10, 11, 18, 19, 42])
def test_operations_we_do_not_serve_are_refused_naming_the_aggregation(
    code: int, tmp_path: Path
) -> None:
    raw = group_by(aggregations=[agg("amount", 7), agg("amount", code, [(7, 1)])])
    report = _compile(tmp_path, {GB: raw})
    (error,) = report.errors
    assert (error.stage, error.file, error.definition, error.field) == (
        Stage.DISCOVERY, GB, NAME, "aggregations[1].operation")
    assert "is not supported" in error.problem
    assert ("SKEW" in error.problem) == (code == 10)


def test_windows_time_units_and_k_map_and_name_as_chronon(tmp_path: Path) -> None:
    obj = _group_by(tmp_path, group_by(aggregations=[
        agg("amount", 7, [(7, 1), (12, 0), (30, 2)]), agg("amount", 15, [(1, 1)], k="10"),
        agg("amount", 6)]))
    assert obj.aggregations is not None
    summed, top, count = obj.aggregations
    assert list(summed.windows or ()) == ["7d", "12h", "30m"] and summed.name is None
    assert (top.k, top.name) == (10, "amount_top10")
    assert count.windows is None  # no windows: unbounded


def test_accuracy_is_read_or_inferred_from_topics(tmp_path: Path) -> None:
    assert _group_by(tmp_path, group_by(accuracy=0)).accuracy is Accuracy.TEMPORAL
    assert _group_by(tmp_path, group_by(accuracy=1)).accuracy is Accuracy.SNAPSHOT
    assert _group_by(tmp_path, group_by()).accuracy is Accuracy.SNAPSHOT
    topic = events(wheres=["amount > 0"])
    topic["events"]["topic"] = "payments"
    obj = _group_by(tmp_path, group_by(sources=[topic]))
    assert obj.accuracy is Accuracy.TEMPORAL
    source = obj.sources[0]
    assert isinstance(source, EventSource) and source.topic == "payments"
    assert tuple(source.query.wheres) == ("amount > 0",)  # carried: they filter the batch job


def test_flags_tags_and_keys(tmp_path: Path) -> None:
    raw = group_by(online=1)
    raw["metaData"].update(production=1, customJson=json.dumps({"groupby_tags": {"tier": 1}}))
    obj = _group_by(tmp_path, raw)
    assert (obj.online, obj.production, list(obj.keys)) == (True, True, ["user_id"])
    assert obj.tags == {"tier": "1", "team": "sample_team"}
    assert obj.name == NAME


def test_a_column_the_types_do_not_cover_names_object_table_column_and_fix(
    tmp_path: Path
) -> None:
    raw = group_by(sources=[events(selects={"user_id": "user_id", "spend": "amount_usd"})])
    report = _compile(tmp_path, {GB: raw})
    (error,) = report.errors
    assert error.render() == (
        f"{GB}:1: {NAME}: sources[0].events.query.selects.spend: the type of "
        "db.payments.amount_usd is unknown: Chronon configs carry no types and it has no "
        f"column amount_usd of table db.payments. Fix: add db.payments.amount_usd to "
        f"{tmp_path / 'types.json'}")
    report = _compile(tmp_path, {GB: group_by()}, types={"db.other": {}})
    assert {e.problem.split(":")[0] for e in report.errors} == {
        "the type of db.payments.user_id is unknown", "the type of db.payments.amount is unknown"}


def test_select_expressions_are_refused_naming_the_select(tmp_path: Path) -> None:
    raw = group_by(sources=[events(selects={"user_id": "user_id", "big": "amount * 100"})])
    (error,) = _compile(tmp_path, {GB: raw}).errors
    assert error.field == "sources[0].events.query.selects.big"
    assert "'amount * 100' is a Spark SQL expression" in error.problem


def test_join_constructs_we_do_not_map_are_refused_by_field(tmp_path: Path) -> None:
    raw = join("sample_team.j.v1", [{"groupBy": group_by()}], labelPart={"labels": []},
               bootstrapParts=[{"table": "t"}], skewKeys={"user_id": ["0"]},
               derivations=[{"name": "x", "expression": "a + b"}])
    report = _compile(tmp_path, {"joins/sample_team/j.v1": raw})
    assert sorted(e.field for e in report.errors) == [
        "bootstrapParts", "derivations", "labelPart", "skewKeys"]
    passthrough = join("sample_team.j.v1", [{"groupBy": group_by()}],
                       derivations=[{"name": "*", "expression": "*"}])
    assert _compile(tmp_path, {"joins/sample_team/j.v1": passthrough}).ok


def test_unknown_fields_warn_and_strict_makes_them_errors(tmp_path: Path) -> None:
    raw = group_by(newField=1)
    report = _compile(tmp_path, {GB: raw})
    assert report.ok and [w.field for w in report.warnings] == ["newField"]
    strict = _compile(tmp_path, {GB: raw}, strict=True)
    assert [e.field for e in strict.errors] == ["newField"]


def test_two_different_copies_of_a_group_by_are_a_problem(tmp_path: Path) -> None:
    changed = group_by(aggregations=[agg("amount", 7)])
    report = _compile(tmp_path, {GB: group_by(), "joins/sample_team/j.v1": join(
        "sample_team.j.v1", [{"groupBy": changed}])})
    (error,) = report.errors
    assert (error.file, error.definition, error.field) == (
        "joins/sample_team/j.v1", NAME, "joinParts[0].groupBy")
    assert f"differs from the group_by of the same name in {GB} (aggregations)" in error.problem


def test_types_from_toml_and_parquet(tmp_path: Path) -> None:
    table = pa.table({"user_id": pa.array([1], pa.int64()), "amount": pa.array([1.5])})
    pq.write_table(table, tmp_path / "db.payments.parquet")
    from_folder = load_types(str(tmp_path))
    payments = from_folder.table("db.payments/hr=00:00")  # sub-partition specs are dropped
    assert payments is not None and payments["amount"] is not None
    assert payments["amount"].type == "double"
    toml = tmp_path / "types.toml"
    toml.write_text('"db.payments" = "db.payments.parquet"\n\n["db.requests"]\n'
                    'user_id = "int64"\nnote = {type = "string", nullable = true}\n')
    types = load_types(str(toml))
    requests = types.table("db.requests")
    assert requests is not None and requests["note"] is not None
    assert (requests["note"].type, requests["note"].nullable) == ("string", True)
    assert types.table("db.payments") == payments


@pytest.mark.parametrize(("content", "message"), [
    ('{"db.t": {"c": "int8"}}', "db.t.c: unsupported column type 'int8'"),
    ("[1]", "is not a mapping of tables"),
    ("{nope", "cannot read it as JSON"),
])
def test_a_bad_types_file_is_a_usage_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        load_types(str(tmp_path / "t.json"))


def test_cli_compiles_chronon_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_configs(tmp_path / "production", {GB: group_by()})
    types = str(write_types(tmp_path / "types.json", TYPES))
    assert main(["compile", "--from-chronon", str(tmp_path / "production"), "--types", types,
                 "--out", str(tmp_path / "out"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["objects"][0]["name"] == NAME
    assert main(["validate", str(tmp_path / "out")]) == 0


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_configs(tmp_path / "production", {GB: group_by()})
    prod, types = str(tmp_path / "production"), str(write_types(tmp_path / "t.json", TYPES))
    cases = [
        (["--from-chronon", prod], "--from-chronon needs --types FILE"),
        (["--types", types], "--types is for --from-chronon"),
        ([prod, "--from-chronon", prod, "--types", types], "give either REPO"),
        (["--from-chronon", prod, "--types", str(tmp_path / "no.json")], "no such file"),
        (["--from-chronon", str(tmp_path / "none"), "--types", types], "no such folder"),
        (["--from-chronon", str(tmp_path), "--types", types], "has no group_bys/ or joins/"),
    ]
    for args, message in cases:
        assert main(["compile", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert main(["compile", "--from-chronon", prod, "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["usage_error"].startswith("--from-chronon needs")


def test_a_file_that_is_not_a_config_is_a_discovery_error(tmp_path: Path) -> None:
    (tmp_path / "production/joins/t").mkdir(parents=True)
    (tmp_path / "production/joins/t/notes.txt").write_text("not json")
    (tmp_path / "production/joins/t/.hidden").write_text("skipped")
    report = compile_chronon(tmp_path / "production", str(write_types(tmp_path / "t.json", TYPES)))
    (error,) = report.errors
    assert error.file == "joins/t/notes.txt" and "is not a Chronon config" in error.problem
