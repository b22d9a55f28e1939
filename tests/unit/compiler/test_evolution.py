"""Stage 4, evolution: compiles in sequence into one folder, each against the one before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fetcher.catalog import load_catalog
from fetcher.cli import main
from fetcher.codec import GroupCodec, SchemaRegistry
from fetcher.compiler import CompileReport, Stage, UsageError, compile_repo
from tests.unit.compiler.repo_support import line_of, one_error, write_repo

GB_FILE = "group_bys/risk/users.py"
NAME = "risk.users.user_profile"
ROOT = Path(__file__).resolve().parents[3]
V1 = {"user_id": '"int64"', "age": '"int64"', "country": '"string"'}


def group(columns: dict[str, str], extra: str = "") -> str:
    """A group-by of `columns` (name -> declaration source), online, with `extra` fields."""
    decl = ", ".join(f'"{n}": {d}' for n, d in columns.items())
    return f"""
user_profile = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.users",
        query=Query(selects={list(columns)}, time_column="ts"),
        columns={{{decl}}},
    )],
    online=True,{extra}
)
"""


class Compiles:
    """Compiles successive versions of a repository (each in its own folder) into one output."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.out = tmp_path / "out"
        self.n = 0

    def compile(self, text: str, **kwargs: Any) -> CompileReport:
        """Compile a repository whose group-by file is `text` into the shared output."""
        self.n += 1
        repo = write_repo(self.tmp / f"v{self.n}", {GB_FILE: text})
        kwargs.setdefault("out", self.out)
        return compile_repo(repo, **kwargs)

    def group_file(self) -> dict[str, Any]:
        """The compiled groups/<name>.json."""
        return json.loads((self.out / "groups" / f"{NAME}.json").read_text())

    def version(self, kind: str = "group_bys", name: str = NAME) -> str:
        """The version the manifest records for an object."""
        manifest = json.loads((self.out / "metadata" / "version_manifest.json").read_text())
        return str(manifest[kind][name]["version"])


def _ok(report: CompileReport) -> None:
    assert report.ok, [p.render() for p in report.errors]


def test_optional_field_added_keeps_the_old_schema_and_old_rows_read(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group(V1)))
    v1_schema = (seq.out / "groups" / f"{NAME}.avsc").read_bytes()
    assert seq.group_file()["previous_schemas"] == [] and seq.version() == "1.0.0"
    report = seq.compile(group({**V1, "referrals": 'Column("int64", "Users referred", default=0)'}))
    _ok(report)
    assert report.previous == str(seq.out)
    assert seq.group_file()["previous_schemas"] == [f"{NAME}.v1.avsc"]
    assert (seq.out / "groups" / f"{NAME}.v1.avsc").read_bytes() == v1_schema
    assert seq.version() == "1.1.0"
    assert [o.version for o in report.objects] == ["1.1.0"]
    # A row stored with the v1 schema decodes with the v2 catalog, to the new field's default.
    registry = SchemaRegistry()
    v1 = GroupCodec(registry, registry.register(v1_schema.decode(), "v1"))
    stored = v1.encode({"age": 41, "country": "FR"})
    catalog = load_catalog(seq.out)
    assert catalog.codecs[NAME].decode(stored) == {"age": 41, "country": "FR", "referrals": 0}
    # A third, compatible change: previous schemas accumulate, named in order.
    v2_schema = (seq.out / "groups" / f"{NAME}.avsc").read_bytes()
    _ok(seq.compile(group({**V1, "referrals": 'Column("int64", default=0)',
                           "email": 'Column("string", nullable=True)'})))
    assert seq.group_file()["previous_schemas"] == [f"{NAME}.v1.avsc", f"{NAME}.v2.avsc"]
    assert (seq.out / "groups" / f"{NAME}.v2.avsc").read_bytes() == v2_schema
    assert seq.version() == "1.2.0"
    decoded = load_catalog(seq.out).codecs[NAME].decode(stored)
    assert decoded == {"age": 41, "country": "FR", "referrals": 0, "email": None}


def test_recompiling_unchanged_definitions_changes_nothing(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group(V1)))
    _ok(seq.compile(group({**V1, "referrals": 'Column("int64", default=0)'})))
    before = {p.name: p.read_bytes() for p in sorted(seq.out.rglob("*")) if p.is_file()}
    _ok(seq.compile(group({**V1, "referrals": 'Column("int64", default=0)'})))
    after = {p.name: p.read_bytes() for p in sorted(seq.out.rglob("*")) if p.is_file()}
    assert after == before
    assert seq.version() == "1.1.0"


def test_narrowed_type_is_refused_with_the_fix(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group(V1)))
    _ok(seq.compile(group({**V1, "referrals": 'Column("int64", default=0)'})))
    written = {p: p.read_bytes() for p in seq.out.rglob("*") if p.is_file()}
    report = seq.compile(group({**V1, "age": '"int32"', "referrals": 'Column("int64", default=0)'}))
    p = one_error(report, Stage.EVOLUTION)
    assert (p.file, p.line, p.definition, p.field) == (
        GB_FILE, line_of(tmp_path / "v3", GB_FILE, "user_profile ="), NAME, "features.age")
    assert p.render() == (
        f"{GB_FILE}:3: {NAME}: features.age: type changed from int64 to int32, which is not a "
        "widening: rows stored with the previous schema hold int64 values. Fix: keep int64 or "
        "widen it (int32 -> int64 -> float -> double, or nullable); or give the GroupBy a new "
        f'name, e.g. name="{NAME}_v2" (a new group and dataset; joins follow the object), and '
        "backfill it before deploying the catalog")
    assert report.stopped_at is Stage.EVOLUTION
    assert {p: p.read_bytes() for p in seq.out.rglob("*") if p.is_file()} == written
    # The suggested migration compiles: a new group, nothing to be compatible with.
    renamed = seq.compile(group({**V1, "age": '"int32"'}, f' name="{NAME}_v2",'))
    _ok(renamed)
    assert sorted(load_catalog(seq.out).groups) == [f"{NAME}_v2"]
    assert seq.version(name=f"{NAME}_v2") == "1.0.0"


def test_nullable_to_required_is_a_narrowing(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group({**V1, "score": 'Column("double", nullable=True)'})))
    p = one_error(seq.compile(group({**V1, "score": '"double"'})), Stage.EVOLUTION)
    assert p.field == "features.score"
    assert p.problem.startswith("type changed from double (nullable) to double, which is not")


def test_removed_required_field_is_refused(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group(V1)))
    p = one_error(seq.compile(group({"user_id": '"int64"', "age": '"int64"'})), Stage.EVOLUTION)
    assert p.field == "features.country"
    assert p.problem == ("required feature 'country' (string, no default) was removed: readers "
                         "of the group rely on it")
    assert p.fix.startswith("keep it, or make it optional first (nullable=True or a default) "
                            "and remove it in a later compile; or give the GroupBy a new name")


def test_added_field_without_default_is_refused(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group(V1)))
    p = one_error(seq.compile(group({**V1, "email": '"string"'})), Stage.EVOLUTION)
    assert p.field == "features.email"
    assert p.problem == ("new feature 'email' has no default, and rows stored with the "
                         "previous schema do not have it")
    assert p.fix.startswith("declare it nullable=True or with a default")


def test_renamed_record_is_refused_by_avro_resolution(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group(V1)))
    p = one_error(seq.compile(group(V1, ' avro=AvroSchema(record="Other"),')), Stage.EVOLUTION)
    assert p.field == "avro"
    assert p.problem.startswith("rows written with the previous schema cannot be read with the "
                                "new one: record fetcher.features.RiskUsersUserProfile is read "
                                "as fetcher.features.Other")


@pytest.mark.parametrize(
    ("old", "new", "version"),
    [
        ('"int32"', '"int64"', "1.0.1"),  # a widening that keeps the served type: patch
        ('"float"', '"double"', "1.0.1"),
        ('"int64"', 'Column("int64", nullable=True)', "1.0.1"),
        ('"list<int32>"', '"list<int64>"', "1.0.1"),
        ('"int64"', '"double"', "2.0.0"),  # compatible, but clients see DOUBLE: major
    ],
)
def test_widenings_compile_with_their_bump(tmp_path: Path, old: str, new: str,
                                           version: str) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group({**V1, "x": old})))
    _ok(seq.compile(group({**V1, "x": new})))
    assert seq.version() == version
    assert seq.group_file()["previous_schemas"] == [f"{NAME}.v1.avsc"]
    load_catalog(seq.out)


def test_version_bumps(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group({**V1, "score": 'Column("double", nullable=True)'})))
    _ok(seq.compile(group({**V1, "score": 'Column("double", nullable=True)'},
                          ' description="Users",')))
    assert seq.version() == "1.0.1"  # description: patch; the schema's doc changes, not its form
    assert seq.group_file()["previous_schemas"] == []
    _ok(seq.compile(group(V1, ' description="Users",')))
    assert seq.version() == "2.0.0"  # an optional feature removed: major
    _ok(seq.compile(group(V1, ' description="Users", ttl="30d",')))
    assert seq.version() == "2.0.1"
    _ok(seq.compile(group(V1, ' description="Users", ttl="30d", version="3.1.0",')))
    assert seq.version() == "3.1.0"  # an explicit version at or above the computed one wins


def test_online_production_change_needs_a_version_bump(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    prod = " production=True,"
    _ok(seq.compile(group(V1, prod)))
    changed = prod + ' ttl="30d",'
    p = one_error(seq.compile(group(V1, changed)), Stage.EVOLUTION)
    assert (p.field, p.definition) == ("version", NAME)
    assert p.problem == ("the online production group_by changed without a version bump (patch "
                         "change since 1.0.0: the compiled form changed (description, TTL, "
                         "cache...))")
    assert p.fix == ('confirm it with version="1.0.1" on the definition, or compile with '
                     "--force")
    _ok(seq.compile(group(V1, changed), force=True))
    assert seq.version() == "1.0.1"
    _ok(seq.compile(group({**V1, "email": 'Column("string", nullable=True)'},
                          changed + ' version="1.1.0",')))
    assert seq.version() == "1.1.0"
    low = seq.compile(group({**V1, "email": 'Column("string", nullable=True)', "n":
                             'Column("int64", default=0)'}, changed + ' version="1.1.0",'))
    p = one_error(low, Stage.EVOLUTION)
    assert p.problem == ("version='1.1.0' is lower than the minor change since 1.1.0: "
                         "feature(s) 'n' added needs (1.2.0)")
    assert p.fix.startswith('set version="1.2.0" or higher')


def test_the_report_lists_schema_changes_since_the_previous_output(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    first = seq.compile(group(V1))
    _ok(first)
    assert first.schema_changes is None  # a first compile: nothing to compare with
    second = seq.compile(group({**V1, "n": 'Column("int64", default=0)'}))
    _ok(second)
    assert second.as_json()["schema_changes"] == [{
        "kind": "group_by", "name": NAME, "status": "changed", "bump": "minor",
        "reason": "feature(s) 'n' added", "from_version": "1.0.0", "to_version": "1.1.0",
    }]
    again = seq.compile(group({**V1, "n": 'Column("int64", default=0)'}))
    assert again.schema_changes == ()  # unchanged objects are not listed


def test_removing_an_online_production_object_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    other = group(V1).replace("user_profile = ", "user_extra = ")
    both = write_repo(tmp_path / "both", {
        GB_FILE: group(V1, " production=True,"),
        "group_bys/risk/extra.py": other,
    })
    _ok(compile_repo(both, out=out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # The online production group gone: refused, naming it, and the output is unchanged.
    without = write_repo(tmp_path / "without", {"group_bys/risk/extra.py": other})
    p = one_error(compile_repo(without, out=out), Stage.EVOLUTION)
    assert p.definition == NAME and p.file == f"{out}/metadata/version_manifest.json"
    assert p.problem == (f"the online production group-by {NAME!r} (version 1.0.0) of the "
                         "previous output is not defined any more: its callers would get "
                         "NOT_FOUND")
    assert p.fix == ("keep its definition (set online=False first, deploy, then remove it), "
                     "or compile with --force")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    forced = compile_repo(without, out=out, force=True)
    _ok(forced)
    assert [w.definition for w in forced.warnings] == [NAME]
    assert not (out / "groups" / f"{NAME}.json").exists()
    # An online object that is not production goes without a word.
    out2 = tmp_path / "out2"
    _ok(compile_repo(write_repo(tmp_path / "online", {GB_FILE: group(V1),
                                                      "group_bys/risk/extra.py": other}),
                     out=out2))
    dropped = compile_repo(without, out=out2)
    assert dropped.ok and not dropped.warnings
    assert not (out2 / "groups" / f"{NAME}.json").exists()


def test_against_another_folder(tmp_path: Path) -> None:
    seq = Compiles(tmp_path)
    _ok(seq.compile(group(V1)))
    fresh = tmp_path / "fresh"
    report = seq.compile(group({**V1, "n": 'Column("int64", default=0)'}), out=fresh,
                         against=seq.out)
    _ok(report)
    assert report.previous == str(seq.out)
    group_json = json.loads((fresh / "groups" / f"{NAME}.json").read_text())
    assert group_json["previous_schemas"] == [f"{NAME}.v1.avsc"]
    # Check only (no --out) against a folder: refused changes are still found.
    p = one_error(seq.compile(group({"user_id": '"int64"'}), out=None, against=seq.out),
                  Stage.SCHEMA)
    assert p.problem == "selects only keys"
    p = one_error(seq.compile(group({**V1, "email": '"string"'}), out=None, against=seq.out),
                  Stage.EVOLUTION)
    assert p.field == "features.email"
    with pytest.raises(UsageError, match="is not a compiled output"):
        seq.compile(group(V1), against=tmp_path / "v1")
    with pytest.raises(UsageError, match="no such folder"):
        seq.compile(group(V1), against=tmp_path / "missing")


def test_cli_against_and_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = write_repo(tmp_path / "v1", {GB_FILE: group(V1, " production=True,")})
    v2 = write_repo(tmp_path / "v2", {GB_FILE: group(V1, ' production=True, ttl="1d",')})
    out = tmp_path / "out"
    assert main(["compile", str(v1), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compile", str(v2), "--against", str(out)]) == 1
    assert "changed without a version bump" in capsys.readouterr().err
    assert main(["compile", str(v2), "--against", str(out), "--force"]) == 0
    assert f"evolution checked against {out}" in capsys.readouterr().out
    assert main(["compile", str(v2), "--against", str(tmp_path / "v1")]) == 2
    assert "is not a compiled output" in capsys.readouterr().err


def test_demo_schema_kept_beside_its_avro_previous_file(tmp_path: Path) -> None:
    """The kept schema takes the next `<name>.v<N>.avsc` after the ones avro.previous lists."""
    repo = tmp_path / "demo_features"
    shutil.copytree(ROOT / "config" / "demo_features", repo,
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out"
    _ok(compile_repo(repo, out))
    users = repo / "group_bys" / "demo" / "users.py"
    users.write_text(users.read_text().replace(
        '    "referral_count"',
        '    "gift_cards": Column("int64", "Gift cards bought", default=0),\n    "referral_count"'))
    _ok(compile_repo(repo, out))
    group_json = json.loads((out / "groups" / "user_profile.json").read_text())
    assert group_json["previous_schemas"] == ["user_profile.v1.avsc", "user_profile.v2.avsc"]
    demo = ROOT / "config" / "demo" / "groups"
    assert (out / "groups" / "user_profile.v2.avsc").read_bytes() == (
        demo / "user_profile.avsc").read_bytes()
    assert (out / "groups" / "user_profile.v1.avsc").read_bytes() == (
        demo / "user_profile.v1.avsc").read_bytes()
    catalog = load_catalog(out)
    assert "gift_cards" in [f.name for f in catalog.groups["user_profile"].features]
