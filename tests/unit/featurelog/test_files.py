"""The file sink: rotation by size and by age, files visible only when whole, one schema file
per hash, a failed file given up and counted, leftovers of a killed writer ignored."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fetcher.featurelog import FileSink, LogBatch, LogColumns, LogRow, closed_files, raw_batch
from fetcher.featurelog._files import SCHEMAS_DIR
from tests.unit.featurelog.test_columns import SCHEMA, wire

DAY_MS = 86_400_000
T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


def _vector(i: int) -> bytes:
    values = {"d": i / 4, "i": i, "s": f"s{i}" * 20, "b": True, "y": b"y", "dl": [1.0],
              "il": [i], "sl": ["x"], "bl": [False], "d2": 2.5, "i2": -i}
    return wire({"statuses": [1] * 11, "values": values, "event": [T0, 0]})


def _batch(first: int, count: int, start_ms: int = T0) -> LogBatch:
    rows = [LogRow(start_ms + i, f"r{i}", 0, "cfg", None, [i, "p"], None, _vector(i))
            for i in range(first, first + count)]
    return LogBatch(SCHEMA, raw_batch(SCHEMA, LogColumns.from_rows(rows)))


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _ids(root: Path) -> list[str]:
    return [rid for f in closed_files(root, "svc")
            for rid in pq.read_table(f.path).column("request_id").to_pylist()]


def test_rotates_by_size_and_every_record_is_in_one_closed_file(tmp_path: Path) -> None:
    closed: list[tuple[Path, int]] = []
    limit = 40_000
    sink = FileSink(tmp_path, max_file_bytes=limit, max_file_seconds=3600, tag="t",
                    closed=lambda path, n: closed.append((path, n)))
    one = _batch(0, 20)
    for b in range(30):
        sink.write(_batch(b * 20, 20))
        for temp in sink.open_files():
            assert temp.name.startswith(".") and temp.name.endswith(".parquet.tmp")
    sink.close()
    files = closed_files(tmp_path, "svc")
    assert len(files) >= 3 and len(files) == len(closed)
    for f in files:
        # Closed once it reached the limit: over it by less than one batch (uncompressed).
        assert f.path.stat().st_size < limit + one.records.nbytes
        assert f.schema_hash == SCHEMA.hash
        times = pq.read_table(f.path).column("request_time").cast("int64").to_pylist()
        assert (f.first_ms, f.last_ms) == (min(times), max(times))
    assert _ids(tmp_path) == [f"r{i}" for i in range(600)]
    assert sum(n for _, n in closed) == 600
    assert not list(tmp_path.rglob("*.tmp"))


def test_rotates_by_age_on_tick(tmp_path: Path) -> None:
    clock = Clock()
    sink = FileSink(tmp_path, max_file_bytes=1 << 30, max_file_seconds=60, tag="t",
                    monotonic=clock)
    sink.write(_batch(0, 5))
    clock.now += 59
    sink.tick()
    sink.write(_batch(5, 5))
    assert closed_files(tmp_path, "svc") == []  # not 60 s old yet: nothing visible
    clock.now += 1
    sink.tick()
    assert _ids(tmp_path) == [f"r{i}" for i in range(10)]
    sink.write(_batch(10, 5))  # a new file, opened now
    clock.now += 30
    sink.tick()
    assert len(closed_files(tmp_path, "svc")) == 1
    clock.now += 30
    sink.tick()
    assert len(closed_files(tmp_path, "svc")) == 2
    sink.close()


def test_names_dates_and_the_schema_file(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, max_file_bytes=1 << 30, max_file_seconds=60, tag="host-1-ab")
    sink.write(_batch(0, 3, start_ms=T0 - 2))  # spans midnight: dated by its last record
    sink.close()
    (f,) = closed_files(tmp_path, "svc")
    assert f.path.parent == tmp_path / "service=svc" / "date=2025-12-01"
    assert f.path.name == f"{T0 - 2}-{T0}-{SCHEMA.hash}-host-1-ab-000001.parquet"
    schema_file = tmp_path / SCHEMAS_DIR / f"{SCHEMA.hash}.json"
    text = schema_file.read_bytes()
    assert hashlib.sha256(text).hexdigest()[:16] == SCHEMA.hash
    assert pq.read_schema(f.path).metadata[b"fetcher.schema_hash"] == SCHEMA.hash.encode()
    # since/until select files by the times in their names; dates before `since` are skipped.
    assert closed_files(tmp_path, "svc", since_ms=T0 + 1) == []
    assert closed_files(tmp_path, "svc", until_ms=T0 - 2) == []
    assert closed_files(tmp_path, "svc", since_ms=T0, until_ms=T0 - 1) == [f]
    day_after = dt.datetime(2025, 12, 2, tzinfo=dt.UTC).timestamp() * 1000
    assert closed_files(tmp_path, "svc", since_ms=int(day_after)) == []


def test_a_writer_killed_mid_file_leaves_only_a_hidden_temporary(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, max_file_bytes=1 << 30, max_file_seconds=60, tag="t")
    sink.write(_batch(0, 5))
    sink.close()
    # Another writer's file in progress, as SIGKILL leaves it (half a Parquet file).
    dead = FileSink(tmp_path, max_file_bytes=1 << 30, max_file_seconds=60, tag="dead")
    dead.write(_batch(5, 5))
    (temp,) = list(dead.open_files())
    temp.write_bytes(temp.read_bytes()[:100])
    assert [f.path.name.split("-")[3] for f in closed_files(tmp_path, "svc")] == ["t"]
    assert _ids(tmp_path) == [f"r{i}" for i in range(5)]


def test_a_failed_write_gives_the_file_up_and_counts_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost: list[tuple[str, int]] = []
    sink = FileSink(tmp_path, max_file_bytes=1 << 30, max_file_seconds=60, tag="t",
                    lost=lambda service, n: lost.append((service, n)))
    sink.write(_batch(0, 5))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    (current,) = sink._open.values()
    monkeypatch.setattr(current.writer, "write_table", broken)
    with pytest.raises(OSError):
        sink.close()
    assert lost == [("svc", 5)]
    assert not list(tmp_path.rglob("*.tmp")) and closed_files(tmp_path, "svc") == []
    sink.write(_batch(5, 2))  # the sink goes on with a new file
    sink.close()
    assert _ids(tmp_path) == ["r5", "r6"]
