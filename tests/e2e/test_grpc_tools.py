"""Standard gRPC tools against the running server: grpc_health_probe and grpcurl (reflection).

Both are installed into .tools/bin by scripts/setup.sh; grpcurl's JSON answers are parsed
back into the proto messages and checked value by value against the loaded rows.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

import pytest
from google.protobuf import json_format

from fetcher.client import KeyInput, decode_vectors
from fetcher.demo._data import demo_cell_id
from fetcher.v1 import feature_service_pb2 as pb
from tests.e2e.conftest import E2EData, RunningServer, tool
from tests.e2e.core import now_ms
from tests.e2e.extras import DAY_MS, HOUR_MS, USER_VERSIONS, version_times
from tests.e2e.truth import RowState

SERVICE = "fetcher.v1.FeatureService"


@pytest.fixture(scope="module")
def server(embedded_server: RunningServer) -> RunningServer:
    """This module's server: the embedded-store one."""
    return embedded_server


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def grpcurl(
    server: RunningServer, *args: str, data: Any = None
) -> subprocess.CompletedProcess[str]:
    """grpcurl -plaintext against `server`; `data` is sent as the JSON request (-d)."""
    request = ["-d", json.dumps(data)] if data is not None else []
    return _run(str(tool("grpcurl")), "-plaintext", *request, server.target, *args)


def _json_keys(keys: dict[str, KeyInput]) -> dict[str, Any]:
    # Proto JSON: int64 as a string, as grpcurl's own output writes it.
    return {
        name: {"int64_value": str(v)} if isinstance(v, int) else {"string_value": v}
        for name, v in keys.items()
    }


def _rfc3339(ms: int) -> str:
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds") + "Z"


def test_health_probe_reports_serving(server: RunningServer) -> None:
    for extra in ((), ("-service", SERVICE)):
        result = _run(str(tool("grpc_health_probe")), "-addr", server.target, *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "status: SERVING" in result.stdout + result.stderr


def test_grpcurl_lists_the_services(server: RunningServer) -> None:
    result = grpcurl(server, "list")
    assert result.returncode == 0, result.stderr
    services = result.stdout.split()
    assert SERVICE in services
    assert "grpc.health.v1.Health" in services
    assert any(s.startswith("grpc.reflection.") for s in services), services


def test_grpcurl_describes_the_feature_service(server: RunningServer) -> None:
    result = grpcurl(server, "describe", SERVICE)
    assert result.returncode == 0, result.stderr
    assert f"{SERVICE} is a service:" in result.stdout
    for method in ("GetFeatures", "GetBatchFeatures"):
        assert (
            f"rpc {method} ( .fetcher.v1.{method}Request ) returns "
            f"( .fetcher.v1.{method}Response );"
        ) in result.stdout
    assert "rpc ListFeatureGroups" in result.stdout
    message = grpcurl(server, "describe", "fetcher.v1.GetFeaturesRequest")
    assert message.returncode == 0, message.stderr
    assert "map<string, .fetcher.v1.Value> keys = 3;" in message.stdout


@pytest.mark.parametrize(
    ("target", "name", "keys"),
    [
        ("feature_service", "user_merchant", {"user_id": 42, "merchant_id": 7}),
        ("feature_service", "user_merchant", {"user_id": USER_VERSIONS, "merchant_id": 995}),
        (
            "feature_service",
            "user_place",
            {"user_id": 10, "cell_id": demo_cell_id(70 % 64), "place_id": "place-00070"},
        ),
        ("feature_group", "user_profile", {"user_id": 10001}),
    ],
)
def test_grpcurl_get_features_returns_the_rows(
    server: RunningServer, e2e_data: E2EData, target: str, name: str, keys: dict[str, KeyInput]
) -> None:
    read = now_ms()
    result = grpcurl(
        server, f"{SERVICE}/GetFeatures", data={target: name, "keys": _json_keys(keys)}
    )
    assert result.returncode == 0, result.stderr
    response = json_format.Parse(result.stdout, pb.GetFeaturesResponse())
    row = decode_vectors(response.metadata, [response.vector])[0]
    kind = "service" if target == "feature_service" else "group"
    e2e_data.truth.check(row, keys, read, **{kind: name})


def test_grpcurl_batch_with_times(server: RunningServer, e2e_data: E2EData) -> None:
    now = e2e_data.now_ms
    _, t2, _ = version_times(now)
    entities: list[tuple[dict[str, KeyInput], int | None]] = [
        ({"user_id": 10, "merchant_id": 10}, None),
        ({"user_id": USER_VERSIONS, "merchant_id": 10}, t2),
        ({"user_id": 10001, "merchant_id": 3}, None),
    ]
    request_at = now - 2 * HOUR_MS
    data = {
        "feature_service": "user_merchant",
        "at": _rfc3339(request_at),
        "entities": [
            {"keys": _json_keys(keys), **({"at": _rfc3339(at)} if at is not None else {})}
            for keys, at in entities
        ],
    }
    result = grpcurl(server, f"{SERVICE}/GetBatchFeatures", data=data)
    assert result.returncode == 0, result.stderr
    response = json_format.Parse(result.stdout, pb.GetBatchFeaturesResponse())
    rows = decode_vectors(response.metadata, response.vectors)
    outcomes = [
        e2e_data.truth.check(row, keys, request_at if at is None else at, service="user_merchant")
        for (keys, at), row in zip(entities, rows, strict=True)
    ]
    assert outcomes[0]["user_profile"].event_ms == now - 3 * DAY_MS
    assert outcomes[1]["user_profile"].event_ms == t2
    assert outcomes[2]["user_profile"].state is RowState.NOT_FOUND


def test_grpcurl_shows_the_error_code_and_message(server: RunningServer) -> None:
    result = grpcurl(
        server,
        f"{SERVICE}/GetFeatures",
        data={"feature_service": "user_merchant", "keys": _json_keys({"user_id": 1})},
    )
    assert result.returncode != 0
    assert "Code: InvalidArgument" in result.stderr
    assert "Message: keys: missing key 'merchant_id'" in result.stderr
