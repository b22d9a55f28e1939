"""feature_store.yaml: what is read, and everything refused named at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetcher.feast import FeastError, read_feature_store_yaml


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feature_store.yaml"
    path.write_text(text)
    return path


def test_a_minimal_repo(tmp_path: Path) -> None:
    config = read_feature_store_yaml(
        _yaml(tmp_path, "project: shop\nregistry: data/registry.db\nonline_store:\n  type: redis\n")
    )
    assert config.project == "shop"
    assert config.registry_path == str((tmp_path / "data" / "registry.db").resolve())
    assert config.store_url == "feast+redis://localhost:6379/0"  # Feast's default
    assert config.redis_type == "redis"
    assert config.entity_key_serialization_version == 3


def test_connection_parameters_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss:w")
    config = read_feature_store_yaml(
        _yaml(
            tmp_path,
            "project: shop\n"
            "registry:\n  registry_type: file\n  path: /abs/registry.db\n  cache_ttl_seconds: 5\n"
            "online_store:\n  type: redis\n"
            '  connection_string: "cache:6380,db=2,ssl=true,password=${REDIS_PASSWORD}"\n'
            "  key_ttl_seconds: 600\n"
            "entity_key_serialization_version: 3\n",
        )
    )
    assert config.registry_path == "/abs/registry.db"
    assert config.store_url == "feast+rediss://:p%40ss%3Aw@cache:6380/2"


def test_a_redis_cluster(tmp_path: Path) -> None:
    config = read_feature_store_yaml(
        _yaml(
            tmp_path,
            "project: shop\nregistry: registry.db\nonline_store:\n  type: redis\n"
            "  redis_type: redis_cluster\n"
            '  connection_string: "n1:7001,n2:7002,skip_full_coverage_check=true,username=u"\n',
        )
    )
    assert config.store_url == "feast+redis+cluster://u@n1:7001,n2:7002"
    assert config.redis_type == "redis_cluster"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("online_store:\n  type: sqlite\n", "online_store.type: 'sqlite' is not supported"),
        ("", "online_store: missing (Feast's default is sqlite)"),
        (
            "online_store:\n  type: redis\n  redis_type: redis_sentinel\n",
            "online_store.redis_type: 'redis_sentinel' is not supported",
        ),
        (
            "online_store:\n  type: redis\n  connection_string: 'h:1,socket_timeout=3'\n",
            "parameter(s) socket_timeout not supported",
        ),
        (
            "online_store:\n  type: redis\n  connection_string: 'h:1,h:2'\n",
            "2 nodes for redis_type redis",
        ),
        (
            "online_store:\n  type: redis\nentity_key_serialization_version: 2\n",
            "entity_key_serialization_version: 2 is not supported: only 3",
        ),
    ],
)
def test_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(FeastError) as caught:
        read_feature_store_yaml(_yaml(tmp_path, f"project: shop\nregistry: r.db\n{text}"))
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_every_problem_at_once(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "registry:\n  path: s3://bucket/registry.db\n"
        "  enable_online_feature_view_versioning: true\n"
        "online_store:\n  type: dynamodb\nentity_key_serialization_version: 1\n",
    )
    with pytest.raises(FeastError) as caught:
        read_feature_store_yaml(path)
    text = str(caught.value)
    assert str(path) in text and "5 problem(s)" in text
    for problem in (
        "project: None",
        "enable_online_feature_view_versioning: true is not supported yet",
        "registry.path: 's3://bucket/registry.db' is not a local file",
        "online_store.type: 'dynamodb'",
        "entity_key_serialization_version: 1",
    ):
        assert problem in text
    with pytest.raises(FeastError, match="registry_type: 'sql' is not supported"):
        read_feature_store_yaml(
            _yaml(tmp_path, "project: p\nregistry:\n  registry_type: sql\n  path: x\n")
        )
    with pytest.raises(FeastError, match="is not a local file"):
        read_feature_store_yaml(
            _yaml(tmp_path, "project: p\nregistry: gs://b/r.db\nonline_store: redis\n")
        )
