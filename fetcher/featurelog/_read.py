"""`fetcher logs read`: a service's logged records -> one flat Parquet file for training.

Output columns, in order: request_time, request_id, entity, config_version, schema_hash,
at; one per request key (its name); one per request-time value (its name); then per
feature `<name>` (its value, null unless PRESENT), `<name>__status` and
`<name>__event_time` (the event time of the row its join served; null without a row).
Records of every schema of the service in the time range are read; a column missing from
a schema is null in its records. A name taken twice (a feature named like a key, or
`x__status` beside a feature `x`) is given its kind as a prefix the second time:
`key.<name>`, `context.<name>`, `feature.<name>`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fetcher.featurelog._columns import expand
from fetcher.featurelog._files import SCHEMAS_DIR, ClosedFile, closed_files
from fetcher.featurelog._schema import (
    ARROW_TYPES,
    KEY_ARROW_TYPES,
    LAYOUT_VECTOR,
    META_DESCRIPTOR,
    META_LAYOUT,
    TIMESTAMP,
    LogSchema,
    log_schema,
)

_META = ("request_time", "request_id", "entity", "config_version", "schema_hash", "at")


class LogReadError(Exception):
    """The records asked for cannot be read or combined; the message names why and the fix."""


@dataclass(slots=True)
class ReadSummary:
    """What one `read_logs` wrote."""

    records: int = 0
    files: int = 0  # log files read (a topic: 0)
    messages: int = 0  # topic messages read (files: 0)
    schemas: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    malformed: int = 0  # records left out: their vector does not match their schema


def read_log_file(path: str | os.PathLike[str], schema: LogSchema) -> tuple[pa.Table, int]:
    """One closed log file's records in the decoded layout (`schema.arrow`: a column per
    feature), whichever layout it was written in, and how many were left out as malformed.
    Files of the vector layout (META_LAYOUT) are decoded here; older ones are read as is."""
    table = pq.read_table(Path(path))
    if (table.schema.metadata or {}).get(META_LAYOUT) != LAYOUT_VECTOR:
        return table, 0
    decoded, malformed = expand(schema, table)
    return (decoded if decoded is not None
            else pa.Table.from_batches([], schema=schema.arrow)), malformed


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    type: pa.DataType
    # Where it comes from in a raw record: (struct, child) or (top-level name, None);
    # "status" and "event" read statuses / event_times.
    kind: str
    source: str


def file_schema(root: Path, file: ClosedFile) -> LogSchema:
    """The LogSchema of a closed file under the log directory `root`: schemas/<hash>.json, or
    the copy in the file's own metadata (LogReadError when neither is there or matches)."""
    path = root / SCHEMAS_DIR / f"{file.schema_hash}.json"
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:  # written once per process: fall back to the file's own copy
        metadata = pq.read_schema(file.path).metadata or {}
        if META_DESCRIPTOR not in metadata:
            raise LogReadError(f"{file.path}: no schema {file.schema_hash} in {path.parent} "
                               "nor in the file. Fix: restore schemas/ of the log "
                               "directory") from None
        text = metadata[META_DESCRIPTOR].decode("ascii")
    schema = log_schema(json.loads(text))
    if schema.hash != file.schema_hash:
        raise LogReadError(f"{path}: its content hashes to {schema.hash}, not "
                           f"{file.schema_hash}. Fix: restore the file from the log's backup")
    return schema


def _columns(schema: LogSchema) -> list[_Column]:
    out = [_Column(name, t, "meta", name) for name, t in (
        ("request_time", TIMESTAMP), ("request_id", pa.string()), ("entity", pa.int32()),
        ("config_version", pa.string()), ("schema_hash", pa.string()), ("at", TIMESTAMP))]
    taken = set(_META)

    def add(name: str, kind: str, t: pa.DataType, source: str, prefix: str) -> None:
        final = name if name not in taken else f"{prefix}.{name}"
        taken.add(final)
        out.append(_Column(final, t, kind, source))

    for key in schema.keys:
        add(key.name, "key", KEY_ARROW_TYPES[key.type], key.name, "key")
    for name, kind in schema.context:
        add(name, "context", ARROW_TYPES[kind], name, "context")
    for f in schema.features:
        add(f.name, "value", ARROW_TYPES[f.type], f.name, "feature")
        add(f"{f.name}__status", "status", pa.string(), f.name, "feature")
        join = schema.joins[f.join].field if f.join is not None else ""
        add(f"{f.name}__event_time", "event", TIMESTAMP, join, "feature")
    return out


def _union(schemas: Sequence[LogSchema]) -> list[_Column]:
    """The output columns of several schemas: first-seen order, one type per name."""
    seen: dict[str, tuple[_Column, str]] = {}
    order: list[str] = []
    for schema in schemas:
        for column in _columns(schema):
            before = seen.get(column.name)
            if before is None:
                seen[column.name] = (column, schema.hash)
                order.append(column.name)
            elif before[0].type != column.type:
                raise LogReadError(
                    f"column {column.name!r} is {before[0].type} in schema {before[1]} and "
                    f"{column.type} in schema {schema.hash}. Fix: read one schema at a time "
                    "(--schema HASH)")
    return [seen[name][0] for name in order]


def _nulls(size: int, kind: Any) -> Any:
    return pa.nulls(size, kind)


def _flatten(table: pa.Table, schema: LogSchema, output: Sequence[_Column]) -> pa.Table:
    mine = {c.name: c for c in _columns(schema)}
    structs: dict[str, Any] = {name: table.column(name).combine_chunks()
               for name in ("keys", "context", "values", "statuses", "event_times")
               if name in table.column_names}
    arrays: list[Any] = []
    for column in output:
        source = mine.get(column.name)
        if source is None:
            arrays.append(_nulls(table.num_rows, column.type))
        elif source.kind == "meta":
            arrays.append(table.column(source.source))
        elif source.kind == "event" and not source.source:
            arrays.append(_nulls(table.num_rows, column.type))
        else:
            struct = structs[{"key": "keys", "context": "context", "value": "values",
                              "status": "statuses", "event": "event_times"}[source.kind]]
            child = pc.struct_field(struct, [source.source])
            arrays.append(child.cast(pa.string()) if source.kind == "status" else child)
    return pa.Table.from_arrays(arrays, schema=pa.schema(
        [pa.field(c.name, c.type) for c in output]))


def read_logs(
    directory: str | os.PathLike[str],
    service: str,
    out: str | os.PathLike[str],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    schema_hash: str | None = None,
) -> ReadSummary:
    """Write the records of `service` with since_ms <= request_time < until_ms to `out`."""
    root = Path(directory)
    if not root.is_dir():
        raise LogReadError(f"{root}: not a directory. Fix: give the feature log's directory "
                           "(log.features.directory)")
    files = closed_files(root, service, since_ms, until_ms)
    if schema_hash is not None:
        files = [f for f in files if f.schema_hash == schema_hash]
    if not files:
        raise LogReadError(f"{root}: no closed log file of service {service!r}"
                           f"{' with schema ' + schema_hash if schema_hash else ''} in that "
                           "time range. Fix: check --service and --since (files become "
                           "visible when closed: max_file_seconds after their first record)")
    schemas: dict[str, LogSchema] = {}
    for f in files:
        if f.schema_hash not in schemas:
            schemas[f.schema_hash] = file_schema(root, f)
    malformed = 0

    def parts() -> Iterable[tuple[str, pa.Table]]:
        nonlocal malformed
        for f in files:
            table, bad = read_log_file(f.path, schemas[f.schema_hash])
            malformed += bad
            yield f.schema_hash, table

    summary = write_flat(schemas, parts(), out, since_ms=since_ms, until_ms=until_ms)
    summary.files = len(files)
    summary.malformed = malformed
    return summary


def write_flat(
    schemas: Mapping[str, LogSchema],
    parts: Iterable[tuple[str, pa.Table]],
    out: str | os.PathLike[str],
    *,
    since_ms: int | None,
    until_ms: int | None,
) -> ReadSummary:
    """Write the flat Parquet file of raw records (`parts`: (hash, a table of that schema's
    layout), read lazily) of `schemas`, kept in [since_ms, until_ms): the one output path
    of files and topics."""
    output = _union(list(schemas.values()))
    arrow = pa.schema([pa.field(c.name, c.type) for c in output])
    target = Path(out)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(3)}.tmp")
    summary = ReadSummary(schemas=list(schemas), columns=[c.name for c in output])
    try:
        with pq.ParquetWriter(str(temp), arrow, compression="zstd") as writer:
            for digest, raw in parts:
                table = _in_range(raw, since_ms, until_ms)
                if table.num_rows:
                    writer.write_table(_flatten(table, schemas[digest], output))
                    summary.records += table.num_rows
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return summary


def _in_range(table: pa.Table, since_ms: int | None, until_ms: int | None) -> pa.Table:
    times = table.column("request_time").cast(pa.int64())
    mask = None
    if since_ms is not None:
        mask = pc.greater_equal(times, pa.scalar(since_ms, pa.int64()))
    if until_ms is not None:
        below = pc.less(times, pa.scalar(until_ms, pa.int64()))
        mask = below if mask is None else pc.and_(mask, below)
    return table if mask is None else table.filter(mask)
