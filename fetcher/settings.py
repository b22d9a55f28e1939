"""Server settings: a TOML file, then FETCHER__<SECTION>__<KEY> environment overrides.

    [server]            listen, config_dir, max_batch_entities, max_message_bytes,
                        default_deadline_ms, shutdown_grace_s
    [cache]             l1_max_entries, l1_ttl_s, negative_ttl_s, l2_url, l2_ttl_s
    [stores.<name>]     url, timeout_ms, required

An environment variable overrides one key, e.g. FETCHER__SERVER__LISTEN=0.0.0.0:50051,
FETCHER__CACHE__L1_MAX_ENTRIES=0 or FETCHER__STORES__MAIN__URL=redis://h:6379/0 (which
may define a store wholly). Env values are converted to the key's type; an empty value
sets an optional key (cache.l2_url) to none. Relative paths (config_dir, embedded store
files) are kept as written: they are relative to the process's working directory, not
to the settings file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """L1 (in-process) and L2 (Redis) cache sizes and TTLs; groups may override TTLs."""

    l1_max_entries: int = 100_000
    l1_ttl_s: float = 5.0
    negative_ttl_s: float = 1.0
    l2_url: str | None = None
    l2_ttl_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The gRPC server process: address, catalog directory and request limits."""

    listen: str = "127.0.0.1:50051"
    config_dir: str = "config/demo"
    max_batch_entities: int = 5000
    max_message_bytes: int = 16 * 1024 * 1024
    default_deadline_ms: int = 1000
    shutdown_grace_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of one server process."""

    server: ServerSettings = field(default_factory=ServerSettings)
    stores: Mapping[str, StoreSettings] = field(default_factory=dict)
    cache: CacheSettings = field(default_factory=CacheSettings)

    def describe(self) -> str:
        """One line per setting, for the startup log, with URL passwords masked."""
        lines = [f"server.{k} = {v!r}" for k, v in dataclasses.asdict(self.server).items()]
        for k, v in dataclasses.asdict(self.cache).items():
            lines.append(f"cache.{k} = {mask_url(v) if isinstance(v, str) else v!r}")
        for name, store in sorted(self.stores.items()):
            lines.append(f"stores.{name}.url = {mask_url(store.url)}")
            lines.append(f"stores.{name}.timeout_ms = {store.timeout_ms}")
            lines.append(f"stores.{name}.required = {store.required}")
        return "\n".join(lines)


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


_TYPES: dict[str, tuple[str, Any, Any]] = {
    "int": ("an integer", lambda v: type(v) is int, int),
    "float": ("a number", lambda v: type(v) in (int, float), float),
    "str": ("a string", lambda v: type(v) is str, str),
    "bool": ("true or false", lambda v: type(v) is bool, _env_bool),
    "str | None": ("a string", lambda v: type(v) is str, lambda t: t or None),
}
_SECTIONS: dict[str, type[Any]] = {"server": ServerSettings, "cache": CacheSettings}


def _fields(cls: type[Any]) -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(cls) if f.name != "name"}


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
    values[key] = float(raw) if known[key] == "float" else raw  # 5 -> 5.0 for float keys
    c.origin[dotted] = where


def load_settings(
    path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from the TOML file at `path` (None: defaults only), then env overrides."""
    env = os.environ if env is None else env
    c = _Collector()
    sections: dict[str, dict[str, Any]] = {"server": {}, "cache": {}}
    stores: dict[str, dict[str, Any]] = {}
    where_store: dict[str, str] = {}
    if path is not None:
        where = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(
                f"{where}: cannot read: {exc.strerror}. Fix: check the path"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(
                f"{where}: not valid TOML: {exc}. Fix: correct the syntax"
            ) from None
        for section, body in data.items():
            if section in _SECTIONS and isinstance(body, dict):
                for key, raw in body.items():
                    dotted = f"{section}.{key}"
                    _set(sections[section], _SECTIONS[section], key, raw, where, dotted, c)
            elif section == "stores" and isinstance(body, dict):
                for name, table in body.items():
                    if not isinstance(table, dict):
                        c.add(where, f"stores.{name}", "is not a table", f"write [stores.{name}]")
                        continue
                    where_store[name] = where
                    store = stores.setdefault(name, {})
                    for key, raw in table.items():
                        _set(store, StoreSettings, key, raw, where, f"stores.{name}.{key}", c)
            else:
                c.add(where, section, "unknown section", "use [server], [cache] or [stores.<name>]")
    for var, text in sorted(env.items()):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 2 and parts[0] in _SECTIONS:
            _set(sections[parts[0]], _SECTIONS[parts[0]], parts[1], text, var, ".".join(parts), c)
        elif len(parts) == 3 and parts[0] == "stores" and parts[1]:
            where_store.setdefault(parts[1], var)
            store = stores.setdefault(parts[1], {})
            _set(store, StoreSettings, parts[2], text, var, ".".join(parts), c)
        else:
            c.add(
                var,
                var,
                "not a settings variable",
                "use FETCHER__SERVER__<KEY>, FETCHER__CACHE__<KEY> "
                "or FETCHER__STORES__<NAME>__<KEY>",
            )
    settings = _build(sections, stores, where_store, str(path) if path else "settings", c)
    if c.problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(c.problems))
    return settings


def _build(
    sections: dict[str, dict[str, Any]],
    stores: dict[str, dict[str, Any]],
    where_store: dict[str, str],
    where: str,
    c: _Collector,
) -> Settings:
    server = ServerSettings(**sections["server"])
    cache = CacheSettings(**sections["cache"])
    defaults = ServerSettings()
    built: dict[str, StoreSettings] = {}
    for name, values in stores.items():
        if "url" not in values:
            fix = f"add url to [stores.{name}] or set FETCHER__STORES__{name.upper()}__URL"
            c.add(where_store.get(name, where), f"stores.{name}.url", "is missing", fix)
            continue
        if not urlsplit(values["url"]).scheme:
            c.bad(where, f"stores.{name}.url", f"{values['url']!r} has no scheme", _URL_FIX)
        built[name] = StoreSettings(name=name, **values)
        if built[name].timeout_ms <= 0:
            c.bad(where, f"stores.{name}.timeout_ms", "must be > 0", "use e.g. 100")
    host, _, port = server.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        fix = "write host:port, e.g. 0.0.0.0:50051 or [::]:50051"
        c.bad(where, "server.listen", f"{server.listen!r} has no valid port", fix)
    for key in ("max_batch_entities", "max_message_bytes", "default_deadline_ms"):
        if getattr(server, key) <= 0:
            c.bad(where, f"server.{key}", "must be > 0", f"use e.g. {getattr(defaults, key)}")
    if server.shutdown_grace_s < 0:
        c.bad(where, "server.shutdown_grace_s", "must be >= 0", "use e.g. 10")
    for key in ("l1_max_entries", "l1_ttl_s", "negative_ttl_s", "l2_ttl_s"):
        if getattr(cache, key) < 0:
            c.bad(where, f"cache.{key}", "must be >= 0", "use 0 to disable, or a positive value")
    if cache.l2_url is not None and not urlsplit(cache.l2_url).scheme:
        c.bad(where, "cache.l2_url", f"{cache.l2_url!r} has no scheme", "use redis://host:port/db")
    return Settings(server=server, stores=built, cache=cache)


_URL_FIX = "use redis://host:port/db, embedded://path/to/file.lmdb or another backend URL"
