"""feature_store.yaml: the project, the registry file, the Redis online store, the key version.

Read as Feast reads it (environment variables expanded, then YAML), keeping only what
serving needs; whatever the fetcher cannot honour is refused here, by name, with every
problem at once (FeastError).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from fetcher.feast._errors import FeastError

#: The entity key serialization versions whose keys the fetcher builds.
SUPPORTED_KEY_VERSIONS = (3,)
# connection_string parameters that change how to connect, and those that do not matter
# to a reader.
_CONNECTION_PARAMS = ("db", "username", "password", "ssl")
_IGNORED_PARAMS = ("skip_full_coverage_check",)


@dataclass(frozen=True, slots=True)
class FeastConfig:
    """What the fetcher takes from a feature_store.yaml."""

    path: str  # the feature_store.yaml read
    project: str
    registry_path: str  # the local registry file (absolute)
    # The online store as a kvstores URL: feast+redis://... or feast+redis+cluster://...
    store_url: str
    redis_type: str  # "redis" or "redis_cluster"
    entity_key_serialization_version: int


def _connection_url(
    text: str, redis_type: str, where: str, problems: list[str]
) -> str | None:
    """Feast's "host:port[,host:port...][,param=value...]" as a kvstores URL."""
    nodes: list[str] = []
    params: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item:
            name, _, raw = item.partition("=")
            try:
                params[name] = json.loads(raw)  # as Feast reads them: true, 1, "x"
            except ValueError:
                params[name] = raw
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            problems.append(f"{where}: node {item!r} is not host:port")
            continue
        nodes.append(item)
    unknown = sorted(set(params) - set(_CONNECTION_PARAMS) - set(_IGNORED_PARAMS))
    if unknown:
        problems.append(
            f"{where}: parameter(s) {', '.join(unknown)} not supported (supported: "
            f"{', '.join(_CONNECTION_PARAMS)})"
        )
    if not nodes:
        problems.append(f"{where}: no host:port in {text!r}")
        return None
    ssl = params.get("ssl") in (True, "true", "True", 1)
    username, password = params.get("username"), params.get("password")
    auth = ""
    if password is not None:
        auth = f"{quote(str(username or ''), safe='')}:{quote(str(password), safe='')}@"
    elif username is not None:
        auth = f"{quote(str(username), safe='')}@"
    if redis_type == "redis_cluster":
        if "db" in params and str(params["db"]) != "0":
            problems.append(f"{where}: a Redis Cluster has only db 0, not {params['db']!r}")
        scheme = "feast+rediss+cluster" if ssl else "feast+redis+cluster"
        return f"{scheme}://{auth}{','.join(nodes)}"
    if len(nodes) > 1:
        problems.append(f"{where}: {len(nodes)} nodes for redis_type redis (give one)")
    db = params.get("db", 0)
    if not str(db).isdigit():
        problems.append(f"{where}: db {db!r} is not a database number")
        return None
    scheme = "feast+rediss" if ssl else "feast+redis"
    return f"{scheme}://{auth}{nodes[0]}/{db}"


def _registry_path(raw: Any, root: Path, problems: list[str]) -> str | None:
    if isinstance(raw, str):
        section: dict[str, Any] = {"path": raw}
    elif isinstance(raw, dict):
        section = raw
    else:
        problems.append("registry: missing; give the path of the registry file")
        return None
    kind = section.get("registry_type", "file")
    if kind != "file":
        problems.append(
            f"registry.registry_type: {kind!r} is not supported: only a local registry "
            "file (registry_type file)"
        )
        return None
    if section.get("enable_online_feature_view_versioning"):
        problems.append(
            "registry.enable_online_feature_view_versioning: true is not supported yet "
            "(versioned view names in the online store)"
        )
    path = section.get("path")
    if not isinstance(path, str) or not path:
        problems.append("registry.path: missing; give the path of the registry file")
        return None
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path) and not path.startswith("file://"):
        problems.append(
            f"registry.path: {path!r} is not a local file: only a local registry file is "
            "supported (copy it next to the server)"
        )
        return None
    local = Path(path.removeprefix("file://"))
    return str(local if local.is_absolute() else (root / local).resolve())


def _online_store(raw: Any, problems: list[str]) -> tuple[str, str] | None:
    """(store URL, redis_type) of the online_store section."""
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        problems.append(
            "online_store: missing (Feast's default is sqlite): only a Redis online store "
            "(type: redis) is supported"
        )
        return None
    kind = raw.get("type")
    if kind != "redis":
        problems.append(
            f"online_store.type: {kind!r} is not supported: only redis (Redis or a Redis "
            "Cluster, as Feast's redis online store writes them)"
        )
        return None
    redis_type = raw.get("redis_type", "redis")
    if redis_type not in ("redis", "redis_cluster"):
        problems.append(
            f"online_store.redis_type: {redis_type!r} is not supported: redis or "
            "redis_cluster"
        )
        return None
    text = raw.get("connection_string", "localhost:6379")
    if not isinstance(text, str):
        problems.append("online_store.connection_string: must be a string")
        return None
    url = _connection_url(text, redis_type, "online_store.connection_string", problems)
    return None if url is None else (url, redis_type)


def read_feature_store_yaml(path: str | os.PathLike[str]) -> FeastConfig:
    """Read a feature_store.yaml; FeastError lists every problem found."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise FeastError(where, [f"cannot read it: {exc}"]) from None
    try:
        raw = yaml.safe_load(os.path.expandvars(text))
    except yaml.YAMLError as exc:
        raise FeastError(where, [f"not YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise FeastError(where, ["not a mapping of settings"])
    problems: list[str] = []
    project = raw.get("project")
    if not isinstance(project, str) or not project:
        problems.append(f"project: {project!r}: give the Feast project's name")
    registry = _registry_path(raw.get("registry"), Path(path).resolve().parent, problems)
    store = _online_store(raw.get("online_store"), problems)
    version = raw.get("entity_key_serialization_version", 3)
    if version not in SUPPORTED_KEY_VERSIONS:
        problems.append(
            f"entity_key_serialization_version: {version!r} is not supported: only "
            f"{', '.join(map(str, SUPPORTED_KEY_VERSIONS))} (Feast's default; Feast removed "
            "the older ones and documents how to re-serialize a store to 3)"
        )
    if problems or registry is None or store is None:
        raise FeastError(where, problems)
    assert isinstance(project, str)
    return FeastConfig(
        path=str(Path(path).resolve()),
        project=project,
        registry_path=registry,
        store_url=store[0],
        redis_type=store[1],
        entity_key_serialization_version=int(version),
    )
