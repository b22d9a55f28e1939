"""Settings checks: values read from the file and env -> a validated Settings.

Every problem is collected (with the file or env var that set the key and the fix),
so one run of `fetcher serve` shows all of them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fetcher.config._settings import (
    AuthzClient,
    CacheSettings,
    FeastSettings,
    FeatureLogSettings,
    KafkaSettings,
    LogSettings,
    ServerSettings,
    Settings,
    StoreSettings,
    TlsSettings,
    TracingSettings,
)

if TYPE_CHECKING:
    from fetcher.config._settings import _Collector, _Raw

_URL_FIX = "use redis://host:port/db, embedded://path/to/file.lmdb or another backend URL"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _valid_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 <= int(port) <= 65535


def _check_server(server: ServerSettings, where: str, c: _Collector) -> None:
    defaults = ServerSettings()
    if not _valid_address(server.listen):
        fix = "write host:port, e.g. 0.0.0.0:50051 or [::]:50051"
        c.bad(where, "server.listen", f"{server.listen!r} has no valid port", fix)
    if server.metrics_listen and not _valid_address(server.metrics_listen):
        fix = "write host:port, e.g. 0.0.0.0:9100, or set it empty to disable metrics"
        c.bad(where, "server.metrics_listen", f"{server.metrics_listen!r} has no valid port", fix)
    for key in ("max_batch_entities", "max_message_bytes", "default_deadline_ms",
                "health_interval_s", "health_timeout_s", "watch_interval_s",
                "keepalive_time_ms", "keepalive_timeout_ms"):
        if getattr(server, key) <= 0:
            c.bad(where, f"server.{key}", "must be > 0", f"use e.g. {getattr(defaults, key)}")
    for key in ("shutdown_grace_s", "drain_delay_s", "workers", "worker_restart_backoff_s",
                "max_concurrent_streams", "min_ping_interval_ms", "max_connection_idle_ms",
                "max_connection_age_ms", "max_connection_age_grace_ms",
                "max_inflight_rpcs", "max_queued_rpcs"):
        if getattr(server, key) < 0:
            c.bad(where, f"server.{key}", "must be >= 0", f"use e.g. {getattr(defaults, key)}")
    _check_tls(server.tls, where, c)


def _check_tls(tls: TlsSettings, where: str, c: _Collector) -> None:
    if (tls.cert_file is None) != (tls.key_file is None):
        c.bad(where, "server.tls.cert_file", "cert_file and key_file go together",
              "set both (PEM certificate chain and its private key) or neither")
    if tls.client_ca_file is not None and tls.cert_file is None:
        c.bad(where, "server.tls.client_ca_file", "client certificates need TLS",
              "set server.tls.cert_file and key_file too")
    if tls.require_client_cert and tls.client_ca_file is None:
        c.bad(where, "server.tls.require_client_cert", "needs the CA that signs client certs",
              "set server.tls.client_ca_file")
    for key in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(tls, key)
        if path is not None and not os.path.isfile(path):
            c.bad(where, f"server.tls.{key}", f"{path!r} is not a readable file",
                  "give the path of a PEM file (relative to the working directory)")


def _check_authz(
    clients: Mapping[str, AuthzClient], tls: TlsSettings, env: Mapping[str, str],
    where: Mapping[str, str], c: _Collector,
) -> None:
    for name, client in clients.items():
        key = f"authz.clients.{name}"
        at = where.get(name, "settings")
        if not client.identities and not client.token_sha256 and not client.token_env:
            c.add(at, key, "has no way to be recognised",
                  "set identities (certificate CN/SAN), token_sha256 or token_env")
        if client.token_sha256 and client.token_env:
            c.bad(at, f"{key}.token_sha256", "token_sha256 and token_env are both set",
                  "keep one of them")
        if client.token_sha256 is not None and not _HEX64.match(client.token_sha256):
            c.bad(at, f"{key}.token_sha256", "is not 64 lower-case hex digits",
                  "write the sha256 of the token, e.g. `printf %s TOKEN | sha256sum`")
        if client.token_env is not None and not env.get(client.token_env):
            c.bad(at, f"{key}.token_env", f"environment variable {client.token_env} is not set",
                  f"export {client.token_env}=<token> before starting the server")
        if client.identities and not tls.require_client_cert:
            # gRPC only asks for client certificates when it requires them.
            c.bad(at, f"{key}.identities", "certificate identities need mutual TLS",
                  "set server.tls.client_ca_file and require_client_cert = true")
        if not client.groups and not client.services and not client.push_groups:
            c.bad(at, f"{key}.groups", "allows nothing",
                  'list the groups and/or services it may read ("*" for all), or the '
                  "push_groups it may push events to")


def build_settings(raw: _Raw, env: Mapping[str, str], where: str, c: _Collector) -> Settings:
    """Build Settings from what was read, adding every problem found to `c`."""
    sections = raw.sections
    tls = TlsSettings(**sections["server.tls"])
    server = ServerSettings(**sections["server"], tls=tls)
    cache = CacheSettings(**sections["cache"])
    tracing = TracingSettings(**sections["tracing"])
    kafka = KafkaSettings(**sections["kafka"])
    features = FeatureLogSettings(**sections["log.features"])
    if features.sink == "kafka" and not features.kafka_bootstrap_servers:  # [kafka]'s brokers
        features = dataclasses.replace(features,
                                       kafka_bootstrap_servers=kafka.bootstrap_servers)
    log_settings = LogSettings(**sections["log"], features=features)
    feast = FeastSettings(**sections["feast"])
    _check_feast(feast, where, c)
    stores: dict[str, StoreSettings] = {}
    where_store = raw.where_named["stores"]
    for name, values in raw.named["stores"].items():
        if "url" not in values:
            fix = f"add url to [stores.{name}] or set FETCHER__STORES__{name.upper()}__URL"
            c.add(where_store.get(name, where), f"stores.{name}.url", "is missing", fix)
            continue
        if not urlsplit(values["url"]).scheme:
            c.bad(where, f"stores.{name}.url", f"{values['url']!r} has no scheme", _URL_FIX)
        stores[name] = StoreSettings(name=name, **values)
        if stores[name].timeout_ms <= 0:
            c.bad(where, f"stores.{name}.timeout_ms", "must be > 0", "use e.g. 100")
        for key, example in (("max_in_flight", "64"), ("breaker_failures", "5"),
                             ("breaker_cooldown_s", "1.0")):
            if getattr(stores[name], key) < 0:
                c.bad(where, f"stores.{name}.{key}", "must be >= 0", f"use e.g. {example}")
    authz = {
        name: AuthzClient(name=name, **values)
        for name, values in raw.named["authz.clients"].items()
    }
    _check_server(server, where, c)
    for key in ("l1_max_entries", "l1_ttl_s", "negative_ttl_s", "l2_ttl_s",
                "batch_part_max_bytes", "batch_part_ttl_s"):
        if getattr(cache, key) < 0:
            c.bad(where, f"cache.{key}", "must be >= 0", "use 0 to disable, or a positive value")
    if cache.l2_url is not None and not urlsplit(cache.l2_url).scheme:
        c.bad(where, "cache.l2_url", f"{cache.l2_url!r} has no scheme", "use redis://host:port/db")
    _check_log(log_settings, where, c)
    _check_kafka(kafka, where, c)
    _check_authz(authz, tls, env, raw.where_named["authz.clients"], c)
    return Settings(
        server=server, stores=stores, cache=cache, log=log_settings, tracing=tracing,
        kafka=kafka, authz=authz, feast=feast,
    )


def _check_feast(feast: FeastSettings, where: str, c: _Collector) -> None:
    if feast.http_listen and not _valid_address(feast.http_listen):
        c.bad(where, "feast.http_listen", f"{feast.http_listen!r} has no valid port",
              "write host:port, e.g. 0.0.0.0:6566, or leave it empty for no HTTP API")
    if feast.http_listen and not feast.repo:
        c.bad(where, "feast.http_listen", "Feast's HTTP API needs a Feast repo",
              "set feast.repo to the path of feature_store.yaml")
    if feast.repo and not os.path.isfile(feast.repo):
        c.bad(where, "feast.repo", f"{feast.repo!r} is not a readable file",
              "give the path of the Feast repo's feature_store.yaml")
    for key, example in (("watch_interval_s", "2.0"), ("timeout_ms", "100"),
                         ("max_in_flight", "64")):
        if getattr(feast, key) <= 0:
            c.bad(where, f"feast.{key}", "must be > 0", f"use e.g. {example}")


def _check_log(settings: LogSettings, where: str, c: _Collector) -> None:
    if settings.format not in ("json", "text"):
        c.bad(where, "log.format", f"{settings.format!r} is not a log format",
              "use json or text")
    if settings.level.upper() not in _LOG_LEVELS:
        c.bad(where, "log.level", f"{settings.level!r} is not a log level",
              f"use one of {', '.join(_LOG_LEVELS)}")
    features = settings.features
    defaults = FeatureLogSettings()
    for key in ("max_file_bytes", "max_file_seconds", "queue_size"):
        if getattr(features, key) <= 0:
            c.bad(where, f"log.features.{key}", "must be > 0",
                  f"use e.g. {getattr(defaults, key)}")
    if not features.directory.strip():
        c.bad(where, "log.features.directory", "is empty",
              "give the directory the feature log's files go in, e.g. /var/lib/fetcher/log")
    if features.sink not in _LOG_SINKS:
        c.bad(where, "log.features.sink", f"{features.sink!r} is not a feature log sink",
              f"use {' or '.join(_LOG_SINKS)}")
    if features.sink == "kafka":
        _check_log_kafka(features, where, c)


_LOG_SINKS = ("files", "kafka")
_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# Kafka's legal topic names.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _check_log_kafka(features: FeatureLogSettings, where: str, c: _Collector) -> None:
    defaults = FeatureLogSettings()
    if not features.kafka_bootstrap_servers.strip():
        c.bad(where, "log.features.kafka_bootstrap_servers", "is empty (and so is "
              "kafka.bootstrap_servers)", "list the brokers as host:port[,host:port...]")
    for key in ("kafka_topic", "kafka_schema_topic"):
        name = getattr(features, key)
        if (name or key == "kafka_topic") and not _TOPIC.match(name):
            example = defaults.kafka_topic + ("" if key == "kafka_topic" else ".schemas")
            c.bad(where, f"log.features.{key}", f"{name!r} is not a Kafka topic name",
                  f"use 1 to 249 of A-Z a-z 0-9 . _ -, e.g. {example}")
    schemas = features.kafka_schema_topic or f"{features.kafka_topic}.schemas"
    if schemas == features.kafka_topic:
        c.bad(where, "log.features.kafka_schema_topic", "is the record topic",
              "give the schemas a compacted topic of their own (or leave it empty)")
    if features.kafka_compression not in _COMPRESSIONS:
        c.bad(where, "log.features.kafka_compression",
              f"{features.kafka_compression!r} is not a Kafka compression",
              f"use one of {', '.join(_COMPRESSIONS)}")
    for key in ("kafka_partitions", "kafka_queue_records", "kafka_queue_bytes",
                "kafka_delivery_timeout_ms", "kafka_close_timeout_s"):
        if getattr(features, key) <= 0:
            c.bad(where, f"log.features.{key}", "must be > 0",
                  f"use e.g. {getattr(defaults, key)}")
    if features.kafka_linger_ms < 0:
        c.bad(where, "log.features.kafka_linger_ms", "must be >= 0",
              f"use e.g. {defaults.kafka_linger_ms}")


_KAFKA_NAMES = {"topic": ("group",), "group_id": ("group",),
                "dead_letter_topic": ("group", "topic")}


def _check_kafka(kafka: KafkaSettings, where: str, c: _Collector) -> None:
    defaults = KafkaSettings()
    if not kafka.bootstrap_servers.strip():
        c.bad(where, "kafka.bootstrap_servers", "is empty",
              "list the brokers as host:port[,host:port...]")
    if kafka.value_format not in ("json", "avro"):
        c.bad(where, "kafka.value_format", f"{kafka.value_format!r} is not a value format",
              "use json or avro")
    for key, names in _KAFKA_NAMES.items():
        template = getattr(kafka, key)
        try:
            text = template.format(**{n: "x" for n in names})
        except (KeyError, IndexError, ValueError):
            c.bad(where, f"kafka.{key}", f"{template!r} is not a name template",
                  f"use only {' and '.join('{' + n + '}' for n in names)} in braces")
            continue
        if not text.strip():
            c.bad(where, f"kafka.{key}", "is empty", f"use e.g. {getattr(defaults, key)!r}")
    for key in ("batch_size", "linger_ms", "session_timeout_ms", "max_poll_interval_ms",
                "retry_backoff_max_s", "stop_timeout_s"):
        if getattr(kafka, key) <= 0:
            c.bad(where, f"kafka.{key}", "must be > 0", f"use e.g. {getattr(defaults, key)}")
    for key in ("event_time_field", "id_field"):
        if not getattr(kafka, key).strip():
            c.bad(where, f"kafka.{key}", "is empty", f"use e.g. {getattr(defaults, key)!r}")


def log_level(settings: LogSettings) -> int:
    """The `logging` level number of validated log settings."""
    level: Any = logging.getLevelName(settings.level.upper())
    return int(level)
