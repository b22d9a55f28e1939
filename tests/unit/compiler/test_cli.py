"""`fetcher compile`: exit codes 0/1/2, the human report on stderr, the --json report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetcher.cli import main
from tests.unit.compiler.repo_support import JOIN, USERS, write_repo

GB_FILE = "group_bys/risk/users.py"


def test_clean_compile_exits_0_and_validate_accepts_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_repo(tmp_path / "repo", {GB_FILE: USERS, "joins/risk/scoring.py": JOIN})
    out = tmp_path / "out"
    assert main(["compile", str(repo), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "compiled 1 group-bys (1 served) and 1 joins (1 served) into" in captured.out
    assert captured.err == ""
    assert main(["validate", str(out)]) == 0
    assert "1 feature groups, 1 feature services" in capsys.readouterr().out


def test_errors_exit_1_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = USERS.replace('"age": "int64"', '"age": "int8"')
    repo = write_repo(tmp_path / "repo", {GB_FILE: bad})
    assert main(["compile", str(repo), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{GB_FILE}:3: risk.users.user_profile: sources[0].columns.age: "
                             "unsupported column type 'int8'. Fix: use one of int64")
    assert err[-1] == "fetcher compile: 1 error(s) in stage schema; later stages did not run"
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()


def test_import_error_exits_1_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_repo(tmp_path / "repo", {GB_FILE: "import no_such_module\n"})
    assert main(["compile", str(repo)]) == 1
    err = capsys.readouterr().err
    assert f"{GB_FILE}:3: cannot import the definition file: ModuleNotFoundError" in err
    assert "Traceback" not in err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["compile", str(tmp_path)]) == 2
    assert "has no group_bys/ or joins/ folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["compile", str(tmp_path), "--bogus"])
    assert exc.value.code == 2


def test_strict_turns_warnings_into_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_repo(tmp_path / "repo", {GB_FILE: USERS + "\nlatest = user_profile\n"})
    assert main(["compile", str(repo)]) == 0
    assert "warning: is the same object as user_profile" in capsys.readouterr().err
    assert main(["compile", str(repo), "--strict"]) == 1


def test_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = USERS.replace('"age": "int64"', '"age": "int8"').replace(
        "online=True,", 'online=True, max_age="1w",')
    repo = write_repo(tmp_path / "repo", {GB_FILE: bad})
    assert main(["compile", str(repo), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"ok", "repo", "out", "objects", "errors", "warnings", "error_counts",
                           "stopped_at", "compile_seconds", "validation_seconds", "previous",
                           "performance", "schema_changes"}
    assert report["ok"] is False and report["stopped_at"] == "schema"
    assert report["objects"] == [{"kind": "group_by", "name": "risk.users.user_profile",
                                  "file": GB_FILE, "line": 3, "served": None,
                                  "version": None}]
    assert report["error_counts"] == {"discovery": 0, "schema": 2, "consistency": 0,
                                      "dependencies": 0, "evolution": 0, "performance": 0,
                                      "output": 0}
    assert report["previous"] is None and report["performance"] is None
    assert report["schema_changes"] is None
    assert {e["field"] for e in report["errors"]} == {"sources[0].columns.age", "max_age"}
    assert set(report["errors"][0]) == {"stage", "file", "line", "object", "field", "problem",
                                        "fix"}
    assert report["compile_seconds"] >= report["validation_seconds"] >= 0
    good = write_repo(tmp_path / "good", {GB_FILE: USERS})
    assert main(["compile", str(good), "--json", "--out", str(tmp_path / "out")]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["ok"] is True and clean["errors"] == [] and clean["objects"][0]["served"] is True
    assert clean["objects"][0]["version"] == "1.0.0"
    assert clean["performance"]["joins"] == {}
