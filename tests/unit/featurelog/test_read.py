"""`fetcher logs read`: one flat Parquet file per service and time range, every schema of
it, named columns, the CLI's arguments and exit codes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetcher.cli import main
from fetcher.featurelog import (
    FileSink,
    LogBatch,
    LogColumns,
    LogReadError,
    LogRow,
    log_schema,
    raw_batch,
    read_logs,
    record_batch,
)
from fetcher.featurelog._files import write_schema
from fetcher.featurelog._schema import LogSchema
from tests.unit.featurelog.test_columns import DESCRIPTOR, SCHEMA, wire

T0 = 1_764_547_200_000


def _values(i: int) -> dict[str, Any]:
    return {"d": i / 4, "i": i, "s": f"s{i}", "b": i % 2 == 0, "y": b"y", "dl": [1.0, 2.0],
            "il": [i], "sl": ["x"], "bl": [False], "d2": 2.5, "i2": -i}


def _write(root: Path, schema: LogSchema, first: int, count: int, *, extra: Any = None,
           statuses: list[int] | None = None) -> None:
    sink = FileSink(root, max_file_bytes=1 << 30, max_file_seconds=60, tag=f"w{first}")
    rows = []
    for i in range(first, first + count):
        values = _values(i)
        vec = {"statuses": statuses or [1] * 11, "values": values, "event": [T0 + i, 0]}
        data = wire(vec)
        if extra is not None:
            data += extra(i)
        rows.append(LogRow(T0 + i * 1000, f"r{i}", 0, "cfg", None, [i, "p"], None, data))
    sink.write(LogBatch(schema, raw_batch(schema, LogColumns.from_rows(rows))))
    sink.close()


def test_flat_columns_in_order_with_statuses_and_event_times(tmp_path: Path) -> None:
    _write(tmp_path / "log", SCHEMA, 0, 10, statuses=[1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    out = tmp_path / "out.parquet"
    summary = read_logs(tmp_path / "log", "svc", out, since_ms=T0 + 2000, until_ms=T0 + 8000)
    table = pq.read_table(out)
    assert summary.records == 6 == table.num_rows and summary.schemas == [SCHEMA.hash]
    assert table.column_names[:9] == ["request_time", "request_id", "entity", "config_version",
                                      "schema_hash", "at", "user_id", "place", "amount"]
    assert table.column_names[9:12] == ["d", "d__status", "d__event_time"]
    assert len(table.column_names) == 9 + 3 * 11
    first = table.to_pylist()[0]
    assert first["request_id"] == "r2" and first["user_id"] == 2 and first["place"] == "p"
    assert first["d"] == 0.5 and first["d__status"] == "PRESENT"
    assert first["i"] is None and first["i__status"] == "NOT_FOUND"
    assert first["dl"] == [1.0, 2.0] and first["s__event_time"] is None  # join h had no row
    assert int(first["d__event_time"].timestamp() * 1000) == T0 + 2
    assert first["bl__event_time"] is None  # no join
    assert table.schema.field("d__event_time").type == pa.timestamp("ms", tz="UTC")


def test_every_schema_of_the_range_with_nulls_where_a_schema_has_no_column(
    tmp_path: Path,
) -> None:
    wider = copy.deepcopy(DESCRIPTOR)
    wider["features"].append({"name": "new", "type": "double", "join": 0})
    schema2 = log_schema(wider)
    from fetcher.v1 import feature_service_pb2 as pb

    # A vector of the wider schema: one more status and one more double.
    extra = pb.FeatureVector(statuses=[1], double_values=[7.5]).SerializeToString()
    _write(tmp_path / "log", SCHEMA, 0, 3)
    _write(tmp_path / "log", schema2, 3, 2, extra=lambda i: extra)
    out = tmp_path / "out.parquet"
    summary = read_logs(tmp_path / "log", "svc", out, since_ms=0)
    table = pq.read_table(out)
    assert summary.schemas == [SCHEMA.hash, schema2.hash] and summary.files == 2
    assert table.column("new").to_pylist() == [None, None, None, 7.5, 7.5]
    assert table.column("new__status").to_pylist() == [None, None, None, "PRESENT", "PRESENT"]
    assert table.column("schema_hash").to_pylist() == [SCHEMA.hash] * 3 + [schema2.hash] * 2
    only = read_logs(tmp_path / "log", "svc", out, since_ms=0, schema_hash=schema2.hash)
    assert only.records == 2


def test_a_type_change_between_schemas_is_refused_naming_it(tmp_path: Path) -> None:
    changed = copy.deepcopy(DESCRIPTOR)
    changed["features"][0]["type"] = "int64"  # d: double -> int64 (the slots move too)
    other = log_schema(changed)
    _write(tmp_path / "log", SCHEMA, 0, 2)
    # A closed file of the other schema, written by hand (its records do not matter here).
    write_schema(tmp_path / "log", other)
    path = tmp_path / "log/service=svc/date=2025-12-01" / f"{T0}-{T0}-{other.hash}-x-1.parquet"
    pq.write_table(pa.Table.from_batches([], schema=other.arrow), path)
    with pytest.raises(LogReadError, match=r"column 'd' is (double|int64) in schema \w+ and "
                       r"(int64|double) in schema \w+\. Fix: read one schema at a time"):
        read_logs(tmp_path / "log", "svc", tmp_path / "o.parquet", since_ms=0)
    assert read_logs(tmp_path / "log", "svc", tmp_path / "o.parquet", since_ms=0,
                     schema_hash=SCHEMA.hash).records == 2


def test_a_name_taken_twice_gets_its_kind_as_prefix() -> None:
    from fetcher.featurelog._read import _columns

    clash = copy.deepcopy(DESCRIPTOR)
    clash["features"][0]["name"] = "user_id"
    clash["features"].append({"name": "i__status", "type": "double", "join": None})
    names = [c.name for c in _columns(log_schema(clash))]
    assert "feature.user_id" in names and "user_id" in names
    assert names.count("i__status") == 1 and "feature.i__status" in names
    assert len(names) == len(set(names))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "log", SCHEMA, 0, 4)
    out = tmp_path / "o.parquet"
    code = main(["logs", "read", str(tmp_path / "log"), "--service", "svc",
                 "--since", "2025-12-01T00:00:01Z", "--out", str(out)])
    assert code == 0
    assert "3 records of svc from 1 file(s)" in capsys.readouterr().out
    assert pq.read_table(out).column("request_id").to_pylist() == ["r1", "r2", "r3"]
    assert main(["logs", "read", str(tmp_path / "log"), "--service", "nope",
                 "--since", "0", "--out", str(out)]) == 1
    assert "no closed log file of service 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["logs", "read", str(tmp_path / "log"), "--service", "svc", "--since", "soon"])
    assert "is not an ISO-8601 time" in capsys.readouterr().err


def _rows(first: int, count: int) -> list[LogRow]:
    return [LogRow(T0 + i * 1000, f"r{i}", 0, "cfg", None, [i, "p"], None,
                   wire({"statuses": [1] * 11, "values": _values(i), "event": [T0 + i, 0]}))
            for i in range(first, first + count)]


def test_a_file_of_the_older_column_per_feature_layout_reads_like_the_vector_layout(
    tmp_path: Path,
) -> None:
    # The same records written by today's sink and as a file of the older layout (a column
    # per feature, no layout marker), by hand as the writer of that layout did.
    _write(tmp_path / "new", SCHEMA, 0, 5)
    records, malformed = record_batch(SCHEMA, _rows(0, 5))
    assert records is not None and malformed == 0
    assert records.schema.metadata.get(b"fetcher.record_layout") is None
    write_schema(tmp_path / "old", SCHEMA)
    folder = tmp_path / "old/service=svc/date=2025-12-01"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_batches([records]),
                   folder / f"{T0}-{T0 + 4000}-{SCHEMA.hash}-x-1.parquet")
    outs = []
    for name in ("new", "old"):
        out = tmp_path / f"{name}.parquet"
        assert read_logs(tmp_path / name, "svc", out, since_ms=0).records == 5
        outs.append(pq.read_table(out))
    assert outs[0].equals(outs[1])
    written = next((tmp_path / "new").rglob("*.parquet"))
    assert pq.read_schema(written).names[-1] == "vector"  # the served bytes, not decoded


def test_a_malformed_vector_is_left_out_at_read_time_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    rows = _rows(0, 4)
    rows[1] = rows[1]._replace(wire=b"\xff\x01")  # not a FeatureVector of SCHEMA
    rows[2] = rows[2]._replace(wire=rows[2].wire + rows[3].wire)  # two vectors in one
    sink = FileSink(tmp_path / "log", max_file_bytes=1 << 30, max_file_seconds=60, tag="m")
    sink.write(LogBatch(SCHEMA, raw_batch(SCHEMA, LogColumns.from_rows(rows))))
    sink.close()
    out = tmp_path / "o.parquet"
    summary = read_logs(tmp_path / "log", "svc", out, since_ms=0)
    assert (summary.records, summary.malformed) == (2, 2)
    assert pq.read_table(out).column("request_id").to_pylist() == ["r0", "r3"]
    assert main(["logs", "read", str(tmp_path / "log"), "--service", "svc", "--since", "0",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 records of svc" in captured.out
    assert "2 record(s) left out: their vector does not match their schema" in captured.err
