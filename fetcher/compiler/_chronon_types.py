"""Column types for Chronon configs, which carry none: a types file or a folder of Parquet files.

`--types FILE` is JSON (`.json`) or TOML (`.toml`): table -> {column: type}, a type being
one of ours (`int64`, `list<string>`...) or `{"type": ..., "doc": ..., "nullable": ...}`;
a table may instead be a string, the path (relative to the file) of a Parquet file whose
schema gives its columns. `--types DIR` reads every `<table>.parquet` in the folder.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fetcher.compiler._compile import UsageError
from fetcher.compiler._problems import ProblemSink, Stage
from fetcher.compiler._sources import parquet_columns
from fetcher.compiler._types import SUPPORTED, normalize_type
from fetcher.definitions import Column
from fetcher.quoting import cut

_MAX_SHOWN = 20  # problems of a bad types file listed in the usage error


@dataclass(frozen=True, slots=True)
class TableTypes:
    """Column types per table (None: a Parquet type no feature can have); `path` as given."""

    path: str
    tables: Mapping[str, Mapping[str, Column | None]]

    def table(self, name: str) -> Mapping[str, Column | None] | None:
        """The columns of a Chronon table; a sub-partition spec (`db.t/hr=00:00`) is dropped."""
        return self.tables.get(table_key(name))


def table_key(name: str) -> str:
    """The table a types file names for a Chronon table spec: `db.t/hr=00:00` -> `db.t`."""
    return name.split("/", 1)[0]


def _column(raw: object, where: str, problems: list[str]) -> Column | None:
    if isinstance(raw, Mapping):
        kind, doc, nullable = raw.get("type"), raw.get("doc", ""), raw.get("nullable", False)
        extra = sorted(set(raw) - {"type", "doc", "nullable"})
        if extra or not isinstance(doc, str) or not isinstance(nullable, bool):
            problems.append(f"{where}: write {{\"type\": \"int64\", \"doc\": \"...\", "
                            f"\"nullable\": true}} (got {dict(raw)!r:.80})")
            return None
    else:
        kind, doc, nullable = raw, "", False
    normal = normalize_type(kind)
    if normal is None:
        problems.append(f"{where}: unsupported column type {kind!r:.40}. Fix: use one of "
                        f"{SUPPORTED}")
        return None
    return Column(normal, doc, nullable)


def _parquet(folder: Path, path: str, where: str,
             problems: list[str]) -> dict[str, Column | None] | None:
    sink = ProblemSink(Stage.DISCOVERY, where, 0, "")
    found = parquet_columns(folder, path, where, sink)
    problems.extend(f"{p.field}: {p.problem}. Fix: {p.fix}" for p in sink.items)
    if found is None:
        return None
    return {name: None if info is None else Column(info.type, info.doc, info.nullable)
            for name, info in found.items()}


def _from_file(path: Path, problems: list[str]) -> dict[str, dict[str, Column | None]]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(cut(f"cannot read it as {'TOML' if path.suffix == '.toml' else 'JSON'}"
                            f": {exc}"))
        return {}
    if not isinstance(data, Mapping):
        problems.append('is not a mapping of tables: write {"db.table": {"column": "int64"}}')
        return {}
    tables: dict[str, dict[str, Column | None]] = {}
    for table, columns in data.items():
        if isinstance(columns, str):
            found = _parquet(path.parent, columns, f"{table}", problems)
            if found is not None:
                tables[table] = found
        elif isinstance(columns, Mapping):
            tables[table] = {str(c): _column(t, f"{table}.{c}", problems)
                             for c, t in columns.items()}
        else:
            problems.append(f"{table}: is {type(columns).__name__}, not a mapping of columns "
                            'or a Parquet path: write {"column": "int64"} or "data/t.parquet"')
    return tables


def load_types(path: str) -> TableTypes:
    """Read `--types` (a JSON/TOML file or a folder of Parquet files); UsageError if bad."""
    where = Path(path)
    problems: list[str] = []
    if where.is_dir():
        files = sorted(where.glob("*.parquet"))
        if not files:
            raise UsageError(f"{path}: has no .parquet file. Fix: name each Parquet file after "
                             "its table, e.g. db.events.parquet")
        tables: dict[str, dict[str, Column | None]] = {}
        for file in files:
            found = _parquet(where, file.name, file.name, problems)
            if found is not None:
                tables[file.name[: -len(".parquet")]] = found
    elif where.is_file():
        if where.suffix not in (".json", ".toml"):
            raise UsageError(f"{path}: is neither .json nor .toml. Fix: give a JSON or TOML "
                             "types file, or a folder of <table>.parquet files")
        tables = _from_file(where, problems)
    else:
        raise UsageError(f"{path}: no such file or folder. Fix: give the types file "
                         "(docs/compiler.md, Chronon configs as input)")
    if problems:
        shown = "; ".join(problems[:_MAX_SHOWN])
        more = f" (and {len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
        raise UsageError(f"{path}: {shown}{more}")
    return TableTypes(path, tables)
