"""A served group's Avro schema as the compiler writes it (`groups/<name>.avsc`)."""

from __future__ import annotations

import re
from typing import Any

from fetcher.compiler._model import FeatureModel, GroupModel
from fetcher.compiler._types import avro_type
from fetcher.definitions import AvroSchema


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


def group_schema(g: GroupModel) -> dict[str, Any]:
    """The group's current Avro record schema, in the field order of its features."""
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
