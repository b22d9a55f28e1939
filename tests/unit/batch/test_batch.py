"""fetcher.batch without Spark: the argument checks, the source resolution, the session's
settings, the retries, and the executors' partition writers against `fetcher load`'s."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fetcher.batch import (
    BackfillArgumentError,
    JobSpec,
    add_backfill_arguments,
    parse_end,
    resolve_source,
    session_conf,
)
from fetcher.batch._partitions import (
    KEYED,
    REJECTED,
    check_events,
    with_retries,
    write_key_events,
)
from fetcher.catalog import load_catalog
from fetcher.load import load_event_files
from kvstores import StoreError, open_store
from tests.e2e.backfill_support import AGG_GROUP, END, make_events, write_config, write_jsonl
from tests.e2e.test_aggregations import SPEC

ROOT = Path(__file__).resolve().parents[3]


def test_the_end_is_iso_8601_or_epoch_ms() -> None:
    assert parse_end("2026-12-01") == 1_796_083_200_000
    assert parse_end("2026-12-01T06:00:00Z") == 1_796_083_200_000 + 6 * 3_600_000
    assert parse_end("2026-12-01T07:00:00+01:00") == 1_796_083_200_000 + 6 * 3_600_000
    assert parse_end("1796083200000") == 1_796_083_200_000
    for bad in ("yesterday", "12", "2026-13-01"):
        with pytest.raises(BackfillArgumentError) as info:
            parse_end(bad)
        assert info.value.argument == "--end"


def test_sources_resolve_to_their_format(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "part-0.parquet").write_bytes(b"")
    (tmp_path / "d" / "_SUCCESS").write_bytes(b"")
    (tmp_path / "e.jsonl").write_text("{}\n")
    (tmp_path / "f.csv").write_text("a\n")
    assert resolve_source(str(tmp_path / "d"), None).format == "parquet"  # type: ignore[union-attr]
    assert resolve_source(str(tmp_path / "e.jsonl"), None).format == "jsonl"  # type: ignore[union-attr]
    assert resolve_source(str(tmp_path / "*.csv"), None).format == "csv"  # type: ignore[union-attr]
    assert resolve_source(str(tmp_path / "e.jsonl"), "csv").format == "csv"  # type: ignore[union-attr]
    assert resolve_source("events_table", None) is None  # a table: Spark's catalog decides
    assert resolve_source("db.events", "table").format == "table"  # type: ignore[union-attr]
    assert resolve_source("s3a://bucket/events/*.parquet", None).format == "parquet"  # type: ignore[union-attr]
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.csv").write_text("a\n")
    (tmp_path / "mixed" / "b.jsonl").write_text("{}\n")
    (tmp_path / "empty").mkdir()
    for location, fmt, why in [
        (str(tmp_path / "mixed"), None, "several formats"),
        (str(tmp_path / "empty"), None, "empty directory"),
        (str(tmp_path / "nope.parquet"), None, "no such file"),
        (str(tmp_path / "*.pq"), None, "matches no file"),
        (str(tmp_path / "e.jsonl"), "xml", "one of"),
    ]:
        with pytest.raises(BackfillArgumentError, match=why) as info:
            resolve_source(location, fmt)
        assert info.value.argument == ("--format" if fmt else "--source")


def test_session_settings_bind_local_runs_to_loopback_and_take_the_users_last() -> None:
    conf = session_conf("local[2]", {"spark.driver.host": "10.0.0.1"}, tty=False)
    assert conf["spark.driver.host"] == "10.0.0.1"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert "log4j2.properties" in conf["spark.driver.extraJavaOptions"]
    cluster = session_conf("spark://master:7077", {}, tty=True)
    assert "spark.driver.host" not in cluster
    assert cluster["spark.ui.showConsoleProgress"] == "true"


def test_bad_numbers_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="fetcher backfill")
    add_backfill_arguments(parser)
    base = ["--group", "g", "--source", "s", "--end", "0"]
    for bad in (["--batch-size", "0"], ["--max-in-flight", "x"], ["--retries", "-1"],
                ["--conf", "novalue"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([*base, *bad])
        assert info.value.code == 2
        assert bad[0] in capsys.readouterr().err
    assert parser.parse_args(base).master == "local[*]"


def test_the_cli_and_the_server_never_import_pyspark() -> None:
    code = ("import sys, fetcher.cli, fetcher.server; fetcher.cli.build_parser(); "
            "assert 'pyspark' not in sys.modules and 'py4j' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def _spec(tmp_path: Path, url: str, **extra: Any) -> JobSpec:
    group = load_catalog(write_config(tmp_path / "config", "u", SPEC)).groups[AGG_GROUP]
    return JobSpec(group=group, codec=None, store_url=url, store_timeout_s=10, end_ms=END,
                   text=False, **extra)


async def test_with_retries_backs_off_then_gives_up(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "embedded://x", retries=2, retry_base_s=0.001)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise StoreError("down")
        return "ok"

    assert await with_retries(spec, flaky) == "ok" and calls == 3

    async def down() -> None:
        raise StoreError("still down")

    with pytest.raises(StoreError, match="still down"):
        await with_retries(spec, down)


def _dump(url: str, spec: JobSpec, users: list[int]) -> list[Any]:
    from tests.e2e.backfill_support import log_snapshot

    async def run() -> list[Any]:
        store = open_store(url)
        try:
            return await log_snapshot(store, spec.group, users)
        finally:
            await store.close()

    return asyncio.run(run())


def test_partition_writers_write_what_load_events_writes(tmp_path: Path) -> None:
    """The executors' code (check, group by key as the shuffle would, write) against
    `fetcher load --events` on the same file: every key's log and marker equal."""
    events = make_events(3, users=25, per_user=10)
    path = write_jsonl(tmp_path / "ev.jsonl", events.rows, ['{"user_id": 1}', "[1]"])
    spark_url = f"embedded://{tmp_path / 'spark.lmdb'}"
    spec = _spec(tmp_path, spark_url, batch_size=3, max_in_flight=2)
    rows = [("ev.jsonl", json.loads(line)) for line in path.read_text().splitlines()]
    checked = list(check_events(spec, rows))
    assert sum(1 for c in checked if c[0] == REJECTED) == 2
    by_key: dict[bytes, list[Any]] = {}
    for item in checked:
        if item[0] == KEYED:
            by_key.setdefault(item[1], []).append(item[2])
    # Reversed: the shuffle delivers a key's events in any order.
    parts, pushed = next(write_key_events(spec, [(k, v[::-1]) for k, v in by_key.items()]))
    assert parts > 0 and pushed > 0
    load_url = f"embedded://{tmp_path / 'load.lmdb'}"

    async def load() -> None:
        store = open_store(load_url)
        try:
            report = await load_event_files(spec.group, store, [path], batch_end_ms=END)
            assert (report.keys, report.pushed) == (parts, pushed)
        finally:
            await store.close()

    asyncio.run(load())
    users = sorted(events.by_user)
    assert _dump(spark_url, spec, users) == _dump(load_url, spec, users)


def test_a_store_that_stays_down_fails_the_partition_after_the_retries(tmp_path: Path) -> None:
    """Nothing listens on the port: each write is retried, then the task fails (Spark then
    retries it, or the job stops with exit 3), with no write left running."""
    from tests.servers import free_port

    spec = _spec(tmp_path, f"redis://127.0.0.1:{free_port()}/0", retries=2, retry_base_s=0.001,
                 batch_size=2, max_in_flight=2)
    events = make_events(4, users=10, per_user=4)
    by_key: dict[bytes, list[Any]] = {}
    for item in check_events(spec, [("x", r) for r in events.rows]):
        by_key.setdefault(item[1], []).append(item[2])
    with pytest.raises(StoreError):
        next(write_key_events(spec, list(by_key.items())))
