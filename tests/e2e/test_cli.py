"""The `fetcher` command against the running embedded server: get, list, validate, load."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fetcher.client import KeyInput
from fetcher.demo._data import demo_cell_id
from fetcher.types import FeatureType, Status
from tests.e2e.conftest import CONFIG_DIR, E2EData, RunningServer, run_fetcher, write_settings
from tests.e2e.core import now_ms
from tests.e2e.extras import DAY_MS, HOUR_MS, USER_VERSIONS
from tests.e2e.truth import ExpectedFeature, Observed, RowState

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def server(embedded_server: RunningServer) -> RunningServer:
    """This module's server: the embedded-store one."""
    return embedded_server


def _get(server: RunningServer, target: str, keys: dict[str, Any], *extra: str) -> Any:
    args = ["get", "--target", server.target, *target.split()]
    for name, value in keys.items():
        args += ["--key", f"{name}={value}"]
    return run_fetcher(*args, *extra)


def _iso(ms: int) -> str:
    return (_EPOCH + dt.timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def _table_text(feature: ExpectedFeature) -> str:
    """How the table shows a value: rounded doubles, 0x-hex bytes, Python lists."""
    if feature.status is not Status.PRESENT:
        return ""

    def shown(value: Any) -> Any:
        if isinstance(value, bytes):
            return "0x" + value.hex()
        if isinstance(value, float):
            return round(value, 6)
        if isinstance(value, list):
            return [shown(v) for v in value]
        return value

    return str(shown(feature.value))


def test_get_prints_every_value(server: RunningServer, e2e_data: E2EData) -> None:
    keys: dict[str, KeyInput] = {"user_id": 42, "merchant_id": 7}
    read = now_ms()
    result = _get(server, "--service user_merchant", keys)
    assert result.returncode == 0, result.stderr
    features, outcomes = e2e_data.truth.expected(keys, read, service="user_merchant")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("user_merchant  (config ")
    for group, outcome in outcomes.items():
        assert f"  {group:<24} event time {_iso(outcome.event_ms)}" in lines
    rows = {}
    for line in lines:
        parts = line.split(None, 3)
        if parts and parts[0] in {f.name for f in features}:
            rows[parts[0]] = [*parts, ""][1:4]
    assert list(rows) == [f.name for f in features]
    for feature in features:
        assert rows[feature.name] == [
            feature.type.name, feature.status.name, _table_text(feature)
        ], feature.name
    assert outcomes["user_profile"].state is RowState.PRESENT


def _observed(text: str) -> Observed:
    out = json.loads(text)
    features: dict[str, tuple[FeatureType, Status, Any]] = {}
    for name, item in out["features"].items():
        kind = FeatureType[item["type"]]
        value = item["value"]
        if kind is FeatureType.BYTES:
            assert value.startswith("0x")
            value = bytes.fromhex(value[2:])
        features[name] = (kind, Status[item["status"]], value)
    return Observed(features=features, event_ms=out["event_timestamps_ms"], groups={})


@pytest.mark.parametrize(
    ("target", "keys"),
    [
        ("--service user_merchant", {"user_id": 42, "merchant_id": 7}),
        # Extreme doubles (subnormal, max, 0.1 + 0.2): JSON output must keep every digit.
        ("--service user_merchant", {"user_id": USER_VERSIONS, "merchant_id": 1}),
        ("--service user_merchant", {"user_id": 9991, "merchant_id": 1001}),
        ("--group place_visits", {"s2_cell_id": demo_cell_id(5), "place_id": "place-00005"}),
        (
            "--service user_place",
            {"user_id": 30, "cell_id": demo_cell_id(70 % 64), "place_id": "place-00070"},
        ),
    ],
)
def test_get_json_matches_the_rows(
    server: RunningServer, e2e_data: E2EData, target: str, keys: dict[str, KeyInput]
) -> None:
    read = now_ms()
    result = _get(server, target, keys, "--json")
    assert result.returncode == 0, result.stderr
    kind, name = target.removeprefix("--").split()
    e2e_data.truth.check(_observed(result.stdout), keys, read, **{kind: name})


def test_get_at_reads_the_older_version(server: RunningServer, e2e_data: E2EData) -> None:
    at_ms = e2e_data.now_ms - 2 * HOUR_MS
    for at in (_iso(at_ms).replace("+00:00", "Z"), str(at_ms)):
        result = _get(server, "--group user_profile", {"user_id": 10}, "--at", at, "--json")
        assert result.returncode == 0, result.stderr
        outcome = e2e_data.truth.check(
            _observed(result.stdout), {"user_id": 10}, at_ms, group="user_profile"
        )
        assert outcome["user_profile"].event_ms == e2e_data.now_ms - 3 * DAY_MS


@pytest.mark.parametrize(
    ("keys", "target", "message"),
    [
        (
            {"user_id": "abc", "merchant_id": 7},
            "--service user_merchant",
            "--key 'user_id=abc': key 'user_id' expects an int64, got 'abc'",
        ),
        (
            {"user": 1, "merchant_id": 7},
            "--service user_merchant",
            "--key 'user': user_merchant has keys user_id, merchant_id",
        ),
        (
            {"user_id": 1},
            "--service user_merchant",
            "fetcher get: INVALID_ARGUMENT: keys: missing key 'merchant_id'",
        ),
        ({"user_id": 1}, "--service nope", "fetcher get: NOT_FOUND: name: "),
        ({"user_id": 1}, "--service user_profile", "--service 'user_profile': the server has"),
    ],
)
def test_get_bad_input_fails_with_a_message(
    server: RunningServer, keys: dict[str, KeyInput], target: str, message: str
) -> None:
    result = _get(server, target, keys)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_list_shows_groups_services_and_features(
    server: RunningServer, e2e_data: E2EData
) -> None:
    catalog = e2e_data.truth.catalog
    result = run_fetcher("list", "--target", server.target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"config {catalog.version}\n")
    for name, group in catalog.groups.items():
        keys = ", ".join(f"{k.name}:{k.type.name.lower()}" for k in group.keys)
        assert f"group {name}  keys: {keys}  ({len(group.features)} features)" in result.stdout
    assert "service user_merchant  keys: user_id:int64, merchant_id:int64  (44 features)" in (
        result.stdout
    )
    assert (
        "service user_place  keys: user_id:int64, cell_id:int64, place_id:string  (29 features)"
    ) in result.stdout
    one = run_fetcher("list", "--target", server.target, "user_place")
    assert one.returncode == 0, one.stderr
    features, _ = e2e_data.truth.expected(
        {"user_id": 1, "cell_id": 1, "place_id": "x"}, now_ms(), service="user_place"
    )
    listed = [line.split() for line in one.stdout.splitlines() if line.startswith("  ")]
    assert listed == [[f.name, f.type.name] for f in features]


def test_validate_accepts_the_demo_catalog() -> None:
    result = run_fetcher("validate", "config/demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: config/demo: version ")
    assert result.stdout.rstrip().endswith("3 feature groups, 2 feature services")


def _set(path: str, field: str, value: Any) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        data = json.loads((root / path).read_text())
        target = data
        *parents, last = field.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
        (root / path).write_text(json.dumps(data))

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("groups/merchant_stats.json", "max_age_seconds", "two days"),
         "groups/merchant_stats.json: max_age_seconds: "),
        (_set("services/user_place.json", "joins.1.group", "place_visit"),
         "services/user_place.json: joins[1].group: unknown group 'place_visit'"),
        (lambda root: (root / "groups/user_profile.json").write_text('{"name": '),
         "groups/user_profile.json: line 1 column 10: not valid JSON"),
    ],
)
def test_validate_rejects_a_broken_catalog(
    tmp_path: Path, edit: Callable[[Path], None], expected: str
) -> None:
    broken = tmp_path / "catalog"
    shutil.copytree(CONFIG_DIR, broken)
    edit(broken)
    result = run_fetcher("validate", str(broken))
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_load_reports_the_line_of_a_bad_row(tmp_path: Path, e2e_data: E2EData) -> None:
    settings = write_settings(
        tmp_path / "settings.toml", port=1, store_url=f"embedded://{tmp_path}/load.lmdb"
    )
    demo_lines = e2e_data.files["merchant_stats"][0].read_text().splitlines()[:3]
    bad = json.loads(demo_lines[1])
    bad["orders_7d"] = "many"
    jsonl = tmp_path / "merchants.jsonl"
    jsonl.write_text("\n".join([demo_lines[0], json.dumps(bad), demo_lines[2]]) + "\n")
    result = run_fetcher("load", "--settings", str(settings), "--group", "merchant_stats",
                         str(jsonl))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 read, 2 written, 1 rejected" in result.stderr
    assert "  line 2: orders_7d: " in result.stdout

    with open(e2e_data.files["user_profile"][0], newline="", encoding="utf-8") as fh:
        rows = [row for _, row in zip(range(4), csv.reader(fh), strict=False)]
    rows[2][rows[0].index("is_verified")] = "maybe"  # file line 3 (line 1 is the header)
    users = tmp_path / "users.csv"
    with open(users, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    result = run_fetcher("load", "--settings", str(settings), "--group", "user_profile", str(users))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 read, 2 written, 1 rejected" in result.stderr
    assert "  line 3: is_verified: " in result.stdout


def test_get_into_a_pipe_closed_early_exits_quietly(server: RunningServer) -> None:
    """`fetcher get ... | true`: the reader is gone before the first write; no traceback."""
    from tests.e2e.conftest import FETCHER, REPO, fetcher_env

    shell = (
        f"{FETCHER} get --target {server.target} --service user_merchant "
        "--key user_id=42 --key merchant_id=7 | true; exit ${PIPESTATUS[0]}"
    )
    result = subprocess.run(
        ["bash", "-c", shell], cwd=REPO, env=fetcher_env(), capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
