"""A compiled output folder read back: the manifest's objects, each served group's schemas
and each aggregation group's layout.

Stage 4 compares a compile with the previous output (`--against DIR` or `--out`'s contents);
`fetcher diff` compares two outputs. A folder is a compiled output when it holds
`metadata/version_manifest.json`. The manifest entries the compiler writes carry `keys` and
`features`; for a manifest without them the features come from `metadata/lineage.json`
and the keys from the group files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetcher.compiler._types import Signature

MANIFEST = "metadata/version_manifest.json"
KINDS = {"group_bys": "group_by", "joins": "join"}


class CompiledReadError(Exception):
    """A folder that claims to be a compiled output (it has a manifest) but cannot be read."""


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class Layout:
    """What an aggregation group's stored data is read by: its columns (the values of each
    event, by position) and operations (the states of each batch part, by position), each
    in a few words: `amount: double`, `sum(amount) hop 5m span 1h`."""

    columns: tuple[str, ...]
    operations: tuple[str, ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Layout:
        """The layout of an `aggregations` object (or a manifest's `aggregation_layout`)."""
        columns = tuple(f"{c['name']}: {c['type']}" for c in raw["columns"])
        operations = []
        for op in raw["operations"]:
            args = "".join(f", {a}={op[a]}" for a in ("k", "percentiles") if op.get(a) is not None)
            span = op["span_seconds"]
            extent = "unbounded" if span is None else f"span {_duration(int(span))}"
            operations.append(f"{op['operation']}({op['column']}{args}) "
                              f"hop {_duration(int(op['hop_seconds']))} {extent}")
        return cls(columns, tuple(operations))


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One object of a manifest: its version, content hash, flags, keys and features."""

    kind: str  # "group_by" or "join"
    name: str
    version: str
    hash: str
    online: bool
    production: bool
    served: bool
    keys: tuple[tuple[str, str], ...]  # name -> type, in order (a join: its left columns)
    features: tuple[tuple[str, Signature], ...]  # sorted by name
    layout: Layout | None = None  # a served aggregation group's; None: any other object

    @property
    def key(self) -> str:
        """`<kind>:<name>`, how reports and lookups name the object."""
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class SchemaFile:
    """An .avsc file of a catalog: its file name, its bytes as written, and the parsed JSON."""

    name: str
    data: bytes
    parsed: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledGroup:
    """A served group of a compiled output: its dataset, schema and previous schemas."""

    name: str
    dataset: str
    schema: SchemaFile
    previous: tuple[SchemaFile, ...]


@dataclass(frozen=True, slots=True)
class CompiledAggregationGroup:
    """A served aggregation group of a compiled output: its dataset and layout."""

    name: str
    dataset: str
    layout: Layout


@dataclass(frozen=True, slots=True)
class CompiledOutput:
    """A compiled output folder: objects by `<kind>:<name>`, served groups by name (groups
    of stored rows and aggregation groups apart)."""

    folder: str
    objects: dict[str, ObjectEntry]
    groups: dict[str, CompiledGroup]
    aggregation_groups: dict[str, CompiledAggregationGroup] = field(default_factory=dict)


def is_compiled(folder: Path) -> bool:
    """True when `folder` holds a compiler manifest."""
    return (folder / MANIFEST).is_file()


def _json(path: Path, folder: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CompiledReadError(
            f"{folder}: {path.relative_to(folder).as_posix()} does not read as JSON ({exc}). "
            "Fix: point at an intact compiled output, or recompile it"
        ) from None


def _bad(folder: Path, what: str) -> CompiledReadError:
    return CompiledReadError(f"{folder}: {MANIFEST}: {what}. Fix: point at a folder "
                             "`fetcher compile --out` wrote, or recompile it")


def parse_entry(kind: str, name: str, raw: Mapping[str, Any],
                lineage: Mapping[str, Any] | None = None,
                group_keys: Mapping[str, Any] | None = None) -> ObjectEntry:
    """A manifest entry as written by the compiler (KeyError/TypeError/ValueError if not)."""
    if "features" in raw:
        features = {n: Signature(str(f["type"]), bool(f["nullable"]))
                    for n, f in raw["features"].items()}
    else:  # a manifest of an earlier compiler: types from the lineage, nullability unknown
        features = {n: Signature(str(f["type"])) for n, f in (lineage or {}).items()}
    if "keys" in raw:
        keys = raw["keys"]
    else:  # an earlier manifest: a group's keys from its group file (a join's are unknown)
        keys = (group_keys or {}).get(name, []) if kind == "group_by" else []
    return ObjectEntry(
        kind, name, str(raw["version"]), str(raw["hash"]),
        bool(raw.get("online", raw["served"])), bool(raw["production"]), bool(raw["served"]),
        tuple((str(k), str(t)) for k, t in keys),
        tuple(sorted(features.items())),
        Layout.parse(raw["aggregation_layout"]) if "aggregation_layout" in raw else None,
    )


def _schema_file(path: Path, folder: Path) -> SchemaFile:
    parsed = _json(path, folder)
    if not isinstance(parsed, dict):
        raise CompiledReadError(f"{folder}: groups/{path.name} is not an Avro record. Fix: "
                                "point at an intact compiled output, or recompile it")
    return SchemaFile(path.name, path.read_bytes(), parsed)


def _groups(folder: Path) -> tuple[dict[str, CompiledGroup],
                                   dict[str, CompiledAggregationGroup], dict[str, Any]]:
    groups: dict[str, CompiledGroup] = {}
    aggregation_groups: dict[str, CompiledAggregationGroup] = {}
    keys: dict[str, Any] = {}
    for path in sorted((folder / "groups").glob("*.json")):
        data = _json(path, folder)
        try:
            name, dataset = str(data["name"]), str(data["dataset"])
            if "aggregations" in data:
                keys[name] = [(k["name"], k["type"]) for k in data["keys"]]
                aggregation_groups[name] = CompiledAggregationGroup(
                    name, dataset, Layout.parse(data["aggregations"]))
                continue
            schema = _schema_file(path.parent / str(data["schema"]), folder)
            previous = tuple(_schema_file(path.parent / str(p), folder)
                             for p in data.get("previous_schemas", ()))
            keys[name] = [(k["name"], k["type"]) for k in data["keys"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CompiledReadError(f"{folder}: groups/{path.name}: not a group file ({exc!r}). "
                                    "Fix: point at an intact compiled output") from None
        groups[name] = CompiledGroup(name, dataset, schema, previous)
    return groups, aggregation_groups, keys


def read_compiled(folder: Path) -> CompiledOutput:
    """Read a compiled output folder (CompiledReadError when it is not one)."""
    if not is_compiled(folder):
        raise CompiledReadError(f"{folder}: has no {MANIFEST}, so it is not a compiled output. "
                                "Fix: give a folder `fetcher compile --out` wrote")
    manifest = _json(folder / MANIFEST, folder)
    lineage_path = folder / "metadata" / "lineage.json"
    lineage = _json(lineage_path, folder) if lineage_path.is_file() else {}
    groups, aggregation_groups, group_keys = (
        _groups(folder) if (folder / "groups").is_dir() else ({}, {}, {}))
    objects: dict[str, ObjectEntry] = {}
    if not isinstance(manifest, dict):
        raise _bad(folder, "is not a JSON object")
    for section, kind in KINDS.items():
        entries = manifest.get(section, {})
        if not isinstance(entries, dict):
            raise _bad(folder, f"{section} is not an object")
        for name, raw in entries.items():
            try:
                features = lineage.get(section, {}).get(name, {}).get("features", {})
                entry = parse_entry(kind, name, raw, features, group_keys)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise _bad(folder, f"{section}.{name} is not a manifest entry ({exc!r})") from None
            objects[entry.key] = entry
    return CompiledOutput(str(folder), objects, groups, aggregation_groups)
