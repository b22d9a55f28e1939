"""A join's request-time values (`context`) and derivations: type-checked in stage 1, unknown
names and cycles refused in stage 3, written into the service's catalog file."""

from __future__ import annotations

import json
from pathlib import Path

from fetcher.catalog import load_catalog
from fetcher.compiler import Stage, compile_repo
from fetcher.types import ContextValue, Derivation, FeatureType
from tests.unit.compiler.repo_support import (
    USERS,
    compile_files,
    line_of,
    one_error,
    write_repo,
)

GB_FILE = "group_bys/risk/users.py"
JOIN_FILE = "joins/risk/scoring.py"
SERVICE = "risk.scoring.scoring"


def join_text(derivations: object = None, context: object = None) -> str:
    return f"""
from group_bys.risk.users import user_profile

scoring = Join(
    left={{"user_id": "int64"}},
    right_parts=[JoinPart(user_profile, prefix="user_")],
    online=True,
    context={context!r},
    derivations={derivations!r},
)
"""


def files(derivations: object = None, context: object = None) -> dict[str, str]:
    return {GB_FILE: USERS, JOIN_FILE: join_text(derivations, context)}


GOOD = {
    "age_next_year": "user_age + 1",
    "amount_per_year": "if(user_age = 0, null, amount / user_age)",
    "is_big": "coalesce(amount_per_year, 0) > 100 and user_country != 'IN'",
    "web": "channel = 'web'",
}
CONTEXT = {"amount": "double", "channel": "string"}


def test_derivations_and_context_are_compiled_into_the_service(tmp_path: Path) -> None:
    report = compile_files(tmp_path, files(GOOD, CONTEXT))
    assert report.ok, [p.render() for p in report.errors]
    service = json.loads((tmp_path / "out" / "services" / f"{SERVICE}.json").read_text())
    assert list(service) == ["name", "description", "online", "joins", "context",
                             "derivations"]
    assert service["context"] == [{"name": "amount", "type": "double"},
                                  {"name": "channel", "type": "string"}]
    assert service["derivations"] == [
        {"name": "age_next_year", "expression": "user_age + 1", "type": "int64"},
        {"name": "amount_per_year", "expression": GOOD["amount_per_year"], "type": "double"},
        {"name": "is_big", "expression": GOOD["is_big"], "type": "bool"},
        {"name": "web", "expression": "channel = 'web'", "type": "bool"},
    ]
    loaded = load_catalog(tmp_path / "out").services[SERVICE]
    assert loaded.context == (ContextValue("amount", FeatureType.DOUBLE),
                              ContextValue("channel", FeatureType.STRING))
    assert loaded.derivations[1] == Derivation("amount_per_year", GOOD["amount_per_year"],
                                               FeatureType.DOUBLE)
    lineage = json.loads((tmp_path / "out" / "metadata" / "lineage.json").read_text())
    assert lineage["joins"][SERVICE]["features"]["is_big"] == {
        "derivation": GOOD["is_big"], "inputs": ["amount_per_year", "user_country"],
        "type": "bool"}
    manifest = json.loads((tmp_path / "out" / "metadata" / "version_manifest.json").read_text())
    features = manifest["joins"][SERVICE]["features"]
    assert features["amount_per_year"] == {"type": "double", "nullable": True}
    assert features["user_age"] == {"type": "int64", "nullable": False}
    assert report.performance is not None
    assert report.performance["joins"][SERVICE]["features_per_vector"] == 2 + 4


def test_a_service_without_them_is_written_as_before(tmp_path: Path) -> None:
    assert compile_files(tmp_path, files()).ok
    service = json.loads((tmp_path / "out" / "services" / f"{SERVICE}.json").read_text())
    assert "derivations" not in service and "context" not in service


def test_type_and_syntax_errors_are_stage_one(tmp_path: Path) -> None:
    bad = {"a": "user_age + user_country", "b": "user_age *", "ok": "user_age * 2"}
    report = compile_files(tmp_path / "bad", files(bad))
    assert report.stopped_at is Stage.SCHEMA
    problems = {p.field: p for p in report.errors}
    assert set(problems) == {"derivations.a", "derivations.b"}
    a = problems["derivations.a"]
    assert a.problem == ('column 12 of "user_age + user_country": + needs numbers: '
                         "'user_country' is string")
    assert (a.file, a.line, a.definition) == (
        JOIN_FILE, line_of(tmp_path / "bad" / "repo", JOIN_FILE, "scoring ="), SERVICE)
    assert problems["derivations.b"].problem.startswith(
        'column 11 of "user_age *": expected a value, a name or \'(\'')
    assert problems["derivations.b"].fix == "correct the expression (docs/derivations.md)"


def test_unknown_names_are_stage_three_with_the_closest_name(tmp_path: Path) -> None:
    p = one_error(compile_files(tmp_path, files({"x": "usr_age * 2"})), Stage.DEPENDENCIES)
    assert (p.field, p.definition) == ("derivations.x", SERVICE)
    assert p.problem == 'column 1 of "usr_age * 2": unknown name \'usr_age\''
    assert p.fix.startswith("did you mean 'user_age'? a derivation reads the service's "
                            "features, its request-time values and its other derivations")
    # The feature is named after the part's prefix; a context value is a name too.
    assert compile_files(tmp_path / "ok", files({"x": "user_age * n"}, {"n": "int64"})).ok


def test_cycles_are_stage_three_and_spelled_out(tmp_path: Path) -> None:
    cyclic = {"a": "b + 1", "b": "c * 2", "c": "a - user_age", "d": "d"}
    report = compile_files(tmp_path, files(cyclic))
    assert report.stopped_at is Stage.DEPENDENCIES
    assert [(p.field, p.problem) for p in report.errors] == [
        ("derivations.a", "circular derivations: a -> b -> c -> a"),
        ("derivations.d", "circular derivations: d -> d"),
    ]
    assert report.errors[0].fix.startswith("break the cycle")


def test_names_clashes_and_declarations(tmp_path: Path) -> None:
    report = compile_files(tmp_path / "a", files({"user_age": "1", "2x": "1"}))
    assert [(p.field, p.problem) for p in report.errors] == [
        ("derivations.user_age", "has the name of a feature or request-time value of the "
                                 "service"),
        ("derivations.2x", "'2x' is not a feature name"),
    ]
    report = compile_files(tmp_path / "b", files(["x"], {"user_age": "int64", "n": "int32x",
                                                          "bad name": "double"}))
    assert [(p.field, p.problem) for p in report.errors] == [
        ("derivations", "['x'] is not a mapping of names to expressions"),
        ("context.n", "'int32x' is not a type"),
        ("context", "'bad name' is not a request-time value name"),
    ]
    report = compile_files(tmp_path / "c", files(None, {"user_age": "int64"}))
    assert [(p.field, p.problem) for p in report.errors] == [
        ("context.user_age", "has the name of a feature of the join")]


def test_adding_a_derivation_is_a_minor_version(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "v1", files({"x": "user_age + 1"}))
    out = tmp_path / "out"
    assert compile_repo(repo, out).ok
    repo2 = write_repo(tmp_path / "v2", files({"x": "user_age + 1", "y": "user_age * 2"}))
    report = compile_repo(repo2, out)
    assert report.ok
    assert report.schema_changes is not None
    (change,) = report.schema_changes
    assert (change["name"], change["bump"], change["to_version"]) == (SERVICE, "minor", "1.1.0")
    repo3 = write_repo(tmp_path / "v3", files({"x": "user_age + 0.5", "y": "user_age * 2"}))
    (change,) = compile_repo(repo3, out).schema_changes or ()
    assert change["bump"] == "major"  # x: int64 -> double
