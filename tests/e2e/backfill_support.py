"""Helpers for tests/e2e/test_backfill.py: the groups, generated events and rows, the
backfill's arguments, and store snapshots to compare two writers' bytes.

- `Events`: raw events of the aggregation group at real epoch times, with the truth the
  oracle (tests/unit/aggregation/log_model.py) reads;
- `redis_snapshot`: every key under a prefix, by type, with its content (the bytes);
- `log_snapshot`: what the store API reads of every key's log and batch-end marker (any
  backend), to compare a Cassandra store with a Redis one.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetcher.batch import add_backfill_arguments
from fetcher.codec import key_encoder
from fetcher.types import AggregationSpec, FeatureGroup
from kvstores import KVStore, LogLookup
from tests.e2e.aggregation_support import group_json
from tests.unit.aggregation.log_model import ApproxPercentiles, close, expected

AGG_GROUP = "bf_agg"
PLAIN_GROUP = "bf_plain"
# Real epoch times (the load's checks refuse times before 1973): seconds from BASE.
BASE = 1_750_000_000_000
SECOND = 1000
END = BASE + 250 * SECOND
MAX_TS = 2**53 - 1

PLAIN_SCHEMA = {
    "type": "record", "name": "BfPlain", "namespace": "fetcher.e2e.backfill",
    "fields": [
        {"name": "clicks", "type": "long"},
        {"name": "page", "type": "string"},
        {"name": "score", "type": ["null", "double"], "default": None},
    ],
}  # fmt: skip


def write_config(root: Path, tag: str, spec: AggregationSpec) -> Path:
    """A config directory with the aggregation group and the stored-row group."""
    groups = root / "groups"
    groups.mkdir(parents=True, exist_ok=True)
    (groups / f"{AGG_GROUP}.json").write_text(
        json.dumps(group_json(AGG_GROUP, f"bfagg_{tag}", spec)), encoding="utf-8")
    (groups / f"{PLAIN_GROUP}.avsc").write_text(json.dumps(PLAIN_SCHEMA), encoding="utf-8")
    (groups / f"{PLAIN_GROUP}.json").write_text(json.dumps({
        "name": PLAIN_GROUP, "store": "main", "dataset": f"bfplain_{tag}",
        "keys": [{"name": "device_id", "type": "string"}], "schema": f"{PLAIN_GROUP}.avsc",
        "online": True, "cache": {"l1": False, "l2": False},
    }), encoding="utf-8")
    return root


def write_settings(path: Path, config_dir: Path, store_url: str, port: int = 1) -> Path:
    """Settings naming one store `main`."""
    path.write_text("\n".join([
        "[server]", f'listen = "127.0.0.1:{port}"', f"config_dir = {json.dumps(str(config_dir))}",
        'metrics_listen = ""', "drain_delay_s = 0.0", "shutdown_grace_s = 2.0", "",
        "[stores.main]", f"url = {json.dumps(store_url)}", "timeout_ms = 10000", "",
    ]), encoding="utf-8")
    return path


def backfill_args(settings: Path, group: str, source: Path | str,
                  *extra: str) -> argparse.Namespace:
    """The parsed arguments of `fetcher backfill` (what the CLI hands run_backfill)."""
    parser = argparse.ArgumentParser()
    add_backfill_arguments(parser)
    return parser.parse_args(["--settings", str(settings), "--group", group, "--source",
                              str(source), "--end", str(END), *extra])


@dataclass
class Events:
    """Raw events per user: (ts, id, values); `rows` as written to the files."""

    by_user: dict[int, list[tuple[int, str, dict[str, Any]]]]
    rows: list[dict[str, Any]]


def make_events(seed: int, users: int, per_user: int, *, first_user: int = 1) -> Events:
    """Events at distinct times per user (ties would leave first/last to the file order),
    some before the end, some after; values sometimes null or absent."""
    rng = random.Random(seed)
    by_user: dict[int, list[tuple[int, str, dict[str, Any]]]] = {}
    rows: list[dict[str, Any]] = []
    for user in range(first_user, first_user + users):
        stamps = rng.sample(range(0, 400), rng.randint(0, per_user))
        events = []
        for n, second in enumerate(stamps):
            values: dict[str, Any] = {}
            if rng.random() < 0.9:
                values["amount"] = rng.choice([None, rng.randint(-1000, 1000)])
            if rng.random() < 0.9:
                values["x"] = rng.choice([None, round(rng.uniform(-1e3, 1e3), 3)])
            if rng.random() < 0.9:
                values["s"] = rng.choice([None, "a", "b", "c", "dd"])
            ts = BASE + second * SECOND
            ident = f"e{n}"
            events.append((ts, ident, values))
            row = {"user_id": user, "event_time": ts, **values}
            if rng.random() < 0.8:
                row["id"] = ident  # the others get a hash of the event as their id
            rows.append(row)
        by_user[user] = events
    rng.shuffle(rows)
    return Events(by_user, rows)


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]], bad: Sequence[str] = ()) -> Path:
    """JSON Lines of `rows`, then the `bad` lines as given."""
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
        for line in bad:
            out.write(line + "\n")
    return path


def redis_snapshot(url: str, prefix: str) -> dict[bytes, Any]:
    """Every key under `prefix` (the prefix cut off) with its type, content and whether it
    expires: two writers that wrote the same bytes have equal snapshots."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        out: dict[bytes, Any] = {}
        for key in client.scan_iter(match=f"{prefix}:*".encode(), count=1000):
            kind = client.type(key)
            if kind == b"zset":
                content: Any = client.zrange(key, 0, -1, withscores=True)
            elif kind == b"hash":
                content = sorted(client.hgetall(key).items())
            elif kind == b"string":
                content = client.get(key)
            elif kind == b"list":
                content = client.lrange(key, 0, -1)
            elif kind == b"set":
                content = sorted(client.smembers(key))
            else:
                content = kind
            out[key[len(prefix) + 1:]] = (kind, content, client.ttl(key) >= 0)
        return out
    finally:
        client.close()


async def log_snapshot(store: KVStore, group: FeatureGroup,
                       users: Sequence[int]) -> list[Any]:
    """Each user's whole log as the store API reads it, and its batch-end marker."""
    encode = key_encoder(group.keys)
    keys = [encode([u]) for u in users]
    lookups: list[LogLookup] = [(group.dataset, k, 0, MAX_TS, 100_000) for k in keys]
    reads = await store.read_logs(lookups)
    markers = await store.multi_get([(group.dataset, k, None) for k in keys])
    return [(r.batch, r.events, r.truncated, m) for r, m in zip(reads, markers, strict=True)]


def check_against_oracle(group: FeatureGroup, spec: AggregationSpec, events: Events,
                         snapshot: Sequence[Any], users: Sequence[int], ats: Sequence[int],
                         where: str) -> int:
    """The engine's features from each user's log read equal brute force over its raw
    events at every `at` (reads start at the batch end or later); how many were checked."""
    from fetcher.load._events import aggregation_of

    agg = aggregation_of(group)
    checked = 0
    for user, (batch, log_events, truncated, _) in zip(users, snapshot, strict=True):
        assert not truncated
        raw = events.by_user.get(user, [])
        has_part = any(ts < END for ts, _, _ in raw)
        assert (batch is not None) == has_part, (where, user, batch)
        for at in ats:
            # What a read of (scan start, at) finds: the events of the range, newest first,
            # down to the batch part (the log read covers every time).
            lo = agg.scan_start(at)
            seen = [e for e in log_events if lo <= e[0] <= at]
            part = batch if batch is not None and batch[0] <= at else None
            got = agg.compute(part, seen, at)
            want = expected(spec, raw, at, has_batch=part is not None)
            if want is None:
                assert got is None, (where, user, at)
                continue
            assert got is not None, (where, user, at)
            for feature, value, status, wanted in zip(spec.features, got.values, got.statuses,
                                                      want, strict=True):
                if isinstance(wanted, ApproxPercentiles) and not wanted.values:
                    wanted = None
                assert status == ("null" if wanted is None else "present"), (
                    where, user, at, feature.name, value, wanted)
                if wanted is not None:
                    assert close(value, wanted), (where, user, at, feature.name, value, wanted)
            checked += 1
    return checked
