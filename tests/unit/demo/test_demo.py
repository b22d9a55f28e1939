"""fetcher.demo._write: deterministic demo rows from the schemas, written as `fetcher load` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fetcher.catalog._loader import Catalog, load_catalog
from fetcher.codec._avro import GroupCodec, SchemaRegistry, avro_to_features
from fetcher.codec._keys import key_encoder
from fetcher.demo._data import (
    DemoRow,
    demo_cell_id,
    generate_demo_rows,
    older_version_age_ms,
    stale_entities,
)
from fetcher.demo._write import DemoError, write_demo, write_demo_files
from fetcher.load._writer import load_file
from fetcher.types import FeatureGroup, FeatureType, KeyColumn, KeyType
from kvstores import KVStore, open_store
from tests.unit.aggregation_support import NAME, demo_with_aggregation_group

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config" / "demo"
NOW = 1_800_000_000_000
DAY_MS = 86_400_000

PYTHON_TYPES: dict[FeatureType, type] = {
    FeatureType.DOUBLE: float,
    FeatureType.INT64: int,
    FeatureType.STRING: str,
    FeatureType.BOOL: bool,
    FeatureType.BYTES: bytes,
}
ELEMENT_TYPES: dict[FeatureType, type] = {
    FeatureType.DOUBLE_LIST: float,
    FeatureType.INT64_LIST: int,
    FeatureType.STRING_LIST: str,
    FeatureType.BOOL_LIST: bool,
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CONFIG_DIR)


def settings_file(tmp_path: Path) -> Path:
    """Settings with the repo's demo catalog and an embedded store in tmp_path."""
    path = tmp_path / "demo.toml"
    path.write_text(
        f'[server]\nconfig_dir = "{CONFIG_DIR}"\n\n'
        f'[stores.main]\nurl = "embedded://{tmp_path / "demo.lmdb"}?sync=false"\n',
        encoding="utf-8",
    )
    return path


def by_entity(rows: list[DemoRow]) -> dict[tuple[Any, ...], list[DemoRow]]:
    out: dict[tuple[Any, ...], list[DemoRow]] = {}
    for row in rows:
        out.setdefault(row.keys, []).append(row)
    return out


def check_types(group: FeatureGroup, rows: list[DemoRow]) -> None:
    """Every feature has non-null values of its type; every nullable one also has nulls."""
    for feature in group.features:
        values = [row.record[feature.name] for row in rows]
        present = [v for v in values if v is not None]
        assert present, f"{group.name}.{feature.name} is always null"
        if feature.nullable:
            assert len(present) < len(values), f"{group.name}.{feature.name} is never null"
        if feature.type in PYTHON_TYPES:
            assert all(type(v) is PYTHON_TYPES[feature.type] for v in present), feature
        else:
            assert all(type(v) is list for v in present), feature
            items = [item for v in present for item in v]
            assert items, f"{group.name}.{feature.name}: every list is empty"
            assert all(type(i) is ELEMENT_TYPES[feature.type] for i in items), feature


def test_rows_are_deterministic(catalog: Catalog) -> None:
    for group in catalog.groups.values():
        first = generate_demo_rows(group, now_ms=NOW)
        assert first == generate_demo_rows(group, now_ms=NOW)
        assert first != generate_demo_rows(group, now_ms=NOW, seed=7)


def test_demo_rows_cover_every_demo_feature_and_type(catalog: Catalog) -> None:
    seen: set[FeatureType] = set()
    for group in catalog.groups.values():
        check_types(group, generate_demo_rows(group, now_ms=NOW))
        seen |= {f.type for f in group.features}
    # The demo schemas have no array<boolean>; test_generator_follows_any_schema covers it.
    # BYTES_LIST comes only from Feast views (no Avro schema has it).
    assert seen == set(FeatureType) - {FeatureType.BOOL_LIST, FeatureType.BYTES_LIST}


def test_generator_follows_any_schema() -> None:
    scalars = ["double", "float", "int", "long", "string", "boolean", "bytes"]
    fields: list[dict[str, Any]] = [{"name": f"f_{t}", "type": t} for t in scalars]
    fields += [{"name": f"opt_{t}", "type": ["null", t], "default": None} for t in scalars]
    fields += [
        {"name": f"list_{t}", "type": {"type": "array", "items": t}}
        for t in ("double", "long", "string", "boolean")
    ]
    schema = {"type": "record", "name": "All", "fields": fields}
    registry = SchemaRegistry()
    codec = GroupCodec(registry, registry.register(schema, "all.avsc"))
    group = FeatureGroup(
        name="anything",
        store="main",
        dataset="anything",
        keys=(KeyColumn("id", KeyType.BYTES), KeyColumn("name", KeyType.STRING)),
        features=avro_to_features(codec.schema),
        max_age_s=None,
        online=True,
        schema=codec.schema,
    )
    rows = generate_demo_rows(group, now_ms=NOW)
    assert len(by_entity(rows)) == 1_000 and not stale_entities(group)
    assert {f.type for f in group.features} == set(FeatureType) - {FeatureType.BYTES_LIST}
    check_types(group, rows)
    for row in rows[:50]:
        assert codec.decode(codec.encode(row.record)) == row.record  # float32 values survive


def test_entities_versions_and_stale_ids(catalog: Catalog) -> None:
    users = catalog.groups["user_profile"]
    entities = by_entity(generate_demo_rows(users, now_ms=NOW))
    assert sorted(entities) == [(i,) for i in range(1, 10_001)]
    max_age_ms = (users.max_age_s or 0) * 1000
    for (i,), versions in entities.items():
        newest = versions[-1]
        if i > 9_990:
            assert len(versions) == 1 and NOW - newest.event_ms > max_age_ms
            continue
        assert NOW - 30 * 60_000 <= newest.event_ms <= NOW - 60_000
        if i % 10 == 0:
            older = versions[0]
            assert len(versions) == 2
            assert older.event_ms == NOW - older_version_age_ms(users) < newest.event_ms
            assert older.record != newest.record
        else:
            assert len(versions) == 1
    places = by_entity(generate_demo_rows(catalog.groups["place_visits"], now_ms=NOW))
    assert (demo_cell_id(1), "place-00001") in places
    # Level-13 S2 cell ids: positive int64, a 1 bit at position 34 and zeros below it.
    assert all(0 < k[0] < 2**63 and k[0] & ((1 << 35) - 1) == 1 << 34 for k in places)


async def read(
    store: KVStore, catalog: Catalog, group: str, keys: tuple[Any, ...], at_ms: int | None = None
) -> tuple[dict[str, Any], int] | None:
    g = catalog.groups[group]
    (found,) = await store.multi_get([(g.dataset, key_encoder(g.keys)(keys), at_ms)])
    return None if found is None else (catalog.codecs[group].decode(found[0]), found[1])


async def test_write_demo_writes_every_group_once(tmp_path: Path, catalog: Catalog) -> None:
    settings = settings_file(tmp_path)
    counts = await write_demo(settings, now_ms=NOW)
    assert counts == {"merchant_stats": 1_099, "place_visits": 2_199, "user_profile": 10_999}
    # Idempotent: the marker says the data is there, so a later run writes nothing.
    assert await write_demo(settings, now_ms=NOW + 60_000) == {}

    store = open_store(f"embedded://{tmp_path / 'demo.lmdb'}")
    try:
        expected = by_entity(generate_demo_rows(catalog.groups["user_profile"], now_ms=NOW))
        for user in (1, 10, 9_999, 10_000):
            newest = expected[(user,)][-1]
            assert await read(store, catalog, "user_profile", (user,)) == (
                newest.record,
                newest.event_ms,
            )
        old = expected[(10,)][0]
        two_hours_ago = NOW - 2 * 3_600_000
        assert await read(store, catalog, "user_profile", (10,), two_hours_ago) == (
            old.record,
            old.event_ms,
        )
        assert await read(store, catalog, "user_profile", (10_001,)) is None
        assert await read(store, catalog, "merchant_stats", (1_000,)) is not None
    finally:
        await store.close()
    assert await write_demo(settings, now_ms=NOW + 60_000, force=True) == counts


async def test_demo_files_load_back_with_the_loader(tmp_path: Path, catalog: Catalog) -> None:
    paths = write_demo_files(tmp_path / "files", CONFIG_DIR, now_ms=NOW)
    assert {p.suffix for p in paths.values()} == {".csv", ".jsonl", ".parquet"}
    store = open_store(f"embedded://{tmp_path / 'files.lmdb'}?sync=false")
    try:
        for name, path in paths.items():
            group = catalog.groups[name]
            rows = generate_demo_rows(group, now_ms=NOW)
            report = await load_file(path, group, catalog.codecs[name], store)
            assert report.ok and report.rows_written == len(rows), report
            for row in rows[-25:]:
                got = await read(store, catalog, name, row.keys, row.event_ms)
                assert got == (row.record, row.event_ms)
    finally:
        await store.close()


async def test_the_demo_refuses_an_aggregation_group(tmp_path: Path) -> None:
    config = demo_with_aggregation_group(tmp_path / "cfg")
    with pytest.raises(DemoError, match=f"group '{NAME}' .* is an aggregation group: the demo "
                       "writes rows of groups with an Avro schema"):
        write_demo_files(tmp_path / "files", config, now_ms=NOW)
    assert not (tmp_path / "files").exists()
    settings = tmp_path / "s.toml"
    settings.write_text(f'[server]\nconfig_dir = "{config}"\n\n[stores.main]\n'
                        f'url = "embedded://{tmp_path / "d.lmdb"}?sync=false"\n')
    with pytest.raises(DemoError, match="is an aggregation group"):
        await write_demo(settings, now_ms=NOW, env={})
