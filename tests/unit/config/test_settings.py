"""Settings: TOML, env overrides, validation messages, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetcher.config import (
    CacheSettings,
    FeatureLogSettings,
    ServerSettings,
    SettingsError,
    StoreSettings,
    load_settings,
    mask_url,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fetcher.toml"
    path.write_text(text)
    return path


def test_demo_settings_load() -> None:
    s = load_settings("config/demo.toml", env={})
    assert s.server.listen == "127.0.0.1:50051"
    assert s.server.config_dir == "config/demo"
    assert s.stores["main"] == StoreSettings("main", "embedded://data/demo.lmdb")
    assert s.cache == CacheSettings()


def test_defaults_without_file() -> None:
    s = load_settings(None, env={})
    assert s.server == ServerSettings() and s.cache == CacheSettings() and s.stores == {}


def test_env_overrides_are_typed_and_can_define_a_store(tmp_path: Path) -> None:
    path = _write(tmp_path, '[stores.main]\nurl = "redis://a:1/0"\n[cache]\nl1_ttl_s = 2\n')
    env = {
        "FETCHER__SERVER__LISTEN": "0.0.0.0:6000",
        "FETCHER__CACHE__L1_MAX_ENTRIES": "10",
        "FETCHER__CACHE__L2_URL": "redis://:pw@c:6379/1",
        "FETCHER__STORES__MAIN__TIMEOUT_MS": "25",
        "FETCHER__STORES__EXTRA__URL": "redis://b:2/0",
        "FETCHER__STORES__EXTRA__REQUIRED": "false",
        "PATH": "/bin",
    }
    s = load_settings(path, env=env)
    assert s.server.listen == "0.0.0.0:6000"
    assert s.cache.l1_max_entries == 10 and s.cache.l1_ttl_s == 2.0
    assert isinstance(s.cache.l1_ttl_s, float)
    assert s.cache.l2_url == "redis://:pw@c:6379/1"
    assert s.stores["main"] == StoreSettings("main", "redis://a:1/0", timeout_ms=25)
    assert s.stores["extra"] == StoreSettings("extra", "redis://b:2/0", required=False)
    assert load_settings(path, env={"FETCHER__CACHE__L2_URL": ""}).cache.l2_url is None


@pytest.mark.parametrize(
    ("text", "env", "needles"),
    [
        ("[servr]\n", {}, ["fetcher.toml", "servr", "unknown section", "Fix:"]),
        ("[server]\nlisen = 'x'\n", {}, ["fetcher.toml", "server.lisen", "unknown key", "listen"]),
        ("[server]\nmax_batch_entities = '5'\n", {}, ["server.max_batch_entities", "integer"]),
        ("[cache]\nl1_max_entries = -1\n", {}, ["cache.l1_max_entries", "must be >= 0"]),
        ("[server]\nlisten = 'localhost'\n", {}, ["server.listen", "no valid port", "host:port"]),
        ("[stores.main]\ntimeout_ms = 5\n", {}, ["stores.main.url", "is missing", "FETCHER__"]),
        ("[stores.main]\nurl = 'nowhere'\n", {}, ["stores.main.url", "no scheme", "redis://"]),
        ("", {"FETCHER__CACHE__L1_TTL_S": "soon"}, ["FETCHER__CACHE__L1_TTL_S", "a number"]),
        ("", {"FETCHER__SERVER__LISTEN": "h:99999"}, ["FETCHER__SERVER__LISTEN", "server.listen"]),
        ("", {"FETCHER__SERVR__LISTEN": "h:1"}, ["FETCHER__SERVR__LISTEN", "not a settings"]),
        ("", {"FETCHER__STORES__X__RETRIES": "1"}, ["FETCHER__STORES__X__RETRIES", "unknown key"]),
        ("[server\n", {}, ["fetcher.toml", "not valid TOML"]),
        ("[log.features]\nqueue_size = 0\n", {}, ["log.features.queue_size", "must be > 0"]),
        ("[log.features]\ndirectory = ' '\n", {}, ["log.features.directory", "is empty"]),
        ("[log.features]\nmax_file_bytes = 1.5\n", {}, ["log.features.max_file_bytes",
                                                         "integer"]),
        ("", {"FETCHER__LOG__FEATURES__MAX_FILE_SECONDS": "-1"},
         ["FETCHER__LOG__FEATURES__MAX_FILE_SECONDS", "must be > 0"]),
        ("[log.features]\nenable = true\n", {}, ["log.features.enable", "unknown key",
                                                  "enabled"]),
        ("[log.features]\nsink = 'kafak'\n", {}, ["log.features.sink", "not a feature log sink",
                                                   "files or kafka"]),
        ("[log.features]\nsink = 'kafka'\nkafka_topic = 'a topic'\n", {},
         ["log.features.kafka_topic", "not a Kafka topic name"]),
        ("[log.features]\nsink = 'kafka'\nkafka_schema_topic = 'fetcher.feature-log'\n", {},
         ["log.features.kafka_schema_topic", "is the record topic"]),
        ("[log.features]\nsink = 'kafka'\nkafka_compression = 'brotli'\n", {},
         ["log.features.kafka_compression", "not a Kafka compression", "zstd"]),
        ("[kafka]\nbootstrap_servers = ' '\n[log.features]\nsink = 'kafka'\n", {},
         ["log.features.kafka_bootstrap_servers", "is empty"]),
        ("", {"FETCHER__LOG__FEATURES__SINK": "kafka",
              "FETCHER__LOG__FEATURES__KAFKA_CLOSE_TIMEOUT_S": "0"},
         ["FETCHER__LOG__FEATURES__KAFKA_CLOSE_TIMEOUT_S", "must be > 0"]),
        ("[log.features]\nsink = 'kafka'\nkafka_queue_records = 0\n", {},
         ["log.features.kafka_queue_records", "must be > 0"]),
        ("[feast]\nrepo = 'nowhere/feature_store.yaml'\n", {},
         ["feast.repo", "is not a readable file", "feature_store.yaml"]),
        ("[feast]\nhttp_listen = '127.0.0.1:6566'\n", {},
         ["feast.http_listen", "needs a Feast repo"]),
        ("", {"FETCHER__FEAST__HTTP_LISTEN": "nope"},
         ["FETCHER__FEAST__HTTP_LISTEN", "feast.http_listen", "has no valid port"]),
        ("[feast]\nwatch_interval_s = 0\n", {}, ["feast.watch_interval_s", "must be > 0"]),
    ],
)
def test_bad_settings_name_source_key_and_fix(
    tmp_path: Path, text: str, env: dict[str, str], needles: list[str]
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(_write(tmp_path, text), env=env)
    for needle in needles:
        assert needle in str(err.value)
    assert "Fix:" in str(err.value)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nlisten = 'x'\n[cache]\nl2_ttl_s = -1\n")
    with pytest.raises(SettingsError) as err:
        load_settings(path, env={})
    assert "server.listen" in str(err.value) and "cache.l2_ttl_s" in str(err.value)


def test_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"nope\.toml: cannot read"):
        load_settings(tmp_path / "nope.toml", env={})


def test_passwords_masked() -> None:
    assert mask_url("redis://:secret@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("redis://user:secret@h/0") == "redis://user:***@h/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    s = load_settings(
        None,
        env={
            "FETCHER__STORES__R__URL": "redis://u:hunter2@r/0",
            "FETCHER__CACHE__L2_URL": "redis://:pw@c/1",
        },
    )
    text = s.describe()
    assert "hunter2" not in text and "pw@" not in text
    assert "redis://u:***@r/0" in text and "redis://:***@c/1" in text


def test_feature_log_settings_from_the_file_and_env(tmp_path: Path) -> None:
    assert load_settings(None, env={}).log.features == FeatureLogSettings()
    assert FeatureLogSettings().enabled is False
    path = _write(tmp_path, '[log]\nlevel = "INFO"\n[log.features]\nenabled = true\n'
                            'directory = "/var/log/f"\nmax_file_seconds = 60\n')
    env = {"FETCHER__LOG__FEATURES__QUEUE_SIZE": "500",
           "FETCHER__LOG__FEATURES__MAX_FILE_BYTES": "1048576"}
    features = load_settings(path, env=env).log.features
    assert features == FeatureLogSettings(True, "/var/log/f", 1048576, 60.0, 500)
    described = load_settings(path, env=env).describe()
    assert "log.features.directory = /var/log/f" in described


def test_the_kafka_sink_settings_and_their_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, '[kafka]\nbootstrap_servers = "k1:9092,k2:9092"\n'
                            '[log.features]\nenabled = true\nsink = "kafka"\n'
                            'kafka_topic = "served"\n')
    features = load_settings(path, env={}).log.features
    # The brokers default to [kafka]'s, the schema topic to "<topic>.schemas".
    assert (features.sink, features.kafka_bootstrap_servers) == ("kafka", "k1:9092,k2:9092")
    from fetcher.featurelog._kafka import KafkaLogConfig

    config = KafkaLogConfig.from_settings(features)
    assert (config.topic, config.schema_topic) == ("served", "served.schemas")
    env = {"FETCHER__LOG__FEATURES__KAFKA_BOOTSTRAP_SERVERS": "log:9092",
           "FETCHER__LOG__FEATURES__KAFKA_SCHEMA_TOPIC": "served-schemas",
           "FETCHER__LOG__FEATURES__KAFKA_LINGER_MS": "0"}
    features = load_settings(path, env=env).log.features
    assert (features.kafka_bootstrap_servers, features.kafka_schema_topic,
            features.kafka_linger_ms) == ("log:9092", "served-schemas", 0)
    # The file sink's settings are untouched by the [kafka] section.
    assert load_settings(None, env={}).log.features.kafka_bootstrap_servers == ""


def test_feast_section_from_file_and_env(tmp_path: Path) -> None:
    repo = tmp_path / "feature_store.yaml"
    repo.write_text("project: p\n")
    path = _write(tmp_path, f"[feast]\nrepo = '{repo}'\nhttp_listen = '127.0.0.1:6566'\n")
    s = load_settings(path, env={"FETCHER__FEAST__WATCH_REGISTRY": "false"})
    assert (s.feast.repo, s.feast.http_listen, s.feast.watch_registry) == (
        str(repo), "127.0.0.1:6566", False)
    assert load_settings(None, env={}).feast.repo == ""  # off by default
    assert "feast.repo = " in s.describe()
