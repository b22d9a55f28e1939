"""The backfill on Spark: read the source, check every row on the executors, group by key
(Spark's shuffle), and write each partition from its executor through the store writers.

A group of stored rows gets each key's latest row with an event time before the end. An
aggregation group gets each key's batch part at the end (of its events before the end),
its batch-end marker, and its events at or after the end pushed to its log: what
`fetcher load --events` writes, by the same functions (docs/batch.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fetcher.batch._partitions import (
    AFTER_END,
    KEYED,
    REJECTED,
    JobSpec,
    check_events,
    check_rows,
    latest,
    write_key_events,
    write_rows,
)
from fetcher.batch._source import Source, read_rows
from fetcher.load import reject_lines

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class BackfillReport:
    """What one backfill read, rejected and wrote."""

    group: str
    source: str
    end_ms: int
    aggregation: bool
    rows: int = 0
    rejected: int = 0
    after_end: int = 0  # stored-row groups: rows at or after the end, not written
    keys: int = 0  # rows written (one per key), or batch parts written
    pushed: int = 0  # aggregation groups: events at or after the end pushed to the logs
    seconds: float = 0.0
    rejects: list[tuple[str, str, str]] = field(default_factory=list)  # (where, field, why)

    @property
    def ok(self) -> bool:
        """No row was rejected."""
        return self.rejected == 0


def _tag(item: tuple[Any, ...]) -> str:
    tag: str = item[0]
    return tag


def _keyed(item: tuple[Any, ...]) -> tuple[bytes, Any]:
    return item[1], item[2]


def _is(tag: str) -> Any:
    return lambda item: item[0] == tag


def run_backfill_job(
    spark: SparkSession,
    spec: JobSpec,
    source: Source,
    *,
    partitions: int | None = None,
    max_rejects_kept: int = 20,
) -> BackfillReport:
    """Run the backfill of `spec.group` from `source`; raises what the Spark job raised
    (a store that still failed after the retries fails its task, and so the job)."""
    from pyspark import StorageLevel

    started = time.perf_counter()
    sc = spark.sparkContext
    group = spec.group
    aggregation = group.aggregation is not None
    report = BackfillReport(group.name, source.location, spec.end_ms, aggregation)
    rows = read_rows(spark, source, spec.event_time_column)
    check = check_events if aggregation else check_rows
    checked = rows.mapPartitions(lambda part: check(spec, part))
    # Kept (spilling to disk) so the counts, the rejects and the write read it once.
    checked.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sc.setJobDescription(f"backfill {group.name}: read and check the rows")
        counts = checked.map(_tag).countByValue()
        report.rows = sum(counts.values())
        report.rejected = counts.get(REJECTED, 0)
        report.after_end = counts.get(AFTER_END, 0)
        if report.rejected:
            sc.setJobDescription(f"backfill {group.name}: the first rejected rows")
            report.rejects = [(w, f, m) for _, w, f, m in
                              checked.filter(_is(REJECTED)).take(max_rejects_kept)]
        keyed = checked.filter(_is(KEYED)).map(_keyed)
        count = partitions or sc.defaultParallelism
        sc.setJobDescription(f"backfill {group.name}: write to the store")
        if aggregation:
            # Each key's events in one place: its batch part is built there, once.
            written = (keyed.groupByKey(numPartitions=count)
                       .mapPartitions(lambda part: write_key_events(spec, part)).collect())
            report.keys = sum(parts for parts, _ in written)
            report.pushed = sum(events for _, events in written)
        else:
            written_rows = (keyed.reduceByKey(latest, numPartitions=count)
                            .mapPartitions(lambda part: write_rows(spec, part)).collect())
            report.keys = sum(written_rows)
    finally:
        checked.unpersist()
        sc.setJobDescription(None)  # type: ignore[arg-type]
    report.seconds = time.perf_counter() - started
    return report


def format_backfill_report(report: BackfillReport) -> str:
    """The summary `fetcher backfill` prints (as `fetcher load` does)."""
    lines = [
        f"group {report.group} from {report.source}, end {report.end_ms}",
        f"rows read: {report.rows:,}, rejected: {report.rejected:,}",
    ]
    if report.aggregation:
        lines += [
            f"batch parts written: {report.keys:,} keys at batch end {report.end_ms}",
            f"events at or after the batch end pushed to the logs: {report.pushed:,}",
        ]
    else:
        lines += [
            f"rows written (the latest before the end, one per key): {report.keys:,}",
            f"rows at or after the end (not written): {report.after_end:,}",
        ]
    rate = report.rows / report.seconds if report.seconds > 0 else 0.0
    lines.append(f"time: {report.seconds:.1f} s ({rate:,.0f} rows/s)")
    # An event value's message names its column already (as `fetcher load` prints it).
    said = [f"{where}: {why}" if name and why.startswith(f"{name}:")
            else f"{where}: {name or '-'}: {why}" for where, name, why in report.rejects]
    lines += reject_lines(said, report.rejected)
    return "\n".join(lines)
