"""`fetcher demo`: write the demo data set into the demo store(s), or as files.

The rows come from fetcher.demo._data (which ids show which case is documented
there) and go through the loader's own path: the same row checks, Avro encoding
and batched `multi_put` as `fetcher load`.

A marker row in each store (dataset `_fetcher_demo`) records what was written: the
catalog version and the generator version. `write_demo` skips a store whose marker
matches, so running it twice is cheap; the marker is written last, so an interrupted
run is redone, and it expires with the shortest max age / TTL of the store's groups,
so the demo is rewritten once its "fresh" rows would no longer be fresh.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fetcher.catalog import Catalog, load_catalog
from fetcher.config import load_settings
from fetcher.demo._data import (
    DEMO_SEED,
    DemoRow,
    generate_demo_rows,
)
from fetcher.demo._files import EVENT_TIME_COLUMN, WRITERS
from fetcher.load import BatchWriter, RowPreparer, RowRejected
from fetcher.types import FeatureGroup
from kvstores import KVStore, Row, open_store

__all__ = [
    "DEMO_FILE_FORMATS",
    "MARKER_DATASET",
    "DemoError",
    "generate_demo_rows",
    "write_demo",
    "write_demo_files",
    "write_demo_rows",
]

#: Bumped whenever the generated rows change, so existing demo data is rewritten.
GENERATOR_VERSION = 1
MARKER_DATASET = "_fetcher_demo"
MARKER_KEY = b"demo"
#: File format per demo group: one of each, so the README can show all three.
DEMO_FILE_FORMATS: Mapping[str, str] = {
    "user_profile": "csv",
    "merchant_stats": "jsonl",
    "place_visits": "parquet",
}
_EXTENSIONS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}


class DemoError(Exception):
    """Demo rows that the group rejects (the generator and the schema disagree), or a catalog
    with a group the demo cannot generate rows for (an aggregation group)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _native(group: FeatureGroup, row: DemoRow) -> dict[str, Any]:
    values: dict[str, Any] = {c.name: k for c, k in zip(group.keys, row.keys, strict=True)}
    values[EVENT_TIME_COLUMN] = row.event_ms
    values.update(row.record)
    return values


async def write_demo_rows(
    group: FeatureGroup,
    preparer: RowPreparer,
    store: KVStore,
    rows: Sequence[DemoRow],
    *,
    batch_size: int = 1000,
) -> int:
    """Check, encode and write `rows` of `group` exactly as the loader does; returns the count."""
    writer = BatchWriter(store, batch_size=batch_size)
    try:
        for row in rows:
            try:
                key, event_ms, value = preparer.prepare(_native(group, row))
            except RowRejected as exc:
                raise DemoError(
                    f"demo row {row.keys} of group {group.name!r} rejected: "
                    f"{exc.field}: {exc.message}"
                ) from None
            await writer.add(Row(group.dataset, key, value, event_ms, group.ttl_s))
        await writer.flush()
    except BaseException:
        await writer.abort()
        raise
    return writer.rows_written


def _rows_groups(catalog: Catalog) -> list[FeatureGroup]:
    """The catalog's groups, all of stored rows: the demo generates rows from Avro schemas."""
    for group in catalog.groups.values():
        if group.aggregation is not None:
            raise DemoError(
                f"group {group.name!r} ({group.source}) is an aggregation group: the demo "
                "writes rows of groups with an Avro schema; load its events with "
                "`fetcher load --events`"
            )
    return list(catalog.groups.values())


def _marker(catalog: Catalog, seed: int) -> dict[str, Any]:
    return {"generator": GENERATOR_VERSION, "catalog": catalog.version, "seed": seed}


def _marker_ttl_s(groups: Sequence[FeatureGroup]) -> int | None:
    limits = [g.max_age_s for g in groups if g.max_age_s] + [g.ttl_s for g in groups if g.ttl_s]
    return min(limits) if limits else None


async def _marker_matches(store: KVStore, expected: Mapping[str, Any]) -> bool:
    (found,) = await store.multi_get([(MARKER_DATASET, MARKER_KEY, None)])
    if found is None:
        return False
    try:
        stored = json.loads(found[0])
    except ValueError:
        return False
    return isinstance(stored, dict) and all(stored.get(k) == v for k, v in expected.items())


async def write_demo(
    settings_path: str | os.PathLike[str],
    *,
    force: bool = False,
    now_ms: int | None = None,
    seed: int = DEMO_SEED,
    env: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Write the demo rows of every group into its store; returns rows written per group.

    A store whose marker says it already holds this demo data is skipped (its
    groups are absent from the result) unless `force`; {} means nothing was written.
    """
    settings = load_settings(settings_path, env)
    catalog = load_catalog(settings.server.config_dir, settings.stores.keys())
    now = _now_ms() if now_ms is None else now_ms
    by_store: dict[str, list[FeatureGroup]] = {}
    for group in _rows_groups(catalog):
        by_store.setdefault(group.store, []).append(group)
    expected = _marker(catalog, seed)
    counts: dict[str, int] = {}
    for store_name, groups in sorted(by_store.items()):
        conf = settings.stores[store_name]
        store = open_store(conf.url, timeout_s=conf.timeout_ms / 1000)
        try:
            if not force and await _marker_matches(store, expected):
                continue
            for group in sorted(groups, key=lambda g: g.name):
                preparer = RowPreparer(group, catalog.codecs[group.name], text=False)
                rows = generate_demo_rows(group, now_ms=now, seed=seed)
                counts[group.name] = await write_demo_rows(group, preparer, store, rows)
            marker = {**expected, "written_ms": now, "counts": counts}
            await store.multi_put(
                [
                    Row(
                        MARKER_DATASET,
                        MARKER_KEY,
                        json.dumps(marker).encode(),
                        now,
                        _marker_ttl_s(groups),
                    )
                ]
            )
        finally:
            await store.close()
    return counts


def write_demo_files(
    out_dir: str | os.PathLike[str],
    config_dir: str | os.PathLike[str] = "config/demo",
    *,
    now_ms: int | None = None,
    seed: int = DEMO_SEED,
) -> dict[str, Path]:
    """Write each group's demo rows to `out_dir` (CSV, JSONL or Parquet); returns the paths.

    Groups not in DEMO_FILE_FORMATS take the formats in turn.
    """
    catalog = load_catalog(config_dir)
    _rows_groups(catalog)
    now = _now_ms() if now_ms is None else now_ms
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cycle = list(_EXTENSIONS)
    paths: dict[str, Path] = {}
    for n, name in enumerate(sorted(catalog.groups)):
        group = catalog.groups[name]
        fmt = DEMO_FILE_FORMATS.get(name, cycle[n % len(cycle)])
        path = out / f"{name}{_EXTENSIONS[fmt]}"
        WRITERS[fmt](path, group, generate_demo_rows(group, now_ms=now, seed=seed))
        paths[name] = path
    return paths
