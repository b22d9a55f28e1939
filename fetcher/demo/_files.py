"""Demo rows as files `fetcher load` reads: CSV, JSON Lines and Parquet.

The spellings are the loader's: bytes as "0x" + hex, arrays as JSON in a CSV cell,
an empty CSV cell for null, event times as ISO-8601 (CSV), epoch ms (JSONL) and a
timestamp[ms, UTC] column (Parquet), so the three files also show the three forms.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fetcher.demo._data import DemoRow
from fetcher.types import FeatureGroup, FeatureType, KeyType

EVENT_TIME_COLUMN = "event_time"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PARQUET_ROWS_PER_GROUP = 5_000


def iso_ms(event_ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds: 2024-05-29T16:26:40.001Z."""
    # timedelta arithmetic is exact; fromtimestamp(ms / 1000) can round a millisecond away.
    text = (_EPOCH + timedelta(milliseconds=event_ms)).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _columns(group: FeatureGroup) -> list[str]:
    return [c.name for c in group.keys] + [EVENT_TIME_COLUMN] + [f.name for f in group.features]


def _text_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list):
        return [_text_value(v) for v in value]
    return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # repr round-trips a double exactly
    if isinstance(value, list):
        return json.dumps(_text_value(value))
    return str(_text_value(value))


def write_csv(path: Path, group: FeatureGroup, rows: Sequence[DemoRow]) -> None:
    """One header line, then one line per version; event times in ISO-8601."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_columns(group))
        for row in rows:
            features = [_csv_cell(row.record.get(f.name)) for f in group.features]
            writer.writerow([_csv_cell(k) for k in row.keys] + [iso_ms(row.event_ms)] + features)


def write_jsonl(path: Path, group: FeatureGroup, rows: Sequence[DemoRow]) -> None:
    """One JSON object per line; event times in epoch ms."""
    key_names = [c.name for c in group.keys]
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            obj: dict[str, Any] = {
                n: _text_value(v) for n, v in zip(key_names, row.keys, strict=True)
            }
            obj[EVENT_TIME_COLUMN] = row.event_ms
            obj.update({k: _text_value(v) for k, v in row.record.items()})
            fh.write(json.dumps(obj, separators=(",", ":")) + "\n")


def _arrow_schema(group: FeatureGroup) -> Any:
    import pyarrow as pa

    keys = {KeyType.INT64: pa.int64(), KeyType.STRING: pa.string(), KeyType.BYTES: pa.binary()}
    scalars = {
        FeatureType.DOUBLE: pa.float64(),
        FeatureType.INT64: pa.int64(),
        FeatureType.STRING: pa.string(),
        FeatureType.BOOL: pa.bool_(),
        FeatureType.BYTES: pa.binary(),
        FeatureType.DOUBLE_LIST: pa.list_(pa.float64()),
        FeatureType.INT64_LIST: pa.list_(pa.int64()),
        FeatureType.STRING_LIST: pa.list_(pa.string()),
        FeatureType.BOOL_LIST: pa.list_(pa.bool_()),
    }
    fields = [pa.field(c.name, keys[c.type], nullable=False) for c in group.keys]
    fields.append(pa.field(EVENT_TIME_COLUMN, pa.timestamp("ms", tz="UTC"), nullable=False))
    fields += [pa.field(f.name, scalars[f.type], nullable=f.nullable) for f in group.features]
    return pa.schema(fields)


def _chunks(rows: Sequence[DemoRow], size: int) -> Iterator[Sequence[DemoRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def write_parquet(path: Path, group: FeatureGroup, rows: Sequence[DemoRow]) -> None:
    """A Parquet file with typed columns, written one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(group)
    key_names = [c.name for c in group.keys]
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in _chunks(rows, _PARQUET_ROWS_PER_GROUP):
            dicts = []
            for row in chunk:
                obj: dict[str, Any] = dict(zip(key_names, row.keys, strict=True))
                # An int is taken as the unit of the timestamp type: epoch ms here.
                obj[EVENT_TIME_COLUMN] = row.event_ms
                obj.update(row.record)
                dicts.append(obj)
            writer.write_table(pa.Table.from_pylist(dicts, schema=schema))


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}
