"""A fuzzed corpus of bad configs: the demo configs and schemas mutated (fields dropped,
wrong types, random JSON, broken avsc). The loader rejects each with a message naming the
file and the field, or loads the whole catalog; never half of it. `fetcher serve` exits 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.catalog._loader import CatalogError, load_catalog
from tests.e2e.conftest import CONFIG_DIR, FETCHER, fetcher_env, free_port, write_settings

FILES = sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*.*"))
JSON_FILES = [f for f in FILES if f.endswith(".json")]
AVSC_FILES = [f for f in FILES if f.endswith(".avsc")]

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, str]:
    """(file, the field touched or "", new file text)."""
    name = draw(st.sampled_from(FILES))
    text = (CONFIG_DIR / name).read_text(encoding="utf-8")
    kind = draw(st.sampled_from(["drop", "retype", "random-doc", "truncate"]))
    if kind == "truncate":
        cut = draw(st.integers(0, max(0, len(text) - 2)))
        return name, "", text[:cut]
    if kind == "random-doc":
        return name, "", json.dumps(draw(json_values))
    doc = json.loads(text)
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if kind == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    field = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
    return name, field, json.dumps(doc)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations())
def test_mutated_config_is_rejected_by_name_or_loaded_whole(
    tmp_path_factory: pytest.TempPathFactory, mutation: tuple[str, str, str]
) -> None:
    name, _field, text = mutation
    config = tmp_path_factory.mktemp("fuzz") / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / name).write_text(text, encoding="utf-8")
    try:
        catalog = load_catalog(config)
    except CatalogError as exc:
        message = str(exc)
        file_named = Path(name).name in message or Path(name).stem in message
        assert file_named, f"{name}: message does not name the file:\n{message}"
        return
    # Accepted (a harmless change, e.g. a description): then nothing may be missing.
    assert set(catalog.groups) == {"user_profile", "merchant_stats", "place_visits"}
    assert set(catalog.services) == {"user_merchant", "user_place"}


@pytest.mark.parametrize(("name", "field", "value"), [
    ("groups/user_profile.json", "store", 7),
    ("groups/merchant_stats.json", "keys", "merchant_id"),
    ("groups/place_visits.json", "max_age_seconds", "a day"),
    ("services/user_merchant.json", "joins", None),
])
def test_wrong_field_type_names_file_and_field(tmp_path: Path, name: str, field: str,
                                              value: Any) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    doc = json.loads((config / name).read_text())
    doc[field] = value
    (config / name).write_text(json.dumps(doc))
    with pytest.raises(CatalogError) as caught:
        load_catalog(config)
    assert Path(name).name in str(caught.value) and field in str(caught.value)


def test_serve_on_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / "groups" / "user_profile.avsc").write_text('{"type": "record", "name": ')
    port = free_port()
    settings_path = write_settings(tmp_path / "settings.toml", port=port,
                                   store_url=f"embedded://{tmp_path}/x.lmdb")
    text = settings_path.read_text().replace(json.dumps(str(CONFIG_DIR)), json.dumps(str(config)))
    settings_path.write_text(text)
    result = subprocess.run([str(FETCHER), "serve", "--settings", str(settings_path)],
                            env=fetcher_env(), capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "user_profile.avsc" in result.stderr
