"""Stage 5, performance: stores, lookups and features per join, tiles per window; warnings
above the limits (--max-*), errors under --strict, the numbers in the --json report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetcher.cli import COMPILE_LIMITS, main
from fetcher.compiler import Limits, Stage, compile_repo
from tests.unit.compiler.repo_support import write_repo
from tests.unit.compiler.test_aggregations import PAYMENTS

GROUPS = """
a = GroupBy(keys=["user_id"], store="main",
            sources=[EventSource(table="t.a", query=Query(selects=["user_id", "x", "y"]),
                                 columns={"user_id": "int64", "x": "int64", "y": "int64"})])
b = GroupBy(keys=["user_id"], store="other",
            sources=[EventSource(table="t.b", query=Query(selects=["user_id", "z"]),
                                 columns={"user_id": "int64", "z": "double"})])
"""
JOIN = """
from group_bys.risk.groups import a, b
from group_bys.risk.payments import payments

scoring = Join(left={"user_id": "int64"},
               right_parts=[JoinPart(a), JoinPart(b), JoinPart(a, prefix="again_"),
                            JoinPart(payments)])
"""


def _repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path / "repo", {"group_bys/risk/groups.py": GROUPS,
                                          "group_bys/risk/payments.py": PAYMENTS,
                                          "joins/risk/scoring.py": JOIN})


def test_numbers_per_join_and_per_aggregating_group_by(tmp_path: Path) -> None:
    report = compile_repo(_repo(tmp_path))
    assert report.ok and not report.warnings, [p.render() for p in report.warnings]
    numbers = report.performance
    assert numbers is not None
    payments = numbers["group_bys"]["risk.payments.payments"]
    # 30m/5m, 1d/1h, 7d/1h, 30d/1d; the 12h average with tile="30m"; unbounded: no tiles.
    assert payments["tiles_per_window"] == {"30m": 6, "1d": 24, "7d": 168, "30d": 30, "12h": 24}
    assert payments["tiles_read"] == 6 + 24 + 168 + 30 + 24
    assert numbers["joins"]["risk.scoring.scoring"] == {
        "stores": ["main", "other"], "lookups_per_entity": 4,
        "features_per_vector": 2 + 1 + 2 + 8, "tiles_read": payments["tiles_read"],
    }
    assert numbers["limits"] == {"stores": 3, "lookups": 8, "features": 500, "tiles": 400}


def test_warnings_above_the_limits_and_strict(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    limits = Limits(stores=1, lookups=3, features=10, tiles=100)
    report = compile_repo(repo, limits=limits)
    assert report.ok
    shown = sorted((p.definition, p.field, p.problem) for p in report.warnings)
    assert {p.stage for p in report.warnings} == {Stage.PERFORMANCE}
    assert shown == [
        ("risk.payments.payments", "aggregations[0].windows",
         "window 7d reads 168 tiles of 1h per entity at fetch, above --max-tiles 100"),
        ("risk.scoring.scoring", "right_parts",
         "13 features per vector, above --max-features 10"),
        ("risk.scoring.scoring", "right_parts",
         "4 lookups per entity (one per join part), above --max-lookups 3"),
        ("risk.scoring.scoring", "right_parts",
         "a request reads 2 stores (main, other), above --max-stores 1: it waits for the "
         "slowest"),
    ]
    assert all(p.fix for p in report.warnings)
    strict = compile_repo(repo, tmp_path / "out", strict=True, limits=limits)
    assert not strict.ok and strict.stopped_at is Stage.PERFORMANCE and len(strict.errors) == 4
    assert not (tmp_path / "out").exists()


def test_cli_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path)
    assert main(["compile", str(repo), "--max-lookups", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [w["problem"] for w in report["warnings"]] == [
        "4 lookups per entity (one per join part), above --max-lookups 2"]
    assert report["warnings"][0]["stage"] == "performance"
    assert report["performance"]["limits"]["lookups"] == 2
    assert main(["compile", str(repo), "--max-lookups", "2", "--strict"]) == 1
    assert "error(s) in stage performance" in capsys.readouterr().err
    for bad in ("0", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["compile", str(repo), "--max-tiles", bad])
        assert exc.value.code == 2


def test_cli_defaults_are_the_limits() -> None:
    defaults = Limits()
    assert [(flag, default) for flag, _, default in COMPILE_LIMITS] == [
        ("--max-stores", defaults.stores), ("--max-lookups", defaults.lookups),
        ("--max-features", defaults.features), ("--max-tiles", defaults.tiles)]
