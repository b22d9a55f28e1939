"""Chronon configs for the tests: the real samples' folder, their column types, small configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The repository's parent holds shared/ (here /work/shared; in CI a copy beside the clone).
SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "chronon-samples"

# The column types of every table the samples read (Chronon configs carry none).
SAMPLE_TYPES: dict[str, dict[str, str]] = {
    "sample_namespace.sample_table_group_by": {
        "event_expr": "int64", "group_by_expr": "string", "ts": "int64",
        "event_expr_old_version": "int64", "group_by_subject_expr_old_version": "string",
    },
    "sample_namespace.another_sample_table_group_by": {
        "possibly_different_event_expr": "int64",
        "possibly_different_group_by_subject_expr": "string",
    },
    "sample_namespace.sample_team_sample_staging_query_v1": {
        "impressed_unique_count_1d": "int64", "viewed_unique_count_1d": "int64",
        "s2CellId": "string", "place_id": "string",
    },
    "sample_namespace.sample_team_sample_group_by_group_by_require_backfill": {
        "event_expr": "int64", "group_by_expr": "string", "s2CellId": "string",
        "place_id": "string", "impressed_unique_count_1d_sum": "int64",
    },
    "sample_namespace.sample_team_sample_join_v1_sample_team_sample_group_by_v1": {
        "event_expr": "int64", "group_by_expr": "string", "some_column": "string",
        "s2CellId": "string", "place_id": "string",
    },
    "sample_table.sample_entity_snapshot": {
        "entity_expr": "string", "group_by_subject_expr": "string",
    },
    "random_table_name": {"id_item": "string"},
    # join outputs read by chaining group-bys: <outputNamespace>.<join name, cleaned>
    "chronon_db.sample_team_sample_chaining_join_parent_join": {
        "event_expr": "int64", "group_by_expr": "string", "user_id": "string",
    },
    "default.unit_test_sample_parent_join_parent_join": {
        "event_expr": "int64", "group_by_expr": "string", "user_id": "string",
    },
}


def write_types(path: Path, tables: dict[str, dict[str, Any]] | None = None) -> Path:
    """A JSON types file of `tables` (default: the samples')."""
    path.write_text(json.dumps(SAMPLE_TYPES if tables is None else tables), encoding="utf-8")
    return path


def write_configs(root: Path, files: dict[str, dict[str, Any]]) -> Path:
    """Write Chronon configs (relative path -> thrift simple-JSON object) under `root`."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return root


def events(table: str = "db.payments", selects: dict[str, str] | None = None,
           **query: Any) -> dict[str, Any]:
    """A Chronon events source."""
    chosen = selects or {"user_id": "user_id", "amount": "amount"}
    return {"events": {"table": table,
                       "query": {"selects": chosen, "timeColumn": "ts", "setups": [], **query}}}


def group_by(name: str = "sample_team.sample_group_by.v1", *, online: int = 0,
             aggregations: list[dict[str, Any]] | None = None, keys: tuple[str, ...] = ("user_id",),
             sources: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A Chronon GroupBy (offline by default: compiled into the metadata if it aggregates)."""
    out: dict[str, Any] = {
        "metaData": {"name": name, "online": online, "team": name.split(".")[0],
                     "outputNamespace": "db", "customJson": json.dumps({"lag": 0})},
        "sources": sources or [events()],
        "keyColumns": list(keys),
        **extra,
    }
    if aggregations is not None:
        out["aggregations"] = aggregations
    return out


def agg(column: str, operation: int, windows: list[tuple[int, int]] | None = None,
        **arg_map: str) -> dict[str, Any]:
    """A Chronon Aggregation; windows as (length, timeUnit)."""
    out: dict[str, Any] = {"inputColumn": column, "operation": operation, "argMap": arg_map}
    if windows is not None:
        out["windows"] = [{"length": n, "timeUnit": u} for n, u in windows]
    return out


def join(name: str, parts: list[dict[str, Any]], *, online: int = 0,
         left: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A Chronon Join of `parts` ({"groupBy": ..., "prefix": ..., "keyMapping": ...})."""
    return {
        "metaData": {"name": name, "online": online, "production": 0, "samplePercent": 100.0,
                     "team": name.split(".")[0]},
        "left": left or events("db.requests", {"user_id": "user_id", "ts": "ts"}),
        "joinParts": parts,
        **extra,
    }


TYPES = {
    "db.payments": {"user_id": "int64", "amount": "int64", "merchant": "string", "ts": "int64"},
    "db.requests": {"user_id": "int64", "ts": "int64", "account": "int64"},
}
