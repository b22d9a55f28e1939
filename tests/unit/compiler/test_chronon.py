"""Chronon's compiled configs as input: every real sample compiles or is refused by name,
and the served names are Chronon's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fetcher.catalog import load_catalog
from fetcher.compiler import Stage, compile_chronon
from tests.unit.compiler.chronon_support import (
    SAMPLES,
    TYPES,
    agg,
    events,
    group_by,
    join,
    write_configs,
    write_types,
)

COMPILES = "compiles"
# Stage 2: Chronon's keyMapping is left column -> group-by key, and these lefts select no
# `subject` (their own `group_by_subject` feeds the key as it is).
_NO_SUBJECT = "the left has no column 'subject'"
_KM = "right_parts[0].key_mapping.subject"
_TIME_EXPR = "'UNIX_TIMESTAMP(ts) * 1000' is a Spark SQL expression"
_TC = "sources[0].events.query.timeColumn"
# Every sample file -> COMPILES, or (object, field, part of the problem) of one of its errors.
EXPECTED: dict[str, str | tuple[str, str, str]] = {
    "group_bys/sample_team/entity_sample_group_by_from_module.v1": COMPILES,
    "group_bys/sample_team/group_by_with_kwargs.v1":
        ("sample_team.group_by_with_kwargs.v1", _TC, _TIME_EXPR),
    "group_bys/sample_team/sample_chaining_group_by":
        ("sample_team.sample_chaining_join.parent_join", _KM, _NO_SUBJECT),
    "group_bys/sample_team/sample_deprecation_group_by.v1":
        ("sample_team.sample_deprecation_group_by.v1", _TC, _TIME_EXPR),
    "group_bys/sample_team/sample_group_by_for_dependency_test.v1": COMPILES,
    "group_bys/sample_team/sample_group_by_group_by.v1": COMPILES,
    "group_bys/unit_test/sample_chaining_group_by.chaining_group_by_v1":
        ("unit_test.sample_parent_join.parent_join", _KM, _NO_SUBJECT),
    "group_bys/unit_test/sample_group_by.v1": COMPILES,
    "group_bys/unit_test/user.sample_nested_group_by.v1":
        ("unit_test.user.sample_nested_group_by.v1", "sources[0].events.query.selects.play",
         "\"if(transaction_type='A', 1, 0)\" is a Spark SQL expression"),
    "group_bys/unit_test/user_inline_group_by": COMPILES,
    "joins/sample_team/sample_backfill_mutation_join.v0": COMPILES,
    "joins/sample_team/sample_chaining_join.parent_join":
        ("sample_team.sample_chaining_join.parent_join", _KM, _NO_SUBJECT),
    "joins/sample_team/sample_chaining_join.v1":
        ("sample_team.sample_chaining_join.v1", _KM, _NO_SUBJECT),
    "joins/sample_team/sample_deprecation_join.v1":
        ("sample_team.sample_deprecation_group_by.v1", f"joinParts[0].groupBy.{_TC}", _TIME_EXPR),
    "joins/sample_team/sample_join.consistency_check": COMPILES,
    "joins/sample_team/sample_join.group_by_of_group_by": COMPILES,
    "joins/sample_team/sample_join.never": COMPILES,
    # samplePercent 0: served, none of its vectors logged (the feature log's sample_percent).
    "joins/sample_team/sample_join.no_log_flattener": COMPILES,
    "joins/sample_team/sample_join.v1": COMPILES,
    "joins/sample_team/sample_join_bootstrap.v1":
        ("sample_team.sample_join_bootstrap.v1", "bootstrapParts", "bootstrap parts are not"),
    "joins/sample_team/sample_join_bootstrap.v2":
        ("sample_team.sample_join_bootstrap.v2", "bootstrapParts", "bootstrap parts are not"),
    "joins/sample_team/sample_join_derivation.v1":
        ("sample_team.sample_join_derivation.v1", "derivations", "Spark SQL derivations are not"),
    "joins/sample_team/sample_join_external_parts.v1":
        ("sample_team.sample_join_external_parts.v1", "onlineExternalParts",
         "external parts are not supported (they call services outside the feature store)"),
    "joins/sample_team/sample_join_external_parts.v2":
        ("sample_team.sample_join_external_parts.v2", "onlineExternalParts",
         "external parts are not supported"),
    "joins/sample_team/sample_join_for_dependency_test.v1":
        ("sample_team.sample_join_for_dependency_test.v1", _KM, _NO_SUBJECT),
    "joins/sample_team/sample_join_from_group_by_from_join.v1": COMPILES,
    "joins/sample_team/sample_join_from_module.v1":
        ("sample_team.sample_group_by_from_module.v1", f"joinParts[0].groupBy.{_TC}", _TIME_EXPR),
    "joins/sample_team/sample_join_from_shorthand.v1":
        ("sample_team.sample_join_from_shorthand.v1", "joinParts", "is empty"),
    "joins/sample_team/sample_join_with_derivations_on_external_parts.v1":
        ("sample_team.sample_join_with_derivations_on_external_parts.v1", "derivations",
         "Spark SQL derivations are not"),
    "joins/sample_team/sample_join_with_only_external_join_parts.v1":
        ("sample_team.sample_join_with_only_external_join_parts.v1", "onlineExternalParts",
         "external parts are not supported"),
    "joins/sample_team/sample_join_without_join_parts.v1":
        ("sample_team.sample_join_without_join_parts.v1", "joinParts", "is empty"),
    "joins/sample_team/sample_label_join.v1":
        ("sample_team.sample_label_join.v1", "labelPart", "label parts are not supported"),
    "joins/sample_team/sample_label_join_with_agg.v1":
        ("sample_team.sample_label_join_with_agg.v1", "labelPart", "label parts are not"),
    "joins/unit_test/sample_parent_join.parent_join":
        ("unit_test.sample_parent_join.parent_join", _KM, _NO_SUBJECT),
    "joins/unit_test/user.sample_join_inline_group_by.v1":
        ("unit_test.user.sample_join_inline_group_by.v1", _KM, _NO_SUBJECT),
}


def _sample_files() -> set[str]:
    return {p.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("*")
            if p.is_file() and p.parts[len(SAMPLES.parts)] in ("group_bys", "joins")}


def test_every_sample_file_has_an_expectation() -> None:
    assert SAMPLES.is_dir(), f"{SAMPLES} is missing: copy shared/ beside the repository"
    assert _sample_files() == set(EXPECTED)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_sample_compiles_or_is_refused_by_name(rel: str, tmp_path: Path) -> None:
    source = SAMPLES / rel
    assert source.is_file(), f"{source} is missing: copy shared/ beside the repository"
    target = tmp_path / "production" / rel
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    report = compile_chronon(tmp_path / "production", str(write_types(tmp_path / "types.json")),
                             tmp_path / "out")
    expected = EXPECTED[rel]
    if expected == COMPILES:
        assert report.ok, [p.render() for p in report.errors]
        assert load_catalog(tmp_path / "out") is not None
        return
    assert not report.ok and isinstance(expected, tuple)
    found = [(p.definition, p.field, p.problem) for p in report.errors]
    obj, field, text = expected
    assert any(o == obj and f == field and text in p for o, f, p in found), found
    assert all(p.file == rel and p.definition for p in report.errors)


def test_the_samples_folder_at_once_reports_each_files_own_refusal(tmp_path: Path) -> None:
    report = compile_chronon(SAMPLES, str(write_types(tmp_path / "types.json")))
    assert report.stopped_at is Stage.DISCOVERY  # the mapping's refusals come first
    rendered = [p.render() for p in report.errors]
    for rel, expected in EXPECTED.items():
        if isinstance(expected, tuple) and expected[2] != _NO_SUBJECT:
            assert any(f"{expected[0]}: {expected[1]}: {expected[2]}" in r for r in rendered), rel


def test_a_real_samples_join_features_have_chronons_names(tmp_path: Path) -> None:
    rel = "joins/sample_team/sample_join.v1"
    write_configs(tmp_path / "production", {rel: json.loads((SAMPLES / rel).read_text())})
    report = compile_chronon(tmp_path / "production", str(write_types(tmp_path / "t.json")),
                             tmp_path / "out")
    assert report.ok, [p.render() for p in report.errors]
    lineage = json.loads((tmp_path / "out/metadata/lineage.json").read_text())
    assert sorted(lineage["joins"]["sample_team.sample_join.v1"]["features"]) == [
        "sample_team_sample_group_by_v1_impressed_unique_count_1d_sum",
        "sample_team_sample_group_by_v1_viewed_unique_count_1d_sum",
    ]
    manifest = json.loads((tmp_path / "out/metadata/version_manifest.json").read_text())
    assert manifest["joins"]["sample_team.sample_join.v1"]["tags"] == {
        "business_relevance": "personalization", "team": "sample_team"}


def test_join_feature_names_are_prefix_group_by_column_operation_window(tmp_path: Path) -> None:
    aggs = [agg("amount", 7, [(7, 1), (1, 0), (30, 2)]), agg("amount", 13, [(1, 0)], k="5"),
            agg("merchant", 6), agg("amount", 12, [(1, 1)], percentiles="[0.5, 0.9]")]
    selects = {"user_id": "user_id", "amount": "amount", "merchant": "merchant"}
    gb = group_by(aggregations=aggs, sources=[events("db.payments", selects)])
    configs = {"joins/sample_team/scoring.v1": join("sample_team.scoring.v1", [
        {"groupBy": gb, "prefix": "user"},
        {"groupBy": gb, "keyMapping": {"account": "user_id"}, "prefix": "acct"}],
        left=events("db.requests", {"user_id": "user_id", "account": "account", "ts": "ts"}))}
    write_configs(tmp_path / "production", configs)
    report = compile_chronon(tmp_path / "production", str(write_types(tmp_path / "t.json", TYPES)),
                             tmp_path / "out")
    assert report.ok, [p.render() for p in report.errors]
    lineage = json.loads((tmp_path / "out/metadata/lineage.json").read_text())
    features = lineage["joins"]["sample_team.scoring.v1"]["features"]
    g = "sample_team_sample_group_by_v1"
    assert sorted(features) == sorted(f"{p}_{g}_{f}" for p in ("user", "acct") for f in (
        "amount_sum_7d", "amount_sum_1h", "amount_sum_30m", "amount_last5_1h", "merchant_count",
        "amount_approx_percentile_1d"))
    assert features[f"user_{g}_amount_last5_1h"]["operation"] == "last_k"
    assert features[f"acct_{g}_amount_sum_7d"]["window"] == "7d"
    # the embedded group-by is a definition of its own, compiled once, from the join's file
    assert [(o.kind, o.name, o.file) for o in report.objects] == [
        ("group_by", "sample_team.sample_group_by.v1", "joins/sample_team/scoring.v1"),
        ("join", "sample_team.scoring.v1", "joins/sample_team/scoring.v1")]


def test_group_bys_without_aggregations_are_served_under_chronons_names(tmp_path: Path) -> None:
    profile = group_by("risk.user_profile.v1", online=1,
                       sources=[events("db.payments", {"user_id": "user_id", "spend": "amount"})])
    configs = {"group_bys/risk/user_profile.v1": profile,
               "joins/risk/scoring.v1": join("risk.scoring.v1", [
                   {"groupBy": profile, "prefix": "user"}], online=1)}
    write_configs(tmp_path / "production", configs)
    report = compile_chronon(tmp_path / "production", str(write_types(tmp_path / "t.json", TYPES)),
                             tmp_path / "out")
    assert report.ok, [p.render() for p in report.errors]
    assert [o.served for o in report.objects] == [True, True]
    service = json.loads((tmp_path / "out/services/risk.scoring.v1.json").read_text())
    assert service["joins"] == [
        {"group": "risk.user_profile.v1", "prefix": "user_risk_user_profile_v1_"}]
    catalog = load_catalog(tmp_path / "out")
    assert "risk.user_profile.v1" in catalog.groups
    schema = json.loads((tmp_path / "out/groups/risk.user_profile.v1.avsc").read_text())
    assert [f["name"] for f in schema["fields"]] == ["spend"]  # renamed select: amount as spend


def test_an_online_samples_aggregations_are_served_as_an_aggregation_group(
    tmp_path: Path,
) -> None:
    rel = "group_bys/unit_test/sample_group_by.v1"
    write_configs(tmp_path / "production", {rel: json.loads((SAMPLES / rel).read_text())})
    report = compile_chronon(tmp_path / "production", str(write_types(tmp_path / "t.json")),
                             tmp_path / "out")
    assert report.ok, [p.render() for p in report.errors]
    group = load_catalog(tmp_path / "out").groups["unit_test.sample_group_by.v1"]
    assert group.online and group.schema is None and group.aggregation is not None
    assert [(f.name, f.operation, f.window_ms) for f in group.aggregation.features] == [
        ("event_sum", 0, None)]
    [op] = group.aggregation.operations
    assert (op.column, op.operation, op.hop_ms, op.span_ms) == ("event", "sum", 86_400_000, None)
