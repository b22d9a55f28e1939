"""The compiled output, in memory: the catalog files `fetcher serve` loads and the metadata.

Everything is rendered deterministically: catalog files in the loader's field order (as
docs/configuration.md writes them), metadata with sorted keys, no timestamps, so the same
definitions always give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fetcher.compiler._aggregation_group import aggregations_object, layout
from fetcher.compiler._avsc import group_schema
from fetcher.compiler._compiled import KINDS, MANIFEST, ObjectEntry, SchemaFile, parse_entry
from fetcher.compiler._dependencies import Edge
from fetcher.compiler._model import FeatureModel, GroupModel, JoinModel, PartModel
from fetcher.compiler._refs import References
from fetcher.compiler._types import feature_type
from fetcher.definitions import GroupBy, Join


@dataclass(frozen=True, slots=True)
class Output:
    """Relative path -> bytes of every file to write (but the manifest, which waits for the
    versions: `with_manifest`), what each object became, and its manifest entry; the lineage
    and the graph as written (for the --report page)."""

    files: dict[str, bytes]
    served: dict[str, bool]  # "<kind>:<name>" -> written to the catalog (else metadata only)
    manifest: dict[str, Any]  # entries without their version
    entries: dict[str, ObjectEntry]  # "<kind>:<name>" -> the entry as stage 4 compares it
    lineage: dict[str, Any]  # metadata/lineage.json
    graph: dict[str, Any]  # metadata/dependencies.json

    def with_manifest(self, versions: Mapping[str, str]) -> dict[str, bytes]:
        """Every file, the manifest with each object's version (`<kind>:<name>` -> version)."""
        manifest = json.loads(json.dumps(self.manifest))
        for section, kind in KINDS.items():
            for name, entry in manifest[section].items():
                entry["version"] = versions[f"{kind}:{name}"]
        return {**self.files, MANIFEST: render(manifest, sort=True)}


def render(data: Any, *, sort: bool = False) -> bytes:
    """JSON as the catalog files are written: two-space indent, a final newline."""
    return (json.dumps(data, indent=2, sort_keys=sort) + "\n").encode()


def _group(g: GroupModel, previous: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": g.name,
        "description": g.obj.description,
        "store": g.obj.store,
        "dataset": g.name,
        "keys": [{"name": k, "type": t} for k, t in g.keys],
        "schema": f"{g.name}.avsc",
        "previous_schemas": list(previous),
        "max_age_seconds": g.max_age_s,
        "ttl_seconds": g.ttl_s,
        "online": g.obj.online,
    }
    _cache(g, out)
    return out


def _aggregation_group(g: GroupModel) -> dict[str, Any]:
    """A served aggregation group's file: no schema and no max age, `aggregations` last."""
    out: dict[str, Any] = {
        "name": g.name,
        "description": g.obj.description,
        "store": g.obj.store,
        "dataset": g.name,
        "keys": [{"name": k, "type": t} for k, t in g.keys],
        "ttl_seconds": g.ttl_s,
        "online": g.obj.online,
    }
    _cache(g, out)
    out["aggregations"] = aggregations_object(g)
    return out


def _cache(g: GroupModel, out: dict[str, Any]) -> None:
    cache = g.obj.cache
    if cache is not None:
        out["cache"] = {
            "l1": cache.l1,
            "l2": cache.l2,
            "l1_ttl_seconds": cache.l1_ttl,
            "l2_ttl_seconds": cache.l2_ttl,
        }


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


def _signatures(features: Mapping[str, FeatureModel]) -> dict[str, Any]:
    return {n: {"type": f.column.type, "nullable": f.column.nullable}
            for n, f in features.items()}


def build_output(
    groups: dict[str, GroupModel],
    joins: dict[str, JoinModel],
    refs: References,
    found: list[Edge],
    compiler_version: str,
    previous_files: Mapping[str, Sequence[SchemaFile]],
) -> Output:
    """Every output file of a clean compile; `previous_files`: each served group's earlier
    schemas (stage 4), copied byte for byte."""
    files: dict[str, bytes] = {}
    served: dict[str, bool] = {}
    lineage: dict[str, Any] = {"group_bys": {}, "joins": {}}
    manifest: dict[str, Any] = {"compiler_version": compiler_version, "group_bys": {}, "joins": {}}
    for name in sorted(groups):
        g = groups[name]
        served[f"group_by:{name}"] = g.served
        features = _lineage(g)
        lineage["group_bys"][name] = {"served": g.served, "features": features}
        form: dict[str, Any] = {"keys": [list(k) for k in g.keys], "features": features}
        stored: dict[str, Any] | None = None  # what stored data is laid out by
        if g.aggregated and g.served:
            group_json = _aggregation_group(g)
            files[f"groups/{name}.json"] = render(group_json)
            form.update(group=group_json)
            stored = layout(group_json["aggregations"])
        elif g.served:
            previous = previous_files.get(name, ())
            for earlier in previous:
                files[f"groups/{earlier.name}"] = earlier.data
            group_json, schema = _group(g, [e.name for e in previous]), group_schema(g)
            files[f"groups/{name}.json"] = render(group_json)
            files[f"groups/{name}.avsc"] = render(schema)
            form.update(group=group_json, schema=schema,
                        previous=[hashlib.sha256(e.data).hexdigest() for e in previous])
        manifest["group_bys"][name] = _manifest_entry(
            form, g.obj, g.served, g.keys, _signatures({f.name: f for f in g.features}))
        if stored is not None:
            manifest["group_bys"][name]["aggregation_layout"] = stored
    for name in sorted(joins):
        j = joins[name]
        parts = [(p, groups[t.name]) for p in j.parts
                 if (t := refs.resolve(p.group_by, "group_by")) is not None]
        is_served = all(g.served for _, g in parts)
        served[f"join:{name}"] = is_served
        outputs: dict[str, Any] = {}
        signatures: dict[str, FeatureModel] = {}
        for p, g in parts:
            for f in g.features:
                signatures[p.prefix + f.name] = f
            for feature, entry in _lineage(g).items():
                outputs[p.prefix + feature] = {"group_by": g.name, "feature": feature, **entry}
        for d in j.derivations:
            outputs[d.name] = {"derivation": d.expression, "inputs": list(d.uses),
                               "type": d.type}
        lineage["joins"][name] = {"served": is_served, "features": outputs}
        service: dict[str, Any] = {
            "name": name,
            "description": j.obj.description,
            "online": j.obj.online,
            "joins": [_service_join(p, g.name) for p, g in parts],
            **_derived_fields(j),
        }
        if j.obj.sample_percent != 100:  # the catalog's default: written only when it differs
            service["sample_percent"] = float(j.obj.sample_percent)
        if is_served:
            files[f"services/{name}.json"] = render(service)
        form = {"service": service, "left": [list(c) for c in j.left_columns],
                "left_kind": j.left_kind, "sample_percent": j.obj.sample_percent}
        features = _signatures(signatures)
        features.update({d.name: {"type": d.type, "nullable": True} for d in j.derivations})
        manifest["joins"][name] = _manifest_entry(form, j.obj, is_served, j.left_columns,
                                                  features)
    graph = _graph(groups, joins, found)
    files["metadata/lineage.json"] = render(lineage, sort=True)
    files["metadata/dependencies.json"] = render(graph, sort=True)
    entries = {
        f"{kind}:{name}": parse_entry(kind, name, raw)
        for section, kind in KINDS.items() for name, raw in manifest[section].items()
    }
    return Output(files, served, manifest, entries, lineage, graph)


def _derived_fields(j: JoinModel) -> dict[str, Any]:
    """A service's `context` and `derivations` (docs/configuration.md), when it has them."""
    out: dict[str, Any] = {}
    if j.context:
        out["context"] = [{"name": n, "type": _feature_type_name(t)} for n, t in j.context]
    if j.derivations:
        out["derivations"] = [{"name": d.name, "expression": d.expression,
                               "type": _feature_type_name(d.type)} for d in j.derivations]
    return out


def _feature_type_name(column_type: str) -> str:
    t = feature_type(column_type)
    assert t is not None  # stage 1 typed it
    return t.name.lower()


def _service_join(part: PartModel, group: str) -> dict[str, Any]:
    out: dict[str, Any] = {"group": group}
    if part.prefix:
        out["prefix"] = part.prefix
    if part.key_mapping:
        out["key_mapping"] = dict(part.key_mapping)
    return out


def _manifest_entry(form: Any, obj: GroupBy | Join, served: bool,
                    keys: Sequence[tuple[str, str]], features: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "",  # set by Output.with_manifest once stage 4 has computed it
        "hash": _hash(form),
        "online": obj.online,
        "production": obj.production,
        "served": served,
        "tags": dict(obj.tags),
        "keys": [list(k) for k in keys],
        "features": features,
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
