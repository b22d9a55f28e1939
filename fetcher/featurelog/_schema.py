"""The logged schema of one feature service: a descriptor, its hash, its Arrow schema.

The descriptor is what a record means, in plain JSON: the service's request keys, its
request-time values, its joins and its features with their types and joins. Its hash (the
first 16 hex digits of the SHA-256 of its canonical JSON) names the layout: records written
under one hash have one Arrow schema, whatever config version served them. The canonical
JSON is written once per hash as `schemas/<hash>.json`, and into every file's metadata, so a
record can be read back without the catalog that served it (docs/operations.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fetcher.engine import (
    SLOT_OF_TYPE,
    TargetPlan,
)
from fetcher.types import FeatureType, KeyColumn, KeyType, Status

#: The version of the record layout below (the descriptor's "log_format").
LOG_FORMAT = 1
#: Parquet key-value metadata of every log file.
META_DESCRIPTOR = b"fetcher.log_schema"
META_HASH = b"fetcher.schema_hash"
#: Parquet key-value metadata naming a file's record layout: LAYOUT_VECTOR (each record's
#: vector as the wire bytes served, decoded when read) or, absent, the layout of
#: `LogSchema.arrow` (one column per feature: files written before the vector layout).
META_LAYOUT = b"fetcher.record_layout"
LAYOUT_VECTOR = b"vector"

TIMESTAMP = pa.timestamp("ms", tz="UTC")
#: Statuses are dictionary-encoded: index = fetcher.v1.FeatureStatus number.
STATUS_NAMES = ("FEATURE_STATUS_UNSPECIFIED", *(s.name for s in Status))
STATUS_TYPE = pa.dictionary(pa.int8(), pa.string())
MAX_STATUS = max(int(s) for s in Status)

ARROW_TYPES: dict[FeatureType, pa.DataType] = {
    FeatureType.DOUBLE: pa.float64(),
    FeatureType.INT64: pa.int64(),
    FeatureType.STRING: pa.string(),
    FeatureType.BOOL: pa.bool_(),
    FeatureType.BYTES: pa.binary(),
    FeatureType.DOUBLE_LIST: pa.list_(pa.float64()),
    FeatureType.INT64_LIST: pa.list_(pa.int64()),
    FeatureType.STRING_LIST: pa.list_(pa.string()),
    FeatureType.BOOL_LIST: pa.list_(pa.bool_()),
    FeatureType.BYTES_LIST: pa.list_(pa.binary()),
}
KEY_ARROW_TYPES: dict[KeyType, pa.DataType] = {
    KeyType.INT64: pa.int64(),
    KeyType.STRING: pa.string(),
    KeyType.BYTES: pa.binary(),
}
FEATURE_TYPE_NAMES = {t: t.name.lower() for t in FeatureType}
KEY_TYPE_NAMES = {t: t.name.lower() for t in KeyType}
_FEATURE_TYPES = {v: k for k, v in FEATURE_TYPE_NAMES.items()}
_KEY_TYPES = {v: k for k, v in KEY_TYPE_NAMES.items()}

# The FeatureVector slot of each feature type (fetcher.v1: one packed array per slot):
# the engine's, which writes the vectors this log reads back.
SLOT_OF = SLOT_OF_TYPE


@dataclass(frozen=True, slots=True)
class LoggedFeature:
    """One feature of the logged vector: its slot and position there, and its join."""

    name: str
    type: FeatureType
    slot: int
    index: int  # position among the features of its slot
    join: int | None  # index into LogSchema.joins; None: no join's event time applies


@dataclass(frozen=True, slots=True)
class LoggedJoin:
    """One event time of the vector: a join (its group, prefix) or, last, the service's
    derived features (`derived`: their pseudo group, named like the service), and its
    field in `event_times`."""

    group: str
    prefix: str
    field: str
    derived: bool = False


@dataclass(frozen=True, slots=True)
class LogSchema:
    """The layout of one service's records, built once per layout (not per config version)."""

    service: str
    keys: tuple[KeyColumn, ...]
    context: tuple[tuple[str, FeatureType], ...]
    joins: tuple[LoggedJoin, ...]
    features: tuple[LoggedFeature, ...]
    slot_counts: tuple[int, ...]  # features per slot, SLOT_DOUBLE..SLOT_LIST
    descriptor: str  # canonical JSON
    hash: str
    arrow: pa.Schema  # a record decoded: one column per feature (what readers get)
    raw_arrow: pa.Schema  # a record as written to files: the vector's wire bytes

    def describe(self) -> dict[str, Any]:
        """The descriptor as a JSON object."""
        out: dict[str, Any] = json.loads(self.descriptor)
        return out


def canonical_json(value: Any) -> str:
    """The JSON the schema hash is taken over: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def schema_hash(descriptor: str) -> str:
    """First 16 hex digits of the SHA-256 of a descriptor's canonical JSON."""
    return hashlib.sha256(descriptor.encode("ascii")).hexdigest()[:16]


def _event_fields(groups: Sequence[str]) -> list[str]:
    """One `event_times` field per join: the group's name, `#<join index>` on repeats."""
    out: list[str] = []
    for i, group in enumerate(groups):
        out.append(group if groups.count(group) == 1 else f"{group}#{i}")
    return out


def service_descriptor(plan: TargetPlan) -> dict[str, Any]:
    """The descriptor of what a feature service's plan serves: its request keys, request-time
    values, the event times of its vector (its joins', then its derived features' pseudo
    group when it has derivations) and its features in vector order."""
    groups = list(plan.groups)
    fields = _event_fields(groups)
    joins: list[dict[str, Any]] = [
        {"group": g, "prefix": join.prefix, "event_time_field": f}
        for g, join, f in zip(groups, plan.joins, fields, strict=False)]
    if len(groups) > len(plan.joins):  # the derived features' pseudo group
        joins.append({"group": groups[-1], "prefix": "", "event_time_field": fields[-1],
                      "derived": True})
    return {
        "log_format": LOG_FORMAT,
        "service": plan.name,
        "keys": [{"name": k.name, "type": KEY_TYPE_NAMES[k.type]} for k in plan.request_keys],
        "context": [{"name": c.name, "type": FEATURE_TYPE_NAMES[c.type]}
                    for c in plan.context],
        "joins": joins,
        "features": [
            {"name": name, "type": FEATURE_TYPE_NAMES[kind],
             "join": join if 0 <= join < len(groups) else None}
            for name, kind, join in zip(plan.feature_names, plan.feature_types,
                                        plan.feature_joins, strict=True)
        ],
    }


def log_schema(descriptor: dict[str, Any]) -> LogSchema:
    """The LogSchema of a descriptor (as built by service_descriptor, or read back)."""
    text = canonical_json(descriptor)
    keys = tuple(KeyColumn(k["name"], _KEY_TYPES[k["type"]]) for k in descriptor["keys"])
    context = tuple((c["name"], _FEATURE_TYPES[c["type"]]) for c in descriptor["context"])
    joins = tuple(LoggedJoin(j["group"], j["prefix"], j["event_time_field"],
                             bool(j.get("derived", False)))
                  for j in descriptor["joins"])
    counts = [0] * 6
    features: list[LoggedFeature] = []
    for f in descriptor["features"]:
        kind = _FEATURE_TYPES[f["type"]]
        slot = SLOT_OF[kind]
        features.append(LoggedFeature(f["name"], kind, slot, counts[slot], f["join"]))
        counts[slot] += 1
    digest = schema_hash(text)
    arrow = _arrow_schema(keys, context, joins, features, text, digest)
    return LogSchema(
        service=descriptor["service"], keys=keys, context=context, joins=joins,
        features=tuple(features), slot_counts=tuple(counts), descriptor=text, hash=digest,
        arrow=arrow, raw_arrow=_raw_schema(arrow, bool(context)),
    )


def _struct(fields: list[pa.Field[Any]]) -> pa.DataType:
    return pa.struct(fields)


def _arrow_schema(
    keys: Sequence[KeyColumn], context: Sequence[tuple[str, FeatureType]],
    joins: Sequence[LoggedJoin], features: Sequence[LoggedFeature], descriptor: str, digest: str,
) -> pa.Schema:
    fields: list[pa.Field[Any]] = [
        pa.field("request_time", TIMESTAMP, nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("entity", pa.int32(), nullable=False),
        pa.field("config_version", pa.string(), nullable=False),
        pa.field("schema_hash", pa.string(), nullable=False),
        pa.field("at", TIMESTAMP),
        pa.field("keys", _struct([pa.field(k.name, KEY_ARROW_TYPES[k.type], nullable=False)
                                  for k in keys]), nullable=False),
    ]
    # Parquet has no struct without fields: an empty part is left out.
    if context:
        fields.append(pa.field("context", _struct(
            [pa.field(name, ARROW_TYPES[kind]) for name, kind in context])))
    if features:
        fields.append(pa.field("values", _struct(
            [pa.field(f.name, ARROW_TYPES[f.type]) for f in features]), nullable=False))
        fields.append(pa.field("statuses", _struct(
            [pa.field(f.name, STATUS_TYPE, nullable=False) for f in features]),
            nullable=False))
    if joins:
        fields.append(pa.field("event_times", _struct(
            [pa.field(j.field, TIMESTAMP) for j in joins]), nullable=False))
    return pa.schema(fields, metadata={META_DESCRIPTOR: descriptor.encode("ascii"),
                                       META_HASH: digest.encode("ascii")})


def _raw_schema(arrow: pa.Schema, context: bool) -> pa.Schema:
    """The written layout: the request fields, keys and context of `arrow`, then `vector`
    (the FeatureVector bytes; its layout is the descriptor's, so the hash stays the same)."""
    fields = [arrow.field(i) for i in range(7 + int(context))]
    fields.append(pa.field("vector", pa.binary(), nullable=False))
    metadata: dict[bytes | str, bytes | str] = {META_LAYOUT: LAYOUT_VECTOR}
    for key, value in (arrow.metadata or {}).items():
        metadata[key] = value
    return pa.schema(fields, metadata=metadata)
