"""The backfill's source: a Parquet, CSV or JSON Lines path (file, directory or glob) or a
Spark table, read as an RDD of (where, row) the executors check with fetcher.load's rules.

CSV is read as text cells (every column a string, an empty cell ""), JSON Lines line by
line with the standard json module: the rows are the ones `fetcher load` would see, so a
row is accepted or rejected the same way. Parquet and tables keep their types; an event
time column of timestamp or date type becomes epoch ms (UTC) in Spark before the rows
reach Python.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fetcher.batch._errors import BackfillArgumentError
from fetcher.load import FORMATS, RowRejected

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import SparkSession

SOURCE_FORMATS = ("parquet", "csv", "jsonl", "table")
_WHERE = "__fetcher_where__"


@dataclass(frozen=True, slots=True)
class Source:
    """Where the rows come from: `format` is parquet, csv, jsonl or table."""

    location: str
    format: str

    @property
    def text(self) -> bool:
        """Values are CSV text cells."""
        return self.format == "csv"


def _format_of(paths: list[str], what: str) -> str:
    formats = set()
    for path in paths:
        suffix = os.path.splitext(path)[1].lower()
        if suffix in FORMATS:
            formats.add(FORMATS[suffix])
    if not formats:
        known = ", ".join(sorted(FORMATS))
        raise BackfillArgumentError("--source", f"{what}: no file with a known extension "
                                    f"({known}); name the format with --format")
    if len(formats) > 1:
        raise BackfillArgumentError("--source", f"{what}: files of several formats "
                                    f"({', '.join(sorted(formats))}); name one with --format")
    return formats.pop()


def _data_files(directory: str) -> list[str]:
    # Spark skips files whose names start with _ or . (_SUCCESS, .crc): so does the check.
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        found += [os.path.join(root, f) for f in files if not f.startswith(("_", "."))]
    return found


def resolve_source(location: str, fmt: str | None) -> Source | None:
    """The files `location` names and their format; None when it is no path (a table name,
    checked once Spark runs). BackfillArgumentError names --source or --format."""
    if fmt is not None and fmt not in SOURCE_FORMATS:
        raise BackfillArgumentError("--format", f"{fmt!r}: one of {', '.join(SOURCE_FORMATS)}")
    if fmt == "table":
        return Source(location, "table")
    if "://" in location and not location.startswith("file:"):
        # A cluster's file system (hdfs://, s3a://): Spark lists it, the extension or
        # --format says what it holds.
        return Source(location, fmt or _format_of([location], location))
    local = location.removeprefix("file://").removeprefix("file:")
    if os.path.isdir(local):
        files = _data_files(local)
        if not files:
            raise BackfillArgumentError("--source", f"{location}: an empty directory")
        return Source(location, fmt or _format_of(files, location))
    if os.path.isfile(local):
        return Source(location, fmt or _format_of([local], location))
    if glob.has_magic(local):
        matches = [m for m in glob.glob(local, recursive=True) if os.path.isfile(m)]
        if not matches:
            raise BackfillArgumentError("--source", f"{location}: the pattern matches no file")
        return Source(location, fmt or _format_of(matches, location))
    if os.sep in location or os.path.splitext(location)[1].lower() in FORMATS:
        raise BackfillArgumentError("--source", f"{location}: no such file or directory")
    return None


def table_source(spark: SparkSession, name: str) -> Source:
    """A table of Spark's catalog; BackfillArgumentError when there is none of that name."""
    if not spark.catalog.tableExists(name):
        raise BackfillArgumentError(
            "--source", f"{name!r} is neither a file, a directory, a glob nor a table of "
                        "Spark's catalog")
    return Source(name, "table")


def _json_line(item: tuple[str, str]) -> list[tuple[str, Any]]:
    where, text = item
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except ValueError as exc:
        return [(where, RowRejected("", f"not valid JSON: {exc}"))]
    if not isinstance(value, dict):
        return [(where, RowRejected("", f"expects a JSON object, got {type(value).__name__}"))]
    return [(where, value)]


def _csv_row(item: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    # Spark reads an unquoted empty cell as null; `fetcher load` (the csv module) as "",
    # and strips the header's names.
    where, row = item
    return where, {k.strip(): "" if v is None else v for k, v in row.items()}


def _row_of(row: Any) -> tuple[str, dict[str, Any]]:
    values = row.asDict(recursive=True)
    return values.pop(_WHERE), values


def read_rows(spark: SparkSession, source: Source, event_time_column: str) -> RDD[Any]:
    """The rows of `source` as (where, row mapping or RowRejected)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    where = F.input_file_name().alias(_WHERE)
    if source.format == "jsonl":
        lines = spark.read.text(source.location)
        return lines.select(where, "value").rdd.map(tuple).flatMap(_json_line)
    if source.format == "csv":
        frame = (spark.read.option("header", True).option("inferSchema", False)
                 .option("mode", "PERMISSIVE").csv(source.location))
        return frame.select(where, "*").rdd.map(_row_of).map(_csv_row)
    if source.format == "parquet":
        frame = spark.read.parquet(source.location)
    else:
        frame = spark.table(source.location)
        where = F.lit(source.location).alias(_WHERE)
    fields = {f.name: f.dataType for f in frame.schema.fields}
    kind = fields.get(event_time_column)
    if isinstance(kind, T.TimestampType | T.TimestampNTZType | T.DateType):
        # Epoch ms in Spark: a Python datetime of a timestamp would be in the driver's zone.
        ms = F.floor(F.unix_micros(F.col(event_time_column).cast("timestamp")) / 1000)
        frame = frame.withColumn(event_time_column, ms.cast("long"))
    return frame.select(where, "*").rdd.map(_row_of)
