"""Compiled serving configs: feature groups, feature services, their Avro codecs.

A catalog is read from one directory and is immutable; a reload builds a new one and
the server swaps it whole. Layout (see docs/configuration.md):

    <config_dir>/groups/<name>.json      one per feature group
    <config_dir>/groups/<name>.avsc      its current Avro schema (the JSON's "schema")
    <config_dir>/groups/<name>.v1.avsc   older writer schemas, listed in "previous_schemas"
    <config_dir>/services/<name>.json    one per feature service (services/ is optional)

A group with `aggregations` instead of `schema` is an aggregation group: no .avsc, no codec.
Everything is validated at load and every problem is reported at once (CatalogError).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fetcher.catalog._derived import check_derivations
from fetcher.catalog._fields import Problems
from fetcher.catalog._validate import (
    check_service,
    join_request_keys,
    parse_group,
    parse_service,
)
from fetcher.codec import GroupCodec, SchemaRegistry
from fetcher.types import FeatureGroup, FeatureService, KeyColumn

_CONFIG_SUFFIXES = (".json", ".avsc")


class CatalogError(Exception):
    """A catalog directory with problems; `.problems` lists each as `<file>: <field>: ...`."""

    def __init__(self, directory: str, problems: list[str]) -> None:
        self.directory = directory
        self.problems = problems
        lines = "\n  ".join(problems)
        super().__init__(f"catalog {directory}: {len(problems)} problem(s):\n  {lines}")


@dataclass(frozen=True, slots=True)
class Catalog:
    """One immutable snapshot of the serving configs, with a content-hash version."""

    version: str
    directory: str
    groups: Mapping[str, FeatureGroup]
    services: Mapping[str, FeatureService]
    # The Avro codec of each group of stored rows; an aggregation group has none (no schema).
    codecs: Mapping[str, GroupCodec]
    # Every writer schema of every group, by fingerprint.
    registry: SchemaRegistry = field(default_factory=SchemaRegistry, compare=False)


def _config_files(directory: Path) -> list[Path]:
    files: list[Path] = []
    for sub in ("groups", "services"):
        if (directory / sub).is_dir():
            files.extend(p for p in (directory / sub).iterdir() if p.suffix in _CONFIG_SUFFIXES)
    return sorted(files)


def catalog_version(directory: str | os.PathLike[str]) -> str:
    """Short content hash of a config directory: changes whenever a config file does."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in _config_files(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def load_catalog(
    directory: str | os.PathLike[str], store_names: Collection[str] | None = None
) -> Catalog:
    """Read, compile and validate a config directory; `store_names` None skips store checks."""
    root = Path(directory)
    p = Problems()
    if not (root / "groups").is_dir():
        raise CatalogError(
            str(directory),
            [
                f"groups: (directory): {root / 'groups'} does not exist. Fix: check config_dir "
                "or create the directory with one <name>.json per feature group"
            ],
        )
    registry = SchemaRegistry()
    groups: dict[str, FeatureGroup] = {}
    codecs: dict[str, GroupCodec] = {}
    broken: set[str] = set()  # groups with problems: services using them are not re-blamed
    for path in sorted((root / "groups").glob("*.json")):
        rel = f"groups/{path.name}"
        parsed = parse_group(path, rel, registry, p)
        if parsed is None:
            broken.add(path.stem)
            continue
        group, codec = parsed
        if group.name in groups:
            p.add(
                rel,
                "name",
                f"group {group.name!r} is also defined in {groups[group.name].source}",
                "give each group a unique name",
            )
            continue
        if store_names is not None and group.store not in store_names:
            known = ", ".join(sorted(store_names)) or "(none configured)"
            p.add(
                rel,
                "store",
                f"unknown store {group.store!r} (known: {known})",
                "use a configured store or add [stores.<name>] to the settings",
            )
        groups[group.name] = group
        if codec is not None:
            codecs[group.name] = codec
    services: dict[str, FeatureService] = {}
    if (root / "services").is_dir():
        for path in sorted((root / "services").glob("*.json")):
            rel = f"services/{path.name}"
            service = parse_service(path, rel, p)
            if service is None:
                continue
            if service.name in services:
                p.add(
                    rel,
                    "name",
                    f"service {service.name!r} is defined twice",
                    "give each service a unique name",
                )
                continue
            check_service(service, groups, p, broken)
            check_derivations(service, groups, p)
            services[service.name] = service
    if p.items:
        raise CatalogError(str(directory), p.items)
    return Catalog(
        version=catalog_version(root),
        directory=str(directory),
        groups=groups,
        services=services,
        codecs=codecs,
        registry=registry,
    )


def service_request_keys(catalog: Catalog, service: FeatureService) -> tuple[KeyColumn, ...]:
    """The request keys a service needs, in first-seen join order, typed by their columns."""
    seen: dict[str, KeyColumn] = {}
    for join in service.joins:
        for request, column in join_request_keys(catalog.groups[join.group], join):
            if request not in seen:
                seen[request] = KeyColumn(request, column.type)
    return tuple(seen.values())
