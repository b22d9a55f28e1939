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
  {"op": "grpc", "name": N, "target": "host:port", "service": "ServingService" or
   "GrpcFeatureServer", then as "read"}: the same read sent with Feast's own generated
   gRPC stub of that service to `target` (the fetcher), its response read by Feast's
   OnlineResponse, answered in the same shape as a read.
  {"op": "info", "name": N, "target": ...}: ServingService.GetFeastServingInfo's version.
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


def _columns(proto: Any, as_dict: dict[str, Any]) -> dict[str, Any]:
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


def _entity_value(value: Any) -> Any:
    from feast.protos.feast.types.Value_pb2 import Value

    if isinstance(value, str):
        return Value(string_val=value)
    return Value(int64_val=value)


def _grpc(step: dict[str, Any]) -> dict[str, Any]:
    """A read sent with Feast's generated stub, read back with Feast's OnlineResponse."""
    import grpc
    from feast.online_response import OnlineResponse
    from feast.protos.feast.serving import GrpcServer_pb2_grpc, ServingService_pb2_grpc
    from feast.protos.feast.serving import ServingService_pb2 as sv

    with grpc.insecure_channel(step["target"]) as channel:
        if step["op"] == "info":
            stub = ServingService_pb2_grpc.ServingServiceStub(channel)
            info = stub.GetFeastServingInfo(sv.GetFeastServingInfoRequest(), timeout=30)
            return {"version": info.version}
        request = sv.GetOnlineFeaturesRequest(full_feature_names=step.get(
            "full_feature_names", False))
        if "feature_service" in step:
            request.feature_service = step["feature_service"]
        else:
            request.features.val.extend(step["features"])
        for key in step["entity_rows"][0]:
            request.entities[key].val.extend(
                _entity_value(row[key]) for row in step["entity_rows"])
        if step["service"] == "GrpcFeatureServer":
            stub = GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel)
        else:
            stub = ServingService_pb2_grpc.ServingServiceStub(channel)
        proto = stub.GetOnlineFeatures(request, timeout=30)
    return _columns(proto, OnlineResponse(proto).to_dict())


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
    return _columns(response.proto, response.to_dict())


def main() -> int:
    """Run the steps of argv[1], write the answers to argv[2]."""
    import pandas as pd
    from feast import FeatureStore

    plan = json.loads(Path(sys.argv[1]).read_text())
    reads: dict[str, Any] = {}
    if all(step["op"] in ("grpc", "info") for step in plan["steps"]):
        for step in plan["steps"]:  # no FeatureStore: only Feast's client side
            reads[step["name"]] = _grpc(step)
        Path(sys.argv[2]).write_text(json.dumps({"reads": reads}))
        return 0
    store = FeatureStore(repo_path=plan["repo"])
    for step in plan["steps"]:
        if step["op"] in ("grpc", "info"):
            reads[step["name"]] = _grpc(step)
        elif step["op"] == "write":
            store.write_to_online_store(step["view"], pd.read_parquet(step["parquet"]))
        elif step["op"] == "read":
            reads[step["name"]] = _read(store, step)
        else:
            raise SystemExit(f"unknown step {step['op']!r}")
    Path(sys.argv[2]).write_text(json.dumps({"reads": reads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
