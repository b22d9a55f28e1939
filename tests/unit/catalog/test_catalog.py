"""Catalog loading: the demo catalog, and one bad config per validation rule."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fetcher.catalog._loader import CatalogError, load_catalog, service_request_keys
from fetcher.codec._avro import GroupCodec
from fetcher.types import FeatureType, KeyColumn, KeyType

DEMO = Path(__file__).resolve().parents[3] / "config" / "demo"


def test_demo_catalog_loads() -> None:
    catalog = load_catalog(DEMO, store_names={"main"})
    assert set(catalog.groups) == {"user_profile", "merchant_stats", "place_visits"}
    assert set(catalog.services) == {"user_merchant", "user_place"}
    user = catalog.groups["user_profile"]
    assert len(user.features) >= 20 and user.max_age_s == 7 * 86400
    assert {f.type for f in user.features} >= {FeatureType.DOUBLE_LIST, FeatureType.STRING_LIST}
    assert any(f.nullable for f in user.features)
    assert catalog.groups["place_visits"].keys == (
        KeyColumn("s2_cell_id", KeyType.INT64),
        KeyColumn("place_id", KeyType.STRING),
    )
    assert service_request_keys(catalog, catalog.services["user_place"]) == (
        KeyColumn("user_id", KeyType.INT64),
        KeyColumn("cell_id", KeyType.INT64),
        KeyColumn("place_id", KeyType.STRING),
    )
    assert len(catalog.version) == 12
    assert len(catalog.registry) == 4  # user_profile v1 + v2, merchant_stats, place_visits


def test_demo_old_rows_read_with_new_schema() -> None:
    catalog = load_catalog(DEMO)
    codec = catalog.codecs["user_profile"]
    v1_text = (DEMO / "groups/user_profile.v1.avsc").read_text()
    v1_fp = catalog.registry.register(v1_text, "v1")  # already registered: same fingerprint
    assert len(catalog.registry) == 4
    old = GroupCodec(catalog.registry, v1_fp)
    row = {f.name: _sample(f.type, f.nullable) for f in catalog.groups["user_profile"].features}
    del row["referral_count"]
    assert codec.decode(old.encode(row)) == {**row, "referral_count": 0}


def _sample(kind: FeatureType, nullable: bool) -> Any:
    if nullable:
        return None
    return {
        FeatureType.DOUBLE: 1.5, FeatureType.INT64: 3, FeatureType.STRING: "s",
        FeatureType.BOOL: True, FeatureType.BYTES: b"b", FeatureType.DOUBLE_LIST: [1.0],
        FeatureType.INT64_LIST: [1], FeatureType.STRING_LIST: ["a"], FeatureType.BOOL_LIST: [True],
    }[kind]  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copytree(DEMO, tmp_path / "cfg")
    return tmp_path / "cfg"


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_version_changes_with_content(config: Path) -> None:
    before = load_catalog(config).version
    assert load_catalog(config).version == before
    _edit(config / "groups/user_profile.json", lambda d: d.update(description="changed"))
    assert load_catalog(config).version != before


G = "groups/user_profile.json"
S = "services/user_merchant.json"


def _set(file: str, **values: Any) -> Callable[[Path], None]:
    return lambda cfg: _edit(cfg / file, lambda d: d.update(values))


def _drop(file: str, key: str) -> Callable[[Path], None]:
    return lambda cfg: _edit(cfg / file, lambda d: d.pop(key))


def _write(file: str, text: str) -> Callable[[Path], None]:
    return lambda cfg: (cfg / file).write_text(text)


def _schema_field(field: dict[str, Any]) -> Callable[[Path], None]:
    return lambda cfg: _edit(cfg / "groups/place_visits.avsc", lambda d: d["fields"].append(field))


CASES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("json syntax", _write(G, '{\n "name": "user_profile",\n}'), [G, "line 3", "not valid JSON"]),
    ("missing field", _drop(G, "store"), [G, "store", "is missing"]),
    ("unknown field", _set(G, stor="main"), [G, "stor", "unknown field", "did you mean 'store'"]),
    ("wrong type", _set(G, online="yes"), [G, "online", "wrong type", "true or false"]),
    ("bool as int", _set(G, max_age_seconds=True), [G, "max_age_seconds", "wrong type"]),
    ("name != file", _set(G, name="users"), [G, "name", "differs from the file name"]),
    ("dataset chars", _set(G, dataset="user profile"), [G, "dataset", "letters, digits"]),
    ("negative age", _set(G, max_age_seconds=-1), [G, "max_age_seconds", "not positive"]),
    ("no keys", _set(G, keys=[]), [G, "keys", "is empty"]),
    ("key type", _set(G, keys=[{"name": "user_id", "type": "uuid"}]), [G, "keys[0].type", "int64"]),
    (
        "dup key",
        _set(G, keys=[{"name": "a", "type": "int64"}, {"name": "a", "type": "string"}]),
        [G, "keys[1].name", "listed twice"],
    ),
    ("cache field", _set(G, cache={"l3": True}), [G, "cache.l3", "unknown field"]),
    ("missing schema", _set(G, schema="nope.avsc"), [G, "schema", "nope.avsc does not exist"]),
    (
        "missing previous",
        _set(G, previous_schemas=["v0.avsc"]),
        [G, "previous_schemas[0]", "v0.avsc does not exist"],
    ),
    (
        "schema syntax",
        _write("groups/user_profile.avsc", "{"),
        ["groups/user_profile.avsc", "not valid JSON"],
    ),
    (
        "schema not record",
        _write("groups/user_profile.avsc", '"long"'),
        ["groups/user_profile.avsc", "not an Avro record"],
    ),
    (
        "schema invalid",
        _schema_field({"name": "z", "type": "lung"}),
        ["groups/place_visits.avsc", "not a valid Avro schema"],
    ),
    (
        "unsupported type",
        _schema_field({"name": "m", "type": {"type": "map", "values": "long"}}),
        ["groups/place_visits.avsc", "fields.m", "unsupported type map<long>", "supported"],
    ),
    (
        "feature = key",
        _schema_field({"name": "place_id", "type": "string"}),
        ["groups/place_visits.avsc", "fields.place_id", "name of a key column"],
    ),
    (
        "incompatible previous",
        lambda cfg: _edit(
            cfg / "groups/user_profile.avsc",
            lambda d: d["fields"].append({"name": "new_no_default", "type": "long"}),
        ),
        ["groups/user_profile.v1.avsc", "new_no_default", "no default", "backward compatible"],
    ),
    (
        "unknown group",
        lambda cfg: _edit(cfg / S, lambda d: d["joins"][1].update(group="mx")),
        [S, "joins[1].group", "unknown group 'mx'", "merchant_stats"],
    ),
    ("empty joins", _set(S, joins=[]), [S, "joins", "is empty"]),
    (
        "mapping to unknown column",
        lambda cfg: _edit(cfg / S, lambda d: d["joins"][0].update(key_mapping={"uid": "userid"})),
        [S, "joins[0].key_mapping.uid", "no key column 'userid'", "user_id"],
    ),
    (
        "empty request key",
        lambda cfg: _edit(cfg / S, lambda d: d["joins"][0].update(key_mapping={"": "user_id"})),
        [S, "joins[0].key_mapping", "not a mapping"],
    ),
    (
        "key types clash",
        _write(
            S,
            json.dumps(
                {
                    "name": "user_merchant",
                    "joins": [
                        {"group": "user_profile"},
                        {"group": "place_visits", "key_mapping": {"user_id": "place_id"}},
                    ],
                }
            ),
        ),
        [S, "request key 'user_id'", "int64", "string", "differently named"],
    ),
    (
        "duplicate outputs",
        lambda cfg: _edit(cfg / S, lambda d: d["joins"][1].update(prefix="user_")),
        [S, "'user_country'", "merchant_stats", "user_profile", "different prefixes"],
    ),
    (
        "offline group",
        _set(G, online=False),
        [S, "online service uses offline group 'user_profile'", "set online to true"],
    ),
    ("service name", _set(S, name="other"), [S, "name", "differs from the file name"]),
    ("sample above 100", _set(S, sample_percent=100.5),
     [S, "sample_percent", "100.5 is not in [0, 100]", "0 (log none)"]),
    ("negative sample", _set(S, sample_percent=-1), [S, "sample_percent", "not in [0, 100]"]),
    ("sample as text", _set(S, sample_percent="50"), [S, "sample_percent", "wrong type"]),
]


@pytest.mark.parametrize(("label", "mutate", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_names_file_field_and_fix(
    config: Path, label: str, mutate: Callable[[Path], None], needles: list[str]
) -> None:
    mutate(config)
    with pytest.raises(CatalogError) as err:
        load_catalog(config)
    text = str(err.value)
    for needle in needles:
        assert needle in text, f"{label}: {needle!r} not in\n{text}"
    assert all(". Fix: " in problem for problem in err.value.problems)


def test_unknown_store_lists_known(config: Path) -> None:
    with pytest.raises(CatalogError) as err:
        load_catalog(config, store_names={"redis", "cass"})
    assert "unknown store 'main' (known: cass, redis)" in str(err.value)
    assert len(err.value.problems) == 3  # one per group: every problem is reported


def test_duplicate_group_names(config: Path) -> None:
    shutil.copy(config / G, config / "groups/user_profile2.json")
    with pytest.raises(CatalogError, match=r"user_profile2\.json: name: 'user_profile' differs"):
        load_catalog(config)


def test_missing_groups_directory(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path)


def test_broken_group_is_not_blamed_again_by_services(config: Path) -> None:
    _set(G, schema="nope.avsc")(config)
    with pytest.raises(CatalogError) as err:
        load_catalog(config)
    assert len(err.value.problems) == 1


def test_sample_percent_defaults_to_100_and_reads_0_to_100(config: Path) -> None:
    assert load_catalog(config).services["user_merchant"].sample_percent == 100.0
    for value in (0, 12.5, 100):
        _set(S, sample_percent=value)(config)
        assert load_catalog(config).services["user_merchant"].sample_percent == float(value)
