"""Discovery: naming from the file path, import failures as file:line problems, aliases."""

from __future__ import annotations

import sys
from pathlib import Path

from fetcher.catalog import load_catalog
from fetcher.compiler import Stage
from tests.unit.compiler.repo_support import JOIN, USERS, compile_files, one_error

GB_FILE = "group_bys/risk/users.py"


def test_names_come_from_team_module_and_variable(tmp_path: Path) -> None:
    report = compile_files(tmp_path, {GB_FILE: USERS, "joins/risk/scoring.py": JOIN})
    assert report.ok
    assert [(o.kind, o.name, o.file, o.line, o.served) for o in report.objects] == [
        ("group_by", "risk.users.user_profile", GB_FILE, 3, True),
        ("join", "risk.scoring.scoring", "joins/risk/scoring.py", 5, True),
    ]
    # Dotted names are valid catalog names: the files keep them as they are.
    catalog = load_catalog(tmp_path / "out")
    assert set(catalog.groups) == {"risk.users.user_profile"}
    assert [j.prefix for j in catalog.services["risk.scoring.scoring"].joins] == ["user_"]


def test_explicit_name_wins(tmp_path: Path) -> None:
    text = USERS.replace("online=True,", 'online=True, name="users_v2",')
    report = compile_files(tmp_path, {GB_FILE: text})
    assert [o.name for o in report.objects] == ["users_v2"]
    assert (tmp_path / "out" / "groups" / "users_v2.json").is_file()


def test_exception_in_a_definition_file_names_its_line(tmp_path: Path) -> None:
    text = USERS + "\nbroken = undefined_name + 1\n"
    report = compile_files(tmp_path, {GB_FILE: text})
    p = one_error(report, Stage.DISCOVERY)
    lines = (tmp_path / "repo" / GB_FILE).read_text().splitlines()
    assert (p.file, p.line) == (GB_FILE, lines.index("broken = undefined_name + 1") + 1)
    assert p.problem == ("cannot import the definition file: NameError: name 'undefined_name' "
                         "is not defined")
    assert "must import without errors" in p.fix
    assert report.objects == ()
    assert not (tmp_path / "out").exists()


def test_syntax_error_names_its_line(tmp_path: Path) -> None:
    report = compile_files(tmp_path, {GB_FILE: "x = (\n"})
    p = one_error(report, Stage.DISCOVERY)
    assert (p.file, p.line) == (GB_FILE, 3)
    assert "SyntaxError" in p.problem


def test_error_in_an_imported_repo_module_names_that_module(tmp_path: Path) -> None:
    files = {"group_bys/risk/_helpers.py": "def columns():\n    raise ValueError('no columns')\n",
             GB_FILE: "from group_bys.risk._helpers import columns\n\nCOLUMNS = columns()\n"}
    p = one_error(compile_files(tmp_path, files), Stage.DISCOVERY)
    assert (p.file, p.line) == ("group_bys/risk/_helpers.py", 4)
    assert p.problem.startswith("cannot import the definition file (imported by "
                                f"{GB_FILE}): ValueError: no columns")


def test_helpers_are_not_definition_files_and_repo_modules_are_forgotten(tmp_path: Path) -> None:
    helper = "COLUMNS = {'user_id': 'int64', 'age': 'int64', 'country': 'string'}\n"
    text = "from group_bys.risk._columns import COLUMNS\n" + USERS.replace(
        'columns={"user_id": "int64", "age": "int64", "country": "string"}', "columns=COLUMNS")
    report = compile_files(tmp_path, {"group_bys/risk/_columns.py": helper, GB_FILE: text})
    assert report.ok, [e.render() for e in report.errors]
    assert [o.name for o in report.objects] == ["risk.users.user_profile"]
    assert not any(m == "group_bys" or m.startswith(("group_bys.", "_fetcher_definition_"))
                   for m in sys.modules)
    assert str(tmp_path / "repo") not in sys.path


def test_an_alias_compiles_once_with_a_warning(tmp_path: Path) -> None:
    report = compile_files(tmp_path, {GB_FILE: USERS + "\nlatest = user_profile\n"})
    assert report.ok
    assert [o.name for o in report.objects] == ["risk.users.user_profile"]
    assert [(w.stage, w.definition) for w in report.warnings] == [(Stage.DISCOVERY, "latest")]
    assert "same object as user_profile" in report.warnings[0].problem


def test_a_join_in_group_bys_is_a_warning(tmp_path: Path) -> None:
    text = USERS + JOIN.replace("from group_bys.risk.users import user_profile\n", "")
    report = compile_files(tmp_path, {GB_FILE: text})
    assert [w.problem for w in report.warnings] == ["a Join in group_bys/ is not compiled"]
    assert report.warnings[0].fix == "move it to a file under joins/"
