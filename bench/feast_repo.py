"""The Feast side of the bench; runs in Feast's own venv (build/bench/feast-venv).

    python -m bench.feast_repo setup --dir D --redis HOST:PORT --users N --event-ms T
    python -m bench.feast_repo check --dir D --users N --grpc HOST:PORT --http URL
    python -m bench.feast_repo protoset --out FILE

`setup` writes feature_store.yaml (Redis online store, local registry file), applies
the entity, two feature views of 20 Float64 features and the feature service, then
writes every row with write_to_online_store. `check` asks both Feast servers for a
few users and compares every value with bench.data. Feast is imported lazily: it is
not installed in the project's venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from bench.data import (
    FEATURES_PER_GROUP,
    GROUPS,
    KEY,
    SERVICE,
    DataSet,
    all_feature_names,
    expected_vector,
    feature_names,
    value,
)

PROJECT = "bench"

_STORE_YAML = """\
project: {project}
provider: local
registry: {registry}
online_store:
  type: redis
  connection_string: "{redis}"
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def _definitions(repo: Path) -> tuple[Any, list[Any], Any]:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    user = Entity(name="user", join_keys=[KEY], value_type=ValueType.INT64)
    views = []
    for group in GROUPS:
        # The offline source is never read (rows go straight to the online store) but a
        # FeatureView needs one.
        source = FileSource(
            name=f"{group}_source",
            path=str(repo / f"{group}.parquet"),
            timestamp_field="event_timestamp",
        )
        views.append(
            FeatureView(
                name=group,
                entities=[user],
                ttl=dt.timedelta(0),  # 0: rows never expire, like the fetcher's bench groups
                schema=[Field(name=n, dtype=Float64) for n in feature_names(group)],
                source=source,
                online=True,
            )
        )
    service = FeatureService(name=SERVICE, features=views)
    return user, views, service


def setup(repo: Path, redis: str, data: DataSet) -> None:
    """Apply the definitions and write every user's rows of both views."""
    import pandas as pd
    from feast import FeatureStore

    repo.mkdir(parents=True, exist_ok=True)
    registry = repo / "registry.db"
    registry.unlink(missing_ok=True)  # a fresh registry each run: the Redis is fresh too
    (repo / "feature_store.yaml").write_text(
        _STORE_YAML.format(project=PROJECT, registry=registry, redis=redis)
    )
    store = FeatureStore(repo_path=str(repo))
    user, views, service = _definitions(repo)
    store.apply([user, *views, service])
    users = list(data.user_ids)
    event_time = pd.Timestamp(data.event_ms, unit="ms", tz="UTC")
    for index, group in enumerate(GROUPS):
        columns: dict[str, Any] = {KEY: users, "event_timestamp": [event_time] * len(users)}
        for f, name in enumerate(feature_names(group)):
            columns[name] = [value(u, index, f) for u in users]
        store.write_to_online_store(group, pd.DataFrame(columns))
    print(f"feast: wrote {len(users)} users x {len(GROUPS)} views of {FEATURES_PER_GROUP}")


def _compare(
    system: str, names: list[str], columns: dict[str, list[Any]], users: list[int]
) -> None:
    missing = [n for n in all_feature_names() if n not in names]
    if missing:
        raise SystemExit(f"{system}: response lacks features {missing[:5]}")
    for row, user in enumerate(users):
        got = [columns[n][row] for n in all_feature_names()]
        if got != expected_vector(user):
            raise SystemExit(
                f"{system}: user {user}: got {got[:3]}..., want {expected_vector(user)[:3]}..."
            )


def check_grpc(target: str, users: list[int]) -> None:
    """GetOnlineFeatures over `feast listen`, every value compared."""
    import grpc
    from feast.protos.feast.serving.GrpcServer_pb2_grpc import GrpcFeatureServerStub
    from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesRequest
    from feast.protos.feast.types.Value_pb2 import RepeatedValue, Value

    with grpc.insecure_channel(target) as channel:
        request = GetOnlineFeaturesRequest(
            feature_service=SERVICE,
            entities={KEY: RepeatedValue(val=[Value(int64_val=u) for u in users])},
        )
        response = GrpcFeatureServerStub(channel).GetOnlineFeatures(request, timeout=10)
    names = list(response.metadata.feature_names.val)
    # Feast answers column by column: results[i] holds feature i for every entity.
    columns = {
        name: [v.double_val for v in result.values]
        for name, result in zip(names, response.results, strict=True)
    }
    _compare("feast gRPC", names, columns, users)


def check_http(url: str, users: list[int]) -> None:
    """POST /get-online-features over `feast serve`, every value compared."""
    body = json.dumps({"feature_service": SERVICE, "entities": {KEY: users}}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        payload = json.load(reply)
    names = list(payload["metadata"]["feature_names"])
    columns = {
        name: result["values"] for name, result in zip(names, payload["results"], strict=True)
    }
    _compare("feast HTTP", names, columns, users)


def write_protoset(out: Path) -> None:
    """The descriptor set of Feast's GrpcFeatureServer for ghz --protoset."""
    from feast.protos.feast.serving import GrpcServer_pb2

    from bench.protoset import write_descriptor_set

    write_descriptor_set(GrpcServer_pb2.DESCRIPTOR, out)


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.feast_repo")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--dir", type=Path, required=True)
    s.add_argument("--redis", required=True, help="host:port of the bench redis-server")
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--event-ms", type=int, required=True)
    c = sub.add_parser("check")
    c.add_argument("--users", type=int, nargs="+", required=True, help="user ids to check")
    c.add_argument("--grpc", help="host:port of `feast listen`")
    c.add_argument("--http", help="URL of /get-online-features of `feast serve`")
    p = sub.add_parser("protoset")
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "setup":
        setup(args.dir.resolve(), args.redis, DataSet(args.users, args.event_ms))
    elif args.command == "check":
        if args.grpc:
            check_grpc(args.grpc, args.users)
        if args.http:
            check_http(args.http, args.users)
        print("feast: answers match the bench data")
    else:
        write_protoset(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
