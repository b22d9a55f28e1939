"""The output: Avro schemas from declared and Parquet columns, lineage, the version manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fetcher.catalog import load_catalog
from fetcher.compiler import Stage
from fetcher.types import FeatureType
from tests.unit.compiler.repo_support import JOIN, USERS, compile_files, one_error

GB_FILE = "group_bys/risk/users.py"
PARQUET_GROUP = """
user_profile = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="data/users.parquet",
        query=Query(selects={"user_id": "user_id", "age": "age", "tags": "tags",
                             "score": "raw_score"}, time_column="ts"),
        parquet_schema="data/users.parquet",
        columns={"score": Column("double", "Model score", nullable=True)},
    )],
    online=True,
    ttl="30d",
    max_age="2d",
    cache=Cache(l2=True, l2_ttl=30),
)
"""


def _write_parquet(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("age", pa.int32(), nullable=False),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("raw_score", pa.float32()),
        pa.field("ts", pa.timestamp("ms")),
    ])
    pq.write_table(pa.Table.from_pylist([], schema=schema), path)


def test_parquet_schema_gives_the_column_types(tmp_path: Path) -> None:
    _write_parquet(tmp_path / "repo" / "data" / "users.parquet")
    report = compile_files(tmp_path, {GB_FILE: PARQUET_GROUP})
    assert report.ok, [e.render() for e in report.errors]
    out = tmp_path / "out" / "groups"
    schema = json.loads((out / "risk.users.user_profile.avsc").read_text())
    assert schema["name"] == "RiskUsersUserProfile"
    assert schema["namespace"] == "fetcher.features"
    assert schema["fields"] == [
        {"name": "age", "type": "int"},
        {"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": None},
        {"name": "score", "type": ["null", "double"], "doc": "Model score", "default": None},
    ]
    group = json.loads((out / "risk.users.user_profile.json").read_text())
    assert (group["ttl_seconds"], group["max_age_seconds"]) == (30 * 86400, 2 * 86400)
    assert group["cache"] == {"l1": True, "l2": True, "l1_ttl_seconds": None,
                              "l2_ttl_seconds": 30}
    served = load_catalog(tmp_path / "out").groups["risk.users.user_profile"]
    assert [(f.name, f.type, f.nullable) for f in served.features] == [
        ("age", FeatureType.INT64, False), ("tags", FeatureType.STRING_LIST, True),
        ("score", FeatureType.DOUBLE, True)]


def test_parquet_file_missing(tmp_path: Path) -> None:
    p = one_error(compile_files(tmp_path, {GB_FILE: PARQUET_GROUP}), Stage.SCHEMA)
    assert p.field == "sources[0].parquet_schema"
    assert p.problem.startswith("data/users.parquet does not exist")
    assert "relative to the repository folder" in p.fix


def test_parquet_column_of_an_unservable_type(tmp_path: Path) -> None:
    _write_parquet(tmp_path / "repo" / "data" / "users.parquet")
    text = PARQUET_GROUP.replace('"score": "raw_score"}', '"score": "raw_score", "ts": "ts"}')
    p = one_error(compile_files(tmp_path, {GB_FILE: text}), Stage.SCHEMA)
    assert p.field == "sources[0].query.selects.ts"
    assert "has a Parquet type no feature can have" in p.problem


def test_lineage_and_manifest_of_a_join(tmp_path: Path) -> None:
    report = compile_files(tmp_path, {GB_FILE: USERS, "joins/risk/scoring.py": JOIN})
    assert report.ok
    meta = tmp_path / "out" / "metadata"
    lineage = json.loads((meta / "lineage.json").read_text())
    assert lineage["joins"]["risk.scoring.scoring"]["features"]["user_age"] == {
        "group_by": "risk.users.user_profile", "feature": "age", "column": "age",
        "operation": None, "window": None, "tile": None, "type": "int64",
        "sources": [{"table": "events.users", "expression": "age"}],
    }
    manifest = json.loads((meta / "version_manifest.json").read_text())
    entry = manifest["group_bys"]["risk.users.user_profile"]
    assert entry["version"] == "1.0.0" and len(entry["hash"]) == 64
    assert manifest["compiler_version"]
    # The hash is the compiled form's: a change to the definition changes it.
    changed = compile_files(tmp_path / "changed",
                            {GB_FILE: USERS.replace("online=True,", 'online=True, max_age="1d",')})
    other = json.loads((tmp_path / "changed" / "out" / "metadata" /
                        "version_manifest.json").read_text())
    assert changed.ok
    assert other["group_bys"]["risk.users.user_profile"]["hash"] != entry["hash"]


def test_explicit_version_is_recorded(tmp_path: Path) -> None:
    text = USERS.replace("online=True,", 'online=True, version="2.1.0",')
    assert compile_files(tmp_path, {GB_FILE: text}).ok
    manifest = json.loads((tmp_path / "out" / "metadata" / "version_manifest.json").read_text())
    assert manifest["group_bys"]["risk.users.user_profile"]["version"] == "2.1.0"


def test_check_only_writes_nothing(tmp_path: Path) -> None:
    report = compile_files(tmp_path, {GB_FILE: USERS}, out=False)
    assert report.ok and report.out is None
    assert not (tmp_path / "out").exists()
