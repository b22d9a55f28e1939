"""fetcher.load._writer: CSV, JSONL and Parquet files into a real EmbeddedStore, read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fetcher.codec._keys import key_encoder
from fetcher.load._writer import LoadError, format_report, load_file
from fetcher.types import KeyColumn, KeyType
from kvstores import KVStore, open_store
from tests.unit.load_support import (
    COLUMNS,
    T0,
    RecordingStore,
    csv_cell,
    jsonable,
    make_group,
    read_back,
    record,
    write_csv,
    write_parquet,
)


async def test_csv_round_trip(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    rows = [[str(i), str(T0 + i), *(csv_cell(record(i)[c]) for c in COLUMNS)] for i in range(1, 7)]
    # An ISO-8601 event time in one row: both spellings are accepted.
    rows[0][1] = "2024-05-29T16:26:40.001Z"
    path = write_csv(tmp_path / "in.csv", ["user_id", "event_time", *COLUMNS], rows)
    report = await load_file(path, group, codec, store)
    assert report.ok, format_report(report)
    assert (report.rows_read, report.rows_written, report.rows_rejected) == (6, 6, 0)
    back = await read_back(store, group, codec, [(i,) for i in range(1, 7)])
    for i, got in enumerate(back, start=1):
        assert got == (record(i), T0 + i)


async def test_csv_two_column_key_and_group_ttl(tmp_path: Path) -> None:
    keys = (KeyColumn("s2_cell_id", KeyType.INT64), KeyColumn("place_id", KeyType.STRING))
    group, codec = make_group(keys, ttl_s=3600)
    inner = open_store(f"embedded://{tmp_path / 's.lmdb'}")
    store = RecordingStore(inner)
    rows = [["-5", "p1", str(T0), *(csv_cell(record(1)[c]) for c in COLUMNS)]]
    path = write_csv(tmp_path / "k.csv", ["s2_cell_id", "place_id", "event_time", *COLUMNS], rows)
    report = await load_file(path, group, codec, store)
    assert report.ok
    assert store.batches[0][0].ttl_s == 3600
    assert await read_back(store, group, codec, [(-5, "p1")]) == [(record(1), T0)]
    await store.close()


async def test_jsonl_round_trip_with_versions(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"user_id": i, "event_time": T0 + version, **jsonable(record(i + version))})
        for i in range(1, 5)
        for version in (0, 1)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = await load_file(path, group, codec, store)
    assert (report.rows_read, report.rows_written, report.rows_rejected) == (8, 8, 0)
    back = await read_back(store, group, codec, [(i,) for i in range(1, 5)])
    assert back == [(record(i + 1), T0 + 1) for i in range(1, 5)]
    # The older version is still there for a point-in-time read.
    found = await store.multi_get([(group.dataset, key_encoder(group.keys)([2]), T0)])
    assert found[0] is not None and codec.decode(found[0][0]) == record(2)


async def test_parquet_round_trip_timestamp_column(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    rows = [
        {"user_id": i, "event_time": datetime.fromtimestamp((T0 + i) / 1000, UTC), **record(i)}
        for i in range(1, 11)
    ]
    path = write_parquet(tmp_path / "in.parquet", rows)
    report = await load_file(path, group, codec, store, batch_size=4)
    assert report.ok and report.rows_written == 10
    back = await read_back(store, group, codec, [(i,) for i in range(1, 11)])
    assert back == [(record(i), T0 + i) for i in range(1, 11)]


async def test_csv_rejects_name_physical_line_and_field(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()

    def row(i: int, **changes: str) -> list[str]:
        cells = {"user_id": str(i), "event_time": str(T0)}
        cells.update({c: csv_cell(record(i)[c]) for c in COLUMNS})
        cells.update(changes)
        return list(cells.values())

    header = ["user_id", "event_time", *COLUMNS]
    rows = [
        row(1),  # line 2
        row(2, visits="abc"),  # line 3: wrong type
        row(3, user_id=""),  # line 4: missing key
        row(4, user_id=str(2**63)),  # line 5: int64 out of range
        row(5, event_time="yesterday"),  # line 6: bad event time
        row(6, score=""),  # line 7: missing non-nullable feature
        row(7, country="two\nlines"),  # lines 8-9: a good row spanning two lines
        row(8, small=str(2**40)),  # line 10: does not fit Avro int (codec check)
        row(9, weights='[1.0, "x"]'),  # line 11: bad array element
        row(10, active="yes"),  # line 12: not a boolean
        row(11)[:-1],  # line 13: a cell short
    ]
    path = write_csv(tmp_path / "bad.csv", header, rows)
    report = await load_file(path, group, codec, store)
    assert (report.rows_read, report.rows_written, report.rows_rejected) == (11, 2, 9)
    assert [(r.line, r.field) for r in report.rejects] == [
        (3, "visits"),
        (4, "user_id"),
        (5, "user_id"),
        (6, "event_time"),
        (7, "score"),
        (10, "small"),
        (11, "weights"),
        (12, "active"),
        (13, ""),
    ]
    assert "int64 range" in report.rejects[2].message
    text = format_report(report)
    assert "line 3: visits: expects an int64, got 'abc'" in text
    assert (await read_back(store, group, codec, [(7,)]))[0] is not None


async def test_jsonl_rejects(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    good = {"user_id": 1, "event_time": T0, **jsonable(record(1))}
    lines = [
        json.dumps(good),  # 1
        "",  # 2: blank, skipped
        json.dumps({**good, "scroe": 1.0}),  # 3: unknown column (typo)
        json.dumps({k: v for k, v in good.items() if k != "country"}),  # 4: missing feature
        "{not json",  # 5
        "[1, 2]",  # 6: not an object
        json.dumps({**good, "user_id": "7"}),  # 7: key as a string
        json.dumps({**good, "visits": 2**64}),  # 8: long out of range
        json.dumps({**good, "event_time": 1_717_000_000}),  # 9: seconds, not ms
        json.dumps({**good, "active": None}),  # 10: null, not nullable
        json.dumps({k: v for k, v in good.items() if k not in ("rating", "nickname", "tier")}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = await load_file(path, group, codec, store)
    assert (report.rows_read, report.rows_written, report.rows_rejected) == (10, 2, 8)
    assert [(r.line, r.field) for r in report.rejects] == [
        (3, "scroe"),
        (4, "country"),
        (5, ""),
        (6, ""),
        (7, "user_id"),
        (8, "visits"),
        (9, "event_time"),
        (10, "active"),
    ]
    assert "unknown column 'scroe'" in report.rejects[0].message
    # Line 11 left out the optional fields: null and the schema's default.
    got = (await read_back(store, group, codec, [(1,)]))[0]
    assert got is not None and got[0]["tier"] == "basic" and got[0]["nickname"] is None


async def test_jsonl_unknown_columns_can_be_ignored(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"user_id": 1, "extra": 1, **jsonable(record(1))}) + "\n")
    report = await load_file(
        path, group, codec, store, ignore_unknown_columns=True, default_event_ms=T0
    )
    assert report.ok
    assert await read_back(store, group, codec, [(1,)]) == [(record(1), T0)]


async def test_parquet_rejects_use_row_index(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    rows = [{"user_id": i, "event_time": T0, **record(i)} for i in range(6)]
    rows[2]["country"] = None  # non-nullable
    rows[4]["event_time"] = 5  # not epoch ms
    path = write_parquet(tmp_path / "bad.parquet", rows)
    report = await load_file(path, group, codec, store, batch_size=2)
    assert [(r.line, r.field) for r in report.rejects] == [(2, "country"), (4, "event_time")]
    assert report.rows_written == 4
    assert "row 2: country" in format_report(report)


async def test_header_problems_fail_the_whole_file(tmp_path: Path, store: KVStore) -> None:
    group, codec = make_group()
    rows = [[str(1), str(T0), *(csv_cell(record(1)[c]) for c in COLUMNS), "x"]]
    typo = write_csv(tmp_path / "typo.csv", ["user_id", "event_time", *COLUMNS, "extra"], rows)
    with pytest.raises(LoadError, match=r"unknown column\(s\) extra for group 'profile'"):
        await load_file(typo, group, codec, store)
    report = await load_file(typo, group, codec, store, ignore_unknown_columns=True)
    assert report.ok and report.rows_written == 1

    no_time = write_csv(
        tmp_path / "nt.csv", ["user_id", *COLUMNS], [[r[0], *r[2:-1]] for r in rows]
    )
    with pytest.raises(LoadError, match=r"missing column.*event_time"):
        await load_file(no_time, group, codec, store)
    report = await load_file(no_time, group, codec, store, default_event_ms=T0 + 9)
    assert report.ok
    assert (await read_back(store, group, codec, [(1,)]))[0] == (record(1), T0 + 9)

    with pytest.raises(LoadError, match=r"unknown file extension '\.txt'"):
        (tmp_path / "a.txt").write_text("x")
        await load_file(tmp_path / "a.txt", group, codec, store)
