"""Server settings: a TOML file, then FETCHER__<SECTION>__<KEY> environment overrides.

    [server]            listen, config_dir, workers, limits, drain and health timings,
                        metrics_listen, watch_config, keepalive policy (docs/operations.md)
    [server.tls]        cert_file, key_file, client_ca_file, require_client_cert
    [cache]             l1_max_entries, l1_ttl_s, negative_ttl_s, l2_url, l2_ttl_s,
                        batch_part_max_bytes, batch_part_ttl_s
    [stores.<name>]     url, timeout_ms, required
    [log]               format (json|text), level, requests
    [log.features]      the feature log: enabled, sink (files | kafka), directory,
                        max_file_bytes, max_file_seconds, queue_size, kafka_* (the Kafka
                        sink's brokers, topics and producer bounds; docs/operations.md)
    [tracing]           enabled, service_name
    [kafka]             `fetcher stream`: bootstrap_servers, topic and consumer group naming,
                        value_format, dead-letter topic, batch size and linger (docs/streaming.md)
    [authz.clients.<name>]  identities, token_sha256 | token_env, groups, services, push_groups

An environment variable overrides one key, e.g. FETCHER__SERVER__LISTEN=0.0.0.0:50051,
FETCHER__SERVER__TLS__CERT_FILE=/etc/tls/tls.crt, FETCHER__STORES__MAIN__URL=redis://h:6379/0
or FETCHER__AUTHZ__CLIENTS__RANKER__SERVICES=user_merchant,user_place (a list is written
comma-separated). Env values are converted to the key's type; an empty value sets an
optional key (cache.l2_url) to none. Relative paths are relative to the process's working
directory, not to the settings file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "FETCHER__"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the file or env var, the key and the fix."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """One key-value store: `url` picks the backend (redis://, embedded://path, ...)."""

    name: str
    url: str
    timeout_ms: int = 100
    # A required store that is down makes the server not ready; an optional one only
    # makes its groups' features ERROR.
    required: bool = True
    # Reads running at once against this store (0 = unbounded); more wait for a slot
    # within their deadline (docs/reliability.md).
    max_in_flight: int = 64
    # Consecutive failed reads that open the circuit breaker (0 = no breaker); while open,
    # reads fail fast with ERROR until one probe after breaker_cooldown_s succeeds.
    breaker_failures: int = 5
    breaker_cooldown_s: float = 1.0


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """L1 (in-process) and L2 (Redis) cache sizes and TTLs; groups may override TTLs."""

    l1_max_entries: int = 100_000
    l1_ttl_s: float = 5.0
    negative_ttl_s: float = 1.0
    l2_url: str | None = None
    l2_ttl_s: float = 60.0
    # L1 of aggregation groups' batch parts (docs/aggregations.md "Caches"): bytes held
    # (0 turns it off) and how long a part read from the store is used without its bytes
    # being read again (the bound on serving a part a batch rerun replaced in place).
    batch_part_max_bytes: int = 64 * 1024 * 1024
    batch_part_ttl_s: float = 60.0


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Server TLS; with client_ca_file, clients may (or must) present a certificate (mTLS)."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    require_client_cert: bool = False

    @property
    def enabled(self) -> bool:
        """True when the server listens with TLS."""
        return self.cert_file is not None


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The gRPC server process: address, catalog directory, limits, lifecycle timings."""

    listen: str = "127.0.0.1:50051"
    config_dir: str = "config/demo"
    max_batch_entities: int = 5000
    # Admission control: feature RPCs at work at once, and waiting for a slot; beyond
    # both, RESOURCE_EXHAUSTED at once (0 running = no limit; docs/reliability.md).
    max_inflight_rpcs: int = 256
    max_queued_rpcs: int = 256
    max_message_bytes: int = 16 * 1024 * 1024
    default_deadline_ms: int = 1000
    shutdown_grace_s: float = 10.0
    # SIGTERM -> NOT_SERVING at once, but keep accepting this long so load balancers notice.
    drain_delay_s: float = 5.0
    workers: int = 0  # processes sharing the port (SO_REUSEPORT); 0 = one per core
    worker_restart_backoff_s: float = 0.5  # first restart delay; doubles up to 30 s
    metrics_listen: str = "127.0.0.1:9100"  # empty: no metrics endpoint
    health_interval_s: float = 2.0
    health_timeout_s: float = 1.0
    watch_config: bool = False
    watch_interval_s: float = 2.0
    max_concurrent_streams: int = 1000  # per connection; 0 = gRPC's default (unlimited)
    keepalive_time_ms: int = 60_000
    keepalive_timeout_ms: int = 20_000
    min_ping_interval_ms: int = 10_000  # clients pinging more often are sent GOAWAY
    keepalive_permit_without_calls: bool = True
    max_connection_idle_ms: int = 0  # 0 = never closed for idleness
    max_connection_age_ms: int = 0  # 0 = no age limit
    max_connection_age_grace_ms: int = 0
    tls: TlsSettings = field(default_factory=TlsSettings)


@dataclass(frozen=True, slots=True)
class FeatureLogSettings:
    """The feature log: what feature services served, kept for training (docs/operations.md).

    `sink = "files"`: each process writes its own rotating Parquet files under `directory`;
    `sink = "kafka"`: each record is a message of `kafka_topic`, each schema one of
    `kafka_schema_topic` (kafka_*). A bounded queue of `queue_size` records between the
    request path and the writer drops when full.
    """

    enabled: bool = False
    directory: str = "feature-log"
    max_file_bytes: int = 128 * 1024 * 1024
    max_file_seconds: float = 300.0
    queue_size: int = 10_000
    sink: str = "files"  # files | kafka
    kafka_bootstrap_servers: str = ""  # empty: [kafka] bootstrap_servers
    kafka_topic: str = "fetcher.feature-log"
    kafka_schema_topic: str = ""  # empty: "<kafka_topic>.schemas"
    kafka_partitions: int = 3  # when the sink creates the topic
    kafka_queue_records: int = 100_000  # the producer's queue, at most
    kafka_queue_bytes: int = 64 * 1024 * 1024
    kafka_linger_ms: int = 50
    kafka_compression: str = "zstd"  # none | gzip | snappy | lz4 | zstd
    kafka_delivery_timeout_ms: int = 120_000  # then a record not acknowledged is dropped
    kafka_close_timeout_s: float = 10.0  # at shutdown, the longest wait for acknowledgements


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Process logs: JSON lines (or text) on stderr; `requests` logs one line per RPC."""

    format: str = "json"
    level: str = "INFO"
    requests: bool = False
    features: FeatureLogSettings = field(default_factory=FeatureLogSettings)


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry spans per RPC; needs the opentelemetry packages installed."""

    enabled: bool = False
    service_name: str = "feature-fetcher"


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """`fetcher stream`: the Kafka consumer of aggregation groups' events (docs/streaming.md).

    `{group}` in topic, group_id and dead_letter_topic is the feature group's name;
    `{topic}` in dead_letter_topic is the topic read.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "fetcher.events.{group}"
    group_id: str = "fetcher-stream-{group}"
    value_format: str = "json"  # json | avro (plain Avro binary, the group's event schema)
    dead_letter_topic: str = "{topic}.dlq"
    event_time_field: str = "event_time"
    id_field: str = "id"
    batch_size: int = 500  # most messages applied (and committed) at once
    linger_ms: int = 100  # longest wait to fill a batch
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000
    retry_backoff_max_s: float = 10.0  # store retries back off up to this
    stop_timeout_s: float = 30.0  # after SIGTERM: how long a failing store is retried


@dataclass(frozen=True, slots=True)
class AuthzClient:
    """One client: how it is recognised (mTLS identity or bearer token) and what it may read."""

    name: str
    identities: tuple[str, ...] = ()  # certificate CN or SAN values
    token_sha256: str | None = None  # hex sha256 of the bearer token
    token_env: str | None = None  # or: the env var that holds the token
    groups: tuple[str, ...] = ()  # feature groups it may read ("*" = all)
    services: tuple[str, ...] = ()  # feature services it may read ("*" = all)
    # aggregation groups it may push events to (PushEvents; "*" = all)
    push_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeastSettings:
    """[feast]: serve a Feast repo's rows with Feast's gRPC and HTTP APIs (docs/feast.md)."""

    repo: str = ""  # path of feature_store.yaml; empty: Feast's APIs are off
    http_listen: str = ""  # host:port of `POST /get-online-features`; empty: no HTTP API
    watch_registry: bool = True  # reload when feature_store.yaml or registry.db change
    watch_interval_s: float = 2.0
    timeout_ms: int = 100  # the Feast store's per-call timeout (as stores.<name>.timeout_ms)
    max_in_flight: int = 64


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of one server process."""

    server: ServerSettings = field(default_factory=ServerSettings)
    stores: Mapping[str, StoreSettings] = field(default_factory=dict)
    cache: CacheSettings = field(default_factory=CacheSettings)
    log: LogSettings = field(default_factory=LogSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    # Authorization is on when at least one client is defined.
    authz: Mapping[str, AuthzClient] = field(default_factory=dict)
    feast: FeastSettings = field(default_factory=FeastSettings)

    def describe(self) -> str:
        """One line per setting, for the startup log, with URL passwords masked."""
        lines = []
        for section in ("server", "cache", "log", "tracing", "kafka", "feast"):
            for key, value in _flat_items(getattr(self, section)):
                shown = mask_url(value) if isinstance(value, str) else repr(value)
                lines.append(f"{section}.{key} = {shown}")
        for name, store in sorted(self.stores.items()):
            lines.append(f"stores.{name}.url = {mask_url(store.url)}")
            lines.append(f"stores.{name}.timeout_ms = {store.timeout_ms}")
            lines.append(f"stores.{name}.required = {store.required}")
        for name, client in sorted(self.authz.items()):
            # Only whether a token is configured: never a hash or an env value.
            token = "sha256" if client.token_sha256 else f"env {client.token_env}"
            lines.append(
                f"authz.clients.{name}: identities={list(client.identities)} "
                f"token={token if client.token_sha256 or client.token_env else 'none'} "
                f"groups={list(client.groups)} services={list(client.services)}"
            )
        return "\n".join(lines)


def _flat_items(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            items.extend(_flat_items(value, f"{prefix}{f.name}."))
        else:
            items.append((prefix + f.name, value))
    return items


_PASSWORD = re.compile(r"^(?P<head>[^:/?#]+://[^:@/]*:)(?P<secret>[^@/]*)(?P<tail>@.*)$")


def mask_url(url: str) -> str:
    """`url` with any password replaced by *** (redis://:secret@h -> redis://:***@h)."""
    return _PASSWORD.sub(r"\g<head>***\g<tail>", url)


# Per field type (as written in the dataclasses): (accepts a TOML value, converts env text).
def _env_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _env_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


_TYPES: dict[str, tuple[str, Any, Any]] = {
    "int": ("an integer", lambda v: type(v) is int, int),
    "float": ("a number", lambda v: type(v) in (int, float), float),
    "str": ("a string", lambda v: type(v) is str, str),
    "bool": ("true or false", lambda v: type(v) is bool, _env_bool),
    "str | None": ("a string", lambda v: type(v) is str, lambda t: t or None),
    "tuple[str, ...]": ("a list of strings", _is_str_list, _env_list),
}
# Sections of plain keys; "server.tls" is a table inside [server], "log.features" in [log].
_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "cache": CacheSettings,
    "log": LogSettings,
    "tracing": TracingSettings,
    "kafka": KafkaSettings,
    "server.tls": TlsSettings,
    "log.features": FeatureLogSettings,
    "feast": FeastSettings,
}
# Sections of named tables: [stores.<name>] and [authz.clients.<name>].
_NAMED: dict[str, type[Any]] = {"stores": StoreSettings, "authz.clients": AuthzClient}


def _fields(cls: type[Any]) -> dict[str, str]:
    return {
        f.name: str(f.type)
        for f in dataclasses.fields(cls)
        if f.name != "name" and str(f.type) in _TYPES
    }


class _Collector:
    """Collects every problem so one run shows them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.origin: dict[str, str] = {}  # dotted key -> the file or env var that set it

    def add(self, where: str, key: str, problem: str, fix: str) -> None:
        self.problems.append(f"{where}: {key}: {problem}. Fix: {fix}")

    def bad(self, default: str, key: str, problem: str, fix: str) -> None:
        # A bad value is reported against whatever set it last (file or env var).
        self.add(self.origin.get(key, default), key, problem, fix)


def _set(
    values: dict[str, Any],
    cls: type[Any],
    key: str,
    raw: Any,
    where: str,
    dotted: str,
    c: _Collector,
) -> None:
    known = _fields(cls)
    if key not in known:
        c.add(where, dotted, "unknown key", f"use one of {', '.join(sorted(known))}")
        return
    label, accepts, convert = _TYPES[known[key]]
    if where.startswith(ENV_PREFIX):
        # Env values are always text: convert them to the key's type.
        try:
            values[key] = convert(raw)
        except ValueError:
            c.add(where, dotted, f"{raw!r} is not {label}", f"set it to {label}")
        else:
            c.origin[dotted] = where
        return
    if not accepts(raw):
        c.add(where, dotted, f"{raw!r} is not {label}", f"set it to {label}")
        return
    if known[key] == "float":
        raw = float(raw)  # 5 -> 5.0 for float keys
    elif known[key] == "tuple[str, ...]":
        raw = tuple(raw)
    values[key] = raw
    c.origin[dotted] = where


class _Raw:
    """Values read so far, per section and per named table, with where each table came from."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        self.named: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in _NAMED}
        self.where_named: dict[str, dict[str, str]] = {name: {} for name in _NAMED}

    def table(self, kind: str, name: str, where: str) -> dict[str, Any]:
        self.where_named[kind].setdefault(name, where)
        return self.named[kind].setdefault(name, {})


def _read_file(path: str | os.PathLike[str], raw: _Raw, c: _Collector) -> None:
    where = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read: {exc.strerror}. Fix: check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}: not valid TOML: {exc}. Fix: correct the syntax") from None
    for section, body in data.items():
        if section in _SECTIONS and isinstance(body, dict):
            for key, value in body.items():
                dotted = f"{section}.{key}"
                if dotted in _SECTIONS and isinstance(value, dict):
                    for sub_key, sub_value in value.items():
                        _set(raw.sections[dotted], _SECTIONS[dotted], sub_key, sub_value,
                             where, f"{dotted}.{sub_key}", c)
                else:
                    _set(raw.sections[section], _SECTIONS[section], key, value, where, dotted, c)
        elif section in ("stores", "authz") and isinstance(body, dict):
            kind = section
            if section == "authz":
                unknown = [k for k in body if k != "clients"]
                for key in unknown:
                    c.add(where, f"authz.{key}", "unknown key", "write [authz.clients.<name>]")
                body = body.get("clients", {})
                kind = "authz.clients"
            for name, table in body.items():
                if not isinstance(table, dict):
                    c.add(where, f"{kind}.{name}", "is not a table", f"write [{kind}.{name}]")
                    continue
                values = raw.table(kind, name, where)
                for key, value in table.items():
                    _set(values, _NAMED[kind], key, value, where, f"{kind}.{name}.{key}", c)
        else:
            c.add(
                where, section, "unknown section",
                "use [server], [server.tls], [cache], [log], [log.features], [tracing], "
                "[kafka], [feast], [stores.<name>] or [authz.clients.<name>]",
            )


def _read_env(env: Mapping[str, str], raw: _Raw, c: _Collector) -> None:
    for var, text in sorted(env.items()):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        section = ".".join(parts[:-1])
        if len(parts) in (2, 3) and section in _SECTIONS:
            _set(raw.sections[section], _SECTIONS[section], parts[-1], text, var,
                 ".".join(parts), c)
        elif len(parts) == 3 and parts[0] == "stores" and parts[1]:
            _set(raw.table("stores", parts[1], var), StoreSettings, parts[2], text, var,
                 ".".join(parts), c)
        elif len(parts) == 4 and parts[:2] == ["authz", "clients"] and parts[2]:
            _set(raw.table("authz.clients", parts[2], var), AuthzClient, parts[3], text, var,
                 ".".join(parts), c)
        else:
            c.add(
                var,
                var,
                "not a settings variable",
                "use FETCHER__<SECTION>__<KEY> (server, cache, log, tracing, kafka, feast), "
                "FETCHER__SERVER__TLS__<KEY>, FETCHER__LOG__FEATURES__<KEY>, "
                "FETCHER__STORES__<NAME>__<KEY> "
                "or FETCHER__AUTHZ__CLIENTS__<NAME>__<KEY>",
            )
