"""Feast's side of the Feast tests; runs in Feast's own venv (tests/feast_env.py), never ours.

    python feast_side.py STEPS.json OUT.json

STEPS.json is {"repo": dir, "steps": [...]}, each step one of
  {"op": "write", "view": V, "parquet": FILE}: FeatureStore.write_to_online_store(V, rows)
  {"op": "read", "name": N, "features": [...] or "feature_service": S, "entity_rows": [...],
   "full_feature_names": bool}: FeatureStore.get_online_features, answered as
  OUT.json["reads"][N] = {"names": [...], "columns": [[cell per entity row] per feature]},
  a cell being {"status": FieldStatus, "kind": the Value's member or null, "value": its
  value as JSON (bytes as hex), "null": whether Feast's to_dict() reads it as None,
  "ts": [seconds, nanos] of its event time}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _cell(proto_value: Any, status: int, ts: Any, py_value: Any) -> dict[str, Any]:
    kind = proto_value.WhichOneof("val")
    value: Any = None
    if kind is not None:
        raw = getattr(proto_value, kind)
        value = list(raw.val) if kind.endswith("_list_val") else raw
    return {
        "status": int(status),
        "kind": kind,
        "value": _jsonable(value),
        "null": py_value is None,
        "ts": [ts.seconds, ts.nanos],
    }


def _read(store: Any, step: dict[str, Any]) -> dict[str, Any]:
    features = (
        store.get_feature_service(step["feature_service"])
        if "feature_service" in step
        else step["features"]
    )
    response = store.get_online_features(
        features=features,
        entity_rows=step["entity_rows"],
        full_feature_names=step.get("full_feature_names", False),
    )
    as_dict = response.to_dict()
    proto = response.proto
    names = list(proto.metadata.feature_names.val)
    columns = []
    for name, result in zip(names, proto.results, strict=True):
        columns.append(
            [
                _cell(value, status, ts, as_dict[name][row])
                for row, (value, status, ts) in enumerate(
                    zip(result.values, result.statuses, result.event_timestamps, strict=True)
                )
            ]
        )
    return {"names": names, "columns": columns}


def main() -> int:
    """Run the steps of argv[1], write the answers to argv[2]."""
    import pandas as pd
    from feast import FeatureStore

    plan = json.loads(Path(sys.argv[1]).read_text())
    store = FeatureStore(repo_path=plan["repo"])
    reads: dict[str, Any] = {}
    for step in plan["steps"]:
        if step["op"] == "write":
            store.write_to_online_store(step["view"], pd.read_parquet(step["parquet"]))
        elif step["op"] == "read":
            reads[step["name"]] = _read(store, step)
        else:
            raise SystemExit(f"unknown step {step['op']!r}")
    Path(sys.argv[2]).write_text(json.dumps({"reads": reads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
