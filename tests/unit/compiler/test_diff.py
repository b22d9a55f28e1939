"""`fetcher diff --from A --to B`: per object, added / removed / changed features and keys,
and the bump they imply; human and --json output; exit 0, or 2 for a folder that is not one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetcher.cli import main
from fetcher.compiler import compile_repo
from tests.unit.compiler.repo_support import write_repo

USERS = """
user_profile = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.users",
        query=Query(selects=["user_id", "age", "country", "score"], time_column="ts"),
        columns={"user_id": "int64", "age": "int64", "country": "string",
                 "score": Column("int32", nullable=True)},
    )],
    online=True,
)
"""
MERCHANTS = """
merchant = GroupBy(
    keys=["merchant_id"],
    sources=[EventSource(table="events.merchants",
                         query=Query(selects=["merchant_id", "gmv"], time_column="ts"),
                         columns={"merchant_id": "int64", "gmv": "double"})],
    online=True,
)
"""
JOIN = """
from group_bys.risk.users import user_profile

scoring = Join(left={"user_id": "int64"}, right_parts=[JoinPart(user_profile, prefix="u_")],
               online=True)
"""


def _outputs(tmp_path: Path) -> tuple[Path, Path]:
    a = write_repo(tmp_path / "a", {"group_bys/risk/users.py": USERS,
                                    "group_bys/risk/merchants.py": MERCHANTS,
                                    "joins/risk/scoring.py": JOIN})
    users = (USERS.replace('"score"]', '"score", "email"]')
             .replace('"country": "string",', '"email": Column("string", nullable=True),')
             .replace('"country", ', "")
             .replace('Column("int32", nullable=True)', 'Column("int64", nullable=True)'))
    join = JOIN.replace('left={"user_id": "int64"}', 'left={"user_id": "int64", "x": "string"}')
    b = write_repo(tmp_path / "b", {"group_bys/risk/users.py": users,
                                    "group_bys/risk/places.py": MERCHANTS.replace(
                                        "merchant", "place"),
                                    "joins/risk/scoring.py": join})
    for repo in (a, b):
        report = compile_repo(repo, tmp_path / f"out_{repo.name}")
        assert report.ok, [p.render() for p in report.errors]
    return tmp_path / "out_a", tmp_path / "out_b"


def test_diff_human(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _outputs(tmp_path)
    assert main(["diff", "--from", str(a), "--to", str(b)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "group_by risk.merchants.merchant: removed (was 1.0.0)",
        "group_by risk.places.place: added (1.0.0, 1 features)",
        "group_by risk.users.user_profile: major (1.0.0 -> 1.0.0)",
        "  + email: string (nullable)",
        "  - country: string",
        "  ~ score: int32 (nullable) -> int64 (nullable)",
        "join risk.scoring.scoring: major (1.0.0 -> 1.0.0)",
        "  ~ keys: user_id:int64 -> user_id:int64, x:string",
        "  + u_email: string (nullable)",
        "  - u_country: string",
        "  ~ u_score: int32 (nullable) -> int64 (nullable)",
        "1 added, 1 removed, 2 changed, 0 unchanged",
    ]
    assert main(["diff", "--from", str(a), "--to", str(a)]) == 0
    assert capsys.readouterr().out == "0 added, 0 removed, 0 changed, 3 unchanged\n"


def test_diff_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _outputs(tmp_path)
    assert main(["diff", "--from", str(a), "--to", str(b), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["from"], report["to"]) == (str(a), str(b))
    objects = {o["name"]: o for o in report["objects"]}
    assert objects["risk.users.user_profile"] == {
        "kind": "group_by", "name": "risk.users.user_profile", "status": "changed",
        "bump": "major", "from_version": "1.0.0", "to_version": "1.0.0", "keys": None,
        "aggregation_layout": None,
        "features": {
            "added": [{"name": "email", "type": "string (nullable)"}],
            "removed": [{"name": "country", "type": "string"}],
            "changed": [{"name": "score", "from": "int32 (nullable)", "to": "int64 (nullable)"}],
        },
    }
    assert objects["risk.scoring.scoring"]["keys"] == {"from": [["user_id", "int64"]],
                                                       "to": [["user_id", "int64"],
                                                              ["x", "string"]]}
    assert (objects["risk.places.place"]["status"], objects["risk.places.place"]["bump"]) == (
        "added", None)
    assert objects["risk.merchants.merchant"]["status"] == "removed"


def test_diff_bumps_follow_the_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_repo(tmp_path / "a", {"group_bys/risk/users.py": USERS})
    variants = {
        "minor": USERS.replace('"score"]', '"score", "n"]').replace(
            '"age": "int64",', '"age": "int64", "n": Column("int64", default=0),'),
        "patch": USERS.replace("online=True,", 'online=True, ttl="30d",'),
        "none": USERS,
    }
    assert compile_repo(a, tmp_path / "out_a").ok
    for bump, text in variants.items():
        repo = write_repo(tmp_path / bump, {"group_bys/risk/users.py": text})
        assert compile_repo(repo, tmp_path / f"out_{bump}").ok
        assert main(["diff", "--from", str(tmp_path / "out_a"), "--to",
                     str(tmp_path / f"out_{bump}"), "--json"]) == 0
        [entry] = json.loads(capsys.readouterr().out)["objects"]
        assert entry["bump"] == bump


def test_diff_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = _outputs(tmp_path)
    assert main(["diff", "--from", str(a), "--to", str(tmp_path / "missing")]) == 2
    assert "is not a compiled output" in capsys.readouterr().err
    (tmp_path / "broken" / "metadata").mkdir(parents=True)
    (tmp_path / "broken" / "metadata" / "version_manifest.json").write_text("{")
    assert main(["diff", "--from", str(a), "--to", str(tmp_path / "broken")]) == 2
    assert "does not read as JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["diff", "--from", str(a)])
    assert exc.value.code == 2


def test_a_manifest_without_keys_and_features_reads_from_the_lineage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outputs of the first compiler step have no keys/features/online in the manifest."""
    a, _ = _outputs(tmp_path)
    manifest_path = a / "metadata" / "version_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for section in ("group_bys", "joins"):
        for entry in manifest[section].values():
            for field in ("keys", "features", "online"):
                del entry[field]
    old = tmp_path / "old"
    (old / "metadata").mkdir(parents=True)
    for sub in ("groups", "services"):
        (old / sub).mkdir()
        for p in (a / sub).iterdir():
            (old / sub / p.name).write_bytes(p.read_bytes())
    (old / "metadata" / "lineage.json").write_bytes((a / "metadata" / "lineage.json").read_bytes())
    (old / "metadata" / "version_manifest.json").write_text(json.dumps(manifest))
    assert main(["diff", "--from", str(old), "--to", str(a), "--json"]) == 0
    objects = {o["name"]: o for o in json.loads(capsys.readouterr().out)["objects"]}
    # Types come from the lineage (nullability unknown: read as non-null), group keys from
    # the group files; a join's keys are unknown, so it shows a key change.
    user = objects["risk.users.user_profile"]
    assert user["keys"] is None and user["features"]["added"] == []
    assert user["features"]["changed"] == [
        {"name": "score", "from": "int32", "to": "int32 (nullable)"}]
    assert objects["risk.merchants.merchant"]["status"] == "unchanged"
    assert objects["risk.scoring.scoring"]["keys"]["from"] == []
