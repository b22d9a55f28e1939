"""fetcher.load._writer at scale and at the edges: bounded batches, progress, errors, reports."""

from __future__ import annotations

import csv
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetcher.load._values import RowRejected, event_time_ms
from fetcher.load._writer import (
    LoadProgress,
    LoadReport,
    Reject,
    format_progress,
    format_report,
    load_file,
)
from kvstores import EmbeddedStore, KVStore, StoreError, open_store
from tests.unit.load_support import (
    COLUMNS,
    T0,
    RecordingStore,
    csv_cell,
    jsonable,
    make_group,
    read_back,
    record,
)


async def test_max_rejects_stops_early(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    path = tmp_path / "junk.jsonl"
    path.write_text("[]\n" * 50)
    report = await load_file(path, group, codec, store, max_rejects=5, max_reported_rejects=3)
    assert report.stopped_early and not report.ok
    assert (report.rows_read, report.rows_rejected, len(report.rejects)) == (6, 6, 3)


async def test_store_error_propagates(tmp_path: Path) -> None:
    group, codec = make_group()
    store = RecordingStore(open_store(f"embedded://{tmp_path / 's.lmdb'}"), fail_on_batch=2)
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps({"user_id": i, "event_time": T0, **jsonable(record(i))}) + "\n"
            for i in range(100)
        )
    )
    with pytest.raises(StoreError, match="store down"):
        await load_file(path, group, codec, store, batch_size=10)
    await store.close()


def _big_csv(path: Path, n: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "event_time", *COLUMNS])
        for i in range(n):
            rec = record(i)
            writer.writerow([str(i), str(T0 + i), *(csv_cell(rec[c]) for c in COLUMNS)])
    return path


async def test_large_file_is_written_in_bounded_batches(tmp_path: Path) -> None:
    group, codec = make_group()
    inner = EmbeddedStore(tmp_path / "big.lmdb", sync=False)
    store = RecordingStore(inner)
    path = _big_csv(tmp_path / "big.csv", 50_000)
    seen: list[LoadProgress] = []
    report = await load_file(
        path,
        group,
        codec,
        store,
        batch_size=500,
        max_in_flight=3,
        progress=seen.append,
        progress_interval_s=0.0,
    )
    assert (report.rows_read, report.rows_written, report.rows_rejected) == (50_000, 50_000, 0)
    assert len(store.batches) == 100 and {len(b) for b in store.batches} == {500}
    assert 1 < store.max_in_flight <= 3
    # Progress came while loading, counters never go back, and the last call is the total.
    assert len(seen) > 10
    assert all(
        a.rows_read <= b.rows_read and a.rows_written <= b.rows_written
        for a, b in itertools.pairwise(seen)
    )
    assert (seen[-1].rows_read, seen[-1].rows_written) == (50_000, 50_000)
    assert "50,000 read" in format_progress(seen[-1])
    back = await read_back(inner, group, codec, [(0,), (49_999,)])
    assert back[1] is not None and back[1][1] == T0 + 49_999
    await store.close()


async def test_parquet_is_read_in_record_batches(
    tmp_path: Path, store: KVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, codec = make_group()
    rows = [{"user_id": i, "event_time": T0, **record(i)} for i in range(2_000)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=500)
    seen: list[int] = []
    original = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        for batch in original(self, *args, **kwargs):
            seen.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    report = await load_file(path, group, codec, store, batch_size=256)
    assert report.ok and report.rows_written == 2_000
    assert max(seen) <= 256 and sum(seen) == 2_000


def test_event_time_forms() -> None:
    assert event_time_ms("t", "2024-05-29T16:26:40Z") == T0
    assert event_time_ms("t", "2024-05-29T18:26:40+02:00") == T0
    assert event_time_ms("t", "2024-05-29T16:26:40") == T0  # naive is UTC
    assert event_time_ms("t", str(T0)) == T0
    assert event_time_ms("t", float(T0)) == T0
    assert event_time_ms("t", datetime(2024, 5, 29, 16, 26, 40, 999_999, UTC)) == T0 + 999
    for bad in (True, 1.5, "soon", 1_717_000_000, T0 * 1000, None):
        with pytest.raises(RowRejected) as info:
            event_time_ms("t", bad)
        assert info.value.field == "t"


def test_format_report_table() -> None:
    report = LoadReport(
        path="a.csv",
        group="g",
        format="csv",
        rows_read=3,
        rows_written=2,
        rows_rejected=1,
        rejects=(Reject(3, "x", "expects an int64, got 'a'"),),
        elapsed_s=0.5,
    )
    text = format_report([report, report])
    lines = text.splitlines()
    assert lines[0].split() == [
        "file",
        "group",
        "format",
        "read",
        "written",
        "rejected",
        "seconds",
        "rows/s",
    ]
    assert lines[1].split() == ["a.csv", "g", "csv", "3", "2", "1", "0.50", "6"]
    assert "  line 3: x: expects an int64, got 'a'" in lines
