"""Shared pieces of the fetcher.load tests: a group with every feature type, rows, stores."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fetcher.codec._avro import GroupCodec, SchemaRegistry, avro_to_features
from fetcher.codec._keys import key_encoder
from fetcher.types import FeatureGroup, KeyColumn, KeyType
from kvstores import KVStore, Row, StoreError
from kvstores.base import Found, Lookup

T0 = 1_717_000_000_000  # 2024-05-29T16:26:40Z

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Profile",
    "namespace": "test",
    "fields": [
        {"name": "score", "type": "double"},
        {"name": "visits", "type": "long"},
        {"name": "small", "type": "int"},
        {"name": "country", "type": "string"},
        {"name": "active", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {"name": "weights", "type": {"type": "array", "items": "double"}},
        {"name": "counts", "type": {"type": "array", "items": "long"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "flags", "type": {"type": "array", "items": "boolean"}},
        {"name": "nickname", "type": ["null", "string"]},
        {"name": "rating", "type": ["null", "double"], "default": None},
        {"name": "tier", "type": "string", "default": "basic"},
    ],
}
COLUMNS = [f["name"] for f in SCHEMA["fields"]]


def make_group(
    keys: tuple[KeyColumn, ...] = (KeyColumn("user_id", KeyType.INT64),), ttl_s: int | None = None
) -> tuple[FeatureGroup, GroupCodec]:
    """A group over SCHEMA (every feature type) and its codec, as the catalog would build it."""
    registry = SchemaRegistry()
    codec = GroupCodec(registry, registry.register(SCHEMA, "test/profile.avsc"))
    group = FeatureGroup(
        name="profile",
        store="main",
        dataset="profile",
        keys=keys,
        features=avro_to_features(codec.schema),
        max_age_s=None,
        online=True,
        schema=codec.schema,
        ttl_s=ttl_s,
    )
    return group, codec


def record(i: int) -> dict[str, Any]:
    """A full, valid record for entity i, with every type and both null/non-null optionals."""
    return {
        "score": i + 0.25,
        "visits": i * 1_000_000_007,
        "small": -i,
        "country": ["DE", "FR", 'Zoë, "quoted"'][i % 3],
        "active": i % 2 == 0,
        "blob": bytes([i % 256, 0, 255]),
        "weights": [0.5, i / 3],
        "counts": [i, -(2**63)],
        "tags": ["a", f"t{i}"],
        "flags": [True, False],
        "nickname": None if i % 2 else f"nick{i}",
        "rating": None if i % 3 else 4.5,
        "tier": "gold",
    }


def csv_cell(value: Any) -> str:
    """A value spelled as the loader reads CSV cells: true/false, 0x-hex, JSON arrays."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    """Write a CSV file (quoted by the csv module) and return its path."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def jsonable(rec: dict[str, Any]) -> dict[str, Any]:
    """`rec` with bytes as 0x-hex strings, as JSON Lines files carry them."""
    return {k: "0x" + v.hex() if isinstance(v, bytes) else v for k, v in rec.items()}


class RecordingStore(KVStore):
    """Wraps a real store and records each multi_put batch and the concurrency seen."""

    kind = "recording"

    def __init__(self, inner: KVStore, fail_on_batch: int | None = None) -> None:
        self.inner = inner
        self.batches: list[list[Row]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_on_batch = fail_on_batch

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        return await self.inner.multi_get(lookups)

    async def multi_put(self, rows: Sequence[Row]) -> None:
        self.batches.append(list(rows))
        if self.fail_on_batch is not None and len(self.batches) >= self.fail_on_batch:
            raise StoreError("store down")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)  # a network round trip: lets batches overlap
            await self.inner.multi_put(rows)
        finally:
            self.in_flight -= 1

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def read_back(
    store: KVStore, group: FeatureGroup, codec: GroupCodec, keys: Sequence[tuple[Any, ...]]
) -> list[tuple[dict[str, Any], int] | None]:
    """Latest (decoded record, event ms) of each key, or None."""
    encode = key_encoder(group.keys)
    found = await store.multi_get([(group.dataset, encode(k), None) for k in keys])
    return [None if f is None else (codec.decode(f[0]), f[1]) for f in found]


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> Path:
    """Write `rows` as Parquet in row groups of 3 (so reads cross row groups)."""
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=3)
    return path
