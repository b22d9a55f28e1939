"""Deterministic demo rows for any feature group, generated from its Avro schema.

Values follow each field's Avro type (so a schema change needs no code change),
made plausible by hints in the field name (`*_rate` in [0, 1], `country` an ISO
code, `*_ts` a recent epoch-ms time, ...). Same group, seed and `now_ms` give the
same rows. Entities and the cases they demonstrate, for a group of N entities
(user_profile: N = 10,000 users 1..10000; merchant_stats: 1,000 merchants 1..1000;
place_visits: 2,000 places; any other group: 1,000):

- entity i in 1..N has a newest version with an event time 1-30 minutes before `now_ms`;
- every 10th entity (i % 10 == 0: users 10, 20, ..., 9990) also has an older
  version, `older_version_age_ms(group)` before `now_ms` (users: 3 days, merchants: 1 day,
  places: 12 hours), with other values: a read "as of 2 hours ago" returns it;
- the last 10 entities (users 9991-10000, merchants 991-1000, places 1991-2000) have
  only a version one day older than the group's max age: OUTSIDE_MAX_AGE at read time;
- entities after N (user 10001, merchant 1001) do not exist: NOT_FOUND.

Keys: the first int64 key column is i; an int64 column named like `s2_cell_id` holds
one of 64 level-13 S2 cell ids (`demo_cell_id(i % 64)`); a string column is
`<column without _id>-<i:05d>` (place_visits: `place-00001`); a bytes column is i as 8 bytes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema

from fetcher.codec import KeyValue
from fetcher.types import FeatureGroup, KeyType

DEMO_SEED = 20_240_601
#: Entities per demo group; groups not listed get DEFAULT_ENTITIES.
DEMO_ENTITIES: Mapping[str, int] = {
    "user_profile": 10_000,
    "merchant_stats": 1_000,
    "place_visits": 2_000,
}
DEFAULT_ENTITIES = 1_000
STALE_ENTITIES = 10  # the last ones of each group, see the module docstring
NULL_RATE = 0.1  # share of nulls in a nullable field

_DAY_MS = 86_400_000
_MINUTE_MS = 60_000
_S2_LEVEL = 13
_S2_FACE = 2
_S2_FIRST_POS = 0x1A2B3C0  # any 26-bit position on the face: the cells are synthetic


@dataclass(frozen=True, slots=True)
class DemoRow:
    """One demo version: key values (in the group's key order), event time, feature record."""

    keys: tuple[KeyValue, ...]
    event_ms: int
    record: dict[str, Any]


def demo_cell_id(k: int) -> int:
    """The k-th demo S2 cell id: a valid level-13 cell id layout (face, position, trailing 1)."""
    shift = 2 * (30 - _S2_LEVEL) + 1  # bits below the position: the trailing 1 and zeros
    return (_S2_FACE << 61) | ((_S2_FIRST_POS + k) << shift) | (1 << (shift - 1))


def demo_entity_count(group: FeatureGroup) -> int:
    """How many entities the demo writes for `group`."""
    return DEMO_ENTITIES.get(group.name, DEFAULT_ENTITIES)


def demo_keys(group: FeatureGroup, i: int) -> tuple[KeyValue, ...]:
    """Key values of entity i (1-based) of `group`, in key column order."""
    values: list[KeyValue] = []
    first_int = True
    for column in group.keys:
        if column.type is KeyType.INT64:
            if "s2" in column.name.lower():
                values.append(demo_cell_id(i % 64))
            else:
                values.append(i if first_int else i * 1_000 + 7)
                first_int = False
        elif column.type is KeyType.STRING:
            values.append(f"{column.name.removesuffix('_id')}-{i:05d}")
        else:
            values.append(struct.pack(">q", i))
    return tuple(values)


def older_version_age_ms(group: FeatureGroup) -> int:
    """Age of the older version of every 10th entity: 3 days, at most half the max age."""
    if group.max_age_s is None:
        return 3 * _DAY_MS
    return min(3 * _DAY_MS, group.max_age_s * 1000 // 2)


def stale_entities(group: FeatureGroup, count: int | None = None) -> range:
    """Entities whose only version is older than the group's max age (empty without one)."""
    count = demo_entity_count(group) if count is None else count
    if group.max_age_s is None:
        return range(0)
    return range(count - STALE_ENTITIES + 1, count + 1)


# --- values from the schema ------------------------------------------------------------------

_COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "BR", "IN", "JP", "CA", "AU")
_LANGUAGES = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT", "nl-NL", "pt-BR", "ja-JP")
_DEVICES = ("ios", "android", "web")
_TIERS = ("bronze", "silver", "gold")
_CATEGORIES = ("grocery", "electronics", "fashion", "home", "beauty", "sports", "toys", "books")
_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "example.org")
_TAGS = ("fast-shipping", "eco", "local", "top-rated", "new", "family-run", "24-7", "vegan")
_MCCS = (5411, 5732, 5651, 5712, 5977, 5941, 5945, 5942, 5812, 4121)
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")

_Gen = Callable[[random.Random], Any]


def _has(name: str, *parts: str) -> bool:
    return any(p in name for p in parts)


def _long_for(name: str, now_ms: int) -> _Gen:
    if _has(name, "_ts", "timestamp", "_ms", "_at"):
        return lambda r: now_ms - r.randrange(30 * _DAY_MS)
    if name == "age" or name.endswith("_age"):
        return lambda r: r.randint(18, 85)
    if _has(name, "credit_score"):
        return lambda r: r.randint(300, 850)
    if _has(name, "mcc"):
        return lambda r: r.choice(_MCCS)
    if _has(name, "hour"):
        return lambda r: r.randrange(24)
    if _has(name, "days"):
        return lambda r: r.randint(0, 3650)
    if _has(name, "1d", "24h"):
        return lambda r: r.randint(0, 40)
    if _has(name, "count", "orders", "sessions", "visits", "visitors", "num_", "_7d", "_30d"):
        return lambda r: int(r.lognormvariate(2.5, 1.0))
    return lambda r: r.randint(0, 1_000_000)


def _double_for(name: str) -> _Gen:
    if _has(name, "rate", "ratio", "score", "prob", "share", "affinity", "pct"):
        return lambda r: round(r.random(), 4)
    if _has(name, "rating"):
        return lambda r: round(r.uniform(1.0, 5.0), 2)
    if _has(name, "minutes", "duration"):
        return lambda r: round(r.uniform(0.5, 90.0), 1)
    if _has(name, "spend", "value", "gmv", "ticket", "amount", "price", "revenue"):
        return lambda r: round(r.lognormvariate(4.0, 1.2), 2)
    return lambda r: round(r.uniform(0.0, 100.0), 3)


def _string_for(name: str) -> _Gen:
    choices: tuple[str, ...] = _WORDS
    for parts, values in (
        (("country",), _COUNTRIES),
        (("language", "locale", "lang"), _LANGUAGES),
        (("device", "platform"), _DEVICES),
        (("tier", "segment", "level"), _TIERS),
        (("categor",), _CATEGORIES),
        (("domain", "email"), _DOMAINS),
        (("tag",), _TAGS),
    ):
        if _has(name, *parts):
            choices = values
            break
    return lambda r: r.choice(choices)


def _to_float32(value: float) -> float:
    # An Avro float keeps 32 bits: generate what survives encoding unchanged.
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def _generator(schema: Any, name: str, now_ms: int) -> _Gen:
    """Value generator for one Avro type (expanded schema); `name` drives the hints."""
    if isinstance(schema, list):  # a union
        nullable = "null" in schema
        branches = [_generator(s, name, now_ms) for s in schema if s != "null"]

        def union(r: random.Random) -> Any:
            if nullable and (not branches or r.random() < NULL_RATE):
                return None
            return r.choice(branches)(r)

        return union
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "array":
            item = _generator(schema["items"], name, now_ms)
            lengths = (24, 24) if _has(name, "hourly", "_24h") else (0, 6)
            return lambda r: [item(r) for _ in range(r.randint(*lengths))]
        if kind == "map":
            value = _generator(schema["values"], name, now_ms)
            return lambda r: {w: value(r) for w in r.sample(_WORDS, r.randint(0, 3))}
        if kind == "enum":
            symbols = tuple(schema["symbols"])
            return lambda r: r.choice(symbols)
        if kind == "fixed":
            fixed_size = int(schema["size"])
            return lambda r: r.randbytes(fixed_size)
        if kind == "record":
            fields = [
                (f["name"], _generator(f["type"], f["name"], now_ms)) for f in schema["fields"]
            ]
            return lambda r: {n: gen(r) for n, gen in fields}
        return _generator(kind, name, now_ms)  # a primitive with attributes (logicalType...)
    lowered = name.lower()
    if schema == "long":
        return _long_for(lowered, now_ms)
    if schema == "int":
        as_long = _long_for(lowered, now_ms)
        return lambda r: max(-(2**31), min(2**31 - 1, as_long(r)))
    if schema == "double":
        return _double_for(lowered)
    if schema == "float":
        as_double = _double_for(lowered)
        return lambda r: _to_float32(as_double(r))
    if schema == "boolean":
        return lambda r: r.random() < 0.5
    if schema == "bytes":
        byte_count = 32 if _has(lowered, "hash", "sha") else 16
        return lambda r: r.randbytes(byte_count)
    if schema == "string":
        return _string_for(lowered)
    if schema == "null":
        return lambda r: None
    raise ValueError(f"demo data: no generator for Avro type {schema!r} of field {name!r}")


def record_generator(group: FeatureGroup, now_ms: int) -> Callable[[random.Random], dict[str, Any]]:
    """Generator of whole feature records of `group`, built once from its Avro schema."""
    expanded: Any = parse_schema(group.schema, expand=True)
    fields = [(f["name"], _generator(f["type"], f["name"], now_ms)) for f in expanded["fields"]]
    return lambda r: {name: gen(r) for name, gen in fields}


def generate_demo_rows(
    group: FeatureGroup, *, now_ms: int, seed: int = DEMO_SEED, entities: int | None = None
) -> list[DemoRow]:
    """Every demo version of `group`, oldest first per entity (see the module docstring).

    `entities` overrides the group's entity count (benchmarks want more rows).
    """
    count = demo_entity_count(group) if entities is None else entities
    # A string seed is hashed with SHA-512 by random.Random: stable across runs and
    # unaffected by PYTHONHASHSEED.
    rng = random.Random(f"{seed}:{group.name}")
    make_record = record_generator(group, now_ms)
    stale = stale_entities(group, count)
    older_age = older_version_age_ms(group)
    rows: list[DemoRow] = []
    for i in range(1, count + 1):
        keys = demo_keys(group, i)
        if i in stale:
            assert group.max_age_s is not None
            event_ms = now_ms - group.max_age_s * 1000 - _DAY_MS
            rows.append(DemoRow(keys, event_ms, make_record(rng)))
            continue
        if i % 10 == 0:
            rows.append(DemoRow(keys, now_ms - older_age, make_record(rng)))
        event_ms = now_ms - rng.randint(_MINUTE_MS, 30 * _MINUTE_MS)
        rows.append(DemoRow(keys, event_ms, make_record(rng)))
    return rows
