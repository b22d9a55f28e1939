"""An online GroupBy with aggregations, end to end: `fetcher compile` writes its aggregation
group, `fetcher load --events` its batch parts and later events into an embedded store,
and the real `fetcher serve` answers every window, now and at earlier times, with what the
events say, computed the slow obvious way; `fetcher load` of rows into it is refused."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from fetcher.aggregation import tile_start
from fetcher.catalog import load_catalog
from fetcher.client import FeatureClient
from fetcher.types import AggregationSpec, Status
from tests.e2e.compiled_support import compile_cli, run_cli, write_jsonl
from tests.e2e.conftest import FETCHER_MODULE, serving, write_settings
from tests.servers import free_port
from tests.unit.compiler.repo_support import write_repo

NAME = "risk.payments.payments"
PAYMENTS = """
payments = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.payments",
        query=Query(selects=["user_id", "amount", "items", "merchant"], time_column="ts"),
        columns={"user_id": "int64", "amount": "double", "items": "int32", "merchant": "string"},
    )],
    aggregations=[
        Aggregation("amount", Operation.SUM, windows=["1h", "1d", "7d"]),
        Aggregation("amount", Operation.COUNT, windows=None),
        Aggregation("items", Operation.MAX, windows=["2h", "3d"]),
        Aggregation("merchant", Operation.LAST_K, k=2, windows=["1d"]),
    ],
    online=True, ttl="30d",
)
"""
JOIN = """
from group_bys.risk.payments import payments

scoring = Join(left={"user_id": "int64"}, right_parts=[JoinPart(payments, prefix="p_")],
               online=True)
"""
DAY = 86_400_000
USERS = (1, 2, 3, 4)


def _expected(spec: AggregationSpec, events: list[dict[str, Any]], at: int) -> dict[str, Any]:
    """Each feature's value at `at` from the raw events (None: NULL_VALUE)."""
    out: dict[str, Any] = {}
    for f in spec.features:
        op = spec.operations[f.operation]
        start = 0 if f.window_ms is None else tile_start(max(at - f.window_ms, 0), op.hop_ms)
        covered = sorted((e for e in events if start <= e["event_time"] < at),
                         key=lambda e: e["event_time"])
        values = [e[op.column] for e in covered]
        if op.operation == "sum":
            out[f.name] = float(sum(values)) if values else None
        elif op.operation == "count":
            out[f.name] = len(values)
        elif op.operation == "max":
            out[f.name] = max(values, default=None)
        else:
            assert op.operation == "last_k" and op.k is not None
            out[f.name] = values[::-1][: op.k] or None  # newest first
    return out


def test_an_aggregation_group_compiles_loads_its_events_and_serves_its_windows(
    tmp_path: Path,
) -> None:
    repo = write_repo(tmp_path / "repo", {"group_bys/risk/payments.py": PAYMENTS,
                                          "joins/risk/scoring.py": JOIN})
    out = tmp_path / "catalog"
    compile_cli(repo, out)
    spec = load_catalog(out).groups[NAME].aggregation
    assert spec is not None
    now = time.time_ns() // 1_000_000
    batch_end = now - 2 * DAY
    rng = random.Random(14)
    times = rng.sample(range(now - 10 * DAY, now - 1000), 300)  # distinct: no ties
    events = [{"user_id": rng.choice(USERS[:-1]), "event_time": ts, "id": f"e{i}",
               "amount": float(rng.randrange(1000)), "items": rng.randrange(20),
               "merchant": f"m{rng.randrange(30)}"} for i, ts in enumerate(times)]
    port = free_port()
    settings = write_settings(tmp_path / "settings.toml", port=port, config_dir=out,
                              store_url=f"embedded://{tmp_path / 'store.lmdb'}")
    loaded = run_cli("load", "--settings", str(settings), "--group", NAME, "--events",
                     "--batch-end", str(batch_end),
                     str(write_jsonl(tmp_path / "events.jsonl", events)))
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    rows = run_cli("load", "--settings", str(settings), "--group", NAME,
                   str(tmp_path / "events.jsonl"))
    assert rows.returncode == 2
    assert f"group {NAME!r} is an aggregation group: load its events with `fetcher load " \
           "--events`" in rows.stderr

    reads = [now, now - DAY, batch_end, batch_end + 1, now - 3_600_000 - 1]
    with (serving("aggregations", settings, port, tmp_path / "server.log",
                  command=FETCHER_MODULE) as server,
          FeatureClient(server.target, timeout_s=10.0) as client):
        try:
            for user in USERS:
                mine = [e for e in events if e["user_id"] == user]
                for at in reads:
                    got = client.get(group=NAME, keys={"user_id": user}, at=at)
                    joined = client.get(service="risk.scoring.scoring", keys={"user_id": user},
                                        at=at)
                    if not mine:
                        assert {v.status for v in got.values()} == {Status.NOT_FOUND}
                        continue
                    want = _expected(spec, mine, at)
                    for name, value in want.items():
                        for feature in (got[name], joined[f"p_{name}"]):
                            where = f"user {user} at {at}: {feature.name}"
                            if value is None:
                                assert feature.status is Status.NULL_VALUE, where
                            else:
                                assert feature.status is Status.PRESENT, where
                                assert feature.value == value, where
        except Exception as exc:
            exc.add_note(f"server log:\n{server.log_tail()}")
            raise
