"""Feast's APIs on our server ([feast] settings), answered over the rows the real Feast wrote.

The world (tests/integration/feast_support.py, shared with test_feast_redis.py) is Feast's
repo applied, materialized and written by Feast itself, with Feast's own
get_online_features answers. Our server (fetcher's App, in a thread) serves the repo; then:

- our answers through ServingService (our stubs), through Feast's own generated stubs of
  ServingService and `feast listen`'s GrpcFeatureServer (in Feast's venv, read back by
  Feast's OnlineResponse), and through `POST /get-online-features` (Feast's documented
  JSON) equal Feast's read name for name, value for value (in the Value member Feast
  uses) and status for status: a missing entity is NOT_FOUND where Feast says PRESENT with
  an empty value, a null NULL_VALUE, a row past the view's TTL OUTSIDE_MAX_AGE where
  Feast serves it PRESENT; event times equal to the millisecond;
- bad requests are INVALID_ARGUMENT (HTTP 422) naming the field, unknown names NOT_FOUND
  (HTTP 404 with Feast's error detail);
- `feast apply` adding a feature is served without a restart; a broken registry.db is
  refused and the old registry keeps serving.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fetcher.feast.proto.serving import serving_service_pb2 as sv
from fetcher.feast.proto.serving import serving_service_pb2_grpc as sv_grpc
from fetcher.feast.proto.types import value_pb2
from tests.feast_env import run_feast, run_side
from tests.integration.feast_support import TTL_S, FeastServer, World, feast_reads

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE = (
    sv.PRESENT, sv.NULL_VALUE, sv.NOT_FOUND, sv.OUTSIDE_MAX_AGE)
STATUS_OF_NAME = {sv.FieldStatus.Name(v): v for v in sv.FieldStatus.values()}
BYTES_KINDS = ("bytes_val", "bytes_list_val")


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[FeastServer]:
    """Our server over the world's Feast repo."""
    with FeastServer(world.repo) as server:
        yield server


def _body(read: dict[str, Any]) -> dict[str, Any]:
    """A read as Feast's documented JSON request (entities as columns)."""
    body: dict[str, Any] = {
        "entities": {k: [row[k] for row in read["entity_rows"]] for k in read["entity_rows"][0]},
        "full_feature_names": read.get("full_feature_names", False),
    }
    if "feature_service" in read:
        body["feature_service"] = read["feature_service"]
    else:
        body["features"] = read["features"]
    return body


def _request(body: dict[str, Any]) -> Any:
    """Feast's JSON request as the GetOnlineFeaturesRequest a Feast client sends."""
    request = sv.GetOnlineFeaturesRequest(full_feature_names=body.get("full_feature_names", False))
    if "feature_service" in body:
        request.feature_service = body["feature_service"]
    else:
        request.features.val.extend(body["features"])
    for key, values in body["entities"].items():
        request.entities[key].val.extend(
            value_pb2.Value(**{"string_val" if isinstance(v, str) else "int64_val": v})
            for v in values)
    return request


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _proto_answer(response: Any) -> dict[str, Any]:
    """Our response in feast_side.py's shape (without "null": only Feast's helper says it)."""
    columns = []
    for result in response.results:
        cells = []
        for value, status, ts in zip(
            result.values, result.statuses, result.event_timestamps, strict=True
        ):
            kind = value.WhichOneof("val")
            raw = None if kind is None else getattr(value, kind)
            if kind is not None and kind.endswith("_list_val"):
                raw = list(raw.val)
            cells.append({"status": status, "kind": kind, "value": _jsonable(raw),
                          "ts": [ts.seconds, ts.nanos]})
        columns.append(cells)
    return {"names": list(response.metadata.feature_names.val), "columns": columns}


def _ms(ts: list[int]) -> int:
    return ts[0] * 1000 + ts[1] // 1_000_000


def _stale(ts: list[int]) -> bool:
    return dt.datetime.now(dt.UTC).timestamp() - (ts[0] + ts[1] / 1e9) > TTL_S


def assert_like_feast(
    feast: dict[str, Any], ours: dict[str, Any], where: str, *, kinds: bool = True,
    seen: dict[int, int] | None = None,
) -> None:
    """Every cell of `ours` is Feast's, but for the statuses Feast does not set (above).

    Columns are matched by name: Feast orders a view's features of a feature list by a
    set's iteration order, which changes from process to process.
    """
    assert sorted(ours["names"]) == sorted(feast["names"]), where
    by_name = dict(zip(ours["names"], ours["columns"], strict=True))
    for name, f_column in zip(feast["names"], feast["columns"], strict=True):
        o_column = by_name[name]
        assert len(o_column) == len(f_column), (where, name)
        for row, (f, o) in enumerate(zip(f_column, o_column, strict=True)):
            at = f"{where}: {name!r}, entity row {row}: Feast {f}, ours {o}"
            assert f["status"] == PRESENT, at  # Feast's Redis reads: always PRESENT
            if f["ts"] == [0, 0] and not f["null"]:  # an entity column, echoed
                expected = PRESENT
            elif f["ts"] == [0, 0]:
                expected = NOT_FOUND
            elif _stale(f["ts"]):
                expected = OUTSIDE_MAX_AGE
            elif f["null"]:
                expected = NULL_VALUE
            else:
                expected = PRESENT
            assert o["status"] == expected, at
            assert _ms(o["ts"]) == _ms(f["ts"]), at
            if seen is not None:
                seen[expected] = seen.get(expected, 0) + 1
            if expected == PRESENT:
                assert o["value"] == f["value"], at
                if kinds:
                    assert o["kind"] == f["kind"], at
            else:
                assert o["value"] is None, at
                if kinds:
                    assert o["kind"] is None, at


def _all_statuses(seen: dict[int, int]) -> None:
    assert seen.keys() == {PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE}, seen
    assert seen[PRESENT] > 400, seen


def test_serving_service_answers_equal_feasts_own_read(world: World, served: FeastServer) -> None:
    seen: dict[int, int] = {}
    with grpc.insecure_channel(served.target) as channel:
        stub = sv_grpc.ServingServiceStub(channel)
        for read in feast_reads():
            response = stub.GetOnlineFeatures(_request(_body(read)), timeout=30)
            assert_like_feast(world.feast[read["name"]], _proto_answer(response),
                              f"{world.backend} {read['name']}", seen=seen)
    _all_statuses(seen)


def test_feasts_own_stubs_read_us(world: World, served: FeastServer) -> None:
    steps: list[dict[str, Any]] = [{"op": "info", "name": "info", "target": served.target}]
    for service in ("ServingService", "GrpcFeatureServer"):
        steps += [{**read, "op": "grpc", "name": f"{service}/{read['name']}",
                   "target": served.target, "service": service} for read in feast_reads()]
    answers = run_side(world.repo, steps)["reads"]
    assert answers.pop("info")["version"].startswith("feature-fetcher")
    seen: dict[int, int] = {}
    for name, answer in answers.items():
        feast = world.feast[name.partition("/")[2]]
        assert_like_feast(feast, answer, f"{world.backend} {name}", seen=seen)
        # Feast's OnlineResponse reads a value exactly where we say PRESENT.
        for column in answer["columns"]:
            for cell in column:
                assert cell["null"] == (cell["status"] != PRESENT), (name, cell)
    _all_statuses(seen)


def _post(served: FeastServer, body: Any, path: str = "/get-online-features",
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        served.http + path, data=data, method="POST",
        headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _parse_time(text: str) -> list[int]:
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    micros = (stamp - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return [micros // 1_000_000, micros % 1_000_000 * 1000]


def _http_answer(body: dict[str, Any], feast: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer in feast_side.py's shape; bytes (base64 in JSON) as hex."""
    columns = []
    feast_of = dict(zip(feast["names"], feast["columns"], strict=True))
    names = body["metadata"]["feature_names"]
    for name, result in zip(names, body["results"], strict=True):
        f_column = feast_of[name]
        cells = []
        for value, status, ts, f in zip(result["values"], result["statuses"],
                                        result["event_timestamps"], f_column, strict=True):
            if f["kind"] == "bytes_val" and value is not None:
                value = base64.b64decode(value).hex()
            elif f["kind"] == "bytes_list_val" and value is not None:
                value = [base64.b64decode(v).hex() for v in value]
            cells.append({"status": STATUS_OF_NAME[status], "kind": None, "value": value,
                          "ts": _parse_time(ts)})
        columns.append(cells)
    return {"names": body["metadata"]["feature_names"], "columns": columns}


def test_http_answers_equal_feasts_own_read(world: World, served: FeastServer) -> None:
    seen: dict[int, int] = {}
    for read in feast_reads():
        status, answer = _post(served, _body(read))
        assert status == 200, answer
        feast = world.feast[read["name"]]
        assert_like_feast(feast, _http_answer(answer, feast),
                          f"{world.backend} HTTP {read['name']}", kinds=False, seen=seen)
    _all_statuses(seen)


def test_bad_requests_name_the_field(world: World, served: FeastServer) -> None:
    users = {"user_id": [1, 2]}
    cases: list[tuple[dict[str, Any], grpc.StatusCode, int, str]] = [
        ({"features": ["pushed:i64"], "entities": {}}, grpc.StatusCode.INVALID_ARGUMENT, 422,
         "entities: missing join key(s) 'user_id'"),
        ({"features": ["pushed"], "entities": users}, grpc.StatusCode.INVALID_ARGUMENT, 422,
         "features.val[0]: 'pushed' is not a '<feature view>:<feature>' reference"),
        ({"features": ["nope:x"], "entities": users}, grpc.StatusCode.NOT_FOUND, 404,
         "features.val[0]: feature view 'nope' is not served"),
        ({"features": ["pushed:i64", "pushed:nope"], "entities": users},
         grpc.StatusCode.NOT_FOUND, 404, "features.val[1]: feature view 'pushed' has no "
         "feature 'nope'"),
        ({"feature_service": "nope", "entities": users}, grpc.StatusCode.NOT_FOUND, 404,
         "feature_service: 'nope' is not a served feature service"),
        ({"features": ["pushed:i64"], "entities": {"user_id": ["x"]}},
         grpc.StatusCode.INVALID_ARGUMENT, 422, "entities['user_id'][0]: expected int64_val"),
        ({"features": ["pushed:i64", "materialized:i64"],
          "entities": {**users, "driver_id": [1, 2], "city": ["a", "b"]}},
         grpc.StatusCode.INVALID_ARGUMENT, 422, "feature name(s) i64 requested more than once"),
        ({"features": ["materialized:i64"],
          "entities": {"driver_id": [1, 2], "city": ["a"]}},
         grpc.StatusCode.INVALID_ARGUMENT, 422, "values where the other join keys have"),
    ]
    with grpc.insecure_channel(served.target) as channel:
        stub = sv_grpc.ServingServiceStub(channel)
        for body, code, http_status, message in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetOnlineFeatures(_request(body), timeout=30)
            assert caught.value.code() == code, (body, caught.value.details())
            assert message in (caught.value.details() or ""), (body, caught.value.details())
            status, answer = _post(served, body)
            assert status == http_status, (body, answer)
            if http_status == 404:  # Feast's error detail: a JSON string
                detail = json.loads(answer)
                assert set(detail) == {"module", "class", "message"}
                assert message in detail["message"]
            else:
                (item,) = answer["detail"]
                assert message in item["msg"], (body, answer)
                assert item["loc"][0] == "body"
    status, answer = _post(served, b"{not json")
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "body"]


@pytest.mark.parametrize("world", ["redis"], indirect=True)
def test_authorization_covers_feasts_apis(world: World) -> None:
    from fetcher.config import AuthzClient

    token = "feast-reader-token"
    client = AuthzClient(name="reader", token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                         groups=("pushed",), services=("aliased",))
    allowed = [{"features": ["pushed:i64"], "entities": {"user_id": [3]}},
               {"feature_service": "aliased", "entities": {"customer_id": [3]}}]
    refused = [{"features": ["pushed:i64", "materialized:f64"],
                "entities": {"user_id": [3], "driver_id": [503], "city": ["city-0"]}},
               {"feature_service": "whole", "full_feature_names": True,
                "entities": {"user_id": [3], "driver_id": [503], "city": ["city-0"]}}]
    bearer = {"authorization": f"Bearer {token}"}
    with FeastServer(world.repo, authz={"reader": client}) as server, \
            grpc.insecure_channel(server.target) as channel:
        stub = sv_grpc.ServingServiceStub(channel)
        for body in allowed:
            stub.GetOnlineFeatures(_request(body), timeout=30, metadata=tuple(bearer.items()))
            assert _post(server, body, headers=bearer)[0] == 200
        for body in refused:
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetOnlineFeatures(_request(body), timeout=30,
                                       metadata=tuple(bearer.items()))
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "may not read feature" in (caught.value.details() or "")
            status, answer = _post(server, body, headers=bearer)
            assert status == 403 and "may not read feature" in answer["detail"], answer
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetOnlineFeatures(_request(allowed[0]), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _post(server, allowed[0])[0] == 401
        assert _post(server, allowed[0], headers={"authorization": "Bearer wrong"})[0] == 401


_EXTRA = '    schema=SCHEMA + [Field(name="extra", dtype=Int64)],\n    source=FileSource(\n' \
    '        name="pushed_source"'


def _wait_for(check: Any, what: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# The reload does not depend on the backend: on the Redis world only.
@pytest.mark.parametrize("world", ["redis"], indirect=True)
def test_feast_apply_of_a_new_feature_is_served_without_a_restart(
    world: World, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(world.repo, repo, ignore=shutil.ignore_patterns("fetcher-config"))
    definitions = repo / "definitions.py"
    source = definitions.read_text()
    old = '    schema=SCHEMA,\n    source=FileSource(\n        name="pushed_source"'
    assert old in source
    request = _request({"features": ["pushed:i64", "pushed:extra"],
                        "entities": {"user_id": [3]}})
    with FeastServer(repo, watch_interval_s=0.2) as server, \
            grpc.insecure_channel(server.target) as channel:
        stub = sv_grpc.ServingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetOnlineFeatures(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        definitions.write_text(source.replace(old, _EXTRA))
        run_feast(["apply"], repo)

        def served_now() -> Any:
            try:
                return stub.GetOnlineFeatures(request, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc.details()
                return None

        response = _wait_for(served_now, "the new feature to be served")
        assert list(response.metadata.feature_names.val) == ["user_id", "i64", "extra"]
        i64, extra = response.results[1], response.results[2]
        assert list(i64.statuses) == [PRESENT]
        # Feast wrote no value of the new feature: the row is there, the feature null.
        assert list(extra.statuses) == [NULL_VALUE]
        version = server.app._feast.current.version
        # A registry.db that is not a registry is refused; the one before keeps serving.
        (repo / "registry.db").write_bytes(b"not a registry")
        failed = server.app.metrics.reloads.labels("failed")
        _wait_for(lambda: failed._value.get() >= 1, "the broken registry to be refused")
        assert server.app._feast.current.version == version
        assert stub.GetOnlineFeatures(request, timeout=30).results[2].statuses == [NULL_VALUE]
