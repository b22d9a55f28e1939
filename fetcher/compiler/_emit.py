"""The compiled output, in memory: the catalog files `fetcher serve` loads and the metadata.

Everything is rendered deterministically: catalog files in the loader's field order (as
docs/configuration.md writes them), metadata with sorted keys, no timestamps, so the same
definitions always give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetcher.compiler._dependencies import Edge
from fetcher.compiler._model import FeatureModel, GroupModel, JoinModel, PartModel
from fetcher.compiler._problems import Problem, Stage
from fetcher.compiler._refs import References
from fetcher.compiler._types import avro_type
from fetcher.definitions import AvroSchema

DEFAULT_VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class Output:
    """Relative path -> bytes of every file to write, and what each object became."""

    files: dict[str, bytes]
    served: dict[str, bool]  # "<kind>:<name>" -> written to the catalog (else metadata only)
    problems: list[Problem]


def render(data: Any, *, sort: bool = False) -> bytes:
    """JSON as the catalog files are written: two-space indent, a final newline."""
    return (json.dumps(data, indent=2, sort_keys=sort) + "\n").encode()


def record_name(name: str) -> str:
    """A group's default Avro record name: user_profile -> UserProfile."""
    text = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)
    return text if text[:1].isalpha() else f"G{text}"


def _field(f: FeatureModel) -> dict[str, Any]:
    base = avro_type(f.column.type)
    kind: Any = base
    if f.column.nullable:
        kind = ["null", base] if f.column.default is None else [base, "null"]
    out: dict[str, Any] = {"name": f.name, "type": kind}
    if f.column.doc:
        out["doc"] = f.column.doc
    if f.column.has_default:
        out["default"] = f.column.default
    return out


def _schema(g: GroupModel) -> dict[str, Any]:
    avro = g.obj.avro or AvroSchema()
    out: dict[str, Any] = {
        "type": "record",
        "name": avro.record or record_name(g.name),
        "namespace": avro.namespace,
    }
    doc = avro.doc if avro.doc is not None else g.obj.description
    if doc:
        out["doc"] = doc
    out["fields"] = [_field(f) for f in g.features]
    return out


def _group(g: GroupModel, previous: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": g.name,
        "description": g.obj.description,
        "store": g.obj.store,
        "dataset": g.name,
        "keys": [{"name": k, "type": t} for k, t in g.keys],
        "schema": f"{g.name}.avsc",
        "previous_schemas": previous,
        "max_age_seconds": g.max_age_s,
        "ttl_seconds": g.ttl_s,
        "online": g.obj.online,
    }
    cache = g.obj.cache
    if cache is not None:
        out["cache"] = {
            "l1": cache.l1,
            "l2": cache.l2,
            "l1_ttl_seconds": cache.l1_ttl,
            "l2_ttl_seconds": cache.l2_ttl,
        }
    return out


def _lineage(g: GroupModel) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for f in g.features:
        features[f.name] = {
            "column": f.source_column,
            "operation": f.operation,
            "window": f.window,
            "tile": f.tile,
            "type": f.column.type,
            "sources": [
                {"table": s.table, "expression": dict(s.selects)[f.source_column]}
                for s in g.sources
            ],
        }
    return features


def _hash(form: Any) -> str:
    return hashlib.sha256(render(form, sort=True)).hexdigest()


def build_output(
    repo: Path,
    groups: dict[str, GroupModel],
    joins: dict[str, JoinModel],
    refs: References,
    found: list[Edge],
    compiler_version: str,
) -> Output:
    """Every output file of a clean compile."""
    files: dict[str, bytes] = {}
    served: dict[str, bool] = {}
    problems: list[Problem] = []
    lineage: dict[str, Any] = {"group_bys": {}, "joins": {}}
    manifest: dict[str, Any] = {"compiler_version": compiler_version, "group_bys": {}, "joins": {}}
    for name in sorted(groups):
        g = groups[name]
        served[f"group_by:{name}"] = not g.aggregated
        features = _lineage(g)
        lineage["group_bys"][name] = {"served": not g.aggregated, "features": features}
        form: dict[str, Any] = {"keys": [list(k) for k in g.keys], "features": features}
        if not g.aggregated:
            previous: list[str] = []
            digests: list[str] = []
            for path in (g.obj.avro or AvroSchema()).previous:
                data = (repo / path).read_bytes()
                target = f"groups/{Path(path).name}"
                if target in files or Path(path).name == f"{name}.avsc":
                    problems.append(Problem(
                        Stage.OUTPUT, g.definition.file, g.definition.line, name, "avro.previous",
                        f"{Path(path).name} would overwrite another catalog file",
                        f'name earlier schemas "<group>.v<N>.avsc", e.g. "{name}.v1.avsc"'))
                    continue
                files[target] = data
                previous.append(Path(path).name)
                digests.append(hashlib.sha256(data).hexdigest())
            group_json, schema = _group(g, previous), _schema(g)
            files[f"groups/{name}.json"] = render(group_json)
            files[f"groups/{name}.avsc"] = render(schema)
            form.update(group=group_json, schema=schema, previous=digests)
        manifest["group_bys"][name] = _manifest_entry(g.obj.version, form, g.obj.production,
                                                      not g.aggregated, dict(g.obj.tags))
    for name in sorted(joins):
        j = joins[name]
        parts = [(p, groups[t.name]) for p in j.parts
                 if (t := refs.resolve(p.group_by, "group_by")) is not None]
        is_served = all(not g.aggregated for _, g in parts)
        served[f"join:{name}"] = is_served
        outputs: dict[str, Any] = {}
        for p, g in parts:
            for feature, entry in _lineage(g).items():
                outputs[p.prefix + feature] = {"group_by": g.name, "feature": feature, **entry}
        lineage["joins"][name] = {"served": is_served, "features": outputs}
        service: dict[str, Any] = {
            "name": name,
            "description": j.obj.description,
            "online": j.obj.online,
            "joins": [_service_join(p, g.name) for p, g in parts],
        }
        if is_served:
            files[f"services/{name}.json"] = render(service)
        form = {"service": service, "left": [list(c) for c in j.left_columns],
                "left_kind": j.left_kind, "sample_percent": j.obj.sample_percent}
        manifest["joins"][name] = _manifest_entry(j.obj.version, form, j.obj.production,
                                                  is_served, dict(j.obj.tags))
    files["metadata/lineage.json"] = render(lineage, sort=True)
    files["metadata/version_manifest.json"] = render(manifest, sort=True)
    files["metadata/dependencies.json"] = render(_graph(groups, joins, found), sort=True)
    return Output(files, served, problems)


def _service_join(part: PartModel, group: str) -> dict[str, Any]:
    out: dict[str, Any] = {"group": group}
    if part.prefix:
        out["prefix"] = part.prefix
    if part.key_mapping:
        out["key_mapping"] = dict(part.key_mapping)
    return out


def _manifest_entry(version: str | None, form: Any, production: bool, served: bool,
                    tags: dict[str, str]) -> dict[str, Any]:
    return {
        "version": version or DEFAULT_VERSION,
        "hash": _hash(form),
        "production": production,
        "served": served,
        "tags": tags,
    }


def _graph(groups: dict[str, GroupModel], joins: dict[str, JoinModel],
           found: list[Edge]) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    edges: set[tuple[str, str, str]] = set()
    models: list[GroupModel | JoinModel] = [*groups.values(), *joins.values()]
    for m in models:
        d = m.definition
        nodes[f"{d.kind}:{d.name}"] = {"id": f"{d.kind}:{d.name}", "kind": d.kind,
                                       "name": d.name, "file": d.file, "line": d.line}
        sources = m.sources if isinstance(m, GroupModel) else (m.left,) if m.left else ()
        for s in sources:
            if s.kind != "join":
                nodes[f"table:{s.table}"] = {"id": f"table:{s.table}", "kind": "table",
                                             "name": s.table}
                edges.add((f"{d.kind}:{d.name}", f"table:{s.table}", "reads"))
    for e in found:
        edges.add((f"{e.source.kind}:{e.source.name}", f"{e.target.kind}:{e.target.name}",
                   e.kind))
    return {
        "nodes": [nodes[k] for k in sorted(nodes)],
        "edges": [{"from": a, "to": b, "kind": k} for a, b, k in sorted(edges)],
    }
