"""Chronon sources and queries -> EventSource / EntitySource / JoinSource, typed from --types.

Chronon's selects are Spark SQL; a select that is a bare column name (renamed or not) maps,
an expression is refused naming the select. `wheres` are carried into the Query: they
filter the batch job's input, never what is served. Every problem names the file, the
object and the Chronon field path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fetcher.compiler._chronon_types import TableTypes, table_key
from fetcher.compiler._problems import Problem, Stage
from fetcher.definitions import Column, EntitySource, EventSource, GroupBy, Join, Query

BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLEAN = re.compile(r"[^A-Za-z0-9_]")

# Fields that configure Chronon's own jobs (Airflow schedules, Spark settings, its output
# tables, consistency and backfill runs), which fetcher does not run: read and left alone.
IGNORED_META = frozenset({
    "dependencies", "tableProperties", "outputNamespace", "offlineSchedule", "modeToEnvMap",
    "consistencyCheck", "consistencySamplePercent", "historicalBackfill",
})
_QUERY_FIELDS = frozenset({"selects", "wheres", "startPartition", "timeColumn", "setups"})
_QUERY_IGNORED = frozenset({"endPartition"})  # bounds the batch job's scan only
_QUERY_REFUSED = {
    "mutationTimeColumn": "a custom mutation time column",
    "reversalColumn": "a custom mutation reversal column",
    "partitionColumn": "a custom partition column",
}


def clean_name(name: str) -> str:
    """Chronon's `cleanName`: every character but letters, digits and _ becomes _."""
    return _CLEAN.sub("_", name)


@dataclass(slots=True)
class ChrononFile:
    """Reading one Chronon file: its path (relative to DIR), the types, the problems found.

    `register` receives every object the file holds (top-level and embedded) by kind, name.
    """

    file: str
    types: TableTypes
    register: Callable[[ChrononFile, str, str, GroupBy | Join, str], None]
    problems: list[Problem] = field(default_factory=list)

    def error(self, obj: str, where: str, problem: str, fix: str) -> None:
        """An error of `obj` at the Chronon field path `where`."""
        self.problems.append(Problem(Stage.DISCOVERY, self.file, 1, obj, where, problem, fix))

    def warn(self, obj: str, where: str, problem: str, fix: str) -> None:
        """A warning (an error under --strict)."""
        self.problems.append(
            Problem(Stage.DISCOVERY, self.file, 1, obj, where, problem, fix, warning=True))

    def unknown(self, obj: str, where: str, raw: Mapping[str, Any], known: frozenset[str]) -> None:
        """Warn about fields this importer does not know (a newer Chronon's?)."""
        for name in sorted(set(raw) - known):
            self.warn(obj, f"{where}{name}", "is not a Chronon field this importer reads: "
                      "it is not carried", "remove it, or ask for it to be mapped")


def flag(value: object) -> bool:
    """A thrift bool as the simple-JSON protocol writes it: 0/1 (or true/false)."""
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value != 0)


def custom_json(ctx: ChrononFile, obj: str, where: str, raw: object,
                tags_key: str) -> dict[str, str]:
    """Tags from metaData.customJson (`groupby_tags` / `join_tags`); the rest is Chronon's."""
    if raw is None:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        data = None
    if not isinstance(data, Mapping):
        ctx.warn(obj, where, "is not a JSON object: its tags are not carried",
                 "recompile the config with Chronon")
        return {}
    tags: dict[str, str] = {}
    found = data.get(tags_key)
    if isinstance(found, Mapping):
        tags = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in found.items()}
    for per_column in ("column_tags", "join_part_tags"):
        if data.get(per_column):
            ctx.warn(obj, f"{where}.{per_column}", "per-feature tags are not carried: "
                     "fetcher has tags per object only", f"move them to {tags_key} if they "
                     "matter, or ignore this")
    return tags


def map_query(ctx: ChrononFile, obj: str, where: str, raw: object,
           table: str) -> tuple[Query, dict[str, Column]] | None:
    if not isinstance(raw, Mapping):
        ctx.error(obj, where, "is missing", "give the source a query with selects")
        return None
    before = len(ctx.problems)
    ctx.unknown(obj, f"{where}.", raw,
                _QUERY_FIELDS | _QUERY_IGNORED | frozenset(_QUERY_REFUSED))
    for name, what in _QUERY_REFUSED.items():
        if raw.get(name) is not None:
            ctx.error(obj, f"{where}.{name}", f"{what} is not supported",
                      f"remove {name}; fetcher reads Chronon's default columns")
    if raw.get("setups"):
        ctx.error(obj, f"{where}.setups", "Spark SQL setup statements (UDFs) are not supported",
                  "remove them; select plain columns instead of UDF calls")
    selects = raw.get("selects")
    if not isinstance(selects, Mapping) or not selects:
        ctx.error(obj, f"{where}.selects", "is missing or empty (Chronon would read every "
                  "column)", "select the columns by name in the Chronon definition")
        return None
    columns = _typed(ctx, obj, f"{where}.selects", selects, table)
    time_column = raw.get("timeColumn")
    if time_column is not None and (not isinstance(time_column, str)
                                    or not BARE.match(time_column)):
        ctx.error(obj, f"{where}.timeColumn", f"{time_column!r:.60} is a Spark SQL expression; "
                  "fetcher reads the event time from a column", "compute it in the table "
                  "(or a view) and name that column as timeColumn")
    wheres = raw.get("wheres") or []
    if not isinstance(wheres, list) or not all(isinstance(w, str) for w in wheres):
        ctx.error(obj, f"{where}.wheres", f"{wheres!r:.60} is not a list of conditions",
                  "recompile the config with Chronon")
    start = raw.get("startPartition")
    if len(ctx.problems) > before or columns is None:
        return None
    query = Query(selects={str(k): str(v) for k, v in selects.items()}, wheres=tuple(wheres),
                  time_column=time_column, start_partition=start)
    return query, columns


def _typed(ctx: ChrononFile, obj: str, where: str, selects: Mapping[str, Any],
           table: str) -> dict[str, Column] | None:
    """Output column -> its declared type, from the types of the selected table column."""
    known = ctx.types.table(table)
    columns: dict[str, Column] = {}
    ok = True
    for out, expr in selects.items():
        if not isinstance(expr, str) or not BARE.match(expr):
            ctx.error(obj, f"{where}.{out}", f"{expr!r:.60} is a Spark SQL expression; fetcher "
                      "maps only selects of a column (renamed or not)", "compute it in the "
                      f"table (or a view) and select the column by name, or drop {out!r}")
            ok = False
        elif known is None or expr not in known:
            what = f"table {table_key(table)} is not in it" if known is None else (
                f"it has no column {expr} of table {table_key(table)}")
            ctx.error(obj, f"{where}.{out}", f"the type of {table_key(table)}.{expr} is "
                      f"unknown: Chronon configs carry no types and {what}",
                      f"add {table_key(table)}.{expr} to {ctx.types.path}")
            ok = False
        elif (column := known[expr]) is None:
            ctx.error(obj, f"{where}.{out}", f"{table_key(table)}.{expr} has a Parquet type no "
                      "feature can have", "declare its type in a JSON or TOML --types file")
            ok = False
        else:
            columns[str(out)] = column
    return columns if ok else None


def source_body(ctx: ChrononFile, obj: str, where: str,
                raw: object) -> tuple[str, Mapping[str, Any]] | None:
    """A Chronon Source (a union): its kind (events, entities, joinSource) and body."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        ctx.error(obj, where, "is not one of events, entities, joinSource",
                  "recompile the config with Chronon")
        return None
    ((kind, body),) = raw.items()
    if not isinstance(body, Mapping):
        ctx.error(obj, f"{where}.{kind}", "is not an object", "recompile the config with Chronon")
        return None
    return str(kind), body


def table_source(ctx: ChrononFile, obj: str, where: str, kind: str,
                 body: Mapping[str, Any]) -> EventSource | EntitySource | None:
    """An events or entities source (`where` ends with the kind) as ours."""
    if kind == "events":
        return _events(ctx, obj, where, body)
    if kind == "entities":
        return _entities(ctx, obj, where, body)
    ctx.error(obj, where, f"source kind {kind!r:.40} is not supported",
              "use an events, entities or joinSource source")
    return None


def _table(ctx: ChrononFile, obj: str, where: str, value: object) -> str | None:
    if not isinstance(value, str) or not value:
        ctx.error(obj, where, "is missing", "name the source's table")
        return None
    return value


def _events(ctx: ChrononFile, obj: str, where: str, body: Mapping[str, Any]) -> EventSource | None:
    ctx.unknown(obj, f"{where}.", body, frozenset({"table", "topic", "query", "isCumulative"}))
    if flag(body.get("isCumulative")):
        ctx.error(obj, f"{where}.isCumulative", "cumulative event tables (each partition "
                  "holds all history) are not supported", "point the source at a table of "
                  "each day's events")
    table = _table(ctx, obj, f"{where}.table", body.get("table"))
    mapped = map_query(ctx, obj, f"{where}.query", body.get("query"), table) if table else None
    if table is None or mapped is None:
        return None
    query, columns = mapped
    return EventSource(table=table, query=query, topic=body.get("topic"), columns=columns)


def _entities(ctx: ChrononFile, obj: str, where: str,
              body: Mapping[str, Any]) -> EntitySource | None:
    ctx.unknown(obj, f"{where}.", body,
                frozenset({"snapshotTable", "mutationTable", "mutationTopic", "query"}))
    table = _table(ctx, obj, f"{where}.snapshotTable", body.get("snapshotTable"))
    mapped = map_query(ctx, obj, f"{where}.query", body.get("query"), table) if table else None
    if table is None or mapped is None:
        return None
    query, columns = mapped
    return EntitySource(snapshot_table=table, query=query,
                        mutation_table=body.get("mutationTable"),
                        mutation_topic=body.get("mutationTopic"), columns=columns)
