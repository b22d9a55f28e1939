"""`fetcher backfill` on Spark in local mode, into the real test stores.

- An aggregation group's backfill writes exactly the bytes `fetcher load --events` writes
  from the same events (Redis), and the server then serves what brute force over the raw
  events gives; a rerun of the same end writes the same bytes.
- A stored-row group gets each key's latest row before the end, the bytes `fetcher load`
  writes for those rows; rejected rows are counted and reported, exit 1.
- Cassandra: the same backfill (from Parquet) reads back as the Redis one, and the oracle.
- The job as spark-submit runs it (fetcher/batch/job.py), SIGKILLed midway and rerun:
  the store ends with the bytes of a clean run, and the oracle's values.
- Lambda consistency: the same events through the backfill and through Kafka and
  `fetcher stream` (tests/e2e/stream_support.py) serve the same features.

One SparkSession serves the in-process runs (a JVM start costs ~15 s on a busy machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fetcher.batch import build_session, plan_backfill, run_backfill_job, table_source
from fetcher.catalog import load_catalog
from fetcher.client import FeatureClient
from fetcher.load import load_event_files, load_file
from fetcher.types import FeatureGroup, Status
from kvstores import open_store
from tests.e2e.aggregation_support import new_tag, row_mismatches
from tests.e2e.backfill_support import (
    AGG_GROUP,
    BASE,
    END,
    PLAIN_GROUP,
    SECOND,
    Events,
    backfill_args,
    check_against_oracle,
    log_snapshot,
    make_events,
    redis_snapshot,
    write_config,
    write_jsonl,
    write_settings,
)
from tests.e2e.conftest import FETCHER_MODULE, REPO, fetcher_env, serving
from tests.e2e.multi_backend_support import (
    CASSANDRA_HOST,
    CASSANDRA_PORT,
    delete_redis_keys,
    drop_keyspace,
    require_cassandra,
)
from tests.e2e.test_aggregations import SPEC
from tests.servers import free_port
from tests.unit.aggregation.log_model import close, expected

pytestmark = pytest.mark.timeout(600)

# A database of this module's own on the shared test Redis (others flush database 0).
REDIS_DB = 11
READS = [END, END + 37 * SECOND, END + 120 * SECOND, BASE + 420 * SECOND]


@dataclass
class World:
    """The module's config, events, files and store URLs."""

    tmp: Path
    tag: str
    config: Path
    redis: str  # the database URL, no prefix
    agg: FeatureGroup
    plain: FeatureGroup
    events: Events
    events_file: Path

    def url(self, prefix: str) -> str:
        return f"{self.redis}?key_prefix={self.tag}{prefix}"

    def prefix(self, prefix: str) -> str:
        return f"{self.tag}{prefix}"

    def settings(self, name: str, url: str) -> Path:
        return write_settings(self.tmp / f"{name}.toml", self.config, url)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = build_session("fetcher-tests", "local[2]", {
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "4",
    })
    yield session
    session.stop()


@pytest.fixture(scope="module")
def world(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("backfill")
    tag = f"bf{new_tag()}"
    config = write_config(tmp / "config", tag, SPEC)
    catalog = load_catalog(config)
    events = make_events(15, users=40, per_user=12)
    # Two rows no writer may take: a value of the wrong type, an event without a time.
    bad = [f'{{"user_id": 1, "event_time": {BASE + 5}, "amount": "ten"}}',
           '{"user_id": 2, "amount": 3}']
    events_file = write_jsonl(tmp / "events.jsonl", events.rows, bad)
    db = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    yield World(tmp, tag, config, db, catalog.groups[AGG_GROUP], catalog.groups[PLAIN_GROUP],
                events, events_file)
    delete_redis_keys(db, f"{tag}*".encode())


def _backfill(spark: Any, settings: Path, group: str, source: Path | str, *extra: str) -> Any:
    spec, src = plan_backfill(backfill_args(settings, group, source, *extra))
    if src is None:
        src = table_source(spark, str(source))
    return run_backfill_job(spark, spec, src)


def _load_events(world: World, url: str) -> Any:
    async def run() -> Any:
        store = open_store(url, timeout_s=10)
        try:
            await store.create()
            return await load_event_files(world.agg, store, [world.events_file],
                                          batch_end_ms=END)
        finally:
            await store.close()

    return asyncio.run(run())


def _log_snapshot(url: str, group: FeatureGroup, users: list[int]) -> list[Any]:
    async def run() -> list[Any]:
        store = open_store(url, timeout_s=30)
        try:
            return await log_snapshot(store, group, users)
        finally:
            await store.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def loaded(world: World) -> dict[bytes, Any]:
    """`fetcher load --events` of the events file: the bytes every backfill must write."""
    report = _load_events(world, world.url("load"))
    assert report.rejected == 2
    return redis_snapshot(world.redis, world.prefix("load"))


def test_aggregation_backfill_writes_the_bytes_of_load_events_and_serves_the_oracle(
    spark: Any, world: World, loaded: dict[bytes, Any]
) -> None:
    settings = world.settings("spark", world.url("spark"))
    report = _backfill(spark, settings, AGG_GROUP, world.events_file)
    assert (report.rows, report.rejected) == (len(world.events.rows) + 2, 2)
    assert {f for _, f, _ in report.rejects} == {"amount", "event_time"}
    users = [u for u, ev in world.events.by_user.items() if ev]
    assert report.keys == sum(1 for u in users
                              if any(ts < END for ts, _, _ in world.events.by_user[u]))
    assert report.pushed == sum(1 for ev in world.events.by_user.values()
                                for ts, _, _ in ev if ts >= END)
    assert report.pushed > 0 and report.keys > 0
    written = redis_snapshot(world.redis, world.prefix("spark"))
    assert written == loaded

    # The real server over the backfilled store: every feature at every read time.
    port = free_port()
    served = write_settings(world.tmp / "serve.toml", world.config, world.url("spark"), port)
    never = 10_000
    with serving("redis", served, port, world.tmp / "server.log",
                 command=FETCHER_MODULE) as server, \
            FeatureClient(server.target, timeout_s=60) as client:
        entities = [{"user_id": u} for u in [*world.events.by_user, never] for _ in READS]
        ats = [at for _ in [*world.events.by_user, never] for at in READS]
        rows = client.get_batch(entities, group=AGG_GROUP, entity_at=ats)
    checked = 0
    for entity, at, row in zip(entities, ats, rows, strict=True):
        raw = world.events.by_user.get(entity["user_id"], [])
        has_part = any(ts < END for ts, _, _ in raw)
        want = expected(SPEC, raw, at, has_batch=has_part)
        wrong = row_mismatches(SPEC, row, want, f"user {entity['user_id']} at {at}")
        assert not wrong, wrong[:10]
        if want is None:
            continue
        checked += 1
    assert checked > 3 * len(users)

    # A rerun of the same end: the same bytes, nothing counted twice.
    _backfill(spark, settings, AGG_GROUP, world.events_file)
    assert redis_snapshot(world.redis, world.prefix("spark")) == loaded


def test_a_table_with_timestamps_is_a_source_too(
    spark: Any, world: World, loaded: dict[bytes, Any]
) -> None:
    """A table of Spark's catalog (a temporary view here) whose event time is a timestamp
    column: the same bytes as `fetcher load --events` of the epoch-ms file."""
    from pyspark.sql import functions as F

    rows = [{"user_id": r["user_id"], "event_time": r["event_time"], "id": r.get("id"),
             "amount": r.get("amount"), "x": r.get("x"), "s": r.get("s")}
            for r in world.events.rows]
    frame = spark.createDataFrame(
        rows, "user_id long, event_time long, id string, amount long, x double, s string")
    frame.withColumn("event_time", F.timestamp_millis("event_time")) \
        .createOrReplaceTempView(f"{world.tag}_events")
    settings = world.settings("table", world.url("table"))
    report = _backfill(spark, settings, AGG_GROUP, f"{world.tag}_events")
    assert report.rejected == 0 and report.rows == len(world.events.rows)
    assert redis_snapshot(world.redis, world.prefix("table")) == loaded


def _plain_rows() -> tuple[list[dict[str, str]], dict[str, dict[str, str]]]:
    """Versions of 30 devices around the end, and each device's latest before it."""
    rows, latest = [], {}
    for d in range(30):
        versions = [(BASE + (d * 7 + v * 50) * SECOND, v) for v in range(6)]
        for ts, v in versions:
            row = {"device_id": f"dev-{d}", "event_time": str(ts), "clicks": str(d * 10 + v),
                   "page": "" if v == 2 else f"/p/{d}/{v}", "score": "" if v % 2 else str(v / 4)}
            rows.append(row)
            if ts < END:
                latest[row["device_id"]] = row
    return rows, latest


def _write_csv(path: Path, rows: list[dict[str, str]], bad: Sequence[str] = ()) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["device_id", "event_time", "clicks", "page",
                                                 "score"])
        writer.writeheader()
        writer.writerows(rows)
        for line in bad:
            out.write(line + "\r\n")
    return path


def test_plain_group_backfill_writes_each_keys_latest_row_before_the_end(world: World) -> None:
    rows, latest = _plain_rows()
    source = world.tmp / "plain"
    source.mkdir()
    # Two files in a directory (one with a row of a non-number clicks), through the CLI.
    _write_csv(source / "a.csv", rows[: len(rows) // 2], [f"dev-x,{BASE},many,/p,0.5"])
    _write_csv(source / "b.csv", rows[len(rows) // 2:])
    settings = world.settings("plain", world.url("plain"))
    result = subprocess.run(
        [*FETCHER_MODULE, "backfill", "--settings", str(settings), "--group", PLAIN_GROUP,
         "--source", str(source), "--end", str(END), "--master", "local[2]",
         "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4"],
        cwd=REPO, env=fetcher_env(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "rejected: 1" in result.stdout, result.stdout
    assert "clicks" in result.stdout and "many" in result.stdout, result.stdout
    assert f"one per key): {len(latest)}" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "backfill:" in result.stderr  # its own progress lines
    # The bytes `fetcher load` writes for exactly the latest rows.
    reference = _write_csv(world.tmp / "latest.csv", list(latest.values()))

    async def load() -> None:
        store = open_store(world.url("plainref"), timeout_s=10)
        try:
            codec = load_catalog(world.config).codecs[PLAIN_GROUP]
            report = await load_file(reference, world.plain, codec, store)
            assert report.ok
        finally:
            await store.close()

    asyncio.run(load())
    assert (redis_snapshot(world.redis, world.prefix("plain"))
            == redis_snapshot(world.redis, world.prefix("plainref")))


def test_bad_arguments_exit_2_naming_the_argument(world: World) -> None:
    settings = world.settings("spark", world.url("spark"))
    cases = [
        (["--end", "yesterday"], "--end"),
        (["--source", str(world.tmp / "nope.parquet")], "--source"),
        (["--group", "no_such_group"], "--group"),
        (["--batch-size", "0"], "--batch-size"),
        (["--source", str(world.tmp / "config")], "--source"),  # no data file in it
    ]
    for change, argument in cases:
        args = {"--settings": str(settings), "--group": AGG_GROUP,
                "--source": str(world.events_file), "--end": str(END)}
        extra = []
        for flag, value in zip(change[::2], change[1::2], strict=True):
            if flag in args:
                args[flag] = value
            else:
                extra += [flag, value]
        result = subprocess.run(
            [*FETCHER_MODULE, "backfill", *[x for kv in args.items() for x in kv], *extra],
            cwd=REPO, env=fetcher_env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (change, result.stderr)
        assert argument in result.stderr, (change, result.stderr)
        assert "Traceback" not in result.stderr, (change, result.stderr)


def test_cassandra_backfill_from_parquet_reads_as_load_events_and_the_oracle(
    spark: Any, world: World, loaded: dict[bytes, Any]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    require_cassandra()
    keyspace = f"{world.tag}_ks"
    url = f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/{keyspace}"
    schema = pa.schema([("user_id", pa.int64()), ("event_time", pa.int64()), ("id", pa.string()),
                        ("amount", pa.int64()), ("x", pa.float64()), ("s", pa.string())])
    table = pa.Table.from_pylist(world.events.rows, schema=schema)
    parquet = world.tmp / "events.parquet"
    pq.write_table(table, parquet)
    try:
        report = _backfill(spark, world.settings("cass", url), AGG_GROUP, parquet)
        assert report.rejected == 0
        users = sorted(world.events.by_user)
        got = _log_snapshot(url, world.agg, users)
        assert got == _log_snapshot(world.url("load"), world.agg, users)
        assert check_against_oracle(world.agg, SPEC, world.events, got, users, READS,
                                    "cassandra") > 0
    finally:
        drop_keyspace(keyspace)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_spark_submit_job_killed_midway_and_rerun_ends_as_a_clean_run(
    spark: Any, world: World
) -> None:
    import redis

    big = make_events(16, users=2000, per_user=6, first_user=100_000)
    source = write_jsonl(world.tmp / "big.jsonl", big.rows)
    clean = world.settings("clean", world.url("clean"))
    report = _backfill(spark, clean, AGG_GROUP, source)
    assert report.rejected == 0
    want = redis_snapshot(world.redis, world.prefix("clean"))
    total = len(want)

    killed = world.settings("killed", world.url("killed"))
    submit = Path(sys.executable).parent / "spark-submit"
    job = REPO / "fetcher" / "batch" / "job.py"
    # This checkout's package first (the venv's editable install may be another's).
    env = {**fetcher_env(), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    log = open(world.tmp / "killed.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         "--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.driver.host=127.0.0.1",
         str(job), "--settings", str(killed), "--group", AGG_GROUP, "--source", str(source),
         "--end", str(END), "--partitions", "4", "--batch-size", "1", "--max-in-flight", "1"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = redis.Redis.from_url(world.redis)
    try:
        deadline = time.monotonic() + 300
        pattern = f"{world.prefix('killed')}:*".encode()
        # Killed once a tenth of the keys are written: well into the write, far from its end
        # (one key per store call, one call in flight per task).
        while sum(1 for _ in client.scan_iter(match=pattern, count=1000)) < total // 10:
            assert process.poll() is None, (world.tmp / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the job wrote too little in 300 s"
            time.sleep(0.05)
        # SIGKILL the whole job at once: spark-submit's JVM, the driver, the Python workers.
        pids = _descendants(process.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        client.close()
    partial = redis_snapshot(world.redis, world.prefix("killed"))
    print(f"killed with {len(partial)} of {total} keys written")
    assert 0 < len(partial) < total, (len(partial), total)

    _backfill(spark, killed, AGG_GROUP, source)
    assert redis_snapshot(world.redis, world.prefix("killed")) == want
    users = sorted(big.by_user)[::50]
    snapshot = _log_snapshot(world.url("killed"), world.agg, users)
    assert check_against_oracle(world.agg, SPEC, big, snapshot, users, READS, "rerun") > 0


def test_lambda_the_batch_path_and_the_stream_serve_the_same_features(
    spark: Any, world: World
) -> None:
    """The seed's test_batch_streaming_consistency: the same events, once through the Spark
    backfill (batch parts at the end, the later events pushed) and once through Kafka and
    `fetcher stream` (every event a log entry, no batch part), served by the real server:
    every feature of every key at every read from the end on is the same, and the oracle's."""
    from tests.e2e.stream_support import (
        EventProducer,
        committed,
        create_topic,
        end_offsets,
        require_kafka,
        streaming,
        wait_for,
        write_stream_settings,
    )

    require_kafka()
    batch_url, stream_url = world.url("lambda-batch"), world.url("lambda-stream")
    report = _backfill(spark, world.settings("lambda-batch", batch_url), AGG_GROUP,
                       world.events_file)
    assert report.keys > 0 and report.pushed > 0

    topic = f"fetcher.lambda.{world.tag}"
    create_topic(topic, 2)
    producer = EventProducer(topic)
    for row in world.events.rows:  # the file's rows (its two bad lines aside), as JSON
        values = {k: row[k] for k in ("amount", "x", "s") if k in row}
        ident = row.get("id")
        producer.event(row["user_id"], row["event_time"], values, ident,
                       oracle_id=None if ident is not None else f"{row['event_time']}")
    producer.flush()
    group_id = f"lambda-{world.tag}"
    stream_port = free_port()
    stream_settings = write_stream_settings(
        world.tmp / "lambda-stream.toml", port=stream_port, store_url=stream_url,
        config_dir=world.config)
    with streaming(stream_settings, AGG_GROUP, world.tmp / "lambda-stream.log", "--topic",
                   topic, "--group-id", group_id) as stream:
        wait_for(lambda: committed(group_id, topic, 2) == end_offsets(topic, 2),
                 "the stream committed every message", why=lambda: stream.log_text()[-3000:])
        assert stream.metric("fetcher_stream_dead_lettered_total") == 0, stream.log_text()

    users = sorted(world.events.by_user)
    entities = [{"user_id": u} for u in users for _ in READS]
    ats = [at for _ in users for at in READS]
    served: dict[str, list[Any]] = {}
    for name, url in (("batch", batch_url), ("stream", stream_url)):
        port = free_port()
        settings = write_settings(world.tmp / f"lambda-{name}-serve.toml", world.config, url,
                                  port)
        with serving("redis", settings, port, world.tmp / f"lambda-{name}.log",
                     command=FETCHER_MODULE) as server, \
                FeatureClient(server.target, timeout_s=60) as client:
            served[name] = client.get_batch(entities, group=AGG_GROUP, entity_at=ats)
    compared = 0
    for entity, at, batch_row, stream_row in zip(entities, ats, served["batch"],
                                                 served["stream"], strict=True):
        where = f"user {entity['user_id']} at {at}"
        raw = world.events.by_user[entity["user_id"]]
        want = expected(SPEC, raw, at, has_batch=any(ts < END for ts, _, _ in raw))
        for feature in SPEC.features:
            b, s = batch_row[feature.name], stream_row[feature.name]
            assert b.status is s.status, (where, feature.name, b, s)
            if b.status is Status.PRESENT:
                assert close(b.value, s.value), (where, feature.name, b.value, s.value)
                compared += 1
        if want is None:
            assert {f.status for f in batch_row.values()} == {Status.NOT_FOUND}, where
    assert compared > len(users) * len(READS)
