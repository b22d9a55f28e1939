"""Avro single-object encoding of feature rows, and the registry of writer schemas.

A stored value is the Avro single-object encoding (Avro spec, "Single object encoding"):

    0xC3 0x01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
    Parsing Canonical Form | Avro binary body

so a row written with an older schema names that schema, and the reader resolves it to
the group's current schema (a field added with a default is filled in, a removed field
is dropped). fastavro does the Avro work; this module builds everything once per schema.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from fetcher.codec._compat import resolution_problems
from fetcher.types import Feature, FeatureType

MARKER = b"\xc3\x01"
HEADER_SIZE = 10  # marker + fingerprint

# Every field type a feature may have, in the words an error message shows.
SUPPORTED_TYPES = (
    "double, float, int, long, string, boolean, bytes, array<double|float|int|long|string|boolean>,"
    ' and ["null", T] of any of these'
)

_SCALARS: dict[str, FeatureType] = {
    "double": FeatureType.DOUBLE,
    "float": FeatureType.DOUBLE,
    "int": FeatureType.INT64,
    "long": FeatureType.INT64,
    "string": FeatureType.STRING,
    "boolean": FeatureType.BOOL,
    "bytes": FeatureType.BYTES,
}
_LISTS: dict[str, FeatureType] = {
    "double": FeatureType.DOUBLE_LIST,
    "float": FeatureType.DOUBLE_LIST,
    "int": FeatureType.INT64_LIST,
    "long": FeatureType.INT64_LIST,
    "string": FeatureType.STRING_LIST,
    "boolean": FeatureType.BOOL_LIST,
}


class SchemaError(ValueError):
    """An Avro schema that does not parse, is not a record, or has unsupported fields."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        # problems: (field or "" for the whole schema, what is wrong); the catalog
        # reports each one separately.
        self.source = source
        self.problems = problems
        text = "; ".join(f"{f}: {p}" if f else p for f, p in problems)
        super().__init__(f"{source}: {text}")


class EncodeError(ValueError):
    """A record that does not match its group's schema; `.field` names the offending field."""

    def __init__(self, field: str, expected: str, message: str) -> None:
        self.field = field
        self.expected = expected
        super().__init__(message)


class DecodeError(ValueError):
    """Bytes that are not a readable single-object encoded row for this group."""


def schema_fingerprint(parsed: Any) -> bytes:
    """The 8 fingerprint bytes, as written on the wire, of a parsed schema."""
    # fastavro renders the CRC-64-AVRO value as the hex of its little-endian bytes,
    # which is exactly the single-object layout (checked against the spec's Rabin
    # reference and its test vector in tests/unit/codec/test_codec.py).
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A registered schema: parsed once, with where it came from for error messages."""

    fingerprint: bytes
    parsed: Any
    source: str


class SchemaRegistry:
    """Fingerprint -> parsed writer schema, filled at catalog load, read on the hot path."""

    def __init__(self) -> None:
        self._schemas: dict[bytes, WriterSchema] = {}

    def register(self, schema: dict[str, Any] | str, source: str) -> bytes:
        """Parse `schema` (a dict or JSON text) once, store it, and return its fingerprint."""
        if isinstance(schema, str):
            # A bare type name such as `long` is not JSON: let fastavro judge it.
            with contextlib.suppress(json.JSONDecodeError):
                schema = json.loads(schema)
        try:
            parsed = parse_schema(schema)
            fp = schema_fingerprint(parsed)
        except Exception as exc:  # fastavro raises several unrelated types for bad schemas
            raise SchemaError(source, [("", f"not a valid Avro schema: {exc}")]) from exc
        bad = _bad_field_name(parsed)
        if bad is not None:  # fastavro accepts null or list field names; nothing else does
            raise SchemaError(source, [("fields", f"field name {bad} is not a string")])
        # The first registration wins: equal fingerprints mean equal canonical forms.
        self._schemas.setdefault(fp, WriterSchema(fp, parsed, source))
        return fp

    def get(self, fp: bytes) -> WriterSchema | None:
        """The registered schema with this fingerprint, or None."""
        return self._schemas.get(fp)

    def __contains__(self, fp: object) -> bool:
        return fp in self._schemas

    def __len__(self) -> int:
        return len(self._schemas)


def _describe(schema: Any) -> str:
    """A short rendering of a field type for messages: long, array<double>, null|string."""
    if isinstance(schema, list):
        return "|".join(_describe(s) for s in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "array":
            return f"array<{_describe(schema['items'])}>"
        if kind == "map":
            return f"map<{_describe(schema['values'])}>"
        if kind in ("record", "enum", "fixed"):
            return f"{kind} {schema.get('name', '')}".strip()
        return _describe(kind)
    return str(schema)


def _nullable_branch(field_type: Any) -> int | None:
    """Index of T in a ["null", T] or [T, "null"] union; None for any other type."""
    if isinstance(field_type, list) and len(field_type) == 2 and "null" in field_type:
        return 1 if field_type[0] == "null" else 0
    return None


@dataclass(frozen=True, slots=True)
class DoubleLayout:
    """The fixed byte layout of a row whose fields are all double or float, none of them null.

    A record whose every field is `double`, `float` or one of them in a union with `null`
    has, when no field is null, a body of fixed size: per field its union branch byte (for
    a union) then 8 or 4 little-endian bytes. Such a row can be read with one struct call,
    and a row of plain doubles not at all: its body already is the packed doubles of a
    FeatureVector. Rows with a null, or written with another schema, do not match
    `size`/`header` and take the general decoder.

    Other codecs with such rows describe them the same way (fetcher.feast's protobuf
    rows: no header, the body at offset 0, each value's field head checked as "branches").
    """

    header: bytes  # marker + the current schema's fingerprint
    size: int  # whole value size, header included, when no field is null
    names: tuple[str, ...]  # the fields, in order
    raw: bool  # every field a plain double: the body is the values' packed doubles
    body: struct.Struct  # "<" + per field: "B" (union branch byte, if a union) and "d"/"f"
    branch_positions: tuple[int, ...]  # where the branch bytes are in body.unpack's tuple
    branches: tuple[int, ...]  # the branch byte of the non-null type of each union
    value_positions: tuple[int, ...]  # where the values are in body.unpack's tuple
    offset: int = HEADER_SIZE  # where the body starts


def double_layout(schema: Any, fingerprint: bytes) -> DoubleLayout | None:
    """The DoubleLayout of a parsed record schema, or None if a field is anything else."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    names: list[str] = []
    codes: list[str] = []
    branch_positions: list[int] = []
    branches: list[int] = []
    value_positions: list[int] = []
    for field in schema.get("fields", ()):
        field_type = field["type"]
        if isinstance(field_type, list):
            index = _nullable_branch(field_type)
            if index is None:
                return None
            branch_positions.append(len(codes))
            branches.append(index * 2)  # the union index as an Avro long: zig-zag, one byte
            codes.append("B")
            field_type = field_type[index]
        kind = _primitive(field_type)
        if kind not in ("double", "float"):
            return None
        value_positions.append(len(codes))
        codes.append("d" if kind == "double" else "f")
        names.append(field["name"])
    if not names:
        return None
    body = struct.Struct("<" + "".join(codes))
    return DoubleLayout(
        header=MARKER + fingerprint,
        size=HEADER_SIZE + body.size,
        names=tuple(names),
        raw=set(codes) == {"d"},
        body=body,
        branch_positions=tuple(branch_positions),
        branches=tuple(branches),
        value_positions=tuple(value_positions),
    )


class GroupCodec:
    """Encoder/decoder of one group's rows; decoding setup is cached per writer fingerprint."""

    __slots__ = ("_fields", "_plans", "_registry", "_rejected", "fingerprint", "schema", "source")

    def __init__(self, registry: SchemaRegistry, fingerprint: bytes) -> None:
        current = registry.get(fingerprint)
        if current is None:
            raise KeyError(f"schema {fingerprint.hex()} is not registered")
        self._registry = registry
        self.fingerprint = fingerprint
        self.schema: Any = current.parsed
        self.source = current.source
        # A row written with the current schema needs no resolution: fastavro then
        # skips the writer/reader matching entirely.
        self._plans: dict[bytes, tuple[Any, Any]] = {fingerprint: (current.parsed, None)}
        self._rejected: dict[bytes, str] = {}
        expanded: Any = parse_schema(current.parsed, expand=True)
        # (name, field schema for validation, has a default); built once for encode.
        self._fields: tuple[tuple[str, Any, bool], ...] = tuple(
            (f["name"], f["type"], "default" in f) for f in expanded.get("fields", ())
        )

    def double_layout(self) -> DoubleLayout | None:
        """The fixed layout of rows written with the current schema, if it has one."""
        return double_layout(self.schema, self.fingerprint)

    def check_writer(self, fp: bytes) -> list[str]:
        """Problems reading rows written with schema `fp` as this group's schema (empty: ok)."""
        writer = self._registry.get(fp)
        if writer is None:
            return [f"no schema with fingerprint {fp.hex()} is registered"]
        if fp == self.fingerprint:
            return []
        return resolution_problems(writer.parsed, self.schema)

    def _plan(self, fp: bytes) -> tuple[Any, Any]:
        # Slow path, once per writer fingerprint: the hot path hits self._plans.
        if fp in self._rejected:
            raise DecodeError(self._rejected[fp])
        writer = self._registry.get(fp)
        if writer is None:
            raise DecodeError(
                f"{self.source}: unknown writer schema fingerprint {fp.hex()}; "
                "list the schema it was written with in the group's previous_schemas"
            )
        problems = self.check_writer(fp)
        if problems:
            message = (
                f"{self.source}: rows written with {writer.source} cannot be read: "
                + "; ".join(problems)
            )
            self._rejected[fp] = message
            raise DecodeError(message)
        plan = (writer.parsed, self.schema)
        self._plans[fp] = plan
        return plan

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Validate `record` against the group's schema and return its single-object bytes."""
        for name, field_schema, has_default in self._fields:
            if name not in record:
                if has_default:
                    continue  # fastavro writes the field's default
                raise EncodeError(
                    name,
                    _describe(field_schema),
                    f"field {name!r} is missing (expected {_describe(field_schema)})",
                )
            value = record[name]
            if not validate(value, field_schema, field=name, raise_errors=False):
                expected = _describe(field_schema)
                raise EncodeError(
                    name,
                    expected,
                    f"field {name!r}: expected {expected}, "
                    f"got {type(value).__name__} {value!r:.60}",
                )
        out = BytesIO()
        out.write(MARKER)
        out.write(self.fingerprint)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Read a single-object encoded row as a dict shaped by the group's current schema."""
        if data[:2] != MARKER:
            raise DecodeError(f"{self.source}: not single-object encoded Avro (bad marker)")
        fp = data[2:HEADER_SIZE]
        plan = self._plans.get(fp)
        if plan is None:
            if len(fp) < 8:
                raise DecodeError(f"{self.source}: truncated header ({len(data)} bytes)")
            plan = self._plan(fp)
        # BytesIO over bytes shares the buffer (no copy); seek past the header.
        stream = BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            record: dict[str, Any] = schemaless_reader(stream, plan[0], plan[1])  # type: ignore[assignment]
        except Exception as exc:  # corrupt bytes surface as EOFError, IndexError, UnicodeError...
            raise DecodeError(f"{self.source}: corrupt or truncated row: {exc!r}") from exc
        if stream.tell() != len(data):
            raise DecodeError(f"{self.source}: corrupt row: {len(data) - stream.tell()} bytes left")
        return record


def _feature_type(schema: Any) -> FeatureType | None:
    if isinstance(schema, dict):
        if "logicalType" in schema:
            return None  # decodes to datetime/Decimal, which no feature type carries
        if schema.get("type") == "array":
            items = _primitive(schema.get("items"))
            return _LISTS.get(items) if items else None
        return _feature_type(schema.get("type"))
    return _SCALARS.get(schema) if isinstance(schema, str) else None


def _primitive(schema: Any) -> str | None:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict) and "logicalType" not in schema and isinstance(schema["type"], str):
        return str(schema["type"])
    return None


def _bad_field_name(schema: Any) -> str | None:
    """repr() of the first record field name (at any depth) that is not a string, if any."""
    if isinstance(schema, list):
        return next((b for b in map(_bad_field_name, schema) if b is not None), None)
    if not isinstance(schema, dict):
        return None
    for f in schema.get("fields", ()):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            return repr(f.get("name") if isinstance(f, dict) else f)
        bad = _bad_field_name(f.get("type"))
        if bad is not None:
            return bad
    for key in ("items", "values"):
        bad = _bad_field_name(schema.get(key))
        if bad is not None:
            return bad
    return None


def avro_to_features(schema: Any, source: str = "schema") -> tuple[Feature, ...]:
    """A group's features: the top-level fields of its Avro record schema (parsed or raw)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaError(source, [("", "the schema must be an Avro record")])
    features: list[Feature] = []
    problems: list[tuple[str, str]] = []
    for f in schema.get("fields", ()):
        field_type = f["type"]
        branch = _nullable_branch(field_type)
        nullable = branch is not None
        if branch is not None:
            field_type = field_type[branch]
        ftype = _feature_type(field_type)
        if ftype is None:
            problems.append(
                (
                    f["name"],
                    f"unsupported type {_describe(f['type'])}; supported: {SUPPORTED_TYPES}",
                )
            )
            continue
        features.append(Feature(f["name"], ftype, nullable, f.get("doc", "")))
    if problems:
        raise SchemaError(source, problems)
    return tuple(features)


def decode_cause(value: bytes, exc: Exception) -> str:
    """The decode_errors metric's cause label for a value that did not decode.

    Read from the bytes where they tell (marker, header) and from the codec's message
    otherwise; only called on failure, never on the hot path.
    """
    if not isinstance(exc, DecodeError):
        return "record_shape"  # decoded, but the record does not fit the group's rows
    if value[:2] != MARKER:
        return "bad_marker"
    if len(value) < HEADER_SIZE:
        return "truncated_header"
    text = str(exc)
    if "unknown writer schema fingerprint" in text:
        return "unknown_schema"
    if "cannot be read" in text:
        return "incompatible_schema"
    return "corrupt_body"
