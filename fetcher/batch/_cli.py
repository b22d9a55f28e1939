"""`fetcher backfill` and the spark-submit job (fetcher/batch/job.py): arguments, checks
before Spark starts, the run, the summary.

Exit codes: 0 every row written; 1 rows were rejected (the others written); 2 a bad
argument or nothing could start (settings, catalog, group, source, store); 3 the Spark
job failed midway (a store still failing after the retries): rerun it, it converges.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from fetcher.batch._errors import BackfillArgumentError, BackfillSetupError
from fetcher.batch._job import BackfillReport, format_backfill_report, run_backfill_job
from fetcher.batch._partitions import JobSpec
from fetcher.batch._session import build_session, progress_lines
from fetcher.batch._source import SOURCE_FORMATS, Source, resolve_source, table_source
from fetcher.load import RowRejected, check_event_ms, event_time_ms

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_SETUP = 2
EXIT_FAILED = 3
DEFAULT_MASTER = "local[*]"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _conf(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE (a Spark setting)")
    return key.strip(), value


def add_backfill_arguments(
    parser: argparse.ArgumentParser, *, default_master: str | None = DEFAULT_MASTER
) -> None:
    """The arguments of `fetcher backfill` (and of the spark-submit job)."""
    parser.add_argument("--settings", help="settings TOML (default: $FETCHER_SETTINGS)")
    parser.add_argument("--group", required=True, help="the feature group to write")
    parser.add_argument("--source", required=True, metavar="PATH_OR_TABLE",
                        help="Parquet, CSV or JSON Lines: a file, a directory or a glob; or the "
                        "name of a table in Spark's catalog")
    parser.add_argument("--end", required=True, metavar="DATE",
                        help="the end: ISO-8601 date or time (UTC unless it names a zone) or "
                        "epoch ms; rows and events before it are the batch")
    parser.add_argument("--format", choices=SOURCE_FORMATS,
                        help="the source's format (default: from the file extensions)")
    master_help = ("Spark master URL" + (f" (default: {default_master})" if default_master
                                          else " (default: the one spark-submit was given)"))
    parser.add_argument("--master", default=default_master, help=master_help)
    parser.add_argument("--conf", type=_conf, action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting (repeatable), e.g. spark.executor.memory=4g")
    parser.add_argument("--event-time-column", default="event_time")
    parser.add_argument("--id-column", default="id",
                        help="aggregation groups: the event id column (absent: a hash of the "
                        "event)")
    parser.add_argument("--ignore-unknown-columns", action="store_true",
                        help="groups of stored rows: ignore columns the group does not have")
    parser.add_argument("--partitions", type=_positive, default=None,
                        help="partitions of the write (default: Spark's default parallelism)")
    parser.add_argument("--batch-size", type=_positive, default=500,
                        help="rows (or keys) per store write")
    parser.add_argument("--max-in-flight", type=_positive, default=4,
                        help="store writes in flight per executor task")
    parser.add_argument("--retries", type=_count, default=5,
                        help="retries of a failed store write, with exponential backoff")


def parse_end(text: str) -> int:
    """--end as epoch ms; BackfillArgumentError names --end."""
    try:
        return check_event_ms(event_time_ms("--end", text.strip().replace("Z", "+00:00")),
                              "--end")
    except (RowRejected, ValueError) as exc:
        message = getattr(exc, "message", str(exc))
        raise BackfillArgumentError("--end", f"{message} (e.g. 2026-12-01, "
                                    "2026-12-01T06:00:00Z or epoch ms)") from None


def plan_backfill(args: argparse.Namespace) -> tuple[JobSpec, Source | None]:
    """Everything checked before Spark starts: settings, catalog, group, end, source, store
    (its tables created). Raises BackfillArgumentError or BackfillSetupError."""
    from fetcher.catalog import CatalogError, load_catalog
    from fetcher.config import SettingsError, load_settings
    from kvstores import StoreError, open_store

    end_ms = parse_end(args.end)
    source = resolve_source(args.source, args.format)
    try:
        settings = load_settings(args.settings or os.environ.get("FETCHER_SETTINGS"))
        catalog = load_catalog(settings.server.config_dir, settings.stores.keys())
    except (SettingsError, CatalogError) as exc:
        raise BackfillSetupError(str(exc)) from exc
    group = catalog.groups.get(args.group)
    if group is None:
        known = ", ".join(sorted(catalog.groups)) or "(none)"
        raise BackfillArgumentError("--group", f"unknown group {args.group!r} in "
                                    f"{settings.server.config_dir}; known: {known}")
    conf = settings.stores[group.store]

    async def create() -> None:
        store = open_store(conf.url, timeout_s=conf.timeout_ms / 1000)
        try:
            # Stores that need a keyspace or tables (Cassandra, DynamoDB) get them here, once.
            await store.create()
        finally:
            await store.close()

    try:
        asyncio.run(create())
    except (StoreError, ValueError) as exc:
        raise BackfillSetupError(f"store {conf.name!r}: {exc}") from exc
    spec = JobSpec(
        group=group,
        codec=catalog.codecs.get(group.name),
        store_url=conf.url,
        store_timeout_s=conf.timeout_ms / 1000,
        end_ms=end_ms,
        text=source is not None and source.text,
        event_time_column=args.event_time_column,
        id_column=args.id_column,
        ignore_unknown_columns=args.ignore_unknown_columns,
        batch_size=args.batch_size,
        max_in_flight=args.max_in_flight,
        retries=args.retries,
    )
    return spec, source


def _job_failure(exc: BaseException) -> str:
    # A Py4J error's text holds the executor's whole traceback: its last line says what.
    lines = [line for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors[-1] if errors else lines[-1] if lines else type(exc).__name__)[:500]


def run_backfill(args: argparse.Namespace) -> int:
    """`fetcher backfill`: progress on stderr, the summary on stdout; the exit code."""
    err = sys.stderr
    try:
        spec, source = plan_backfill(args)
    except (BackfillArgumentError, BackfillSetupError) as exc:
        err.write(f"fetcher backfill: {exc}\n")
        return EXIT_SETUP
    spark = build_session(f"fetcher backfill {spec.group.name}", args.master, dict(args.conf))
    try:
        try:
            if source is None:
                source = table_source(spark, args.source)
        except BackfillArgumentError as exc:
            err.write(f"fetcher backfill: {exc}\n")
            return EXIT_SETUP
        err.write(f"backfill: {spec.group.name} from {source.location} ({source.format}), "
                  f"end {spec.end_ms}, master {spark.sparkContext.master}\n")
        try:
            with progress_lines(spark.sparkContext, err):
                report: BackfillReport = run_backfill_job(spark, spec, source,
                                                          partitions=args.partitions)
        except Exception as exc:
            err.write(f"fetcher backfill: the Spark job failed, nothing is counted twice: "
                      f"rerun it to complete the backfill: {_job_failure(exc)}\n")
            return EXIT_FAILED
    finally:
        spark.stop()
    print(format_backfill_report(report))
    return EXIT_OK if report.ok else EXIT_REJECTED


def main(argv: Sequence[str] | None = None) -> int:
    """The spark-submit job: `fetcher backfill`'s arguments; the master is spark-submit's."""
    parser = argparse.ArgumentParser(
        prog="fetcher/batch/job.py",
        description="The fetcher backfill as a Spark application (docs/batch.md)")
    add_backfill_arguments(parser, default_master=None)
    return run_backfill(parser.parse_args(argv))
