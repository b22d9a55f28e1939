"""Windowed aggregations through the real server on every backend, against brute force.

Events go in through PushEvents (retries included), batch parts through the batch
writer's own code (EventWriter.write_batch_parts, what `fetcher load --events` calls),
and every served value of every operation and window, read at generated times, must
equal a brute-force aggregation of the raw events (sketches within their bounds).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.catalog import load_catalog
from fetcher.client import FeatureClient
from fetcher.codec import key_encoder
from fetcher.load import EventWriter
from fetcher.types import FeatureGroup, Status
from tests.e2e.aggregation_support import (
    BACKENDS,
    SCALE,
    backend,
    batch_parts,
    new_tag,
    row_mismatches,
    scaled,
    store_loop,
    write_config,
)
from tests.e2e.conftest import FETCHER_MODULE, RunningServer, serving, write_settings
from tests.e2e.lifecycle_support import scrape
from tests.servers import free_port
from tests.unit.aggregation.log_model import expected
from tests.unit.aggregation.test_serving import SPEC as UNIT_SPEC

GROUP = "agg_fine"
_keys = itertools.count(1)
# The unit oracle's spec and times in seconds rather than ms: catalogs count whole seconds.
SPEC = scaled(UNIT_SPEC)


class Served:
    """A running server of one backend, the store it reads, and the group."""

    def __init__(
        self, server: RunningServer, loop: Any, group: FeatureGroup, metrics_port: int
    ) -> None:
        self.server = server
        self.metrics_port = metrics_port
        self.loop = loop
        self.group = group
        self.writer = EventWriter(group, loop.store)
        self.encode = key_encoder(group.keys)


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp(f"agg-{request.param}")
    tag = new_tag()
    where = backend(request.param, redis_url, workdir, tag)
    config = write_config(workdir / "config", [(GROUP, f"fine_{tag}", SPEC)])
    group = load_catalog(config).groups[GROUP]
    port = free_port()
    settings_path = write_settings(workdir / "settings.toml", port=port, store_url=where.url,
                                   config_dir=config)
    # A metrics endpoint, to see the batch part L1 (on by default) at work.
    metrics_port = free_port()
    text = settings_path.read_text().replace(
        'metrics_listen = ""', f'metrics_listen = "127.0.0.1:{metrics_port}"')
    settings_path.write_text(text)
    if request.param == "dynamodb":
        # moto answers one request at a time here (see aggregation_support): give a busy
        # machine's queue of pushes time rather than the 2 s of the other stores.
        text = settings_path.read_text().replace("timeout_ms = 2000", "timeout_ms = 20000")
        settings_path.write_text(text)
    try:
        with store_loop(where.url) as loop, serving(
            request.param, settings_path, port, workdir / "server.log", command=FETCHER_MODULE
        ) as server:
            yield Served(server, loop, group, metrics_port)
    finally:
        where.cleanup()


values_st = st.fixed_dictionaries({}, optional={
    "amount": st.none() | st.integers(-1000, 1000),
    "x": st.none() | st.floats(-1e3, 1e3, allow_nan=False),
    "s": st.none() | st.sampled_from(["a", "b", "c", "dd"]),
})


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.integers(1, 3))
    per_key = []
    for _ in range(keys):
        stamps = draw(st.lists(st.tuples(st.integers(0, 400).map(lambda t: t * SCALE),
                                         st.sampled_from("abc")), unique=True, max_size=12))
        per_key.append([(ts, ident, draw(values_st), draw(st.booleans()), draw(st.booleans()))
                        for ts, ident in stamps])  # (ts, id, values, after batch, retried)
    return {
        "events": per_key,
        "end": draw(st.none() | st.integers(0, 400).map(lambda t: t * SCALE)),
        "reads": draw(st.lists(st.integers(0, 500).map(lambda t: t * SCALE), min_size=1,
                               max_size=4)),
    }


def _push(client: FeatureClient, user: int, events: list[Any]) -> Any:
    return client.push(GROUP, [({"user_id": user}, ts, ident, values)
                               for ts, ident, values in events])


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=scenario())
def test_every_served_value_equals_brute_force(served: Served, case: dict[str, Any]) -> None:
    users = [next(_keys) for _ in case["events"]]
    end = case["end"]
    with FeatureClient(served.server.target, timeout_s=30) as client:
        # Before the batch run: every event not flagged "after", the retried ones twice.
        for user, events in zip(users, case["events"], strict=True):
            firsts = [e for e in events if not e[3] or end is None]
            before = [(ts, i, v) for ts, i, v, _, _ in firsts]
            retried = [(ts, i, v) for ts, i, v, _, again in firsts if again]
            for chunk in (before, retried):
                if chunk:
                    assert _push(client, user, chunk).late == 0
        has_part: set[int] = set()
        if end is not None:
            # The batch source holds every event before the end, pushed yet or not.
            by_key = {served.encode([user]): [(ts, v) for ts, _, v, _, _ in events]
                      for user, events in zip(users, case["events"], strict=True)}
            parts = batch_parts(served.group, by_key, end)
            served.loop.run(served.writer.write_batch_parts(parts, end))
            written = {key for key, _ in parts}
            has_part = {u for u in users if served.encode([u]) in written}
            for user, events in zip(users, case["events"], strict=True):
                after = [(ts, i, v) for ts, i, v, flag, _ in events if flag]
                if after:
                    response = _push(client, user, after)
                    late = [n for n, (ts, _, _) in enumerate(after)
                            if user in has_part and ts < end]
                    assert list(response.late_events) == late
                    assert response.accepted + response.late == len(after)
        never = next(_keys)
        entities = [{"user_id": u} for u in [*users, never] for _ in case["reads"]]
        ats = [at for _ in [*users, never] for at in case["reads"]]
        rows = client.get_batch(entities, group=GROUP, entity_at=ats)
    for entity, at, row in zip(entities, ats, rows, strict=True):
        user = entity["user_id"]
        events = (case["events"][users.index(user)] if user in users else [])
        raw = [(ts, i, v) for ts, i, v, _, _ in events]
        want = expected(SPEC, raw, at, has_batch=user in has_part and end is not None
                        and end <= at)
        _check_row(row, want, f"{served.server.name} user {user} at {at}")


def _check_row(row: dict[str, Any], want: list[Any] | None, where: str) -> None:
    wrong = row_mismatches(SPEC, row, want, where)
    assert not wrong, wrong[:10]


def test_bad_pushes_are_refused_naming_the_field(served: Served) -> None:
    import grpc

    with FeatureClient(served.server.target, timeout_s=30) as client:
        cases = [
            ([({"user_id": 1}, 5, "a", {"amount": 1.5})], "events[0].values.amount"),
            ([({"user_id": 1}, 5, "a", {"nope": 1})], "events[0].values"),
            ([({"user_id": 1}, 5, "", {})], "events[0].id"),
            ([({"user_id": 1}, 5, "x" * 129, {})], "events[0].id"),
            ([({"user": 1}, 5, "a", {})], "events[0].keys"),
        ]
        for events, field in cases:
            with pytest.raises(grpc.RpcError) as info:
                client.push(GROUP, events)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert field in (info.value.details() or ""), (field, info.value.details())
        with pytest.raises(grpc.RpcError) as info:
            client.push("no_such_group", [({"user_id": 1}, 5, "a", {})])
        assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_server_log_has_no_tracebacks(served: Served, tmp_path: Path) -> None:
    assert "Traceback" not in served.server.log.read_text(errors="replace")


def _final_rows(client: FeatureClient, users: list[int], at: int) -> list[dict[str, Any]]:
    return client.get_batch([{"user_id": u} for u in users], group=GROUP,
                            entity_at=[at] * len(users))


def test_concurrent_writers_and_readers_end_at_the_oracle(served: Served) -> None:
    """16 writers push to the same keys (each event twice, as retries) while 4 readers
    read; afterwards every value equals brute force over the events pushed."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    users = [next(_keys) for _ in range(3)]
    at = 10_000 * SCALE
    # moto serializes requests: fewer pushes per writer there, the same 16 writers.
    rounds = 1 if served.server.name == "dynamodb" else 4
    plan = {
        w: [(u, [((100 * w + 7 * n + j) * SCALE, f"w{w}-{n}-{j}", {"amount": w + n, "x": float(j),
                                                           "s": "abcd"[(w + n) % 4]})
                 for j in range(3)])
            for n, u in enumerate(users * rounds)]
        for w in range(16)
    }
    stop = False
    errors: list[BaseException] = []

    def write(w: int) -> None:
        with FeatureClient(served.server.target, timeout_s=30) as client:
            for user, events in plan[w]:
                for _ in range(2):
                    _push(client, user, events)

    def read() -> int:
        reads = 0
        with FeatureClient(served.server.target, timeout_s=30) as client:
            while not stop:
                rows = _final_rows(client, users, at)
                for row in rows:
                    statuses = {f.status for f in row.values()}
                    if Status.ERROR in statuses:
                        errors.append(AssertionError(f"ERROR while writing: {row}"))
                reads += 1
                time.sleep(0.01)
        return reads

    with ThreadPoolExecutor(20) as pool:
        readers = [pool.submit(read) for _ in range(4)]
        for writer in [pool.submit(write, w) for w in range(16)]:
            writer.result(timeout=300)
        stop = True
        assert all(r.result(timeout=60) > 0 for r in readers)
    assert not errors, errors[:1]
    with FeatureClient(served.server.target, timeout_s=30) as client:
        rows = _final_rows(client, users, at)
    for user, row in zip(users, rows, strict=True):
        raw = [e for w in plan for u, events in plan[w] if u == user for e in events]
        _check_row(row, expected(SPEC, raw, at), f"{served.server.name} user {user}")


def test_reads_without_at_equal_brute_force_now(served: Served) -> None:
    """Reads of now: events pushed at times before now (and one batch part), each value
    equal to brute force at the read time (the server's clock, between two of ours)."""
    import time

    users = [next(_keys) for _ in range(3)]
    now = time.time_ns() // 1_000_000
    events = {u: [(now - 1_000 * (7 * n + i), f"n{n}", {"amount": n - i, "x": n / 7,
                                                         "s": "abc"[(n + i) % 3]})
                  for n in range(30)] for i, u in enumerate(users)}
    end = now - 120_000  # a batch part two minutes back: windows read both sides of it
    by_key = {served.encode([u]): [(ts, v) for ts, _, v in events[u]] for u in users}
    served.loop.run(served.writer.write_batch_parts(batch_parts(served.group, by_key, end),
                                                    end))
    with FeatureClient(served.server.target, timeout_s=30) as client:
        for u in users:
            _push(client, u, [e for e in events[u] if e[0] >= end])
        for _ in range(3):
            before = time.time_ns() // 1_000_000
            rows = client.get_batch([{"user_id": u} for u in users], group=GROUP)
            after = time.time_ns() // 1_000_000
            for user, row in zip(users, rows, strict=True):
                wants = [expected(SPEC, events[user], t, has_batch=True)
                         for t in (before, after)]
                failures = []
                for want in wants:
                    try:
                        _check_row(row, want, f"{served.server.name} user {user} now")
                        break
                    except AssertionError as exc:
                        failures.append(exc)
                else:
                    raise failures[0]


def _part_hits(served: Served) -> float:
    return scrape(served.metrics_port).get('fetcher_cache_hits_total{tier="batch_part"}', 0.0)


def test_cached_batch_parts_across_a_new_batch_end(served: Served) -> None:
    """With the batch part L1 on (the default): reads repeated over a cached part, then a
    second batch run and an event after it; every value equals brute force each time."""
    users = [next(_keys) for _ in range(2)]
    events: dict[int, list[tuple[int, str, dict[str, Any]]]] = {
        u: [((7 * n + 3 * i) * SCALE, f"a{n}", {"amount": n - 2 * i, "x": n / 3,
                                                 "s": "abc"[(n + i) % 3]})
            for n in range(40)]  # 0..276 s
        for i, u in enumerate(users)
    }
    end1, end2 = 150 * SCALE, 260 * SCALE
    between, after = [160 * SCALE, 255 * SCALE], [265 * SCALE, 330 * SCALE]

    def check(ats: list[int], ends: list[int], where: str) -> None:
        with FeatureClient(served.server.target, timeout_s=30) as client:
            entities = [{"user_id": u} for u in users for _ in ats]
            rows = client.get_batch(entities, group=GROUP, entity_at=ats * len(users))
        for entity, at, row in zip(entities, ats * len(users), rows, strict=True):
            user = entity["user_id"]
            want = expected(SPEC, events[user], at, has_batch=any(e <= at for e in ends))
            _check_row(row, want, f"{served.server.name} {where} user {user} at {at}")

    def batch_run(end: int) -> None:
        by_key = {served.encode([u]): [(ts, v) for ts, _, v in events[u]] for u in users}
        served.loop.run(served.writer.write_batch_parts(batch_parts(served.group, by_key, end),
                                                        end))

    def push(lo: int, hi: int) -> None:
        with FeatureClient(served.server.target, timeout_s=30) as client:
            for u in users:
                chunk = [e for e in events[u] if lo <= e[0] < hi]
                if chunk:
                    _push(client, u, chunk)

    push(0, end1)
    batch_run(end1)
    push(end1, end2)
    hits = _part_hits(served)
    for n in range(3):  # the first read brings the parts, the next ones name them known
        check(between, [end1], f"over the first part, read {n}")
    assert _part_hits(served) >= hits + 2 * len(users) * len(between)
    # A second batch run, then events after its end (one of them after every read below).
    batch_run(end2)
    events[users[0]].append((end2 + 2 * SCALE, "late-1", {"amount": 5, "x": 0.5, "s": "dd"}))
    events[users[1]].append((end2, "at-the-end", {"amount": -1, "x": 1.0, "s": "a"}))
    push(end2, 10_000 * SCALE)
    for n in range(2):
        check(after, [end1, end2], f"after the second part, read {n}")
        check(between, [end1], f"between the parts, read {n}")
