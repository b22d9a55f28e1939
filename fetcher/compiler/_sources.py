"""Stage 1 for sources: queries, declared and Parquet column types, the typed selects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from fetcher.compiler._model import SourceModel
from fetcher.compiler._problems import ProblemSink
from fetcher.compiler._types import SUPPORTED, ColumnInfo, normalize_type
from fetcher.definitions import UNSET, Column, EntitySource, EventSource, Join, JoinSource, Query
from fetcher.quoting import cut


def is_source(obj: object) -> TypeGuard[EventSource | EntitySource | JoinSource]:
    """True for the three source types."""
    return isinstance(obj, EventSource | EntitySource | JoinSource)


def _declared(
    raw: object, where: str, sink: ProblemSink
) -> dict[str, ColumnInfo | None] | None:
    """Declared `columns`: name -> ColumnInfo (None for a reported bad one)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        sink.error(where, f"is {type(raw).__name__}, not a mapping", 'write {"user_id": "int64"}')
        return None
    out: dict[str, ColumnInfo | None] = {}
    for name, decl in raw.items():
        field = f"{where}.{name}"
        info: ColumnInfo | None = None
        if isinstance(decl, Column):
            info = _column(decl, field, sink)
        elif isinstance(decl, tuple) and len(decl) == 2 and isinstance(decl[1], str):
            info = _typed(decl[0], decl[1], field, sink)
        elif isinstance(decl, str):
            info = _typed(decl, "", field, sink)
        else:
            sink.error(
                field,
                f"{decl!r:.60} is not a column declaration",
                'write a type ("int64"), a (type, doc) pair or Column(type, doc, nullable=...)',
            )
        out[str(name)] = info
    return out


def _typed(text: object, doc: str, field: str, sink: ProblemSink) -> ColumnInfo | None:
    column_type = normalize_type(text)
    if column_type is None:
        sink.error(field, f"unsupported column type {text!r:.40}", f"use one of {SUPPORTED}")
        return None
    return ColumnInfo(column_type, doc)


def _column(decl: Column, field: str, sink: ProblemSink) -> ColumnInfo | None:
    base = _typed(decl.type, decl.doc if isinstance(decl.doc, str) else "", field, sink)
    if base is None:
        return None
    if decl.default is UNSET:
        return ColumnInfo(base.type, base.doc, decl.nullable, decl.nullable, None)
    if decl.default is None and not decl.nullable:
        sink.error(f"{field}.default", "is null for a column that is not nullable",
                   "set nullable=True or give a non-null default")
        return None
    return ColumnInfo(base.type, base.doc, decl.nullable, True, decl.default)


_ARROW_SCALARS = {
    "int64": "int64", "uint32": "int64", "int32": "int32", "int16": "int32", "int8": "int32",
    "uint16": "int32", "uint8": "int32", "double": "double", "float": "float",
    "halffloat": "float", "string": "string", "large_string": "string", "bool": "bool",
    "binary": "bytes", "large_binary": "bytes",
}


def _arrow_type(arrow: Any) -> str | None:
    import pyarrow as pa

    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        item = _ARROW_SCALARS.get(str(arrow.value_type))
        return normalize_type(f"list<{item}>") if item else None
    return _ARROW_SCALARS.get(str(arrow))


def parquet_columns(
    repo: Path, path: object, field: str, sink: ProblemSink
) -> dict[str, ColumnInfo | None] | None:
    """Columns of a Parquet file's schema (None values: types no feature can have)."""
    if not isinstance(path, str) or not path:
        sink.error(field, f"{path!r:.60} is not a path", "give a path relative to the repository")
        return None
    file = repo / path
    if not file.is_file():
        sink.error(field, f"{path} does not exist (looked in {repo})",
                   "give the path of a Parquet file, relative to the repository folder")
        return None
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(file)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for a bad file
        sink.error(field, cut(f"{path} is not a readable Parquet file: {exc}"),
                   "point it at a Parquet file")
        return None
    out: dict[str, ColumnInfo | None] = {}
    for f in schema:
        column_type = _arrow_type(f.type)
        out[f.name] = (
            ColumnInfo(column_type, "", f.nullable, f.nullable, None) if column_type else None
        )
    return out


def _check_query(query: object, where: str, sink: ProblemSink) -> dict[str, str] | None:
    if not isinstance(query, Query):
        sink.error(where, f"is {type(query).__name__}, not a Query", "write query=Query(...)")
        return None
    ok = True
    selects = query.selects
    if isinstance(selects, str) or not isinstance(selects, Mapping | Sequence):
        sink.error(f"{where}.selects", f"{selects!r:.60} is not a list or mapping of names",
                   'write ["user_id", "age"] or {"age": "age_years"}')
        return None
    items = list(selects.items()) if isinstance(selects, Mapping) else [(s, s) for s in selects]
    if not items:
        sink.error(f"{where}.selects", "is empty", "select at least the keys and one column")
        ok = False
    seen: set[str] = set()
    for out, expr in items:
        if not isinstance(out, str) or not out or not isinstance(expr, str) or not expr:
            sink.error(f"{where}.selects", f"{out!r:.40}: {expr!r:.40} is not a name",
                       "use non-empty strings for output names and expressions")
            ok = False
        elif out in seen:
            sink.error(f"{where}.selects", f"{out!r} is selected twice", "remove the duplicate")
            ok = False
        seen.add(str(out))
    wheres = query.wheres
    if isinstance(wheres, str) or not all(isinstance(w, str) and w for w in wheres):
        sink.error(f"{where}.wheres", f"{wheres!r:.60} is not a list of conditions",
                   'write ["amount > 0"]')
        ok = False
    if query.time_column is not None and (
        not isinstance(query.time_column, str) or not query.time_column
    ):
        sink.error(f"{where}.time_column", "is not a column name", "name the event time column")
        ok = False
    if query.start_partition is not None:
        try:
            dt.date.fromisoformat(str(query.start_partition))
        except ValueError:
            sink.error(f"{where}.start_partition", f"{query.start_partition!r:.40} is not a date",
                       'write a date such as "2024-01-01"')
            ok = False
    return query.select_map() if ok else None


def resolve_source(repo: Path, source: object, where: str, sink: ProblemSink) -> SourceModel | None:
    """A source's selects typed from its declared/Parquet columns, or None after reporting."""
    if not is_source(source):
        sink.error(where, f"is {type(source).__name__}, not a source",
                   "use EventSource(...), EntitySource(...) or JoinSource(...)")
        return None
    before = len(sink.items)
    topic: str | None = None
    if isinstance(source, EventSource):
        kind, table, topic = "events", source.table, source.topic
        table_field = "table"
    elif isinstance(source, EntitySource):
        kind, table, topic = "entities", source.snapshot_table, source.mutation_topic
        table_field = "snapshot_table"
    else:
        kind, table_field = "join", "join"
        ref = source.join
        if isinstance(ref, Join):
            table = f"join:{ref.name or '(object)'}"
        elif isinstance(ref, str) and ref:
            table = f"join:{ref}"
        else:
            sink.error(f"{where}.join", f"{ref!r:.40} is not a Join", "give a Join or its name")
            table = ""
    if kind != "join" and (not isinstance(table, str) or not table):
        sink.error(f"{where}.{table_field}", f"{table!r:.40} is not a table name",
                   "name the table (or the path to its files)")
    selects = _check_query(source.query, f"{where}.query", sink)
    declared = _declared(source.columns, f"{where}.columns", sink)
    parquet: dict[str, ColumnInfo | None] = {}
    if not isinstance(source, JoinSource) and source.parquet_schema is not None:
        where_parquet = f"{where}.parquet_schema"
        parquet = parquet_columns(repo, source.parquet_schema, where_parquet, sink) or {}
    if selects is None or declared is None or len(sink.items) > before:
        return None
    known = {**parquet, **declared}
    columns: list[tuple[str, ColumnInfo]] = []
    for out, expr in selects.items():
        # The output's own declaration wins (an expression's result type), then the column's.
        name = out if out in known else expr
        if name not in known:
            sink.error(f"{where}.query.selects.{out}",
                       f"cannot tell the type of {out!r} (= {expr!r:.60})",
                       f"declare it in {where}.columns or in the Parquet schema")
        elif known[name] is None:
            sink.error(f"{where}.query.selects.{out}",
                       f"column {name!r} has a Parquet type no feature can have",
                       f"declare its type in {where}.columns ({SUPPORTED})")
        else:
            info = known[name]
            assert info is not None
            columns.append((out, info))
    if len(sink.items) > before:
        return None
    query = source.query
    return SourceModel(
        kind=kind,
        table=table,
        selects=tuple(selects.items()),
        columns=tuple(columns),
        time_column=query.time_column,
        topic=topic,
        join=source if isinstance(source, JoinSource) else None,
    )
