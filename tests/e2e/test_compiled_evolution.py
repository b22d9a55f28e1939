"""Schema evolution on a real store: v1 rows loaded with `fetcher load` and served; v2 adds
features with defaults and widens two (int32 -> int64, float -> double), compiled against the
output, which keeps the v1 schema; the server reloads and serves the v1 rows with the new
features at their defaults and the widened ones promoted, and v2 rows with their values; a
narrowing v3 is refused and leaves the output and the server as they were; the documented
migration (a new name, backfilled) moves the join to a new dataset."""

from __future__ import annotations

import json
import signal
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from fetcher.catalog import catalog_version
from fetcher.client import FeatureClient
from fetcher.types import FeatureType
from tests.e2e.compiled_support import (
    check_not_found,
    check_present,
    compile_cli,
    load_cli,
    run_cli,
    tree_bytes,
    write_jsonl,
)
from tests.e2e.conftest import FETCHER_MODULE, RunningServer, serving, write_settings
from tests.servers import free_port
from tests.unit.compiler.repo_support import write_repo

pytestmark = pytest.mark.e2e

GROUP = "risk.users.users"
RENAMED = "risk.users.users_v2"
SERVICE = "risk.scoring.scoring"
RELOAD_TIMEOUT_S = 30.0

JOIN = """
from group_bys.risk.users import users

scoring = Join(left={"user_id": "int64"}, right_parts=[JoinPart(users, prefix="u_")],
               online=True)
"""


def _users(columns: Mapping[str, str], *, name: str | None = None) -> str:
    """group_bys/risk/users.py with `columns` (feature -> its declaration) after the key."""
    decl = ", ".join(f'"{k}": {v}' for k, v in {"user_id": '"int64"', **columns}.items())
    return f"""
users = GroupBy(
    keys=["user_id"],
    sources=[EntitySource(snapshot_table="users",
                          query=Query(selects={["user_id", *columns]!r}),
                          columns={{{decl}}})],
    online=True,{f" name={name!r}," if name else ""}
)
"""


V1 = {"age": '"int64"', "score": '"double"', "visits": '"int32"', "ratio": '"float"'}
# v2 widens visits and ratio (rows hold int32 and float: Avro promotes them) and adds three
# features with defaults.
V2 = {**V1, "visits": '"int64"', "ratio": '"double"',
      "country": 'Column("string", nullable=True)', "tier": 'Column("int64", default=3)',
      "segment": 'Column("string", nullable=True, default="none")'}
V3 = {**V2, "score": '"float"'}  # a narrowing: rows hold doubles
TYPES = {"age": FeatureType.INT64, "score": FeatureType.DOUBLE, "visits": FeatureType.INT64,
         "ratio": FeatureType.DOUBLE, "country": FeatureType.STRING,
         "tier": FeatureType.INT64, "segment": FeatureType.STRING}


def _write_definitions(repo: Path, columns: Mapping[str, str], name: str | None = None) -> None:
    write_repo(repo, {"group_bys/risk/users.py": _users(columns, name=name),
                      "joins/risk/scoring.py": JOIN})


def _reload(server: RunningServer, client: FeatureClient, out: Path) -> None:
    """SIGHUP, then wait until the server logged the reload and answers with `out`'s catalog."""
    want = catalog_version(out)
    done = _reloads(server)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    seen = "none"
    while _reloads(server) == done or (seen := _version(client)) != want:
        assert "reload failed" not in server.log.read_text(), server.log_tail()
        assert time.monotonic() < deadline, (
            f"no reload to {want} {RELOAD_TIMEOUT_S} s after SIGHUP (serving {seen}):\n"
            f"{server.log_tail()}")
        time.sleep(0.2)


def _reloads(server: RunningServer) -> int:
    """How many reloads the server has logged."""
    return server.log.read_text().count('"msg": "reloaded config ')


def _version(client: FeatureClient) -> str:
    response = client.get_raw(keys={"user_id": 0}, service=SERVICE)
    return str(response.metadata.config_version)


Expected = Mapping[int, tuple[int, Mapping[str, Any]]]  # user -> (event ms, features)


def _check(client: FeatureClient, expected: Expected, features: list[str],
           group: str = GROUP) -> None:
    """Every user of `expected`, and an unwritten one, through the group and the join."""
    users = [*expected, 999]
    for group_name, service, prefix in ((group, None, ""), (None, SERVICE, "u_")):
        batch = client.get_batch([{"user_id": u} for u in users], group=group_name,
                                 service=service)
        for user, got_batch in zip(users, batch, strict=True):
            got_one = client.get(keys={"user_id": user}, group=group_name, service=service)
            for got in (got_one, got_batch):
                assert list(got) == [prefix + f for f in features], (group_name, service)
                for f in features:
                    if user in expected:
                        event_ms, values = expected[user]
                        check_present(got[prefix + f], values[f], event_ms, TYPES[f])
                    else:
                        check_not_found(got[prefix + f], TYPES[f])


@pytest.mark.timeout(300)
def test_evolution_sequence_on_a_real_store(tmp_path: Path) -> None:
    repo, out = tmp_path / "repo", tmp_path / "catalog"
    _write_definitions(repo, V1)
    compile_cli(repo, out)
    port = free_port()
    # No L1 cache: a row `fetcher load` replaces is served at once, not after the L1 TTL.
    settings = write_settings(tmp_path / "settings.toml", port=port, config_dir=out,
                              store_url=f"embedded://{tmp_path / 'store.lmdb'}",
                              cache={"l1_max_entries": 0})
    now_ms = time.time_ns() // 1_000_000
    t1, t2 = now_ms - 3_600_000, now_ms - 60_000

    # v1 rows, from CSV.
    v1_csv = tmp_path / "v1.csv"
    v1_csv.write_text("user_id,event_time,age,score,visits,ratio\n"
                      f"1,{t1},30,0.5,2147483647,0.1\n2,{t1},41,-2.25,-2147483648,-1.5\n",
                      encoding="utf-8")
    load_cli(settings, {GROUP: (v1_csv, 2)})
    float_01 = struct.unpack("<f", struct.pack("<f", 0.1))[0]  # 0.1 as the float it is stored as
    expected: dict[int, tuple[int, Mapping[str, Any]]] = {
        1: (t1, {"age": 30, "score": 0.5, "visits": 2**31 - 1, "ratio": float_01}),
        2: (t1, {"age": 41, "score": -2.25, "visits": -(2**31), "ratio": -1.5}),
    }

    with (serving("evolution", settings, port, tmp_path / "server.log",
                  command=FETCHER_MODULE) as server,
          FeatureClient(server.target, timeout_s=10.0) as client):
        _check(client, expected, ["age", "score", "visits", "ratio"])

        # v2: two features with defaults; the output keeps the v1 schema for the v1 rows.
        _write_definitions(repo, V2)
        compile_cli(repo, out)
        group_file = json.loads((out / "groups" / f"{GROUP}.json").read_text())
        assert group_file["previous_schemas"] == [f"{GROUP}.v1.avsc"], group_file
        _reload(server, client, out)
        features = ["age", "score", "visits", "ratio", "country", "tier", "segment"]
        defaults = {"country": None, "tier": 3, "segment": "none"}
        expected = {user: (t, {**values, **defaults})
                    for user, (t, values) in expected.items()}
        _check(client, expected, features)

        # v2 rows (JSONL): a v1 row replaced by a later one, a new one (segment null, not
        # its default), one at the defaults (the new features left out).
        v2_rows: list[dict[str, Any]] = [
            {"user_id": 2, "age": 42, "score": 3.5, "visits": 2**40, "ratio": 0.1,
             "country": "NO", "tier": 9, "segment": "gold"},
            {"user_id": 3, "age": 7, "score": 1.0, "visits": 0, "ratio": 0.0, "country": "SE",
             "tier": 0, "segment": None},
            {"user_id": 4, "age": 8, "score": 2.0, "visits": 1, "ratio": 1.0},
        ]
        load_cli(settings, {GROUP: (write_jsonl(tmp_path / "v2.jsonl", [
            {**row, "event_time": t2} for row in v2_rows]), 3)})
        for row in v2_rows:
            expected[row["user_id"]] = (t2, {**defaults, **row})
        _check(client, expected, features)

        # v3 narrows score: refused, naming the field and the fix; nothing written.
        before = tree_bytes(out)
        _write_definitions(repo, V3)
        refused = run_cli("compile", str(repo), "--out", str(out))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"{GROUP}: features.score: type changed from double to float" in refused.stderr
        assert "Fix: keep double or widen it" in refused.stderr
        assert f'name="{GROUP}_v2"' in refused.stderr, refused.stderr
        assert tree_bytes(out) == before
        _reload(server, client, out)  # the same catalog
        _check(client, expected, features)

        # The migration the error names: a new group (a new, empty dataset), backfilled
        # before the reload; the join follows it, its features keep their names.
        _write_definitions(repo, V3, name=RENAMED)
        compile_cli(repo, out)
        assert not (out / "groups" / f"{GROUP}.json").exists()
        load_cli(settings, {RENAMED: (write_jsonl(tmp_path / "v3.jsonl", [
            {"user_id": 5, "event_time": t2, "age": 50, "score": 0.25, "visits": 5,
             "ratio": 0.5, "country": "FI"},
        ]), 1)})
        _reload(server, client, out)
        _check(client, {5: (t2, {"age": 50, "score": 0.25, "visits": 5, "ratio": 0.5,
                                 "country": "FI", "tier": 3, "segment": "none"})},
               features, group=RENAMED)
        with pytest.raises(grpc.RpcError) as gone:
            client.get(keys={"user_id": 1}, group=GROUP)
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND, gone.value
